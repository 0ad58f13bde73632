//! `error_page` and `proxy_intercept_errors`: ferry and nginx on one file,
//! the same pages for the same errors.

mod util;

use std::net::SocketAddr;

use util::{free_port, require_tool, Ferry, Nginx, Response};

fn site(name: &str, origin: SocketAddr) -> (std::path::PathBuf, String) {
    let dir = util::scratch_dir(name);
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("errors")).unwrap();
    std::fs::write(www.join("index.html"), "<h1>home</h1>\n").unwrap();
    std::fs::write(www.join("50x.html"), "<h1>we are on it</h1>\n").unwrap();
    std::fs::write(www.join("errors/404.html"), "<h1>no such page</h1>\n").unwrap();
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {www};\n\
           error_page 404 /errors/404.html;\n\
           error_page 500 502 503 504 /50x.html;\n\
           location = /50x.html {{ }}\n\
           location /dead/ {{ proxy_pass http://127.0.0.1:1; }}\n\
           location /app/ {{ proxy_pass http://{origin}; }}\n\
           location /caught/ {{ proxy_pass http://{origin}; proxy_intercept_errors on; }}\n\
           location /closed/ {{ deny all; }}\n\
           location /gone {{ return 404; }}\n\
           location /said {{ return 404 \"said so\\n\"; }}\n\
           location /soft/ {{ error_page 404 =200 /index.html; }}\n\
           location /moved/ {{ error_page 404 http://example.com/new; }}\n\
           location /maintenance {{ error_page 503 @maintenance; return 503; }}\n\
           location @maintenance {{ return 200 \"back soon\\n\"; }}\n\
         }}\n",
        www = www.display()
    );
    (dir, body)
}

const PATHS: &[&str] = &[
    "/missing",
    "/dead/x",
    "/app/404",
    "/app/500",
    "/caught/404",
    "/caught/500",
    "/caught/200",
    "/closed/x",
    "/gone",
    "/said",
    "/soft/x",
    "/moved/x",
    "/maintenance",
    "/50x.html",
];

fn summary(response: &Response) -> String {
    format!(
        "{} | {} | {} | {}",
        response.status,
        response.header("Content-Type").unwrap_or_default(),
        response.header("Location").unwrap_or_default(),
        // ferry's and nginx's own pages differ in their signature line.
        if response.text().contains("<hr><center>") {
            "(built-in page)".to_string()
        } else {
            response.text()
        }
    )
}

fn origin() -> util::Origin {
    util::Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let code = request.path.rsplit('/').next().unwrap_or("200").to_string();
            let body = format!("origin says {code}\n");
            let head = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if !conn.send(head.as_bytes()) {
                break;
            }
        }
    })
}

#[test]
fn error_pages_replace_answers_as_nginx_s_do() {
    let origin = origin();
    let (_dir, body) = site("error-pages", origin.addr);
    let (ferry, _) = Ferry::start_config("error-pages", &body);
    let ask = |addr: SocketAddr, path: &str| {
        util::request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
    };
    let from_ferry: Vec<String> = PATHS.iter().map(|p| summary(&ask(ferry.addr, p))).collect();
    let expected = [
        "404 | text/html |  | <h1>no such page</h1>\n",
        "502 | text/html |  | <h1>we are on it</h1>\n",
        "404 | text/plain |  | origin says 404\n",
        "500 | text/plain |  | origin says 500\n",
        "404 | text/html |  | <h1>no such page</h1>\n",
        "500 | text/html |  | <h1>we are on it</h1>\n",
        "200 | text/plain |  | origin says 200\n",
        "403 | text/html |  | (built-in page)",
        "404 | text/html |  | <h1>no such page</h1>\n",
        "404 | text/plain |  | said so\n",
        "200 | text/html |  | <h1>home</h1>\n",
        "302 | text/html | http://example.com/new | (built-in page)",
        "503 | text/plain |  | back soon\n",
        "200 | text/html |  | <h1>we are on it</h1>\n",
    ];
    assert_eq!(from_ferry, expected);
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "error-pages",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let from_nginx: Vec<String> = PATHS.iter().map(|p| summary(&ask(addr, p))).collect();
    assert_eq!(from_ferry, from_nginx);
}

#[test]
fn error_pages_ferry_cannot_serve_are_refused() {
    let dir = util::scratch_dir("error-pages-refused");
    for (body, message) in [
        (
            "error_page 502 /fallback; location /fallback { proxy_pass http://127.0.0.1:1; }",
            "error_page \"/fallback\": pages from a proxied location are not supported yet",
        ),
        (
            "error_page 502 @up; location @up { proxy_pass http://127.0.0.1:1; }",
            "error_page \"@up\": pages from a proxied location are not supported yet",
        ),
        (
            "error_page 200 /x;",
            "value \"200\" must be between 300 and 599",
        ),
        ("error_page 404 =abc /x;", "invalid value \"=abc\""),
    ] {
        util::assert_ferry_refuses(&dir, body, message);
    }
}

/// `return CODE [TEXT]` framed as nginx frames it, every answer on one
/// keep-alive connection: a 204 is a bare head (no type, no length, no
/// body, even with a text: RFC 9110 §8.6), a 304 has no body, a text has
/// the `default_type`, an empty error has no type. A body after a 204 or a
/// 304 would be read as the start of the next response.
#[test]
fn returns_are_framed_as_nginx_frames_them() {
    let paths = ["a", "d", "b", "b2", "c", "c2", "e2", "f", "a"];
    let body = "default_type application/octet-stream;\n\
                server {\n listen 127.0.0.1:PORT;\n\
                  location /a { return 204; }\n\
                  location /d { return 204 \"text\"; }\n\
                  location /b { return 200; }\n\
                  location /b2 { return 200 \"x\"; }\n\
                  location /c { return 418; }\n\
                  location /c2 { return 418 \"x\"; }\n\
                  location /e2 { return 304 \"x\"; }\n\
                  location /f { return 201; }\n\
                }\n";
    let answers = |addr: SocketAddr| {
        let mut stream = util::connect(addr);
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        paths
            .iter()
            .map(|path| {
                use std::io::Write;
                write!(stream, "GET /{path} HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
                let response = util::read_response(&mut reader, "GET").expect("a response");
                let fields: Vec<&str> = response
                    .head
                    .lines()
                    .filter(|l| l.starts_with("Content-"))
                    .collect();
                format!(
                    "/{path} {} {} {:?}",
                    response.status,
                    fields.join("|"),
                    response.text()
                )
            })
            .collect::<Vec<_>>()
    };
    let (ferry, _) = Ferry::start_config("return-framing", body);
    let from_ferry = answers(ferry.addr);
    assert_eq!(from_ferry[0], "/a 204  \"\"");
    assert_eq!(from_ferry[1], "/d 204  \"\"");
    assert_eq!(
        from_ferry[3],
        "/b2 200 Content-Type: application/octet-stream|Content-Length: 1 \"x\""
    );
    assert_eq!(from_ferry[4], "/c 418 Content-Length: 0 \"\"");
    if let Some((_nginx, addr)) = Nginx::beside("return-framing", body) {
        assert_eq!(from_ferry, answers(addr));
    }
}

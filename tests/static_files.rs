//! Static files (`root`, `alias`, `index`, `try_files`, `types`, `expires`,
//! conditional and range requests), served by ferry and by nginx from the
//! same files and the same configuration, and compared.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use util::{connect, free_port, read_response, require_tool, Ferry, Nginx, Response};

/// A document root with what the tests ask for.
fn document_root(name: &str) -> PathBuf {
    let dir = util::scratch_dir(name);
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("docs")).unwrap();
    std::fs::create_dir_all(www.join("bare")).unwrap();
    std::fs::create_dir_all(www.join("app")).unwrap();
    std::fs::write(www.join("index.html"), "<h1>home</h1>\n").unwrap();
    std::fs::write(www.join("style.CSS"), "body { color: red }\n").unwrap();
    std::fs::write(www.join("notes.unknown"), "plain\n").unwrap();
    std::fs::write(www.join("docs/index.html"), "<p>docs</p>\n").unwrap();
    std::fs::write(www.join("docs/page.html"), "<p>page</p>\n").unwrap();
    std::fs::write(www.join("app/main.js"), "run();\n").unwrap();
    std::fs::write(www.join("empty.txt"), "").unwrap();
    let mut blob = vec![0u8; 70_000];
    util::pattern(0, &mut blob);
    std::fs::write(www.join("blob.bin"), &blob).unwrap();
    std::os::unix::fs::symlink(www.join("docs/page.html"), www.join("linked.html")).unwrap();
    // Outside the root: no uri may reach it.
    std::fs::write(dir.join("secret.txt"), "secret\n").unwrap();
    dir
}

/// The servers both run: `PORT` is each one's own.
fn servers(root: &Path) -> String {
    let www = root.join("www");
    let www = www.display();
    format!(
        "types {{ text/html html; text/css css; application/javascript js; \
                  application/octet-stream bin; text/plain txt; }}\n\
         default_type application/x-default;\n\
         server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {www};\n\
           location / {{ }}\n\
           location /assets/ {{ alias {www}/app/; expires 1h; }}\n\
           location /spa/ {{ try_files $uri $uri/ /index.html; }}\n\
           location /strict/ {{ try_files $uri =404; }}\n\
           location /plain/ {{ etag off; max_ranges 0; alias {www}/; }}\n\
           location = /exact.html {{ alias {www}/docs/page.html; }}\n\
         }}\n"
    )
}

/// The requests both get, and what of their answers must be equal.
const REQUESTS: &[(&str, &str, &str)] = &[
    ("GET", "/", ""),
    ("HEAD", "/", ""),
    ("GET", "/index.html", ""),
    ("GET", "/style.CSS", ""),
    ("GET", "/notes.unknown", ""),
    ("GET", "/empty.txt", ""),
    ("GET", "/docs", ""),
    ("GET", "/docs?x=1", ""),
    ("GET", "/docs/", ""),
    ("GET", "/bare/", ""),
    ("GET", "/missing", ""),
    ("GET", "/missing/", ""),
    ("GET", "/index.html/x", ""),
    ("GET", "/linked.html", ""),
    ("GET", "/%64ocs/page.html", ""),
    ("GET", "/docs/../index.html", ""),
    ("GET", "/assets/main.js", ""),
    ("GET", "/assets/", ""),
    ("GET", "/spa/some/route", ""),
    ("GET", "/strict/none", ""),
    ("GET", "/exact.html", ""),
    ("POST", "/index.html", "Content-Length: 0\r\n"),
    ("POST", "/missing", "Content-Length: 0\r\n"),
    ("PUT", "/index.html", "Content-Length: 0\r\n"),
    ("DELETE", "/missing", ""),
    ("GET", "/blob.bin", "Range: bytes=0-99\r\n"),
    ("GET", "/blob.bin", "Range: bytes=69990-\r\n"),
    ("GET", "/blob.bin", "Range: bytes=-10\r\n"),
    ("GET", "/blob.bin", "Range: bytes=70000-\r\n"),
    ("GET", "/blob.bin", "Range: bytes=9-1\r\n"),
    ("GET", "/blob.bin", "Range: lines=1-2\r\n"),
    ("HEAD", "/blob.bin", "Range: bytes=0-9\r\n"),
    (
        "GET",
        "/blob.bin",
        "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n",
    ),
    ("GET", "/empty.txt", "Range: bytes=0-\r\n"),
    ("GET", "/plain/blob.bin", "Range: bytes=0-9\r\n"),
    ("GET", "/index.html", "If-None-Match: \"nope\"\r\n"),
    ("GET", "/index.html", "If-Match: \"nope\"\r\n"),
    ("GET", "/index.html", "If-Match: *\r\n"),
    (
        "GET",
        "/index.html",
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    ),
    (
        "GET",
        "/index.html",
        "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    ),
];

/// The parts of an answer that must be the same from both.
fn summary(response: &Response, port: u16) -> String {
    let mut out = format!("{}", response.status);
    for field in [
        "Content-Type",
        "Content-Length",
        "Location",
        "Last-Modified",
        "ETag",
        "Accept-Ranges",
        "Content-Range",
        "Cache-Control",
    ] {
        // Pages differ in their signature line (and so in length).
        if field == "Content-Length" && response.status >= 300 {
            continue;
        }
        if let Some(value) = response.header(field) {
            let value = value.replace(&port.to_string(), "PORT");
            out.push_str(&format!(" | {field}: {value}"));
        }
    }
    // Files must be equal.
    if response.status < 300 {
        let mut hash = util::Hash::default();
        hash.update(&response.body);
        out.push_str(&format!(" | body {} {:016x}", response.body.len(), hash.0));
    }
    out
}

fn ask(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Response {
    util::request(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"),
    )
}

#[test]
fn files_are_served_as_nginx_serves_them() {
    let root = document_root("static-same");
    let (ferry, _) = Ferry::start_config("static-same", &servers(&root));
    let ferry_port = ferry.addr.port();
    let from_ferry: Vec<String> = REQUESTS
        .iter()
        .map(|(method, path, extra)| summary(&ask(ferry.addr, method, path, extra), ferry_port))
        .collect();
    // What ferry must answer whether or not nginx is here to compare.
    let expect = |index: usize, prefix: &str| {
        assert!(
            from_ferry[index].starts_with(prefix),
            "{:?}: {}",
            REQUESTS[index],
            from_ferry[index]
        );
    };
    expect(0, "200 | Content-Type: text/html | Content-Length: 14 |");
    expect(3, "200 | Content-Type: text/css |");
    expect(4, "200 | Content-Type: application/x-default |");
    expect(6, "301 | Content-Type: text/html | Location:");
    assert!(from_ferry[6].contains("Location: http://localhost:PORT/docs/"));
    assert!(from_ferry[7].contains("Location: http://localhost:PORT/docs/?x=1"));
    expect(9, "403");
    expect(10, "404");
    expect(15, "200");
    expect(16, "200 | Content-Type: application/javascript");
    assert!(from_ferry[16].contains("Cache-Control: max-age=3600"));
    expect(18, "200 | Content-Type: text/html | Content-Length: 14");
    expect(23, "405");
    expect(
        25,
        "206 | Content-Type: application/octet-stream | Content-Length: 100 |",
    );
    assert!(from_ferry[25].contains("Content-Range: bytes 0-99/70000"));
    expect(28, "416");
    expect(29, "416");
    expect(30, "200");
    expect(36, "412");
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "static-same",
        &servers(&root).replace("PORT", &port.to_string()),
        port,
    );
    let nginx_addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    for (index, (method, path, extra)) in REQUESTS.iter().enumerate() {
        let theirs = summary(&ask(nginx_addr, method, path, extra), nginx.port);
        assert_eq!(
            from_ferry[index], theirs,
            "{method} {path} {extra:?}: ferry, then nginx"
        );
    }
    // The validators nginx sent are ferry's: a cached copy stays valid.
    let etag = ask(nginx_addr, "GET", "/index.html", "").header("ETag");
    let etag = etag.expect("an ETag");
    let extra = format!("If-None-Match: {etag}\r\n");
    assert_eq!(ask(ferry.addr, "GET", "/index.html", &extra).status, 304);
    let modified = ask(nginx_addr, "GET", "/index.html", "").header("Last-Modified");
    let extra = format!(
        "If-Modified-Since: {}\r\n",
        modified.expect("Last-Modified")
    );
    let answer = ask(ferry.addr, "GET", "/index.html", &extra);
    assert_eq!(answer.status, 304);
    assert_eq!(answer.header("Content-Length"), None);
    assert!(answer.body.is_empty());
}

/// No spelling of `..` reaches outside the root; a FIFO in the root is not
/// opened into a hang; keep-alive carries on after each answer.
#[test]
fn paths_stay_inside_the_root_and_odd_files_do_not_wedge() {
    let root = document_root("static-escape");
    let fifo = root.join("www/pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let (ferry, _) = Ferry::start_config("static-escape", &servers(&root));
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/..%2f../secret.txt",
        "/..%2Fsecret.txt",
        "/docs/%2E%2E/%2E%2E/secret.txt",
    ] {
        let answer = ask(ferry.addr, "GET", path, "");
        assert!(
            answer.status == 400 || answer.status == 404,
            "{path}: {}",
            answer.status
        );
        assert!(!answer.text().contains("secret"), "{path}");
    }
    if made.is_ok_and(|s| s.success()) {
        let answer = util::within(Duration::from_secs(10), {
            let addr = ferry.addr;
            move || ask(addr, "GET", "/pipe", "").status
        });
        assert_eq!(answer, 404);
    }
    // Several answers on one connection, each whole.
    let mut stream = connect(ferry.addr);
    let mut requests = String::new();
    for path in ["/index.html", "/missing", "/docs", "/blob.bin", "/"] {
        requests.push_str(&format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n"));
    }
    stream.write_all(requests.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let statuses: Vec<u16> = (0..5)
        .map(|_| read_response(&mut reader, "GET").expect("an answer").status)
        .collect();
    assert_eq!(statuses, [200, 404, 301, 200, 200]);
}

/// A file larger than any buffer streams through the ring: the bytes are
/// the file's, and a client that stops reading holds ferry's memory flat.
#[test]
fn a_large_file_streams_with_flat_memory() {
    let root = document_root("static-large");
    let size: u64 = 192 * 1024 * 1024;
    {
        let mut file = std::fs::File::create(root.join("www/large.bin")).unwrap();
        let mut block = vec![0u8; 1 << 20];
        let mut offset = 0;
        while offset < size {
            util::pattern(offset, &mut block);
            file.write_all(&block).unwrap();
            offset += block.len() as u64;
        }
    }
    let (ferry, _) = Ferry::start_config("static-large", &servers(&root));
    let before = ferry.rss_kib();
    // A client that reads the head and a little, then stalls.
    let mut stalled = connect(ferry.addr);
    stalled
        .write_all(b"GET /large.bin HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 4096];
    let _ = stalled.read(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stalled_rss = ferry.rss_kib();
    // A client that takes it all.
    let mut stream = connect(ferry.addr);
    stream
        .write_all(b"GET /large.bin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, head) = util::read_head(&mut reader).expect("a head");
    assert_eq!(status, 200);
    assert!(head.contains(&format!("Content-Length: {size}")), "{head}");
    let (received, hash) = util::hash_until_closed(&mut reader, (0, util::Hash::default()));
    assert_eq!(received, size);
    assert_eq!(hash, util::Hash::of_pattern(size));
    let after = ferry.rss_kib();
    assert!(
        stalled_rss < before + 4 * 1024 && after < before + 8 * 1024,
        "RSS grew: {before} KiB, stalled {stalled_rss} KiB, after {after} KiB"
    );
    drop(stalled);
}

/// `try_files … @name` hands the request, unchanged, to a named location
/// that proxies it; an index file can be routed to another location; an
/// `internal` location is reached by `try_files` and not by clients.
#[test]
fn try_files_falls_back_to_a_named_location() {
    let root = document_root("static-named");
    let origin = util::Origin::standard();
    let www = root.join("www");
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {www};\n\
           location / {{ try_files $uri $uri/ @app; }}\n\
           location @app {{ proxy_pass http://{origin}; }}\n\
           location = /docs/index.html {{ return 200 \"index routed\\n\"; }}\n\
           location /old/ {{ try_files $uri /gone; }}\n\
           location = /gone {{ internal; return 200 \"internal reached\\n\"; }}\n\
         }}\n",
        www = www.display(),
        origin = origin.addr
    );
    let (ferry, _) = Ferry::start_config("static-named", &body);
    assert_eq!(
        ask(ferry.addr, "GET", "/index.html", "").text(),
        "<h1>home</h1>\n"
    );
    let proxied = ask(ferry.addr, "GET", "/api/users%20x?page=2", "");
    assert_eq!(proxied.status, 200);
    let seen = origin.requests();
    assert_eq!(
        seen.last().map(|r| r.path.as_str()),
        Some("/api/users%20x?page=2")
    );
    assert_eq!(
        ask(ferry.addr, "GET", "/docs/", "").text(),
        "index routed\n"
    );
    // An internal location: reached by try_files, not by clients.
    assert_eq!(
        ask(ferry.addr, "GET", "/old/page", "").text(),
        "internal reached\n"
    );
    assert_eq!(ask(ferry.addr, "GET", "/gone", "").status, 404);
}

#[test]
fn file_directives_nginx_refuses_or_ferry_lacks_are_refused() {
    let dir = util::scratch_dir("static-refused");
    for (body, message) in [
        (
            "location / { root /tmp; alias /tmp/; }",
            "\"alias\" directive is duplicate, \"root\" directive was specified earlier",
        ),
        (
            "location / { autoindex on; }",
            "\"autoindex on\" is not supported yet",
        ),
        (
            "location / { location @x { } }",
            "named location \"@x\" can be on the server level only",
        ),
        (
            "location / { try_files $uri =404; proxy_pass http://127.0.0.1:1; }",
            "\"try_files\" with \"proxy_pass\" in one location is not supported yet",
        ),
        (
            "location / { root /srv/$host; }",
            "variables in \"root\" are not supported yet",
        ),
        (
            "location / { if_modified_since later; }",
            "invalid value \"later\"",
        ),
    ] {
        util::assert_ferry_refuses(&dir, body, message);
    }
}

/// `expires` on proxied responses and ferry's own: the upstream's
/// `Expires` and `Cache-Control` give way on success codes and stay on
/// others, as in nginx.
#[test]
fn expires_replaces_the_upstream_s_cache_fields_as_nginx_does() {
    let origin = util::Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let status = if request.path == "/missing" {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nCache-Control: no-store\r\nExpires: 0\r\n\
                 Content-Length: 2\r\n\r\nok"
            );
            if !conn.send(head.as_bytes()) {
                break;
            }
        }
    });
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           expires 10m;\n\
           location / {{ proxy_pass http://{}; }}\n\
           location = /moved {{ return 302 /elsewhere; }}\n\
         }}\n",
        origin.addr
    );
    let (ferry, _) = Ferry::start_config("static-expires", &body);
    let fields = |addr: SocketAddr, path: &str| {
        let answer = ask(addr, "GET", path, "");
        (
            answer.status,
            answer.header("Cache-Control"),
            answer.head.matches("Cache-Control").count(),
            answer.head.matches("Expires").count(),
        )
    };
    let expected = [
        (200, Some("max-age=600".to_string()), 1, 1),
        (404, Some("no-store".to_string()), 1, 1),
        (302, Some("max-age=600".to_string()), 1, 1),
    ];
    let from_ferry = ["/page", "/missing", "/moved"].map(|path| fields(ferry.addr, path));
    assert_eq!(from_ferry, expected);
    if let Some(nginx) = require_tool("nginx") {
        let port = free_port();
        let nginx = Nginx::start_http(
            &nginx,
            "static-expires",
            &body.replace("PORT", &port.to_string()),
            port,
        );
        let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
        let from_nginx = ["/page", "/missing", "/moved"].map(|path| fields(addr, path));
        assert_eq!(from_ferry, from_nginx);
    }
}

/// `charset utf-8`: the name joins the `Content-Type` of files, ferry's
/// own answers and proxied answers of the listed types that name none.
#[test]
fn charset_names_the_character_set_as_nginx_does() {
    let root = document_root("static-charset");
    let origin = util::Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let content_type = match request.path.as_str() {
                "/up/latin" => "text/html; charset=iso-8859-1",
                "/up/json" => "application/json",
                _ => "text/html",
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: 2\r\n\r\nok"
            );
            if !conn.send(head.as_bytes()) {
                break;
            }
        }
    });
    let body = format!(
        "types {{ text/html html; text/css css; }}\n\
         server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {www};\n\
           charset utf-8;\n\
           location / {{ }}\n\
           location /up/ {{ proxy_pass http://{origin}; }}\n\
           location = /said {{ return 200 \"hi\\n\"; }}\n\
           location /css/ {{ charset_types text/css; alias {www}/; }}\n\
         }}\n",
        www = root.join("www").display(),
        origin = origin.addr
    );
    let (ferry, _) = Ferry::start_config("static-charset", &body);
    let paths = [
        "/index.html",
        "/style.CSS",
        "/missing",
        "/said",
        "/up/html",
        "/up/latin",
        "/up/json",
        "/css/style.CSS",
        "/css/index.html",
    ];
    let types = |addr: SocketAddr| {
        paths.map(|path| {
            ask(addr, "GET", path, "")
                .header("Content-Type")
                .unwrap_or_default()
        })
    };
    let from_ferry = types(ferry.addr);
    assert_eq!(
        from_ferry,
        [
            "text/html; charset=utf-8",
            "text/css",
            "text/html; charset=utf-8",
            "text/plain; charset=utf-8",
            "text/html; charset=utf-8",
            "text/html; charset=iso-8859-1",
            "application/json",
            "text/css; charset=utf-8",
            // "in addition to text/html", as nginx's documentation says.
            "text/html; charset=utf-8",
        ]
    );
    if let Some(nginx) = require_tool("nginx") {
        let port = free_port();
        let nginx = Nginx::start_http(
            &nginx,
            "static-charset",
            &body.replace("PORT", &port.to_string()),
            port,
        );
        let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
        assert_eq!(from_ferry, types(addr));
    }
}

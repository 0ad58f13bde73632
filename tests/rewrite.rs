//! The rewrite module (`rewrite`, `break`, `if` with `rewrite` inside,
//! `return`), ferry and nginx on one file: the same statuses, redirects,
//! routed uris and arguments, and the same path sent upstream.

mod util;

use std::net::SocketAddr;

use util::{free_port, require_tool, Ferry, Nginx};

fn site(root: &std::path::Path, origin: SocketAddr) -> String {
    format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {root};\n\
           rewrite ^/old/(.*)$ /new/$1 permanent;\n\
           rewrite ^/legacy$ /index.html;\n\
           location /new/ {{ return 200 \"new uri=$uri args=$args\\n\"; }}\n\
           location /blog/ {{ rewrite ^/blog/(\\d+)$ /posts?id=$1 last; return 404; }}\n\
           location /posts {{ return 200 \"posts args=$args id=$arg_id\\n\"; }}\n\
           location /api/ {{ rewrite ^/api/(.*)$ /v2/$1 break; proxy_pass http://{origin}; }}\n\
           location /b/ {{ rewrite ^/b/(.*)$ /$1; }}\n\
           location /stay/ {{ rewrite ^/stay/(.*)$ /$1 break; return 403; }}\n\
           location /brk/ {{ break; return 403; }}\n\
           location /ext/ {{ rewrite ^/ext/(.*)$ https://example.com/$1?src=ext; }}\n\
           location /scheme/ {{ rewrite ^ $scheme://$host/moved; }}\n\
           location /q/ {{ rewrite ^/q/(.*)$ /posts?x=$1? last; }}\n\
           location /loop/ {{ rewrite ^/loop/(.*)$ /loop/$1 last; }}\n\
           location /cond/ {{ if ($arg_go) {{ rewrite ^ /posts last; }} return 200 \"no go\\n\"; }}\n\
           location ~ \\.txt$ {{ return 200 \"a text file\\n\"; }}\n\
         }}\n",
        root = root.display()
    )
}

const PATHS: &[&str] = &[
    "/old/x?a=1",
    "/legacy",
    "/blog/5?a=1",
    "/blog/x",
    "/api/users?page=2",
    "/b/index.html",
    "/stay/index.html",
    "/brk/",
    "/ext/p?q=1",
    "/scheme/x",
    "/q/zz?a=1",
    "/loop/x",
    "/cond/?go=1",
    "/cond/",
    "/notes.txt",
    "/notesXtxt",
];

fn answers(addr: SocketAddr, port: u16) -> Vec<String> {
    PATHS
        .iter()
        .map(|path| {
            let response = util::request(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
            );
            let body = if response.text().contains("<hr><center>") {
                String::new()
            } else {
                response.text()
            };
            format!(
                "{path} -> {} {} {}",
                response.status,
                response
                    .header("Location")
                    .unwrap_or_default()
                    .replace(&port.to_string(), "PORT"),
                body
            )
        })
        .collect()
}

#[test]
fn rewrites_route_and_redirect_as_nginx_s_do() {
    let dir = util::scratch_dir("rewrite");
    std::fs::write(dir.join("index.html"), "<h1>home</h1>\n").unwrap();
    let origin = util::Origin::standard();
    let body = site(&dir, origin.addr);
    let (ferry, _) = Ferry::start_config("rewrite", &body);
    let from_ferry = answers(ferry.addr, ferry.addr.port());
    let expected = [
        "/old/x?a=1 -> 301 http://localhost:PORT/new/x?a=1 ",
        "/legacy -> 200  <h1>home</h1>\n",
        "/blog/5?a=1 -> 200  posts args=id=5&a=1 id=5\n",
        "/blog/x -> 404  ",
        "/api/users?page=2 -> 200  hello",
        "/b/index.html -> 200  <h1>home</h1>\n",
        "/stay/index.html -> 200  <h1>home</h1>\n",
        "/brk/ -> 404  ",
        "/ext/p?q=1 -> 302 https://example.com/p?src=ext&q=1 ",
        "/scheme/x -> 302 http://localhost/moved ",
        "/q/zz?a=1 -> 200  posts args=x=zz id=\n",
        "/loop/x -> 500  ",
        "/cond/?go=1 -> 200  posts args=go=1 id=\n",
        "/cond/ -> 200  no go\n",
        "/notes.txt -> 200  a text file\n",
        "/notesXtxt -> 404  ",
    ];
    assert_eq!(from_ferry, expected);
    // `break` kept the location: the rewritten path went upstream, with
    // the request's arguments.
    let seen = origin.requests();
    assert_eq!(
        seen.last().map(|r| r.path.as_str()),
        Some("/v2/users?page=2")
    );
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "rewrite",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    assert_eq!(from_ferry, answers(addr, nginx.port));
    assert_eq!(
        origin.requests().last().map(|r| r.path.as_str()),
        Some("/v2/users?page=2")
    );
}

#[test]
fn rewrite_lines_nginx_refuses_are_refused() {
    let dir = util::scratch_dir("rewrite-refused");
    for (body, message) in [
        ("rewrite ^/a /b sideways;", "invalid parameter \"sideways\""),
        ("rewrite ^/(a /b;", "invalid regular expression"),
        (
            "location / { if ($host) { proxy_pass http://127.0.0.1:1; } }",
            "\"proxy_pass\" inside \"if\" is not supported yet",
        ),
        (
            "location / { if ($host) { limit_rate 10k; } }",
            "\"limit_rate\" inside \"if\" is not supported yet",
        ),
        ("set $host x;", "the duplicate \"host\" variable"),
    ] {
        util::assert_ferry_refuses(&dir, body, message);
    }
}

/// `if (-f …)`, `-d`, `-e`, `-x` and their negations on `$request_filename`
/// and `$document_root`: the maintenance-page and front-controller
/// patterns, beside nginx.
#[test]
fn file_tests_in_if_decide_as_nginx_s_do() {
    use std::os::unix::fs::PermissionsExt;
    let dir = util::scratch_dir("rewrite-files");
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::create_dir_all(dir.join("d/sub")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>front</h1>\n").unwrap();
    std::fs::write(dir.join("app/real.txt"), "real\n").unwrap();
    std::fs::write(dir.join("d/file"), "f\n").unwrap();
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {root};\n\
           if (-f $document_root/maintenance.html) {{ return 503; }}\n\
           location /app/ {{ if (!-f $request_filename) {{ rewrite ^ /index.html last; }} }}\n\
           location /d/ {{\n\
             if (-d $request_filename) {{ return 200 \"dir\\n\"; }}\n\
             if (-e $request_filename) {{ return 200 \"exists\\n\"; }}\n\
             return 200 \"none\\n\";\n\
           }}\n\
           location = /run.sh {{ if (-x $request_filename) {{ return 200 \"exec\\n\"; }} }}\n\
           location = /index.html {{ }}\n\
         }}\n",
        root = dir.display()
    );
    let paths = [
        "/app/real.txt",
        "/app/route/x",
        "/d/sub",
        "/d/file",
        "/d/none",
        "/run.sh",
        "/index.html",
    ];
    let answers = |addr: SocketAddr| {
        paths
            .iter()
            .map(|path| {
                let response = util::request(
                    addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
                );
                format!("{path} {} {}", response.status, response.text())
            })
            .collect::<Vec<_>>()
    };
    let (ferry, _) = Ferry::start_config("rewrite-files", &body);
    let nginx = require_tool("nginx").map(|nginx| {
        let port = free_port();
        Nginx::start_http(
            &nginx,
            "rewrite-files",
            &body.replace("PORT", &port.to_string()),
            port,
        )
    });
    let nginx_addr = nginx
        .as_ref()
        .map(|n| SocketAddr::from(([127, 0, 0, 1], n.port)));
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry,
        [
            "/app/real.txt 200 real\n",
            "/app/route/x 200 <h1>front</h1>\n",
            "/d/sub 200 dir\n",
            "/d/file 200 exists\n",
            "/d/none 200 none\n",
            "/run.sh 200 exec\n",
            "/index.html 200 <h1>front</h1>\n",
        ]
    );
    if let Some(addr) = nginx_addr {
        assert_eq!(from_ferry, answers(addr));
    }
    // Maintenance: the page's presence alone turns every answer into 503.
    std::fs::write(dir.join("maintenance.html"), "soon\n").unwrap();
    let statuses = |addr: SocketAddr| {
        answers(addr)
            .iter()
            .map(|line| line.split(' ').nth(1).unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(statuses(ferry.addr).iter().all(|s| s == "503"));
    if let Some(addr) = nginx_addr {
        assert_eq!(statuses(ferry.addr), statuses(addr));
    }
}

/// `set`: values with variables and captures, in `if`s, read by `return`,
/// `proxy_set_header`, later `set`s and conditions; unset ones are empty;
/// each request starts afresh.
#[test]
fn set_variables_as_nginx_s() {
    let origin = util::Origin::standard();
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           set $site main;\n\
           location /a/ {{\n\
             set $who \"guest\";\n\
             if ($arg_user) {{ set $who $arg_user; }}\n\
             set $greeting \"hello $who on $site\";\n\
             return 200 \"$greeting ($later)\\n\";\n\
           }}\n\
           location /b/ {{\n\
             rewrite ^/b/(\\w+)$ /c/$1;\n\
           }}\n\
           location /c/ {{\n\
             set $item $uri;\n\
             if ($item ~ /c/special) {{ set $site special; }}\n\
             return 200 \"item=$item site=$site\\n\";\n\
           }}\n\
           location /up/ {{\n\
             set $tag \"t-$request_method\";\n\
             set $later \"not here\";\n\
             proxy_set_header X-Tag $tag;\n\
             proxy_pass http://{}/;\n\
           }}\n\
         }}\n",
        origin.addr
    );
    let paths = ["/a/", "/a/?user=ann", "/b/plain", "/b/special", "/a/"];
    let answers = |addr: SocketAddr| {
        let mut stream = util::connect(addr);
        use std::io::Write;
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        paths
            .iter()
            .map(|path| {
                // One connection: values must not leak between requests.
                stream
                    .write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
                    .unwrap();
                util::read_response(&mut reader, "GET").unwrap().text()
            })
            .collect::<Vec<_>>()
    };
    let (ferry, _) = Ferry::start_config("rewrite-set", &body);
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry,
        [
            "hello guest on main ()\n",
            "hello ann on main ()\n",
            "item=/c/plain site=main\n",
            "item=/c/special site=special\n",
            "hello guest on main ()\n",
        ]
    );
    let echoed = util::request(
        ferry.addr,
        "GET /up/echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert!(echoed.text().contains("X-Tag: t-GET"), "{}", echoed.text());
    if let Some(nginx) = require_tool("nginx") {
        let port = free_port();
        let nginx = Nginx::start_http(
            &nginx,
            "rewrite-set",
            &body.replace("PORT", &port.to_string()),
            port,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(from_ferry, answers(addr));
    }
}

/// `$cookie_NAME`, `$is_args`, `$content_type`, `$content_length` and
/// `$ssl_early_data` as nginx reads them: cookies by name without case,
/// spaces around `=`, over several `Cookie` fields; `?` only when there are
/// arguments (also the ones a rewrite gave); the request's fields as sent;
/// no early data.
#[test]
fn request_variables_read_as_nginx_s() {
    let body = "server {\n\
           listen 127.0.0.1:PORT;\n\
           location /v/ {\n\
             return 200 \"session=[$cookie_session] a=[$cookie_a] is_args=[$is_args] \
                           type=[$content_type] length=[$content_length] early=[$ssl_early_data]\\n\";\n\
           }\n\
           location /r/ { rewrite ^/r/(.*)$ /v/?x=$1; }\n\
           location /back/ { return 302 /v/$is_args$args; }\n\
         }\n";
    let requests = [
        "GET /v/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /v/?a=1 HTTP/1.1\r\nHost: h\r\nCookie: a=1; session=abc\r\n\r\n",
        "GET /v/? HTTP/1.1\r\nHost: h\r\nCookie: sessionid=x; SESSION = up\r\n\r\n",
        "GET /v/ HTTP/1.1\r\nHost: h\r\nCookie: x=1\r\nCookie: session=second;a=2\r\n\r\n",
        "GET /v/ HTTP/1.1\r\nHost: h\r\nCookie: session=;a\r\n\r\n",
        "POST /v/ HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        "GET /r/zz HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /back/?p=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /back/ HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    let answers = |addr: SocketAddr| {
        requests
            .iter()
            .map(|raw| {
                let raw = raw.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
                let response = util::request(addr, &raw);
                match response.header("location") {
                    // The path: the port differs between the two servers.
                    Some(location) => {
                        let path = location.find("/v/").map_or("", |at| &location[at..]);
                        format!("{} {path}", response.status)
                    }
                    None => format!("{} {}", response.status, response.text()),
                }
            })
            .collect::<Vec<_>>()
    };
    let (ferry, _) = Ferry::start_config("request-variables", body);
    let from_ferry = answers(ferry.addr);
    let empty = "type=[] length=[] early=[]";
    assert_eq!(
        from_ferry,
        [
            format!("200 session=[] a=[] is_args=[] {empty}\n"),
            format!("200 session=[abc] a=[1] is_args=[?] {empty}\n"),
            format!("200 session=[up] a=[] is_args=[] {empty}\n"),
            format!("200 session=[second] a=[2] is_args=[] {empty}\n"),
            format!("200 session=[] a=[] is_args=[] {empty}\n"),
            "200 session=[] a=[] is_args=[] type=[text/plain] length=[5] early=[]\n".to_string(),
            format!("200 session=[] a=[] is_args=[?] {empty}\n"),
            "302 /v/?p=1".to_string(),
            "302 /v/".to_string(),
        ]
    );
    if let Some((_nginx, addr)) = Nginx::beside("request-variables", body) {
        assert_eq!(from_ferry, answers(addr));
    }
}

/// `$1`…`$9` from a `location ~`, an `if`'s `~` and a `rewrite`, read by
/// `return`, `set` and later lines, as nginx keeps them.
#[test]
fn regex_captures_reach_the_lines_after_them() {
    let body = "server {\n\
           listen 127.0.0.1:PORT;\n\
           location ~ ^/u/(\\d+)/(\\w+)$ { return 200 \"user $1 tab $2\\n\"; }\n\
           location /old/ { if ($uri ~ ^/old/(.*)$) { return 301 /new/$1; } }\n\
           location /c/ {\n\
             if ($http_cookie ~* \"id=([^;]+)\") { set $id $1; }\n\
             return 200 \"id=$id\\n\";\n\
           }\n\
           location /t/ {\n\
             if ($uri ~ ^/t/(\\w+)) { set $word $1; }\n\
             return 200 \"word=$word last=$1\\n\";\n\
           }\n\
         }\n";
    let cases = [
        ("/u/42/posts", ""),
        ("/old/a/b?q=1", ""),
        ("/c/", "Cookie: lang=en; id=abc123; x=y\r\n"),
        ("/c/", ""),
        ("/t/hello", ""),
    ];
    let answers = |addr: SocketAddr, port: u16| {
        cases
            .iter()
            .map(|(path, extra)| answer(addr, port, path, extra))
            .collect::<Vec<_>>()
    };
    let (ferry, _) = Ferry::start_config("rewrite-captures", body);
    let from_ferry = answers(ferry.addr, ferry.addr.port());
    assert_eq!(
        from_ferry,
        [
            "200  user 42 tab posts\n",
            "301 http://h:PORT/new/a/b ",
            "200  id=abc123\n",
            "200  id=\n",
            "200  word=hello last=hello\n",
        ]
    );
    same_from_nginx("rewrite-captures", body, &from_ferry, answers);
}

/// A `map` value reads its regex key's groups: the redirect-map pattern.
#[test]
fn map_values_read_their_regex_groups() {
    let body = "map $uri $moved {\n\
           ~^/old/(\\w+)/(\\d+)$ /new/$2/$1;\n\
           ~*^/LEGACY/(.*)$ /archive/$1;\n\
           default \"\";\n\
         }\n\
         server {\n\
           listen 127.0.0.1:PORT;\n\
           location / {\n\
             if ($moved) { return 301 $moved; }\n\
             return 200 \"stay $uri\\n\";\n\
           }\n\
         }\n";
    let paths = ["/old/post/42", "/legacy/a/b", "/old/x/y", "/here"];
    let answers = |addr: SocketAddr, port: u16| {
        paths
            .iter()
            .map(|path| answer(addr, port, path, ""))
            .collect::<Vec<_>>()
    };
    let (ferry, _) = Ferry::start_config("map-captures", body);
    let from_ferry = answers(ferry.addr, ferry.addr.port());
    assert_eq!(
        from_ferry,
        [
            "301 http://h:PORT/new/42/post ",
            "301 http://h:PORT/archive/a/b ",
            "200  stay /old/x/y\n",
            "200  stay /here\n",
        ]
    );
    same_from_nginx("map-captures", body, &from_ferry, answers);
}

/// `path` with `extra` fields: the status, the Location (its port masked)
/// and a 200's body.
fn answer(addr: SocketAddr, port: u16, path: &str, extra: &str) -> String {
    let response = util::request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n"),
    );
    let location = response
        .header("Location")
        .unwrap_or_default()
        .replace(&port.to_string(), "PORT");
    let body = if response.status == 200 {
        response.text()
    } else {
        String::new()
    };
    format!("{} {location} {body}", response.status)
}

/// Runs `body` on nginx (when it is installed) and requires the answers
/// ferry gave.
fn same_from_nginx(
    name: &str,
    body: &str,
    from_ferry: &[String],
    answers: impl Fn(SocketAddr, u16) -> Vec<String>,
) {
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(&nginx, name, &body.replace("PORT", &port.to_string()), port);
    let addr = SocketAddr::from(([127, 0, 0, 1], nginx.port));
    assert_eq!(from_ferry, answers(addr, nginx.port));
}

/// `add_header` inside `if`: nginx makes the block a location of its own,
/// so a request whose condition held gets the block's headers instead of
/// the location's (the CORS preflight block of countless API configs), also
/// after a `rewrite … break` in the block; a server's `if` answers without
/// the location's. Compared with nginx (which allows `add_header` in an
/// `if` inside a location only, as ferry does).
#[test]
fn add_header_inside_if_replaces_the_location_s_as_in_nginx() {
    let origin = util::Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let body = format!("origin {}\n", request.path);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if !(conn.send(head.as_bytes()) && conn.send(body.as_bytes())) {
                return;
            }
        }
    });
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           if ($arg_moved) {{ return 301 /new; }}\n\
           location /api/ {{\n\
             if ($request_method = 'OPTIONS') {{\n\
               add_header 'Access-Control-Allow-Origin' '*';\n\
               add_header 'Access-Control-Allow-Methods' 'GET, POST, OPTIONS';\n\
               add_header 'Access-Control-Max-Age' 1728000;\n\
               add_header 'Content-Type' 'text/plain; charset=utf-8';\n\
               return 204;\n\
             }}\n\
             add_header 'Access-Control-Allow-Origin' '*' always;\n\
             add_header X-Outer yes;\n\
             proxy_pass http://{origin};\n\
           }}\n\
           location /flag/ {{\n\
             if ($arg_debug) {{ add_header X-Debug on; }}\n\
             add_header X-Outer yes;\n\
             proxy_pass http://{origin};\n\
           }}\n\
           location /stay/ {{\n\
             if ($arg_go) {{ add_header X-Stay kept; rewrite ^ /stayed break; }}\n\
             add_header X-Outer yes;\n\
             proxy_pass http://{origin};\n\
           }}\n\
         }}\n",
        origin = origin.addr
    );
    let requests = [
        "OPTIONS /api/items HTTP/1.1",
        "GET /api/items HTTP/1.1",
        "GET /flag/ HTTP/1.1",
        "GET /flag/?debug=1 HTTP/1.1",
        "GET /stay/?go=1 HTTP/1.1",
        "GET /stay/ HTTP/1.1",
        "GET /api/?moved=1 HTTP/1.1",
    ];
    let fields = [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-max-age",
        "content-type",
        "x-outer",
        "x-debug",
        "x-stay",
        "x-moved",
        "location",
    ];
    let answers = |addr: SocketAddr| {
        requests
            .iter()
            .map(|line| {
                let response = util::request(
                    addr,
                    &format!("{line}\r\nHost: h\r\nConnection: close\r\n\r\n"),
                );
                let mut seen: Vec<String> = response
                    .head
                    .lines()
                    .skip(1)
                    .filter_map(|field| field.split_once(": "))
                    .filter(|(name, _)| fields.contains(&name.to_ascii_lowercase().as_str()))
                    .map(|(name, value)| {
                        let name = name.to_ascii_lowercase();
                        // The redirect's scheme and port differ per server.
                        let value = match name.as_str() {
                            "location" => value.rsplit_once('/').map_or(value, |(_, p)| p),
                            _ => value,
                        };
                        format!("{name}={value}")
                    })
                    .collect();
                seen.sort();
                let text = if response.status == 200 {
                    response.text()
                } else {
                    String::new()
                };
                format!(
                    "{line} -> {} {} {}",
                    response.status,
                    seen.join(" "),
                    text.trim_end()
                )
            })
            .collect::<Vec<_>>()
    };
    let (ferry, _) = Ferry::start_config("add-header-if", &body);
    let from_ferry = answers(ferry.addr);
    let expected = [
        "OPTIONS /api/items HTTP/1.1 -> 204 access-control-allow-methods=GET, POST, OPTIONS \
         access-control-allow-origin=* access-control-max-age=1728000 \
         content-type=text/plain; charset=utf-8 ",
        "GET /api/items HTTP/1.1 -> 200 access-control-allow-origin=* content-type=text/plain \
         x-outer=yes origin /api/items",
        "GET /flag/ HTTP/1.1 -> 200 content-type=text/plain x-outer=yes origin /flag/",
        "GET /flag/?debug=1 HTTP/1.1 -> 200 content-type=text/plain x-debug=on origin /flag/?debug=1",
        "GET /stay/?go=1 HTTP/1.1 -> 200 content-type=text/plain x-stay=kept origin /stayed?go=1",
        "GET /stay/ HTTP/1.1 -> 200 content-type=text/plain x-outer=yes origin /stay/",
        "GET /api/?moved=1 HTTP/1.1 -> 301 content-type=text/html location=new ",
    ];
    if let Some((_nginx, addr)) = Nginx::beside("add-header-if", &body) {
        assert_eq!(from_ferry, answers(addr));
    }
    assert_eq!(from_ferry, expected);
}

/// `$hostname`: the machine's name, lower-cased, as nginx gives it
/// (`add_header X-Served-By $hostname;` in many configs).
#[test]
fn hostname_is_the_machine_s_as_nginx_gives_it() {
    let body = "server {\n listen 127.0.0.1:PORT;\n\
                  location / { add_header X-Served-By $hostname; return 200 \"$hostname\\n\"; }\n\
                }\n";
    let answer = |addr: SocketAddr| {
        let response = util::request(
            addr,
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        (response.header("x-served-by"), response.text())
    };
    let (ferry, _) = Ferry::start_config("hostname", body);
    let (field, text) = answer(ferry.addr);
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_lowercase();
    assert!(!machine.is_empty());
    assert_eq!(text, format!("{machine}\n"));
    assert_eq!(field.as_deref(), Some(machine.as_str()));
    if let Some((_nginx, addr)) = Nginx::beside("hostname", body) {
        assert_eq!(answer(addr), (field, text));
    }
}

//! Routing and balancing end to end, on generated nginx.conf files: servers
//! by name, locations by nginx's priorities, proxy_pass URI replacement,
//! `return`, and upstream groups (weights, least_conn, ip_hash, hash, down,
//! backup, failover, "no live upstreams").

mod util;

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::*;

fn get(ferry: &Ferry, path: &str, host: &str) -> Response {
    request(
        ferry.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
}

/// An origin that answers with its own name and the path it received.
fn named_origin(name: &'static str) -> Origin {
    Origin::start(move |mut conn| {
        while let Some(request) = conn.next_request() {
            let body = format!("{name} {}", request.path);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if !conn.send(head.as_bytes()) || !conn.send(body.as_bytes()) {
                return;
            }
        }
    })
}

#[test]
fn servers_are_chosen_by_host() {
    let (a, b) = (named_origin("a"), named_origin("b"));
    let (ferry, dir) = Ferry::start_config(
        "servers",
        &format!(
            "server {{ listen 127.0.0.1:PORT; server_name a.test *.a.test; location / {{ proxy_pass http://{}; }} }}\n\
             server {{ listen 127.0.0.1:PORT default_server; server_name b.test; location / {{ proxy_pass http://{}; }} }}\n\
             server {{ listen 127.0.0.1:PORT; server_name ~^api\\.; location / {{ return 200 regex; }} }}",
            a.addr, b.addr
        ),
    );
    assert_eq!(get(&ferry, "/x", "a.test").text(), "a /x");
    assert_eq!(get(&ferry, "/x", "www.a.test:80").text(), "a /x");
    assert_eq!(get(&ferry, "/x", "b.test").text(), "b /x");
    assert_eq!(get(&ferry, "/x", "api.anything").text(), "regex");
    assert_eq!(
        get(&ferry, "/x", "unknown.test").text(),
        "b /x",
        "default_server"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn locations_return_and_uri_replacement() {
    let origin = named_origin("o");
    let (ferry, dir) = Ferry::start_config(
        "locations",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location = /exact {{ return 200 exact; }}\n\
             location /app/ {{ proxy_pass http://{0}/backend/; }}\n\
             location /raw/ {{ proxy_pass http://{0}; }}\n\
             location ^~ /static/ {{ return 200 static; }}\n\
             location ~* \\.php$ {{ return 403; }}\n\
             location /old {{ return 301 http://example.test/new; }}\n\
             }}",
            origin.addr
        ),
    );
    assert_eq!(get(&ferry, "/exact", "h").text(), "exact");
    assert_eq!(
        get(&ferry, "/app/x/y?q=1", "h").text(),
        "o /backend/x/y?q=1"
    );
    assert_eq!(get(&ferry, "/raw/x?q=1", "h").text(), "o /raw/x?q=1");
    assert_eq!(
        get(&ferry, "/static/a.php", "h").text(),
        "static",
        "^~ stops regexes"
    );
    let forbidden = get(&ferry, "/app/index.PHP", "h");
    assert_eq!(forbidden.status, 403, "regex beats prefix");
    let redirect = get(&ferry, "/old", "h");
    assert_eq!(redirect.status, 301);
    assert_eq!(
        redirect.header("location").as_deref(),
        Some("http://example.test/new")
    );
    let missing = get(&ferry, "/nowhere", "h");
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("404 Not Found"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Origins that count requests per name, in order.
fn counting_origins(names: &[&'static str]) -> (Vec<Origin>, Arc<Mutex<String>>) {
    let order = Arc::new(Mutex::new(String::new()));
    let origins = names
        .iter()
        .map(|&name| {
            let order = order.clone();
            Origin::start(move |mut conn| {
                while conn.next_request().is_some() {
                    order.lock().unwrap().push_str(name);
                    if !conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") {
                        return;
                    }
                }
            })
        })
        .collect();
    (origins, order)
}

#[test]
fn weights_interleave_like_nginx() {
    let (origins, order) = counting_origins(&["A", "B"]);
    let (ferry, dir) = Ferry::start_config(
        "weights",
        &format!(
            "upstream pool {{ server {} weight=3; server {}; }}\n\
             server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://pool; }} }}",
            origins[0].addr, origins[1].addr
        ),
    );
    let stream = ferry.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..400 {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut reader, "GET").unwrap().status, 200);
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.matches('A').count(), 300);
    assert_eq!(order.matches('B').count(), 100);
    assert_eq!(order, "AABA".repeat(100), "nginx's smooth interleaving");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn least_conn_prefers_the_idle_server() {
    // "slow" holds its first request for a while; meanwhile every other
    // request must go to "fast".
    let fast_count = Arc::new(AtomicUsize::new(0));
    let counter = fast_count.clone();
    let fast = Origin::start(move |mut conn| {
        while conn.next_request().is_some() {
            counter.fetch_add(1, Ordering::SeqCst);
            if !conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast") {
                return;
            }
        }
    });
    let slow = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            std::thread::sleep(Duration::from_millis(1500));
            if !conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow") {
                return;
            }
        }
    });
    let (ferry, dir) = Ferry::start_config(
        "least_conn",
        &format!(
            "upstream pool {{ least_conn; server {}; server {}; }}\n\
             server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://pool; }} }}",
            slow.addr, fast.addr
        ),
    );
    // The first pick of a tie goes to the first server: "slow".
    let mut busy = ferry.connect();
    busy.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..10 {
        assert_eq!(get(&ferry, "/", "h").text(), "fast");
    }
    let slow_answer = read_response(&mut BufReader::new(busy), "GET").unwrap();
    assert_eq!(slow_answer.text(), "slow");
    assert_eq!(fast_count.load(Ordering::SeqCst), 10);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hash_keys_stick_to_one_server() {
    let (origins, order) = counting_origins(&["A", "B", "C"]);
    let servers: String = origins
        .iter()
        .map(|o| format!("server {};", o.addr))
        .collect();
    let (ferry, dir) = Ferry::start_config(
        "hash",
        &format!(
            "upstream pool {{ hash $request_uri consistent; {servers} }}\n\
             upstream sticky {{ ip_hash; {servers} }}\n\
             server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://pool; }} location /ip/ {{ proxy_pass http://sticky; }} }}"
        ),
    );
    for key in 0..20 {
        order.lock().unwrap().clear();
        for _ in 0..5 {
            assert_eq!(get(&ferry, &format!("/item/{key}"), "h").status, 200);
        }
        let seen = order.lock().unwrap().clone();
        assert!(
            seen.chars().all(|c| seen.starts_with(c)),
            "key {key} moved: {seen}"
        );
    }
    order.lock().unwrap().clear();
    for i in 0..10 {
        get(&ferry, &format!("/ip/{i}"), "h");
    }
    let seen = order.lock().unwrap().clone();
    assert!(
        seen.chars().all(|c| seen.starts_with(c)),
        "ip_hash moved: {seen}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn down_and_dead_servers_fail_over_without_client_errors() {
    let (origins, order) = counting_origins(&["A", "B"]);
    let dead = dead_address();
    let (ferry, dir) = Ferry::start_config(
        "failover",
        &format!(
            "upstream pool {{ server {} down; server {dead} max_fails=1 fail_timeout=10s; server {}; }}\n\
             server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://pool; }} }}",
            origins[0].addr, origins[1].addr
        ),
    );
    for _ in 0..20 {
        assert_eq!(get(&ferry, "/", "h").status, 200);
    }
    let order = order.lock().unwrap().clone();
    assert!(!order.contains('A'), "a down server got traffic: {order}");
    assert_eq!(order.len(), 20);
    // One connect error was logged, then the dead server was left alone.
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(3),
        "upstream server temporarily disabled"
    ));
    let refused = ferry
        .stderr()
        .iter()
        .filter(|l| l.contains("connect() to upstream failed"))
        .count();
    assert_eq!(refused, 1, "{:?}", ferry.stderr());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn backup_serves_only_while_every_primary_is_down_and_primaries_return() {
    let backup = named_origin("backup");
    // The primary's port is free at first (connections refused), then taken
    // by a real origin once the test wants the primary back.
    let primary_port = free_port();
    let (ferry, dir) = Ferry::start_config(
        "backup",
        &format!(
            "upstream pool {{ server 127.0.0.1:{primary_port} max_fails=1 fail_timeout=1s; server {} backup; }}\n\
             server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://pool; }} }}",
            backup.addr
        ),
    );
    for _ in 0..5 {
        assert_eq!(get(&ferry, "/", "h").text(), "backup /");
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", primary_port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut stream = stream;
            while read_request(&mut reader).is_some() {
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nprimary")
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(1200));
    for _ in 0..5 {
        assert_eq!(
            get(&ferry, "/", "h").text(),
            "primary",
            "primary back after fail_timeout"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn all_servers_down_gives_502_and_no_live_upstreams() {
    let (ferry, dir) = Ferry::start_config(
        "alldown",
        &format!(
            "upstream pool {{ server {} max_fails=1; server {} max_fails=1; }}\n\
             server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://pool; }} }}",
            dead_address(),
            dead_address()
        ),
    );
    assert_eq!(get(&ferry, "/", "h").status, 502);
    assert_eq!(get(&ferry, "/", "h").status, 502);
    assert!(ferry.wait_for_stderr(Duration::from_secs(3), "no live upstreams"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn next_upstream_on_503_when_configured() {
    let failing = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            if !conn.send(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy") {
                return;
            }
        }
    });
    let healthy = named_origin("healthy");
    let (ferry, dir) = Ferry::start_config(
        "next503",
        &format!(
            "upstream pool {{ server {}; server {}; }}\n\
             server {{ listen 127.0.0.1:PORT;\n\
             location /retry/ {{ proxy_pass http://pool; proxy_next_upstream error timeout http_503; }}\n\
             location / {{ proxy_pass http://pool; }} }}",
            failing.addr, healthy.addr
        ),
    );
    // Without http_503 in the list, the 503 passes through as it is (and
    // does not count against the server).
    let statuses: Vec<u16> = (0..4).map(|_| get(&ferry, "/plain", "h").status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        2,
        "{statuses:?}"
    );
    for _ in 0..6 {
        assert_eq!(get(&ferry, "/retry/x", "h").text(), "healthy /retry/x");
    }
    // With it, the 503 was a failed attempt (nginx: http_503 counts when
    // listed): the server is left alone for fail_timeout, for every location.
    let statuses: Vec<u16> = (0..4).map(|_| get(&ferry, "/plain", "h").status).collect();
    assert_eq!(statuses, [200; 4]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn headers_set_hidden_and_added_with_nginx_inheritance() {
    let origin = Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let body = request.head.clone();
            let status = if request.path == "/missing" {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nX-Secret: s3cret\r\nX-Kept: k\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if !conn.send(head.as_bytes()) || !conn.send(body.as_bytes()) {
                return;
            }
        }
    });
    let (ferry, dir) = Ferry::start_config(
        "headers",
        &format!(
            "proxy_set_header X-From-Http yes;\n\
             server {{ listen 127.0.0.1:PORT; server_name named.test;\n\
             location /inherit/ {{ proxy_pass http://{0}; }}\n\
             location / {{ proxy_pass http://{0};\n\
               proxy_set_header Host $host;\n\
               proxy_set_header X-Real-IP $remote_addr;\n\
               proxy_set_header X-Request \"$request_method $uri ($args)\";\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header Connection \"\";\n\
               proxy_hide_header X-Secret;\n\
               add_header X-Frame-Options DENY;\n\
               add_header X-Always $server_name always;\n\
             }} }}",
            origin.addr
        ),
    );
    let response = request(
        ferry.addr,
        "GET /page?a=1 HTTP/1.1\r\nHost: Named.Test:8080\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n",
    );
    let upstream_saw = response.text();
    assert!(
        upstream_saw.contains("Host: named.test\r\n"),
        "{upstream_saw}"
    );
    assert!(upstream_saw.contains("X-Real-IP: 127.0.0.1\r\n"));
    assert!(upstream_saw.contains("X-Request: GET /page (a=1)\r\n"));
    assert!(upstream_saw.contains("X-Forwarded-For: 10.9.9.9, 127.0.0.1\r\n"));
    assert!(!upstream_saw.to_ascii_lowercase().contains("connection:"));
    // A level with its own proxy_set_header replaces the inherited list.
    assert!(!upstream_saw.contains("X-From-Http"), "{upstream_saw}");
    assert_eq!(response.header("x-secret"), None);
    assert_eq!(response.header("x-kept").as_deref(), Some("k"));
    assert_eq!(response.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(response.header("x-always").as_deref(), Some("named.test"));
    // add_header without `always` is for 2xx/3xx only.
    let missing = get(&ferry, "/missing", "named.test");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-frame-options"), None);
    assert_eq!(missing.header("x-always").as_deref(), Some("named.test"));
    // Without its own list, a location inherits the http level's.
    let inherited = get(&ferry, "/inherit/x", "h").text();
    assert!(inherited.contains("X-From-Http: yes\r\n"), "{inherited}");
    assert!(inherited.contains("Host: h\r\n"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn log_format_with_variables() {
    let origin = named_origin("o");
    let log = std::env::temp_dir().join(format!("ferry-logformat-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let (ferry, dir) = Ferry::start_config(
        "logformat",
        &format!(
            "log_format custom '$remote_addr \"$request\" $status $body_bytes_sent $bytes_sent '\n\
                '$upstream_addr $upstream_status $http_x_trace \"$http_missing\" c=$connection/$connection_requests '\n\
                '$request_method $uri $args $host $server_port';\n\
             server {{ listen 127.0.0.1:PORT; access_log {} custom; location / {{ proxy_pass http://{}; }} }}",
            log.display(),
            origin.addr
        ),
    );
    let stream = ferry.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        writer
            .write_all(b"GET /x?q=\"1\" HTTP/1.1\r\nHost: Logged.Test\r\nX-Trace: t-1\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut reader, "GET").unwrap().status, 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let port = ferry.addr.port();
    for (n, line) in lines.iter().enumerate() {
        // Body "o /x?q=\"1\"" is 10 bytes; with the head (and its Date), 86.
        let expected = format!(
            "127.0.0.1 \"GET /x?q=\\x221\\x22 HTTP/1.1\" 200 10 86 {} 200 t-1 \"-\" c=1/{} GET /x q=\\x221\\x22 logged.test {port}",
            origin.addr,
            n + 1
        );
        assert_eq!(*line, expected);
    }
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(dir);
}

/// Everything `addr` sends in answer to `raw` until it closes.
fn answer_bytes(addr: std::net::SocketAddr, raw: &str) -> Vec<u8> {
    use std::io::Read;
    let mut stream = connect(addr);
    stream.write_all(raw.as_bytes()).unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    received
}

#[test]
fn return_444_closes_without_a_response_as_nginx_does() {
    let server = "location /gone { return 444; }\n  location / { return 200 \"ok\\n\"; }";
    let (ferry, _) = Ferry::start_config(
        "return-444",
        &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
    );
    let raw = "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(answer_bytes(ferry.addr, raw), b"");
    // The connection is closed, not kept: a second request never runs.
    let pipelined = "GET /gone HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(answer_bytes(ferry.addr, pipelined), b"");
    assert!(get(&ferry, "/", "x").text().starts_with("ok"));
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let nginx = Nginx::start(&nginx, "return-444", server);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
    assert_eq!(answer_bytes(addr, raw), b"", "nginx");
    assert_eq!(answer_bytes(addr, pipelined), b"", "nginx");
}

#[test]
fn json_access_log_and_request_id_agree_with_the_upstream() {
    let origin = Origin::standard();
    let (ferry, _) = Ferry::start_config(
        "json-log",
        &format!(
            "log_format json escape=json '{{\"id\":\"$request_id\",\"ua\":\"$http_user_agent\",\
             \"referer\":\"$http_referer\",\"status\":$status,\"pid\":$pid}}';\n\
             server {{\n  listen 127.0.0.1:PORT;\n  access_log /dev/stdout json buffer=32k flush=1s;\n\
               location / {{ proxy_set_header X-Request-ID $request_id;\n\
                 proxy_pass http://{}; }}\n}}",
            origin.addr
        ),
    );
    let response = request(
        ferry.addr,
        "GET /echo HTTP/1.1\r\nHost: x\r\nUser-Agent: say \"hi\"\\\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let sent_id = response
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("X-Request-ID: ").map(str::to_string))
        .expect("the origin got X-Request-ID");
    assert_eq!(sent_id.len(), 32, "{sent_id}");
    assert!(ferry.wait_for_log(Duration::from_secs(5), |lines| !lines.is_empty()));
    let line = ferry.access_log().pop().unwrap();
    assert_eq!(
        line,
        format!(
            "{{\"id\":\"{sent_id}\",\"ua\":\"say \\\"hi\\\"\\\\\",\"referer\":\"\",\"status\":200,\"pid\":{}}}",
            ferry.pid()
        )
    );
}

/// An origin that redirects every request to `/login` on itself, with
/// `Location` and `Refresh` as absolute URLs naming its own address.
fn redirecting_origin() -> Origin {
    let port = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
    let known = port.clone();
    let origin = Origin::start(move |mut conn| {
        while let Some(request) = conn.next_request() {
            let port = known.get().copied().unwrap_or(0);
            let target = format!("http://127.0.0.1:{port}{}login", request.path);
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {target}\r\nRefresh: 3; url={target}\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            if !conn.send(head.as_bytes()) {
                return;
            }
        }
    });
    let _ = port.set(origin.addr.port());
    origin
}

#[test]
fn proxy_redirect_rewrites_redirects_as_nginx_does() {
    let origin = redirecting_origin();
    let up = origin.addr;
    let server = format!(
        "location /one/ {{ proxy_pass http://{up}/two/; }}\n\
         location /off/ {{ proxy_redirect off; proxy_pass http://{up}; }}\n\
         location /pairs/ {{ proxy_pass http://{up};\n\
           proxy_redirect http://{up}/pairs/ https://front.example/p/;\n\
           proxy_redirect default; }}\n\
         location / {{ proxy_pass http://{up}; }}"
    );
    let (ferry, _) = Ferry::start_config(
        "proxy-redirect",
        &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
    );
    let answers = |addr: std::net::SocketAddr| {
        ["/one/a/", "/off/", "/pairs/", "/x/"]
            .iter()
            .map(|path| {
                let response = request(
                    addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
                );
                (response.header("location"), response.header("refresh"))
            })
            .collect::<Vec<_>>()
    };
    let expect = |location: &str| {
        (
            Some(location.to_string()),
            Some(format!("3; url={location}")),
        )
    };
    // A rewritten Location that is a path is made absolute with the Host and
    // the proxy's port (nginx's absolute_redirect); Refresh is left as is.
    let expected = |port: u16| {
        let absolute = |path: &str| {
            (
                Some(format!("http://h:{port}{path}")),
                Some(format!("3; url={path}")),
            )
        };
        vec![
            // The proxy_pass URL becomes the location's name.
            absolute("/one/a/login"),
            expect(&format!("http://{up}/off/login")),
            expect("https://front.example/p/login"),
            // Without a URI part: the URL and a slash become `/`.
            absolute("/x/login"),
        ]
    };
    assert_eq!(answers(ferry.addr), expected(ferry.addr.port()));
    if let Some(nginx) = require_tool("nginx") {
        let nginx = Nginx::start(&nginx, "proxy-redirect", &server);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(answers(addr), expected(nginx.port), "nginx");
    }
}

#[test]
fn if_return_answers_as_nginx_does_for_certbot_and_friends() {
    // certbot's own output for the port-80 server, and common guards.
    let servers = "server {\n  listen 127.0.0.1:PORT;\n  server_name example.com www.example.com;\n\
                   if ($host = www.example.com) {\n    return 301 https://$host$request_uri;\n  } # managed by Certbot\n\
                   if ($host = example.com) {\n    return 301 https://$host$request_uri;\n  } # managed by Certbot\n\
                   return 404; # managed by Certbot\n}\n\
                   server {\n  listen 127.0.0.1:PORT;\n  server_name api.example.com;\n\
                   location / {\n    if ($request_method = \"POST\") { return 405; }\n\
                   if ($http_user_agent ~* (bot|crawler)) { return 403; }\n\
                   if ($arg_debug) { return 200 \"debug\\n\"; }\n\
                   if ($http_x_skip != \"\") { }\n\
                   return 200 \"ok\\n\";\n  }\n}";
    let (ferry, _) = Ferry::start_config("if-return", servers);
    let cases = [
        ("GET /x?y=1", "www.example.com", ""),
        ("GET /", "example.com", ""),
        ("GET /", "unknown.example", ""),
        ("POST /", "api.example.com", "Content-Length: 0\r\n"),
        ("GET /", "api.example.com", "User-Agent: Googlebot/2.1\r\n"),
        ("GET /?debug=1", "api.example.com", ""),
        ("GET /?debug=0", "api.example.com", ""),
        ("GET /", "api.example.com", "X-Skip: yes\r\n"),
    ];
    let answers = |addr: std::net::SocketAddr| {
        cases
            .iter()
            .map(|(line, host, extra)| {
                let response = request(
                    addr,
                    &format!("{line} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
                );
                let body = if response.status == 200 {
                    response.text()
                } else {
                    String::new()
                };
                (response.status, response.header("location"), body)
            })
            .collect::<Vec<_>>()
    };
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry,
        vec![
            (
                301,
                Some("https://www.example.com/x?y=1".to_string()),
                String::new()
            ),
            (301, Some("https://example.com/".to_string()), String::new()),
            (404, None, String::new()),
            (405, None, String::new()),
            (403, None, String::new()),
            (200, None, "debug\n".to_string()),
            (200, None, "ok\n".to_string()),
            (200, None, "ok\n".to_string()),
        ]
    );
    if let Some(nginx) = require_tool("nginx") {
        // nginx runs the same file (its `listen` lines on its own port).
        let (nginx_servers, port) = {
            let port = free_port();
            (servers.replace("PORT", &port.to_string()), port)
        };
        let nginx = Nginx::start_http(&nginx, "if-return", &nginx_servers, port);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(answers(addr), from_ferry, "nginx");
    }
}

#[test]
fn map_variables_mean_what_they_mean_to_nginx() {
    let http = "map $http_upgrade $connection_upgrade {\n  default upgrade;\n  '' close;\n}\n\
                map $host $site {\n  hostnames;\n  default other;\n  example.com main;\n\
                  *.example.com sub;\n  www.example.* www-any;\n}\n\
                map $uri $kind {\n  ~^/api/ api;\n  ~*\\.(png|jpg)$ image;\n  default page;\n}\n\
                map $kind $shout {\n  api API;\n  default quiet;\n}\n\
                server {\n  listen 127.0.0.1:PORT;\n\
                  location / { return 200 \"$connection_upgrade $site $kind $shout\\n\"; }\n}";
    let (ferry, _) = Ferry::start_config("map", http);
    let cases = [
        ("/api/x", "example.com", ""),
        ("/x.PNG", "a.example.com", "Upgrade: websocket\r\n"),
        ("/p", "www.example.org", ""),
        ("/p", "EXAMPLE.COM.", ""),
        ("/p", "example.net", ""),
    ];
    let answers = |addr: std::net::SocketAddr| {
        cases
            .iter()
            .map(|(path, host, extra)| {
                request(
                    addr,
                    &format!(
                        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
                    ),
                )
                .text()
            })
            .collect::<Vec<_>>()
    };
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry,
        [
            "close main api API\n",
            "upgrade sub image quiet\n",
            "close www-any page quiet\n",
            "close main page quiet\n",
            "close other page quiet\n",
        ]
    );
    if let Some(nginx) = require_tool("nginx") {
        let port = free_port();
        let nginx = Nginx::start_http(
            &nginx,
            "map",
            &http.replace("PORT", &port.to_string()),
            port,
        );
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(answers(addr), from_ferry, "nginx");
    }
}

#[test]
fn add_header_reaches_ferrys_own_answers_as_nginx_adds_it() {
    let dead = dead_address();
    let server = format!(
        "add_header X-Frame-Options DENY;\n  add_header Strict-Transport-Security \"max-age=60\" always;\n\
         location /redirect {{ return 301 https://example.com/; }}\n\
         location /text {{ return 200 \"t\"; }}\n\
         location /missing {{ return 404; }}\n\
         location /down {{ proxy_pass http://{dead}; }}"
    );
    let (ferry, _) = Ferry::start_config(
        "add-header-local",
        &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
    );
    let answers = |addr: std::net::SocketAddr| {
        ["/redirect", "/text", "/missing", "/down"]
            .iter()
            .map(|path| {
                let response = request(
                    addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
                );
                (
                    response.status,
                    response.header("x-frame-options"),
                    response.header("strict-transport-security"),
                )
            })
            .collect::<Vec<_>>()
    };
    let deny = Some("DENY".to_string());
    let hsts = Some("max-age=60".to_string());
    let expected = vec![
        (301, deny.clone(), hsts.clone()),
        (200, deny, hsts.clone()),
        // Error codes: only the `always` ones.
        (404, None, hsts.clone()),
        (502, None, hsts),
    ];
    assert_eq!(answers(ferry.addr), expected);
    if let Some(nginx) = require_tool("nginx") {
        let nginx = Nginx::start(&nginx, "add-header-local", &server);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(answers(addr), expected, "nginx");
    }
}

#[test]
fn proxy_cookie_domain_and_path_rewrite_set_cookie_as_nginx_does() {
    let origin = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            let head = "HTTP/1.1 200 OK\r\n\
                        Set-Cookie: a=1; Domain=.backend.local; Path=/two/x; HttpOnly\r\n\
                        Set-Cookie: b=2;path=/other;domain=BACKEND.local\r\n\
                        Set-Cookie: c=3\r\n\
                        Set-Cookie: d=4; Domain=other.local; Path=/two\r\n\
                        Content-Length: 0\r\n\r\n";
            if !conn.send(head.as_bytes()) {
                return;
            }
        }
    });
    let server = format!(
        "proxy_cookie_domain backend.local example.com;\n  proxy_cookie_path /two/ /;\n\
         location / {{ proxy_pass http://{}; }}\n\
         location /off/ {{ proxy_cookie_domain off; proxy_cookie_path off; proxy_pass http://{}; }}\n\
         location /secure/ {{ proxy_cookie_path /two/ \"/; Secure; SameSite=Strict\"; proxy_pass http://{}; }}",
        origin.addr, origin.addr, origin.addr
    );
    let (ferry, _) = Ferry::start_config(
        "cookies",
        &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
    );
    let cookies = |addr: std::net::SocketAddr, path: &str| {
        let response = request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        );
        response
            .head
            .lines()
            .filter_map(|line| line.strip_prefix("Set-Cookie: ").map(str::to_string))
            .collect::<Vec<_>>()
    };
    let rewritten = vec![
        "a=1; Domain=.example.com; Path=/x; HttpOnly".to_string(),
        "b=2; path=/other; domain=example.com".to_string(),
        "c=3".to_string(),
        "d=4; Domain=other.local; Path=/two".to_string(),
    ];
    assert_eq!(cookies(ferry.addr, "/"), rewritten);
    assert_eq!(
        cookies(ferry.addr, "/off/")[0],
        "a=1; Domain=.backend.local; Path=/two/x; HttpOnly"
    );
    assert_eq!(
        cookies(ferry.addr, "/secure/")[0],
        "a=1; Domain=.example.com; Path=/; Secure; SameSite=Strictx; HttpOnly"
    );
    if let Some(nginx) = require_tool("nginx") {
        let nginx = Nginx::start(&nginx, "cookies", &server);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(cookies(addr, "/"), rewritten, "nginx");
        assert_eq!(
            cookies(addr, "/off/"),
            cookies(ferry.addr, "/off/"),
            "nginx, off"
        );
        assert_eq!(
            cookies(addr, "/secure/"),
            cookies(ferry.addr, "/secure/"),
            "nginx, attributes added"
        );
    }
}

#[test]
fn x_accel_fields_stay_between_proxy_and_upstream_unless_passed() {
    let origin = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            let head = "HTTP/1.1 200 OK\r\nX-Accel-Buffering: no\r\nX-Accel-Expires: 0\r\n\
                        X-Pad: avoid browser bug\r\nX-Other: kept\r\nContent-Length: 0\r\n\r\n";
            if !conn.send(head.as_bytes()) {
                return;
            }
        }
    });
    let server = format!(
        "location / {{ proxy_pass http://{}; }}\n\
         location /pass/ {{ proxy_pass_header X-Accel-Buffering; proxy_pass http://{}; }}",
        origin.addr, origin.addr
    );
    let (ferry, _) = Ferry::start_config(
        "x-accel",
        &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
    );
    let fields = |addr: std::net::SocketAddr, path: &str| {
        let response = request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        );
        ["x-accel-buffering", "x-accel-expires", "x-pad", "x-other"]
            .iter()
            .filter(|name| response.header(name).is_some())
            .map(|name| name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(ferry.addr, "/"), ["x-other"]);
    assert_eq!(
        fields(ferry.addr, "/pass/"),
        ["x-accel-buffering", "x-other"]
    );
    if let Some(nginx) = require_tool("nginx") {
        let nginx = Nginx::start(&nginx, "x-accel", &server);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(fields(addr, "/"), ["x-other"], "nginx");
        assert_eq!(
            fields(addr, "/pass/"),
            ["x-accel-buffering", "x-other"],
            "nginx"
        );
    }
}

#[test]
fn access_log_if_skips_what_the_condition_says() {
    // The usual way to keep health checks out of the log, and a condition
    // on a log-time value.
    let (ferry, _) = Ferry::start_config(
        "access-log-if",
        "map $request_uri $loggable {\n  ~^/health 0;\n  default 1;\n}\n\
         log_format short '$request_uri $status';\n\
         server {\n  listen 127.0.0.1:PORT;\n  access_log /dev/stdout short if=$loggable;\n\
           location / { return 200 \"ok\\n\"; }\n\
           location /quiet/ { access_log /dev/stdout short if=$arg_log; return 204; }\n}",
    );
    for path in [
        "/health",
        "/x",
        "/health?deep=1",
        "/quiet/a",
        "/quiet/b?log=1",
        "/quiet/c?log=0",
    ] {
        get(&ferry, path, "h");
    }
    assert!(ferry.wait_for_log(Duration::from_secs(5), |lines| lines.len() >= 2));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ferry.access_log(), ["/x 200", "/quiet/b?log=1 204"]);
}

#[test]
fn limit_except_refuses_other_methods_as_nginx_does() {
    let origin = Origin::standard();
    let server = format!(
        "location /api/ {{ limit_except GET POST {{ deny all; }} proxy_pass http://{up}; }}\n\
         location /local/ {{ limit_except GET {{ allow 127.0.0.1; deny all; }} proxy_pass http://{up}; }}",
        up = origin.addr
    );
    let (ferry, _) = Ferry::start_config(
        "limit-except",
        &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
    );
    let statuses = |addr: std::net::SocketAddr| {
        [
            ("GET", "/api/x"),
            ("HEAD", "/api/x"),
            ("POST", "/api/x"),
            ("DELETE", "/api/x"),
            ("PUT", "/api/x"),
            ("PUT", "/local/x"),
        ]
        .iter()
        .map(|(method, path)| {
            let raw = format!(
                "{method} {path} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let mut stream = connect(addr);
            stream.write_all(raw.as_bytes()).unwrap();
            read_head(&mut BufReader::new(stream)).map_or(0, |(status, _)| status)
        })
        .collect::<Vec<_>>()
    };
    let expected = vec![200, 200, 200, 403, 403, 200];
    assert_eq!(statuses(ferry.addr), expected);
    if let Some(nginx) = require_tool("nginx") {
        let nginx = Nginx::start(&nginx, "limit-except", &server);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(statuses(addr), expected, "nginx");
    }
}

#[test]
fn internal_locations_are_404_to_clients_as_in_nginx() {
    let server = "location /int/ { internal; return 200 \"x\\n\"; }\n\
                  location /guarded/ { internal; deny all; if ($arg_a) { return 418; } }\n\
                  location / { return 200 \"public\\n\"; }";
    let (ferry, _) = Ferry::start_config(
        "internal",
        &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
    );
    let statuses = |addr: std::net::SocketAddr| {
        ["/int/a", "/guarded/?a=1", "/"]
            .iter()
            .map(|path| {
                request(
                    addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
                )
                .status
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(ferry.addr), [404, 404, 200]);
    if let Some(nginx) = require_tool("nginx") {
        let nginx = Nginx::start(&nginx, "internal", server);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(statuses(addr), [404, 404, 200], "nginx");
    }
}

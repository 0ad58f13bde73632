//! End-to-end relaying through the real binary: bodies of every size and
//! framing, both directions, with checksums; partial and pipelined heads;
//! what the upstream receives; 1xx and HTTP/1.0 re-framing.

mod util;

use std::io::{BufReader, Write};
use std::time::Duration;

use util::*;

const SIZES: [u64; 6] = [0, 1, 4095, 4096, 4097, 1 << 20];

fn download(ferry: &Ferry, size: u64, mode: &str) {
    let mut stream = ferry.connect();
    write!(
        stream,
        "GET /bytes/{size}/{mode} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let (response, len, hash) = read_response_hashed(&mut reader, "GET", 0)
        .unwrap_or_else(|| panic!("no response for {size} {mode}"));
    assert_eq!(response.status, 200, "{size} {mode}");
    assert_eq!(len, size, "{mode} length");
    assert_eq!(hash, Hash::of_pattern(size), "{size} {mode} checksum");
}

fn upload(ferry: &Ferry, size: u64, chunked: bool) {
    let mut stream = ferry.connect();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n"
    )
    .unwrap();
    let writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut writer = writer;
        let mut block = vec![0u8; 50_000];
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(block.len() as u64) as usize;
            pattern(done, &mut block[..n]);
            if chunked {
                writer.write_all(format!("{n:x}\r\n").as_bytes()).unwrap();
            }
            writer.write_all(&block[..n]).unwrap();
            if chunked {
                writer.write_all(b"\r\n").unwrap();
            }
            done += n as u64;
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").unwrap();
        }
    });
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, "POST").expect("response");
    sender.join().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        format!("{size} {:016x}", Hash::of_pattern(size).0),
        "upload of {size} bytes, chunked={chunked}"
    );
}

#[test]
fn downloads_of_every_size_and_framing_arrive_intact() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    for size in SIZES {
        for mode in ["length", "chunked", "close"] {
            download(&ferry, size, mode);
        }
    }
}

#[test]
fn uploads_of_every_size_and_framing_arrive_intact() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--client-max-body-size", "0"]);
    for size in SIZES {
        upload(&ferry, size, false);
        upload(&ferry, size, true);
    }
}

#[test]
fn quarter_gibibyte_both_ways() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--client-max-body-size", "0"]);
    within(Duration::from_secs(120), move || {
        let size = 256 << 20;
        download(&ferry, size, "length");
        download(&ferry, size, "chunked");
        upload(&ferry, size, false);
        upload(&ferry, size, true);
    });
}

#[test]
fn bulk_transfers_borrow_a_large_buffer_and_give_it_back() {
    let origin = Origin::standard();
    let upstream = origin.addr.to_string();
    let ferry = Ferry::start_logging(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--status-path",
            "/_status",
            "--client-max-body-size",
            "0",
        ],
        "ferry=trace",
    );
    // A small response never fills the ring; 1 MiB both ways does.
    download(&ferry, 4096, "length");
    assert_eq!(ferry.stderr_count("keeps filling its buffer"), 0);
    download(&ferry, 1 << 20, "chunked");
    upload(&ferry, 1 << 20, true);
    assert!(ferry.stderr_count("response keeps filling its buffer: now 262144 bytes") >= 1);
    assert!(ferry.stderr_count("request keeps filling its buffer: now 262144 bytes") >= 1);
    ferry.wait_for_counters(Duration::from_secs(5), |c| {
        c["buffer_sets_lent"] <= 1 && c["large_buffers_lent"] == 0
    });
}

#[test]
fn a_head_written_one_byte_at_a_time() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    for byte in b"GET /echo HTTP/1.1\r\nHost: slow.example\r\nX-Byte: by-byte\r\n\r\n" {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let response = read_response(&mut BufReader::new(stream), "GET").unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("X-Byte: by-byte\r\n"),
        "{}",
        response.text()
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    // The second request has a body that looks like a request: it must be
    // taken as body, and the third request after it as a request.
    stream
        .write_all(
            b"GET /bytes/3/length HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 19\r\n\r\nGET /x HTTP/1.1\r\n\r\n\
              GET /echo HTTP/1.1\r\nHost: third\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader, "GET").unwrap();
    let second = read_response(&mut reader, "POST").unwrap();
    let third = read_response(&mut reader, "GET").unwrap();
    assert_eq!(first.body, vec![0, 1, 2]);
    let mut hash = Hash::default();
    hash.update(b"GET /x HTTP/1.1\r\n\r\n");
    assert_eq!(second.text(), format!("19 {:016x}", hash.0));
    assert!(third.text().contains("Host: third"), "{}", third.text());
    assert_eq!(origin.requests().len(), 3);
}

#[test]
fn the_upstream_sees_end_to_end_headers_only() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(
        ferry.addr,
        "GET /echo HTTP/1.1\r\nHost: Example.COM:8080\r\nConnection: keep-alive, X-Private\r\n\
         X-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Upgrade: h2c\r\nX-Forwarded-For: 203.0.113.7\r\nX-Custom: kept\r\n\r\n",
    );
    let received = &origin.requests()[0];
    assert_eq!(response.status, 200);
    assert_eq!(received.header("host"), Some("Example.COM:8080"));
    assert_eq!(received.header("x-custom"), Some("kept"));
    assert_eq!(
        received.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(received.header("x-forwarded-proto"), Some("http"));
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert_eq!(
            received.header(gone),
            None,
            "{gone} reached the upstream:\n{}",
            received.head
        );
    }
    assert!(received.head.starts_with("GET /echo HTTP/1.1\r\n"));
}

#[test]
fn chunked_responses_are_dechunked_for_http10_clients() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET /bytes/100000/chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (response, len, hash) = read_response_hashed(&mut reader, "GET", 0).unwrap();
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert_eq!(len, 100_000);
    assert_eq!(hash, Hash::of_pattern(100_000));
}

#[test]
fn interim_responses_are_relayed_before_the_final_one() {
    let origin = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, head) = read_head(&mut reader).unwrap();
    assert_eq!(status, 103);
    assert!(head.contains("Link: </style.css>"));
    let response = read_response(&mut reader, "GET").unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
}

#[test]
fn head_responses_have_no_body_but_keep_their_length() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"HEAD /bytes/5000/length HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/2/length HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_response(&mut reader, "HEAD").unwrap();
    assert_eq!(head.header("content-length").as_deref(), Some("5000"));
    let next = read_response(&mut reader, "GET").unwrap();
    assert_eq!(next.body, vec![0, 1]);
}

#[test]
fn access_log_has_combined_format_and_upstream_fields() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    request(
        ferry.addr,
        "GET /bytes/10/length HTTP/1.1\r\nHost: a\r\nUser-Agent: test-agent\r\nReferer: http://r/\r\n\r\n",
    );
    assert!(ferry.wait_for_log(Duration::from_secs(5), |lines| !lines.is_empty()));
    let line = &ferry.access_log()[0];
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("\"GET /bytes/10/length HTTP/1.1\" 200 10 \"http://r/\" \"test-agent\""),
        "{line}"
    );
    assert!(
        line.contains(&format!("upstream={}", origin.addr)),
        "{line}"
    );
    assert!(line.contains("upstream_status=200"), "{line}");
}

/// Which of `names` the origin received, through the proxy at `addr`.
fn forwarded_names(addr: std::net::SocketAddr, names: &[&str]) -> Vec<String> {
    let fields: String = names.iter().map(|n| format!("{n}: 1\r\n")).collect();
    let response = request(
        addr,
        &format!("GET /echo HTTP/1.1\r\nHost: h\r\n{fields}Connection: close\r\n\r\n"),
    );
    let received = response.text().to_ascii_lowercase();
    names
        .iter()
        .filter(|n| received.contains(&format!("\r\n{}:", n.to_ascii_lowercase())))
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn field_names_nginx_drops_are_dropped_unless_allowed() {
    let origin = Origin::standard();
    let names = ["X-Ok", "X_Under", "X.Dot"];
    for (lines, expected) in [
        ("", vec!["X-Ok"]),
        ("underscores_in_headers on;", vec!["X-Ok", "X_Under"]),
        (
            "ignore_invalid_headers off;",
            vec!["X-Ok", "X_Under", "X.Dot"],
        ),
        ("proxy_pass_request_headers off;", vec![]),
    ] {
        let server = format!(
            "{lines}\n  location / {{ proxy_pass http://{}; }}",
            origin.addr
        );
        let (ferry, _) = Ferry::start_config(
            "field-names",
            &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
        );
        assert_eq!(
            forwarded_names(ferry.addr, &names),
            expected,
            "ferry, {lines:?}"
        );
        if let Some(nginx) = require_tool("nginx") {
            let nginx = Nginx::start(&nginx, "field-names", &server);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
            assert_eq!(forwarded_names(addr, &names), expected, "nginx, {lines:?}");
        }
    }
}

/// An origin on a Unix socket at `path` (gunicorn's place): keep-alive,
/// answers `unix TARGET` to each request; returns its connection count.
fn unix_origin(path: &std::path::Path) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{BufRead, Write};
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let target = line.split(' ').nth(1).unwrap_or("").to_string();
                    loop {
                        let mut field = String::new();
                        if reader.read_line(&mut field).unwrap_or(0) == 0 {
                            return;
                        }
                        if field == "\r\n" {
                            break;
                        }
                    }
                    let body = format!("unix {target}");
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    if writer.write_all(head.as_bytes()).is_err()
                        || writer.write_all(body.as_bytes()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    accepts
}

#[test]
fn upstreams_on_unix_sockets_as_gunicorn_and_puma_listen() {
    let dir = scratch_dir("unix-upstream");
    let socket = dir.join("app.sock");
    let accepts = unix_origin(&socket);
    let sock = socket.display();
    let dir = dir.display();
    let server = format!(
        "location /direct/ {{ proxy_pass http://unix:{sock}:/inner/; }}\n\
         location /dead/ {{ proxy_pass http://unix:{dir}/nobody.sock; }}\n\
         location / {{ proxy_pass http://app; }}"
    );
    let upstream = format!("upstream app {{ server unix:{sock}; keepalive 4; }}\n");
    let (ferry, _) = Ferry::start_config(
        "unix-upstream",
        &format!(
            "log_format addr '$upstream_addr';\n{upstream}\
             server {{\n  listen 127.0.0.1:PORT;\n  access_log /dev/stdout addr;\n  {server}\n}}"
        ),
    );
    let mut client = ferry.connect();
    let ask = |client: &mut std::net::TcpStream, path: &str| {
        use std::io::Write;
        write!(client, "GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let response = read_response(&mut std::io::BufReader::new(&mut *client), "GET").unwrap();
        (response.status, response.text())
    };
    for _ in 0..5 {
        assert_eq!(
            ask(&mut client, "/direct/x"),
            (200, "unix /inner/x".to_string())
        );
        assert_eq!(ask(&mut client, "/y"), (200, "unix /y".to_string()));
    }
    // Pooled and reused like TCP ones (the pool is per address, so the
    // two locations share the one connection).
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(ferry.wait_for_log(Duration::from_secs(5), |lines| {
        lines.iter().any(|l| *l == format!("unix:{sock}"))
    }));
    if let Some(nginx) = require_tool("nginx") {
        let port = free_port();
        let nginx = Nginx::start_http(
            &nginx,
            "unix-upstream",
            &format!("{upstream}server {{ listen 127.0.0.1:{port};\n{server} }}"),
            port,
        );
        let mut client = connect(std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port)));
        assert_eq!(
            ask(&mut client, "/direct/x"),
            (200, "unix /inner/x".to_string())
        );
        assert_eq!(ask(&mut client, "/y"), (200, "unix /y".to_string()));
    }
    // A socket nobody listens on: 502, as a refused TCP connect.
    let mut fresh = ferry.connect();
    assert_eq!(ask(&mut fresh, "/dead/").0, 502);
}

/// `$proxy_host` is the `proxy_pass` server as written, or the group's
/// name (nginx's proxy-module example: `proxy_set_header Host $proxy_host`).
#[test]
fn proxy_host_is_the_proxied_server_as_written() {
    let origin = Origin::standard();
    let host_sent = |addr: std::net::SocketAddr| {
        let response = request(
            addr,
            "GET /echo HTTP/1.1\r\nHost: client.example\r\nConnection: close\r\n\r\n",
        );
        response
            .text()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Host: ")
                    .or_else(|| l.strip_prefix("host: "))
            })
            .unwrap_or_default()
            .to_string()
    };
    for (http, expected) in [
        (
            format!(
                "server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://{}; \
                 proxy_set_header Host $proxy_host; }} }}",
                origin.addr
            ),
            origin.addr.to_string(),
        ),
        (
            format!(
                "upstream app_servers {{ server {}; }}\n\
                 server {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://app_servers; \
                 proxy_set_header Host $proxy_host; }} }}",
                origin.addr
            ),
            "app_servers".to_string(),
        ),
    ] {
        let (ferry, _) = Ferry::start_config("proxy-host", &http);
        assert_eq!(host_sent(ferry.addr), expected);
        if let Some(nginx) = require_tool("nginx") {
            let port = util::free_port();
            let nginx = Nginx::start_http(
                &nginx,
                "proxy-host",
                &http.replace("PORT", &port.to_string()),
                port,
            );
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
            assert_eq!(host_sent(addr), expected, "nginx");
        }
    }
}

/// `proxy_pass http://$pool`: the group the value names, per request, as
/// nginx finds one without a resolver: an `upstream` block by name (any
/// case, no port), or the group another `proxy_pass` line made for that
/// host and port; anything else is a 502.
#[test]
fn proxy_pass_with_a_variable_picks_the_upstream_block_by_name() {
    let blue = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            if !conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nblue\n") {
                break;
            }
        }
    });
    let green = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            if !conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ngreen\n") {
                break;
            }
        }
    });
    let http = format!(
        "upstream blue {{ server {}; }}\n\
         upstream green {{ server {}; }}\n\
         map $http_x_pool $pool {{ default blue; green green; other nowhere; upper GREEN;\n\
           ported green:80; implicit localhost:{green_port}; address {blue}; loose 127.0.0.1:1; }}\n\
         server {{ listen 127.0.0.1:PORT;\n\
           location / {{ proxy_pass http://$pool; }}\n\
           location /implicit/ {{ proxy_pass http://localhost:{green_port}; }}\n\
           location /address/ {{ proxy_pass http://{blue}; }}\n\
         }}",
        blue.addr,
        green.addr,
        blue = blue.addr,
        green_port = green.addr.port(),
    );
    let answers = |addr: std::net::SocketAddr| {
        [
            "", "green", "other", "upper", "ported", "implicit", "address", "loose",
        ]
        .map(|pool| {
            let response = request(
                addr,
                &format!(
                    "GET / HTTP/1.1\r\nHost: h\r\nX-Pool: {pool}\r\nConnection: close\r\n\r\n"
                ),
            );
            let body = if response.status == 200 {
                response.text()
            } else {
                String::new()
            };
            format!("{} {body}", response.status)
        })
    };
    let (ferry, _) = Ferry::start_config("proxy-by-name", &http);
    let from_ferry = answers(ferry.addr);
    assert_eq!(
        from_ferry,
        [
            "200 blue\n",
            "200 green\n",
            "502 ",
            "200 green\n",
            "502 ",
            "200 green\n",
            "200 blue\n",
            "502 "
        ]
    );
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(5),
        "proxy_pass to an address from variables (127.0.0.1:1) is not supported yet"
    ));
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(5),
        "no resolver defined to resolve nowhere"
    ));
    if let Some(nginx) = require_tool("nginx") {
        let port = util::free_port();
        let nginx = Nginx::start_http(
            &nginx,
            "proxy-by-name",
            &http.replace("PORT", &port.to_string()),
            port,
        );
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
        assert_eq!(from_ferry, answers(addr), "nginx");
    }
}

//! Upstreams that are down, reset, lie or stop halfway: the client gets a
//! 502 while one is still possible, and a closed connection after that.

mod util;

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use util::*;

#[test]
fn upstream_down_gives_502_and_the_connection_lives_on() {
    let ferry = Ferry::start(dead_address(), &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let response = read_response(&mut reader, "GET").unwrap();
    assert_eq!(response.status, 502);
    assert!(response.text().contains("<h1>502 Bad Gateway</h1>"));
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/html")
    );
    // The failure was the upstream's: the client may go on.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, "GET").unwrap().status, 502);
    assert!(ferry.wait_for_stderr(Duration::from_secs(3), "connect() to upstream failed"));
}

#[test]
fn upstream_reset_before_the_head_gives_502() {
    // Accepts, waits for the request, and closes without reading it: the
    // unread bytes make the kernel send a reset.
    let origin = Origin::start(|conn| {
        let mut peek = [0u8; 1];
        let _ = conn.stream.peek(&mut peek);
        std::thread::sleep(Duration::from_millis(20));
        drop(conn);
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 502);
}

#[test]
fn upstream_eof_before_the_head_gives_502() {
    let origin = Origin::start(|mut conn| {
        let _ = conn.next_request();
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 502);
}

#[test]
fn a_malformed_response_head_gives_502() {
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 502);
}

#[test]
fn a_truncated_response_closes_the_client_connection() {
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            conn.send(&[b'x'; 5000]);
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, head) = read_head(&mut reader).unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("Content-Length: 100000"));
    let mut body = Vec::new();
    let outcome = within(Duration::from_secs(10), move || {
        let result = reader.read_to_end(&mut body);
        (result.is_ok() || body.len() <= 5000, body.len())
    });
    assert!(outcome.0);
    assert!(outcome.1 <= 5000, "got {} bytes", outcome.1);
    // The upstream's close may also arrive as a reset: either is logged.
    assert!(ferry.wait_for_stderr(Duration::from_secs(3), "after 5000 body bytes"));
}

#[test]
fn a_client_vanishing_mid_download_closes_the_upstream_connection() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let done_tx = std::sync::Mutex::new(done_tx);
    let origin = Origin::start(move |mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
            let block = [b'y'; 65536];
            // Keeps writing until ferry closes this connection.
            while conn.send(&block) {}
            let _ = done_tx.lock().unwrap().send(());
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut some = [0u8; 100_000];
    stream.read_exact(&mut some).unwrap();
    drop(stream);
    assert!(
        done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "the upstream connection was not closed"
    );
}

#[test]
fn contradictory_response_framing_gives_502_and_the_connection_is_not_reused() {
    let origin = Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let answer: &[u8] = if request.path == "/bad" {
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            if !conn.send(answer) {
                return;
            }
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    assert_eq!(
        request(ferry.addr, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n").status,
        200
    );
    assert_eq!(
        request(ferry.addr, "GET /bad HTTP/1.1\r\nHost: a\r\n\r\n").status,
        502
    );
    assert_eq!(
        request(ferry.addr, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n").status,
        200
    );
    // The connection that carried the bad response was closed, not pooled.
    assert_eq!(origin.accepts(), 2);
}

#[test]
fn bytes_beyond_a_response_are_never_a_next_response() {
    // Answers with one response and a second one nobody asked for.
    let origin = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            if !conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle") {
                return;
            }
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let stream = ferry.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..3 {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut reader, "GET").unwrap().text(), "ok");
    }
    // Each response's connection was dropped for its stray bytes.
    assert_eq!(origin.accepts(), 3);
}

#[test]
fn proxy_buffer_size_bounds_the_upstream_head_as_in_nginx() {
    // An origin whose response head is about 6 KiB (one long field).
    let origin = Origin::start(|mut conn| {
        while conn.next_request().is_some() {
            let head = format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
                "a".repeat(6000)
            );
            if !conn.send(head.as_bytes()) {
                return;
            }
        }
    });
    // nginx also wants its buffers to hold the head buffer's size.
    for (size, status) in [("4k", 502), ("16k", 200)] {
        let server = format!(
            "location / {{ proxy_buffer_size {size}; proxy_buffers 8 {size};\n\
             proxy_pass http://{}; }}",
            origin.addr
        );
        let (ferry, _) = Ferry::start_config(
            "proxy-buffer-size",
            &format!("server {{\n  listen 127.0.0.1:PORT;\n  {server}\n}}"),
        );
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        assert_eq!(request(ferry.addr, raw).status, status, "ferry, {size}");
        if let Some(nginx) = require_tool("nginx") {
            let nginx = Nginx::start(&nginx, "proxy-buffer-size", &server);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
            assert_eq!(request(addr, raw).status, status, "nginx, {size}");
        }
    }
}

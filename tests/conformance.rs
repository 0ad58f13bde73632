//! Issue 12: the places where ferry differed from RFC 9110/9112 or from
//! nginx, each checked end to end through the real binary: chunk lines
//! validated and re-framed both ways, absolute-form targets, Host values,
//! versions, framing fields on bodiless answers, and `Date`.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use util::*;

/// An origin that records each request's body bytes exactly as they came
/// (chunk lines included) and answers every request with `answer`.
fn raw_origin(answer: &'static [u8]) -> (Origin, Arc<Mutex<Vec<Vec<u8>>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let origin = Origin::start(move |mut conn| {
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                match conn.reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = Vec::new();
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                // Up to the last chunk and the empty trailer section.
                let mut byte = [0u8; 1];
                while !(body.ends_with(b"\r\n0\r\n\r\n") || body == b"0\r\n\r\n") {
                    match conn.reader.read(&mut byte) {
                        Ok(1) => body.push(byte[0]),
                        _ => {
                            seen.lock().unwrap().push(body);
                            return;
                        }
                    }
                }
            }
            seen.lock().unwrap().push(body);
            if !conn.send(answer) {
                return;
            }
        }
    });
    (origin, bodies)
}

/// Sends `raw` and reads until ferry closes or `limit` passes.
fn exchange_raw(addr: std::net::SocketAddr, raw: &[u8], limit: Duration) -> String {
    let mut stream = connect(addr);
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(raw).unwrap();
    let mut got = Vec::new();
    let mut block = [0u8; 4096];
    while let Ok(n) = stream.read(&mut block) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&block[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// ===== item 1: request chunk lines =====

#[test]
fn request_chunks_reach_the_origin_in_ferrys_own_framing() {
    let (origin, bodies) = raw_origin(OK);
    let ferry = Ferry::start(origin.addr, &[]);
    let body = "003;name=\"v; w\"\r\nabc\r\n2 ; a = b\r\nde\r\n0;last\r\nX-Sum: 1\r\n\r\n";
    let raw = format!("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    let response = request(ferry.addr, &raw);
    assert_eq!(response.status, 200);
    let received = bodies.lock().unwrap().clone();
    assert_eq!(received, vec![b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec()]);
}

#[test]
fn malformed_request_chunk_lines_are_400_and_never_forwarded() {
    let (origin, bodies) = raw_origin(OK);
    let ferry = Ferry::start(origin.addr, &[]);
    for (name, body) in [
        ("junk after size", "2 junk\r\nab\r\n0\r\n\r\n"),
        ("empty extension", "2;\r\nab\r\n0\r\n\r\n"),
        ("space after size", "a \r\n0123456789\r\n0\r\n\r\n"),
        (
            "unclosed quote",
            "5;name=\"unclosed; quote\r\nhello\r\n0\r\n\r\n",
        ),
        ("trailer without colon", "2\r\nab\r\n0\r\nX y\r\n\r\n"),
        ("trailer folded", "2\r\nab\r\n0\r\nX: a\r\n y\r\n\r\n"),
    ] {
        let raw =
            format!("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let answer = exchange_raw(ferry.addr, raw.as_bytes(), Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 400 "), "{name}: {answer}");
        assert!(answer.contains("Connection: close"), "{name}: {answer}");
    }
    // The origin never saw a malformed line, nor a complete body.
    std::thread::sleep(Duration::from_millis(100));
    for body in bodies.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains("junk") && !text.contains(';'), "{text:?}");
        assert!(!text.contains("X y") && !text.contains(" y"), "{text:?}");
        assert!(!text.ends_with("0\r\n\r\n"), "{text:?}");
    }
}

// ===== item 6: response chunk lines =====

#[test]
fn response_chunks_reach_the_client_in_ferrys_own_framing() {
    let (origin, _) = raw_origin(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          02;ext=\"x\"\r\nab\r\n1\r\nc\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    let ferry = Ferry::start(origin.addr, &[]);
    let answer = exchange_raw(
        ferry.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert_eq!(body, "2\r\nab\r\n1\r\nc\r\n0\r\n\r\n");
    // HTTP/1.0 clients get the data alone.
    let answer = exchange_raw(
        ferry.addr,
        b"GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(answer.split_once("\r\n\r\n").map(|(_, b)| b), Some("abc"));
}

#[test]
fn malformed_response_chunk_lines_are_502_before_the_head_and_a_close_after() {
    for bad in [
        "25  \r\n",
        "2;\r\nab\r\n0\r\n\r\n",
        "2 junk\r\nab\r\n0\r\n\r\n",
    ] {
        let answer: &'static [u8] = Box::leak(
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{bad}")
                .into_bytes()
                .into_boxed_slice(),
        );
        let (origin, _) = raw_origin(answer);
        let ferry = Ferry::start(origin.addr, &[]);
        let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(response.status, 502, "{bad:?}");
        assert!(
            ferry.wait_for_stderr(Duration::from_secs(5), "invalid chunked response"),
            "{:?}",
            ferry.stderr()
        );
    }
    // After the head went out: the client connection closes, and the bad
    // line never reaches the client.
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n");
            std::thread::sleep(Duration::from_millis(300));
            conn.send(b"\r\n2 junk\r\ncd\r\n0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let answer = exchange_raw(
        ferry.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("2\r\nab\r\n"), "{answer:?}");
    assert!(!answer.contains("junk"), "{answer:?}");
}

// ===== items 2 and 3: absolute-form targets =====

#[test]
fn absolute_form_keeps_its_query_and_overrides_host() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let response = request(ferry.addr, "GET http://h?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(response.status, 200);
    let response = request(
        ferry.addr,
        "GET http://a.test/p HTTP/1.1\r\nHost: b.test\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let received = origin.requests();
    assert_eq!(received[0].path, "/?x=1");
    assert_eq!(received[1].path, "/p");
    assert_eq!(received[1].header("host"), Some("a.test"));
}

#[test]
fn absolute_form_routes_by_its_own_host() {
    let (ferry, _dir) = Ferry::start_config(
        "absolute-routing",
        "server { listen 127.0.0.1:PORT default_server; server_name b.test; \
             location / { return 200 \"b\\n\"; } }\n\
         server { listen 127.0.0.1:PORT; server_name a.test; \
             location / { return 200 \"a\\n\"; } }",
    );
    let response = request(
        ferry.addr,
        "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
    );
    assert_eq!(response.text(), "a\n");
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert_eq!(response.text(), "a\n");
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n");
    assert_eq!(response.text(), "b\n");
}

// ===== item 4: Host values =====

#[test]
fn invalid_host_values_are_400_and_not_forwarded() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    for host in [&b"a\x82"[..], b"user@a", b"a:xyz", b"a\"<b", b"a:", b"[::1"] {
        let mut raw = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        raw.extend_from_slice(host);
        raw.extend_from_slice(b"\r\n\r\n");
        let answer = exchange_raw(ferry.addr, &raw, Duration::from_secs(5));
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "{}: {answer}",
            String::from_utf8_lossy(host)
        );
    }
    for host in [
        "a.test:8080",
        "[::1]:80",
        "10.0.0.1",
        "xn--d1acufc.xn--p1ai",
    ] {
        let response = request(
            ferry.addr,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        );
        assert_eq!(response.status, 200, "{host}");
    }
    assert_eq!(origin.requests().len(), 4);
}

// ===== item 5: versions =====

#[test]
fn higher_minor_versions_are_served_other_majors_505_junk_400() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    for minor in 2..=9 {
        let response = request(
            ferry.addr,
            &format!("GET /v{minor} HTTP/1.{minor}\r\nHost: h\r\n\r\n"),
        );
        assert_eq!(response.status, 200, "HTTP/1.{minor}");
        assert!(response.head.starts_with("HTTP/1.1 200"));
    }
    let received = origin.requests();
    assert_eq!(received.len(), 8);
    assert!(received.iter().all(|r| r.head.contains(" HTTP/1.1\r\n")));
    for (raw, status) in [
        ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", "505"),
        ("GET / HTTP/3.0\r\nHost: h\r\n\r\n", "505"),
        ("GET / HTXP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("GET / http/1.1\r\nHost: h\r\n\r\n", "400"),
        ("GET / HTTP/0.9\r\nHost: h\r\n\r\n", "400"),
        ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
        ("\x01GET / HTTP/1.1\r\nHost: h\r\n\r\n", "400"),
    ] {
        let answer = exchange_raw(ferry.addr, raw.as_bytes(), Duration::from_secs(5));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{raw:?}: {answer}"
        );
    }
    assert_eq!(origin.requests().len(), 8);
}

// ===== item 7: framing fields on bodiless answers =====

#[test]
fn no_content_length_on_204_and_the_connection_stays_usable() {
    let origin = Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let answer: &[u8] = if request.path == "/204" {
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
            } else {
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"
            };
            if !conn.send(answer) {
                return;
            }
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = connect(ferry.addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    stream
        .write_all(b"GET /204 HTTP/1.1\r\nHost: h\r\n\r\nGET /304 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let first = read_response(&mut reader, "GET").expect("204");
    assert_eq!(first.status, 204);
    assert_eq!(first.header("content-length"), None, "{}", first.head);
    let second = read_response(&mut reader, "GET").expect("304");
    assert_eq!(second.status, 304);
    assert_eq!(second.header("content-length").as_deref(), Some("7"));
}

// ===== item 8: Date =====

/// An IMF-fixdate, as RFC 9110 §5.6.7 spells it.
fn is_http_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() == 29 && value.ends_with(" GMT") && bytes[3] == b',' && bytes[16] == b' '
}

#[test]
fn every_response_has_a_date() {
    let origin = Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            let answer: &[u8] = if request.path == "/dated" {
                b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            };
            if !conn.send(answer) {
                return;
            }
        }
    });
    let dead = dead_address();
    let (ferry, _dir) = Ferry::start_config(
        "date",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
               location = /return {{ return 200 \"r\\n\"; }}\n\
               location = /status {{ stub_status; }}\n\
               location = /dead {{ proxy_pass http://{dead}; }}\n\
               location / {{ proxy_pass http://{}; }} }}",
            origin.addr
        ),
    );
    for (raw, status) in [
        ("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 200),
        ("GET /return HTTP/1.1\r\nHost: h\r\n\r\n", 200),
        ("GET /status HTTP/1.1\r\nHost: h\r\n\r\n", 200),
        ("GET /dead HTTP/1.1\r\nHost: h\r\n\r\n", 502),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    ] {
        let response = request(ferry.addr, raw);
        assert_eq!(response.status, status, "{raw:?}");
        let date = response.header("date").unwrap_or_default();
        assert!(is_http_date(&date), "{raw:?}: {}", response.head);
    }
    let response = request(ferry.addr, "GET /dated HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        response.header("date").as_deref(),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    assert_eq!(response.head.matches("Date:").count(), 1);
}

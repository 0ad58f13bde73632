//! Every nginx timeout fires with the right status or close, and not before
//! its time. Timeouts are set short with `--set DIRECTIVE=VALUE`.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::*;

/// Reads until the connection closes; returns what arrived and when.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut block = [0u8; 8192];
    loop {
        match stream.read(&mut block) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&block[..n]),
        }
    }
    (got, started.elapsed())
}

fn assert_took(elapsed: Duration, at_least: Duration, at_most: Duration) {
    assert!(
        elapsed >= at_least && elapsed <= at_most,
        "took {elapsed:?}, expected between {at_least:?} and {at_most:?}"
    );
}

/// Starts ferry with `directive` at one second, sends `request` and returns
/// what arrived before ferry closed the connection, which must be after
/// that second and not much later.
fn after_a_one_second_timeout(origin: &Origin, directive: &str, request: &[u8]) -> String {
    let ferry = Ferry::start(origin.addr, &["--set", &format!("{directive}=1s")]);
    let mut stream = ferry.connect();
    stream.write_all(request).unwrap();
    let (got, elapsed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert_took(elapsed, Duration::from_millis(900), Duration::from_secs(3));
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn client_header_timeout_answers_408_for_a_partial_head() {
    let origin = Origin::standard();
    let text = after_a_one_second_timeout(
        &origin,
        "client_header_timeout",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("Connection: close"));
    assert!(origin.requests().is_empty());
}

#[test]
fn a_connection_that_never_speaks_is_closed_silently() {
    let origin = Origin::standard();
    let text = after_a_one_second_timeout(&origin, "client_header_timeout", b"");
    assert!(text.is_empty(), "{text}");
}

#[test]
fn client_body_timeout_answers_408() {
    let origin = Origin::standard();
    let text = after_a_one_second_timeout(
        &origin,
        "client_body_timeout",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789",
    );
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
}

#[test]
fn keepalive_timeout_closes_an_idle_connection_silently() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--set", "keepalive_timeout=1s"]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_response(&mut reader, "GET").unwrap().status, 200);
    let started = Instant::now();
    assert!(still_open(&mut stream, Duration::from_millis(500)));
    let (got, _) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(got.is_empty());
    assert_took(
        started.elapsed(),
        Duration::from_millis(900),
        Duration::from_secs(3),
    );
}

#[test]
fn keepalive_requests_closes_after_the_last_one() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--set", "keepalive_requests=3"]);
    let mut stream = ferry.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for i in 1..=3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, "GET").unwrap();
        let expected = if i == 3 {
            Some("close".to_string())
        } else {
            None
        };
        assert_eq!(response.header("connection"), expected, "request {i}");
    }
    assert!(closed_within(&mut stream, Duration::from_secs(3)));
}

#[test]
fn proxy_read_timeout_gives_504_when_the_upstream_never_answers() {
    let origin = Origin::start(|mut conn| {
        let _ = conn.next_request();
        std::thread::sleep(Duration::from_secs(10));
    });
    let ferry = Ferry::start(origin.addr, &["--set", "proxy_read_timeout=1s"]);
    let started = Instant::now();
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 504);
    assert_took(
        started.elapsed(),
        Duration::from_millis(900),
        Duration::from_secs(3),
    );
}

#[test]
fn a_dripping_upstream_is_not_timed_out() {
    // One byte every 300 ms for 3 s, with a 1 s read timeout: each byte
    // restarts the clock, as nginx's "between two reads" says.
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
            for byte in b"0123456789" {
                std::thread::sleep(Duration::from_millis(300));
                conn.send(&[*byte]);
            }
        }
    });
    let ferry = Ferry::start(origin.addr, &["--set", "proxy_read_timeout=1s"]);
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "0123456789")
    );
}

#[test]
fn an_upstream_stalling_mid_body_gets_the_client_closed() {
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhalf");
            std::thread::sleep(Duration::from_secs(10));
        }
    });
    let ferry = Ferry::start(origin.addr, &["--set", "proxy_read_timeout=1s"]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let (got, elapsed) = read_until_closed(&mut stream, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.ends_with("half"),
        "{text}"
    );
    assert_took(elapsed, Duration::from_millis(900), Duration::from_secs(3));
}

#[test]
fn proxy_connect_timeout_gives_504() {
    // A listener with a full accept queue that never accepts: further SYNs
    // are dropped, so a connect neither succeeds nor fails.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let filler =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        filler.set_nonblocking(true).unwrap();
        let _ = filler.connect(&addr.into());
        fillers.push(filler);
    }
    std::thread::sleep(Duration::from_millis(100));
    let ferry = Ferry::start(addr, &["--set", "proxy_connect_timeout=1s"]);
    let started = Instant::now();
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 504);
    assert_took(
        started.elapsed(),
        Duration::from_millis(900),
        Duration::from_secs(4),
    );
    drop(fillers);
}

#[test]
fn proxy_send_timeout_gives_504_when_the_upstream_stops_reading() {
    let origin = Origin::start(|conn| {
        // Reads nothing at all.
        std::thread::sleep(Duration::from_secs(10));
        drop(conn);
    });
    let ferry = Ferry::start(
        origin.addr,
        &[
            "--set",
            "proxy_send_timeout=1s",
            "--client-max-body-size",
            "0",
        ],
    );
    let mut stream = ferry.connect();
    let size = 64 << 20;
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n"
    )
    .unwrap();
    let writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut writer = writer;
        let block = vec![b'u'; 1 << 20];
        for _ in 0..64 {
            if writer.write_all(&block).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let response = read_response(&mut BufReader::new(stream), "POST").unwrap();
    assert_eq!(response.status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn send_timeout_closes_a_client_that_stopped_reading() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let done_tx = std::sync::Mutex::new(done_tx);
    let origin = Origin::start(move |mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
            let block = [b's'; 65536];
            while conn.send(&block) {}
            let _ = done_tx.lock().unwrap().send(Instant::now());
        }
    });
    let ferry = Ferry::start(origin.addr, &["--set", "send_timeout=1s"]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // Never read: ferry's buffers and the socket buffers fill, then the
    // send timeout closes both sides.
    let closed_at = done_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the upstream connection was never closed");
    drop(stream);
    assert!(closed_at.elapsed() < Duration::from_secs(15));
}

#[test]
fn idle_pooled_upstream_connections_expire() {
    let origin = Origin::standard();
    let ferry = Ferry::start(
        origin.addr,
        &[
            "--set",
            "upstream_keepalive_timeout=1s",
            "--status-path",
            "/_status",
        ],
    );
    request(
        ferry.addr,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    ferry.wait_for_counters(Duration::from_secs(1), |c| {
        c["pooled_upstream_connections"] == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        ferry.counters()["pooled_upstream_connections"],
        1,
        "expired too early"
    );
    ferry.wait_for_counters(Duration::from_secs(3), |c| {
        c["pooled_upstream_connections"] == 0 && c["upstream_connections"] == 0
    });
}

//! `proxy_next_upstream`, attempt by attempt (issue 12, item 9): every
//! attempt gets its own connect/send/read clocks, so a retry onto a healthy
//! server (fresh or pooled) is never cut short by the failed attempt's
//! time, and the healthy server is never marked failed for it. The matrix:
//! {timeout, reset, refused, 502, 503} x {fresh, pooled} x {1, 2, 3
//! servers}, each server counting what it received and the Prometheus page
//! saying which servers were marked failed.

mod util;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Failure {
    /// Reads the request and never answers.
    Timeout,
    /// Reads the request and resets the connection.
    Reset,
    /// Nothing listens.
    Refused,
    /// Answers with this status.
    Status(u16),
}

impl Failure {
    /// What a client gets when this server is the only one.
    fn status_alone(self) -> u16 {
        match self {
            Failure::Timeout => 504,
            Failure::Reset | Failure::Refused => 502,
            Failure::Status(status) => status,
        }
    }
}

/// A failing server and how many requests reached it.
struct BadServer {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    _origin: Option<Origin>,
}

fn bad_server(failure: Failure) -> BadServer {
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let origin = match failure {
        Failure::Refused => None,
        _ => Some(Origin::start(move |mut conn| {
            while conn.next_request().is_some() {
                count.fetch_add(1, Ordering::SeqCst);
                match failure {
                    Failure::Timeout => {
                        std::thread::sleep(Duration::from_secs(3));
                        return;
                    }
                    Failure::Reset => {
                        let _ =
                            socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
                        return;
                    }
                    Failure::Status(status) => {
                        let answer =
                            format!("HTTP/1.1 {status} Bad\r\nContent-Length: 3\r\n\r\nbad");
                        if !conn.send(answer.as_bytes()) {
                            return;
                        }
                    }
                    Failure::Refused => return,
                }
            }
        })),
    };
    BadServer {
        addr: origin.as_ref().map_or_else(dead_address, |o| o.addr),
        received,
        _origin: origin,
    }
}

/// The healthy server: keep-alive (its connections are pooled) or one
/// response per connection (every attempt on it is a fresh connect).
fn good_server(pooled: bool) -> Origin {
    Origin::start(move |mut conn| {
        while conn.next_request().is_some() {
            let answer: &[u8] = if pooled {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            } else {
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
            };
            if !conn.send(answer) || !pooled {
                return;
            }
        }
    })
}

fn prometheus_sample(page: &str, name: &str) -> Option<i64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// One cell of the matrix: `servers` in the group, the healthy one first
/// (round robin sends it the first request, so with `pooled` it has an
/// idle connection when a bad server's request fails over to it).
fn run(failure: Failure, pooled: bool, servers: usize) {
    let label = format!("{failure:?}, pooled {pooled}, {servers} servers");
    let good = good_server(pooled);
    let bad: Vec<BadServer> = (0..servers.saturating_sub(1).max(usize::from(servers == 1)))
        .map(|_| bad_server(failure))
        .collect();
    let mut lines = Vec::new();
    if servers > 1 {
        lines.push(format!(
            "server {} max_fails=1 fail_timeout=30s;",
            good.addr
        ));
    }
    for server in &bad {
        lines.push(format!(
            "server {} max_fails=1 fail_timeout=30s;",
            server.addr
        ));
    }
    let (ferry, dir) = Ferry::start_config(
        &format!("failover-{}", label.replace([' ', ',', '(', ')'], "")),
        &format!(
            "upstream backend {{ {} keepalive 8; }}\n\
             server {{ listen 127.0.0.1:PORT;\n\
               location = /status {{ stub_status; }}\n\
               location / {{ proxy_pass http://backend; proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n\
                 proxy_connect_timeout 1s; proxy_read_timeout 300ms;\n\
                 proxy_next_upstream error timeout http_502 http_503; }} }}",
            lines.join(" ")
        ),
    );
    let mut statuses = Vec::new();
    let started = Instant::now();
    let mut client = ferry.connect();
    let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
    for _ in 0..6 {
        use std::io::Write;
        client
            .write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, "GET").expect("a response");
        statuses.push(response.status);
        if response.header("connection").as_deref() == Some("close") {
            client = ferry.connect();
            reader = std::io::BufReader::new(client.try_clone().unwrap());
        }
    }
    let page = request(
        ferry.addr,
        "GET /status?format=prometheus HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .text();
    let failures = |addr: SocketAddr| {
        prometheus_sample(
            &page,
            &format!("ferry_upstream_failures_total{{upstream=\"backend\",server=\"{addr}\"}}"),
        )
    };
    if servers == 1 {
        // Nothing to fail over to: every request gets the failure, and a
        // lone server is never marked down (nginx's rule).
        assert_eq!(statuses, vec![failure.status_alone(); 6], "{label}");
    } else {
        assert_eq!(statuses, vec![200; 6], "{label}");
        assert_eq!(
            failures(good.addr),
            Some(0),
            "{label}: healthy marked failed\n{page}"
        );
        assert_eq!(good.requests().len(), 6, "{label}");
        for server in &bad {
            // Tried once, marked failed (max_fails=1), then left alone.
            assert_eq!(failures(server.addr), Some(1), "{label}\n{page}");
            if failure != Failure::Refused {
                assert_eq!(server.received.load(Ordering::SeqCst), 1, "{label}");
            }
        }
    }
    // Bounded: a timeout costs proxy_read_timeout per bad attempt, no more.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{label}: {:?}",
        started.elapsed()
    );
    drop(ferry);
    let _ = std::fs::remove_dir_all(dir);
}

macro_rules! matrix {
    ($($name:ident: $failure:expr;)*) => {
        $(
            #[test]
            fn $name() {
                for pooled in [false, true] {
                    for servers in [1, 2, 3] {
                        run($failure, pooled, servers);
                    }
                }
            }
        )*
    };
}

matrix! {
    timeout_fails_over_with_fresh_clocks: Failure::Timeout;
    reset_fails_over: Failure::Reset;
    refused_fails_over: Failure::Refused;
    status_502_fails_over: Failure::Status(502);
    status_503_fails_over: Failure::Status(503);
}

/// `proxy_next_upstream_timeout` bounds the whole: once it has passed
/// since the first attempt, no other server is tried.
#[test]
fn next_upstream_timeout_bounds_all_attempts() {
    let slow: Vec<BadServer> = (0..3).map(|_| bad_server(Failure::Timeout)).collect();
    let good = good_server(true);
    let servers: Vec<String> = slow
        .iter()
        .map(|s| format!("server {};", s.addr))
        .chain([format!("server {} backup;", good.addr)])
        .collect();
    let (ferry, dir) = Ferry::start_config(
        "next-upstream-timeout",
        &format!(
            "upstream backend {{ {} }}\n\
             server {{ listen 127.0.0.1:PORT;\n\
               location / {{ proxy_pass http://backend; proxy_read_timeout 300ms;\n\
                 proxy_next_upstream error timeout; proxy_next_upstream_timeout 500ms; }} }}",
            servers.join(" ")
        ),
    );
    let started = Instant::now();
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    // Two attempts of 300 ms pass the 500 ms bound: the third server and
    // the backup are not tried.
    assert_eq!(response.status, 504);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    let tried: usize = slow.iter().map(|s| s.received.load(Ordering::SeqCst)).sum();
    assert_eq!(tried, 2);
    assert!(good.requests().is_empty());
    drop(ferry);
    let _ = std::fs::remove_dir_all(dir);
}

/// Item 10: one error line per failed attempt with nginx's context,
/// "trying the next one" only when there is one, and `$upstream_status`
/// and `$upstream_response_time` lists as nginx writes them.
#[test]
fn each_failed_attempt_is_logged_and_listed() {
    let dead = [dead_address(), dead_address()];
    let good = good_server(true);
    let dir = scratch_dir("attempt-log");
    let log = dir.join("access.log");
    let (ferry, config_dir) = Ferry::start_config(
        "attempt-log",
        &format!(
            "log_format attempts '$status $upstream_addr|$upstream_status|$upstream_connect_time|$upstream_response_time';\n\
             upstream two {{ server {}; server {}; }}\n\
             upstream pair {{ server {}; server {}; }}\n\
             server {{ listen 127.0.0.1:PORT; server_name example.test;\n\
               access_log {} attempts;\n\
               location /two {{ proxy_pass http://two; }}\n\
               location /pair {{ proxy_pass http://pair; }} }}",
            dead[0],
            dead[1],
            dead[0],
            good.addr,
            log.display()
        ),
    );
    let response = request(ferry.addr, "GET /two HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(response.status, 502);
    let response = request(ferry.addr, "GET /pair HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(ferry.wait_for_stderr_count(Duration::from_secs(5), "connect() to upstream failed", 3));
    let lines: Vec<String> = ferry
        .stderr()
        .into_iter()
        .filter(|l| l.contains("connect() to upstream failed"))
        .collect();
    // /two: the first dead server has a next one, the second does not.
    assert!(lines[0].contains("trying the next one"), "{lines:?}");
    assert!(!lines[1].contains("trying the next one"), "{lines:?}");
    assert!(lines[2].contains("trying the next one"), "{lines:?}");
    for line in &lines {
        assert!(line.contains(" while connecting to upstream, client: 127.0.0.1, server: example.test, request: \"GET /"), "{line}");
        assert!(line.contains(", upstream: \"http://127.0.0.1:"), "{line}");
        assert!(line.contains(", host: \"h.test\""), "{line}");
    }
    // Lines are written at the end of a loop turn: wait for both.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(ferry);
    let entries: Vec<&str> = text.lines().collect();
    assert_eq!(entries.len(), 2, "{text}");
    let fields: Vec<&str> = entries[0].split('|').collect();
    assert_eq!(fields[0], format!("502 {}, {}", dead[0], dead[1]));
    assert_eq!(fields[1], "502, 502");
    assert_eq!(fields[2], "-, -");
    assert!(
        fields[3].split(", ").all(|t| t.parse::<f64>().is_ok()),
        "{text}"
    );
    let fields: Vec<&str> = entries[1].split('|').collect();
    assert_eq!(fields[1], "502, 200");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(config_dir);
}

//! Persistence on both sides: the client connection by the version rules,
//! the upstream connection through the idle pool.

mod util;

use std::io::{BufReader, Write};
use std::time::Duration;

use util::*;

/// Sends `raw`, reads the response, and reports whether ferry kept the
/// connection open afterwards.
fn kept_open(ferry: &Ferry, raw: &str) -> (Response, bool) {
    let mut stream = ferry.connect();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let response = read_response(&mut reader, "GET").expect("response");
    let open = still_open(&mut stream, Duration::from_millis(300));
    (response, open)
}

#[test]
fn client_keep_alive_follows_the_version_rules() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let cases = [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, None),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
            Some("close"),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n",
            false,
            Some("close"),
        ),
        ("GET / HTTP/1.0\r\n\r\n", false, Some("close")),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            true,
            Some("keep-alive"),
        ),
        (
            "GET / HTTP/1.0\r\nConnection: Keep-Alive, foo\r\n\r\n",
            true,
            Some("keep-alive"),
        ),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
            Some("close"),
        ),
    ];
    for (raw, expect_open, connection_header) in cases {
        let (response, open) = kept_open(&ferry, raw);
        assert_eq!(response.status, 200, "{raw:?}");
        assert_eq!(open, expect_open, "{raw:?}");
        assert_eq!(
            response.header("connection").as_deref(),
            connection_header,
            "{raw:?}"
        );
    }
}

#[test]
fn upstream_close_closes_the_client_connection_too() {
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let (response, open) = kept_open(&ferry, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert!(!open);
}

#[test]
fn a_hundred_requests_use_at_most_two_upstream_connections() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let stream = ferry.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for i in 0..100 {
        write!(
            writer,
            "GET /bytes/{}/length HTTP/1.1\r\nHost: a\r\n\r\n",
            i * 10
        )
        .unwrap();
        let (response, len, hash) = read_response_hashed(&mut reader, "GET", 0).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!((len, hash), (i * 10, Hash::of_pattern(i * 10)));
    }
    assert!(
        origin.accepts() <= 2,
        "{} upstream connections",
        origin.accepts()
    );
    assert_eq!(origin.requests().len(), 100);
}

#[test]
fn an_origin_closing_idle_connections_causes_no_client_error() {
    // Answers one request per connection, as keep-alive, then closes it
    // while it sits idle in ferry's pool: the keep-alive race.
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let stream = ferry.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for i in 0..50 {
        // Alternate between racing the close and arriving after it.
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, "GET").unwrap();
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "hello"),
            "request {i}"
        );
    }
    assert_eq!(origin.requests().len(), 50);
}

/// An origin whose every connection answers its first request and silently
/// drops the second one: the keep-alive race, every time.
fn answers_once_then_drops() -> Origin {
    Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        let _ = conn.next_request();
    })
}

#[test]
fn a_reused_connection_that_dies_unanswered_is_retried_once() {
    // The retry on a fresh connection must hide the dropped request.
    let origin = answers_once_then_drops();
    let ferry = Ferry::start(origin.addr, &[]);
    let stream = ferry.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..5 {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, "GET").unwrap();
        assert_eq!(response.status, 200);
    }
}

#[test]
fn a_post_on_a_dying_reused_connection_is_not_retried() {
    let origin = answers_once_then_drops();
    let ferry = Ferry::start(origin.addr, &[]);
    let stream = ferry.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, "GET").unwrap().status, 200);
    writer
        .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert_eq!(read_response(&mut reader, "POST").unwrap().status, 502);
    let posts = origin
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "a non-idempotent request was sent twice");
}

/// Sends `rounds` requests on each of `clients` connections at once, in
/// lockstep (every client waits for all the others between rounds), so
/// that every round needs `clients` upstream connections at the same time.
fn lockstep(addr: std::net::SocketAddr, clients: usize, rounds: usize) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let stream = connect(addr);
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for _ in 0..rounds {
                    barrier.wait();
                    writer
                        .write_all(b"GET /bytes/100/length HTTP/1.1\r\nHost: a\r\n\r\n")
                        .unwrap();
                    let response = read_response(&mut reader, "GET").unwrap();
                    assert_eq!(response.status, 200);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

/// Issue 13: without a `keepalive` line ferry keeps as many idle upstream
/// connections as the recent peak needed, so a steady load of 48 clients
/// (more than nginx's usual `keepalive 32`) does not reconnect per burst;
/// an explicit `keepalive N` keeps nginx's meaning and closes the extras.
#[test]
fn a_steady_load_does_not_churn_upstream_connections() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--access-log", "off"]);
    within(Duration::from_secs(60), move || {
        lockstep(ferry.addr, 48, 20);
        // Each client needed its own upstream connection, once.
        assert!(origin.accepts() <= 48 + 2, "{} connects", origin.accepts());
    });
    let origin = Origin::standard();
    let ferry = Ferry::start(
        origin.addr,
        &["--access-log", "off", "--upstream-keepalive", "8"],
    );
    within(Duration::from_secs(60), move || {
        lockstep(ferry.addr, 48, 20);
        // nginx's meaning: at most 8 idle, so most bursts reconnect.
        assert!(origin.accepts() > 48 * 5, "{} connects", origin.accepts());
    });
}

/// `keepalive_disable`: MSIE 6's POST requests close the connection by
/// default, Safari's with `safari`, as nginx decides from `User-Agent`.
#[test]
fn keepalive_disable_closes_for_the_browsers_it_names() {
    const MSIE6: &str = "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)";
    const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15";
    let cases = [
        ("", "GET", MSIE6, "keep-alive"),
        ("", "POST", MSIE6, "close"),
        ("", "GET", SAFARI, "keep-alive"),
        ("keepalive_disable none;", "POST", MSIE6, "keep-alive"),
        ("keepalive_disable safari;", "GET", SAFARI, "close"),
        ("keepalive_disable safari;", "POST", MSIE6, "keep-alive"),
        ("keepalive_disable msie6 safari;", "POST", MSIE6, "close"),
    ];
    let connection = |addr: std::net::SocketAddr, method: &str, agent: &str| {
        let response = util::request(
            addr,
            &format!(
                "{method} / HTTP/1.1\r\nHost: h\r\nUser-Agent: {agent}\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        response
            .header("Connection")
            .unwrap_or_else(|| "keep-alive".to_string())
    };
    for (line, method, agent, expected) in cases {
        let server = format!("{line} location / {{ return 200 \"ok\\n\"; }}");
        let (ferry, _) = util::Ferry::start_config(
            "keepalive-disable",
            &format!("server {{ listen 127.0.0.1:PORT; {server} }}"),
        );
        assert_eq!(
            connection(ferry.addr, method, agent),
            expected,
            "ferry: {line} {method}"
        );
        if let Some(nginx) = util::require_tool("nginx") {
            let nginx = util::Nginx::start(&nginx, "keepalive-disable", &server);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port));
            assert_eq!(
                connection(addr, method, agent),
                expected,
                "nginx: {line} {method}"
            );
        }
    }
}

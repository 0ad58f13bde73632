//! `stub_status`: nginx's status page, byte for byte, with numbers that
//! match what the test did, and the same text nginx gives for the same
//! steps.

mod util;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use util::*;

/// Sends one keep-alive request on `stream` and returns the response.
fn exchange(reader: &mut BufReader<TcpStream>, method: &str, target: &str) -> Response {
    reader
        .get_mut()
        .write_all(format!("{method} {target} HTTP/1.1\r\nHost: s\r\n\r\n").as_bytes())
        .unwrap();
    read_response(reader, method).expect("a response")
}

/// Idle, half-read and status connections, then fewer of them; returns
/// both status pages and the status a POST gets.
fn scenario(addr: SocketAddr) -> (String, String, u16) {
    // A: two requests, then idle (Waiting).
    let mut idle = BufReader::new(connect(addr));
    for _ in 0..2 {
        assert_eq!(exchange(&mut idle, "GET", "/").status, 200);
    }
    // B: half a request head (Reading).
    let mut reading = connect(addr);
    reading.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    thread::sleep(Duration::from_millis(300));

    // C: the status request itself counts as Writing.
    let mut status = BufReader::new(connect(addr));
    let response = exchange(&mut status, "GET", "/basic_status");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/plain")
    );
    let first = response.text();

    drop(idle);
    drop(reading);
    thread::sleep(Duration::from_millis(300));
    let second = exchange(&mut status, "GET", "/basic_status").text();
    let post = exchange(&mut status, "POST", "/basic_status").status;
    (first, second, post)
}

#[test]
fn stub_status_counts_in_nginx_format() {
    let origin = Origin::standard();
    let (ferry, dir) = Ferry::start_config(
        "stub-status",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location = /basic_status {{ stub_status; }}\n\
             location / {{ proxy_pass http://{}; }} }}",
            origin.addr
        ),
    );
    let ferry_addr = ferry.addr;
    let (first, second, post) = within(Duration::from_secs(20), move || scenario(ferry_addr));
    // A's two requests, B's begun one, C's: nginx counts from the first byte.
    assert_eq!(
        first,
        "Active connections: 3 \nserver accepts handled requests\n 3 3 4 \n\
         Reading: 1 Writing: 1 Waiting: 1 \n"
    );
    assert_eq!(
        second,
        "Active connections: 1 \nserver accepts handled requests\n 3 3 5 \n\
         Reading: 0 Writing: 1 Waiting: 0 \n"
    );
    // nginx answers only GET and HEAD here.
    assert_eq!(post, 405);
    drop(ferry);
    let _ = std::fs::remove_dir_all(dir);

    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let nginx = Nginx::start(
        &nginx,
        "stub-status",
        "location = /basic_status { stub_status; }\nlocation / { return 200 \"ok\\n\"; }",
    );
    let nginx_addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let (nginx_first, nginx_second, nginx_post) =
        within(Duration::from_secs(20), move || scenario(nginx_addr));
    assert_eq!(
        (
            without_probe(&nginx_first),
            without_probe(&nginx_second),
            nginx_post
        ),
        (first, second, post),
        "nginx differs"
    );
}

/// nginx's page less the one connection `Nginx::start` made to see that
/// it listens (accepted and handled, no request).
fn without_probe(page: &str) -> String {
    let mut lines: Vec<String> = page.split_inclusive('\n').map(str::to_string).collect();
    if let Some(counts) = lines.get_mut(2) {
        let numbers: Vec<u64> = counts
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        if let [accepts, handled, requests] = numbers[..] {
            *counts = format!(" {} {} {requests} \n", accepts - 1, handled - 1);
        }
    }
    lines.concat()
}

/// The value of the sample `name_and_labels` in a Prometheus page.
fn sample(page: &str, name_and_labels: &str) -> Option<u64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[test]
fn prometheus_format_counts_responses_and_upstream_servers() {
    let origin = Origin::standard();
    let dead = dead_address();
    let (ferry, dir) = Ferry::start_config(
        "stub-status-prometheus",
        &format!(
            "upstream backend {{ server {}; server {dead} max_fails=1 fail_timeout=30s; keepalive 4; }}\n\
             server {{ listen 127.0.0.1:PORT;\n\
             location = /status {{ stub_status; }}\n\
             location = /missing {{ return 404; }}\n\
             location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}",
            origin.addr
        ),
    );
    // Round robin tries the dead server once, fails over, then avoids it.
    for _ in 0..6 {
        assert_eq!(
            request(
                ferry.addr,
                "GET /bytes/10/len HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
            )
            .status,
            200
        );
    }
    assert_eq!(
        request(
            ferry.addr,
            "GET /missing HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
        )
        .status,
        404
    );
    let page = request(
        ferry.addr,
        "GET /status?format=prometheus HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .text();
    let live = format!("{{upstream=\"backend\",server=\"{}\"}}", origin.addr);
    let down = format!("{{upstream=\"backend\",server=\"{dead}\"}}");
    for (name, expected) in [
        ("ferry_connections_accepted_total".to_string(), 8),
        ("ferry_requests_total".to_string(), 8),
        ("ferry_connections_active".to_string(), 1),
        ("ferry_connections{state=\"writing\"}".to_string(), 1),
        ("ferry_responses_total{class=\"2xx\"}".to_string(), 6),
        ("ferry_responses_total{class=\"4xx\"}".to_string(), 1),
        ("ferry_responses_total{class=\"5xx\"}".to_string(), 0),
        ("ferry_worker_requests_total{worker=\"0\"}".to_string(), 8),
        (format!("ferry_upstream_requests_total{live}"), 6),
        (format!("ferry_upstream_requests_total{down}"), 1),
        (format!("ferry_upstream_failures_total{live}"), 0),
        (format!("ferry_upstream_failures_total{down}"), 1),
        (format!("ferry_upstream_up{live}"), 1),
        (format!("ferry_upstream_up{down}"), 0),
        (format!("ferry_upstream_pooled_connections{live}"), 1),
    ] {
        assert_eq!(sample(&page, &name), Some(expected), "{name} in\n{page}");
    }
    // Every sample is announced by a TYPE line.
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(page.contains(&format!("# TYPE {name} ")), "{line}");
    }
    drop(ferry);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_connections_page_lists_each_live_connection() {
    let origin = Origin::standard();
    let (ferry, dir) = Ferry::start_config(
        "stub-status-connections",
        &format!(
            "server {{ listen 127.0.0.1:PORT;\n\
             location = /status {{ stub_status; }}\n\
             location / {{ proxy_pass http://{}; }} }}",
            origin.addr
        ),
    );
    // An idle keep-alive connection after two requests.
    let mut idle = BufReader::new(ferry.connect());
    for _ in 0..2 {
        assert_eq!(exchange(&mut idle, "GET", "/bytes/100/len").status, 200);
    }
    let idle_port = idle.get_ref().local_addr().unwrap().port();
    // A download the client does not read: stuck forwarding.
    let mut busy = ferry.connect();
    busy.write_all(b"GET /bytes/67108864/len HTTP/1.1\r\nHost: s\r\n\r\n")
        .unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    thread::sleep(Duration::from_millis(300));

    let page = request(
        ferry.addr,
        "GET /status?connections HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .text();
    let lines: Vec<&str> = page.lines().collect();
    assert!(
        lines[0].starts_with("# worker 0 of 1: 3 connections"),
        "{page}"
    );
    let row = |port: u16| -> Vec<String> {
        let suffix = format!(":{port}");
        lines
            .iter()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|fields| fields.get(1).is_some_and(|c| c.ends_with(&suffix)))
            .unwrap_or_else(|| panic!("no line for port {port} in\n{page}"))
    };
    // id client phase age requests bytes_in bytes_out upstream
    let idle_row = row(idle_port);
    assert_eq!(idle_row[2], "Idle");
    assert_eq!(idle_row[4], "2");
    assert_eq!(
        idle_row[5],
        (2 * "GET /bytes/100/len HTTP/1.1\r\nHost: s\r\n\r\n".len()).to_string()
    );
    assert!(idle_row[6].parse::<u64>().unwrap() > 200, "{idle_row:?}");
    assert_eq!(idle_row[7], "-");
    let busy_row = row(busy_port);
    assert_eq!(busy_row[2], "Forwarding");
    assert_eq!(busy_row[4], "1");
    assert_eq!(busy_row[7], origin.addr.to_string());
    let asking = lines
        .iter()
        .filter(|l| l.contains("WritingResponse"))
        .count();
    assert_eq!(asking, 1, "the asking connection lists itself\n{page}");
    drop(ferry);
    let _ = std::fs::remove_dir_all(dir);
}

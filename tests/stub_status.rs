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

//! The loop's two ways of sparing the other processes work (issue 13):
//! it keeps polling for a short while after events instead of sleeping at
//! once, and it lets the kernel hold a response head for the body that
//! follows (`MSG_MORE`). Neither may cost an idle ferry CPU, and neither
//! may hold a byte back when the upstream stalls.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use util::*;

#[test]
fn an_idle_ferry_does_not_spin() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--access-log", "off"]);
    for _ in 0..200 {
        request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }
    // Idle keep-alive clients and pooled upstream connections, no traffic.
    let _idle: Vec<_> = (0..10).map(|_| connect(ferry.addr)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let before = ferry.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = ferry.cpu_time().saturating_sub(before);
    // Polling on would take the whole second; sleeping takes next to none.
    assert!(
        used < Duration::from_millis(100),
        "{used:?} of CPU in 1 s idle"
    );
}

#[test]
fn a_head_waiting_for_its_body_is_not_held_back() {
    let origin = Origin::start(|mut conn| {
        if conn.next_request().is_some() {
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n");
            std::thread::sleep(Duration::from_millis(1000));
            conn.send(b"late");
        }
    });
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = connect(ferry.addr);
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let head_after = started.elapsed();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Written with MSG_MORE, the head would sit in the kernel for 200 ms
    // if ferry did not flush it before sleeping.
    assert!(
        head_after < Duration::from_millis(150),
        "head after {head_after:?}"
    );
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut body = [0u8; 4];
    reader.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"late");
}

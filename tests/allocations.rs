//! No heap allocation per request: ferry's event loop runs in this process
//! on its own thread, whose allocations are counted (the clients and the
//! origin run on other threads and are not). After a warm-up that lets
//! every pool, buffer and list reach its working size, 10,000 more requests
//! of every kind (small keep-alive, chunked, 1 MiB, a new connection per
//! request, pooled upstream connections) must not allocate once. It counts,
//! it does not time: it cannot flake on a slow machine.

mod util;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use ferry::config::{AccessLogTarget, Config};
use ferry::event_loop::{EventLoop, Turn, WorkerSetup};
use mio::Events;
use util::*;

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const DONE: u8 = 2;

/// Sends `count` rounds of the request mix; returns how many requests.
fn traffic(addr: SocketAddr, count: usize) -> usize {
    let mut sent = 0;
    let open = || {
        let stream = connect(addr);
        (stream.try_clone().unwrap(), BufReader::new(stream))
    };
    let (mut writer, mut reader) = open();
    let mut ask = |path: &str, sent: &mut usize| {
        write!(writer, "GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let (response, _, _) = read_response_hashed(&mut reader, "GET", 0).expect("a response");
        assert_eq!(response.status, 200, "{path}");
        // keepalive_requests: the connection's last response says close.
        if response.header("connection").as_deref() == Some("close") {
            (writer, reader) = open();
        }
        *sent += 1;
    };
    for round in 0..count {
        ask("/bytes/100/length", &mut sent);
        ask("/bytes/5000/chunked", &mut sent);
        ask("/bytes/3000/length", &mut sent);
        if round % 50 == 0 {
            ask("/bytes/1048576/length", &mut sent);
        }
        // A new client connection for one request.
        let mut once = connect(addr);
        once.write_all(b"GET /bytes/10/length HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut once = BufReader::new(once);
        let response = read_response(&mut once, "GET").expect("a response");
        assert_eq!(response.status, 200);
        sent += 1;
    }
    sent
}

#[test]
fn ten_thousand_requests_allocate_nothing() {
    let origin = Origin::standard();
    let phase = Arc::new(AtomicU8::new(WARMING));
    let (started, ready) = mpsc::channel();
    let (result, counted) = mpsc::channel();
    let loop_phase = phase.clone();
    let upstream = origin.addr;
    // The loop is built on its thread (it holds `Rc`s) and says where it
    // listens and how to wake it.
    thread::spawn(move || {
        let mut config = Config::simple(vec!["127.0.0.1:0".parse().unwrap()], upstream);
        config.set_settings(|s| s.access_log = AccessLogTarget::Off);
        let (_commands, receiver) = mpsc::channel();
        let mut event_loop =
            EventLoop::bind_worker(config, receiver, WorkerSetup::single()).expect("bind");
        let waker = event_loop.waker().expect("a worker has a waker");
        started.send((event_loop.local_addrs()[0], waker)).unwrap();
        let mut events = Events::with_capacity(1024);
        let mut turn = || {
            assert_eq!(event_loop.turn(&mut events).unwrap(), Turn::Continue);
        };
        while loop_phase.load(Ordering::SeqCst) == WARMING {
            turn();
        }
        let info = allocation_counter::measure(|| {
            while loop_phase.load(Ordering::SeqCst) == MEASURING {
                turn();
            }
        });
        let _ = result.send(info);
    });
    let (addr, waker) = ready
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the loop starts");

    let warm = traffic(addr, 400);
    phase.store(MEASURING, Ordering::SeqCst);
    waker.wake().unwrap();
    let measured = traffic(addr, 2500);
    phase.store(DONE, Ordering::SeqCst);
    waker.wake().unwrap();
    let info = counted
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the loop reports");
    eprintln!("warm-up {warm} requests; measured {measured} requests: {info:?}");
    assert!(measured >= 10_000, "{measured}");
    assert_eq!(
        info.count_total, 0,
        "{} allocations ({} bytes) in {measured} requests",
        info.count_total, info.bytes_total
    );
}

//! Staying alive under abuse and faults: slow clients, connection floods,
//! descriptor exhaustion, half-closes and aborts, many idle clients, and a
//! soak mixing them all. Nothing may leak once traffic stops.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

#[test]
fn slowloris_does_not_delay_a_normal_client_and_is_cut_off() {
    let origin = Origin::standard();
    let ferry = Ferry::start(
        origin.addr,
        &[
            "--set",
            "client_header_timeout=3s",
            "--worker-connections",
            "2000",
            "--status-path",
            "/_status",
        ],
    );
    let addr = ferry.addr;
    let mut slow: Vec<TcpStream> = (0..500).map(|_| connect(addr)).collect();
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    for round in 0..2 {
        for stream in slow.iter_mut() {
            let _ = stream.write_all(&head[round..round + 1]);
        }
        // A normal client, in the middle of the trickle.
        let served = Instant::now();
        let response = request(addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(response.status, 200);
        assert!(
            served.elapsed() < Duration::from_millis(500),
            "{:?}",
            served.elapsed()
        );
        thread::sleep(Duration::from_secs(1));
    }
    // At client_header_timeout every trickler gets 408 and is closed.
    for stream in slow.iter_mut() {
        let mut got = Vec::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.read_to_end(&mut got);
        assert!(
            got.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // ferry lingers until the clients close their side.
    drop(slow);
    ferry.wait_for_counters(Duration::from_secs(2), |c| c["connections"] == 0);
}

#[test]
fn at_worker_connections_new_clients_wait_and_are_served_later() {
    let origin = Origin::standard();
    // 4 clients plus the one pooled upstream connection they share.
    let ferry = Ferry::start(origin.addr, &["--worker-connections", "5"]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = ferry.connect();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        assert_eq!(read_response(&mut reader, "GET").unwrap().status, 200);
        held.push(stream);
    }
    // The kernel completes this handshake (backlog), but ferry does not
    // accept it while at the limit.
    let mut waiting = ferry.connect();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        waiting.read(&mut byte).is_err(),
        "served beyond worker_connections"
    );
    drop(held.pop());
    waiting.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let response = read_response(&mut BufReader::new(waiting), "GET").unwrap();
    assert_eq!(response.status, 200);
}

#[test]
fn descriptor_exhaustion_does_not_spin_and_recovers() {
    let origin = Origin::standard();
    let upstream = origin.addr.to_string();
    let ferry = Ferry::start_with_nofile(
        32,
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--worker-connections",
            "1000",
        ],
    );
    // More connections than ferry has descriptors for.
    let hogs: Vec<TcpStream> = (0..60).map(|_| connect(ferry.addr)).collect();
    thread::sleep(Duration::from_millis(300));
    let cpu_before = ferry.cpu_time();
    thread::sleep(Duration::from_secs(2));
    let cpu_used = ferry.cpu_time() - cpu_before;
    assert!(
        cpu_used < Duration::from_millis(300),
        "ferry spun: {cpu_used:?} of CPU in 2 s"
    );
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(3),
        "accept() failed: Too many open files"
    ));
    drop(hogs);
    // Descriptors free up: service resumes by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = ferry.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let ok = stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .is_ok()
            && read_response(&mut BufReader::new(stream), "GET").is_some_and(|r| r.status == 200);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "ferry did not recover");
    }
    // One warning per second at most.
    let warnings = ferry
        .stderr()
        .iter()
        .filter(|l| l.contains("accept() failed"))
        .count();
    assert!(warnings <= 5, "{warnings} warnings");
}

#[test]
fn a_half_closed_client_gets_its_whole_response() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"GET /bytes/1048576/length HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (response, len, hash) = read_response_hashed(&mut reader, "GET", 0).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!((len, hash), (1 << 20, Hash::of_pattern(1 << 20)));
    // Nothing more will come from this client: ferry closes after the response.
    assert!(closed_within(&mut stream, Duration::from_secs(3)));
}

#[test]
fn aborted_uploads_and_downloads_release_both_sockets() {
    let origin = Origin::standard();
    let ferry = Ferry::start(
        origin.addr,
        &["--status-path", "/_status", "--client-max-body-size", "0"],
    );
    ferry.wait_for_counters(Duration::from_secs(2), |c| c["connections"] == 0);
    let fds_before = ferry.fd_count();
    for _ in 0..10 {
        // Mid-upload.
        let mut upload = ferry.connect();
        upload
            .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
            .unwrap();
        upload.write_all(&[b'x'; 100_000]).unwrap();
        // Mid-download.
        let mut download = ferry.connect();
        download
            .write_all(b"GET /bytes/50000000/length HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut some = [0u8; 50_000];
        download.read_exact(&mut some).unwrap();
        thread::sleep(Duration::from_millis(20));
        drop(upload);
        drop(download);
    }
    ferry.wait_for_counters(Duration::from_secs(5), |c| {
        c["connections"] == 0
            && c["upstream_connections"] == c["pooled_upstream_connections"]
            && c["buffer_sets_lent"] <= 1
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let pooled = ferry.counters()["pooled_upstream_connections"] as usize;
    while ferry.fd_count() > fds_before + pooled {
        assert!(
            Instant::now() < deadline,
            "{} fds, {fds_before} before",
            ferry.fd_count()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ten_thousand_idle_keep_alive_clients_cost_little() {
    // 10,000 client sockets here and as many in ferry.
    if !need_descriptors(11_000) {
        return;
    }
    let origin = Origin::standard();
    let ferry = Ferry::start(
        origin.addr,
        &[
            "--access-log",
            "off",
            "--worker-connections",
            "20000",
            "--status-path",
            "/_status",
        ],
    );
    // Warm up: the first requests allocate the pools and buffers that every
    // later request reuses.
    for _ in 0..50 {
        request(ferry.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }
    thread::sleep(Duration::from_millis(100));
    let before = ferry.rss_kib();
    let mut clients = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let stream = connect(ferry.addr);
        let mut writer = stream.try_clone().unwrap();
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader, "GET").unwrap();
        assert_eq!(response.status, 200);
        clients.push(reader);
    }
    ferry.wait_for_counters(Duration::from_secs(5), |c| {
        c["connections"] == 10_000 && c["buffer_sets_lent"] <= 1
    });
    let after = ferry.rss_kib();
    let per_connection = (after.saturating_sub(before) * 1024) / 10_000;
    eprintln!("RSS {before} KiB -> {after} KiB: {per_connection} B per idle connection");
    assert!(
        per_connection < 2048,
        "{per_connection} B per idle connection"
    );
    drop(clients);
}

/// An origin for the soak: the standard routes, plus `/stall` (never
/// answers), `/truncate` (cuts the body short) and `/reset` (drops the
/// connection unanswered).
fn soak_origin() -> Origin {
    Origin::start(|mut conn| {
        while let Some(request) = conn.next_request() {
            match request.path.as_str() {
                "/stall" => {
                    thread::sleep(Duration::from_secs(3));
                    return;
                }
                "/truncate" => {
                    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nshort");
                    return;
                }
                "/reset" => return,
                _ => {
                    if !respond_standard(&mut conn, &request) {
                        return;
                    }
                }
            }
        }
    })
}

#[test]
fn soak_mixed_faults_with_normal_traffic() {
    let origin = soak_origin();
    let ferry = Ferry::start(
        origin.addr,
        &[
            "--access-log",
            "off",
            "--status-path",
            "/_status",
            "--worker-connections",
            "4000",
            "--client-max-body-size",
            "0",
            "--set",
            "client_header_timeout=1s",
            "--set",
            "client_body_timeout=1s",
            "--set",
            "proxy_read_timeout=1s",
            "--set",
            "send_timeout=1s",
            "--set",
            "keepalive_timeout=2s",
            "--set",
            "upstream_keepalive_timeout=1s",
        ],
    );
    ferry.wait_for_counters(Duration::from_secs(2), |c| c["connections"] == 0);
    let fds_idle = ferry.fd_count();
    let addr = ferry.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let normal_ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();

    // Normal clients: keep-alive loops with checksummed bodies.
    for client in 0..8u64 {
        let (stop, ok) = (stop.clone(), normal_ok.clone());
        workers.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let stream = connect(addr);
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for _ in 0..20 {
                    i += 1;
                    let size = (client * 7919 + i * 104_729) % 200_000;
                    let mode = ["length", "chunked"][(i % 2) as usize];
                    write!(
                        writer,
                        "GET /bytes/{size}/{mode} HTTP/1.1\r\nHost: a\r\n\r\n"
                    )
                    .unwrap();
                    let (response, len, hash) = read_response_hashed(&mut reader, "GET", 0)
                        .expect("a normal request failed");
                    assert_eq!(response.status, 200);
                    assert_eq!((len, hash), (size, Hash::of_pattern(size)), "corrupt body");
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    // Faults, round-robin.
    for kind in 0..6u64 {
        let stop = stop.clone();
        workers.push(thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut stream) = TcpStream::connect(addr) else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = match kind {
                    // Slowloris: a partial head, then silence.
                    0 => stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n"),
                    // Aborted upload.
                    1 => stream
                        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999\r\n\r\nabc"),
                    // Aborted download.
                    2 => stream.write_all(b"GET /bytes/9999999/length HTTP/1.1\r\nHost: a\r\n\r\n"),
                    // Garbage.
                    3 => stream.write_all(b"\x00\x01\x02 NOT HTTP\r\n\r\n"),
                    // Misbehaving upstreams.
                    4 => stream.write_all(b"GET /truncate HTTP/1.1\r\nHost: a\r\n\r\nGET /reset HTTP/1.1\r\nHost: a\r\n\r\n"),
                    _ => stream.write_all(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n"),
                };
                let mut some = [0u8; 1000];
                if kind == 2 || kind >= 4 {
                    let _ = stream.read(&mut some);
                }
                thread::sleep(Duration::from_millis(30));
                drop(stream);
            }
        }));
    }
    thread::sleep(Duration::from_secs(20));
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().expect("a worker failed");
    }
    assert!(
        normal_ok.load(Ordering::SeqCst) > 500,
        "{} normal requests",
        normal_ok.load(Ordering::SeqCst)
    );
    // Traffic stopped: everything returns to idle.
    ferry.wait_for_counters(Duration::from_secs(10), |c| {
        c["connections"] == 0 && c["upstream_connections"] == 0 && c["buffer_sets_lent"] <= 1
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while ferry.fd_count() > fds_idle {
        assert!(
            Instant::now() < deadline,
            "{} fds open, {fds_idle} when idle",
            ferry.fd_count()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!ferry.stderr().iter().any(|l| l.contains("panicked")));
}

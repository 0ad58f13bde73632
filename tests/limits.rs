//! Refusals with the right status, 100-continue, memory under load and with
//! slow readers, and many concurrent clients.

mod util;

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use util::*;

#[test]
fn bad_requests_get_their_status_and_nothing_reaches_the_upstream() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let many_fields: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_fields = format!("GET / HTTP/1.1\r\nHost: a\r\n{many_fields}\r\n");
    let cases: Vec<(&str, String, u16)> = vec![
        ("garbage", "HELLO\r\n\r\n".into(), 400),
        ("no host", "GET / HTTP/1.1\r\n\r\n".into(), 400),
        (
            "two hosts",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            400,
        ),
        (
            "CL and TE",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .into(),
            400,
        ),
        (
            "two CLs",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                .into(),
            400,
        ),
        (
            "bad CL",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc".into(),
            400,
        ),
        (
            "gzip TE",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            501,
        ),
        ("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n".into(), 505),
        ("long URI", long_uri, 414),
        ("big head", big_head, 431),
        ("many fields", many_fields, 431),
        (
            "CONNECT",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".into(),
            405,
        ),
        ("two equal CLs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".into(), 400),
        ("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc".into(), 400),
        ("TE chunked tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n".into(), 501),
        ("TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".into(), 501),
        ("TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 400),
        ("TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n".into(), 400),
        ("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n".into(), 400),
        ("bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n".into(), 400),
        ("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n".into(), 400),
        ("host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n".into(), 400),
        ("host userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n".into(), 400),
        ("lowercase method", "get / HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        ("above root", "GET /../x HTTP/1.1\r\nHost: a\r\n\r\n".into(), 400),
        ("bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), 400),
    ];
    for (name, raw, status) in cases {
        let mut stream = ferry.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let response =
            read_response(&mut reader, "GET").unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(response.status, status, "{name}");
        assert_eq!(
            response.header("connection").as_deref(),
            Some("close"),
            "{name}"
        );
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)),
            "{name}: not closed"
        );
    }
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
}

#[test]
fn a_bad_chunked_body_is_refused_before_the_response() {
    // The origin waits for the whole body before answering, so ferry sees
    // the bad framing while it can still answer.
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream), "POST").unwrap();
    assert_eq!(response.status, 400);
}

#[test]
fn expect_100_continue_uploads_without_a_stall() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--client-max-body-size", "10m"]);
    let size: u64 = 5 << 20;
    let mut stream = ferry.connect();
    write!(
        stream,
        "PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // The client waits for 100 before sending anything: a stall would
    // time out here.
    let started = Instant::now();
    let (status, _) = read_head(&mut reader).unwrap();
    assert_eq!(status, 100);
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut block = vec![0u8; 1 << 20];
    for i in 0..5u64 {
        pattern(i << 20, &mut block);
        stream.write_all(&block).unwrap();
    }
    let response = read_response(&mut reader, "PUT").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        format!("{size} {:016x}", Hash::of_pattern(size).0)
    );
    let received = &origin.requests()[0];
    assert_eq!(received.header("expect"), None);
}

#[test]
fn too_large_bodies_get_413_before_the_body_is_sent() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream.try_clone().unwrap()), "PUT").unwrap();
    assert_eq!(response.status, 413);
    assert!(closed_within(&mut stream, Duration::from_secs(5)));
    assert!(origin.requests().is_empty());
}

#[test]
fn a_413_reaches_a_client_that_sends_its_body_anyway() {
    // Without Expect the client is already sending; the lingering close
    // keeps the kernel from resetting the 413 away.
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &[]);
    let stream = ferry.connect();
    let writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut writer = writer;
        let _ = writer
            .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3000000\r\n\r\n");
        let _ = writer.write_all(&vec![b'z'; 3_000_000]);
    });
    let response = read_response(&mut BufReader::new(stream.try_clone().unwrap()), "POST").unwrap();
    assert_eq!(response.status, 413);
    let _ = sender.join();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    assert!(origin.requests().is_empty());
}

#[test]
fn a_chunked_body_over_the_limit_gets_413() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--client-max-body-size", "10k"]);
    let mut stream = ferry.connect();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let _ = stream.write_all(format!("{:x}\r\n{}\r\n", 20_000, "q".repeat(20_000)).as_bytes());
    let response = read_response(&mut BufReader::new(stream), "POST").unwrap();
    assert_eq!(response.status, 413);
}

#[test]
fn a_slow_reader_of_256_mib_keeps_ferry_small() {
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--access-log", "off"]);
    let size: u64 = 256 << 20;
    let mut stream = ferry.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /bytes/{size}/length HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let (status, _) = read_head(&mut reader).unwrap();
    assert_eq!(status, 200);
    let mut hash = Hash::default();
    let mut block = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut peak_rss = 0;
    let started = Instant::now();
    while got < size {
        let n = reader.read(&mut block).unwrap();
        assert!(n > 0, "EOF after {got} bytes");
        hash.update(&block[..n]);
        got += n as u64;
        // Slow: pause regularly so the origin is always ahead of us.
        if got % (8 << 20) < n as u64 {
            std::thread::sleep(Duration::from_millis(50));
            peak_rss = peak_rss.max(ferry.rss_kib());
        }
    }
    assert_eq!(hash, Hash::of_pattern(size));
    assert!(
        peak_rss > 0 && peak_rss < 32 * 1024,
        "peak RSS {peak_rss} KiB"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn a_thousand_concurrent_clients_ten_requests_each() {
    // 1,000 clients and the origin's 1,000 connections live in this process.
    if !need_descriptors(2_500) {
        return;
    }
    let origin = Origin::standard();
    // 1,000 clients and up to 1,000 upstream connections at once.
    let ferry = Ferry::start(
        origin.addr,
        &["--access-log", "off", "--worker-connections", "4096"],
    );
    let addr = ferry.addr;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(1000));
    let handles: Vec<_> = (0..1000u64)
        .map(|client| {
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let stream = connect(addr);
                    // All connections open before anyone sends.
                    barrier.wait();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    for i in 0..10u64 {
                        let size = (client * 7 + i * 131) % 3000;
                        write!(
                            writer,
                            "GET /bytes/{size}/length HTTP/1.1\r\nHost: a\r\n\r\n"
                        )
                        .unwrap();
                        let (response, len, hash) =
                            read_response_hashed(&mut reader, "GET", 0).unwrap();
                        assert_eq!(response.status, 200);
                        assert_eq!((len, hash), (size, Hash::of_pattern(size)));
                    }
                })
                .unwrap()
        })
        .collect();
    within(Duration::from_secs(120), move || {
        for handle in handles {
            handle.join().expect("client failed");
        }
    });
    assert_eq!(origin.requests().len(), 10_000);
}

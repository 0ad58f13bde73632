//! Chapter 1: the seed's proxy, written anew in Rust (docs/learn/01-thread-per-client.md).
//!
//! One thread per client, one 4 KiB read from each side, a 502 when the
//! upstream refuses, and the post's keep-alive rule. Run it with
//! `cargo run --example ch1_thread_per_client`: it starts the seed's origin
//! (ferry's demo origin: the cat page) and this proxy in front of it, asks
//! for the page, the cat and a dead upstream, and prints the post's log.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The post's log lines, printed and kept (the tests read them).
type Log = Arc<Mutex<Vec<String>>>;

fn say(log: &Log, line: String) {
    println!("{line}");
    log.lock().unwrap().push(line);
}

/// Starts the proxy on a free port: each accepted client gets a thread.
fn start_proxy(upstream: SocketAddr, log: Log) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            thread::spawn(move || handle(client, upstream, &log));
        }
    });
    addr
}

/// The seed's client handler, step by step as the post wrote it.
fn handle(mut client: TcpStream, upstream: SocketAddr, log: &Log) {
    let peer = client
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    say(log, format!("New connection from {peer}"));
    loop {
        // One read of at most 4 KiB is taken to be the whole request.
        let mut request = [0u8; 4096];
        let n = match client.read(&mut request) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        say(log, format!("-> * {n}B"));
        let keep_alive = seeds_keep_alive_rule(&request[..n]);
        let Ok(mut server) = TcpStream::connect(upstream) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
            say(log, "<- * 502 Bad Gateway".to_string());
            break;
        };
        say(log, format!("Connected to {upstream}"));
        if server.write_all(&request[..n]).is_err() {
            break;
        }
        say(log, format!("* -> {n}B"));
        // The first bug: one read of at most 4 KiB is taken to be the
        // whole response.
        let mut response = [0u8; 4096];
        let got = server.read(&mut response).unwrap_or(0);
        say(log, format!("* <- {got}B"));
        if client.write_all(&response[..got]).is_err() {
            break;
        }
        say(log, format!("<- * {got}B"));
        if !keep_alive {
            break;
        }
        say(log, "Keeping connection alive".to_string());
    }
    say(log, "Client disconnected".to_string());
}

/// The post's rule: close after HTTP/1.0 unless `Connection` is exactly
/// `keep-alive`, or when it is exactly `close`. The second bug: it looks at
/// the request alone (the response may say otherwise), and at the field's
/// exact spelling (names and values are case-insensitive token lists).
fn seeds_keep_alive_rule(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let mut lines = text.split("\r\n");
    let version = lines.next().unwrap_or("").rsplit(' ').next().unwrap_or("");
    let connection = lines
        .filter_map(|line| line.split_once(": "))
        .find(|(name, _)| *name == "Connection")
        .map(|(_, value)| value);
    let close =
        (version == "HTTP/1.0" && connection != Some("keep-alive")) || connection == Some("close");
    !close
}

/// Sends `request` and reads until the proxy closes or a second passes.
fn ask(proxy: SocketAddr, request: &str) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

/// What `main` shows: the cat through the proxy, then a dead upstream.
fn tour(log: &Log) {
    let origin = ferry::demo::start_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = start_proxy(origin, Arc::clone(log));
    let (cat, _) = ask(
        proxy,
        "GET /cute_cat.jpg HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    thread::sleep(Duration::from_millis(100));
    say(
        log,
        format!("(the cat is 40972 bytes; the client got {})", cat.len()),
    );
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (answer, _) = ask(
        start_proxy(dead, Arc::clone(log)),
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    thread::sleep(Duration::from_millis(100));
    say(
        log,
        format!("(a dead upstream: {:?})", String::from_utf8_lossy(&answer)),
    );
}

fn main() {
    tour(&Log::default());
}

#[cfg(test)]
#[path = "quoted.rs"]
mod quoted;

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> (SocketAddr, Log) {
        let origin = ferry::demo::start_origin("127.0.0.1:0".parse().unwrap()).unwrap();
        let log: Log = Arc::default();
        (start_proxy(origin, Arc::clone(&log)), log)
    }

    #[test]
    fn the_cat_is_cut_at_4096_bytes() {
        let (proxy, _) = proxy();
        let (got, closed) = ask(
            proxy,
            "GET /cute_cat.jpg HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert!(closed && got.len() <= 4096, "{} bytes", got.len());
        assert!(got.starts_with(b"HTTP/1.1 200"));
    }

    #[test]
    fn keep_alive_is_decided_from_the_request_alone() {
        let (proxy, _) = proxy();
        // The origin answers an HTTP/1.0 request with `Connection: close`,
        // so the client waits for the end... which never comes.
        let (got, closed) = ask(proxy, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let head = String::from_utf8_lossy(&got).to_lowercase();
        assert!(head.contains("connection: close"), "{head}");
        assert!(!closed, "the seed's proxy closed after all");
        // A lowercase `connection: close` (the same field) is not seen.
        let (_, closed) = ask(
            proxy,
            "GET / HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n",
        );
        assert!(!closed);
    }

    /// The page quotes what `main` prints (the origin's own lines aside).
    #[test]
    fn the_page_shows_what_main_prints() {
        let log = Log::default();
        tour(&log);
        let printed = log.lock().unwrap().clone();
        let port = regex_lite::Regex::new(r":\d+").unwrap();
        let mask = |l: &str| port.replace_all(l, ":PORT").into_owned();
        let page = include_str!("01-thread-per-client.md");
        super::quoted::assert_quoted(page, &printed, mask, |_| true);
    }

    #[test]
    fn a_dead_upstream_gets_a_502() {
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (got, closed) = ask(start_proxy(dead, Log::default()), "GET / HTTP/1.1\r\n\r\n");
        assert!(closed && got.starts_with(b"HTTP/1.1 502"));
    }

    /// What the chapter says a thousand idle clients cost: a thread each.
    #[test]
    fn a_thousand_idle_clients_cost_a_thousand_threads() {
        rlimit::increase_nofile_limit(4096).unwrap();
        let status = |field: &str| -> u64 {
            let text = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = text.lines().find(|l| l.starts_with(field)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let (proxy, _) = proxy();
        let (threads, virtual_kib) = (status("Threads:"), status("VmSize:"));
        let idle: Vec<TcpStream> = (0..1000)
            .map(|_| TcpStream::connect(proxy).unwrap())
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while status("Threads:") < threads + 1000 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let added = status("Threads:") - threads;
        let reserved_mib = (status("VmSize:") - virtual_kib) / 1024;
        println!("1000 idle clients: {added} threads, {reserved_mib} MiB of address space for their stacks");
        assert!(added >= 1000, "{added} threads");
        assert!(reserved_mib >= 1000, "{reserved_mib} MiB");
        drop(idle);
    }
}

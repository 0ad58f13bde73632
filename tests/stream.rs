//! `stream { … }`: TCP proxying with `proxy_protocol on` toward the
//! upstream, beside nginx (its stream module) on one file. An origin that
//! speaks first and echoes shows that the upstream is connected before the
//! client says anything, that the PROXY v1 line is the first thing it reads
//! (after a dead first server, too), and how each side's end closes the
//! session with and without `proxy_half_close`; a chain into an http
//! server with `listen … proxy_protocol` shows the client's address
//! arriving; `proxy_timeout` and a group with no live server close the
//! client's connection; a 4 MiB echo crosses with back-pressure; and no
//! descriptor stays open afterwards.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use util::{dead_address, free_port, require_tool, Ferry, Nginx};

/// nginx with its stream module, or a printed reason to skip (a failure
/// under FERRY_REQUIRE_TOOLS=1).
fn nginx_with_stream() -> Option<String> {
    let nginx = require_tool("nginx")?;
    if std::path::Path::new(STREAM_MODULE).exists() {
        return Some(nginx);
    }
    let reason = format!("nginx's stream module is not installed ({STREAM_MODULE})");
    if std::env::var("FERRY_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{reason}: apt-get install libnginx-mod-stream");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// An origin that greets each connection with `hello\n`, echoes what it
/// reads, and says `bye\n` when the client's side ends.
fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let _ = stream.write_all(b"hello\n");
                let mut buf = [0u8; 65536];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.write_all(b"bye\n");
            });
        }
    });
    addr
}

/// The ports of one run: a stream server per behaviour, and an http
/// server that reads PROXY headers.
struct Ports {
    chain_http: u16,
    proxied: u16,
    plain: u16,
    chained: u16,
    half_close: u16,
    quiet: u16,
    dead: u16,
}

fn config(origin: SocketAddr, ports: &Ports) -> String {
    let dead = dead_address();
    format!(
        "load_module {STREAM_MODULE};
events {{}}
stream {{
    upstream backends {{
        server {dead};
        server {origin};
    }}
    server {{ listen 127.0.0.1:{proxied}; proxy_pass backends; proxy_protocol on; }}
    server {{ listen 127.0.0.1:{plain}; proxy_pass {origin}; }}
    server {{ listen 127.0.0.1:{chained}; proxy_pass 127.0.0.1:{chain_http}; proxy_protocol on; }}
    server {{ listen 127.0.0.1:{half_close}; proxy_pass {origin}; proxy_half_close on; }}
    server {{ listen 127.0.0.1:{quiet}; proxy_pass {origin}; proxy_timeout 1s; }}
    server {{ listen 127.0.0.1:{dead_port}; proxy_pass {dead}; proxy_connect_timeout 2s; }}
}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{chain_http} proxy_protocol;
        location / {{ return 200 \"$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_port\\n\"; }}
    }}
}}
",
        chain_http = ports.chain_http,
        proxied = ports.proxied,
        plain = ports.plain,
        chained = ports.chained,
        half_close = ports.half_close,
        quiet = ports.quiet,
        dead_port = ports.dead,
    )
}

/// Starts a proxy on fresh ports; a port another test took meanwhile
/// fails the start, and it is tried again on other ports.
fn on_free_ports<T>(start: impl Fn(&Ports) -> T) -> (T, Ports) {
    for attempt in 0..3 {
        let ports = ports();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| start(&ports))) {
            Ok(started) => return (started, ports),
            Err(panic) if attempt == 2 => std::panic::resume_unwind(panic),
            Err(_) => continue,
        }
    }
    unreachable!("the last attempt returns or panics")
}

fn ports() -> Ports {
    Ports {
        chain_http: free_port(),
        proxied: free_port(),
        plain: free_port(),
        chained: free_port(),
        half_close: free_port(),
        quiet: free_port(),
        dead: free_port(),
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Reads until `want` bytes or the end.
fn read_exactly(stream: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match stream.read(&mut got[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    got.truncate(filled);
    got
}

fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    all
}

/// What one proxy (ferry or nginx) did in each scenario, with the client's
/// own port put where it appears, so two runs compare equal.
fn observe(ports: &Ports) -> Vec<String> {
    let mut seen = Vec::new();

    // proxy_protocol on, the first server dead: the greeting comes before
    // the client speaks, then the PROXY line is the first thing echoed.
    let mut client = connect(ports.proxied);
    let client_port = client.local_addr().unwrap().port();
    seen.push(String::from_utf8_lossy(&read_exactly(&mut client, 6)).into_owned());
    let expected_line = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {}\r\n",
        ports.proxied
    );
    let line = read_exactly(&mut client, expected_line.len());
    seen.push(
        String::from_utf8_lossy(&line)
            .replace(&client_port.to_string(), "CLIENT_PORT")
            .replace(&ports.proxied.to_string(), "LISTEN_PORT"),
    );
    client.write_all(b"ping\n").unwrap();
    seen.push(String::from_utf8_lossy(&read_exactly(&mut client, 5)).into_owned());
    drop(client);

    // proxy_protocol off: no line, and without proxy_half_close the
    // client's end closes the session before the origin's `bye`.
    let mut client = connect(ports.plain);
    client.write_all(b"abc").unwrap();
    let first = read_exactly(&mut client, 9);
    client.shutdown(Shutdown::Write).unwrap();
    let rest = read_to_end(&mut client);
    seen.push(format!(
        "plain: {} then {:?}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&rest)
    ));

    // proxy_half_close on: the end is passed on and the origin's `bye`
    // still arrives.
    let mut client = connect(ports.half_close);
    client.write_all(b"abc").unwrap();
    let first = read_exactly(&mut client, 9);
    client.shutdown(Shutdown::Write).unwrap();
    let rest = read_to_end(&mut client);
    seen.push(format!(
        "half-close: {} then {:?}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&rest)
    ));

    // Into an http server that reads the PROXY line: it sees the client.
    let mut client = connect(ports.chained);
    let client_port = client.local_addr().unwrap().port();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = String::from_utf8_lossy(&read_to_end(&mut client)).into_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    seen.push(format!(
        "chained: {} / {}",
        response.lines().next().unwrap_or(""),
        body.replace(&client_port.to_string(), "CLIENT_PORT")
            .replace(&ports.chained.to_string(), "LISTEN_PORT")
    ));

    // proxy_timeout 1s: a quiet session is closed after about a second.
    let mut client = connect(ports.quiet);
    let greeting = read_exactly(&mut client, 6);
    let started = Instant::now();
    let rest = read_to_end(&mut client);
    let waited = started.elapsed();
    seen.push(format!(
        "quiet: {} then {:?}, closed in 1-3 s: {}",
        String::from_utf8_lossy(&greeting).trim_end(),
        String::from_utf8_lossy(&rest),
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3)
    ));

    // No live server: the client's connection closes with nothing sent.
    let mut client = connect(ports.dead);
    let started = Instant::now();
    let rest = read_to_end(&mut client);
    seen.push(format!(
        "dead: {:?}, closed within 2 s: {}",
        String::from_utf8_lossy(&rest),
        started.elapsed() < Duration::from_secs(2)
    ));
    seen
}

#[test]
fn stream_servers_proxy_tcp_and_send_the_proxy_line_as_nginx_does() {
    let Some(nginx) = nginx_with_stream() else {
        return;
    };
    util::within(Duration::from_secs(60), move || {
        let origin = echo_origin();
        let dir = util::scratch_dir("stream");
        let path = dir.join("ferry.conf");
        let (ferry, ferry_ports) = on_free_ports(|ports| {
            std::fs::write(&path, config(origin, ports)).unwrap();
            util::assert_nginx_accepts(&path);
            Ferry::start_with(&["-c", path.to_str().unwrap()])
        });
        let baseline = ferry.fd_count();
        let from_ferry = observe(&ferry_ports);

        let (nginx, nginx_ports) = on_free_ports(|ports| {
            Nginx::start_main(&nginx, "stream", &config(origin, ports), ports.proxied)
        });
        let from_nginx = observe(&nginx_ports);
        drop(nginx);

        assert_eq!(from_ferry, from_nginx);
        // And what both did is what the module is for.
        assert_eq!(from_ferry[0], "hello\n");
        assert_eq!(
            from_ferry[1],
            "PROXY TCP4 127.0.0.1 127.0.0.1 CLIENT_PORT LISTEN_PORT\r\n"
        );
        assert_eq!(from_ferry[2], "ping\n");
        assert_eq!(from_ferry[3], "plain: hello\nabc then \"\"");
        assert_eq!(from_ferry[4], "half-close: hello\nabc then \"bye\\n\"");
        assert_eq!(
            from_ferry[5],
            "chained: HTTP/1.1 200 OK / 127.0.0.1 CLIENT_PORT LISTEN_PORT\n"
        );
        assert_eq!(
            from_ferry[6],
            "quiet: hello then \"\", closed in 1-3 s: true"
        );
        assert_eq!(from_ferry[7], "dead: \"\", closed within 2 s: true");

        // The failed connects are logged as nginx words them.
        assert!(ferry.wait_for_stderr(
            Duration::from_secs(2),
            "failed (Connection refused (os error 111)) while connecting to upstream"
        ));
        // Every session's sockets are closed.
        let deadline = Instant::now() + Duration::from_secs(3);
        while ferry.fd_count() > baseline && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(ferry.fd_count() <= baseline, "descriptors left open");
    });
}

#[test]
fn a_large_echo_crosses_both_ways_with_back_pressure() {
    util::within(Duration::from_secs(60), || {
        let origin = echo_origin();
        let port = free_port();
        let dir = util::scratch_dir("stream-bulk");
        let path = dir.join("ferry.conf");
        std::fs::write(
            &path,
            format!(
                "events {{}}\nstream {{ server {{ listen 127.0.0.1:{port}; proxy_pass {origin}; \
                 proxy_half_close on; }} }}\n"
            ),
        )
        .unwrap();
        let ferry = Ferry::start_with(&["-c", path.to_str().unwrap()]);
        let rss_before = ferry.rss_kib();
        let mut client = connect(port);
        let mut writer = client.try_clone().unwrap();
        const SIZE: usize = 4 << 20;
        let sender = thread::spawn(move || {
            let mut chunk = vec![0u8; 65536];
            let mut sent = 0;
            while sent < SIZE {
                util::pattern(sent as u64, &mut chunk);
                writer.write_all(&chunk).unwrap();
                sent += chunk.len();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        // Read slowly at first: the proxy must stop reading, not buffer.
        thread::sleep(Duration::from_millis(300));
        let rss_stalled = ferry.rss_kib();
        let all = read_to_end(&mut client);
        sender.join().unwrap();
        assert_eq!(&all[..6], b"hello\n");
        assert_eq!(&all[all.len() - 4..], b"bye\n");
        let echoed = &all[6..all.len() - 4];
        assert_eq!(echoed.len(), SIZE);
        let mut expected = vec![0u8; SIZE];
        util::pattern(0, &mut expected);
        assert!(echoed == &expected[..], "the echo differs");
        assert!(
            rss_stalled < rss_before + 2048,
            "memory grew by {} KiB while the client read nothing",
            rss_stalled.saturating_sub(rss_before)
        );
    });
}

//! TLS to upstream servers through the real binary: `proxy_pass https://`
//! to an origin that terminates TLS with certificates made at test time and
//! says what each handshake was (resumed, SNI, client certificate).
#![cfg(feature = "tls")]

mod util;

use std::io::BufReader;
use std::net::TcpStream;
use std::time::Duration;

use util::pki::{Pki, TlsOrigin};
use util::*;

/// A plain HTTP ferry whose server has `lines` (`nginx -t` accepts the
/// file too: `Ferry::start_config` checks).
fn ferry_with(name: &str, lines: &str) -> Ferry {
    Ferry::start_config(
        name,
        &format!("server {{\n  listen 127.0.0.1:PORT;\n{lines}\n}}"),
    )
    .0
}

fn get(stream: &mut TcpStream, path: &str) -> (Response, u64, Hash) {
    use std::io::Write;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    read_response_hashed(&mut BufReader::new(stream), "GET", 0).expect("a response")
}

fn pki(name: &str) -> Pki {
    Pki::new(&scratch_dir(&format!("upstream-tls-{name}")))
}

#[test]
fn https_upstreams_carry_requests_on_pooled_tls_connections() {
    let pki = pki("pooled");
    let origin = TlsOrigin::start(&pki, "origin", false);
    let ferry = ferry_with(
        "upstream-tls-pooled",
        &format!(
            "location / {{ proxy_pass https://127.0.0.1:{}; }}",
            origin.addr.port()
        ),
    );
    let mut client = ferry.connect();
    for round in 0..20 {
        let (response, len, hash) = get(&mut client, "/");
        assert_eq!(response.status, 200, "request {round}");
        let mut hello = Hash::default();
        hello.update(b"hello");
        assert_eq!((len, hash), (5, hello));
    }
    for size in [0u64, 16383, 16384, 16385, 1 << 20] {
        let (response, len, hash) = get(&mut client, &format!("/bytes/{size}"));
        assert_eq!(response.status, 200);
        assert_eq!((len, hash), (size, Hash::of_pattern(size)), "{size} bytes");
    }
    // One TLS connection carried all 25: pooled and reused, like a plain one.
    let handshakes = origin.handshakes();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    // nginx's default: proxy_ssl_server_name off sends no SNI.
    assert_eq!(handshakes[0].server_name, None);
    assert!(!handshakes[0].client_certificate);
}

#[test]
fn verification_passes_a_good_chain_and_gives_502_for_a_wrong_name_or_ca() {
    let pki = pki("verify");
    let stranger = Pki::new(&scratch_dir("upstream-tls-verify-other-ca"));
    let origin = TlsOrigin::start(&pki, "origin", false);
    let port = origin.addr.port();
    let ca = pki.ca.display();
    let other_ca = stranger.ca.display();
    let ferry = ferry_with(
        "upstream-tls-verify",
        &format!(
            "proxy_ssl_verify on;\n\
             proxy_ssl_trusted_certificate {ca};\n\
             location /good {{ proxy_ssl_server_name on; proxy_ssl_name localhost;\n\
               proxy_pass https://127.0.0.1:{port}; }}\n\
             location /by-address {{ proxy_pass https://127.0.0.1:{port}; }}\n\
             location /wrong-name {{ proxy_ssl_name other.example;\n\
               proxy_pass https://127.0.0.1:{port}; }}\n\
             location /unknown-ca {{ proxy_ssl_trusted_certificate {other_ca};\n\
               proxy_pass https://127.0.0.1:{port}; }}"
        ),
    );
    let mut client = ferry.connect();
    assert_eq!(get(&mut client, "/good").0.status, 200);
    assert_eq!(
        origin.handshakes()[0].server_name.as_deref(),
        Some("localhost"),
        "proxy_ssl_server_name on sends proxy_ssl_name"
    );
    // The default name is the address of proxy_pass; the certificate has it.
    assert_eq!(get(&mut client, "/by-address").0.status, 200);
    for (path, why) in [
        ("/wrong-name", "not valid for name"),
        ("/unknown-ca", "invalid peer certificate: UnknownIssuer"),
    ] {
        let mut client = ferry.connect();
        assert_eq!(get(&mut client, path).0.status, 502, "{path}");
        ferry.wait_for_stderr(Duration::from_secs(5), why);
        assert!(
            ferry.stderr().iter().any(|l| {
                l.contains("upstream SSL handshake failed")
                    && l.contains(why)
                    && l.contains("while SSL handshaking to upstream")
                    && l.contains(&format!("upstream: \"https://127.0.0.1:{port}{path}\""))
            }),
            "{path}: {:?}",
            ferry.stderr()
        );
    }
}

#[test]
fn a_client_certificate_is_presented_when_configured() {
    let pki = pki("client-cert");
    let origin = TlsOrigin::start(&pki, "origin", true);
    let (cert, key) = pki.leaf("ferry-client", &["ferry.client"]);
    let ferry = ferry_with(
        "upstream-tls-client-cert",
        &format!(
            "location /with {{ proxy_ssl_certificate {};\n\
               proxy_ssl_certificate_key {};\n\
               proxy_pass https://127.0.0.1:{port}; }}\n\
             location /without {{ proxy_pass https://127.0.0.1:{port}; }}",
            cert.display(),
            key.display(),
            port = origin.addr.port()
        ),
    );
    assert_eq!(get(&mut ferry.connect(), "/with").0.status, 200);
    assert_eq!(get(&mut ferry.connect(), "/without").0.status, 200);
    let presented: Vec<bool> = origin
        .handshakes()
        .iter()
        .map(|h| h.client_certificate)
        .collect();
    assert_eq!(presented, [true, false]);
}

#[test]
fn sessions_are_resumed_across_connections_unless_reuse_is_off() {
    let pki = pki("resume");
    let origin = TlsOrigin::start(&pki, "origin", false);
    let port = origin.addr.port();
    // `keepalive_requests 1` closes each upstream connection after its
    // response, so every request needs a new handshake.
    let (ferry, _) = Ferry::start_config(
        "upstream-tls-resume",
        &format!(
            "upstream resumed {{ server 127.0.0.1:{port}; keepalive 4; keepalive_requests 1; }}\n\
             upstream fresh {{ server 127.0.0.1:{port}; keepalive 4; keepalive_requests 1; }}\n\
             server {{\n  listen 127.0.0.1:PORT;\n\
               location /reuse {{ proxy_pass https://resumed; }}\n\
               location /fresh {{ proxy_ssl_session_reuse off; proxy_pass https://fresh; }}\n\
               location = /status {{ stub_status; }}\n}}"
        ),
    );
    let mut client = ferry.connect();
    for _ in 0..3 {
        assert_eq!(get(&mut client, "/reuse").0.status, 200);
    }
    let resumed: Vec<bool> = origin.handshakes().iter().map(|h| h.resumed).collect();
    assert_eq!(resumed, [false, true, true]);
    for _ in 0..2 {
        assert_eq!(get(&mut client, "/fresh").0.status, 200);
    }
    let resumed: Vec<bool> = origin.handshakes().iter().map(|h| h.resumed).collect();
    assert_eq!(resumed, [false, true, true, false, false]);
    // The Prometheus page counts them from ferry's side.
    let page = request(
        ferry.addr,
        "GET /status?format=prometheus HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .text();
    for (result, count) in [("completed", 5), ("resumed", 2), ("failed", 0)] {
        let line = format!("ferry_upstream_tls_handshakes_total{{result=\"{result}\"}} {count}");
        assert!(page.contains(&line), "{line} in {page}");
    }
}

#[test]
fn a_plain_server_behind_https_is_a_502_not_a_hang() {
    let origin = Origin::standard();
    let ferry = ferry_with(
        "upstream-tls-plain-origin",
        &format!(
            "proxy_connect_timeout 5s;\n\
             location / {{ proxy_pass https://127.0.0.1:{}; }}",
            origin.addr.port()
        ),
    );
    let started = std::time::Instant::now();
    assert_eq!(get(&mut ferry.connect(), "/").0.status, 502);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(ferry.wait_for_stderr(Duration::from_secs(5), "while SSL handshaking to upstream"));
}

#[test]
fn proxy_ssl_configurations_ferry_cannot_honour_are_refused() {
    let dir = scratch_dir("upstream-tls-refused");
    for (lines, message) in [
        (
            "proxy_ssl_verify on; location / { proxy_pass https://127.0.0.1:1; }",
            "no proxy_ssl_trusted_certificate for proxy_ssl_verify",
        ),
        (
            "location / { proxy_ssl_protocols TLSv1.1; proxy_pass https://127.0.0.1:1; }",
            "TLSv1.1 is not supported",
        ),
        (
            "location / { proxy_ssl_ciphers RC4; proxy_pass https://127.0.0.1:1; }",
            "selects none",
        ),
        (
            "location / { proxy_ssl_certificate /nonexistent.pem; proxy_pass https://127.0.0.1:1; }",
            "proxy_ssl_certificate_key",
        ),
    ] {
        let path = dir.join("ferry.conf");
        std::fs::write(
            &path,
            format!("events {{}}\nhttp {{ server {{ listen 127.0.0.1:1; {lines} }} }}\n"),
        )
        .unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["-t", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{lines}");
        assert!(stderr.contains(message), "{lines}: {stderr}");
        assert!(stderr.contains("ferry.conf:2"), "{lines}: {stderr}");
    }
}

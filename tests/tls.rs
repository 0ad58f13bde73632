//! TLS termination through the real binary: certificates made at test time
//! (rcgen), clients that are curl, `openssl s_client` and a rustls client
//! driven byte by byte; plain HTTP on the TLS port; SNI; protocol versions;
//! configurations ferry must refuse.
#![cfg(feature = "tls")]

mod util;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::pki::Pki;
use util::*;

/// The directory `Ferry::start_config(name, …)` writes its file into.
fn config_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferry-{name}-{}", std::process::id()))
}

/// One TLS server for `localhost` proxying to `origin`, with `extra` lines.
fn tls_server(name: &str, origin: &Origin, extra: &str) -> (Ferry, Pki) {
    let pki = Pki::new(&config_dir(name));
    let (cert, key) = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    let (ferry, _) = Ferry::start_config(
        name,
        &format!(
            "log_format tls '$scheme $https $ssl_protocol $ssl_cipher $ssl_server_name \
             $ssl_session_reused $status';\n\
             upstream app {{ server {}; }}\n\
             server {{\n  listen 127.0.0.1:PORT ssl;\n  server_name localhost;\n\
               ssl_certificate {};\n  ssl_certificate_key {};\n{extra}\n\
               location / {{ proxy_pass http://app; }}\n}}",
            origin.addr,
            cert.display(),
            key.display()
        ),
    );
    (ferry, pki)
}

fn curl(args: &[&str]) -> Option<(bool, String, String)> {
    let curl = require_tool("curl")?;
    let output = Command::new(curl)
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    Some((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A rustls client session trusting the test CA, for `server_name`.
fn client_session(pki: &Pki, server_name: &str) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    rustls::ClientConnection::new(Arc::new(config), name).unwrap()
}

/// A rustls client trusting the test CA, on a blocking socket.
fn tls_client(ferry: &Ferry, pki: &Pki, server_name: &str) -> TlsClient {
    rustls::StreamOwned::new(client_session(pki, server_name), ferry.connect())
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// GETs `path` from `localhost` on `stream`: the response, and its body's
/// length and hash.
fn get(stream: &mut TlsClient, path: &str) -> (Response, u64, Hash) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    stream.flush().unwrap();
    read_response_hashed(&mut BufReader::new(stream), "GET", 0).expect("a response")
}

/// POSTs `size` pattern bytes to the origin's `/upload` on `stream` and
/// checks that the origin received them intact.
fn upload(stream: &mut TlsClient, size: u64) {
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n"
    )
    .unwrap();
    let mut block = vec![0u8; 256 * 1024];
    let mut done = 0;
    while done < size {
        let n = (size - done).min(block.len() as u64) as usize;
        pattern(done, &mut block[..n]);
        stream.write_all(&block[..n]).unwrap();
        done += n as u64;
    }
    stream.flush().unwrap();
    let response = read_response(&mut BufReader::new(stream), "POST").unwrap();
    assert_eq!(
        response.text(),
        format!("{size} {:016x}", Hash::of_pattern(size).0),
        "upload of {size} bytes"
    );
}

#[test]
fn curl_downloads_and_uploads_over_tls_on_one_connection() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-curl", &origin, "");
    let base = format!("https://localhost:{}", ferry.addr.port());
    let ca = pki.ca.to_str().unwrap().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", ferry.addr.port());
    // Sizes around the 16 KiB record boundary, and 1 MiB, on one connection.
    let sizes = [0u64, 1, 16383, 16384, 16385, 1 << 20];
    let mut args = vec!["--cacert", &ca, "--resolve", &resolve];
    let urls: Vec<String> = sizes
        .iter()
        .map(|size| format!("{base}/bytes/{size}/length"))
        .collect();
    let mut outputs = Vec::new();
    for url in &urls {
        outputs.push(url.as_str());
        outputs.push("-o");
        outputs.push("/dev/null");
    }
    args.extend(outputs);
    args.extend([
        "-w",
        "%{http_code} %{size_download} %{num_connects} %{ssl_verify_result}\n",
    ]);
    let Some((ok, out, err)) = curl(&args) else {
        return;
    };
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), sizes.len(), "{out}");
    for (index, (line, size)) in lines.iter().zip(sizes).enumerate() {
        let connects = if index == 0 { 1 } else { 0 };
        assert_eq!(*line, format!("200 {size} {connects} 0"), "size {size}");
    }
    // HTTP/1.0 over TLS (offered as such by ALPN), and an upload.
    let url = format!("{base}/bytes/16385/length");
    let (ok, out, err) = curl(&[
        "--http1.0",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &url,
    ])
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "200 16385");
    let upload = scratch_dir("tls-curl-upload").join("body");
    let mut body = vec![0u8; 300_000];
    pattern(0, &mut body);
    std::fs::write(&upload, &body).unwrap();
    let data = format!("@{}", upload.display());
    let url = format!("{base}/upload");
    let (ok, out, err) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "--data-binary",
        &data,
        &url,
    ])
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, format!("300000 {:016x}", Hash::of_pattern(300_000).0));
}

#[test]
fn bodies_cross_record_boundaries_intact_both_ways() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-bodies", &origin, "  client_max_body_size 0;");
    let mut stream = tls_client(&ferry, &pki, "localhost");
    for size in [
        0u64,
        16 * 1024 - 1,
        16 * 1024,
        16 * 1024 + 1,
        1 << 20,
        16 << 20,
    ] {
        let (response, len, hash) = get(&mut stream, &format!("/bytes/{size}/length"));
        assert_eq!(response.status, 200);
        assert_eq!((len, hash), (size, Hash::of_pattern(size)), "{size}");
    }
    upload(&mut stream, 8 << 20);
}

#[test]
fn a_handshake_written_one_byte_at_a_time_completes() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-bytewise", &origin, "");
    within(Duration::from_secs(30), move || {
        let mut stream = tls_client(&ferry, &pki, "localhost");
        let request = b"GET /bytes/100/length HTTP/1.1\r\nHost: localhost\r\n\r\n";
        stream.conn.writer().write_all(request).unwrap();
        // Every record the client sends (ClientHello, Finished, the request)
        // goes out one byte at a time.
        loop {
            while stream.conn.wants_write() {
                let mut pending = Vec::new();
                stream.conn.write_tls(&mut pending).unwrap();
                for byte in pending {
                    stream.sock.write_all(&[byte]).unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            if !stream.conn.is_handshaking() && !stream.conn.wants_write() {
                break;
            }
            stream.conn.read_tls(&mut stream.sock).unwrap();
            stream.conn.process_new_packets().unwrap();
        }
        let mut reader = BufReader::new(&mut stream);
        let (response, len, _) = read_response_hashed(&mut reader, "GET", 0).unwrap();
        assert_eq!((response.status, len), (200, 100));
    });
}

#[test]
fn stalled_handshakes_do_not_delay_a_normal_client() {
    if !need_descriptors(1200) {
        return;
    }
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-stalled", &origin, "");
    // 500 clients send the first bytes of a handshake record, then nothing.
    let stalled: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut stream = ferry.connect();
            stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut stream = tls_client(&ferry, &pki, "localhost");
    stream
        .write_all(b"GET /bytes/10/length HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(&mut stream);
    let (response, len, _) = read_response_hashed(&mut reader, "GET", 0).unwrap();
    assert_eq!((response.status, len), (200, 10));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn clients_mistakes_are_not_warnings_in_the_default_error_log() {
    let origin = Origin::standard();
    let (ferry, _pki) = tls_server("tls-quiet-log", &origin, "");
    let port = ferry.addr.port();
    drop(ferry);
    // As an operator runs it: no RUST_LOG, the error log at `warn`.
    let config = config_dir("tls-quiet-log").join("ferry.conf");
    let ferry = Ferry::start_default_log(&["-c", config.to_str().unwrap()]);
    // wrk, curl to an address and scanners send an IP address as SNI.
    if served_subject(port, Some("127.0.0.1"), &[]).is_none() {
        return;
    }
    // A handshake that is not TLS at all.
    let mut junk = ferry.connect();
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00])
        .unwrap();
    assert!(closed_within(&mut junk, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ferry.stderr(), Vec::<String>::new());
}

#[test]
fn plain_http_to_the_tls_port_gets_nginx_400() {
    let origin = Origin::standard();
    let (ferry, _pki) = tls_server("tls-plain", &origin, "");
    let response = request(ferry.addr, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(response.status, 400);
    assert!(
        response
            .text()
            .contains("The plain HTTP request was sent to HTTPS port"),
        "{}",
        response.text()
    );
    assert_eq!(origin.accepts(), 0, "nothing reaches the upstream");
    assert!(ferry.wait_for_stderr(
        Duration::from_secs(5),
        "client sent plain HTTP request to HTTPS port"
    ));
}

/// The subject line `openssl s_client` prints for the certificate it got.
fn served_subject(port: u16, server_name: Option<&str>, extra: &[&str]) -> Option<String> {
    let openssl = require_tool("openssl")?;
    let mut command = Command::new(openssl);
    command
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(extra);
    match server_name {
        Some(name) => command.args(["-servername", name]),
        None => command.arg("-noservername"),
    };
    let output = command.stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    Some(
        text.lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or("no certificate")
            .to_string(),
    )
}

#[test]
fn sni_picks_each_servers_certificate_and_unknown_names_get_the_default() {
    let name = "tls-sni";
    let origin = Origin::standard();
    let pki = Pki::new(&config_dir(name));
    let (a_cert, a_key) = pki.leaf("a", &["a.test"]);
    let (b_cert, b_key) = pki.leaf("b", &["b.test"]);
    let server = |host: &str, cert: &Path, key: &Path, default: &str| {
        format!(
            "server {{\n  listen 127.0.0.1:PORT ssl{default};\n  server_name {host};\n\
               ssl_certificate {};\n  ssl_certificate_key {};\n\
               location / {{ return 200 \"{host}\\n\"; }}\n}}\n",
            cert.display(),
            key.display()
        )
    };
    let (ferry, _) = Ferry::start_config(
        name,
        &format!(
            "{}{}",
            server("a.test", &a_cert, &a_key, ""),
            server("b.test", &b_cert, &b_key, " default_server")
        ),
    );
    let _ = origin;
    let port = ferry.addr.port();
    let Some(a) = served_subject(port, Some("a.test"), &[]) else {
        return;
    };
    assert!(a.contains("a.test"), "{a}");
    let b = served_subject(port, Some("b.test"), &[]).unwrap();
    assert!(b.contains("b.test"), "{b}");
    let other = served_subject(port, Some("c.test"), &[]).unwrap();
    assert!(other.contains("b.test"), "the default server's: {other}");
    let none = served_subject(port, None, &[]).unwrap();
    assert!(none.contains("b.test"), "the default server's: {none}");
    // An IP address as SNI (wrk and some scanners send one) is no name.
    let address = served_subject(port, Some("127.0.0.1"), &[]).unwrap();
    assert!(
        address.contains("b.test"),
        "the default server's: {address}"
    );
    // And the request is routed by Host, as nginx does.
    let ca = pki.ca.to_str().unwrap().to_string();
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/");
    let (ok, out, err) = curl(&["--cacert", &ca, "--resolve", &resolve, &url]).unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "a.test\n");
}

#[test]
fn ssl_protocols_limit_the_versions_and_sessions_resume() {
    let origin = Origin::standard();
    let (ferry12, _pki) = tls_server(
        "tls-v12",
        &origin,
        "  ssl_protocols TLSv1.2;\n  ssl_session_cache shared:SSL:1m;\n  ssl_session_tickets off;\n\
         location = /metrics { stub_status; }",
    );
    let port = ferry12.addr.port();
    let Some(subject) = served_subject(port, Some("localhost"), &["-tls1_2"]) else {
        return;
    };
    assert!(subject.contains("localhost"), "{subject}");
    let refused = served_subject(port, Some("localhost"), &["-tls1_3"]).unwrap();
    assert_eq!(refused, "no certificate", "TLS 1.3 must be refused");

    // Resumption from the session cache: the second handshake is "Reused".
    let openssl = require_tool("openssl").unwrap();
    let session = scratch_dir("tls-session").join("session.pem");
    let run = |flag: &str| {
        let output = Command::new(&openssl)
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", "localhost", "-tls1_2", flag])
            .arg(&session)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = run("-sess_out");
    assert!(first.contains("New, TLSv1.2"), "{first}");
    let second = run("-sess_in");
    assert!(second.contains("Reused, TLSv1.2"), "{second}");
    // A handshake that is not one fails, and is counted.
    let mut garbage = ferry12.connect();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    assert!(closed_within(&mut garbage, Duration::from_secs(5)));
    let mut stream = tls_client(&ferry12, &_pki, "localhost");
    stream
        .write_all(b"GET /metrics?format=prometheus HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let metrics = read_response(&mut BufReader::new(&mut stream), "GET")
        .unwrap()
        .text();
    let count = |result: &str| -> u64 {
        let prefix = format!("ferry_tls_handshakes_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {result} count in {metrics}"))
    };
    // Three openssl clients (one refused at TLS 1.3 is a failure), this one.
    assert!(count("completed") >= 3, "{metrics}");
    assert_eq!(count("resumed"), 1, "{metrics}");
    assert!(count("failed") >= 2, "{metrics}");

    let (ferry13, _pki) = tls_server("tls-v13", &origin, "  ssl_protocols TLSv1.3;");
    let port = ferry13.addr.port();
    let subject = served_subject(port, Some("localhost"), &["-tls1_3"]).unwrap();
    assert!(subject.contains("localhost"), "{subject}");
    let refused = served_subject(port, Some("localhost"), &["-tls1_2"]).unwrap();
    assert_eq!(refused, "no certificate", "TLS 1.2 must be refused");
}

/// `ferry -t` on a configuration: (accepted, what it printed).
fn check_config(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("ferry.conf");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    )
}

#[test]
fn bad_tls_configurations_are_refused_with_the_line() {
    let dir = scratch_dir("tls-refused");
    let pki = Pki::new(&dir);
    let (cert, key) = pki.leaf("localhost", &["localhost"]);
    let (_other_cert, other_key) = pki.leaf("other", &["other.test"]);
    let config = |lines: &str| {
        format!(
            "events {{}}\nhttp {{\nserver {{\nlisten 127.0.0.1:{} ssl;\n{lines}\n}}\n}}\n",
            free_port()
        )
    };
    let pair = format!(
        "ssl_certificate {};\nssl_certificate_key {};",
        cert.display(),
        key.display()
    );
    let (ok, out) = check_config(&dir, &config(&pair));
    assert!(ok, "{out}");
    for (lines, expected) in [
        (String::new(), "no \"ssl_certificate\" is defined"),
        (
            format!("{pair}\nssl_protocols TLSv1 TLSv1.2;"),
            "TLSv1 is not supported",
        ),
        (
            format!("{pair}\nssl_ciphers RC4:DHE-RSA-AES128-SHA;"),
            "selects none",
        ),
        (
            format!(
                "{pair}\nssl_stapling on;\nssl_stapling_file {};",
                cert.display()
            ),
            "is not a DER-encoded OCSP response",
        ),
        (
            format!(
                "ssl_certificate {};\nssl_certificate_key {};",
                cert.display(),
                other_key.display()
            ),
            "do not go together",
        ),
        (
            format!(
                "ssl_certificate {}/missing.pem;\nssl_certificate_key {};",
                dir.display(),
                key.display()
            ),
            "cannot load certificate",
        ),
    ] {
        let (ok, out) = check_config(&dir, &config(&lines));
        assert!(!ok, "accepted: {lines}");
        assert!(out.contains(expected), "{lines}: {out}");
        assert!(
            out.contains("ferry.conf:"),
            "names the file and line: {out}"
        );
    }
}

#[test]
fn an_expired_certificate_and_http2_load_with_a_warning() {
    let dir = scratch_dir("tls-expired");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 2, 29);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("old.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("old.key"), key.serialize_pem()).unwrap();
    let config = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:1 ssl http2;\n\
         ssl_certificate {0}/old.pem; ssl_certificate_key {0}/old.key; }} }}\n",
        dir.display()
    );
    let (ok, out) = check_config(&dir, &config);
    assert!(ok, "{out}");
    assert!(
        out.contains("ferry: [warn] certificate")
            && out.contains("old.pem\" expired on 2020-02-29"),
        "warns: {out}"
    );
    assert!(out.contains("\"http2\" is not served yet"), "warns: {out}");
}

#[test]
fn a_certbot_style_config_redirects_to_https_and_proxies_with_the_scheme() {
    let name = "tls-certbot";
    let origin = Origin::standard();
    let pki = Pki::new(&config_dir(name));
    let (cert, key) = pki.leaf("site", &["example.test"]);
    let redirect_port = free_port();
    let (ferry, _) = Ferry::start_config(
        name,
        &format!(
            // The TLS server first: the test's ferry.addr is the first listener.
            "upstream app {{ server {}; }}\n\
             server {{\n  listen 127.0.0.1:PORT ssl;\n  server_name example.test;\n\
               ssl_certificate {};\n  ssl_certificate_key {};\n\
               ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_ciphers HIGH:!aNULL:!MD5;\n\
               ssl_prefer_server_ciphers on;\n\
               ssl_session_cache shared:SSL:10m;\n  ssl_session_timeout 1d;\n\
               add_header Strict-Transport-Security \"max-age=31536000\" always;\n\
               location / {{ proxy_pass http://app; }}\n\
               location = /scheme {{ return 200 \"$scheme $https\"; }}\n}}\n\
             server {{\n  listen 127.0.0.1:{redirect_port};\n  server_name example.test;\n\
               return 301 https://$host$request_uri;\n}}",
            origin.addr,
            cert.display(),
            key.display()
        ),
    );
    // The plain server redirects, keeping the path and query.
    let redirect: std::net::SocketAddr = format!("127.0.0.1:{redirect_port}").parse().unwrap();
    let response = request(
        redirect,
        "GET /a/b?c=d HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 301);
    assert_eq!(
        response.header("Location").as_deref(),
        Some("https://example.test/a/b?c=d")
    );
    // The TLS server proxies, telling the upstream the scheme.
    let mut stream = tls_client(&ferry, &pki, "example.test");
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(&mut stream), "GET").unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("X-Forwarded-Proto: https\r\n"),
        "{}",
        response.text()
    );
    assert_eq!(
        response.header("Strict-Transport-Security").as_deref(),
        Some("max-age=31536000")
    );
    stream
        .write_all(b"GET /scheme HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(&mut stream), "GET").unwrap();
    assert_eq!(response.text(), "https on");
}

/// The certificate the server presented on a new connection.
fn presented_certificate(ferry: &Ferry, pki: &Pki) -> Vec<u8> {
    let mut stream = tls_client(ferry, pki, "localhost");
    let (response, _, _) = get(&mut stream, "/bytes/1/length");
    assert_eq!(response.status, 200);
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

#[test]
fn a_reload_serves_renewed_certificates_and_refuses_broken_ones() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-reload", &origin, "");
    let cert = pki.dir.join("localhost.pem");
    let first = pem_der(&cert);
    assert_eq!(presented_certificate(&ferry, &pki), first);
    // A connection open across the reload keeps working.
    let mut kept = tls_client(&ferry, &pki, "localhost");
    get(&mut kept, "/bytes/1/length");

    // certbot renews: new files under the same names, then a reload, while
    // keep-alive clients and new connections keep asking: none fails.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answered, failed) = std::thread::scope(|scope| {
        let load: Vec<_> = (0..4)
            .map(|client| {
                let (ferry, pki, stop) = (&ferry, &pki, &stop);
                scope.spawn(move || {
                    let mut stream = tls_client(ferry, pki, "localhost");
                    let (mut answered, mut failed) = (0, 0);
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        if client == 0 {
                            // A new connection (and handshake) each time.
                            stream = tls_client(ferry, pki, "localhost");
                        }
                        let asked = write!(
                            stream,
                            "GET /bytes/100/length HTTP/1.1\r\nHost: localhost\r\n\r\n"
                        )
                        .and_then(|()| stream.flush());
                        let response = asked.ok().and_then(|()| {
                            read_response_hashed(&mut BufReader::new(&mut stream), "GET", 0)
                        });
                        match response {
                            Some((response, 100, _)) if response.status == 200 => {
                                answered += 1;
                                // keepalive_requests (1000) ends it.
                                if response.header("connection").as_deref() == Some("close") {
                                    stream = tls_client(ferry, pki, "localhost");
                                }
                            }
                            _ => {
                                failed += 1;
                                stream = tls_client(ferry, pki, "localhost");
                            }
                        }
                    }
                    (answered, failed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        pki.leaf("localhost", &["localhost", "127.0.0.1"]);
        ferry.signal("HUP");
        assert!(ferry.wait_for_stderr_count(Duration::from_secs(5), "configuration reloaded", 1));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        load.into_iter()
            .map(|thread| thread.join().unwrap())
            .fold((0, 0), |(a, f), (answered, failed)| {
                (a + answered, f + failed)
            })
    });
    assert_eq!(failed, 0, "{answered} answered");
    assert!(answered > 20, "{answered} answered");
    let renewed = pem_der(&cert);
    assert_ne!(renewed, first);
    assert_eq!(presented_certificate(&ferry, &pki), renewed);
    let (response, len, _) = get(&mut kept, "/bytes/2/length");
    assert_eq!((response.status, len), (200, 2));

    // A broken certificate refuses the reload and changes nothing.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    ferry.signal("HUP");
    assert!(ferry.wait_for_stderr_count(Duration::from_secs(5), "reload refused", 1));
    assert_eq!(presented_certificate(&ferry, &pki), renewed);
}

#[test]
fn the_access_log_prints_the_tls_variables() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-log", &origin, "  access_log /dev/stdout tls;");
    let mut stream = tls_client(&ferry, &pki, "localhost");
    get(&mut stream, "/bytes/3/length");
    assert!(ferry.wait_for_log(Duration::from_secs(5), |lines| !lines.is_empty()));
    let line = ferry.access_log().pop().unwrap();
    assert_eq!(
        line,
        "https on TLSv1.3 TLS_AES_256_GCM_SHA384 localhost . 200"
    );
}

#[test]
fn a_closing_response_ends_with_close_notify() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-close-notify", &origin, "");
    let mut stream = tls_client(&ferry, &pki, "localhost");
    stream
        .write_all(b"GET /bytes/5/length HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    // rustls reports a close without close_notify as UnexpectedEof.
    std::io::Read::read_to_end(&mut stream, &mut all).expect("a clean TLS close");
    assert!(all.starts_with(b"HTTP/1.1 200 OK\r\n"), "{all:?}");
}

#[test]
fn quarter_gibibyte_both_ways_over_tls_with_flat_memory() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-large", &origin, "  client_max_body_size 0;");
    within(Duration::from_secs(120), move || {
        let mut stream = tls_client(&ferry, &pki, "localhost");
        // Warm up: buffers and the large ring are allocated by now.
        get(&mut stream, "/bytes/4194304/length");
        let before = ferry.rss_kib();
        let size = 256u64 << 20;
        let (response, len, hash) = get(&mut stream, &format!("/bytes/{size}/length"));
        assert_eq!(response.status, 200);
        assert_eq!((len, hash), (size, Hash::of_pattern(size)));
        upload(&mut stream, size);
        // Memory is bounded by the rings and rustls's buffers, not the body.
        let grown = ferry.rss_kib().saturating_sub(before);
        assert!(grown < 4 * 1024, "RSS grew {grown} KiB moving 512 MiB");
    });
}

#[test]
fn an_idle_keep_alive_client_is_closed_with_close_notify() {
    let origin = Origin::standard();
    let (ferry, pki) = tls_server("tls-idle-close", &origin, "  keepalive_timeout 1s;");
    let mut stream = tls_client(&ferry, &pki, "localhost");
    let (response, _, _) = get(&mut stream, "/bytes/1/length");
    assert_eq!(response.status, 200);
    // keepalive_timeout passes; rustls reports a close without
    // close_notify as UnexpectedEof.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut rest).expect("a clean TLS close");
    assert!(rest.is_empty());
}

/// `listen … ssl proxy_protocol`: the PROXY header comes first, then the
/// TLS handshake; its address is the client's, and a broken header closes
/// the connection before any TLS byte is read.
#[test]
fn a_proxy_protocol_header_before_the_handshake() {
    let name = "tls-proxy-protocol";
    let pki = Pki::new(&config_dir(name));
    let (cert, key) = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    let (ferry, _) = Ferry::start_config(
        name,
        &format!(
            "server {{\n  listen 127.0.0.1:PORT ssl proxy_protocol;\n  server_name localhost;\n\
               ssl_certificate {};\n  ssl_certificate_key {};\n\
               set_real_ip_from 127.0.0.1;\n  real_ip_header proxy_protocol;\n\
               location / {{ return 200 \"$remote_addr $proxy_protocol_addr $proxy_protocol_port $scheme\\n\"; }}\n}}",
            cert.display(),
            key.display()
        ),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone().into()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    for header in [
        &b"PROXY TCP4 203.0.113.5 198.51.100.9 40000 443\r\n"[..],
        // v2, the way AWS's load balancers send it.
        &[
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
            0x00, 0x0c, 203, 0, 113, 5, 198, 51, 100, 9, 0x9c, 0x40, 0x01, 0xbb,
        ][..],
    ] {
        let mut socket = ferry.connect();
        socket.write_all(header).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost".to_string()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, socket);
        write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        stream.flush().unwrap();
        let response = read_response(&mut BufReader::new(&mut stream), "GET").unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "203.0.113.5 203.0.113.5 40000 https\n");
    }
    // No header: closed without a TLS byte.
    let name_ = rustls::pki_types::ServerName::try_from("localhost".to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name_).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, ferry.connect());
    let wrote =
        write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").and_then(|()| stream.flush());
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut stream, &mut rest);
    assert!(
        wrote.is_err() || read.is_err() || rest.is_empty(),
        "{rest:?}"
    );
    assert!(ferry.wait_for_stderr(Duration::from_secs(2), "broken header"));
}

/// `ssl_reject_handshake on` on the catch-all `default_server` (nginx
/// 1.19.4's way to serve no certificate to names a site does not have):
/// the named server's clients get its certificate, any other name and a
/// client without SNI get no handshake, as from nginx on the same file.
#[test]
fn a_rejecting_default_server_serves_no_certificate_as_nginx() {
    let name = "tls-reject";
    let pki = Pki::new(&config_dir(name));
    let (cert, key) = pki.leaf("a", &["a.test"]);
    let body = format!(
        "server {{\n  listen 127.0.0.1:PORT ssl default_server;\n  ssl_reject_handshake on;\n}}\n\
         server {{\n  listen 127.0.0.1:PORT ssl;\n  server_name a.test;\n\
           ssl_certificate {};\n  ssl_certificate_key {};\n\
           location / {{ return 200 \"a\\n\"; }}\n}}\n",
        cert.display(),
        key.display()
    );
    let (ferry, _) = Ferry::start_config(name, &body);
    let seen = |port: u16| {
        [Some("a.test"), Some("b.test"), None]
            .map(|name| served_subject(port, name, &[]).unwrap_or_default())
    };
    let Some(_) = require_tool("openssl") else {
        return;
    };
    let from_ferry = seen(ferry.addr.port());
    assert!(from_ferry[0].contains("a.test"), "{from_ferry:?}");
    assert_eq!(from_ferry[1], "no certificate");
    assert_eq!(from_ferry[2], "no certificate");
    if let Some((_nginx, addr)) = Nginx::beside(name, &body) {
        assert_eq!(from_ferry, seen(addr.port()));
    }
}

/// The largest TLS record carrying application data in a 64 KiB response,
/// read off the wire under a rustls client.
fn largest_record(ferry: &Ferry, pki: &Pki) -> usize {
    use std::io::Read;
    let mut conn = client_session(pki, "localhost");
    let mut socket = ferry.connect();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.writer()
        .write_all(
            b"GET /bytes/65536/length HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let (mut wire, mut plain, mut largest) = (Vec::new(), Vec::new(), 0);
    let mut chunk = vec![0; 1 << 16];
    loop {
        while conn.wants_write() {
            conn.write_tls(&mut socket).unwrap();
        }
        let read = socket.read(&mut chunk).unwrap();
        if read == 0 {
            break;
        }
        wire.extend_from_slice(&chunk[..read]);
        // Whole records only: their headers say type and length.
        while wire.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
            if wire.len() < 5 + len {
                break;
            }
            if wire[0] == 23 {
                largest = largest.max(len);
            }
            let record: Vec<u8> = wire.drain(..5 + len).collect();
            let mut rest = &record[..];
            while !rest.is_empty() {
                conn.read_tls(&mut rest).unwrap();
                conn.process_new_packets().unwrap();
                let _ = conn.reader().read_to_end(&mut plain);
            }
        }
        if plain.len() > 65536 {
            break;
        }
    }
    assert!(plain.len() > 65536, "the whole response: {}", plain.len());
    largest
}

/// `ssl_buffer_size 4k` (a common tuning line) puts at most 4 KiB of data
/// in a record, as nginx does; without it records are TLS's largest.
#[test]
fn ssl_buffer_size_sets_the_record_size() {
    let origin = Origin::standard();
    let (small, pki) = tls_server("tls-records-4k", &origin, "  ssl_buffer_size 4k;");
    // 4096 bytes of data, and TLS 1.3's tag and content type (17 bytes).
    let largest = largest_record(&small, &pki);
    assert_eq!(largest, 4096 + 17);
    let (full, pki) = tls_server("tls-records-16k", &origin, "");
    let largest = largest_record(&full, &pki);
    assert!(largest > 16 * 1024, "{largest}");
}

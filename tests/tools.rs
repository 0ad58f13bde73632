//! Real clients: curl, and headless Chromium loading `ferry demo`, a page
//! over TLS and a page compressed by `gzip`.
//! Skipped with a printed reason when the tool is missing, except under
//! FERRY_REQUIRE_TOOLS=1 (CI).

mod util;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use util::*;

#[test]
fn curl_http10_and_http11_downloads_and_uploads() {
    let Some(curl) = require_tool("curl") else {
        return;
    };
    let origin = Origin::standard();
    let ferry = Ferry::start(origin.addr, &["--client-max-body-size", "0"]);
    let dir = std::env::temp_dir().join(format!("ferry-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    for (version, mode) in [
        ("--http1.0", "length"),
        ("--http1.0", "chunked"),
        ("--http1.1", "chunked"),
        ("--http1.1", "close"),
    ] {
        let size = 3 << 20;
        let url = format!("http://{}/bytes/{size}/{mode}", ferry.addr);
        let status = Command::new(&curl)
            .args(["-sS", "--fail", "--max-time", "30", version, "-o"])
            .arg(&out)
            .arg(&url)
            .status()
            .unwrap();
        assert!(status.success(), "curl {version} {mode}");
        let mut hash = Hash::default();
        let body = std::fs::read(&out).unwrap();
        hash.update(&body);
        assert_eq!(
            (body.len() as u64, hash),
            (size, Hash::of_pattern(size)),
            "{version} {mode}"
        );
    }
    let upload = dir.join("upload");
    let mut body = vec![0u8; 2 << 20];
    pattern(0, &mut body);
    std::fs::write(&upload, &body).unwrap();
    let output = Command::new(&curl)
        .args(["-sS", "--fail", "--max-time", "30", "--data-binary"])
        .arg(format!("@{}", upload.display()))
        .arg(format!("http://{}/upload", ferry.addr))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "{} {:016x}",
            body.len(),
            Hash::of_pattern(body.len() as u64).0
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn curl_sees_502_when_the_upstream_is_down() {
    let Some(curl) = require_tool("curl") else {
        return;
    };
    let ferry = Ferry::start(dead_address(), &[]);
    let output = Command::new(&curl)
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg(format!("http://{}/", ferry.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "502");
}

/// Kills the browser and removes its profile when the test ends.
struct Browser {
    child: std::process::Child,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A GET to the DevTools HTTP endpoint; empty on any error, since the
/// endpoint may not be up yet.
fn http_get(port: u16, path: &str) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )?;
        // The DevTools server keeps connections open: read by Content-Length.
        let response = read_response(&mut BufReader::new(stream), "GET");
        Ok(response.map(|r| r.text()).unwrap_or_default())
    };
    attempt().unwrap_or_default()
}

/// Opens `page` in headless Chromium (with `extra` flags) and returns what
/// `expression` (a promise) resolves to, read over the DevTools protocol;
/// `None` when chromium is not installed. The browser is closed on return.
fn chromium_evaluate(page: &str, extra: &[String], expression: &str) -> Option<String> {
    let chromium = require_tool("chromium")?;
    // One profile per browser: two Chromiums on one profile do not both
    // run, the second hands its page to the first and exits.
    static BROWSERS: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "ferry-chromium-{}-{}",
        std::process::id(),
        BROWSERS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(page)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let browser = Browser { child, profile };

    // Chromium writes its DevTools port into the profile.
    let started = Instant::now();
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(browser.profile.join("DevToolsActivePort")) {
            if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                break port;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromium did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The page target appears once the tab exists.
    let ws_url = loop {
        let list = http_get(port, "/json/list");
        let url = list
            .split("}, {")
            .find(|target| target.contains("\"type\": \"page\""))
            .and_then(|target| target.split("\"webSocketDebuggerUrl\": \"").nth(1))
            .and_then(|rest| rest.split('"').next());
        if let Some(url) = url {
            break url.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no page target: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (mut socket, _) =
        tungstenite::client::client(ws_url.as_str(), stream).expect("devtools websocket");
    let message = format!(
        r#"{{"id":1,"method":"Runtime.evaluate","params":{{"expression":{},"awaitPromise":true,"returnByValue":true}}}}"#,
        json_string(expression)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut result = String::new();
    'outer: while Instant::now() < deadline {
        socket
            .send(tungstenite::Message::text(message.clone()))
            .unwrap();
        loop {
            let reply = socket.read().expect("devtools reply");
            let text = reply.to_text().unwrap_or("").to_string();
            if text.contains("\"id\":1") {
                if let Some(value) = text
                    .split("\"value\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                {
                    result = value.to_string();
                    break 'outer;
                }
                // The page may not have been there yet: ask again.
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
        }
    }
    drop(browser);
    Some(result)
}

#[test]
fn chromium_renders_the_demo_with_its_cat() {
    let ferry = Ferry::start_with(&["demo", "--port", "0", "--origin-port", "0"]);
    let page = format!("http://{}/", ferry.addr);
    // Waits for the page to finish loading, then reports what a person
    // would see: the title, the paragraph, the styles and the decoded image.
    let expression = r#"new Promise(resolve => { const check = () => {
        const img = document.querySelector('img');
        if (document.readyState === 'complete' && img && img.complete) {
            const styled = getComputedStyle(document.body).textAlign;
            resolve(`${img.naturalWidth}x${img.naturalHeight}|${document.title}|${document.querySelector('p').textContent}|${styled}`);
        } else { setTimeout(check, 50); } }; check(); })"#;
    let Some(result) = chromium_evaluate(&page, &[], expression) else {
        return;
    };
    let fields: Vec<&str> = result.split('|').collect();
    assert_eq!(fields.len(), 4, "no answer from the page: {result:?}");
    let (width, height) = fields[0].split_once('x').unwrap();
    assert!(
        width.parse::<u32>().unwrap() > 0 && height.parse::<u32>().unwrap() > 0,
        "{result}"
    );
    assert_eq!(fields[1], "Origin Server");
    assert_eq!(fields[2], "Home of this cute cat.");
    assert_eq!(fields[3], "center", "styles.css was not applied");
    // The origin logged each file, as a static server does.
    assert!(ferry.wait_for_log(Duration::from_secs(5), |lines| {
        lines
            .iter()
            .any(|l| l.starts_with("origin: ") && l.contains("GET /cute_cat.jpg 200"))
    }));
}

/// Chromium loads a page over TLS from ferry, trusting its certificate by
/// its public key (`--ignore-certificate-errors-spki-list`, the way to pin
/// a test certificate without installing a CA).
#[test]
fn chromium_loads_a_page_over_https() {
    let Some(openssl) = require_tool("openssl") else {
        return;
    };
    let name = "tls-chromium";
    let dir = std::env::temp_dir().join(format!("ferry-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success());
    // base64(sha256(SubjectPublicKeyInfo)), as Chromium wants the pin.
    let pin = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{openssl} x509 -in {} -pubkey -noout | {openssl} pkey -pubin -outform der \
             | {openssl} dgst -sha256 -binary | {openssl} enc -base64",
            cert.display()
        ))
        .output()
        .unwrap();
    let pin = String::from_utf8_lossy(&pin.stdout).trim().to_string();
    assert!(!pin.is_empty());
    let origin = Origin::standard();
    let (ferry, _) = Ferry::start_config(
        name,
        &format!(
            "upstream app {{ server {}; }}\n\
             server {{\n  listen 127.0.0.1:PORT ssl;\n  server_name localhost;\n\
               ssl_certificate {};\n  ssl_certificate_key {};\n\
               location / {{ proxy_pass http://app; }}\n}}",
            origin.addr,
            cert.display(),
            key.display()
        ),
    );
    let page = format!("https://localhost:{}/echo", ferry.addr.port());
    let extra = [
        format!("--ignore-certificate-errors-spki-list={pin}"),
        "--host-resolver-rules=MAP localhost 127.0.0.1".to_string(),
    ];
    let expression = r#"new Promise(resolve => { const check = () => {
        if (location.protocol !== 'about:' && document.readyState === 'complete' && document.body) {
            const text = document.body.innerText;
            resolve(`${location.protocol}|${text.includes('X-Forwarded-Proto: https')}`);
        } else { setTimeout(check, 50); } }; check(); })"#;
    let Some(result) = chromium_evaluate(&page, &extra, expression) else {
        return;
    };
    assert_eq!(result, "https:|true");
}

/// Chromium asks for gzip, gets it (fewer bytes on the wire than in the
/// page, by the Resource Timing entry) and renders the whole page.
#[test]
fn chromium_loads_a_gzipped_page() {
    let rows = 4000;
    let mut page = String::from("<!doctype html><title>gzip</title><table>");
    for i in 0..rows {
        page.push_str(&format!(
            "<tr><td>{i}</td><td>row {} of the table</td></tr>",
            i * 31 % 97
        ));
    }
    page.push_str("</table>");
    let page_len = page.len();
    let origin = Origin::start(move |mut conn| {
        while conn.next_request().is_some() {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
                page.len()
            );
            if !(conn.send(head.as_bytes()) && conn.send(page.as_bytes())) {
                return;
            }
        }
    });
    let (ferry, _) = Ferry::start_config(
        "gzip-chromium",
        &format!(
            "server {{ listen 127.0.0.1:PORT; gzip on; location / {{ proxy_pass http://{}; }} }}",
            origin.addr
        ),
    );
    let expression = r#"new Promise(resolve => { const check = () => {
        const nav = performance.getEntriesByType('navigation')[0];
        if (document.readyState === 'complete' && nav && nav.decodedBodySize > 0) {
            resolve(`${nav.encodedBodySize}|${nav.decodedBodySize}|${document.querySelectorAll('tr').length}`);
        } else { setTimeout(check, 50); } }; check(); })"#;
    let Some(result) = chromium_evaluate(&format!("http://{}/", ferry.addr), &[], expression)
    else {
        return;
    };
    let fields: Vec<usize> = result.split('|').filter_map(|f| f.parse().ok()).collect();
    assert_eq!(fields.len(), 3, "no answer from the page: {result:?}");
    assert_eq!(fields[1], page_len, "{result}");
    assert_eq!(fields[2], rows, "{result}");
    assert!(
        fields[0] < page_len / 4,
        "not compressed on the wire: {result}"
    );
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

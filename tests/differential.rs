//! The same malformed and ambiguous requests sent to nginx and to ferry,
//! both in front of one recording origin: nothing may reach the origin
//! through ferry that nginx refuses, and no second (smuggled) request may
//! ever reach it through ferry. The cases where the two answer differently
//! are printed, and explained in docs/security.md.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use util::*;

/// The corpus: (name, raw request). `PATH` becomes a per-case marker path;
/// a request smuggled inside another targets `/smuggled`.
fn corpus() -> Vec<(&'static str, String)> {
    let get = |extra: &str| format!("GET PATH HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
    let post =
        |extra: &str, body: &str| format!("POST PATH HTTP/1.1\r\nHost: h\r\n{extra}\r\n{body}");
    let smuggle = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    vec![
        // Content-Length and Transfer-Encoding together, and CL variants.
        ("cl+te", post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{smuggle}"))),
        ("te+cl", post("Transfer-Encoding: chunked\r\nContent-Length: 40\r\n", &format!("0\r\n\r\n{smuggle}"))),
        ("two cl differ", post("Content-Length: 5\r\nContent-Length: 40\r\n", &format!("hello{smuggle}"))),
        ("two cl same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello")),
        ("cl list differ", post("Content-Length: 5, 6\r\n", "hello!")),
        ("cl empty", post("Content-Length: \r\n", "")),
        ("cl plus", post("Content-Length: +5\r\n", "hello")),
        ("cl minus", post("Content-Length: -1\r\n", "")),
        ("cl hex", post("Content-Length: 0x5\r\n", "hello")),
        ("cl letters", post("Content-Length: 5a\r\n", "hello")),
        ("cl space inside", post("Content-Length: 1 2\r\n", "")),
        ("cl overflow", post("Content-Length: 99999999999999999999999\r\n", "")),
        ("cl leading zeros", post("Content-Length: 005\r\n", "hello")),
        // Transfer-Encoding variants.
        ("te chunked identity", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n")),
        ("te identity chunked", post("Transfer-Encoding: identity, chunked\r\n", "0\r\n\r\n")),
        ("te xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n")),
        ("te chunked tab", post("Transfer-Encoding: chunked\t\r\n", "0\r\n\r\n")),
        ("te gzip", post("Transfer-Encoding: gzip\r\n", "")),
        ("te gzip chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n")),
        ("te twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")),
        ("te empty", post("Transfer-Encoding: \r\n", "")),
        ("te uppercase", post("Transfer-Encoding: CHUNKED\r\n", "0\r\n\r\n")),
        ("te http10", "POST PATH HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string()),
        ("te space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n")),
        // Chunked framing.
        ("chunk ok", chunked("5\r\nhello\r\n0\r\n\r\n")),
        ("chunk bad size", chunked(&format!("zz\r\nhello\r\n0\r\n\r\n{smuggle}"))),
        ("chunk size overflow", chunked("fffffffffffffffff1\r\nx\r\n0\r\n\r\n")),
        ("chunk negative", chunked("-5\r\nhello\r\n0\r\n\r\n")),
        ("chunk size space", chunked("5 \r\nhello\r\n0\r\n\r\n")),
        ("chunk long ext", chunked(&format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000)))),
        ("chunk missing crlf", chunked(&format!("5\r\nhelloXX0\r\n\r\n{smuggle}"))),
        ("chunk bare lf size", chunked("5\nhello\r\n0\r\n\r\n")),
        ("chunk bare lf data", chunked("5\r\nhello\n0\r\n\r\n")),
        ("chunk bare lf last", chunked("5\r\nhello\r\n0\n\n")),
        ("chunk bare cr", chunked("5\rhello\r\n0\r\n\r\n")),
        ("chunk trailer bare lf", chunked("0\r\nX: y\n\r\n")),
        ("chunk trailer ok", chunked("0\r\nX-Trailer: y\r\n\r\n")),
        ("chunk junk after size", chunked("2 junk\r\nab\r\n0\r\n\r\n")),
        ("chunk empty extension", chunked("2;\r\nab\r\n0\r\n\r\n")),
        ("chunk ext spaces", chunked("2 ; a = b\r\nab\r\n0\r\n\r\n")),
        ("chunk unclosed quote", chunked("5;name=\"unclosed; quote\r\nhello\r\n0\r\n\r\n")),
        ("chunk quoted ext ok", chunked("5;name=\"a;b\"\r\nhello\r\n0\r\n\r\n")),
        ("chunk trailer no colon", chunked("2\r\nab\r\n0\r\nX y\r\n\r\n")),
        ("chunk trailer folded", chunked("2\r\nab\r\n0\r\n y\r\n\r\n")),
        // Field syntax.
        ("obs fold", get("X-A: a\r\n b\r\n")),
        ("space before colon", get("X-A : a\r\n")),
        ("tab before colon", get("X-A\t: a\r\n")),
        ("bare cr in value", get("X-A: a\rb\r\n")),
        ("nul in value", get("X-A: a\u{0}b\r\n")),
        ("nul in name", get("X\u{0}A: a\r\n")),
        ("ctl in value", get("X-A: a\u{1}b\r\n")),
        ("del in value", get("X-A: a\u{7f}b\r\n")),
        ("empty name", get(": a\r\n")),
        ("name with space", get("X A: a\r\n")),
        ("no colon", get("X-A\r\n")),
        // Host.
        ("no host 1.1", "GET PATH HTTP/1.1\r\n\r\n".to_string()),
        ("no host 1.0", "GET PATH HTTP/1.0\r\n\r\n".to_string()),
        ("two hosts", "GET PATH HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_string()),
        ("host mismatch absolute", "GET http://a.test/PATHX HTTP/1.1\r\nHost: b.test\r\n\r\n".to_string()),
        ("absolute empty host", "GET http://PATH HTTP/1.0\r\n\r\n".to_string()),
        ("absolute userinfo", "GET http://u@hPATH HTTP/1.0\r\n\r\n".to_string()),
        ("absolute port", "GET http://h:8080PATH HTTP/1.0\r\n\r\n".to_string()),
        ("absolute bad port", "GET http://h:8xPATH HTTP/1.0\r\n\r\n".to_string()),
        ("absolute ipv6", "GET http://[::1]PATH HTTP/1.0\r\n\r\n".to_string()),
        ("absolute query only", "GET http://?PATH HTTP/1.0\r\n\r\n".to_string()),
        ("host with space", "GET PATH HTTP/1.1\r\nHost: a b\r\n\r\n".to_string()),
        ("host with slash", "GET PATH HTTP/1.1\r\nHost: a/b\r\n\r\n".to_string()),
        ("host obs-text", "GET PATH HTTP/1.1\r\nHost: a\u{82}\r\n\r\n".to_string()),
        ("host userinfo", "GET PATH HTTP/1.1\r\nHost: user@a\r\n\r\n".to_string()),
        ("host bad port", "GET PATH HTTP/1.1\r\nHost: a:xyz\r\n\r\n".to_string()),
        ("host quote", "GET PATH HTTP/1.1\r\nHost: a\"<b\r\n\r\n".to_string()),
        ("absolute query no path", "GET http://h?PATH HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        // Request line.
        ("bad method token", "G@T PATH HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("lowercase method", "get PATH HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("space in target", "GET PATH x HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("tab in target", "GET PATH\tx HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("double space", "GET  PATH HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("http 2.0", "GET PATH HTTP/2.0\r\nHost: h\r\n\r\n".to_string()),
        ("http 1.2", "GET PATH HTTP/1.2\r\nHost: h\r\n\r\n".to_string()),
        ("http 0.9", "GET PATH HTTP/0.9\r\nHost: h\r\n\r\n".to_string()),
        ("http 1.9", "GET PATH HTTP/1.9\r\nHost: h\r\n\r\n".to_string()),
        ("http 3.0", "GET PATH HTTP/3.0\r\nHost: h\r\n\r\n".to_string()),
        ("htxp", "GET PATH HTXP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("junk before method", "\u{1}GET PATH HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("lowercase http", "GET PATH http/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("no version", "GET PATH\r\nHost: h\r\n\r\n".to_string()),
        ("bare lf line endings", "GET PATH HTTP/1.1\nHost: h\n\n".to_string()),
        ("dotdot above root", "GET /../PATHX HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("bad escape", "GET PATH%zz HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("encoded nul", "GET PATH%00 HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n".to_string()),
        ("connect", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n".to_string()),
        // Smuggling through GET bodies and pipelines.
        ("get with cl body", format!("GET PATH HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{smuggle}", smuggle.len())),
        ("expect unknown", get("Expect: magic\r\n")),
        ("upgrade h2c", get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n")),
    ]
}

/// Sends `raw`, returns the first status line's code (0: none) once the
/// peer answered and closed or went quiet.
fn send(port: u16, raw: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = stream.write_all(raw.as_bytes());
    let mut got = Vec::new();
    let mut block = [0u8; 4096];
    while let Ok(n) = stream.read(&mut block) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&block[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ferry_is_at_least_as_strict_as_nginx() {
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let origin = Origin::standard();
    let nginx = Nginx::start(
        &nginx,
        "differential",
        &format!(
            "location / {{ proxy_pass http://{}; proxy_http_version 1.1; }}",
            origin.addr
        ),
    );
    let ferry = Ferry::start(origin.addr, &["--access-log", "off"]);
    let cases = corpus();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut differences = Vec::new();
    for (index, (name, raw)) in cases.iter().enumerate() {
        let mut reached = [0usize; 2];
        let mut statuses = [0u16; 2];
        for (peer, port) in [nginx.port, ferry.addr.port()].into_iter().enumerate() {
            let marker = format!("/case-{index}-{peer}");
            let raw = raw.replace("PATH", &marker);
            let before = origin.requests().len();
            statuses[peer] = send(port, &raw);
            std::thread::sleep(Duration::from_millis(30));
            let seen = origin.requests();
            let new = &seen[before.min(seen.len())..];
            assert!(
                !new.iter().any(|r| r.path.contains("smuggled")),
                "{name}: a smuggled request reached the origin through {}",
                ["nginx", "ferry"][peer]
            );
            reached[peer] = new.iter().filter(|r| r.path.contains(&marker)).count();
        }
        assert!(
            reached[1] <= 1,
            "{name}: ferry forwarded {} requests",
            reached[1]
        );
        assert!(
            !(reached[0] == 0 && reached[1] > 0),
            "{name}: nginx refused it (status {}) but ferry forwarded it",
            statuses[0]
        );
        if statuses[0] != statuses[1] || reached[0] != reached[1] {
            differences.push(format!(
                "{name}: nginx {} ({}), ferry {} ({})",
                statuses[0],
                if reached[0] > 0 {
                    "forwarded"
                } else {
                    "refused"
                },
                statuses[1],
                if reached[1] > 0 {
                    "forwarded"
                } else {
                    "refused"
                }
            ));
        }
    }
    eprintln!(
        "{} cases; where nginx and ferry differ:\n  {}",
        cases.len(),
        differences.join("\n  ")
    );
}

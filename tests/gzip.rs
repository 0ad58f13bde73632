//! `gzip` on proxied responses, ferry and nginx on one file: the same
//! decisions (which responses are compressed, `Vary`, `Content-Length`,
//! `ETag`, `Accept-Ranges`), and decompressing what ferry sends gives the
//! upstream's bytes, for empty, tiny, under-`gzip_min_length`, 64 KiB and
//! 10 MiB bodies framed by length, chunks or close; HTTP/1.0 clients get a
//! close-delimited stream; curl `--compressed` reads it.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use util::{free_port, require_tool, Ferry, Nginx, Origin, OriginConn};

/// Text the origin serves: `size` bytes, compressible but not trivially.
fn text(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    let mut i = 0u64;
    while out.len() < size {
        out.extend_from_slice(
            format!(
                "<tr><td>{i}</td><td>row {} of the table</td></tr>\n",
                i * 7919 % 1013
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    out
}

/// `/SIZE/FRAMING/TYPE[/extra]`: SIZE bytes of `text`, framed by length,
/// chunks or close, with that Content-Type; `etag` adds a strong ETag and
/// Accept-Ranges, `encoded` a Content-Encoding of its own, `cc` a
/// `Cache-Control: private`.
fn origin() -> Origin {
    Origin::start(|mut conn: OriginConn| {
        while let Some(request) = conn.next_request() {
            let parts: Vec<String> = request
                .path
                .trim_start_matches('/')
                .split('/')
                .map(str::to_string)
                .collect();
            let size: usize = parts.first().and_then(|s| s.parse().ok()).unwrap_or(0);
            let framing = parts.get(1).map_or("length", String::as_str);
            let kind = parts.get(2).map_or("html", String::as_str);
            let extra = parts.get(3).map_or("", String::as_str);
            let content_type = match kind {
                "json" => "application/json",
                "png" => "image/png",
                _ => "text/html; charset=utf-8",
            };
            let mut head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n");
            match extra {
                "etag" => head.push_str("ETag: \"abc\"\r\nAccept-Ranges: bytes\r\n"),
                "encoded" => head.push_str("Content-Encoding: br\r\n"),
                "cc" => head.push_str("Cache-Control: private\r\n"),
                _ => {}
            }
            match framing {
                "chunked" => head.push_str("Transfer-Encoding: chunked\r\n"),
                "close" => head.push_str("Connection: close\r\n"),
                _ => head.push_str(&format!("Content-Length: {size}\r\n")),
            }
            head.push_str("\r\n");
            if !conn.send(head.as_bytes()) {
                return;
            }
            if request.method == "HEAD" {
                continue;
            }
            let body = text(size);
            let ok = match framing {
                "chunked" => {
                    body.chunks(10_000).all(|c| {
                        conn.send(format!("{:x}\r\n", c.len()).as_bytes())
                            && conn.send(c)
                            && conn.send(b"\r\n")
                    }) && conn.send(b"0\r\n\r\n")
                }
                _ => conn.send(&body),
            };
            if !ok || framing == "close" {
                return;
            }
        }
    })
}

fn site(origin: SocketAddr) -> String {
    format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           gzip on;\n\
           gzip_types application/json;\n\
           gzip_vary on;\n\
           gzip_http_version 1.0;\n\
           gzip_comp_level 5;\n\
           gzip_proxied private;\n\
           gzip_disable \"^Ancient\";\n\
           location / {{ proxy_pass http://{origin}; }}\n\
           location /short/ {{ gzip_min_length 1k; proxy_pass http://{origin}/; }}\n\
           location /off/ {{ gzip off; proxy_pass http://{origin}/; }}\n\
           location = /status {{ stub_status; }}\n\
         }}\n"
    )
}

/// What a client gets: the fields that matter, and the body decoded.
struct Seen {
    summary: String,
    body: Vec<u8>,
}

/// Sends `raw` and reads one response to its end (length, chunks or
/// close), undoing chunking and gzip; the summary lists status and fields.
fn ask(addr: SocketAddr, raw: &str) -> Seen {
    let mut stream = util::connect(addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let field = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let status = head.split(' ').nth(1).unwrap_or("").to_string();
    let mut body = Vec::new();
    if raw.starts_with("HEAD") {
    } else if field("transfer-encoding").is_some() {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = field("content-length") {
        body.resize(length.parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    let gzipped = field("content-encoding").as_deref() == Some("gzip") && !raw.starts_with("HEAD");
    if gzipped {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .unwrap_or_else(|e| {
                panic!(
                    "{raw:?}: not a valid gzip stream ({e}, {} bytes)",
                    body.len()
                )
            });
        body = plain;
    }
    // A field sent twice shows as twice.
    let varies = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("vary:"))
        .count();
    let summary = format!(
        "{status} encoding={:?} vary={:?}x{varies} length={} chunked={} etag={:?} ranges={:?}",
        field("content-encoding"),
        field("vary"),
        field("content-length").is_some(),
        field("transfer-encoding").is_some(),
        field("etag"),
        field("accept-ranges"),
    );
    Seen { summary, body }
}

const GZIP: &str = "Accept-Encoding: gzip, deflate, br\r\n";

/// (request line and fields, the body the origin sent).
fn cases() -> Vec<(String, usize)> {
    let mut cases = Vec::new();
    for size in [0, 1, 19, 20, 65_536, 10 << 20] {
        for framing in ["length", "chunked", "close"] {
            cases.push((
                format!("GET /{size}/{framing}/html HTTP/1.1\r\n{GZIP}"),
                size,
            ));
        }
    }
    for (path, size) in [
        ("/5000/length/json", 5000),
        ("/5000/length/png", 5000),
        ("/5000/length/html/etag", 5000),
        ("/5000/chunked/html/encoded", 5000),
        ("/short/500/length/html", 500),
        ("/short/500/chunked/html", 500),
        ("/short/5000/length/html", 5000),
        ("/off/5000/length/html", 5000),
    ] {
        cases.push((format!("GET {path} HTTP/1.1\r\n{GZIP}"), size));
    }
    let more = [
        ("GET /5000/length/html HTTP/1.1\r\n", 5000),
        ("GET /5000/length/html HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n", 5000),
        ("GET /5000/length/html HTTP/1.1\r\nAccept-Encoding: deflate\r\n", 5000),
        ("HEAD /5000/length/html HTTP/1.1\r\nAccept-Encoding: gzip\r\n", 0),
        ("GET /5000/chunked/html HTTP/1.0\r\nAccept-Encoding: gzip\r\n", 5000),
        ("GET /5000/length/html HTTP/1.1\r\nAccept-Encoding: gzip\r\nUser-Agent: AncientBrowser\r\n", 5000),
        ("GET /5000/length/html HTTP/1.1\r\nAccept-Encoding: gzip\r\nVia: 1.1 cache\r\n", 5000),
        ("GET /5000/length/html/cc HTTP/1.1\r\nAccept-Encoding: gzip\r\nVia: 1.1 cache\r\n", 5000),
    ];
    for (raw, size) in more {
        cases.push((raw.to_string(), size));
    }
    cases
}

fn answers(addr: SocketAddr) -> Vec<String> {
    cases()
        .into_iter()
        .map(|(raw, size)| {
            let seen = ask(addr, &format!("{raw}Host: a\r\nConnection: close\r\n\r\n"));
            assert!(
                seen.body == text(size),
                "{raw}: body differs ({} bytes)",
                seen.body.len()
            );
            format!("{raw:?} -> {}", seen.summary)
        })
        .collect()
}

#[test]
fn responses_are_compressed_as_nginx_compresses_them() {
    let origin = origin();
    let (ferry, _) = Ferry::start_config("gzip", &site(origin.addr));
    let from_ferry = answers(ferry.addr);
    let compressed = |line: &String| line.contains("encoding=Some(\"gzip\")");
    for line in &from_ferry {
        let (request, _) = line.split_once(" -> ").unwrap();
        let small = ["GET /0/", "GET /1/", "GET /19/"]
            .iter()
            .any(|p| request.contains(p));
        // A HEAD is told what its GET would get (no body follows).
        let asks = request.contains("Accept-Encoding: gzip")
            && !request.contains("q=0")
            && !request.contains("Ancient");
        // `gzip_proxied private` refuses only a proxied response with a
        // Cache-Control (or Expires) that is not private; a tiny body of
        // unknown length is compressed (nginx too).
        let refused = ["png", "encoded", "/short/500/length", "/off/"]
            .iter()
            .any(|p| request.contains(p))
            || (small && request.contains("/length/"));
        let eligible = !refused;
        assert_eq!(compressed(line), asks && eligible, "{line}");
    }
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "gzip",
        &site(origin.addr).replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    assert_eq!(from_ferry, answers(addr));
}

/// curl asks for gzip and decodes it (`--compressed`), and reports that the
/// bytes on the wire were fewer.
#[test]
fn curl_reads_a_compressed_page() {
    let Some(curl) = require_tool("curl") else {
        return;
    };
    let origin = origin();
    let (ferry, _) = Ferry::start_config("gzip-curl", &site(origin.addr));
    let output = std::process::Command::new(curl)
        .args([
            "--silent",
            "--compressed",
            "--write-out",
            "\n%{size_download}",
        ])
        .arg(format!("http://{}/65536/chunked/html", ferry.addr))
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = output.stdout;
    let split = stdout.iter().rposition(|b| *b == b'\n').unwrap();
    assert_eq!(&stdout[..split], &text(65_536)[..]);
    let on_the_wire: usize = std::str::from_utf8(&stdout[split + 1..])
        .unwrap()
        .parse()
        .unwrap();
    assert!(on_the_wire < 65_536 / 3, "{on_the_wire} bytes on the wire");
}

/// A client that stops reading holds ferry to its bounded buffers: the
/// compressor waits for its output to go, the ring for the compressor,
/// the upstream for the ring. Then the whole body arrives, and the
/// connection takes the next request.
#[test]
fn a_stalled_client_costs_bounded_memory_and_the_connection_goes_on() {
    let origin = origin();
    let (ferry, _) = Ferry::start_config("gzip-stall", &site(origin.addr));
    let size = 64 << 20;
    let mut stream = util::connect(ferry.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let before = ferry.rss_kib();
    let request = format!("GET /{size}/chunked/html HTTP/1.1\r\nHost: a\r\n{GZIP}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let stalled = ferry.rss_kib();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.contains("Content-Encoding: gzip"), "{head}");
    let mut compressed = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let chunk = usize::from_str_radix(line.trim(), 16).unwrap();
        let mut data = vec![0u8; chunk + 2];
        reader.read_exact(&mut data).unwrap();
        if chunk == 0 {
            break;
        }
        compressed.extend_from_slice(&data[..chunk]);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert!(plain == text(size), "the body differs");
    println!(
        "64 MiB as {} bytes of gzip; RSS {before} KiB before, {stalled} KiB stalled",
        compressed.len()
    );
    assert!(
        stalled < before + 8 * 1024,
        "RSS grew from {before} KiB to {stalled} KiB while the client stalled"
    );
    // Same connection, next request.
    stream
        .write_all(b"GET /100/length/json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
}

/// The Prometheus page counts compressed responses and the bytes saved.
#[test]
fn the_status_page_counts_what_gzip_saved() {
    let origin = origin();
    let (ferry, _) = Ferry::start_config("gzip-status", &site(origin.addr));
    let plain = ask(ferry.addr, "GET /65536/length/png HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    assert!(plain.summary.contains("encoding=None"));
    let packed = ask(
        ferry.addr,
        &format!("GET /65536/length/html HTTP/1.1\r\nHost: a\r\n{GZIP}Connection: close\r\n\r\n"),
    );
    assert!(packed.summary.contains("encoding=Some(\"gzip\")"));
    let sample = |page: &str, name: &str| -> u64 {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = util::request(
            ferry.addr,
            "GET /status?format=prometheus HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .text();
        let responses = sample(&page, "ferry_gzip_responses_total");
        let bytes_in = sample(&page, "ferry_gzip_bytes_total{stage=\"in\"}");
        let bytes_out = sample(&page, "ferry_gzip_bytes_total{stage=\"out\"}");
        if responses == 1 {
            assert_eq!(bytes_in, 65_536, "{page}");
            assert!(bytes_out > 20 && bytes_out < bytes_in / 3, "{page}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files are compressed as nginx compresses them: by type and length, with
/// the same fields; a Range request to a compressed type gets the whole
/// file compressed (nginx's gzip filter takes the ranges away).
#[test]
fn files_are_compressed_as_nginx_compresses_them() {
    let dir = util::scratch_dir("gzip-files");
    let css = text(5000);
    std::fs::write(dir.join("style.css"), &css).unwrap();
    std::fs::write(dir.join("tiny.css"), b"a{}").unwrap();
    std::fs::write(dir.join("image.png"), text(5000)).unwrap();
    std::fs::write(dir.join("page.html"), text(70_000)).unwrap();
    let body = format!(
        "server {{\n\
           listen 127.0.0.1:PORT;\n\
           root {root};\n\
           types {{ text/css css; text/html html; image/png png; }}\n\
           gzip on;\n\
           gzip_types text/css;\n\
           gzip_vary on;\n\
           gzip_http_version 1.0;\n\
         }}\n",
        root = dir.display()
    );
    let cases: Vec<(String, Vec<u8>)> = vec![
        (format!("GET /style.css HTTP/1.1\r\n{GZIP}"), css.clone()),
        ("GET /style.css HTTP/1.1\r\n".to_string(), css.clone()),
        (format!("HEAD /style.css HTTP/1.1\r\n{GZIP}"), Vec::new()),
        ("HEAD /style.css HTTP/1.1\r\n".to_string(), Vec::new()),
        (
            format!("GET /style.css HTTP/1.1\r\nRange: bytes=0-9\r\n{GZIP}"),
            css.clone(),
        ),
        (
            "GET /style.css HTTP/1.1\r\nRange: bytes=0-9\r\n".to_string(),
            css[..10].to_vec(),
        ),
        (format!("GET /style.css HTTP/1.0\r\n{GZIP}"), css.clone()),
        (format!("GET /tiny.css HTTP/1.1\r\n{GZIP}"), b"a{}".to_vec()),
        (format!("GET /image.png HTTP/1.1\r\n{GZIP}"), text(5000)),
        (format!("GET /page.html HTTP/1.1\r\n{GZIP}"), text(70_000)),
    ];
    let answers = |addr: SocketAddr| -> Vec<String> {
        cases
            .iter()
            .map(|(raw, expected)| {
                let seen = ask(addr, &format!("{raw}Host: a\r\nConnection: close\r\n\r\n"));
                assert!(
                    &seen.body == expected,
                    "{raw}: body differs ({} bytes)",
                    seen.body.len()
                );
                // The ETag's value is the file's (the same from both).
                format!("{raw:?} -> {}", seen.summary)
            })
            .collect()
    };
    let (ferry, _) = Ferry::start_config("gzip-files", &body);
    let from_ferry = answers(ferry.addr);
    assert!(
        from_ferry[0].contains("encoding=Some(\"gzip\")"),
        "{}",
        from_ferry[0]
    );
    assert!(
        from_ferry[0].contains("etag=Some(\"W/"),
        "{}",
        from_ferry[0]
    );
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "gzip-files",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    assert_eq!(from_ferry, answers(addr));
}

/// ferry's own responses (error pages, `return` text, `deny`) go through
/// the filter as nginx's do: the same decisions and fields as nginx, and
/// each decompressed body is the body the same request gets without gzip.
#[test]
fn own_pages_are_compressed_as_nginx_compresses_them() {
    let body = "server {\n\
           listen 127.0.0.1:PORT;\n\
           gzip on;\n\
           gzip_types text/plain;\n\
           gzip_vary on;\n\
           gzip_http_version 1.0;\n\
           default_type text/plain;\n\
           location = /text { return 200 \"a text long enough to be compressed, a text long enough\\n\"; }\n\
           location = /short { return 200 \"hi\"; }\n\
           location = /teapot { return 418 \"a text long enough to be compressed, but a 418\\n\"; }\n\
           location = /forbidden { deny all; }\n\
           location = /moved { return 302 /elsewhere; }\n\
           location = /gone { return 404; }\n\
           location /off/ { gzip off; return 200 \"a text long enough to be compressed, a text long enough\\n\"; }\n\
         }\n";
    let paths = [
        "/text",
        "/short",
        "/teapot",
        "/forbidden",
        "/moved",
        "/gone",
        "/nowhere",
        "/off/x",
    ];
    let answers = |addr: SocketAddr| -> Vec<String> {
        let mut seen = Vec::new();
        for path in paths {
            let plain = ask(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            );
            for raw in [
                format!("GET {path} HTTP/1.1\r\n{GZIP}"),
                format!("GET {path} HTTP/1.0\r\n{GZIP}"),
                format!("HEAD {path} HTTP/1.1\r\n{GZIP}"),
            ] {
                let got = ask(addr, &format!("{raw}Host: a\r\nConnection: close\r\n\r\n"));
                if !raw.starts_with("HEAD") {
                    assert!(got.body == plain.body, "{raw}: body differs");
                }
                seen.push(format!("{raw:?} -> {}", got.summary));
            }
        }
        seen
    };
    let (ferry, _) = Ferry::start_config("gzip-own", body);
    let from_ferry = answers(ferry.addr);
    // The cases that matter, whatever nginx says.
    assert!(
        from_ferry[0].contains("encoding=Some(\"gzip\")") && from_ferry[0].contains("chunked=true"),
        "{}",
        from_ferry[0]
    );
    let forbidden = &from_ferry[9];
    assert!(
        forbidden.contains("403 encoding=Some(\"gzip\")"),
        "{forbidden}"
    );
    let Some(nginx) = require_tool("nginx") else {
        return;
    };
    let port = free_port();
    let nginx = Nginx::start_http(
        &nginx,
        "gzip-own",
        &body.replace("PORT", &port.to_string()),
        port,
    );
    let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    assert_eq!(from_ferry, answers(addr));
}

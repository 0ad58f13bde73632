//! Chapter 5: where a body ends (docs/learn/05-framing.md).
//!
//! HTTP/1.1 says where each message ends: a `Content-Length`, chunked
//! coding (the last chunk has size 0), or, for a response with neither,
//! the end of the connection. The parser here is sans-IO, like ferry's
//! `http/framing.rs`: bytes in, "not yet" or "ends here" out, whatever the
//! pieces they arrive in. Run it with `cargo run --example ch5_framing`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a response body is delimited (RFC 9112, section 6.3).
#[derive(Debug, PartialEq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads the framing from a response head (HEAD, 1xx, 204 and 304 aside).
fn framing(head: &str) -> Framing {
    let field = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    if field("transfer-encoding")
        .is_some_and(|v| v.rsplit(',').next().unwrap_or("").trim() == "chunked")
    {
        return Framing::Chunked;
    }
    match field("content-length").and_then(|v| v.parse().ok()) {
        Some(length) => Framing::Length(length),
        None => Framing::UntilClose,
    }
}

/// Where a chunked body ends in `bytes` (the whole body seen so far):
/// `Ok(None)` for "not yet", `Ok(Some(end))`, or `Err` for bad framing.
/// Trailers are not read: the last chunk must be `0\r\n\r\n`.
fn chunked_end(bytes: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(line_end) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&bytes[at..at + line_end]).map_err(|e| e.to_string())?;
        let digits = line.split(';').next().unwrap_or("");
        let size =
            usize::from_str_radix(digits, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        at += line_end + 2;
        if size == 0 {
            return Ok(bytes[at..].starts_with(b"\r\n").then_some(at + 2));
        }
        if bytes.len() < at + size + 2 {
            return Ok(None);
        }
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

/// Reads one response from `stream` and returns it, knowing where it ends.
fn read_framed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
            let body = &got[head_end..];
            let done = match framing(&head) {
                Framing::Length(n) => body.len() as u64 >= n,
                Framing::Chunked => chunked_end(body).ok().flatten().is_some(),
                Framing::UntilClose => false,
            };
            if done {
                return got;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The seed's fix: read until the server stops sending (here: until it
/// closes, or `patience` runs out).
fn read_until_close(stream: &mut TcpStream, patience: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut got = Vec::new();
    let closed = stream.read_to_end(&mut got).is_ok();
    (got, closed)
}

/// Asks the seed's origin for its page both ways; the lines `main` prints.
fn compare(origin: SocketAddr) -> Vec<String> {
    let ask = |origin| {
        let mut stream = TcpStream::connect(origin).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        stream
    };
    let started = Instant::now();
    let framed = read_framed(&mut ask(origin));
    let framed_ms = started.elapsed().as_millis();
    let started = Instant::now();
    let (until_close, closed) = read_until_close(&mut ask(origin), Duration::from_secs(1));
    vec![
        format!(
            "framed by Content-Length: {} bytes, done in {framed_ms} ms",
            framed.len()
        ),
        format!(
            "read until the server stops: {} bytes, {} after {} ms",
            until_close.len(),
            if closed { "closed" } else { "still waiting" },
            started.elapsed().as_millis()
        ),
    ]
}

fn main() {
    let origin = ferry::demo::start_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    for line in compare(origin) {
        println!("{line}");
    }
}

#[cfg(test)]
#[path = "quoted.rs"]
mod quoted;

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNKED: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";

    #[test]
    fn the_page_shows_what_main_prints() {
        let origin = ferry::demo::start_origin("127.0.0.1:0".parse().unwrap()).unwrap();
        let printed = compare(origin);
        let page = include_str!("05-framing.md");
        super::quoted::assert_quoted(page, &printed, super::quoted::numbers_masked, |_| true);
        // And what it says: framed is done, read-until-close is not.
        assert!(printed[1].contains("still waiting"), "{printed:?}");
    }

    #[test]
    fn a_chunked_body_ends_at_its_last_chunk_however_it_is_split() {
        for cut in 0..=CHUNKED.len() {
            let end = chunked_end(&CHUNKED[..cut]).unwrap();
            assert_eq!(
                end,
                (cut == CHUNKED.len()).then_some(CHUNKED.len()),
                "cut at {cut}"
            );
        }
        // Bytes after the end belong to the next response.
        let mut two = CHUNKED.to_vec();
        two.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(chunked_end(&two).unwrap(), Some(CHUNKED.len()));
    }

    #[test]
    fn bad_chunks_are_refused_not_guessed() {
        assert!(chunked_end(b"zz\r\nhello\r\n").is_err());
        assert!(chunked_end(b"5\r\nhelloXX0\r\n\r\n").is_err());
    }

    #[test]
    fn framing_is_read_from_the_head() {
        let head = |fields: &str| format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
        assert_eq!(
            framing(&head("Content-Length: 12\r\n")),
            Framing::Length(12)
        );
        assert_eq!(
            framing(&head("transfer-encoding: gzip, Chunked\r\n")),
            Framing::Chunked
        );
        assert_eq!(framing(&head("")), Framing::UntilClose);
    }
}

//! Chapter 6: keep-alive both ways, the upstream pool, and the reuse race
//! (docs/learn/06-keepalive.md). Run it: `cargo run --example ch6_keepalive`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether a client connection stays open after this exchange (RFC 9112,
/// section 9.3): `Connection` is a case-insensitive token list; HTTP/1.1
/// persists unless `close`, HTTP/1.0 only with `keep-alive`; and the
/// response must agree (its own `close`, or a body ended by closing).
fn keeps_alive(version: &str, request_connection: &str, response_says_close: bool) -> bool {
    let has = |token: &str| {
        request_connection
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let asked = match version {
        "HTTP/1.1" => !has("close"),
        _ => has("keep-alive"),
    };
    asked && !response_says_close
}

/// Idle upstream connections, and a check before each reuse.
#[derive(Default)]
struct Pool {
    idle: Vec<TcpStream>,
}

impl Pool {
    /// A pooled connection that still looks open, else a new one; and
    /// whether it was pooled. A peek that says 0 bytes is the origin's FIN:
    /// that connection is dropped, not used.
    fn connection(&mut self, origin: SocketAddr) -> io::Result<(TcpStream, bool)> {
        while let Some(stream) = self.idle.pop() {
            stream.set_nonblocking(true)?;
            let alive = matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            stream.set_nonblocking(false)?;
            if alive {
                return Ok((stream, true));
            }
        }
        Ok((TcpStream::connect(origin)?, false))
    }
}

/// One GET through the pool. The race: a pooled connection can be closed
/// by the origin while the request is on its way. A GET that got no byte
/// of answer is safe to send again, once, on a new connection.
fn get(
    pool: &mut Pool,
    origin: SocketAddr,
    retry: bool,
    log: &mut Vec<String>,
) -> io::Result<Vec<u8>> {
    let (mut stream, pooled) = pool.connection(origin)?;
    log.push(format!(
        "{} connection",
        if pooled { "pooled" } else { "new" }
    ));
    match exchange(&mut stream) {
        Ok(response) => {
            // Pooled only if both messages allow it (our request asks for
            // nothing: HTTP/1.1's default).
            let head = String::from_utf8_lossy(&response).to_ascii_lowercase();
            if keeps_alive("HTTP/1.1", "", head.contains("\r\nconnection: close")) {
                pool.idle.push(stream);
            }
            Ok(response)
        }
        Err(e) if pooled && retry => {
            log.push(format!(
                "closed before answering ({e}): once more on a new connection"
            ));
            let mut fresh = TcpStream::connect(origin)?;
            let response = exchange(&mut fresh)?;
            pool.idle.push(fresh);
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

/// Writes a GET and reads a `Content-Length` response; an end before any
/// byte of it is an error.
fn exchange(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .split("content-length:")
                .nth(1)
                .and_then(|v| v.lines().next()?.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(got);
            }
        }
        match stream.read(&mut buf)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the origin closed",
                ))
            }
            n => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// An origin that answers the first request of each connection and, like
/// a server whose keep-alive timeout fires as the next request arrives,
/// closes on the second without answering. Counts its connections.
fn racing_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n");
                }
                let _ = stream.read(&mut buf);
            });
        }
    });
    (addr, accepted)
}

/// Two GETs through one pool; the lines `main` prints.
fn story(retry: bool) -> Vec<String> {
    let (origin, accepted) = racing_origin();
    let mut pool = Pool::default();
    let mut log = Vec::new();
    for request in 1..=2 {
        log.push(format!("request {request}:"));
        match get(&mut pool, origin, retry, &mut log) {
            Ok(response) => log.push(String::from_utf8_lossy(&response[..15]).into_owned()),
            Err(e) => log.push(format!("failed: {e}")),
        }
    }
    log.push(format!(
        "the origin accepted {} connections",
        accepted.load(Ordering::SeqCst)
    ));
    log
}

fn main() {
    for line in story(true) {
        println!("{line}");
    }
}

#[cfg(test)]
#[path = "quoted.rs"]
mod quoted;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_what_main_prints() {
        let page = include_str!("06-keepalive.md");
        super::quoted::assert_quoted(page, &story(true), str::to_string, |_| true);
    }

    #[test]
    fn without_a_retry_the_race_fails_the_request() {
        let told = story(false);
        assert!(told[5].starts_with("failed"), "{told:?}");
    }

    #[test]
    fn a_connection_the_origin_closed_is_not_reused() {
        let (origin, accepted) = racing_origin();
        let mut pool = Pool::default();
        let mut stream = TcpStream::connect(origin).unwrap();
        exchange(&mut stream).unwrap();
        // The origin closes after a second request only; close ours to the
        // origin's side instead: it reads EOF and ends the connection.
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        pool.idle.push(stream);
        let (_, pooled) = pool.connection(origin).unwrap();
        assert!(!pooled && pool.idle.is_empty());
        // The new connection reaches the origin's accept in its own time.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while accepted.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn keep_alive_is_read_from_both_sides() {
        assert!(keeps_alive("HTTP/1.1", "", false));
        assert!(!keeps_alive("HTTP/1.1", "Upgrade, CLOSE", false));
        assert!(keeps_alive("HTTP/1.0", "Keep-Alive", false));
        assert!(!keeps_alive("HTTP/1.0", "", false));
        // The seed's hang (chapter 1): the request asks, the response says no.
        assert!(!keeps_alive("HTTP/1.0", "keep-alive", true));
    }
}

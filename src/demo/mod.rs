//! `ferry demo`: the seed post's setup in one command.
//!
//! A tiny static origin (the post used `npx serve`) serves the seed's page,
//! its stylesheet and a picture of a cat on 127.0.0.1:3000, and ferry proxies
//! to it from 127.0.0.1:8080. The origin is deliberately simple, one thread
//! per connection, since it plays the part of someone else's server; it logs
//! each request the way a static file server does.
//!
//! In the course (docs/learn): the seed itself (docs/learn/README.md): its
//! origin, its page and its cat.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

const INDEX: &[u8] = include_bytes!("index.html");
const STYLES: &[u8] = include_bytes!("styles.css");
const CAT: &[u8] = include_bytes!("cute_cat.jpg");

/// Starts the origin on `addr` in background threads.
pub fn start_origin(addr: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = thread::Builder::new()
                    .name("demo-origin-conn".into())
                    .spawn(move || serve(stream));
            }
        })?;
    Ok(bound)
}

fn file(path: &str) -> Option<(&'static [u8], &'static str)> {
    match path.split('?').next().unwrap_or("") {
        "/" | "/index.html" => Some((INDEX, "text/html; charset=utf-8")),
        "/styles.css" => Some((STYLES, "text/css")),
        "/cute_cat.jpg" => Some((CAT, "image/jpeg")),
        _ => None,
    }
}

/// Serves one keep-alive connection: heads up to 8 KiB, bodies ignored.
fn serve(mut stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let mut buf = vec![0u8; 8192];
    let mut held = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let (head_len, method, path, close, body_len) = match request.parse(&buf[..held]) {
            Ok(httparse::Status::Complete(n)) => {
                let close = request.version == Some(0)
                    || request.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("connection")
                            && h.value.eq_ignore_ascii_case(b"close")
                    });
                let body_len: usize = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0);
                let method = request.method.unwrap_or("GET").to_string();
                let path = request.path.unwrap_or("/").to_string();
                (n, method, path, close, body_len)
            }
            Ok(httparse::Status::Partial) if held < buf.len() => {
                match stream.read(&mut buf[held..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => held += n,
                }
                continue;
            }
            _ => {
                let _ = stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
        };
        let started = Instant::now();
        let (status, body, content_type) = match file(&path) {
            Some((body, content_type)) => ("200 OK", body, content_type),
            None => ("404 Not Found", &b"Not Found\n"[..], "text/plain"),
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        if method != "HEAD" {
            response.extend_from_slice(body);
        }
        if stream.write_all(&response).is_err() {
            return;
        }
        println!(
            "origin: {peer} {method} {path} {} {}ms",
            &status[..3],
            started.elapsed().as_millis()
        );
        // Drop the request (and any body) from the buffer, keep what follows.
        let mut skip = head_len + body_len;
        while skip > held {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    skip -= held;
                    held = n;
                }
            }
        }
        buf.copy_within(skip..held, 0);
        held -= skip;
        if close {
            return;
        }
    }
}

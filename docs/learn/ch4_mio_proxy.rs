//! Chapter 4: a proxy on one thread, one state machine per client, two
//! ring buffers each (docs/learn/04-mio-proxy.md).
//!
//! Bytes are copied as they come, client -> ring -> upstream and back;
//! a side whose ring is full is not read (back-pressure), and a refused
//! connect becomes a 502. Run it with `cargo run --example ch4_mio_proxy`:
//! it proxies 127.0.0.1:8081 to ferry's demo origin (the seed's cat page).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const RING: usize = 16 * 1024;
const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A fixed-size circular buffer: bytes go in at the end, out at the start.
struct Ring {
    bytes: Box<[u8; RING]>,
    start: usize,
    len: usize,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            bytes: Box::new([0; RING]),
            start: 0,
            len: 0,
        }
    }

    /// One read into the free space after the data, up to the wrap.
    fn fill(&mut self, from: &mut impl Read) -> io::Result<usize> {
        let end = (self.start + self.len) % RING;
        let room = if end >= self.start {
            RING - end
        } else {
            self.start - end
        };
        let n = from.read(&mut self.bytes[end..end + room])?;
        self.len += n;
        Ok(n)
    }

    /// One write of the data, up to the wrap.
    fn drain(&mut self, to: &mut impl Write) -> io::Result<usize> {
        let n = to.write(&self.bytes[self.start..self.start + self.len.min(RING - self.start)])?;
        self.start = (self.start + n) % RING;
        self.len -= n;
        Ok(n)
    }
}

/// One direction: its ring, and whether its source has ended.
struct Pipe {
    ring: Ring,
    ended: bool,
}

impl Pipe {
    /// Copies `from` -> ring -> `to` as far as it goes now; whether bytes
    /// moved. A full ring is not refilled (back-pressure: `from` waits in
    /// the kernel), and `from`'s end is passed on once the ring is empty.
    fn copy(&mut self, from: &mut TcpStream, to: &mut TcpStream) -> io::Result<bool> {
        let mut progress = false;
        if !self.ended && self.ring.len < RING {
            match moved(self.ring.fill(from))? {
                Some(0) => (self.ended, progress) = (true, true),
                Some(_) => progress = true,
                None => {}
            }
        }
        if self.ring.len > 0 {
            progress |= moved(self.ring.drain(to))?.is_some_and(|n| n > 0);
        }
        if self.ended && self.ring.len == 0 && progress {
            let _ = to.shutdown(Shutdown::Write);
        }
        Ok(progress)
    }
}

/// Where a session is; `step` moves it on.
enum State {
    Connecting,
    Relaying,
    Closed,
}

struct Session {
    client: TcpStream,
    upstream: TcpStream,
    state: State,
    /// Client to upstream, and back.
    up: Pipe,
    down: Pipe,
}

/// Did the operation move bytes? `WouldBlock` is "no", not an error.
fn moved(result: io::Result<usize>) -> io::Result<Option<usize>> {
    match result {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

impl Session {
    /// The one transition function: runs until it must wait.
    fn step(&mut self) {
        loop {
            self.state = match self.state {
                State::Connecting => {
                    match (self.upstream.take_error(), self.upstream.peer_addr()) {
                        (Ok(None), Ok(_)) => State::Relaying,
                        (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
                        _ => {
                            // Refused: the client hears it, as in the seed.
                            let _ = self.client.write(BAD_GATEWAY);
                            State::Closed
                        }
                    }
                }
                State::Relaying => {
                    let up = self.up.copy(&mut self.client, &mut self.upstream);
                    let down = self.down.copy(&mut self.upstream, &mut self.client);
                    match (up, down) {
                        (Ok(_), Ok(_)) if self.down.ended && self.down.ring.len == 0 => {
                            State::Closed
                        }
                        (Ok(false), Ok(false)) => return,
                        (Ok(_), Ok(_)) => State::Relaying,
                        _ => State::Closed,
                    }
                }
                State::Closed => return,
            };
        }
    }
}

/// The loop: the listener is token 0, a session's client 2k+1 and its
/// upstream 2k+2 for slab key k.
fn serve(mut listener: TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut sessions: Slab<Session> = Slab::new();
    poll.registry()
        .register(&mut listener, Token(0), Interest::READABLE)?;
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            let key = match event.token().0 {
                0 => {
                    while let Ok((mut client, _)) = listener.accept() {
                        let entry = sessions.vacant_entry();
                        let both = Interest::READABLE | Interest::WRITABLE;
                        let mut server = TcpStream::connect(upstream)?;
                        poll.registry()
                            .register(&mut client, Token(2 * entry.key() + 1), both)?;
                        poll.registry()
                            .register(&mut server, Token(2 * entry.key() + 2), both)?;
                        let pipe = || Pipe {
                            ring: Ring::new(),
                            ended: false,
                        };
                        entry.insert(Session {
                            client,
                            upstream: server,
                            state: State::Connecting,
                            up: pipe(),
                            down: pipe(),
                        });
                    }
                    continue;
                }
                token => (token - 1) / 2,
            };
            if let Some(session) = sessions.get_mut(key) {
                session.step();
                if let State::Closed = session.state {
                    sessions.remove(key);
                }
            }
        }
    }
}

fn main() -> io::Result<()> {
    let origin = ferry::demo::start_origin("127.0.0.1:0".parse().unwrap())?;
    let listener = TcpListener::bind("127.0.0.1:8081".parse().unwrap())?;
    println!("proxying http://127.0.0.1:8081 to the seed's page on http://{origin}");
    serve(listener, origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn start(upstream: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, upstream));
        addr
    }
    use std::net::TcpStream as Client;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::Duration;

    fn get(proxy: SocketAddr, path: &str) -> Vec<u8> {
        let mut stream = Client::connect(proxy).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // (The proxy may answer 502 and close before this is written.)
        let _ = write!(stream, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n");
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        all
    }

    #[test]
    fn the_cat_arrives_whole() {
        let origin = ferry::demo::start_origin("127.0.0.1:0".parse().unwrap()).unwrap();
        let got = get(start(origin), "/cute_cat.jpg");
        assert!(got.ends_with(include_bytes!("../../src/demo/cute_cat.jpg")));
    }

    #[test]
    fn a_refused_connect_is_a_502() {
        // A port that was just free: nothing listens there.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr();
        assert_eq!(get(start(dead.unwrap()), "/"), BAD_GATEWAY);
    }

    /// The origin sends 64 MiB to a client that reads nothing for half a
    /// second: the proxy stops reading when its ring is full, so TCP holds
    /// the origin back instead of the proxy's memory growing.
    #[test]
    fn a_client_that_does_not_read_holds_the_upstream_back() {
        const SIZE: usize = 64 << 20;
        let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin_addr = origin.local_addr().unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&written);
        std::thread::spawn(move || {
            let (mut stream, _) = origin.accept().unwrap();
            while counter.fetch_add(65536, Relaxed) < SIZE {
                stream.write_all(&[7u8; 65536]).unwrap();
            }
        });
        let mut client = Client::connect(start(origin_addr)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(written.load(Relaxed) < SIZE, "nothing pushed back");
        let (mut total, mut buf) = (0, vec![0u8; 1 << 16]);
        while total < SIZE {
            total += client.read(&mut buf).unwrap();
        }
    }
}

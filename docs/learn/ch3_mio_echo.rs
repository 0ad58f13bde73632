//! Chapter 3: an echo server on one thread with mio (docs/learn/03-mio-echo.md).
//!
//! `Poll` waits for readiness; each socket is registered with a `Token`;
//! a `Slab` keeps one entry per client and its key is the client's token;
//! events are edge-triggered, so a readable socket is read until
//! `WouldBlock`. Run it with `cargo run --example ch3_mio_echo`, then
//! `nc 127.0.0.1 7000` in two terminals: one thread echoes both.

use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token; a client's is its slab key plus one.
const LISTENER: Token = Token(0);

/// One client: its socket, and what it sent that could not be echoed yet.
struct Client {
    socket: TcpStream,
    unsent: Vec<u8>,
}

/// Runs the loop on `listener`. With `read_once`, a readable socket is
/// read once per event, not until `WouldBlock`: the bug the tests show.
fn serve(mut listener: TcpListener, read_once: bool, log: bool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(128);
    let mut clients: Slab<Client> = Slab::new();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                // Edge-triggered: accept until the backlog is empty.
                loop {
                    match listener.accept() {
                        Ok((mut socket, peer)) => {
                            let entry = clients.vacant_entry();
                            let token = Token(entry.key() + 1);
                            poll.registry().register(
                                &mut socket,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            if log {
                                println!("#{} New connection from {peer}", token.0);
                            }
                            entry.insert(Client {
                                socket,
                                unsent: Vec::new(),
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let key = event.token().0 - 1;
            let Some(client) = clients.get_mut(key) else {
                continue;
            };
            if log {
                println!(
                    "#{} ready:{}{}",
                    key + 1,
                    if event.is_readable() { " readable" } else { "" },
                    if event.is_writable() { " writable" } else { "" }
                );
            }
            let closed = echo(client, read_once, log, key + 1);
            if closed {
                if log {
                    println!("#{} Client disconnected", key + 1);
                }
                // Dropping the socket closes it and leaves the poll.
                clients.remove(key);
            }
        }
    }
}

/// Reads what there is (all of it, unless `read_once`) and writes it back,
/// until neither moves a byte; whether the client is gone. After a write
/// makes room, reading starts again: the socket may hold bytes whose
/// readiness edge came and went while the echo was full.
fn echo(client: &mut Client, read_once: bool, log: bool, token: usize) -> bool {
    let mut buf = [0u8; 16];
    loop {
        let mut moved = false;
        // Back-pressure: a client that does not read its echo is not read.
        while client.unsent.len() < 64 * 1024 {
            match client.socket.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    if log {
                        println!("#{token} -> * {n}B");
                    }
                    client.unsent.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return true,
            }
            if read_once {
                break;
            }
        }
        while !client.unsent.is_empty() {
            match client.socket.write(&client.unsent) {
                Ok(n) => {
                    client.unsent.drain(..n);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return true,
            }
        }
        if !moved || read_once {
            return false;
        }
    }
}

fn main() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:7000".parse().unwrap())?;
    println!("echoing on 127.0.0.1:7000 (try: nc 127.0.0.1 7000)");
    serve(listener, false, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;
    /// Starts a server on a free port in a thread of its own.
    fn start(read_once: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, read_once, false));
        addr
    }

    /// Sends `message` and reads until it all came back or a second passed.
    fn round_trip(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        stream.write_all(message).unwrap();
        let mut got = vec![0u8; message.len()];
        let mut filled = 0;
        while filled < got.len() {
            match stream.read(&mut got[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        got.truncate(filled);
        got
    }

    #[test]
    fn one_thread_echoes_many_clients_at_once() {
        let addr = start(false);
        let clients: Vec<_> = (0..50)
            .map(|i| {
                std::thread::spawn(move || {
                    let message = format!("client {i} says hello\n").repeat(100);
                    assert_eq!(round_trip(addr, message.as_bytes()), message.as_bytes());
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
    }

    #[test]
    fn reading_once_per_edge_strands_the_rest() {
        // 100 bytes arrive at once: one readiness edge. Read 16 of them and
        // wait for the next event, and it never comes: 84 bytes stay in
        // the kernel and the client waits for their echo.
        let got = round_trip(start(true), &[b'x'; 100]);
        assert_eq!(got.len(), 16);
        let got = round_trip(start(false), &[b'x'; 100]);
        assert_eq!(got.len(), 100);
    }

    #[test]
    fn a_client_that_does_not_read_is_not_read_either() {
        // Nothing read back: the server stops reading at 64 KiB of unsent
        // echo, so its memory stays bounded, and then TCP's own buffers
        // (a few MiB on loopback) fill until the sender is told to wait.
        let addr = start(false);
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let chunk = [b'y'; 65536];
        let mut sent = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while sent < (64 << 20) && std::time::Instant::now() < deadline {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        assert!(
            sent < 64 << 20,
            "all {sent} bytes went in: nothing pushed back"
        );
    }
}

//! Chapter 2: non-blocking sockets (docs/learn/02-nonblocking.md).
//!
//! A socket in non-blocking mode never waits: a read with nothing to read
//! and a write with no room both fail with `WouldBlock`, and a write may
//! take only part of what it was given. Run it with
//! `cargo run --example ch2_nonblocking`: it shows each of these on a real
//! loopback connection, then what retrying without readiness costs.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// What the tour saw, for `main` to print and the tests to check.
#[derive(Debug, Default)]
struct Seen {
    read_would_block: bool,
    /// Bytes the kernel took before a write said `WouldBlock`.
    accepted: usize,
    /// Writes that took only part of their 64 KiB.
    partial_writes: usize,
    /// Read calls a loop made in 100 ms when it retried without waiting.
    busy_reads: u64,
    /// Times `mio::Poll` woke in 100 ms for a socket with nothing to read.
    poll_wakeups: usize,
}

fn tour() -> io::Result<Seen> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (mut server, _) = listener.accept()?;
    server.set_nonblocking(true)?;
    let mut seen = Seen::default();

    // 1. Nothing has arrived: the read returns at once with WouldBlock.
    let mut buf = [0u8; 4096];
    if let Err(e) = server.read(&mut buf) {
        seen.read_would_block = e.kind() == io::ErrorKind::WouldBlock;
    }

    // 2. The client reads nothing: writes fill the kernel's buffers (ours
    // to send, the client's to receive) until one says WouldBlock; the
    // last one that succeeded usually took only part of its chunk.
    let chunk = [b'x'; 65536];
    loop {
        match server.write(&chunk) {
            Ok(n) => {
                seen.accepted += n;
                if n < chunk.len() {
                    seen.partial_writes += 1;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }

    // 3. A loop with no readiness can only retry: it spins, burning a
    // core, to learn that nothing happened.
    // (Its client side is kept open: a closed one would make it readable.)
    let _quiet_client = TcpStream::connect(listener.local_addr()?)?;
    let (mut quiet, _) = listener.accept()?;
    quiet.set_nonblocking(true)?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(100) {
        let _ = quiet.read(&mut buf);
        seen.busy_reads += 1;
    }

    // 4. Readiness instead: the kernel wakes us when there is something
    // to read (chapter 3). With nothing to read, 100 ms pass in one wait.
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(8);
    let mut waited = mio::net::TcpStream::from_std(quiet);
    poll.registry()
        .register(&mut waited, mio::Token(0), mio::Interest::READABLE)?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(100) {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        seen.poll_wakeups += events.iter().count();
    }
    drop(client);
    Ok(seen)
}

/// What `main` prints about `seen`.
fn report(seen: &Seen) -> Vec<String> {
    let read = match seen.read_would_block {
        true => "WouldBlock, at once",
        false => "data?",
    };
    vec![
        format!("read with nothing to read: {read}"),
        format!(
            "writes to a client that reads nothing: {} bytes taken, then WouldBlock ({} partial write)",
            seen.accepted, seen.partial_writes
        ),
        format!(
            "retrying without readiness: {} read calls in 100 ms, all for nothing",
            seen.busy_reads
        ),
        format!("waiting for readiness: {} wake-ups in 100 ms", seen.poll_wakeups),
    ]
}

fn main() -> io::Result<()> {
    for line in report(&tour()?) {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
#[path = "quoted.rs"]
mod quoted;

#[cfg(test)]
mod tests {
    use super::*;

    /// The page quotes what `main` prints, numbers aside.
    #[test]
    fn the_page_shows_what_main_prints() {
        let page = include_str!("02-nonblocking.md");
        let printed = report(&tour().unwrap());
        super::quoted::assert_quoted(page, &printed, super::quoted::numbers_masked, |_| true);
    }

    #[test]
    fn a_read_with_nothing_to_read_would_block() {
        assert!(tour().unwrap().read_would_block);
    }

    #[test]
    fn writes_stop_when_the_buffers_are_full() {
        let seen = tour().unwrap();
        // Loopback buffers hold at least one 64 KiB chunk, never gigabytes.
        assert!(seen.accepted >= 65536, "{seen:?}");
        assert!(seen.accepted < 1 << 30, "{seen:?}");
    }

    #[test]
    fn retrying_spins_and_readiness_sleeps() {
        let seen = tour().unwrap();
        assert!(seen.busy_reads > 1000, "{seen:?}");
        assert_eq!(seen.poll_wakeups, 0, "{seen:?}");
    }
}

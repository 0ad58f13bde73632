//! The one place where connection bytes meet sockets.
//!
//! Every read and write of a client or upstream socket goes through
//! [`read_into`] or [`write_out`], which normalise the results into an
//! [`IoOutcome`] and keep the edge-triggered bookkeeping in [`Readiness`]:
//!
//! * mio reports readiness once per edge, so "still readable" must be
//!   remembered until the socket says otherwise;
//! * a read that returns fewer bytes than offered means the socket is
//!   drained (TCP hands over everything queued), so `readable` is cleared
//!   without paying for a read that would only say `WouldBlock` — unless
//!   the peer's FIN was already reported: that edge will not come again, so
//!   the socket is read on until it says EOF;
//! * a write that takes fewer bytes than offered means the send buffer is
//!   full, so `writable` is cleared the same way;
//! * `Interrupted` is retried in a loop, never surfaced.
//!
//! In the course (docs/learn): chapter 2 (WouldBlock, short reads and writes)
//! and chapter 3 (edge-triggered readiness).

use std::io::{self, IoSlice, IoSliceMut};

use mio::net::TcpStream;

use super::relay::BodyOut;
use super::transport::Transport;
use crate::buffer::RingBuffer;

/// What the socket told us it can do, as last reported and not yet used up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer's end of stream was reported; reads continue until EOF.
    pub read_closed: bool,
}

impl Readiness {
    /// Merges a poll event: readiness only ever gets *added* by events and
    /// taken away by the socket's own answers.
    pub fn add(&mut self, event: &mio::event::Event) {
        // Errors and hang-ups surface through the next read or write.
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        self.read_closed |= event.is_read_closed() || event.is_error();
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
    }
}

/// The result of one read or write, normalised.
#[derive(Debug)]
pub enum IoOutcome {
    /// Bytes moved.
    Progress(usize),
    /// Nothing to do until the next event.
    WouldBlock,
    /// The peer closed its sending side (reads only).
    Eof,
    /// The connection is broken.
    Failed(io::Error),
}

/// Reads from `stream` into the free space of `ring` with one vectored read.
pub fn read_into(
    stream: &mut impl Transport,
    ready: &mut Readiness,
    ring: &mut RingBuffer,
) -> IoOutcome {
    let offered = ring.free();
    if offered == 0 {
        return IoOutcome::WouldBlock;
    }
    loop {
        match ring.fill_with(|regions| stream.read_regions(regions)) {
            Ok(0) => {
                ready.readable = false;
                return IoOutcome::Eof;
            }
            Ok(n) => {
                if n < offered && !ready.read_closed {
                    ready.readable = false;
                }
                return IoOutcome::Progress(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready.readable = false;
                return IoOutcome::WouldBlock;
            }
            Err(e) => {
                ready.readable = false;
                return IoOutcome::Failed(e);
            }
        }
    }
}

/// Reads and discards what `stream` holds, for connections being closed.
pub fn discard(stream: &mut impl Transport, ready: &mut Readiness) -> IoOutcome {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read_regions(&mut [IoSliceMut::new(&mut sink)]) {
            Ok(0) => return IoOutcome::Eof,
            Ok(n) if n < sink.len() && !ready.read_closed => {
                ready.readable = false;
                return IoOutcome::Progress(n);
            }
            Ok(n) => return IoOutcome::Progress(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready.readable = false;
                return IoOutcome::WouldBlock;
            }
            Err(e) => return IoOutcome::Failed(e),
        }
    }
}

/// Writes `head` then `body` (framing, data, framing) in one vectored
/// write. Returns how many bytes of each were written; the caller advances
/// its head cursor and tells the body's owner what went out.
///
/// `more` says more of this message is known to be on its way (a response
/// whose body has not all arrived): the write carries `MSG_MORE`, so the
/// kernel holds a partial segment for the next write instead of sending a
/// small packet now (a head alone, then its body in a second packet). The
/// connection must then [`flush`] before the loop sleeps, so a stalled
/// upstream never leaves bytes held for the kernel's 200 ms.
pub fn write_out(
    stream: &mut impl Transport,
    ready: &mut Readiness,
    head: &[u8],
    body: &BodyOut<'_>,
    more: bool,
) -> (IoOutcome, usize, usize) {
    let offered = head.len() + body.len();
    if offered == 0 {
        return (IoOutcome::Progress(0), 0, 0);
    }
    let slices = [
        IoSlice::new(head),
        IoSlice::new(body.before),
        IoSlice::new(body.data.0),
        IoSlice::new(body.data.1),
        IoSlice::new(body.after),
    ];
    // Leave out empty slices: some kernels count them against IOV_MAX
    // and they make traces harder to read.
    let mut iovecs = [IoSlice::new(&[]); 5];
    let mut count = 0;
    for slice in slices.iter().filter(|s| !s.is_empty()) {
        iovecs[count] = *slice;
        count += 1;
    }
    loop {
        match stream.write_slices(&iovecs[..count], more) {
            Ok(n) => {
                let n = n.min(offered);
                // A TLS stream may take the bytes and hold records the
                // socket did not take: not writable either.
                if n < offered || stream.has_pending_output() {
                    ready.writable = false;
                }
                let from_head = n.min(head.len());
                return (IoOutcome::Progress(n), from_head, n - from_head);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready.writable = false;
                return (IoOutcome::WouldBlock, 0, 0);
            }
            Err(e) => {
                ready.writable = false;
                return (IoOutcome::Failed(e), 0, 0);
            }
        }
    }
}

/// Sends what `MSG_MORE` writes left held in the kernel: setting
/// `TCP_NODELAY` (already on) pushes pending segments out at once.
pub fn flush(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)
}

//! The sockets under the phases: plain TCP, or TLS (`crate::tls`), for
//! the client and for the upstream alike.
//!
//! The phases move plaintext through [`Transport`]; a plain socket does one
//! syscall per call, a TLS stream turns the call into record-layer work. Both
//! keep the same contract, which `io.rs`'s edge-triggered bookkeeping relies
//! on: a read that returns fewer bytes than offered means the socket had no
//! more, and bytes a write accepted but could not put on the wire yet are
//! *pending output*, which the connection must let drain (while the socket
//! is not writable) before it counts a response as sent.
//!
//! In the course (docs/learn): chapter 7: the connection state machine
//! (chapter 4 at full size).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;

use mio::net::{TcpStream, UnixStream};

#[cfg(feature = "tls")]
use crate::tls::TlsStream;

/// "More data follows" (Linux's `MSG_MORE`; elsewhere no such hint, so 0).
#[cfg(any(target_os = "linux", target_os = "android"))]
const MSG_MORE: libc::c_int = libc::MSG_MORE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MSG_MORE: libc::c_int = 0;

/// A byte stream the phases read and write.
pub trait Transport {
    /// Fills `regions` from the peer; `Ok(0)` is the end of the stream.
    fn read_regions(&mut self, regions: &mut [IoSliceMut<'_>]) -> io::Result<usize>;
    /// Writes from `slices`; `more` says more of the message follows soon.
    fn write_slices(&mut self, slices: &[IoSlice<'_>], more: bool) -> io::Result<usize>;
    /// Bytes accepted by a write that are not on the wire yet.
    fn has_pending_output(&self) -> bool {
        false
    }
}

impl Transport for TcpStream {
    fn read_regions(&mut self, regions: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_vectored(regions)
    }

    fn write_slices(&mut self, slices: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
        if more {
            socket2::SockRef::from(&*self).send_vectored_with_flags(slices, MSG_MORE)
        } else {
            self.write_vectored(slices)
        }
    }
}

/// A client's or an upstream's stream.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    /// To an upstream on a Unix domain socket (`server unix:/path`).
    Unix(UnixStream),
    /// Boxed: a plain client pays one pointer for TLS existing, not the
    /// size of a TLS session.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket under the stream (`None` for a Unix socket: only an
    /// upstream's can be one).
    pub fn socket(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(socket) => Some(socket),
            Stream::Unix(_) => None,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Some(tls.socket()),
        }
    }

    /// After a non-blocking connect's writable event: `Ok` once connected,
    /// the connect's error if it failed, `NotConnected` (or `WouldBlock`)
    /// if the event was spurious. Connected TCP sockets get `TCP_NODELAY`.
    pub fn connect_result(&self) -> io::Result<()> {
        let (error, connected) = match self {
            Stream::Unix(socket) => (socket.take_error(), socket.peer_addr().map(|_| ())),
            _ => match self.socket() {
                Some(socket) => (socket.take_error(), socket.peer_addr().map(|_| ())),
                None => return Ok(()),
            },
        };
        match error {
            Ok(None) => connected,
            Ok(Some(e)) | Err(e) => Err(e),
        }
    }

    /// `TCP_NODELAY`, where there is TCP.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self.socket() {
            Some(socket) => socket.set_nodelay(true),
            None => Ok(()),
        }
    }

    /// To an upstream: whether a TLS handshake is still to be driven after
    /// the TCP connect (`Ok(true)`: the stream is ready for the request).
    /// See `TlsStream::advance_client`.
    pub fn advance_upstream_handshake(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => Ok(true),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.advance_client(),
        }
    }

    /// Over TLS: whether the handshake resumed a session (`None` without
    /// TLS).
    pub fn tls_resumed(&self) -> Option<bool> {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => None,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => Some(tls.resumed()),
        }
    }

    /// To an upstream over TLS: the TCP connect is already confirmed and
    /// the handshake under way.
    pub fn handshake_started(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.is_connected(),
        }
    }

    /// To an upstream: the `UpstreamTls::id` of the TLS settings the stream
    /// was made with; 0 for plain TCP.
    pub fn upstream_tls_id(&self) -> u64 {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => 0,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.upstream_tls_id(),
        }
    }

    /// A pooled upstream stream had an event: whether it can still carry a
    /// request. A plain socket must have nothing to read; a TLS one may have
    /// received a session ticket, but no data and no close_notify.
    pub fn still_idle(&mut self) -> bool {
        match self {
            Stream::Plain(socket) => {
                let mut probe = [0u8; 1];
                matches!(socket.read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Unix(socket) => {
                let mut probe = [0u8; 1];
                matches!(socket.read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.still_idle(),
        }
    }

    /// The client speaks TLS (not plain HTTP on a TLS address).
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => !tls.is_plain_http(),
        }
    }

    /// The session's facts for the `$ssl_*` variables; `None` without TLS.
    pub fn tls_facts(&self) -> Option<crate::variables::TlsFacts<'_>> {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => None,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.facts(),
        }
    }

    /// The PROXY protocol header a TLS stream read before its handshake.
    pub fn proxy_header(&self) -> Option<&crate::proxy_protocol::ProxyHeader> {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => None,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.proxy_header(),
        }
    }

    /// A plain HTTP request came to a TLS address.
    pub fn is_plain_http_on_tls(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.is_plain_http(),
        }
    }

    /// TLS: the handshake is not done or no request byte is decrypted yet,
    /// so reading needs no buffer set (see `Connection::step_idle`).
    pub fn needs_handshake(&mut self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => !tls.is_plain_http() && !tls.has_plaintext(),
        }
    }

    /// TLS: reads and processes ciphertext until plaintext is decrypted
    /// (`Ok(true)`), the socket has no more (`Ok(false)`) or the stream
    /// ends or fails (`Err`; end of stream is `UnexpectedEof`).
    pub fn advance_handshake(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => Ok(true),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.advance(),
        }
    }

    /// Writes what earlier writes left pending; `WouldBlock` if the socket
    /// is still full.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => Ok(()),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.flush_tls(),
        }
    }

    /// TLS: sends close_notify (best effort); nothing for plain TCP.
    pub fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Stream::Tls(tls) = self {
            tls.close_notify();
        }
    }

    /// Closes the writing side (after TLS's close_notify).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.shutdown(Shutdown::Write),
            Stream::Unix(socket) => socket.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => {
                tls.close_notify();
                tls.socket().shutdown(Shutdown::Write)
            }
        }
    }
}

impl Transport for Stream {
    fn read_regions(&mut self, regions: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read_vectored(regions),
            Stream::Unix(socket) => socket.read_vectored(regions),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.read_regions(regions),
        }
    }

    fn write_slices(&mut self, slices: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write_slices(slices, more),
            Stream::Unix(socket) => socket.write_vectored(slices),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.write_slices(slices),
        }
    }

    fn has_pending_output(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => false,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.has_pending_output(),
        }
    }
}

//! TLS termination with rustls, under the HTTP phases.
//!
//! A client that connects to a `listen … ssl` address gets a [`TlsStream`]
//! instead of a bare socket. The connection's phases do not change: they read
//! plaintext into their ring buffers and write plaintext out of them through
//! the same calls as for a plain socket (`connection::io`), and the stream
//! turns each into record-layer work, driven by the same readiness:
//!
//! * **Hello.** rustls's `Acceptor` collects the ClientHello; its server name
//!   (SNI) picks the `server` block and so the certificate, as nginx picks
//!   them: by `server_name` among the servers of that address, else the
//!   address's default server ([`config::choose_server`]).
//! * **Handshake and records.** A read pulls ciphertext from the socket into
//!   rustls, decrypts, and hands out plaintext; the handshake's own replies
//!   are written as they appear. A write encrypts plaintext into rustls's
//!   send buffer and writes records to the socket. Ciphertext the socket did
//!   not take yet is *pending output*: the connection treats it as bytes it
//!   still has to write (the socket is not writable until it drains).
//! * **Plain HTTP on the TLS port.** A first byte that is not a TLS record
//!   (0x16) means a plain HTTP request: the stream passes bytes through
//!   unencrypted, and the connection answers nginx's
//!   `400 The plain HTTP request was sent to HTTPS port`.
//!
//! The handshake runs while the connection is `Idle` and holds no buffer
//! set: a client that stalls mid-handshake costs its rustls state, not 32 KiB
//! of ring buffers, and is closed by `client_header_timeout` like any client
//! that never sends a request.
//!
//! In the course (docs/learn): chapter 7, "The order": TLS under the same
//! reads and writes.

pub mod certificate;
pub mod config;
mod stapling;
pub mod upstream;

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::rc::Rc;

use log::debug;
use mio::net::TcpStream;
use rustls::server::Acceptor;
use rustls::{ClientConnection, Connection, ServerConnection};

use crate::config::Config;

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Where a client's TLS session is.
enum Session {
    /// Collecting the ClientHello. Holds the configuration and listener the
    /// server is chosen from once the hello names one.
    Hello {
        acceptor: Box<Acceptor>,
        config: Rc<Config>,
        listener: usize,
        /// Bytes were read: the first one was a handshake record's.
        started: bool,
    },
    /// A server session after the hello, or a client session (to an
    /// upstream) from the start; handshaking until rustls says otherwise.
    Established(Box<Connection>),
    /// The client spoke plain HTTP: bytes pass through unencrypted so that
    /// the 400 can be read.
    PlainHttp,
}

/// A socket with TLS on it: a client's (ferry is the TLS server) or an
/// upstream's (ferry is the TLS client). The record layer is the same.
pub struct TlsStream {
    socket: TcpStream,
    session: Session,
    /// The socket said end of stream.
    socket_eof: bool,
    /// To an upstream: the TCP connect is known to have succeeded, so the
    /// handshake may be driven (see `advance_client`).
    connected: bool,
    /// To an upstream: the `UpstreamTls::id` of the settings it was made
    /// with (0 for a client's stream).
    upstream_tls_id: u64,
    /// `listen … ssl proxy_protocol`: the PROXY header comes before the
    /// ClientHello; `Expected` until it has been read.
    proxy: ProxyPreface,
}

/// The PROXY protocol header in front of a TLS client's bytes.
#[derive(Debug)]
enum ProxyPreface {
    /// The listener reads none.
    None,
    Expected,
    Read(Box<crate::proxy_protocol::ProxyHeader>),
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// What a read found when it could not hand out plaintext.
#[derive(Debug)]
pub struct HandshakeFailed(pub String);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandshakeFailed {}

impl TlsStream {
    pub fn new(socket: TcpStream, config: Rc<Config>, listener: usize) -> TlsStream {
        let proxy = match config.listen.get(listener) {
            Some(l) if l.proxy_protocol => ProxyPreface::Expected,
            _ => ProxyPreface::None,
        };
        TlsStream {
            proxy,
            socket,
            session: Session::Hello {
                acceptor: Box::default(),
                config,
                listener,
                started: false,
            },
            socket_eof: false,
            connected: true,
            upstream_tls_id: 0,
        }
    }

    /// A connection to an upstream server whose TCP connect is in flight;
    /// `session` has its ClientHello ready to send; `upstream_tls_id` names
    /// the settings it was made with.
    pub fn client(socket: TcpStream, session: ClientConnection, upstream_tls_id: u64) -> TlsStream {
        TlsStream {
            socket,
            session: Session::Established(Box::new(Connection::Client(session))),
            socket_eof: false,
            connected: false,
            upstream_tls_id,
            proxy: ProxyPreface::None,
        }
    }

    /// The client's PROXY protocol header (`listen … ssl proxy_protocol`).
    pub fn proxy_header(&self) -> Option<&crate::proxy_protocol::ProxyHeader> {
        match &self.proxy {
            ProxyPreface::Read(header) => Some(header),
            _ => None,
        }
    }

    /// Reads the PROXY header off the socket before any TLS byte: looked
    /// at with `peek` until it is whole, then taken, so rustls sees the
    /// ClientHello first. A broken header fails the connection.
    fn read_proxy_header(&mut self) -> io::Result<()> {
        // The longest header ferry reads, v2 with its TLVs.
        let mut peeked = [0u8; 16 + 4096];
        let n = self.socket.peek(&mut peeked)?;
        if n == 0 {
            self.socket_eof = true;
            return Ok(());
        }
        match crate::proxy_protocol::parse(peeked.get(..n).unwrap_or_default()) {
            Ok(Some((header, len))) => {
                let mut taken = 0;
                while taken < len {
                    match io::Read::read(
                        &mut self.socket,
                        peeked.get_mut(taken..len).unwrap_or_default(),
                    )? {
                        0 => return Err(failed("the PROXY header was cut short".to_string())),
                        read => taken += read,
                    }
                }
                debug!("PROXY protocol before TLS: client {:?}", header.source());
                self.proxy = ProxyPreface::Read(Box::new(header));
                Ok(())
            }
            Ok(None) if n < peeked.len() => Err(io::ErrorKind::WouldBlock.into()),
            Ok(None) => Err(failed(
                "broken header: PROXY protocol header too long".to_string(),
            )),
            Err(e) => Err(failed(format!("broken header: {e}"))),
        }
    }

    /// The handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        match &self.session {
            Session::Established(conn) => {
                conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
            _ => false,
        }
    }

    pub fn upstream_tls_id(&self) -> u64 {
        self.upstream_tls_id
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// The client sent plain HTTP to this TLS port.
    pub fn is_plain_http(&self) -> bool {
        matches!(self.session, Session::PlainHttp)
    }

    /// The negotiated server session, once the handshake is done.
    fn server_session(&self) -> Option<&ServerConnection> {
        match &self.session {
            Session::Established(conn) if !conn.is_handshaking() => match &**conn {
                Connection::Server(server) => Some(server),
                Connection::Client(_) => None,
            },
            _ => None,
        }
    }

    /// What the `$ssl_*` variables say of a client's session, once the
    /// handshake is done.
    pub fn facts(&self) -> Option<crate::variables::TlsFacts<'_>> {
        let conn = self.server_session()?;
        let protocol = match conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            _ => "TLSv1.2",
        };
        Some(crate::variables::TlsFacts {
            protocol,
            cipher: conn
                .negotiated_cipher_suite()
                .map_or("", |suite| config::openssl_suite_name(suite.suite())),
            server_name: conn.server_name().unwrap_or(""),
            reused: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        })
    }

    /// Ciphertext (or handshake replies) the socket has not taken yet.
    pub fn has_pending_output(&self) -> bool {
        match &self.session {
            Session::Established(conn) => conn.wants_write(),
            _ => false,
        }
    }

    /// Whether a read would return something now: decrypted bytes, or the
    /// client's close_notify (an end of stream to read).
    pub fn has_plaintext(&mut self) -> bool {
        match &mut self.session {
            Session::Established(conn) => conn
                .process_new_packets()
                .is_ok_and(|state| state.plaintext_bytes_to_read() > 0 || state.peer_has_closed()),
            _ => false,
        }
    }

    /// Drives the hello and the handshake with no buffer for plaintext:
    /// `Ok(true)` once a read would return something (or the client spoke
    /// plain HTTP), `Ok(false)` when the socket has nothing more for now.
    /// The end of the stream is an `UnexpectedEof` error.
    pub fn advance(&mut self) -> io::Result<bool> {
        loop {
            if self.is_plain_http() || self.has_plaintext() {
                return Ok(true);
            }
            if self.socket_eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            match self.receive() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Drives a handshake with an upstream: `Ok(true)` once it is done,
    /// `Ok(false)` while it waits for the socket. The first call after the
    /// TCP connect sends the ClientHello. A failure says why (a certificate
    /// that does not verify, an alert from the server) in its message.
    pub fn advance_client(&mut self) -> io::Result<bool> {
        self.connected = true;
        loop {
            match self.flush_tls() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
            let Session::Established(conn) = &self.session else {
                return Ok(true);
            };
            if !conn.is_handshaking() {
                return Ok(true);
            }
            if self.socket_eof {
                return Err(failed("the server closed the connection".to_string()));
            }
            match self.receive() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// To an upstream: the TCP connect was confirmed (the handshake began).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// An idle pooled stream had an event: processes what came (a TLS 1.3
    /// session ticket is fine) and says whether the stream is still good
    /// for another request: no plaintext, no close_notify, no error.
    pub fn still_idle(&mut self) -> bool {
        loop {
            match self.receive() {
                Ok(()) if self.socket_eof => return false,
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        match &mut self.session {
            Session::Established(conn) => conn.process_new_packets().is_ok_and(|state| {
                state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed()
            }),
            _ => false,
        }
    }

    /// Reads plaintext into `regions`, filling them as far as the socket
    /// allows: a short read means the socket had nothing more (as for a
    /// plain socket), so the edge-triggered bookkeeping stays right.
    /// `Ok(0)` is the end of the stream (close_notify, or the socket's end).
    pub fn read_regions(&mut self, regions: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for region in regions.iter_mut() {
            let mut at = 0;
            while at < region.len() {
                let Some(rest) = region.get_mut(at..) else {
                    break;
                };
                match self.read_plaintext(rest) {
                    Ok(0) => return Ok(total),
                    Ok(n) => {
                        at += n;
                        total += n;
                    }
                    Err(e) if total > 0 && e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(total)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }

    /// Plaintext already decrypted, else ciphertext read from the socket
    /// until some plaintext comes of it.
    fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.session {
                Session::PlainHttp => return self.socket.read(buf),
                Session::Established(conn) => match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The socket ended without close_notify: for HTTP, an
                    // end of stream like any other (a cut body is caught by
                    // its framing).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                },
                Session::Hello { .. } => {}
            }
            if self.socket_eof {
                return Ok(0);
            }
            self.receive()?;
        }
    }

    /// Reads ciphertext from the socket and processes it: one step of the
    /// hello, the handshake or the record layer. `WouldBlock` when the
    /// socket has nothing.
    fn receive(&mut self) -> io::Result<()> {
        if matches!(self.proxy, ProxyPreface::Expected) {
            self.read_proxy_header()?;
            if matches!(self.proxy, ProxyPreface::Expected) {
                return Ok(());
            }
        }
        match &mut self.session {
            Session::PlainHttp => Ok(()),
            Session::Hello {
                acceptor,
                config,
                listener,
                started,
            } => {
                if !*started {
                    let mut first = [0u8; 1];
                    let peeked = self.socket.peek(&mut first)?;
                    if peeked == 0 {
                        self.socket_eof = true;
                        return Ok(());
                    }
                    if first[0] != HANDSHAKE_RECORD {
                        debug!("plain HTTP on a TLS port");
                        self.session = Session::PlainHttp;
                        return Ok(());
                    }
                    *started = true;
                }
                if acceptor.read_tls(&mut self.socket)? == 0 {
                    self.socket_eof = true;
                    return Ok(());
                }
                let accepted = match acceptor.accept() {
                    Ok(None) => return Ok(()),
                    Ok(Some(accepted)) => accepted,
                    Err((error, mut alert)) => {
                        let _ = alert.write_all(&mut self.socket);
                        return Err(failed(format!("bad ClientHello: {error}")));
                    }
                };
                let server_name = accepted.client_hello().server_name().map(str::to_owned);
                let Some(server_config) =
                    config::choose_server(config, *listener, server_name.as_deref())
                else {
                    return Err(failed(
                        "no certificate for this name, or ssl_reject_handshake".to_string(),
                    ));
                };
                match accepted.into_connection(server_config) {
                    Ok(conn) => {
                        self.session = Session::Established(Box::new(Connection::Server(conn)));
                        self.flush_tls().or_else(would_block_is_ok)
                    }
                    Err((error, mut alert)) => {
                        let _ = alert.write_all(&mut self.socket);
                        Err(failed(format!("handshake refused: {error}")))
                    }
                }
            }
            Session::Established(conn) => {
                if conn.read_tls(&mut self.socket)? == 0 {
                    self.socket_eof = true;
                }
                let processed = conn.process_new_packets();
                // Handshake replies, or the alert that says why not.
                self.flush_tls().or_else(would_block_is_ok)?;
                processed
                    .map(|_| ())
                    .map_err(|error| failed(format!("TLS error: {error}")))
            }
        }
    }

    /// Encrypts `slices` and writes the records, until all is taken or the
    /// socket is full; the count is of plaintext taken. rustls holds a
    /// bounded amount of records, so this alternates encrypting and
    /// writing: a short count always means the socket said `WouldBlock`
    /// (and will say when it has room), never that rustls's buffer was
    /// full. Records the socket does not take stay pending (see
    /// [`TlsStream::has_pending_output`]).
    pub fn write_slices(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        if let Session::PlainHttp = self.session {
            return self.socket.write_vectored(slices);
        }
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut taken = 0;
        while taken < total {
            // Older records first: nothing new is taken while they wait.
            match self.flush_tls() {
                Ok(()) => {}
                Err(e) if taken > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(taken),
                Err(e) => return Err(e),
            }
            let Session::Established(conn) = &mut self.session else {
                return Err(io::ErrorKind::WouldBlock.into());
            };
            // All the slices at once: rustls seals them into shared records
            // (a head and a small body leave as one record, one segment).
            let mut rest = [IoSlice::new(&[]); 8];
            let mut count = 0;
            let mut skip = taken;
            for slice in slices {
                if skip >= slice.len() {
                    skip -= slice.len();
                    continue;
                }
                if let Some(entry) = rest.get_mut(count) {
                    *entry = IoSlice::new(slice.get(skip..).unwrap_or_default());
                    count += 1;
                }
                skip = 0;
            }
            let n = conn
                .writer()
                .write_vectored(rest.get(..count).unwrap_or_default())?;
            if n == 0 {
                // rustls takes bytes whenever its records are flushed.
                return Err(io::Error::other("TLS stream took no bytes"));
            }
            taken += n;
        }
        self.flush_tls().or_else(would_block_is_ok)?;
        Ok(taken)
    }

    /// Writes pending records until none are left (`Ok`) or the socket is
    /// full (`WouldBlock`).
    pub fn flush_tls(&mut self) -> io::Result<()> {
        let Session::Established(conn) = &mut self.session else {
            return Ok(());
        };
        while conn.wants_write() {
            match conn.write_tls(&mut self.socket) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Says goodbye (close_notify) before the connection closes its
    /// writing side; best effort.
    pub fn close_notify(&mut self) {
        if let Session::Established(conn) = &mut self.session {
            conn.send_close_notify();
            let _ = self.flush_tls();
        }
    }
}

fn failed(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, HandshakeFailed(why))
}

fn would_block_is_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(())
    } else {
        Err(e)
    }
}

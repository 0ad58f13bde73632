//! One client connection: its socket, its phase, and the transitions
//! between phases.
//!
//! Heads up: read `phase.rs` first for the phases and what each owns, and
//! `io.rs` for the readiness rules.
//!
//! The event loop records readiness ([`Connection::on_client_event`],
//! [`Connection::on_upstream_event`]) and calls [`Connection::drive`], which
//! runs `Connection::step` until no step makes progress. `step` takes the
//! current phase by value and returns the next one; each `step_*` function
//! does the I/O its phase allows, asks the pure `http` functions what the
//! bytes mean, and decides.
//!
//! The phases live where they are named: `Idle`, `WritingResponse` and
//! `Lingering` here; `Forwarding` in `forwarding.rs`; `ReadingRequest` in `reading.rs`;
//! `ConnectingUpstream`, retries and the keep-alive pool hand-back in
//! `upstream_side.rs` (everything that happens when the upstream fails);
//! `Tunnel` in `tunnel.rs`; responses ferry makes itself, failures and the
//! access log line in `answer.rs`.
//!
//! In the course (docs/learn): chapter 4 (one state machine per client, one
//! transition function) and chapter 7, step 3.

mod answer;
mod authenticating;
mod deadlines;
mod error_pages;
mod files;
mod finishing;
mod forwarding;
pub mod io;
mod limiting;
pub mod phase;
mod reading;
pub mod relay;
mod route_parts;
mod starting;
pub mod stream;
pub mod transport;
mod tunnel;
mod upstream_side;

use std::collections::VecDeque;
use std::mem;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use log::{debug, trace};
use mio::net::TcpStream;
use mio::Registry;

use self::io::Readiness;
use self::phase::{Busy, Exchange, ExchangeState, Phase};
use self::transport::{Stream, Transport};
use crate::buffer::{BufferPool, RingBuffer};
use crate::config::{Config, Settings};
use crate::http::date::HttpDate;
use crate::log::AccessLog;
use crate::stats::WorkerStats;
use crate::status::ConnectionLine;
use crate::timer::Timers;
use crate::upstream::Upstreams;

/// Steps one `drive` call may take before yielding to other connections;
/// a connection with work left is driven again on the next loop turn.
const STEPS_PER_DRIVE: usize = 64;

/// What the connection needs from the event loop while it runs.
pub struct Context<'a> {
    pub slot: usize,
    /// Read once per loop turn.
    pub now: Instant,
    /// `now` in whole milliseconds since the loop started, also once per
    /// turn: an exchange's clocks count milliseconds from its start, and
    /// this makes each reading one subtraction.
    pub now_ms: u64,
    pub wall_clock: SystemTime,
    /// `wall_clock` as an HTTP date, for the `Date` field.
    pub date: &'a HttpDate,
    pub registry: &'a Registry,
    /// The configuration this connection's exchange runs on: the one in
    /// force when its request began, even if a reload came since.
    pub config: Rc<Config>,
    /// The newest configuration, which the next request will use.
    pub latest: &'a Rc<Config>,
    pub buffers: &'a mut BufferPool,
    /// Idle connections waiting for the pool to lend a buffer set.
    pub buffer_waiters: &'a mut VecDeque<usize>,
    pub upstreams: &'a mut Upstreams,
    pub access_log: &'a mut AccessLog,
    /// The loop's deadlines, counted by the status path.
    pub timers: &'a Timers,
    /// This worker's counters for the status pages.
    pub stats: &'a WorkerStats,
    /// Every worker's (this one's included), for the status pages' totals.
    pub workers: &'a [Arc<WorkerStats>],
    /// The `?connections` page, when this connection asked for it.
    pub connection_list: Option<&'a [u8]>,
    /// State boxes of finished exchanges, for the next ones (never grown
    /// past its capacity: see `retire`).
    #[allow(clippy::vec_box)]
    pub spare_states: &'a mut Vec<Box<ExchangeState>>,
    /// The worker's password cache and thread (`auth_basic`).
    pub passwords: &'a mut crate::auth::checker::PasswordChecks,
    /// Compressors of finished responses (`gzip`).
    pub gzip_streams: &'a mut crate::http::gzip::GzipPool,
}

impl Context<'_> {
    /// A ring that keeps filling is moving a bulk transfer: give it a large
    /// storage (see `BufferPool::grow`), so the rest moves in fewer syscalls.
    pub fn grow_if_bulk(&mut self, ring: &mut RingBuffer, side: &str) {
        if ring.keeps_filling() && self.buffers.grow(ring) {
            trace!(
                "#{} {side} keeps filling its buffer: now {} bytes",
                self.slot,
                ring.capacity()
            );
        }
    }

    /// An exchange is over: its buffers go back to the pool and its state
    /// box to the spares, so the next exchange allocates neither.
    pub fn retire(&mut self, exchange: Exchange) {
        let Exchange { buffers, state } = exchange;
        self.buffers.give_back(buffers);
        self.spare_state(state);
    }

    fn spare_state(&mut self, mut state: Box<ExchangeState>) {
        if let Some(stream) = state.gzip.take() {
            self.stats.gzip_responses.add(1);
            self.stats.gzip_bytes_in.add(stream.taken);
            self.stats.gzip_bytes_out.add(stream.produced);
            self.gzip_streams.give_back(stream);
        }
        if self.spare_states.len() < self.spare_states.capacity() {
            self.spare_states.push(state);
        }
    }
}

/// Moves a connection in or out of stub_status's Reading or Writing.
fn count_busy(stats: &WorkerStats, busy: Busy, by: i64) {
    match busy {
        Busy::Reading => stats.reading.change(by),
        Busy::Writing => stats.writing.change(by),
        Busy::Waiting => {}
    }
}

/// What `drive` left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Driven {
    /// Waiting for readiness or a deadline.
    Waiting,
    /// Yielded with work left: drive again soon.
    MoreWork,
    /// Closed: remove from the slab.
    Closed,
}

pub struct Connection {
    /// Unique over the process lifetime, unlike the slab slot.
    pub id: u64,
    client: Stream,
    client_ready: Readiness,
    peer: SocketAddr,
    phase: Phase,
    /// The client shut down its sending side.
    client_eof: bool,
    /// Requests started on this connection.
    requests: u32,
    /// In the loop's queue of connections waiting for a buffer set.
    waiting_for_buffers: bool,
    /// Where stub_status counts it (updated by `recount`).
    counted_as: Busy,
    /// ferry is shutting down gracefully: finish the exchange, then close.
    draining: bool,
    /// Answering `?connections`: waiting for the event loop's list.
    wants_connection_list: bool,
    /// Its last write to the client carried `MSG_MORE`: the kernel may hold
    /// a partial segment, to be flushed before the loop sleeps.
    pub corked: bool,
    /// The configuration of its current (or last) request; a reload takes
    /// effect at the connection's next request (see `adopt_latest_config`).
    config: Rc<Config>,
    /// The listening socket it came in on (a position in `config.listen`),
    /// for routing by address (u32, like the other indexes: a connection
    /// stays small).
    listener: u32,
    /// The server of its last request (at first, the listener's default),
    /// whose settings apply between requests.
    server: u32,
    /// When it was accepted, in seconds since the worker started (for the
    /// `?connections` status page, where whole seconds are enough).
    accepted_s: u32,
    /// Bytes read from and written to the client by its finished exchanges.
    bytes_in: u64,
    bytes_out: u64,
    /// The timer entry the event loop holds for this connection.
    pub scheduled: Option<Instant>,
    /// Its listener requires a PROXY protocol header, not read yet.
    awaiting_proxy_header: bool,
    /// The request being read again waited out its `limit_req` delay.
    limit_req_passed: bool,
    /// What its PROXY protocol header said (`listen … proxy_protocol`).
    proxy_header: Option<Box<crate::proxy_protocol::ProxyHeader>>,
}

impl Connection {
    pub fn new(
        id: u64,
        client: TcpStream,
        peer: SocketAddr,
        now: Instant,
        accepted_s: u32,
        listener: usize,
        config: &Rc<Config>,
    ) -> Connection {
        let listen = config.listen.get(listener);
        // A stream listener's connection is relayed from its first moment.
        let phase = match listen.and_then(|l| l.stream) {
            Some(server) => Phase::Stream(stream::StreamSession::new(server, now)),
            None => Phase::Idle { since: now },
        };
        let server = listen.map_or(0, |l| l.default_server);
        let ssl = listen.is_some_and(|l| l.ssl);
        #[cfg(feature = "tls")]
        let client = if ssl {
            Stream::Tls(Box::new(crate::tls::TlsStream::new(
                client,
                Rc::clone(config),
                listener,
            )))
        } else {
            Stream::Plain(client)
        };
        #[cfg(not(feature = "tls"))]
        let client = Stream::Plain(client);
        Connection {
            id,
            client,
            // A fresh socket has send space; readability comes by event.
            client_ready: Readiness {
                readable: false,
                writable: true,
                read_closed: false,
            },
            peer,
            phase,
            client_eof: false,
            requests: 0,
            waiting_for_buffers: false,
            counted_as: Busy::Waiting,
            draining: false,
            wants_connection_list: false,
            corked: false,
            config: Rc::clone(config),
            // Indexes into the configuration, which cannot hold 2^32 of them.
            listener: u32::try_from(listener).unwrap_or(u32::MAX),
            server: u32::try_from(server).unwrap_or(u32::MAX),
            accepted_s,
            bytes_in: 0,
            bytes_out: 0,
            scheduled: None,
            // A TLS listener's header comes before the handshake: the TLS
            // stream reads it (`tls::TlsStream`).
            awaiting_proxy_header: listen.is_some_and(|l| l.proxy_protocol) && !ssl,
            proxy_header: None,
            limit_req_passed: false,
        }
    }

    /// Sends what `MSG_MORE` left held for this client (see `io::flush`).
    pub fn flush(&mut self) {
        if std::mem::take(&mut self.corked) {
            if let Some(Err(e)) = self.client.socket().map(io::flush) {
                debug!("client flush: {e}");
            }
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn on_client_event(&mut self, event: &mio::event::Event) {
        self.client_ready.add(event);
    }

    pub fn on_upstream_event(&mut self, event: &mio::event::Event) {
        if let Some(upstream) = self.phase.upstream_mut() {
            upstream.ready.add(event);
        }
    }

    /// Settings in force between requests: the last server's.
    fn server_settings(&self) -> &Settings {
        self.config.server_settings(self.server as usize)
    }

    /// Runs the state machine until it waits, with a cap for fairness.
    pub fn drive(&mut self, ctx: &mut Context<'_>) -> Driven {
        let driven = self.run_steps(ctx);
        self.recount(ctx.stats);
        driven
    }

    fn run_steps(&mut self, ctx: &mut Context<'_>) -> Driven {
        for _ in 0..STEPS_PER_DRIVE {
            let phase = mem::replace(&mut self.phase, Phase::Closed);
            let from = phase.name();
            let (next, progressed) = self.step(phase, ctx);
            self.set_phase(from, next, ctx.slot);
            if let Phase::Closed = self.phase {
                return Driven::Closed;
            }
            if !progressed {
                self.refresh_waits(ctx.now_ms);
                return Driven::Waiting;
            }
        }
        self.refresh_waits(ctx.now_ms);
        Driven::MoreWork
    }

    /// Every phase change goes through here, so `RUST_LOG=ferry=trace`
    /// tells each connection's story.
    fn set_phase(&mut self, from: &'static str, next: Phase, slot: usize) {
        if log::log_enabled!(log::Level::Trace) && from != next.name() {
            trace!("#{slot} {from} -> {}", next.name());
        }
        debug_assert!(
            from == next.name() || Phase::TRANSITIONS.contains(&(from, next.name())),
            "{from} -> {} is not in Phase::TRANSITIONS (nor in the state diagram)",
            next.name()
        );
        self.phase = next;
    }

    /// Releases everything at once (shutdown, or the loop giving up on a
    /// connection). The upstream socket is closed, never pooled.
    pub fn close_now(&mut self, ctx: &mut Context<'_>) {
        let phase = mem::replace(&mut self.phase, Phase::Closed);
        self.release(phase, ctx);
        self.recount(ctx.stats);
    }

    /// Whether the response may leave the connection open for another
    /// request (`keepalive_requests`, `keepalive_timeout 0`, shutdown).
    fn may_keep_alive(&self, settings: &Settings) -> bool {
        !self.draining
            && self.requests < settings.keepalive_requests
            && !settings.keepalive_timeout.is_zero()
    }

    /// Graceful shutdown began: an idle connection closes now (returns
    /// `true`); one with an exchange under way finishes it and then closes,
    /// its response saying `Connection: close` if the head is not out yet.
    pub fn drain(&mut self, ctx: &mut Context<'_>) -> bool {
        self.draining = true;
        if let Phase::Idle { .. } = self.phase {
            debug!("#{} idle: closing for shutdown", ctx.slot);
            self.close_now(ctx);
            return true;
        }
        false
    }

    /// Moves the connection to the newest configuration. Called only
    /// before a request head is routed, so an exchange runs from start to
    /// end on one configuration. The listener is found in the new
    /// configuration by its address; a connection whose listener a reload
    /// removed stays where it is (it is draining: this request is its last).
    pub(super) fn adopt_latest_config(&mut self, ctx: &mut Context<'_>) {
        if Rc::ptr_eq(&self.config, ctx.latest) {
            return;
        }
        let Some(index) = self
            .listen_addr()
            .and_then(|addr| ctx.latest.listen_position(addr))
        else {
            return;
        };
        self.config = Rc::clone(ctx.latest);
        ctx.config = Rc::clone(ctx.latest);
        let server = self
            .config
            .listen
            .get(index)
            .map_or(0, |l| l.default_server);
        self.listener = u32::try_from(index).unwrap_or(u32::MAX);
        self.server = u32::try_from(server).unwrap_or(u32::MAX);
        debug!("#{} moves to the reloaded configuration", ctx.slot);
    }

    /// The source address of the connection's PROXY protocol header, if
    /// its listener reads one.
    fn proxy_protocol_source(&self) -> Option<SocketAddr> {
        self.proxy_header().and_then(|header| header.source())
    }

    /// What the connection's PROXY protocol header said, read before its
    /// first request (plain) or before its TLS handshake.
    fn proxy_header(&self) -> Option<&crate::proxy_protocol::ProxyHeader> {
        self.proxy_header
            .as_deref()
            .or_else(|| self.client.proxy_header())
    }

    /// The configured `listen` address it was accepted on.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.config
            .listen
            .get(self.listener as usize)
            .map(|l| l.addr)
    }

    /// Asked for the `?connections` page (see `answer_stub_status`).
    pub fn wants_connection_list(&self) -> bool {
        self.wants_connection_list
    }

    /// This connection as a line of the `?connections` page; `now_s` is
    /// the worker's age in seconds.
    pub fn status_line(&self, now_s: u32) -> ConnectionLine<'static> {
        let exchange = self.phase.exchange();
        let (bytes_in, bytes_out) =
            exchange.map_or((0, 0), |e| (e.log.request_length, e.log.bytes_sent));
        let upstream = exchange.and_then(|e| e.upstream_addr().0);
        ConnectionLine {
            id: self.id,
            client: self.peer,
            phase: self.phase.name(),
            age_s: now_s.saturating_sub(self.accepted_s),
            requests: self.requests,
            bytes_in: self.bytes_in + bytes_in,
            bytes_out: self.bytes_out + bytes_out,
            upstream,
        }
    }

    /// The configuration its exchanges run on (see `adopt_latest_config`).
    pub fn config(&self) -> &Rc<Config> {
        &self.config
    }

    /// Moves this connection between `stub_status`'s Reading, Writing and
    /// Waiting counts if its phase moved it.
    fn recount(&mut self, stats: &WorkerStats) {
        let busy = self.phase.busy();
        if busy != self.counted_as {
            count_busy(stats, self.counted_as, -1);
            count_busy(stats, busy, 1);
            self.counted_as = busy;
        }
    }

    fn release(&mut self, phase: Phase, ctx: &mut Context<'_>) {
        match phase {
            Phase::ReadingRequest { buffers, .. } => ctx.buffers.give_back(buffers),
            Phase::ConnectingUpstream { exchange, upstream }
            | Phase::Forwarding { exchange, upstream } => {
                ctx.upstreams.close(&ctx.config, upstream);
                ctx.retire(exchange);
            }
            Phase::WritingResponse { exchange } => ctx.retire(exchange),
            Phase::Authenticating(waiting) => authenticating::abandon(*waiting, ctx),
            Phase::Delayed(_) => {}
            Phase::Stream(session) => session.release(ctx),
            Phase::Tunnel {
                exchange, upstream, ..
            } => {
                ctx.upstreams.close(&ctx.config, upstream);
                ctx.retire(exchange);
            }
            Phase::Idle { .. } | Phase::Lingering { .. } | Phase::Closed => {}
        }
    }

    /// The one transition function: takes the phase, returns the next one and
    /// whether anything moved.
    fn step(&mut self, phase: Phase, ctx: &mut Context<'_>) -> (Phase, bool) {
        match phase {
            Phase::Idle { since } => self.step_idle(since, ctx),
            Phase::ReadingRequest {
                buffers,
                searched,
                since,
            } => self.step_reading(buffers, searched, since, ctx),
            Phase::ConnectingUpstream { exchange, upstream } => {
                self.step_connecting(exchange, upstream, ctx)
            }
            Phase::Forwarding { exchange, upstream } => {
                self.step_forwarding(exchange, upstream, ctx)
            }
            Phase::WritingResponse { exchange } => self.step_writing(exchange, ctx),
            Phase::Tunnel {
                exchange,
                upstream,
                tunnel,
            } => self.step_tunnel(exchange, upstream, tunnel, ctx),
            Phase::Authenticating(waiting) => self.step_authenticating(waiting, ctx),
            // Nothing to do until its timer (`on_deadline`), unless it is
            // over and a buffer set came free.
            Phase::Delayed(waiting) if waiting.until.is_none() => self.end_delay(waiting, ctx),
            Phase::Delayed(waiting) => (Phase::Delayed(waiting), false),
            Phase::Stream(session) => self.step_stream(session, ctx),
            Phase::Lingering { since, last_read } => self.step_lingering(since, last_read, ctx),
            Phase::Closed => (Phase::Closed, false),
        }
    }

    // ===== Idle (ReadingRequest is in reading.rs) =====

    fn step_idle(&mut self, since: Instant, ctx: &mut Context<'_>) -> (Phase, bool) {
        // TLS records of the last response the socket had no room for.
        if self.client_ready.writable && self.client.has_pending_output() {
            if let Err(e) = self.client.flush_pending() {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    debug!("#{} client write failed: {e}", ctx.slot);
                    return (Phase::Closed, true);
                }
                self.client_ready.writable = false;
            }
        }
        if !self.client_ready.readable {
            return (Phase::Idle { since }, false);
        }
        // A TLS handshake runs here, without a buffer set: only a client
        // with a request byte to read takes one.
        if self.client.needs_handshake() {
            let handshaking = self.client.tls_facts().is_none();
            let advanced = self.client.advance_handshake();
            if let Some(facts) = self.client.tls_facts().filter(|_| handshaking) {
                ctx.stats.tls_handshakes.add(1);
                if facts.reused {
                    ctx.stats.tls_resumed.add(1);
                }
                debug!(
                    "#{} TLS {} {} for \"{}\"{}",
                    ctx.slot,
                    facts.protocol,
                    facts.cipher,
                    facts.server_name,
                    if facts.reused { ", resumed" } else { "" }
                );
            }
            match advanced {
                Ok(true) => {}
                Ok(false) => {
                    self.client_ready.readable = false;
                    return (Phase::Idle { since }, false);
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    debug!("#{} client closed the connection", ctx.slot);
                    return (Phase::Closed, true);
                }
                Err(e) => {
                    // A scanner's bad handshake is not an operator's problem.
                    ctx.stats.tls_failures.add(1);
                    log::info!("#{} TLS handshake with {} failed: {e}", ctx.slot, self.peer);
                    return (Phase::Closed, true);
                }
            }
        }
        let Some(buffers) = ctx.buffers.take() else {
            // Memory is capped in total: wait for a set to come back.
            if !self.waiting_for_buffers {
                debug!("#{} waiting for a free buffer set", ctx.slot);
                self.waiting_for_buffers = true;
                ctx.buffer_waiters.push_back(ctx.slot);
            }
            return (Phase::Idle { since }, false);
        };
        self.waiting_for_buffers = false;
        // The first request's head is timed from accept, later ones from
        // their first byte (nginx's client_header_timeout).
        let since = if self.requests == 0 { since } else { ctx.now };
        (
            Phase::ReadingRequest {
                buffers,
                searched: 0,
                since,
            },
            true,
        )
    }
}

/// Why an exchange is abandoned without a response.
enum Abort {
    ClientGone(&'static str),
    UpstreamBroken(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_is_small() {
        // The slab stores every connection at this size; idle ones hold no
        // buffer besides it. The budget is 256 B per idle connection (see
        // docs/architecture.md), which also pays for the slab entry's tag
        // and the connection's timer entry; an exchange is two boxes
        // (`phase::Exchange`), so a busy phase costs idle ones nothing.
        // Debug builds are larger: mio adds a selector id to each socket,
        // which also costs the stream enum its niche.
        let budget = if cfg!(debug_assertions) {
            200 + 32
        } else {
            200
        };
        assert!(
            mem::size_of::<Connection>() <= budget,
            "{}",
            mem::size_of::<Connection>()
        );
    }

    /// The size the docs quote is the size it is in a release build. In
    /// a debug build mio adds a selector id to each of the two sockets.
    #[test]
    fn the_docs_quote_the_size_of_a_connection() {
        let size = mem::size_of::<Connection>();
        for (name, text) in [
            ("README.md", include_str!("../../README.md")),
            (
                "docs/architecture.md",
                include_str!("../../docs/architecture.md"),
            ),
        ] {
            let quoted = text
                .split("-byte `Connection`")
                .next()
                .and_then(|before| before.rsplit(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{name} should quote the size"));
            if cfg!(debug_assertions) {
                // mio adds a selector id to each socket in debug builds, and
                // the layout may differ: the release size is smaller.
                assert!(
                    quoted <= size && size - quoted <= 32,
                    "{name} quotes {quoted} B, debug size {size} B"
                );
            } else {
                assert_eq!(quoted, size, "{name} should say {size}-byte `Connection`");
            }
        }
    }
}

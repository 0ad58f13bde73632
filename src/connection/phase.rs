//! The phases of a client connection and the data each one owns.
//!
//! ```text
//!            accept
//!              │
//!              ▼
//!   ┌────────► Idle ──── client readable ───► ReadingRequest ──┐ bad head
//!   │                                           │    │          │ (400, 413…)
//!   │                     pooled upstream ──────┘    │ head ok  │
//!   │                        │              no pooled│upstream  │
//!   │                        │                       ▼          │
//!   │                        │             ConnectingUpstream ──┤ refused (502)
//!   │                        ▼                       │          │
//!   │                    Forwarding ◄───── connected─┘          │
//!   │                        │  response fully received         │
//!   │                        ▼                                  │
//!   └── keep-alive ──── WritingResponse ◄───────────────────────┘
//!    (or ReadingRequest       │ not keep-alive
//!     if pipelined)           ▼
//!                        Lingering ──► Closed
//!
//!   Forwarding ── 101 to an upgrade request ──► Tunnel ──► Closed
//!
//!   accept on a `stream` listener ──► Stream ──► Closed
//! ```
//!
//! A phase variant carries exactly what is valid in that phase: an idle
//! connection owns no buffer and no upstream socket; only `ConnectingUpstream`
//! and `Forwarding` own an upstream socket. Moving from one phase to the next
//! moves the data, so a buffer or socket can never be used in the wrong phase
//! or forgotten by one.
//!
//! In the course (docs/learn): chapter 4 (states that carry their data); read
//! it first in src/connection/.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::relay::BodyRelay;
use crate::buffer::BufferSet;
use crate::config::{Config, Settings};
use crate::http::request::RequestSummary;
use crate::upstream::{Peer, Tried, UpstreamConn};

pub enum Phase {
    /// Between requests (or before the first): no buffers held, waiting for
    /// the client to speak since `since`.
    Idle { since: Instant },
    /// Collecting a request head, started at `since`. `searched` bytes have
    /// been looked at already and hold no end of head.
    ReadingRequest {
        buffers: Box<BufferSet>,
        searched: usize,
        since: Instant,
    },
    /// The request is accepted; a TCP connect to the upstream is in flight.
    ConnectingUpstream {
        exchange: Exchange,
        upstream: UpstreamConn,
    },
    /// Request bytes flow to the upstream and response bytes back.
    Forwarding {
        exchange: Exchange,
        upstream: UpstreamConn,
    },
    /// The upstream's part is over (pooled or closed), or ferry answers
    /// itself; what is left is writing to the client.
    WritingResponse { exchange: Exchange },
    /// After `101 Switching Protocols`: bytes flow both ways as they are,
    /// through the same ring buffers and with the same back-pressure, until
    /// both directions have ended.
    Tunnel {
        exchange: Exchange,
        upstream: UpstreamConn,
        tunnel: TunnelState,
    },
    /// Waiting for the password thread to check an `auth_basic` password
    /// (`authenticating.rs`); the routed request is kept, boxed.
    Authenticating(Box<super::authenticating::Authenticating>),
    /// Waiting out a `limit_req` delay (`limiting.rs`); the routed request
    /// is kept, boxed.
    Delayed(Box<super::limiting::Delayed>),
    /// A `stream` server's connection: TCP relayed to an upstream, no
    /// HTTP (`stream.rs`, with stages of its own).
    Stream(Box<super::stream::StreamSession>),
    /// Our side is shut down; reading and discarding what the client still
    /// sends, so a TCP reset cannot destroy the response it has not read.
    Lingering { since: Instant, last_read: Instant },
    /// Done; the event loop removes the connection.
    Closed,
}

/// How `stub_status` counts a connection (see `Phase::busy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    Reading,
    Writing,
    Waiting,
}

impl Phase {
    /// nginx's stub_status classes: reading a request head, working on a
    /// request, or waiting for one.
    pub fn busy(&self) -> Busy {
        match self {
            Phase::ReadingRequest { .. } | Phase::Authenticating(_) | Phase::Delayed(_) => {
                Busy::Reading
            }
            Phase::ConnectingUpstream { .. }
            | Phase::Forwarding { .. }
            | Phase::WritingResponse { .. }
            | Phase::Tunnel { .. } => Busy::Writing,
            // nginx's stub_status counts only HTTP requests as reading or
            // writing; a stream session is among the rest.
            Phase::Idle { .. } | Phase::Stream(_) | Phase::Lingering { .. } | Phase::Closed => {
                Busy::Waiting
            }
        }
    }

    /// Every phase's name, in the order of the enum.
    pub const NAMES: [&'static str; 11] = [
        "Idle",
        "ReadingRequest",
        "ConnectingUpstream",
        "Forwarding",
        "WritingResponse",
        "Tunnel",
        "Authenticating",
        "Delayed",
        "Stream",
        "Lingering",
        "Closed",
    ];

    /// Every change of phase a step can make, as (from, to). The state
    /// diagram in docs/architecture.md draws exactly these arrows (a test
    /// compares them), and debug builds check each change against this
    /// list (`Connection::set_phase`), so neither can drift from the code.
    pub const TRANSITIONS: [(&'static str, &'static str); 28] = [
        ("Idle", "ReadingRequest"),
        ("Idle", "Closed"),
        ("ReadingRequest", "Idle"),
        ("ReadingRequest", "ConnectingUpstream"),
        ("ReadingRequest", "Forwarding"),
        ("ReadingRequest", "WritingResponse"),
        ("ReadingRequest", "Authenticating"),
        ("ReadingRequest", "Delayed"),
        ("ReadingRequest", "Closed"),
        ("Authenticating", "ConnectingUpstream"),
        ("Authenticating", "Forwarding"),
        ("Authenticating", "WritingResponse"),
        ("Authenticating", "Closed"),
        ("Delayed", "ReadingRequest"),
        ("ConnectingUpstream", "Forwarding"),
        ("ConnectingUpstream", "WritingResponse"),
        ("ConnectingUpstream", "Closed"),
        ("Forwarding", "WritingResponse"),
        ("Forwarding", "Tunnel"),
        ("Forwarding", "ConnectingUpstream"),
        ("Forwarding", "Closed"),
        ("WritingResponse", "Idle"),
        ("WritingResponse", "ReadingRequest"),
        ("WritingResponse", "Lingering"),
        ("WritingResponse", "Closed"),
        ("Tunnel", "Closed"),
        ("Lingering", "Closed"),
        ("Stream", "Closed"),
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle { .. } => "Idle",
            Phase::ReadingRequest { .. } => "ReadingRequest",
            Phase::ConnectingUpstream { .. } => "ConnectingUpstream",
            Phase::Forwarding { .. } => "Forwarding",
            Phase::WritingResponse { .. } => "WritingResponse",
            Phase::Tunnel { .. } => "Tunnel",
            Phase::Authenticating(_) => "Authenticating",
            Phase::Delayed(_) => "Delayed",
            Phase::Stream(_) => "Stream",
            Phase::Lingering { .. } => "Lingering",
            Phase::Closed => "Closed",
        }
    }

    pub fn upstream_mut(&mut self) -> Option<&mut UpstreamConn> {
        match self {
            Phase::ConnectingUpstream { upstream, .. }
            | Phase::Forwarding { upstream, .. }
            | Phase::Tunnel { upstream, .. } => Some(upstream),
            Phase::Stream(session) => session.upstream_mut(),
            _ => None,
        }
    }

    pub fn exchange(&self) -> Option<&Exchange> {
        match self {
            Phase::ConnectingUpstream { exchange, .. }
            | Phase::Forwarding { exchange, .. }
            | Phase::WritingResponse { exchange }
            | Phase::Tunnel { exchange, .. } => Some(exchange),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One request and its response, from accepted head to last byte: its
/// buffers and its state, each in a box that is recycled (the buffers by
/// the pool, the state by the loop's spare list, see `Context::retire`).
/// So a connection carries two pointers for an exchange, an idle one
/// carries nothing, and moving a phase from one step to the next moves
/// 16 bytes instead of the whole state. The state is reached through
/// `Deref` (`exchange.log`); where the buffers and the state are both
/// borrowed, the two fields are borrowed apart.
pub struct Exchange {
    pub buffers: Box<BufferSet>,
    pub state: Box<ExchangeState>,
}

impl std::ops::Deref for Exchange {
    type Target = ExchangeState;

    fn deref(&self) -> &ExchangeState {
        &self.state
    }
}

impl std::ops::DerefMut for Exchange {
    fn deref_mut(&mut self) -> &mut ExchangeState {
        &mut self.state
    }
}

/// What an exchange knows besides its bytes.
pub struct ExchangeState {
    pub request: RequestSummary,
    pub started: Instant,
    /// `started` on the loop's millisecond clock (`Context::now_ms`).
    pub started_ms: u64,
    /// Finds the end of the request body in `buffers.request`.
    pub request_body: BodyRelay,
    /// Bytes of `buffers.upstream_head` written so far.
    pub upstream_head_sent: usize,
    /// Bytes of `buffers.client_head` written so far.
    pub client_head_sent: usize,
    pub response: ResponseState,
    /// Whether the client connection may carry another request after this
    /// one; starts as the client asked and only ever turns false.
    pub keep_alive: bool,
    /// Ferry answered `Expect: 100-continue` itself.
    pub sent_continue: bool,
    /// The upstream connection came from the idle pool.
    pub reused_upstream: bool,
    /// This exchange already retried once on a fresh connection.
    pub retried: bool,
    /// A byte of response arrived: from now on the request is never retried.
    pub response_started: bool,
    /// Writing to the upstream failed; only its response is still awaited.
    pub upstream_write_failed: bool,
    /// Since when each direction has been waiting, for its timeout.
    pub waits: Waits,
    /// The server and location the request was routed to.
    pub route: RouteRef,
    /// The upstream group it is proxied to.
    pub group: u32,
    /// The server chosen in the group, and those tried so far.
    pub peer: Option<Peer>,
    /// The client's address for this request: the connection's peer, or
    /// the real address a trusted proxy named (`set_real_ip_from`).
    pub client: SocketAddr,
    pub tried: Tried,
    /// The `hash` key's hash, when the group balances by one.
    pub key_hash: u32,
    /// Request body bytes went upstream: the request can no longer be sent
    /// to another server.
    pub body_sent: bool,
    /// `add_header … always` lines end here in `buffers.extra_headers`.
    pub always_headers_end: u32,
    /// An `error_page` answered already: another error gets ferry's own
    /// page (nginx's `recursive_error_pages off`).
    pub error_page_sent: bool,
    pub log: ExchangeLog,
    /// `gzip`: what the request said (`http::gzip::facts`; 0 when off).
    pub gzip_facts: u8,
    /// `gzip`: the compressor of this response, from the pool.
    pub gzip: Option<Box<crate::http::gzip::GzipStream>>,
    /// `limit_rate` and `limit_rate_after` of the request (0: unpaced), and
    /// until when (ms from `started`) writes to the client wait (0: none).
    pub limit_rate: u64,
    pub rate_after: u64,
    pub paced_until: u32,
}

impl ExchangeState {
    /// The upstream server of this exchange, for log lines (`-` if none).
    pub fn upstream_addr(&self) -> UpstreamAddr {
        UpstreamAddr(self.peer.map(|peer| peer.addr))
    }
}

/// An upstream address, or `-`, as log lines show it.
pub struct UpstreamAddr(pub Option<crate::upstream::ServerAddr>);

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("-"),
        }
    }
}

/// The four ways a busy exchange can be stuck, each with its nginx timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Waiting for request body bytes (`client_body_timeout`).
    ClientRead,
    /// Waiting for the client to take response bytes (`send_timeout`).
    ClientWrite,
    /// Waiting for response bytes (`proxy_read_timeout`).
    UpstreamRead,
    /// Waiting for the upstream to take request bytes (`proxy_send_timeout`).
    UpstreamWrite,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::ClientRead,
        Direction::ClientWrite,
        Direction::UpstreamRead,
        Direction::UpstreamWrite,
    ];

    pub fn timeout(self, settings: &Settings) -> Duration {
        match self {
            Direction::ClientRead => settings.client_body_timeout,
            Direction::ClientWrite => settings.send_timeout,
            Direction::UpstreamRead => settings.proxy_read_timeout,
            Direction::UpstreamWrite => settings.proxy_send_timeout,
        }
    }

    /// The directive, for log lines.
    pub fn directive(self) -> &'static str {
        match self {
            Direction::ClientRead => "client_body_timeout",
            Direction::ClientWrite => "send_timeout",
            Direction::UpstreamRead => "proxy_read_timeout",
            Direction::UpstreamWrite => "proxy_send_timeout",
        }
    }
}

/// When each [`Direction`] started waiting, as milliseconds after the
/// exchange started (`u32` keeps a connection small; 49 days is plenty).
/// nginx's timeouts are "between two successive operations": the clock
/// starts when a direction becomes blocked and restarts on each operation
/// that moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waits([u32; 4]);

const NOT_WAITING: u32 = u32::MAX;

impl Default for Waits {
    fn default() -> Waits {
        Waits([NOT_WAITING; 4])
    }
}

impl Waits {
    /// Bytes moved in `direction`: its clock restarts.
    pub fn touch(&mut self, direction: Direction, at_ms: u32) {
        self.0[direction as usize] = at_ms.min(NOT_WAITING - 1);
    }

    /// Whether `direction` is blocked now: start its clock if it was not
    /// running, stop it if it is not blocked.
    pub fn update(&mut self, direction: Direction, blocked: bool, at_ms: u32) {
        let since = &mut self.0[direction as usize];
        if !blocked {
            *since = NOT_WAITING;
        } else if *since == NOT_WAITING {
            *since = at_ms.min(NOT_WAITING - 1);
        }
    }

    /// `direction` is not waiting (its clock stops).
    pub fn clear(&mut self, direction: Direction) {
        self.0[direction as usize] = NOT_WAITING;
    }

    pub fn since(&self, direction: Direction) -> Option<u32> {
        let since = self.0[direction as usize];
        (since != NOT_WAITING).then_some(since)
    }
}

/// Where the response is.
pub enum ResponseState {
    /// Waiting for the upstream's (final) response head.
    AwaitingHead,
    /// The final head is queued for the client; the body flows through.
    Body {
        relay: BodyRelay,
        upstream_reusable: bool,
    },
    /// Ferry's own response is in `buffers.client_head`; no upstream part.
    Local,
    /// The upstream answered `101`: the connection becomes a tunnel.
    Switching,
    /// Ferry's head for a file is queued; the body is read from
    /// `buffers.file` at `offset` into the response ring, `remaining` bytes
    /// still to read.
    File { offset: u64, remaining: u64 },
}

/// Which ends of a tunnel are done. A direction ends when its source sent
/// EOF and everything read from it was written on; its end is passed on as
/// a write shutdown, and the other direction keeps flowing.
#[derive(Clone, Copy, Debug, Default)]
pub struct TunnelState {
    pub client_eof: bool,
    pub upstream_eof: bool,
    /// Our write side towards the upstream is shut down.
    pub upstream_shut: bool,
    /// Our write side towards the client is shut down.
    pub client_shut: bool,
    /// The last time bytes moved, for the idle timeout
    /// (`proxy_read_timeout`, as nginx uses for tunnels).
    pub last_activity: Mark,
}

/// What the access log line needs beyond the request's own bytes. Times
/// are [`Mark`]s, milliseconds after the exchange started, to keep every
/// connection small.
#[derive(Default)]
pub struct ExchangeLog {
    /// Status sent to the client; 0 until a final head is queued.
    pub status: u16,
    /// The upstream's status; 0 if none.
    pub upstream_status: u16,
    pub body_bytes_sent: u64,
    pub connect_started: Mark,
    pub connected: Mark,
    pub head_received: Mark,
    pub response_received: Mark,
    /// Head and body bytes written to the client (`$bytes_sent`).
    pub bytes_sent: u64,
    /// Bytes received from the client: the head, the body, and in a tunnel
    /// everything after it (`$request_length`).
    pub request_length: u64,
}

impl ExchangeLog {
    /// nginx's `$upstream_connect_time`, `$upstream_header_time` and
    /// `$upstream_response_time`: each from the start of the upstream
    /// connection attempt.
    pub fn upstream_times(&self) -> [Option<Duration>; 3] {
        let since_connect = |mark: Mark| {
            let (start, end) = (self.connect_started.get()?, mark.get()?);
            Some(Duration::from_millis(u64::from(end.saturating_sub(start))))
        };
        [
            since_connect(self.connected),
            since_connect(self.head_received),
            since_connect(self.response_received),
        ]
    }
}

/// A moment during an exchange, as milliseconds after it started; `u32`
/// keeps a connection small and still spans 49 days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark(u32);

impl Default for Mark {
    fn default() -> Mark {
        Mark::NONE
    }
}

impl Mark {
    pub const NONE: Mark = Mark(u32::MAX);

    pub fn get(self) -> Option<u32> {
        (self != Mark::NONE).then_some(self.0)
    }

    /// The loop's `now_ms` as a mark of something that started at
    /// `started_ms` on the same clock.
    pub fn since(started_ms: u64, now_ms: u64) -> Mark {
        Mark(
            u32::try_from(now_ms.saturating_sub(started_ms))
                .map_or(u32::MAX - 1, |ms| ms.min(u32::MAX - 1)),
        )
    }

    /// The instant this mark stands for.
    pub fn instant(self, started: Instant) -> Option<Instant> {
        self.get()
            .map(|ms| started + Duration::from_millis(u64::from(ms)))
    }
}

/// A server and location index, compact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteRef {
    server: u32,
    /// `u32::MAX`: no location (settings are the server's).
    location: u32,
}

impl RouteRef {
    pub fn new(server: usize, location: Option<usize>) -> RouteRef {
        RouteRef {
            server: u32::try_from(server).unwrap_or(u32::MAX),
            location: location
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(u32::MAX),
        }
    }

    /// The location's TLS settings for its servers, if it proxies to
    /// `https://`.
    pub fn upstream_tls(self, config: &Config) -> Option<&crate::config::UpstreamTlsRef> {
        match &config
            .location(self.server as usize, self.location as usize)?
            .action
        {
            crate::config::Action::Proxy { tls, .. } => tls.as_ref(),
            _ => None,
        }
    }

    /// The settings in force for the route (server-level without a location).
    pub fn settings(self, config: &Config) -> &Settings {
        let server = self.server as usize;
        match config.location(server, self.location as usize) {
            Some(location) => &location.settings,
            None => config.server_settings(server),
        }
    }
}

impl ExchangeState {
    pub fn route_server(&self) -> usize {
        self.route.server as usize
    }

    pub fn route_location(&self) -> usize {
        self.route.location as usize
    }

    pub fn settings<'c>(&self, config: &'c Config) -> &'c Settings {
        self.route.settings(config)
    }

    /// Whether a failure before any response byte may be retried on a fresh
    /// connection: only on a reused connection (the keep-alive race), once,
    /// and only for idempotent requests whose bytes ferry still holds whole.
    pub fn can_retry(&self) -> bool {
        self.reused_upstream
            && !self.retried
            && !self.response_started
            && self.request.method.is_idempotent()
            && self.request.body == crate::http::framing::BodyKind::Empty
    }

    /// Whether the final response head is already queued or sent, after which
    /// ferry can no longer answer with an error of its own.
    pub fn response_committed(&self) -> bool {
        self.log.status != 0
    }

    /// The loop's `now_ms` as milliseconds after the exchange started.
    pub fn offset_ms(&self, now_ms: u64) -> u32 {
        u32::try_from(now_ms.saturating_sub(self.started_ms)).unwrap_or(u32::MAX)
    }

    /// The loop's `now_ms` as a [`Mark`] of this exchange.
    pub fn mark(&self, now_ms: u64) -> Mark {
        Mark::since(self.started_ms, now_ms)
    }

    /// When `limit_rate` lets the next write go, if it is holding one.
    pub fn paced_until(&self) -> Option<Instant> {
        (self.paced_until != 0)
            .then(|| self.started + Duration::from_millis(u64::from(self.paced_until)))
    }

    /// The pacing wait is what came due (no timeout did): the exchange just
    /// goes on writing.
    pub fn pacing_due(&self, now: Instant, config: &Config) -> bool {
        self.paced_until().is_some_and(|at| at <= now)
            && self.next_timeout(config).is_none_or(|(at, _)| at > now)
    }

    /// The earliest timeout among the waiting directions.
    pub fn next_timeout(&self, config: &Config) -> Option<(Instant, Direction)> {
        let settings = self.settings(config);
        Direction::ALL
            .iter()
            .filter_map(|&direction| {
                let since = self.waits.since(direction)?;
                let at = self.started
                    + Duration::from_millis(u64::from(since))
                    + direction.timeout(settings);
                Some((at, direction))
            })
            .min_by_key(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state diagram's arrows are `Phase::TRANSITIONS`, no more and no
    /// fewer (`[*]` arrows aside: how a connection starts).
    #[test]
    fn the_state_diagram_draws_every_transition() {
        let architecture = include_str!("../../docs/architecture.md");
        let diagram = architecture
            .split_once("```mermaid")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map_or("", |(diagram, _)| diagram);
        let mut drawn: Vec<(String, String)> = diagram
            .lines()
            .filter_map(|line| {
                let (from, rest) = line.trim().split_once(" --> ")?;
                let to = rest.split(':').next()?.trim();
                (from != "[*]").then(|| (from.to_string(), to.to_string()))
            })
            .collect();
        drawn.sort();
        drawn.dedup();
        let mut listed: Vec<(String, String)> = Phase::TRANSITIONS
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        listed.sort();
        listed.dedup();
        assert_eq!(drawn, listed);
    }

    /// The glossary and the state diagram name every phase.
    #[test]
    fn the_docs_name_every_phase() {
        let glossary = include_str!("../../docs/glossary.md");
        let architecture = include_str!("../../docs/architecture.md");
        let diagram = architecture
            .split_once("```mermaid")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map_or("", |(diagram, _)| diagram);
        for name in Phase::NAMES {
            assert!(glossary.contains(&format!("`{name}`")), "glossary: {name}");
            assert!(diagram.contains(name), "state diagram: {name}");
        }
    }
}

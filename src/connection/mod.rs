//! One client connection: its socket, its phase, and the transitions
//! between phases.
//!
//! Heads up: read `phase.rs` first for the phases and what each owns, and
//! `io.rs` for the readiness rules.
//!
//! The event loop records readiness ([`Connection::on_client_event`],
//! [`Connection::on_upstream_event`]) and calls [`Connection::drive`], which
//! runs [`Connection::step`] until no step makes progress. `step` takes the
//! current phase by value and returns the next one; each `step_*` function
//! does the I/O its phase allows, asks the pure `http` functions what the
//! bytes mean, and decides. Everything that happens when the upstream fails
//! is in [`Connection::upstream_failed`] and [`Connection::fail`].

pub mod io;
pub mod phase;
pub mod relay;

use std::collections::VecDeque;
use std::io::{Cursor, ErrorKind, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr};
use std::time::{Instant, SystemTime};

use log::{debug, error, info, trace, warn};
use mio::net::TcpStream;
use mio::Registry;

use self::io::{discard, read_into, write_out, IoOutcome, Readiness};
use self::phase::{
    Direction, Exchange, ExchangeLog, Mark, Phase, ResponseState, RouteRef, TunnelState,
};
use self::relay::{BodyRelay, RelayMode};
use crate::buffer::{BufferPool, BufferSet};
use crate::config::next_upstream;
use crate::config::{AccessLogTarget, Action, Config, LocationConfig, Settings};
use crate::error::ProxyError;
use crate::http::error_page::ErrorResponse;
use crate::http::error_page::{self, CONTINUE};
use crate::http::framing::BodyKind;
use crate::http::headers;
use crate::http::request::{self, Method, RequestSummary};
use crate::http::response::{self, ClientFraming};
use crate::http::{self as http, Version, MAX_HEADERS};
use crate::log::AccessLog;
use crate::routing;
use crate::upstream::{Peer, Tried, UpstreamConn, Upstreams};
use crate::variables::{ExchangeVars, RequestView};

/// Steps one `drive` call may take before yielding to other connections;
/// a connection with work left is driven again on the next loop turn.
const STEPS_PER_DRIVE: usize = 64;

/// What the connection needs from the event loop while it runs.
pub struct Context<'a> {
    pub slot: usize,
    /// Read once per loop turn.
    pub now: Instant,
    pub wall_clock: SystemTime,
    pub registry: &'a Registry,
    pub config: &'a Config,
    pub buffers: &'a mut BufferPool,
    /// Idle connections waiting for the pool to lend a buffer set.
    pub buffer_waiters: &'a mut VecDeque<usize>,
    pub upstreams: &'a mut Upstreams,
    pub access_log: &'a mut AccessLog,
    pub counters: Counters,
}

/// The loop's counters, as the status path shows them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub connections: usize,
    pub upstream_connections: usize,
    pub pooled_upstream_connections: usize,
    pub buffer_sets_lent: usize,
    pub timers: usize,
    pub accepted: u64,
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
    client: TcpStream,
    client_ready: Readiness,
    peer: SocketAddr,
    phase: Phase,
    /// The client shut down its sending side.
    client_eof: bool,
    /// Requests started on this connection.
    requests: u32,
    /// In the loop's queue of connections waiting for a buffer set.
    waiting_for_buffers: bool,
    /// The listening socket it came in on, for routing by address.
    listener: usize,
    /// The server of its last request (at first, the listener's default),
    /// whose settings apply between requests.
    server: usize,
    /// The timer entry the event loop holds for this connection.
    pub scheduled: Option<Instant>,
}

impl Connection {
    pub fn new(
        id: u64,
        client: TcpStream,
        peer: SocketAddr,
        now: Instant,
        listener: usize,
        config: &Config,
    ) -> Connection {
        let server = config
            .listeners
            .get(listener)
            .map_or(0, |l| l.default_server);
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
            phase: Phase::Idle { since: now },
            client_eof: false,
            requests: 0,
            waiting_for_buffers: false,
            listener,
            server,
            scheduled: None,
        }
    }

    pub fn client_mut(&mut self) -> &mut TcpStream {
        &mut self.client
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
    fn server_settings<'c>(&self, config: &'c Config) -> &'c Settings {
        config.server_settings(self.server)
    }

    /// When this connection next needs attention without an event. Every
    /// phase but `Closed` has one, so no connection can wait forever.
    pub fn deadline(&self, config: &Config) -> Option<Instant> {
        match &self.phase {
            Phase::Idle { since } if self.requests == 0 => {
                Some(*since + self.server_settings(config).client_header_timeout)
            }
            Phase::Idle { since } => Some(*since + self.server_settings(config).keepalive_timeout),
            Phase::ReadingRequest { since, .. } => {
                Some(*since + self.server_settings(config).client_header_timeout)
            }
            Phase::ConnectingUpstream { exchange, .. } => {
                let connect = exchange
                    .log
                    .connect_started
                    .instant(exchange.started)
                    .unwrap_or(exchange.started)
                    + exchange.settings(config).proxy_connect_timeout;
                let waits = exchange.next_timeout(config).map(|(at, _)| at);
                Some(waits.map_or(connect, |at| at.min(connect)))
            }
            Phase::Tunnel {
                exchange, tunnel, ..
            } => {
                let last = tunnel
                    .last_activity
                    .instant(exchange.started)
                    .unwrap_or(exchange.started);
                Some(last + exchange.settings(config).proxy_read_timeout)
            }
            Phase::Forwarding { exchange, .. } | Phase::WritingResponse { exchange } => {
                exchange.next_timeout(config).map(|(at, _)| at)
            }
            Phase::Lingering { since, last_read } => Some(
                (*since + self.server_settings(config).lingering_time)
                    .min(*last_read + self.server_settings(config).lingering_timeout),
            ),
            Phase::Closed => None,
        }
    }

    /// The deadline passed: act as nginx's timeout for this phase does.
    pub fn on_deadline(&mut self, ctx: &mut Context<'_>) {
        let phase = mem::replace(&mut self.phase, Phase::Closed);
        let from = phase.name();
        let (next, _) = match phase {
            Phase::Idle { .. } => {
                debug!(
                    "#{} closing idle connection (keep-alive or first-request timeout)",
                    ctx.slot
                );
                (Phase::Closed, true)
            }
            Phase::ReadingRequest { buffers, .. } if buffers.request.is_empty() => {
                ctx.buffers.give_back(buffers);
                (Phase::Closed, true)
            }
            Phase::ReadingRequest { buffers, .. } => {
                let exchange = self.new_exchange(buffers, RequestSummary::unparsed(), ctx);
                self.fail(
                    exchange,
                    ProxyError::ClientTimeout("client_header_timeout"),
                    ctx,
                )
            }
            Phase::ConnectingUpstream { exchange, upstream } => {
                let connect_deadline = exchange
                    .log
                    .connect_started
                    .instant(exchange.started)
                    .unwrap_or(exchange.started)
                    + exchange.settings(ctx.config).proxy_connect_timeout;
                if connect_deadline <= ctx.now {
                    ctx.upstreams.close(upstream);
                    let error = ProxyError::UpstreamTimeout("proxy_connect_timeout");
                    self.next_upstream(exchange, error, next_upstream::TIMEOUT, ctx)
                } else {
                    self.timed_out(exchange, Some(upstream), ctx)
                }
            }
            Phase::Forwarding { exchange, upstream } => {
                self.timed_out(exchange, Some(upstream), ctx)
            }
            Phase::WritingResponse { exchange } => self.timed_out(exchange, None, ctx),
            Phase::Tunnel {
                exchange, upstream, ..
            } => {
                debug!("#{} tunnel idle for proxy_read_timeout; closing", ctx.slot);
                self.end_tunnel(exchange, upstream, ctx)
            }
            Phase::Lingering { .. } => {
                debug!("#{} lingering close timed out", ctx.slot);
                (Phase::Closed, true)
            }
            Phase::Closed => (Phase::Closed, false),
        };
        self.set_phase(from, next, ctx.slot);
    }

    /// One direction of a busy exchange waited longer than its timeout.
    fn timed_out(
        &mut self,
        exchange: Exchange,
        upstream: Option<UpstreamConn>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let Some((_, direction)) = exchange.next_timeout(ctx.config) else {
            // Nothing was waiting after all: keep going.
            return match upstream {
                Some(upstream) => (Phase::Forwarding { exchange, upstream }, false),
                None => (Phase::WritingResponse { exchange }, false),
            };
        };
        let directive = direction.directive();
        match direction {
            Direction::ClientWrite => self.abort(
                exchange,
                upstream,
                Abort::ClientGone("stopped reading the response (send_timeout)"),
                ctx,
            ),
            Direction::ClientRead => {
                if let Some(upstream) = upstream {
                    ctx.upstreams.close(upstream);
                }
                self.fail(exchange, ProxyError::ClientTimeout(directive), ctx)
            }
            Direction::UpstreamRead | Direction::UpstreamWrite => {
                if let Some(upstream) = upstream {
                    ctx.upstreams.close(upstream);
                }
                self.next_upstream(
                    exchange,
                    ProxyError::UpstreamTimeout(directive),
                    next_upstream::TIMEOUT,
                    ctx,
                )
            }
        }
    }

    /// Starts, restarts or stops each direction's timeout clock from what
    /// the exchange is waiting for now. Called after every `drive`.
    fn refresh_waits(&mut self, now: Instant) {
        let client_eof = self.client_eof;
        let (exchange, forwarding) = match &mut self.phase {
            Phase::ConnectingUpstream { exchange, .. } | Phase::WritingResponse { exchange } => {
                (exchange, false)
            }
            Phase::Forwarding { exchange, .. } => (exchange, true),
            _ => return,
        };
        let at = exchange.offset_ms(now);
        let buffers = &exchange.buffers;
        let (response_received, body_ready) = match &exchange.response {
            ResponseState::AwaitingHead => (false, 0),
            ResponseState::Body { relay, .. } => (relay.fully_received(), relay.ready()),
            ResponseState::Local | ResponseState::Switching => (true, 0),
        };
        let upstream_head_left = exchange.upstream_head_sent < buffers.upstream_head.len();
        let request_sent = !upstream_head_left && exchange.request_body.is_complete();
        let blocked = [
            (
                Direction::ClientRead,
                !exchange.request_body.fully_received()
                    && !client_eof
                    && !buffers.request.is_full(),
            ),
            (
                Direction::ClientWrite,
                exchange.client_head_sent < buffers.client_head.len() || body_ready > 0,
            ),
            (
                Direction::UpstreamRead,
                forwarding
                    && !response_received
                    && !buffers.response.is_full()
                    && (request_sent
                        || exchange.response_started
                        || exchange.upstream_write_failed),
            ),
            (
                Direction::UpstreamWrite,
                forwarding
                    && !exchange.upstream_write_failed
                    && (upstream_head_left || exchange.request_body.ready() > 0),
            ),
        ];
        for (direction, is_blocked) in blocked {
            exchange.waits.update(direction, is_blocked, at);
        }
    }

    /// Runs the state machine until it waits, with a cap for fairness.
    pub fn drive(&mut self, ctx: &mut Context<'_>) -> Driven {
        for _ in 0..STEPS_PER_DRIVE {
            let phase = mem::replace(&mut self.phase, Phase::Closed);
            let from = phase.name();
            let (next, progressed) = self.step(phase, ctx);
            self.set_phase(from, next, ctx.slot);
            if let Phase::Closed = self.phase {
                return Driven::Closed;
            }
            if !progressed {
                self.refresh_waits(ctx.now);
                return Driven::Waiting;
            }
        }
        self.refresh_waits(ctx.now);
        Driven::MoreWork
    }

    /// Every phase change goes through here, so `RUST_LOG=ferry=trace`
    /// tells each connection's story.
    fn set_phase(&mut self, from: &'static str, next: Phase, slot: usize) {
        if from != next.name() {
            trace!("#{slot} {from} -> {}", next.name());
        }
        self.phase = next;
    }

    /// Releases everything at once (shutdown, or the loop giving up on a
    /// connection). The upstream socket is closed, never pooled.
    pub fn close_now(&mut self, ctx: &mut Context<'_>) {
        let phase = mem::replace(&mut self.phase, Phase::Closed);
        self.release(phase, ctx);
    }

    fn release(&mut self, phase: Phase, ctx: &mut Context<'_>) {
        match phase {
            Phase::ReadingRequest { buffers, .. } => ctx.buffers.give_back(buffers),
            Phase::ConnectingUpstream { exchange, upstream }
            | Phase::Forwarding { exchange, upstream } => {
                ctx.upstreams.close(upstream);
                ctx.buffers.give_back(exchange.buffers);
            }
            Phase::WritingResponse { exchange } => ctx.buffers.give_back(exchange.buffers),
            Phase::Tunnel {
                exchange, upstream, ..
            } => {
                ctx.upstreams.close(upstream);
                ctx.buffers.give_back(exchange.buffers);
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
            Phase::Lingering { since, last_read } => self.step_lingering(since, last_read, ctx),
            Phase::Closed => (Phase::Closed, false),
        }
    }

    // ===== Idle and ReadingRequest =====

    fn step_idle(&mut self, since: Instant, ctx: &mut Context<'_>) -> (Phase, bool) {
        if !self.client_ready.readable {
            return (Phase::Idle { since }, false);
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

    fn step_reading(
        &mut self,
        mut buffers: Box<BufferSet>,
        searched: usize,
        since: Instant,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let held = buffers.request.len();
        let mut searched = searched;
        if held > searched {
            let max_head = ctx.config.server_settings(self.server).max_head;
            let bytes = buffers.request.make_contiguous();
            if http::head_may_be_complete(bytes, searched) || held >= max_head {
                match self.parse_request(&mut buffers, ctx) {
                    Ok(Some(parsed)) => return self.start_exchange(buffers, parsed, ctx),
                    Ok(None) => {}
                    Err(error) => {
                        let exchange = self.new_exchange(buffers, RequestSummary::unparsed(), ctx);
                        return self.fail(exchange, error, ctx);
                    }
                }
            }
            searched = held;
        }
        if !self.client_ready.readable {
            return (
                Phase::ReadingRequest {
                    buffers,
                    searched,
                    since,
                },
                false,
            );
        }
        match read_into(
            &mut self.client,
            &mut self.client_ready,
            &mut buffers.request,
        ) {
            IoOutcome::Progress(n) => {
                trace!("#{} -> * {n}B", ctx.slot);
                (
                    Phase::ReadingRequest {
                        buffers,
                        searched,
                        since,
                    },
                    true,
                )
            }
            IoOutcome::WouldBlock if buffers.request.is_empty() => {
                ctx.buffers.give_back(buffers);
                (Phase::Idle { since }, true)
            }
            IoOutcome::WouldBlock => (
                Phase::ReadingRequest {
                    buffers,
                    searched,
                    since,
                },
                false,
            ),
            IoOutcome::Eof => {
                if buffers.request.is_empty() {
                    debug!("#{} client closed the connection", ctx.slot);
                } else {
                    info!(
                        "#{} client {} closed the connection in the middle of a request head",
                        ctx.slot, self.peer
                    );
                }
                self.client_eof = true;
                ctx.buffers.give_back(buffers);
                (Phase::Closed, true)
            }
            IoOutcome::Failed(e) => {
                debug!("#{} client read failed: {e}", ctx.slot);
                ctx.buffers.give_back(buffers);
                (Phase::Closed, true)
            }
        }
    }

    /// Parses the head at the front of `buffers.request` and routes it; on
    /// success writes the upstream's head, the access log's captures and
    /// the `add_header` lines, and consumes the client's head.
    fn parse_request(
        &self,
        buffers: &mut BufferSet,
        ctx: &Context<'_>,
    ) -> Result<Option<ParsedRequest>, ProxyError> {
        let BufferSet {
            request: ring,
            upstream_head,
            log_fields,
            extra_headers,
            path: normalized,
            ..
        } = buffers;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let bytes = ring.make_contiguous();
        let max_head = ctx.config.server_settings(self.server).max_head;
        let head = match request::parse(bytes, &mut headers, max_head) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ProxyError::Request(e)),
        };

        // Route: server by listener and Host, then location by path.
        let config = ctx.config;
        let host = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| h.value);
        let server = routing::select_server(config, self.listener, host);
        // Locations match nginx's `$uri`: decoded, dots and `//` resolved, so no
        // spelling of a path slips past a `location` (and its access rules).
        let origin_form = request::absolute_form(head.target).map_or(head.target, |(_, rest)| rest);
        if routing::normalize_path(origin_form, normalized).is_err() {
            return Err(ProxyError::Request(request::RequestError::InvalidPath));
        }
        let location = config
            .servers
            .get(server)
            .and_then(|s| routing::select_location(s, normalized));
        let settings = RouteRef::new(server, location).settings(config);
        let view = RequestView {
            method: head.method,
            target: head.target,
            version: head.version.as_str(),
            headers: head.headers,
            client: self.peer,
            server_name: config.server_name(server),
            server_port: config.listen.get(self.listener).map_or(0, |a| a.port()),
        };

        log_fields.clear();
        if settings.access_log != AccessLogTarget::Off {
            if let Some((_, format)) = config.log_formats.get(settings.log_format) {
                format.capture(&view, log_fields);
            }
        }
        extra_headers.clear();
        let mut conditional = 0;
        for always in [true, false] {
            for add in settings.add_headers.iter().filter(|a| a.always == always) {
                headers::write_rendered_field(extra_headers, &add.name, &add.value, &view);
            }
            if always {
                conditional = extra_headers.len();
            }
        }

        let target = if config.status_path.as_deref() == Some(head.target) {
            Target::Status
        } else if !crate::config::access_allowed(&settings.access_rules, self.peer.ip()) {
            Target::Forbidden
        } else {
            match location.and_then(|l| config.location(server, l)) {
                Some(LocationConfig {
                    action: Action::Proxy { group, uri },
                    matcher,
                    ..
                }) => {
                    // Upstreams get origin-form: an absolute-form target's
                    // authority becomes the Host when the client sent none.
                    let rewritten =
                        routing::upstream_target(origin_form, normalized, matcher, uri.as_deref());
                    let fallback_host = request::absolute_form(head.target)
                        .map(|(authority, _)| authority)
                        .unwrap_or_else(|| {
                            config.upstreams.get(*group).map_or("", |g| g.name.as_str())
                        });
                    let upstream_head_args = request::UpstreamHead {
                        target: rewritten,
                        fallback_host,
                        set_headers: &settings.proxy_set_headers,
                        view: &view,
                    };
                    request::write_upstream_head(&head, &upstream_head_args, upstream_head);
                    Target::Upstream(*group)
                }
                Some(LocationConfig {
                    action: Action::Return { status, .. },
                    ..
                }) => Target::Return(*status),
                Some(LocationConfig {
                    action: Action::NotFound,
                    ..
                })
                | None => Target::NotFound,
            }
        };
        let key_hash = match target {
            Target::Upstream(group) => match config.upstreams.get(group).map(|g| &g.balance) {
                Some(crate::config::Balance::Hash { key, .. }) => key.hash(&view),
                _ => 0,
            },
            _ => 0,
        };
        let parsed = ParsedRequest {
            summary: head.summary,
            server,
            location,
            target,
            key_hash,
            always_headers_end: u32::try_from(conditional).unwrap_or(0),
            head_len: head.head_len,
        };
        let head_len = head.head_len;
        ring.consume(head_len);
        Ok(Some(parsed))
    }

    fn new_exchange(
        &self,
        buffers: Box<BufferSet>,
        request: RequestSummary,
        ctx: &Context<'_>,
    ) -> Exchange {
        Exchange {
            buffers,
            request,
            started: ctx.now,
            request_body: BodyRelay::new(request.body, RelayMode::AsReceived),
            upstream_head_sent: 0,
            client_head_sent: 0,
            response: ResponseState::AwaitingHead,
            keep_alive: request.keep_alive,
            sent_continue: false,
            reused_upstream: false,
            retried: false,
            response_started: false,
            upstream_write_failed: false,
            waits: phase::Waits::default(),
            route: RouteRef::default(),
            group: 0,
            peer: None,
            tried: Tried::default(),
            key_hash: 0,
            body_sent: false,
            always_headers_end: 0,
            log: ExchangeLog::default(),
        }
    }

    /// A valid head arrived: check its body against the limit, answer
    /// `Expect: 100-continue`, and get an upstream connection.
    fn start_exchange(
        &mut self,
        buffers: Box<BufferSet>,
        parsed: ParsedRequest,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.requests += 1;
        self.server = parsed.server;
        let summary = parsed.summary;
        let mut exchange = self.new_exchange(buffers, summary, ctx);
        exchange.always_headers_end = parsed.always_headers_end;
        exchange.log.request_length = parsed.head_len as u64;
        exchange.route = RouteRef::new(parsed.server, parsed.location);
        let group = match parsed.target {
            Target::Upstream(group) => group,
            Target::Status => return self.answer_status(exchange, ctx),
            Target::Return(status) => return self.answer_return(exchange, status, ctx),
            Target::NotFound => return self.answer_page(exchange, ErrorResponse::NotFound, ctx),
            Target::Forbidden => {
                info!(
                    "#{} access forbidden by rule, client: {}",
                    ctx.slot, self.peer
                );
                return self.answer_page(exchange, ErrorResponse::Forbidden, ctx);
            }
        };
        exchange.group = group;
        debug!("#{} request {} from {}", ctx.slot, self.requests, self.peer);
        let limit = exchange.settings(ctx.config).client_max_body_size;
        if let BodyKind::Length(length) = summary.body {
            if limit != 0 && length > limit {
                return self.fail(exchange, ProxyError::BodyTooLarge { limit }, ctx);
            }
        }
        if summary.expect_continue && exchange.buffers.request.is_empty() {
            exchange.buffers.client_head.extend_from_slice(CONTINUE);
            exchange.sent_continue = true;
        }
        exchange.key_hash = parsed.key_hash;
        self.choose_upstream(exchange, None, ctx)
    }

    /// Picks a server of the exchange's group (skipping those already
    /// tried) and gets a connection to it: pooled, or a new one. `last_error`
    /// is what made the previous server fail, reported if none is left.
    fn choose_upstream(
        &mut self,
        mut exchange: Exchange,
        last_error: Option<ProxyError>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let client = self.peer.ip();
        let picked = ctx.upstreams.pick(
            ctx.config,
            exchange.group,
            client,
            exchange.key_hash,
            ctx.now,
            exchange.tried,
        );
        let Some(peer) = picked else {
            let error = last_error.unwrap_or(ProxyError::NoLiveUpstreams);
            if let ProxyError::NoLiveUpstreams = error {
                let name = ctx
                    .config
                    .upstreams
                    .get(exchange.group)
                    .map_or("", |g| g.name.as_str());
                error!(
                    "#{} no live upstreams while connecting to upstream \"{name}\", client: {}",
                    ctx.slot, self.peer
                );
            }
            return self.fail(exchange, error, ctx);
        };
        exchange.tried.add(peer.server);
        exchange.peer = Some(peer);
        exchange.log.connect_started = Mark::at(exchange.started, ctx.now);
        if let Some(upstream) = ctx.upstreams.checkout(peer, ctx.slot) {
            debug!(
                "#{}/upstream reusing a pooled connection to {}",
                ctx.slot, peer.addr
            );
            exchange.reused_upstream = true;
            exchange.log.connected = exchange.log.connect_started;
            return (Phase::Forwarding { exchange, upstream }, true);
        }
        self.connect_upstream(exchange, peer, ctx)
    }

    fn connect_upstream(
        &mut self,
        exchange: Exchange,
        peer: Peer,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        match ctx.upstreams.connect(peer, ctx.slot, ctx.registry, ctx.now) {
            Ok(upstream) => {
                debug!("#{}/upstream connecting to {}", ctx.slot, peer.addr);
                (Phase::ConnectingUpstream { exchange, upstream }, true)
            }
            Err(e) => self.next_upstream(
                exchange,
                ProxyError::UpstreamConnect(e),
                next_upstream::ERROR,
                ctx,
            ),
        }
    }

    /// The chosen server failed before its response reached the client:
    /// count the failure, then try the next server if `proxy_next_upstream`
    /// allows it for `condition`, or answer with `error`.
    ///
    /// nginx's rules: never once a response byte went to the client; for a
    /// request already sent, never if it is not idempotent (unless
    /// `non_idempotent`); at most `proxy_next_upstream_tries` servers. And
    /// ferry's own: never once body bytes were streamed, since it does not
    /// keep them.
    fn next_upstream(
        &mut self,
        mut exchange: Exchange,
        error: ProxyError,
        condition: u16,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let counts_as_failure = condition
            & (next_upstream::ERROR | next_upstream::TIMEOUT | next_upstream::INVALID_HEADER)
            != 0;
        if let (Some(peer), true) = (exchange.peer, counts_as_failure) {
            ctx.upstreams.failed(ctx.config, peer, ctx.now);
        }
        if !next_upstream_allowed(&exchange, condition, ctx.config) {
            return self.fail(exchange, error, ctx);
        }
        match &error {
            ProxyError::UpstreamConnect(_) => {
                error!(
                    "#{} {error} while connecting to upstream, client: {}; trying the next one",
                    ctx.slot, self.peer
                )
            }
            _ => warn!(
                "#{} {error}, client: {}; trying the next upstream",
                ctx.slot, self.peer
            ),
        }
        exchange.upstream_head_sent = 0;
        exchange.upstream_write_failed = false;
        exchange.response_started = false;
        exchange.reused_upstream = false;
        exchange.response = ResponseState::AwaitingHead;
        exchange.log.status = 0;
        exchange.buffers.response.clear();
        self.choose_upstream(exchange, Some(error), ctx)
    }

    // ===== ConnectingUpstream =====

    fn step_connecting(
        &mut self,
        mut exchange: Exchange,
        mut upstream: UpstreamConn,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        // While the connect is in flight, the client may get its
        // `100 Continue` and start sending the body.
        let progress = match self.pump_client(&mut exchange, ctx) {
            Ok(progress) => progress,
            Err(abort) => return self.abort(exchange, Some(upstream), abort, ctx),
        };
        if !upstream.ready.writable && !upstream.ready.readable {
            return (Phase::ConnectingUpstream { exchange, upstream }, progress);
        }
        // mio: a writable event after connect() means done or failed;
        // take_error() tells which, peer_addr() rules out a spurious wakeup.
        let result = match upstream.stream.take_error() {
            Ok(None) => upstream.stream.peer_addr().map(|_| ()),
            Ok(Some(e)) | Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                if let Err(e) = upstream.stream.set_nodelay(true) {
                    debug!("#{}/upstream TCP_NODELAY: {e}", ctx.slot);
                }
                exchange.log.connected = Mark::at(exchange.started, ctx.now);
                debug!("#{}/upstream connected to {}", ctx.slot, upstream.addr);
                (Phase::Forwarding { exchange, upstream }, true)
            }
            Err(e) if e.kind() == ErrorKind::NotConnected || e.kind() == ErrorKind::WouldBlock => {
                upstream.ready = Readiness::default();
                (Phase::ConnectingUpstream { exchange, upstream }, progress)
            }
            Err(e) => {
                ctx.upstreams.close(upstream);
                self.next_upstream(
                    exchange,
                    ProxyError::UpstreamConnect(e),
                    next_upstream::ERROR,
                    ctx,
                )
            }
        }
    }

    // ===== Forwarding =====

    fn step_forwarding(
        &mut self,
        mut exchange: Exchange,
        mut upstream: UpstreamConn,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        // Client -> ring, and ring -> client.
        let mut progress = match self.pump_client(&mut exchange, ctx) {
            Ok(progress) => progress,
            Err(abort) => return self.abort(exchange, Some(upstream), abort, ctx),
        };
        if let Err(error) = self.scan_request_body(&mut exchange, ctx) {
            ctx.upstreams.close(upstream);
            return self.fail(exchange, error, ctx);
        }

        // Ring -> upstream: the request head, then the body as it is cleared.
        let head_left = exchange.buffers.upstream_head.len() - exchange.upstream_head_sent;
        if upstream.ready.writable
            && !exchange.upstream_write_failed
            && (head_left > 0 || exchange.request_body.ready() > 0)
        {
            let at = exchange.offset_ms(ctx.now);
            let buffers = &mut *exchange.buffers;
            let (outcome, from_head, from_body) = write_out(
                &mut upstream.stream,
                &mut upstream.ready,
                &buffers.upstream_head[exchange.upstream_head_sent..],
                &buffers.request,
                exchange.request_body.ready(),
            );
            match outcome {
                IoOutcome::Progress(n) => {
                    trace!("#{} * -> {n}B", ctx.slot);
                    exchange.waits.touch(Direction::UpstreamWrite, at);
                    exchange.upstream_head_sent += from_head;
                    buffers.request.consume(from_body);
                    exchange.request_body.written(from_body);
                    exchange.log.request_length += from_body as u64;
                    exchange.body_sent |= from_body > 0;
                    progress |= n > 0;
                }
                IoOutcome::Failed(e) => {
                    // The upstream may have answered and closed early; its
                    // response (or its absence) decides what happens next.
                    debug!("#{}/upstream write failed: {e}", ctx.slot);
                    exchange.upstream_write_failed = true;
                    upstream.ready.readable = true;
                    progress = true;
                }
                IoOutcome::WouldBlock | IoOutcome::Eof => {}
            }
        }

        // Upstream -> ring.
        if upstream.ready.readable && !exchange.buffers.response.is_full() {
            match read_into(
                &mut upstream.stream,
                &mut upstream.ready,
                &mut exchange.buffers.response,
            ) {
                IoOutcome::Progress(n) => {
                    trace!("#{} * <- {n}B", ctx.slot);
                    exchange
                        .waits
                        .touch(Direction::UpstreamRead, exchange.offset_ms(ctx.now));
                    exchange.response_started = true;
                    progress = true;
                }
                IoOutcome::WouldBlock => {}
                IoOutcome::Eof => return self.upstream_ended(exchange, upstream, None, ctx),
                IoOutcome::Failed(e) => {
                    return self.upstream_ended(exchange, upstream, Some(e), ctx)
                }
            }
        }

        // Response head, then body framing.
        if let ResponseState::AwaitingHead = exchange.response {
            match self.parse_response(&mut exchange, ctx) {
                Ok(parsed) => progress |= parsed,
                Err((error, condition)) => {
                    ctx.upstreams.close(upstream);
                    return self.next_upstream(exchange, error, condition, ctx);
                }
            }
        }
        if let ResponseState::Body { relay, .. } = &mut exchange.response {
            if let Err(e) = relay.scan(&mut exchange.buffers.response) {
                let reason = Abort::UpstreamBroken(format!("invalid response body framing: {e}"));
                return self.abort(exchange, Some(upstream), reason, ctx);
            }
        }
        // Ring -> client again, now that the head or more body is in.
        match self.write_client(&mut exchange, ctx) {
            Ok(wrote) => progress |= wrote,
            Err(abort) => return self.abort(exchange, Some(upstream), abort, ctx),
        }

        match &exchange.response {
            ResponseState::Body {
                relay,
                upstream_reusable,
            } if relay.fully_received() => {
                let upstream_reusable = *upstream_reusable;
                self.upstream_done(&mut exchange, upstream, upstream_reusable, ctx);
                (Phase::WritingResponse { exchange }, true)
            }
            ResponseState::Switching => {
                debug!("#{} upstream switched protocols; tunnelling", ctx.slot);
                if let Some(peer) = exchange.peer {
                    ctx.upstreams.succeeded(peer);
                }
                let tunnel = TunnelState {
                    last_activity: Mark::at(exchange.started, ctx.now),
                    ..TunnelState::default()
                };
                (
                    Phase::Tunnel {
                        exchange,
                        upstream,
                        tunnel,
                    },
                    true,
                )
            }
            _ => (Phase::Forwarding { exchange, upstream }, progress),
        }
    }

    /// Reads the client (body, or pipelined requests behind it) and writes
    /// what is queued for it. Shared by every phase that has an exchange.
    fn pump_client(
        &mut self,
        exchange: &mut Exchange,
        ctx: &mut Context<'_>,
    ) -> Result<bool, Abort> {
        let mut progress = self.write_client(exchange, ctx)?;
        if self.client_ready.readable && !self.client_eof && !exchange.buffers.request.is_full() {
            match read_into(
                &mut self.client,
                &mut self.client_ready,
                &mut exchange.buffers.request,
            ) {
                IoOutcome::Progress(n) => {
                    trace!("#{} -> * {n}B", ctx.slot);
                    exchange
                        .waits
                        .touch(Direction::ClientRead, exchange.offset_ms(ctx.now));
                    progress = true;
                }
                IoOutcome::WouldBlock => {}
                IoOutcome::Eof => {
                    self.client_eof = true;
                    progress = true;
                    if !exchange.request_body.fully_received() {
                        return Err(Abort::ClientGone(
                            "closed the connection in the middle of the request body",
                        ));
                    }
                    debug!(
                        "#{} client shut down its sending side; finishing the response",
                        ctx.slot
                    );
                }
                IoOutcome::Failed(e) => {
                    debug!("#{} client read failed: {e}", ctx.slot);
                    return Err(Abort::ClientGone("reset the connection"));
                }
            }
        }
        Ok(progress)
    }

    fn scan_request_body(
        &self,
        exchange: &mut Exchange,
        ctx: &Context<'_>,
    ) -> Result<(), ProxyError> {
        exchange
            .request_body
            .scan(&mut exchange.buffers.request)
            .map_err(ProxyError::RequestBody)?;
        let limit = exchange.settings(ctx.config).client_max_body_size;
        if limit != 0 && exchange.request_body.data_seen() > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        Ok(())
    }

    /// Writes the queued head (interim, final or ferry's own) and the body
    /// bytes cleared for the client, in one vectored write.
    fn write_client(&mut self, exchange: &mut Exchange, ctx: &Context<'_>) -> Result<bool, Abort> {
        let body_ready = match &exchange.response {
            ResponseState::Body { relay, .. } => relay.ready(),
            _ => 0,
        };
        let head_left = exchange.buffers.client_head.len() - exchange.client_head_sent;
        if !self.client_ready.writable || (head_left == 0 && body_ready == 0) {
            return Ok(false);
        }
        let at = exchange.offset_ms(ctx.now);
        let buffers = &mut *exchange.buffers;
        let (outcome, from_head, from_body) = write_out(
            &mut self.client,
            &mut self.client_ready,
            &buffers.client_head[exchange.client_head_sent..],
            &buffers.response,
            body_ready,
        );
        match outcome {
            IoOutcome::Progress(n) => {
                trace!("#{} <- * {n}B", ctx.slot);
                exchange.waits.touch(Direction::ClientWrite, at);
                exchange.client_head_sent += from_head;
                buffers.response.consume(from_body);
                exchange.log.body_bytes_sent += from_body as u64;
                exchange.log.bytes_sent += n as u64;
                if let ResponseState::Body { relay, .. } = &mut exchange.response {
                    relay.written(from_body);
                }
                Ok(n > 0)
            }
            IoOutcome::WouldBlock | IoOutcome::Eof => Ok(false),
            IoOutcome::Failed(e) => {
                debug!("#{} client write failed: {e}", ctx.slot);
                Err(Abort::ClientGone("stopped receiving the response"))
            }
        }
    }

    /// Parses response heads at the front of the response ring: relays
    /// interim (1xx) heads, and on the final head sets up the body relay and
    /// queues the client's head.
    fn parse_response(
        &self,
        exchange: &mut Exchange,
        ctx: &mut Context<'_>,
    ) -> Result<bool, (ProxyError, u16)> {
        let mut progress = false;
        let settings = exchange.route.settings(ctx.config);
        // What a 5xx may do, decided before the head borrows the buffers.
        let retry_mask = if next_upstream_allowed(exchange, u16::MAX, ctx.config)
            && ctx
                .upstreams
                .has_candidate(ctx.config, exchange.group, exchange.tried, ctx.now)
        {
            settings.next_upstream
        } else {
            0
        };
        // An interim head waits until the previous one is written out.
        while exchange.client_head_sent == exchange.buffers.client_head.len()
            && !exchange.buffers.response.is_empty()
        {
            let BufferSet {
                response: ring,
                client_head,
                extra_headers,
                ..
            } = &mut *exchange.buffers;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let bytes = ring.make_contiguous();
            let head =
                match response::parse(bytes, &mut headers, &exchange.request, settings.max_head) {
                    Ok(Some(head)) => head,
                    Ok(None) => return Ok(progress),
                    Err(e) => {
                        return Err((
                            ProxyError::UpstreamResponse(e),
                            next_upstream::INVALID_HEADER,
                        ))
                    }
                };
            client_head.clear();
            exchange.client_head_sent = 0;
            progress = true;
            if head.is_switch() {
                // The upstream agreed to the upgrade: relay its 101 and
                // become a tunnel. Nothing the client sent was forwarded
                // before this point.
                response::write_client_head(
                    &head,
                    &exchange.request,
                    ClientFraming::AsReceived,
                    false,
                    &response::ExtraFields::default(),
                    client_head,
                );
                exchange.log.status = 101;
                exchange.log.upstream_status = 101;
                exchange.log.head_received = Mark::at(exchange.started, ctx.now);
                exchange.response = ResponseState::Switching;
                let head_len = head.head_len;
                ring.consume(head_len);
                break;
            }
            if head.is_interim() {
                // HTTP/1.0 clients cannot take 1xx; a 100 after ferry's own
                // 100 would be a duplicate.
                let duplicate = head.status == 100 && exchange.sent_continue;
                if exchange.request.version == Version::Http11 && !duplicate {
                    response::write_client_head(
                        &head,
                        &exchange.request,
                        ClientFraming::AsReceived,
                        false,
                        &response::ExtraFields::default(),
                        client_head,
                    );
                }
                trace!("#{} interim response {}", ctx.slot, head.status);
                let head_len = head.head_len;
                ring.consume(head_len);
                continue;
            }
            // `proxy_next_upstream http_503` and the like: another server may
            // answer better, if one is left and nothing went to the client.
            let status_condition = next_upstream::for_status(head.status);
            if status_condition & retry_mask != 0 {
                return Err((ProxyError::UpstreamStatus(head.status), status_condition));
            }
            if let Some(peer) = exchange.peer {
                ctx.upstreams.succeeded(peer);
            }
            let (framing, keep_alive) = response::client_framing(&head, &exchange.request);
            let keep_alive = keep_alive
                && exchange.keep_alive
                && self.requests < settings.keepalive_requests
                && !settings.keepalive_timeout.is_zero();
            exchange.keep_alive = keep_alive;
            let always_end = (exchange.always_headers_end as usize).min(extra_headers.len());
            let add = if add_header_applies(head.status) {
                &extra_headers[..]
            } else {
                &extra_headers[..always_end]
            };
            let extra = response::ExtraFields {
                hide: &settings.hide_headers,
                add,
            };
            response::write_client_head(
                &head,
                &exchange.request,
                framing,
                keep_alive,
                &extra,
                client_head,
            );
            let mode = match framing {
                ClientFraming::AsReceived => RelayMode::AsReceived,
                ClientFraming::Dechunked => RelayMode::Dechunk,
            };
            exchange.log.status = head.status;
            exchange.log.upstream_status = head.status;
            exchange.log.head_received = Mark::at(exchange.started, ctx.now);
            exchange.response = ResponseState::Body {
                relay: BodyRelay::new(head.body, mode),
                upstream_reusable: head.upstream_reusable,
            };
            let head_len = head.head_len;
            ring.consume(head_len);
            break;
        }
        Ok(progress)
    }

    /// The response has been fully received: pool the upstream connection if
    /// the exchange ended exactly on its framing boundary, close it otherwise.
    fn upstream_done(
        &self,
        exchange: &mut Exchange,
        mut upstream: UpstreamConn,
        reusable: bool,
        ctx: &mut Context<'_>,
    ) {
        exchange.log.response_received = Mark::at(exchange.started, ctx.now);
        let relay_ready = match &exchange.response {
            ResponseState::Body { relay, .. } => relay.ready(),
            _ => 0,
        };
        let stray_bytes = exchange.buffers.response.len() > relay_ready;
        let request_sent = exchange.request_body.is_complete()
            && exchange.upstream_head_sent == exchange.buffers.upstream_head.len()
            && !exchange.upstream_write_failed;
        if !exchange.request_body.fully_received() {
            // The upstream answered before the whole body arrived; the rest
            // of it would be read as the next request.
            exchange.keep_alive = false;
        }
        if stray_bytes {
            warn!(
                "#{} upstream {} sent bytes after the end of its response; closing that connection",
                ctx.slot, upstream.addr
            );
        }
        // A FIN already seen means the upstream is closing this connection.
        if reusable && request_sent && !stray_bytes && !upstream.ready.read_closed {
            upstream.requests += 1;
            trace!("#{}/upstream back to the idle pool", ctx.slot);
            ctx.upstreams.check_in(ctx.config, upstream, ctx.now);
        } else {
            debug!(
                "#{}/upstream closing connection to {}",
                ctx.slot, upstream.addr
            );
            ctx.upstreams.close(upstream);
        }
    }

    /// The upstream closed (`error` is `None`) or broke its connection.
    fn upstream_ended(
        &mut self,
        mut exchange: Exchange,
        upstream: UpstreamConn,
        error: Option<std::io::Error>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let clean_end = match &mut exchange.response {
            ResponseState::Body { relay, .. } => error.is_none() && relay.finish_on_eof().is_ok(),
            _ => false,
        };
        match &mut exchange.response {
            ResponseState::Body { .. } if clean_end => {
                // A close-delimited body ends here; the client connection
                // closes after it (it was never keep-alive).
                self.upstream_done(&mut exchange, upstream, false, ctx);
                (Phase::WritingResponse { exchange }, true)
            }
            ResponseState::Body { relay, .. } => {
                let reason = match error {
                    Some(e) => format!(
                        "upstream failed after {} body bytes: {e}",
                        relay.data_seen()
                    ),
                    None => format!(
                        "upstream closed the connection after {} body bytes",
                        relay.data_seen()
                    ),
                };
                self.abort(exchange, Some(upstream), Abort::UpstreamBroken(reason), ctx)
            }
            ResponseState::AwaitingHead | ResponseState::Local | ResponseState::Switching => {
                ctx.upstreams.close(upstream);
                self.upstream_failed(exchange, ProxyError::UpstreamClosedEarly(error), ctx)
            }
        }
    }

    /// The upstream failed before sending a response head: retry once on a
    /// fresh connection if that is safe, otherwise answer 502.
    fn upstream_failed(
        &mut self,
        mut exchange: Exchange,
        error: ProxyError,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if let (true, Some(peer)) = (exchange.can_retry(), exchange.peer) {
            // The keep-alive race: the server closed an idle connection as
            // we reused it. Not the server's failure: same server, new
            // connection.
            debug!(
                "#{} pooled upstream connection failed ({error}); retrying on a new one",
                ctx.slot
            );
            exchange.retried = true;
            exchange.reused_upstream = false;
            exchange.upstream_head_sent = 0;
            exchange.upstream_write_failed = false;
            exchange.buffers.response.clear();
            exchange.log.connect_started = Mark::at(exchange.started, ctx.now);
            return self.connect_upstream(exchange, peer, ctx);
        }
        self.next_upstream(exchange, error, next_upstream::ERROR, ctx)
    }

    // ===== Tunnel =====

    /// Copies bytes both ways as they come: client -> request ring ->
    /// upstream, upstream -> response ring -> client (after the 101 head).
    /// Each direction stops reading when its ring is full (back-pressure)
    /// and, once its source ended and its ring drained, passes the end on as
    /// a write shutdown while the other direction keeps flowing.
    fn step_tunnel(
        &mut self,
        mut exchange: Exchange,
        mut upstream: UpstreamConn,
        mut tunnel: TunnelState,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let mut progress = false;
        let now = Mark::at(exchange.started, ctx.now);
        let buffers = &mut *exchange.buffers;

        // Client -> ring.
        if self.client_ready.readable && !tunnel.client_eof && !buffers.request.is_full() {
            match read_into(
                &mut self.client,
                &mut self.client_ready,
                &mut buffers.request,
            ) {
                IoOutcome::Progress(n) => {
                    trace!("#{} -> * {n}B (tunnel)", ctx.slot);
                    exchange.log.request_length += n as u64;
                    tunnel.last_activity = now;
                    progress = true;
                }
                IoOutcome::Eof => {
                    tunnel.client_eof = true;
                    progress = true;
                }
                IoOutcome::WouldBlock => {}
                IoOutcome::Failed(e) => {
                    debug!("#{} client failed in tunnel: {e}", ctx.slot);
                    return self.end_tunnel(exchange, upstream, ctx);
                }
            }
        }
        // Ring -> upstream; then the client's end, passed on.
        if upstream.ready.writable && !buffers.request.is_empty() {
            let pending = buffers.request.len();
            match write_out(
                &mut upstream.stream,
                &mut upstream.ready,
                &[],
                &buffers.request,
                pending,
            ) {
                (IoOutcome::Progress(n), _, from_body) => {
                    trace!("#{} * -> {n}B (tunnel)", ctx.slot);
                    buffers.request.consume(from_body);
                    tunnel.last_activity = now;
                    progress |= n > 0;
                }
                (IoOutcome::Failed(e), _, _) => {
                    debug!("#{} upstream failed in tunnel: {e}", ctx.slot);
                    return self.end_tunnel(exchange, upstream, ctx);
                }
                _ => {}
            }
        }
        if tunnel.client_eof && buffers.request.is_empty() && !tunnel.upstream_shut {
            let _ = upstream.stream.shutdown(Shutdown::Write);
            tunnel.upstream_shut = true;
            progress = true;
        }

        // Upstream -> ring.
        if upstream.ready.readable && !tunnel.upstream_eof && !buffers.response.is_full() {
            match read_into(
                &mut upstream.stream,
                &mut upstream.ready,
                &mut buffers.response,
            ) {
                IoOutcome::Progress(n) => {
                    trace!("#{} * <- {n}B (tunnel)", ctx.slot);
                    tunnel.last_activity = now;
                    progress = true;
                }
                IoOutcome::Eof => {
                    tunnel.upstream_eof = true;
                    progress = true;
                }
                IoOutcome::WouldBlock => {}
                IoOutcome::Failed(e) => {
                    debug!("#{} upstream failed in tunnel: {e}", ctx.slot);
                    return self.end_tunnel(exchange, upstream, ctx);
                }
            }
        }
        // Ring -> client (the 101 head first); then the upstream's end.
        let head_left = buffers.client_head.len() - exchange.client_head_sent;
        if self.client_ready.writable && (head_left > 0 || !buffers.response.is_empty()) {
            let pending = buffers.response.len();
            let head = &buffers.client_head[exchange.client_head_sent..];
            match write_out(
                &mut self.client,
                &mut self.client_ready,
                head,
                &buffers.response,
                pending,
            ) {
                (IoOutcome::Progress(n), from_head, from_body) => {
                    trace!("#{} <- * {n}B (tunnel)", ctx.slot);
                    exchange.client_head_sent += from_head;
                    buffers.response.consume(from_body);
                    exchange.log.body_bytes_sent += from_body as u64;
                    exchange.log.bytes_sent += n as u64;
                    tunnel.last_activity = now;
                    progress |= n > 0;
                }
                (IoOutcome::Failed(e), _, _) => {
                    debug!("#{} client failed in tunnel: {e}", ctx.slot);
                    return self.end_tunnel(exchange, upstream, ctx);
                }
                _ => {}
            }
        }
        let head_sent = exchange.client_head_sent == buffers.client_head.len();
        if tunnel.upstream_eof && buffers.response.is_empty() && head_sent && !tunnel.client_shut {
            let _ = self.client.shutdown(Shutdown::Write);
            tunnel.client_shut = true;
            progress = true;
        }

        if tunnel.client_shut && tunnel.upstream_shut {
            return self.end_tunnel(exchange, upstream, ctx);
        }
        (
            Phase::Tunnel {
                exchange,
                upstream,
                tunnel,
            },
            progress,
        )
    }

    /// The tunnel is over (both ends done, a failure, or the idle timeout):
    /// one access log line with the bytes both ways, then both sockets close.
    fn end_tunnel(
        &mut self,
        exchange: Exchange,
        upstream: UpstreamConn,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        debug!(
            "#{} tunnel closed: {} bytes from the client, {} to it",
            ctx.slot, exchange.log.request_length, exchange.log.body_bytes_sent
        );
        ctx.upstreams.close(upstream);
        self.log_access(&exchange, ctx);
        ctx.buffers.give_back(exchange.buffers);
        (Phase::Closed, true)
    }

    // ===== WritingResponse =====

    fn step_writing(&mut self, mut exchange: Exchange, ctx: &mut Context<'_>) -> (Phase, bool) {
        if let ResponseState::Body { relay, .. } = &mut exchange.response {
            // Dechunking clears data lazily as the front of the ring is written.
            if let Err(e) = relay.scan(&mut exchange.buffers.response) {
                let reason = Abort::UpstreamBroken(format!("invalid response body framing: {e}"));
                return self.abort(exchange, None, reason, ctx);
            }
        }
        let progress = match self.write_client(&mut exchange, ctx) {
            Ok(progress) => progress,
            Err(abort) => return self.abort(exchange, None, abort, ctx),
        };
        let head_done = exchange.client_head_sent == exchange.buffers.client_head.len();
        let body_done = match &exchange.response {
            ResponseState::Body { relay, .. } => relay.is_complete(),
            ResponseState::Local | ResponseState::AwaitingHead | ResponseState::Switching => true,
        };
        if head_done && body_done {
            return self.finish_exchange(exchange, ctx);
        }
        (Phase::WritingResponse { exchange }, progress)
    }

    /// The last byte went to the client: log, then keep the connection for
    /// the next request or close it.
    fn finish_exchange(&mut self, exchange: Exchange, ctx: &mut Context<'_>) -> (Phase, bool) {
        self.log_access(&exchange, ctx);
        let Exchange {
            mut buffers,
            keep_alive,
            request_body,
            ..
        } = exchange;
        buffers.response.clear();
        buffers.upstream_head.clear();
        buffers.client_head.clear();
        buffers.log_fields.clear();
        if keep_alive && !self.client_eof {
            trace!("#{} keeping the connection alive", ctx.slot);
            if buffers.request.is_empty() {
                ctx.buffers.give_back(buffers);
                return (Phase::Idle { since: ctx.now }, true);
            }
            // A pipelined request is already here: its head is timed from now.
            return (
                Phase::ReadingRequest {
                    buffers,
                    searched: 0,
                    since: ctx.now,
                },
                true,
            );
        }
        let unread_input = !buffers.request.is_empty() || !request_body.fully_received();
        ctx.buffers.give_back(buffers);
        self.start_closing(unread_input, ctx)
    }

    /// Closes gracefully: at once if the client has nothing more to send,
    /// otherwise through a lingering close.
    fn start_closing(&mut self, unread_input: bool, ctx: &mut Context<'_>) -> (Phase, bool) {
        if self.client_eof || !(unread_input || self.client_ready.readable) {
            return (Phase::Closed, true);
        }
        if let Err(e) = self.client.shutdown(Shutdown::Write) {
            debug!("#{} shutdown: {e}", ctx.slot);
            return (Phase::Closed, true);
        }
        (
            Phase::Lingering {
                since: ctx.now,
                last_read: ctx.now,
            },
            true,
        )
    }

    fn step_lingering(
        &mut self,
        since: Instant,
        last_read: Instant,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if !self.client_ready.readable {
            return (Phase::Lingering { since, last_read }, false);
        }
        match discard(&mut self.client, &mut self.client_ready) {
            IoOutcome::Progress(_) => (
                Phase::Lingering {
                    since,
                    last_read: ctx.now,
                },
                true,
            ),
            IoOutcome::WouldBlock => (Phase::Lingering { since, last_read }, false),
            IoOutcome::Eof | IoOutcome::Failed(_) => (Phase::Closed, true),
        }
    }

    /// Queues a response of ferry's own and moves to `WritingResponse`.
    /// `write` gets the head buffer, the keep-alive decision and whether
    /// the request was HEAD, and returns the status and the body length.
    fn answer_locally(
        &mut self,
        mut exchange: Exchange,
        config: &Config,
        write: impl FnOnce(&mut Vec<u8>, bool, bool) -> (u16, usize),
    ) -> (Phase, bool) {
        let settings = exchange.settings(config);
        let keep_alive = exchange.keep_alive
            && self.requests < settings.keepalive_requests
            && !settings.keepalive_timeout.is_zero();
        exchange.keep_alive = keep_alive;
        let head_only = exchange.request.method == Method::Head;
        let (status, body_len) = write(&mut exchange.buffers.client_head, keep_alive, head_only);
        exchange.log.status = status;
        exchange.log.body_bytes_sent = body_len as u64;
        exchange.response = ResponseState::Local;
        (Phase::WritingResponse { exchange }, true)
    }

    /// Answers with one of ferry's own pages (404 for no location).
    fn answer_page(
        &mut self,
        exchange: Exchange,
        page: ErrorResponse,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.answer_locally(exchange, ctx.config, |out, keep_alive, head_only| {
            (page.status(), page.write_to(out, keep_alive, head_only))
        })
    }

    /// `return CODE [TEXT|URL]`: a redirect with `Location`, a page of
    /// ferry's for error codes without text, or the text as the body.
    fn answer_return(
        &mut self,
        exchange: Exchange,
        status: u16,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let config: &Config = ctx.config;
        let text = match config.location(exchange.route_server(), exchange.route_location()) {
            Some(LocationConfig {
                action: Action::Return { text, .. },
                ..
            }) => text.as_deref(),
            _ => None,
        };
        self.answer_locally(exchange, config, |out, keep_alive, head_only| {
            (
                status,
                error_page::write_return(out, status, text, keep_alive, head_only),
            )
        })
    }

    /// Answers the status path with the loop's counters, as plain text.
    fn answer_status(&mut self, exchange: Exchange, ctx: &mut Context<'_>) -> (Phase, bool) {
        let counters = ctx.counters;
        let mut text = [0u8; 512];
        let mut cursor = Cursor::new(&mut text[..]);
        let _ = write!(
            cursor,
            "connections {}\nupstream_connections {}\npooled_upstream_connections {}\n\
             buffer_sets_lent {}\ntimers {}\naccepted {}\n",
            counters.connections,
            counters.upstream_connections,
            counters.pooled_upstream_connections,
            counters.buffer_sets_lent,
            counters.timers,
            counters.accepted,
        );
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        let body = text.get(..len).unwrap_or_default();
        self.answer_locally(exchange, ctx.config, |out, keep_alive, head_only| {
            (
                200,
                error_page::write_ok(out, "text/plain", body, keep_alive, head_only),
            )
        })
    }

    // ===== failures =====

    /// Answers a failure with ferry's own response if the client has not yet
    /// been sent a final response head; otherwise closes the connection.
    fn fail(
        &mut self,
        mut exchange: Exchange,
        error: ProxyError,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if exchange.response_committed() {
            return self.abort(
                exchange,
                None,
                Abort::UpstreamBroken(error.to_string()),
                ctx,
            );
        }
        let status = error.response();
        match &error {
            e if e.is_client_fault() => info!("#{} {e}, client: {}", ctx.slot, self.peer),
            ProxyError::UpstreamConnect(_) => error!(
                "#{} {error} while connecting to upstream, client: {}",
                ctx.slot, self.peer
            ),
            e => warn!("#{} {e}, client: {}", ctx.slot, self.peer),
        }
        // Keep the connection only if the request was read whole and framed
        // sanely; after a refused head or body the stream is not trustworthy.
        let keep_alive = exchange.keep_alive
            && !error.is_client_fault()
            && exchange.request_body.fully_received()
            && self.requests < exchange.settings(ctx.config).keepalive_requests
            && !exchange.settings(ctx.config).keepalive_timeout.is_zero();
        exchange.keep_alive = keep_alive;
        // Part of an interim head may still be unsent; it cannot be taken
        // back, so ferry's response follows it.
        let buffers = &mut *exchange.buffers;
        buffers.client_head.drain(..exchange.client_head_sent);
        exchange.client_head_sent = 0;
        let head_only = exchange.request.method == Method::Head;
        exchange.log.body_bytes_sent =
            status.write_to(&mut buffers.client_head, keep_alive, head_only) as u64;
        exchange.log.status = status.status();
        exchange.response = ResponseState::Local;
        (Phase::WritingResponse { exchange }, true)
    }

    /// Gives up on the exchange and closes the client connection: the
    /// client is gone, or a response already under way cannot be completed
    /// (closing is how a truncated response is made visible).
    fn abort(
        &mut self,
        exchange: Exchange,
        upstream: Option<UpstreamConn>,
        reason: Abort,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        match &reason {
            Abort::ClientGone(what) => debug!("#{} client {} {what}", ctx.slot, self.peer),
            Abort::UpstreamBroken(what) => warn!(
                "#{} {what}; closing the client connection {}",
                ctx.slot, self.peer
            ),
        }
        if let Some(upstream) = upstream {
            ctx.upstreams.close(upstream);
        }
        let mut exchange = exchange;
        if let Abort::ClientGone(_) = reason {
            if !exchange.response_committed() {
                // nginx's "client closed request".
                exchange.log.status = 499;
            }
        }
        self.log_access(&exchange, ctx);
        ctx.buffers.give_back(exchange.buffers);
        (Phase::Closed, true)
    }

    /// One access log line, in the route's format, from the values
    /// captured when the head arrived and what the exchange measured.
    fn log_access(&self, exchange: &Exchange, ctx: &mut Context<'_>) {
        let settings = exchange.settings(ctx.config);
        if settings.access_log == AccessLogTarget::Off {
            return;
        }
        let Some((_, format)) = ctx.config.log_formats.get(settings.log_format) else {
            return;
        };
        let log = &exchange.log;
        let connection = self.id;
        let connection_requests = self.requests;
        let request_time = ctx.now.saturating_duration_since(exchange.started);
        ctx.access_log
            .write_line(&settings.access_log, ctx.wall_clock, |times, line| {
                let vars = ExchangeVars {
                    status: log.status,
                    body_bytes_sent: log.body_bytes_sent,
                    bytes_sent: log.bytes_sent,
                    request_length: log.request_length,
                    request_time,
                    time_local: times.local,
                    time_iso8601: times.iso8601,
                    msec: times.since_epoch,
                    upstream_addr: exchange.peer.map(|p| p.addr),
                    upstream_status: (log.upstream_status != 0).then_some(log.upstream_status),
                    upstream_times: log.upstream_times(),
                    connection,
                    connection_requests,
                };
                format.render_log(&exchange.buffers.log_fields, &vars, line);
            });
    }
}

/// nginx adds `add_header` fields (those without `always`) to these only.
fn add_header_applies(status: u16) -> bool {
    matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// Whether `proxy_next_upstream` lets the exchange move to another server
/// after a failure of kind `condition` (see `Connection::next_upstream`).
fn next_upstream_allowed(exchange: &Exchange, condition: u16, config: &Config) -> bool {
    let settings = exchange.settings(config);
    let sent = exchange.upstream_head_sent > 0;
    settings.next_upstream & condition != 0
        && (settings.next_upstream_tries == 0
            || exchange.tried.count() < settings.next_upstream_tries)
        && !exchange.response_committed()
        && !exchange.body_sent
        && (!sent
            || exchange.request.method.is_idempotent()
            || settings.next_upstream & next_upstream::NON_IDEMPOTENT != 0)
}

/// A request head accepted by `parse_request`, routed.
struct ParsedRequest {
    summary: RequestSummary,
    server: usize,
    location: Option<usize>,
    target: Target,
    /// The `hash` key's hash, for groups that balance by one.
    key_hash: u32,
    /// `add_header … always` lines end here in `extra_headers`; the rest
    /// apply to 2xx and 3xx only.
    always_headers_end: u32,
    /// The client's head, in bytes (`$request_length` starts with it).
    head_len: usize,
}

/// Where a routed request goes.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The upstream group with this index (head already written).
    Upstream(usize),
    /// `return CODE …` of the location.
    Return(u16),
    /// No location, or one with nothing to do.
    NotFound,
    /// `deny` matched the client.
    Forbidden,
    /// The configured status path.
    Status,
}

/// Why an exchange is abandoned without a response.
enum Abort {
    ClientGone(&'static str),
    UpstreamBroken(String),
}

impl RequestSummary {
    /// Stands in for a request whose head could not be parsed.
    fn unparsed() -> RequestSummary {
        RequestSummary {
            method: Method::Other,
            version: Version::Http11,
            body: BodyKind::Empty,
            keep_alive: false,
            expect_continue: false,
            upgrade: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_is_small() {
        // The slab stores every connection at this size; idle ones hold no
        // buffer besides it. See the 512 B budget in docs/architecture.md.
        assert!(
            mem::size_of::<Connection>() <= 512,
            "{}",
            mem::size_of::<Connection>()
        );
    }
}

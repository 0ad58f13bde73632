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

use std::io::ErrorKind;
use std::mem;
use std::net::{Shutdown, SocketAddr};
use std::time::{Instant, SystemTime};

use log::{debug, error, info, trace, warn};
use mio::net::TcpStream;
use mio::Registry;

use self::io::{discard, read_into, write_out, IoOutcome, Readiness};
use self::phase::{Exchange, ExchangeLog, Phase, ResponseState};
use self::relay::{BodyRelay, RelayMode};
use crate::buffer::{BufferPool, BufferSet};
use crate::config::Config;
use crate::error::ProxyError;
use crate::http::error_page::CONTINUE;
use crate::http::framing::BodyKind;
use crate::http::request::{self, Method, RequestSummary};
use crate::http::response::{self, ClientFraming};
use crate::http::{self as http, Version, MAX_HEADERS};
use crate::log::{AccessEntry, AccessLog};
use crate::upstream::{UpstreamConn, Upstreams};

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
    pub upstreams: &'a mut Upstreams,
    pub access_log: &'a mut AccessLog,
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
    /// The timer entry the event loop holds for this connection.
    pub scheduled: Option<Instant>,
}

impl Connection {
    pub fn new(id: u64, client: TcpStream, peer: SocketAddr) -> Connection {
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
            phase: Phase::Idle,
            client_eof: false,
            requests: 0,
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

    /// When this connection next needs attention without an event.
    pub fn deadline(&self, config: &Config) -> Option<Instant> {
        match self.phase {
            Phase::Lingering { since, last_read } => {
                Some((since + config.lingering_time).min(last_read + config.lingering_timeout))
            }
            _ => None,
        }
    }

    /// The deadline passed.
    pub fn on_deadline(&mut self, ctx: &mut Context<'_>) {
        if let Phase::Lingering { .. } = self.phase {
            debug!("#{} lingering close timed out", ctx.slot);
            self.set_phase("Lingering", Phase::Closed, ctx.slot);
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
                return Driven::Waiting;
            }
        }
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
            Phase::Idle | Phase::Lingering { .. } | Phase::Closed => {}
        }
    }

    /// The one transition function: takes the phase, returns the next one and
    /// whether anything moved.
    fn step(&mut self, phase: Phase, ctx: &mut Context<'_>) -> (Phase, bool) {
        match phase {
            Phase::Idle => self.step_idle(ctx),
            Phase::ReadingRequest { buffers, searched } => {
                self.step_reading(buffers, searched, ctx)
            }
            Phase::ConnectingUpstream { exchange, upstream } => {
                self.step_connecting(exchange, upstream, ctx)
            }
            Phase::Forwarding { exchange, upstream } => {
                self.step_forwarding(exchange, upstream, ctx)
            }
            Phase::WritingResponse { exchange } => self.step_writing(exchange, ctx),
            Phase::Lingering { since, last_read } => self.step_lingering(since, last_read, ctx),
            Phase::Closed => (Phase::Closed, false),
        }
    }

    // ===== Idle and ReadingRequest =====

    fn step_idle(&mut self, ctx: &mut Context<'_>) -> (Phase, bool) {
        if !self.client_ready.readable {
            return (Phase::Idle, false);
        }
        let buffers = ctx.buffers.take();
        (
            Phase::ReadingRequest {
                buffers,
                searched: 0,
            },
            true,
        )
    }

    fn step_reading(
        &mut self,
        mut buffers: Box<BufferSet>,
        searched: usize,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let held = buffers.request.len();
        let mut searched = searched;
        if held > searched {
            let max_head = ctx.config.max_head;
            let bytes = buffers.request.make_contiguous();
            if http::head_may_be_complete(bytes, searched) || held >= max_head {
                match self.parse_request(&mut buffers, ctx) {
                    Ok(Some((summary, fields))) => {
                        return self.start_exchange(buffers, summary, fields, ctx)
                    }
                    Ok(None) => {}
                    Err(error) => {
                        let fields = LogFields::default();
                        let exchange =
                            self.new_exchange(buffers, RequestSummary::unparsed(), fields, ctx);
                        return self.fail(exchange, error, ctx);
                    }
                }
            }
            searched = held;
        }
        if !self.client_ready.readable {
            return (Phase::ReadingRequest { buffers, searched }, false);
        }
        match read_into(
            &mut self.client,
            &mut self.client_ready,
            &mut buffers.request,
        ) {
            IoOutcome::Progress(n) => {
                trace!("#{} -> * {n}B", ctx.slot);
                (Phase::ReadingRequest { buffers, searched }, true)
            }
            IoOutcome::WouldBlock if buffers.request.is_empty() => {
                ctx.buffers.give_back(buffers);
                (Phase::Idle, true)
            }
            IoOutcome::WouldBlock => (Phase::ReadingRequest { buffers, searched }, false),
            IoOutcome::Eof => {
                if !buffers.request.is_empty() {
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

    /// Parses the head at the front of `buffers.request`; on success writes
    /// the upstream's head and the log fields, and consumes the client's head.
    fn parse_request(
        &self,
        buffers: &mut BufferSet,
        ctx: &Context<'_>,
    ) -> Result<Option<(RequestSummary, LogFields)>, ProxyError> {
        let BufferSet {
            request: ring,
            upstream_head,
            log_fields,
            ..
        } = buffers;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let bytes = ring.make_contiguous();
        let head = match request::parse(bytes, &mut headers, ctx.config.max_head) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            Err(e) => return Err(ProxyError::Request(e)),
        };
        let mut offsets = LogFields::default();
        if ctx.access_log.is_enabled() {
            let field = |name: &str| {
                head.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map_or(&b""[..], |h| h.value)
            };
            log_fields.clear();
            log_fields.extend_from_slice(head.method.as_bytes());
            log_fields.push(b' ');
            log_fields.extend_from_slice(head.target.as_bytes());
            log_fields.push(b' ');
            log_fields.extend_from_slice(head.version.as_str().as_bytes());
            offsets.request_line_end = log_fields.len();
            log_fields.extend_from_slice(field("referer"));
            offsets.referer_end = log_fields.len();
            log_fields.extend_from_slice(field("user-agent"));
        }
        let fallback_host = ctx.config.upstream_host();
        request::write_upstream_head(&head, self.peer.ip(), fallback_host, upstream_head);
        let (summary, head_len) = (head.summary, head.head_len);
        ring.consume(head_len);
        Ok(Some((summary, offsets)))
    }

    fn new_exchange(
        &self,
        buffers: Box<BufferSet>,
        request: RequestSummary,
        fields: LogFields,
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
            log: ExchangeLog {
                request_line_end: fields.request_line_end,
                referer_end: fields.referer_end,
                ..ExchangeLog::default()
            },
        }
    }

    /// A valid head arrived: check its body against the limit, answer
    /// `Expect: 100-continue`, and get an upstream connection.
    fn start_exchange(
        &mut self,
        buffers: Box<BufferSet>,
        summary: RequestSummary,
        fields: LogFields,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.requests += 1;
        let mut exchange = self.new_exchange(buffers, summary, fields, ctx);
        debug!("#{} request {} from {}", ctx.slot, self.requests, self.peer);
        let limit = ctx.config.client_max_body_size;
        if let BodyKind::Length(length) = summary.body {
            if limit != 0 && length > limit {
                return self.fail(exchange, ProxyError::BodyTooLarge { limit }, ctx);
            }
        }
        if summary.expect_continue && exchange.buffers.request.is_empty() {
            exchange.buffers.client_head.extend_from_slice(CONTINUE);
            exchange.sent_continue = true;
        }
        let addr = ctx.config.upstream;
        match ctx.upstreams.checkout(addr, ctx.slot) {
            Some(upstream) => {
                debug!(
                    "#{}/upstream reusing a pooled connection to {addr}",
                    ctx.slot
                );
                exchange.reused_upstream = true;
                exchange.log.upstream = Some(addr);
                exchange.log.connect_time = Some(std::time::Duration::ZERO);
                (Phase::Forwarding { exchange, upstream }, true)
            }
            None => self.connect_upstream(exchange, ctx),
        }
    }

    fn connect_upstream(&mut self, mut exchange: Exchange, ctx: &mut Context<'_>) -> (Phase, bool) {
        let addr = ctx.config.upstream;
        exchange.log.upstream = Some(addr);
        exchange.log.connect_started = Some(ctx.now);
        match ctx.upstreams.connect(addr, ctx.slot, ctx.registry) {
            Ok(upstream) => {
                debug!("#{}/upstream connecting to {addr}", ctx.slot);
                (Phase::ConnectingUpstream { exchange, upstream }, true)
            }
            Err(e) => self.fail(exchange, ProxyError::UpstreamConnect(e), ctx),
        }
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
                exchange.log.connect_time = exchange
                    .log
                    .connect_started
                    .map(|t| ctx.now.saturating_duration_since(t));
                debug!("#{}/upstream connected to {}", ctx.slot, upstream.addr);
                (Phase::Forwarding { exchange, upstream }, true)
            }
            Err(e) if e.kind() == ErrorKind::NotConnected || e.kind() == ErrorKind::WouldBlock => {
                upstream.ready = Readiness::default();
                (Phase::ConnectingUpstream { exchange, upstream }, progress)
            }
            Err(e) => {
                ctx.upstreams.close(upstream);
                self.fail(exchange, ProxyError::UpstreamConnect(e), ctx)
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
                    exchange.upstream_head_sent += from_head;
                    buffers.request.consume(from_body);
                    exchange.request_body.written(from_body);
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
                Err(error) => {
                    ctx.upstreams.close(upstream);
                    return self.fail(exchange, error, ctx);
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
        let limit = ctx.config.client_max_body_size;
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
                exchange.client_head_sent += from_head;
                buffers.response.consume(from_body);
                exchange.log.body_bytes_sent += from_body as u64;
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
        ctx: &Context<'_>,
    ) -> Result<bool, ProxyError> {
        let mut progress = false;
        // An interim head waits until the previous one is written out.
        while exchange.client_head_sent == exchange.buffers.client_head.len()
            && !exchange.buffers.response.is_empty()
        {
            let BufferSet {
                response: ring,
                client_head,
                ..
            } = &mut *exchange.buffers;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let bytes = ring.make_contiguous();
            let head = match response::parse(
                bytes,
                &mut headers,
                &exchange.request,
                ctx.config.max_head,
            ) {
                Ok(Some(head)) => head,
                Ok(None) => return Ok(progress),
                Err(e) => return Err(ProxyError::UpstreamResponse(e)),
            };
            client_head.clear();
            exchange.client_head_sent = 0;
            progress = true;
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
                        client_head,
                    );
                }
                trace!("#{} interim response {}", ctx.slot, head.status);
                let head_len = head.head_len;
                ring.consume(head_len);
                continue;
            }
            let (framing, keep_alive) = response::client_framing(&head, &exchange.request);
            let keep_alive =
                keep_alive && exchange.keep_alive && self.requests < ctx.config.keepalive_requests;
            exchange.keep_alive = keep_alive;
            response::write_client_head(&head, &exchange.request, framing, keep_alive, client_head);
            let mode = match framing {
                ClientFraming::AsReceived => RelayMode::AsReceived,
                ClientFraming::Dechunked => RelayMode::Dechunk,
            };
            exchange.log.status = head.status;
            exchange.log.upstream_status = Some(head.status);
            exchange.log.header_time = Some(ctx.now.saturating_duration_since(exchange.started));
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
        exchange.log.response_time = Some(ctx.now.saturating_duration_since(exchange.started));
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
            ctx.upstreams.check_in(upstream);
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
            ResponseState::AwaitingHead | ResponseState::Local => {
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
        if exchange.can_retry() {
            debug!(
                "#{} pooled upstream connection failed ({error}); retrying on a new one",
                ctx.slot
            );
            exchange.retried = true;
            exchange.reused_upstream = false;
            exchange.upstream_head_sent = 0;
            exchange.upstream_write_failed = false;
            exchange.buffers.response.clear();
            return self.connect_upstream(exchange, ctx);
        }
        self.fail(exchange, error, ctx)
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
            ResponseState::Local | ResponseState::AwaitingHead => true,
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
                return (Phase::Idle, true);
            }
            return (
                Phase::ReadingRequest {
                    buffers,
                    searched: 0,
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
            && self.requests < ctx.config.keepalive_requests;
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

    fn log_access(&self, exchange: &Exchange, ctx: &mut Context<'_>) {
        if !ctx.access_log.is_enabled() {
            return;
        }
        let fields = &exchange.buffers.log_fields;
        let line_end = exchange.log.request_line_end.min(fields.len());
        let referer_end = exchange.log.referer_end.clamp(line_end, fields.len());
        let entry = AccessEntry {
            client: self.peer,
            request_line: &fields[..line_end],
            status: exchange.log.status,
            body_bytes_sent: exchange.log.body_bytes_sent,
            referer: &fields[line_end..referer_end],
            user_agent: &fields[referer_end..],
            upstream: exchange.log.upstream,
            upstream_status: exchange.log.upstream_status,
            request_time: ctx.now.saturating_duration_since(exchange.started),
            upstream_connect_time: exchange.log.connect_time,
            upstream_header_time: exchange.log.header_time,
            upstream_response_time: exchange.log.response_time,
        };
        ctx.access_log.record(&entry, ctx.wall_clock);
    }
}

/// Where the access log's request line and Referer end in
/// `BufferSet::log_fields` (User-Agent follows).
#[derive(Clone, Copy, Default)]
struct LogFields {
    request_line_end: usize,
    referer_end: usize,
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

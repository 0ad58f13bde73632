//! The upstream side of an exchange: choosing a server, connecting to it,
//! retrying on another one, and ending the connection to it.
//!
//! This is the one place to read for "what happens when the upstream
//! refuses the connection": `step_connecting` sees the refusal,
//! `upstream_failed` decides between `next_upstream` (another server, per
//! `proxy_next_upstream`) and a 502 through `Connection::fail`. When a
//! response is complete, `upstream_done` decides whether the connection
//! goes back to the keep-alive pool.
//!
//! In the course (docs/learn): chapter 4 (the non-blocking connect, the 502)
//! and chapter 6 (the pool, the retry); chapter 7, step 5.

use std::io::ErrorKind;
use std::time::Instant;

use log::{debug, error, trace, warn};

use super::io::Readiness;
use super::phase::{Direction, Exchange, Mark, Phase, ResponseState};
use super::{Abort, Connection, Context};
use crate::config::next_upstream::{self, NON_IDEMPOTENT};
use crate::config::Config;
use crate::error::ProxyError;
use crate::http::framing::FramingError;
use crate::upstream::{Peer, UpstreamConn};
use crate::variables::UpstreamAttempt;

impl Connection {
    /// Picks a server of the exchange's group (skipping those already
    /// tried) and gets a connection to it: pooled, or a new one. `last_error`
    /// is what made the previous server fail, reported if none is left.
    pub(super) fn choose_upstream(
        &mut self,
        mut exchange: Exchange,
        last_error: Option<ProxyError>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let client = exchange.client.ip();
        let picked = ctx.upstreams.pick(
            &ctx.config,
            exchange.group as usize,
            client,
            exchange.key_hash,
            ctx.now,
            exchange.tried,
        );
        let Some(peer) = picked else {
            return match last_error {
                // The last server's failure was logged when it happened.
                Some(error) => self.answer_error(exchange, error, ctx),
                None => {
                    let name = ctx
                        .config
                        .upstreams
                        .get(exchange.group as usize)
                        .map_or("", |g| g.name.as_str());
                    let context = self.error_context(&exchange, ctx);
                    error!(
                        "#{} no live upstreams while connecting to upstream \"{name}\"{context}",
                        ctx.slot
                    );
                    self.answer_error(exchange, ProxyError::NoLiveUpstreams, ctx)
                }
            };
        };
        exchange.tried.add(peer.server as usize);
        exchange.peer = Some(peer);
        exchange.log.connect_started = exchange.mark(ctx.now_ms);
        let tls_id = exchange.route.upstream_tls(&ctx.config).map_or(0, tls_id);
        if let Some(upstream) = ctx.upstreams.checkout(&ctx.config, peer, ctx.slot, tls_id) {
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
        let config = std::rc::Rc::clone(&ctx.config);
        let tls = exchange.route.upstream_tls(&config).cloned();
        match ctx
            .upstreams
            .connect(&config, peer, ctx.slot, ctx.registry, tls.as_ref())
        {
            Ok(upstream) => {
                debug!("#{}/upstream connecting to {}", ctx.slot, peer.addr);
                (Phase::ConnectingUpstream { exchange, upstream }, true)
            }
            Err(e) => self.next_upstream(
                exchange,
                None,
                ProxyError::UpstreamConnect(e),
                next_upstream::ERROR,
                ctx,
            ),
        }
    }

    /// The chosen server failed before its response reached the client:
    /// close its connection (`failed`, if one was open: it is never reused),
    /// count the failure, then try the next server if `proxy_next_upstream`
    /// allows it for `condition`, or answer with `error`.
    ///
    /// nginx's rules: never once a response byte went to the client; for a
    /// request already sent, never if it is not idempotent (unless
    /// `non_idempotent`); at most `proxy_next_upstream_tries` servers. And
    /// ferry's own: never once body bytes were streamed, since it does not
    /// keep them.
    pub(super) fn next_upstream(
        &mut self,
        mut exchange: Exchange,
        failed: Option<UpstreamConn>,
        error: ProxyError,
        condition: u16,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if let Some(upstream) = failed {
            ctx.upstreams.close(&ctx.config, upstream);
        }
        // nginx: error, timeout and invalid_header always count against
        // max_fails; an http_5xx status when proxy_next_upstream names it
        // (it reaches here only then). http_403/404 never would.
        let counts_as_failure = condition & !next_upstream::NON_IDEMPOTENT != 0;
        if let (Some(peer), true) = (exchange.peer, counts_as_failure) {
            ctx.upstreams.failed(&ctx.config, peer, ctx.now);
        }
        if exchange.response_committed() {
            // Too late for another server or an answer of ferry's own: the
            // client connection closes (`abort` says why in the log).
            return self.answer_error(exchange, error, ctx);
        }
        let moving_on = next_upstream_allowed(&exchange, condition, &ctx.config, ctx.now)
            && ctx.upstreams.has_candidate(
                &ctx.config,
                exchange.group as usize,
                exchange.tried,
                ctx.now,
            );
        // One line per failed attempt, with nginx's context.
        let then = if moving_on {
            "; trying the next one"
        } else {
            ""
        };
        {
            let context = self.error_context(&exchange, ctx);
            let during = error.during();
            match &error {
                ProxyError::UpstreamConnect(_)
                | ProxyError::UpstreamTls(_)
                | ProxyError::UpstreamTimeout(_) => {
                    error!("#{} {error}{during}{context}{then}", ctx.slot)
                }
                _ => warn!("#{} {error}{during}{context}{then}", ctx.slot),
            }
        }
        if !moving_on {
            // The last attempt: the access log shows what became of it.
            let ended = exchange.mark(ctx.now_ms);
            let log = &mut exchange.log;
            if log.upstream_status == 0 {
                log.upstream_status = error.upstream_status();
            }
            if log.response_received == Mark::NONE {
                log.response_received = ended;
            }
            return self.answer_error(exchange, error, ctx);
        }
        end_attempt(&mut exchange, error.upstream_status(), ctx.now_ms);
        self.choose_upstream(exchange, Some(error), ctx)
    }

    pub(super) fn step_connecting(
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
        let result = if upstream.stream.handshake_started() {
            Ok(())
        } else {
            // mio: a writable event after connect() means done or failed;
            // the socket's pending error tells which, its peer's address
            // rules out a spurious wakeup.
            let connected = upstream.stream.connect_result();
            if connected.is_ok() {
                if let Err(e) = upstream.stream.set_nodelay() {
                    debug!("#{}/upstream TCP_NODELAY: {e}", ctx.slot);
                }
            }
            connected
        };
        match result {
            Ok(()) => {
                // TLS (`proxy_pass https://`): the handshake, under the
                // same proxy_connect_timeout, as in nginx.
                match upstream.stream.advance_upstream_handshake() {
                    Ok(true) => {
                        if let Some(resumed) = upstream.stream.tls_resumed() {
                            ctx.stats.upstream_tls_handshakes.add(1);
                            if resumed {
                                ctx.stats.upstream_tls_resumed.add(1);
                            }
                        }
                    }
                    Ok(false) => {
                        trace!("#{}/upstream TLS handshake under way", ctx.slot);
                        upstream.ready = Readiness::default();
                        return (Phase::ConnectingUpstream { exchange, upstream }, progress);
                    }
                    Err(e) => {
                        ctx.stats.upstream_tls_failures.add(1);
                        return self.next_upstream(
                            exchange,
                            Some(upstream),
                            ProxyError::UpstreamTls(e.to_string()),
                            next_upstream::ERROR,
                            ctx,
                        );
                    }
                }
                exchange.log.connected = exchange.mark(ctx.now_ms);
                debug!(
                    "#{}/upstream connected to {}",
                    ctx.slot,
                    exchange.upstream_addr()
                );
                (Phase::Forwarding { exchange, upstream }, true)
            }
            Err(e) if e.kind() == ErrorKind::NotConnected || e.kind() == ErrorKind::WouldBlock => {
                upstream.ready = Readiness::default();
                (Phase::ConnectingUpstream { exchange, upstream }, progress)
            }
            Err(e) => self.next_upstream(
                exchange,
                Some(upstream),
                ProxyError::UpstreamConnect(e),
                next_upstream::ERROR,
                ctx,
            ),
        }
    }

    /// The response has been fully received: pool the upstream connection if
    /// the exchange ended exactly on its framing boundary, close it otherwise.
    pub(super) fn upstream_done(
        &self,
        exchange: &mut Exchange,
        mut upstream: UpstreamConn,
        reusable: bool,
        ctx: &mut Context<'_>,
    ) {
        exchange.log.response_received = exchange.mark(ctx.now_ms);
        let body_held = match &exchange.response {
            ResponseState::Body { relay, .. } => relay.held(),
            _ => 0,
        };
        let stray_bytes = exchange.buffers.response.len() > body_held;
        let request_sent = exchange.request_body.is_complete()
            && exchange.upstream_head_sent == exchange.buffers.upstream_head.len()
            && !exchange.upstream_write_failed;
        if !exchange.request_body.fully_received() && !exchange.request_body.is_discarding() {
            // The upstream answered before the whole body arrived; the rest
            // of it would be read as the next request. (A body not passed
            // upstream is read to its end by `step_writing` instead.)
            exchange.keep_alive = false;
        }
        if stray_bytes {
            warn!(
                "#{} upstream {} sent bytes after the end of its response; closing that connection",
                ctx.slot,
                exchange.upstream_addr()
            );
        }
        // A FIN already seen means the upstream is closing this connection.
        if reusable && request_sent && !stray_bytes && !upstream.ready.read_closed {
            upstream.requests += 1;
            trace!("#{}/upstream back to the idle pool", ctx.slot);
            ctx.upstreams.check_in(&ctx.config, upstream, ctx.now);
        } else {
            debug!(
                "#{}/upstream closing connection to {}",
                ctx.slot,
                exchange.upstream_addr()
            );
            ctx.upstreams.close(&ctx.config, upstream);
        }
    }

    /// The upstream's chunked body framing is invalid (RFC 9112 §7.1): its
    /// bytes never reach the client as sent. If the response head is still
    /// only queued, it is taken back and the client gets a 502; once it is
    /// on its way, closing the client connection is the only honest end.
    pub(super) fn upstream_body_invalid(
        &mut self,
        mut exchange: Exchange,
        upstream: Option<UpstreamConn>,
        error: FramingError,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if let Some(upstream) = upstream {
            ctx.upstreams.close(&ctx.config, upstream);
        }
        if exchange.client_head_sent > 0 {
            let reason = format!("{}", ProxyError::UpstreamBody(error));
            return self.abort(exchange, None, Abort::UpstreamBroken(reason), ctx);
        }
        exchange.buffers.client_head.clear();
        exchange.buffers.response.clear();
        exchange.response = ResponseState::AwaitingHead;
        exchange.log.status = 0;
        self.fail(exchange, ProxyError::UpstreamBody(error), ctx)
    }

    /// The upstream closed (`error` is `None`) or broke its connection.
    pub(super) fn upstream_ended(
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
            ResponseState::AwaitingHead
            | ResponseState::Local
            | ResponseState::Switching
            | ResponseState::File { .. } => {
                ctx.upstreams.close(&ctx.config, upstream);
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
            restart_attempt(&mut exchange);
            exchange.log.connect_started = exchange.mark(ctx.now_ms);
            return self.connect_upstream(exchange, peer, ctx);
        }
        self.next_upstream(exchange, None, error, next_upstream::ERROR, ctx)
    }
}

/// Whether `proxy_next_upstream` lets the exchange move to another server
/// after a failure of kind `condition` (see `Connection::next_upstream`):
/// within `proxy_next_upstream_tries` servers and, counted from the first
/// attempt, `proxy_next_upstream_timeout`.
pub(super) fn next_upstream_allowed(
    exchange: &Exchange,
    condition: u16,
    config: &Config,
    now: Instant,
) -> bool {
    let settings = exchange.settings(config);
    let sent = exchange.upstream_head_sent > 0;
    let timeout = settings.next_upstream_timeout;
    settings.next_upstream & condition != 0
        && (settings.next_upstream_tries == 0
            || exchange.tried.count() < settings.next_upstream_tries)
        && (timeout.is_zero() || now.saturating_duration_since(exchange.started) < timeout)
        && !exchange.response_committed()
        && !exchange.body_sent
        && (!sent
            || exchange.request.method.is_idempotent()
            || settings.next_upstream & NON_IDEMPOTENT != 0)
}

/// The attempt on the current server failed with `status` (as nginx
/// records it): it joins the `$upstream_*` lists, and the exchange is
/// ready for an attempt on another server.
fn end_attempt(exchange: &mut Exchange, status: u16, now_ms: u64) {
    if let Some(peer) = exchange.peer.take() {
        let ended = exchange.mark(now_ms);
        let log = &mut exchange.log;
        log.response_received = ended;
        let times = log.upstream_times();
        exchange.buffers.attempts.push(UpstreamAttempt {
            addr: peer.addr,
            status: Some(status),
            times,
        });
    }
    let log = &mut exchange.log;
    log.connect_started = Mark::NONE;
    log.connected = Mark::NONE;
    log.head_received = Mark::NONE;
    log.response_received = Mark::NONE;
    log.upstream_status = 0;
    restart_attempt(exchange);
}

/// Forgets what the last attempt did upstream, so the next one starts
/// clean: its request head unsent, no response, and fresh clocks for
/// `proxy_send_timeout` and `proxy_read_timeout` (the last attempt's
/// must not cut the next one short).
fn restart_attempt(exchange: &mut Exchange) {
    exchange.upstream_head_sent = 0;
    exchange.upstream_write_failed = false;
    exchange.response_started = false;
    exchange.reused_upstream = false;
    exchange.response = ResponseState::AwaitingHead;
    exchange.log.status = 0;
    exchange.buffers.response.clear();
    exchange.waits.clear(Direction::UpstreamRead);
    exchange.waits.clear(Direction::UpstreamWrite);
}

/// The pool's name for a location's TLS settings (see `UpstreamTls::id`).
#[cfg(feature = "tls")]
fn tls_id(tls: &crate::config::UpstreamTlsRef) -> u64 {
    tls.id
}

#[cfg(not(feature = "tls"))]
fn tls_id(tls: &crate::config::UpstreamTlsRef) -> u64 {
    match *tls {}
}

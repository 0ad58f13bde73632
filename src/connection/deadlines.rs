//! Time in a connection's life: the deadline of each phase (every phase
//! but `Closed` has one, so no connection can wait forever), what happens
//! when it passes (nginx's timeout for that phase), and the clocks of the
//! directions a busy exchange waits on, refreshed after every `drive`.
//!
//! In the course (docs/learn): chapter 4's exercise 2 (a deadline per state),
//! at full size.

use std::mem;
use std::time::Instant;

use log::{debug, error};

use super::phase::{Direction, Phase, ResponseState};
use super::{authenticating, Connection, Context};
use crate::config::next_upstream;
use crate::error::ProxyError;

impl Connection {
    /// When this connection next needs attention without an event. Every
    /// phase but `Closed` has one, so no connection can wait forever.
    pub fn deadline(&self) -> Option<Instant> {
        let config = &*self.config;
        match &self.phase {
            Phase::Idle { since } if self.requests == 0 => {
                Some(*since + self.server_settings().client_header_timeout)
            }
            Phase::Idle { since } => Some(*since + self.server_settings().keepalive_timeout),
            Phase::ReadingRequest { since, .. } => {
                Some(*since + self.server_settings().client_header_timeout)
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
                let timeout = exchange.next_timeout(config).map(|(at, _)| at);
                match (timeout, exchange.paced_until()) {
                    (Some(at), Some(paced)) => Some(at.min(paced)),
                    (at, paced) => at.or(paced),
                }
            }
            // A check that should take milliseconds: the header timeout
            // only guards against a stuck thread.
            Phase::Authenticating(waiting) => {
                Some(waiting.since + self.server_settings().client_header_timeout)
            }
            Phase::Delayed(waiting) => waiting.until,
            Phase::Stream(session) => session.deadline(config),
            Phase::Lingering { since, last_read } => Some(
                (*since + self.server_settings().lingering_time)
                    .min(*last_read + self.server_settings().lingering_timeout),
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
                // A graceful close: TLS says so (nginx does too).
                self.client.close_notify();
                (Phase::Closed, true)
            }
            Phase::ReadingRequest { buffers, .. } if buffers.request.is_empty() => {
                ctx.buffers.give_back(buffers);
                (Phase::Closed, true)
            }
            Phase::ReadingRequest { buffers, .. } => {
                let exchange = self.unparsed_exchange(buffers, ctx);
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
                    + exchange.settings(&ctx.config).proxy_connect_timeout;
                if connect_deadline <= ctx.now {
                    let error = ProxyError::UpstreamTimeout("proxy_connect_timeout");
                    self.next_upstream(exchange, Some(upstream), error, next_upstream::TIMEOUT, ctx)
                } else {
                    self.timed_out(exchange, Some(upstream), ctx)
                }
            }
            // `limit_rate`: the next write may go.
            Phase::Forwarding { exchange, upstream }
                if exchange.pacing_due(ctx.now, &ctx.config) =>
            {
                (Phase::Forwarding { exchange, upstream }, true)
            }
            Phase::WritingResponse { exchange } if exchange.pacing_due(ctx.now, &ctx.config) => {
                (Phase::WritingResponse { exchange }, true)
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
            Phase::Authenticating(waiting) => {
                error!("#{} the password check did not finish in time", ctx.slot);
                authenticating::abandon(*waiting, ctx);
                (Phase::Closed, true)
            }
            Phase::Delayed(waiting) => self.end_delay(waiting, ctx),
            Phase::Stream(session) => self.stream_deadline(session, ctx),
            Phase::Lingering { .. } => {
                debug!("#{} lingering close timed out", ctx.slot);
                (Phase::Closed, true)
            }
            Phase::Closed => (Phase::Closed, false),
        };
        self.set_phase(from, next, ctx.slot);
    }

    /// Starts, restarts or stops each direction's timeout clock from what
    /// the exchange is waiting for now. Called after every `drive`.
    pub(super) fn refresh_waits(&mut self, now_ms: u64) {
        let client_eof = self.client_eof;
        let (exchange, forwarding) = match &mut self.phase {
            Phase::ConnectingUpstream { exchange, .. } | Phase::WritingResponse { exchange } => {
                (exchange, false)
            }
            Phase::Forwarding { exchange, .. } => (exchange, true),
            _ => return,
        };
        let at = exchange.offset_ms(now_ms);
        let buffers = &exchange.buffers;
        let (response_received, body_ready) = match &exchange.response {
            ResponseState::AwaitingHead => (false, false),
            ResponseState::Body { relay, .. } => (
                relay.fully_received(),
                match &exchange.gzip {
                    Some(stream) => !stream.output().is_empty(),
                    None => relay.has_output(),
                },
            ),
            ResponseState::Local | ResponseState::Switching => (true, false),
            ResponseState::File { remaining, .. } => {
                (true, *remaining > 0 || !buffers.response.is_empty())
            }
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
                // A write `limit_rate` holds back waits for its timer, not
                // for the client (no `send_timeout`).
                (exchange.client_head_sent < buffers.client_head.len() || body_ready)
                    && exchange.paced_until == 0,
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
                    && (upstream_head_left || exchange.request_body.has_output()),
            ),
        ];
        for (direction, is_blocked) in blocked {
            exchange.waits.update(direction, is_blocked, at);
        }
    }
}

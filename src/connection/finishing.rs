//! The end of an exchange: `WritingResponse` drains what is queued for the
//! client (TLS records included), then the connection is kept for the next
//! request or closed — at once, or through a lingering close while the
//! client may still be sending.
//!
//! In the course (docs/learn): chapter 6 (keep-alive, decided from both
//! messages) and chapter 7, step 8.

use std::time::Instant;

use log::{debug, trace};

use super::io::{discard, IoOutcome};
use super::phase::{Exchange, Phase, ResponseState};
use super::transport::Transport;
use super::{Abort, Connection, Context};
use crate::status::StatusPage;

impl Connection {
    pub(super) fn step_writing(
        &mut self,
        mut exchange: Exchange,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if self.wants_connection_list {
            return self.answer_stub_status(exchange, StatusPage::Connections, ctx);
        }
        if let ResponseState::Body { relay, .. } = &mut exchange.state.response {
            // Dechunking clears data lazily as the front of the ring is written.
            if let Err(e) = relay.scan(&mut exchange.buffers.response) {
                return self.upstream_body_invalid(exchange, None, e, ctx);
            }
        }
        let filled = match self.fill_from_file(&mut exchange, ctx) {
            Ok(filled) => filled,
            Err(abort) => return self.abort(exchange, None, abort, ctx),
        };
        if exchange.gzip.is_some() {
            super::forwarding::compress_body(&mut exchange);
        }
        // A body not passed upstream is read to its end, as nginx discards
        // one, so that the connection can take the next request.
        let discarding =
            exchange.request_body.is_discarding() && !exchange.request_body.fully_received();
        let written = if discarding {
            self.pump_client(&mut exchange, ctx)
        } else {
            self.write_client(&mut exchange, ctx)
        };
        let progress = match written {
            Ok(progress) => progress || filled,
            Err(abort) => return self.abort(exchange, None, abort, ctx),
        };
        if discarding {
            if let Err(error) = self.scan_request_body(&mut exchange, ctx) {
                return self.fail(exchange, error, ctx);
            }
        }
        let head_done = exchange.client_head_sent == exchange.buffers.client_head.len();
        let body_done = match &exchange.response {
            ResponseState::Body { relay, .. } => {
                relay.is_complete() && exchange.gzip.as_ref().is_none_or(|s| s.is_done())
            }
            ResponseState::File { remaining, .. } => {
                *remaining == 0
                    && exchange.buffers.response.is_empty()
                    && exchange.gzip.as_ref().is_none_or(|s| s.is_done())
            }
            ResponseState::Local | ResponseState::AwaitingHead | ResponseState::Switching => true,
        };
        let request_read =
            exchange.request_body.fully_received() || !exchange.request_body.is_discarding();
        if head_done && body_done && request_read {
            // TLS records still waiting for the socket are part of it.
            if !self.client.has_pending_output() {
                return self.finish_exchange(exchange, ctx);
            }
            if self.client_ready.writable {
                match self.client.flush_pending() {
                    Ok(()) => return self.finish_exchange(exchange, ctx),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.client_ready.writable = false;
                    }
                    Err(_) => {
                        return self.abort(
                            exchange,
                            None,
                            Abort::ClientGone("reset the connection"),
                            ctx,
                        )
                    }
                }
            }
        }
        (Phase::WritingResponse { exchange }, progress)
    }

    /// The last byte went to the client: log, then keep the connection for
    /// the next request or close it.
    pub(super) fn finish_exchange(
        &mut self,
        exchange: Exchange,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        self.log_access(&exchange, ctx);
        let Exchange { mut buffers, state } = exchange;
        let keep_alive = state.keep_alive;
        let body_unread = !state.request_body.fully_received();
        ctx.spare_state(state);
        buffers.response.clear();
        buffers.upstream_head.clear();
        buffers.client_head.clear();
        buffers.log_fields.clear();
        buffers.attempts.clear();
        buffers.file = None;
        // The request's `limit_conn` counts end with it.
        buffers.held_limits.clear();
        if keep_alive && !self.client_eof && !self.draining {
            trace!("#{} keeping the connection alive", ctx.slot);
            if buffers.request.is_empty() {
                ctx.buffers.give_back(buffers);
                return (Phase::Idle { since: ctx.now }, true);
            }
            // A pipelined request is already here: its head is timed from now.
            ctx.stats.requests.add(1);
            return (
                Phase::ReadingRequest {
                    buffers,
                    searched: 0,
                    since: ctx.now,
                },
                true,
            );
        }
        let unread_input = !buffers.request.is_empty() || body_unread;
        ctx.buffers.give_back(buffers);
        self.start_closing(unread_input, ctx)
    }

    /// Closes gracefully: at once if the client has nothing more to send,
    /// otherwise through a lingering close.
    pub(super) fn start_closing(
        &mut self,
        unread_input: bool,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if self.client_eof || !(unread_input || self.client_ready.readable) {
            // TLS says goodbye (close_notify) before the socket closes, so
            // the client can tell the end from a cut.
            self.client.close_notify();
            return (Phase::Closed, true);
        }
        if let Err(e) = self.client.shutdown_write() {
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

    pub(super) fn step_lingering(
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
}

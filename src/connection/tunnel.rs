//! Copying bytes both ways with no protocol in between: the `Tunnel` phase
//! after a `101 Switching Protocols` (WebSocket and other upgrades), and a
//! `stream` server's session (`stream.rs`), share [`relay`].
//!
//! In the course (docs/learn): chapter 4's relay, with no HTTP in between.

use log::{debug, trace};

use super::io::{read_into, write_out, IoOutcome, Readiness};
use super::phase::{Exchange, Mark, Phase, TunnelState};
use super::relay::BodyOut;
use super::transport::Stream;
use super::{Connection, Context};
use crate::buffer::RingBuffer;
use crate::upstream::UpstreamConn;

/// What a relay works on: both sockets and a ring for each direction. The
/// client is sent `head` (a `101` head, or nothing) before any relayed byte.
pub(super) struct Ends<'a> {
    pub client: &'a mut Stream,
    pub client_ready: &'a mut Readiness,
    pub upstream: &'a mut UpstreamConn,
    pub to_upstream: &'a mut RingBuffer,
    pub to_client: &'a mut RingBuffer,
    pub head: &'a [u8],
    pub head_sent: &'a mut usize,
}

/// What one [`relay`] pass did.
#[derive(Debug, Default)]
pub(super) struct Moved {
    pub progress: bool,
    /// Bytes read from the client and from the upstream, and written to
    /// the client (head included) and to the upstream.
    pub from_client: usize,
    pub from_upstream: usize,
    pub to_client: usize,
    pub to_upstream: usize,
    /// Of `to_client`, the relayed bytes (the head excluded).
    pub to_client_relayed: usize,
    /// A socket failed (said in a debug line): the relay is over.
    pub failed: bool,
    /// Both directions are over (see `half_close`).
    pub done: bool,
}

/// Copies what can be copied now: client -> `to_upstream` -> upstream and
/// upstream -> `to_client` -> client (after the head). Each direction stops
/// reading when its ring is full (back-pressure).
///
/// With `half_close`, a direction's end is passed on as a write shutdown
/// once its ring is drained, and the other keeps flowing until it ends too
/// (a WebSocket tunnel; nginx's `proxy_half_close on`). Without it, the
/// first end closes the session once the bytes before it are delivered
/// (nginx's stream default).
pub(super) fn relay(
    ends: Ends<'_>,
    tunnel: &mut TunnelState,
    half_close: bool,
    now: Mark,
    slot: usize,
) -> Moved {
    let mut moved = Moved::default();
    let Ends {
        client,
        client_ready,
        upstream,
        to_upstream,
        to_client,
        head,
        head_sent,
    } = ends;

    // Client -> ring.
    if client_ready.readable && !tunnel.client_eof && !to_upstream.is_full() {
        match read_into(client, client_ready, to_upstream) {
            IoOutcome::Progress(n) => {
                trace!("#{slot} -> * {n}B (relayed)");
                moved.from_client = n;
                tunnel.last_activity = now;
                moved.progress = true;
            }
            IoOutcome::Eof => {
                trace!("#{slot} the client ended its side");
                tunnel.client_eof = true;
                moved.progress = true;
            }
            IoOutcome::WouldBlock => {}
            IoOutcome::Failed(e) => {
                debug!("#{slot} client failed while relaying: {e}");
                moved.failed = true;
                return moved;
            }
        }
    }
    // Ring -> upstream; then the client's end, passed on.
    if upstream.ready.writable && !to_upstream.is_empty() {
        let pending = to_upstream.len();
        match write_out(
            &mut upstream.stream,
            &mut upstream.ready,
            &[],
            &BodyOut::plain(to_upstream, pending),
            false,
        ) {
            (IoOutcome::Progress(n), _, from_body) => {
                trace!("#{slot} * -> {n}B (relayed)");
                to_upstream.consume(from_body);
                moved.to_upstream = n;
                tunnel.last_activity = now;
                moved.progress |= n > 0;
            }
            (IoOutcome::Failed(e), _, _) => {
                debug!("#{slot} upstream failed while relaying: {e}");
                moved.failed = true;
                return moved;
            }
            _ => {}
        }
    }
    if half_close && tunnel.client_eof && to_upstream.is_empty() && !tunnel.upstream_shut {
        let _ = upstream.stream.shutdown_write();
        tunnel.upstream_shut = true;
        moved.progress = true;
    }

    // Upstream -> ring.
    if upstream.ready.readable && !tunnel.upstream_eof && !to_client.is_full() {
        match read_into(&mut upstream.stream, &mut upstream.ready, to_client) {
            IoOutcome::Progress(n) => {
                trace!("#{slot} * <- {n}B (relayed)");
                moved.from_upstream = n;
                tunnel.last_activity = now;
                moved.progress = true;
            }
            IoOutcome::Eof => {
                trace!("#{slot} the upstream ended its side");
                tunnel.upstream_eof = true;
                moved.progress = true;
            }
            IoOutcome::WouldBlock => {}
            IoOutcome::Failed(e) => {
                debug!("#{slot} upstream failed while relaying: {e}");
                moved.failed = true;
                return moved;
            }
        }
    }
    // Ring -> client (the head first); then the upstream's end.
    let head_left = head.len().saturating_sub(*head_sent);
    if client_ready.writable && (head_left > 0 || !to_client.is_empty()) {
        let pending = to_client.len();
        let unsent = head.get(*head_sent..).unwrap_or_default();
        match write_out(
            client,
            client_ready,
            unsent,
            &BodyOut::plain(to_client, pending),
            false,
        ) {
            (IoOutcome::Progress(n), from_head, from_body) => {
                trace!("#{slot} <- * {n}B (relayed)");
                *head_sent += from_head;
                to_client.consume(from_body);
                moved.to_client = n;
                moved.to_client_relayed = from_body;
                tunnel.last_activity = now;
                moved.progress |= n > 0;
            }
            (IoOutcome::Failed(e), _, _) => {
                debug!("#{slot} client failed while relaying: {e}");
                moved.failed = true;
                return moved;
            }
            _ => {}
        }
    }
    let upstream_delivered =
        tunnel.upstream_eof && to_client.is_empty() && *head_sent >= head.len();
    if half_close {
        if upstream_delivered && !tunnel.client_shut {
            let _ = client.shutdown_write();
            tunnel.client_shut = true;
            moved.progress = true;
        }
        moved.done = tunnel.client_shut && tunnel.upstream_shut;
    } else {
        let client_delivered = tunnel.client_eof && to_upstream.is_empty();
        moved.done = client_delivered || upstream_delivered;
    }
    moved
}

impl Connection {
    /// Copies bytes both ways as they come, after the `101` head, passing
    /// each side's end on (see [`relay`]), until both sides have ended.
    pub(super) fn step_tunnel(
        &mut self,
        mut exchange: Exchange,
        mut upstream: UpstreamConn,
        mut tunnel: TunnelState,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let now = exchange.mark(ctx.now_ms);
        let buffers = &mut *exchange.buffers;
        let state = &mut *exchange.state;
        let moved = relay(
            Ends {
                client: &mut self.client,
                client_ready: &mut self.client_ready,
                upstream: &mut upstream,
                to_upstream: &mut buffers.request,
                to_client: &mut buffers.response,
                head: &buffers.client_head,
                head_sent: &mut state.client_head_sent,
            },
            &mut tunnel,
            true,
            now,
            ctx.slot,
        );
        state.log.request_length += moved.from_client as u64;
        state.log.body_bytes_sent += moved.to_client_relayed as u64;
        state.log.bytes_sent += moved.to_client as u64;
        if moved.failed || moved.done {
            return self.end_tunnel(exchange, upstream, ctx);
        }
        (
            Phase::Tunnel {
                exchange,
                upstream,
                tunnel,
            },
            moved.progress,
        )
    }

    /// The tunnel is over (both ends done, a failure, or the idle timeout):
    /// one access log line with the bytes both ways, then both sockets close.
    pub(super) fn end_tunnel(
        &mut self,
        exchange: Exchange,
        upstream: UpstreamConn,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        debug!(
            "#{} tunnel closed: {} bytes from the client, {} to it",
            ctx.slot, exchange.log.request_length, exchange.log.body_bytes_sent
        );
        ctx.upstreams.close(&ctx.config, upstream);
        self.log_access(&exchange, ctx);
        ctx.retire(exchange);
        (Phase::Closed, true)
    }
}

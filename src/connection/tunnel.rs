//! The `Tunnel` phase: after a `101 Switching Protocols` (WebSocket and
//! other upgrades) ferry stops reading HTTP and copies bytes both ways
//! until both sides have ended, with back-pressure on each direction.

use log::{debug, trace};

use super::io::{read_into, write_out, IoOutcome};
use super::phase::{Exchange, Phase, TunnelState};
use super::relay::BodyOut;
use super::{Connection, Context};
use crate::upstream::UpstreamConn;

impl Connection {
    /// Copies bytes both ways as they come: client -> request ring ->
    /// upstream, upstream -> response ring -> client (after the 101 head).
    /// Each direction stops reading when its ring is full (back-pressure)
    /// and, once its source ended and its ring drained, passes the end on as
    /// a write shutdown while the other direction keeps flowing.
    pub(super) fn step_tunnel(
        &mut self,
        mut exchange: Exchange,
        mut upstream: UpstreamConn,
        mut tunnel: TunnelState,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let mut progress = false;
        let now = exchange.mark(ctx.now_ms);
        let buffers = &mut *exchange.buffers;
        let state = &mut *exchange.state;

        // Client -> ring.
        if self.client_ready.readable && !tunnel.client_eof && !buffers.request.is_full() {
            match read_into(
                &mut self.client,
                &mut self.client_ready,
                &mut buffers.request,
            ) {
                IoOutcome::Progress(n) => {
                    trace!("#{} -> * {n}B (tunnel)", ctx.slot);
                    state.log.request_length += n as u64;
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
                &BodyOut::plain(&buffers.request, pending),
                false,
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
            let _ = upstream.stream.shutdown_write();
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
        let head_left = buffers.client_head.len() - state.client_head_sent;
        if self.client_ready.writable && (head_left > 0 || !buffers.response.is_empty()) {
            let pending = buffers.response.len();
            let head = &buffers.client_head[state.client_head_sent..];
            match write_out(
                &mut self.client,
                &mut self.client_ready,
                head,
                &BodyOut::plain(&buffers.response, pending),
                false,
            ) {
                (IoOutcome::Progress(n), from_head, from_body) => {
                    trace!("#{} <- * {n}B (tunnel)", ctx.slot);
                    state.client_head_sent += from_head;
                    buffers.response.consume(from_body);
                    state.log.body_bytes_sent += from_body as u64;
                    state.log.bytes_sent += n as u64;
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
        let head_sent = state.client_head_sent == buffers.client_head.len();
        if tunnel.upstream_eof && buffers.response.is_empty() && head_sent && !tunnel.client_shut {
            let _ = self.client.shutdown_write();
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

//! A `stream` server's connection (nginx's ngx_stream_proxy_module): no
//! HTTP at all. The connection is accepted into [`Phase::Stream`] and goes
//! through three stages of its own:
//!
//! ```text
//!   Starting ── buffer set ──► Connecting ── connected ──► Relaying ──► Closed
//!                                │    ▲                       (either end,
//!                                │    └── failed: next server   or both with
//!                                └── none left: closed           proxy_half_close)
//! ```
//!
//! The upstream is connected at once, before the client sends anything
//! (many TCP protocols have the server speak first). With `proxy_protocol
//! on` the ring toward the upstream starts with a PROXY v1 line naming the
//! client, so it is the first thing the upstream reads, and a retry on
//! another server sends it again (nothing leaves the ring before a connect
//! succeeds). Then `tunnel::relay` copies both ways with the
//! WebSocket tunnel's back-pressure; `proxy_timeout` closes a session with
//! no byte moved either way for that long.
//!
//! In the course (docs/learn): chapter 4's proxy, as nginx's stream module:
//! TCP with no HTTP.

use std::time::{Duration, Instant};

use log::{debug, error, info};

use super::io::Readiness;
use super::phase::{Mark, Phase, TunnelState};
use super::tunnel::{relay, Ends};
use super::{Connection, Context};
use crate::buffer::BufferSet;
use crate::config::StreamServerConfig;
use crate::upstream::{Peer, Tried, UpstreamConn};

/// One stream session: which server it belongs to, where it is, and what
/// it moved (for the closing log line).
pub struct StreamSession {
    stage: Stage,
    /// Its server in `Config::stream_servers`.
    server: u32,
    started: Instant,
    started_ms: u64,
    tried: Tried,
    peer: Option<Peer>,
    /// Bytes read from the client, written to it, read from the upstream
    /// and written to it (the PROXY line included), as nginx's log says.
    from_client: u64,
    to_client: u64,
    from_upstream: u64,
    to_upstream: u64,
}

enum Stage {
    /// Accepted; waiting for a buffer set (memory is capped in total).
    Starting,
    /// A connect to `peer` is in flight since `since`.
    Connecting {
        buffers: Box<BufferSet>,
        upstream: UpstreamConn,
        since: Instant,
    },
    /// Bytes flow both ways.
    Relaying {
        buffers: Box<BufferSet>,
        upstream: UpstreamConn,
        tunnel: TunnelState,
    },
}

impl StreamSession {
    /// A session accepted at `now`; its clocks restart when it gets going.
    pub fn new(server: usize, now: Instant) -> Box<StreamSession> {
        Box::new(StreamSession {
            stage: Stage::Starting,
            server: u32::try_from(server).unwrap_or(u32::MAX),
            started: now,
            started_ms: 0,
            tried: Tried::default(),
            peer: None,
            from_client: 0,
            to_client: 0,
            from_upstream: 0,
            to_upstream: 0,
        })
    }

    pub fn upstream_mut(&mut self) -> Option<&mut UpstreamConn> {
        match &mut self.stage {
            Stage::Starting => None,
            Stage::Connecting { upstream, .. } | Stage::Relaying { upstream, .. } => Some(upstream),
        }
    }

    fn settings<'c>(&self, ctx: &'c Context<'_>) -> Option<&'c StreamServerConfig> {
        ctx.config.stream_servers.get(self.server as usize)
    }

    /// When it next needs attention without an event: a buffer set or a
    /// connect not come within `proxy_connect_timeout`, or `proxy_timeout`
    /// with nothing moved.
    pub fn deadline(&self, config: &crate::config::Config) -> Option<Instant> {
        let settings = config.stream_servers.get(self.server as usize)?;
        Some(match &self.stage {
            Stage::Starting => self.started + settings.connect_timeout,
            Stage::Connecting { since, .. } => *since + settings.connect_timeout,
            Stage::Relaying { tunnel, .. } => {
                tunnel
                    .last_activity
                    .instant(self.started)
                    .unwrap_or(self.started)
                    + settings.timeout
            }
        })
    }

    /// Gives back what it holds (the loop closing it early).
    pub fn release(self, ctx: &mut Context<'_>) {
        match self.stage {
            Stage::Starting => {}
            Stage::Connecting {
                buffers, upstream, ..
            }
            | Stage::Relaying {
                buffers, upstream, ..
            } => {
                ctx.upstreams.close(&ctx.config, upstream);
                ctx.buffers.give_back(buffers);
            }
        }
    }
}

impl Connection {
    /// The one transition function of a stream session.
    pub(super) fn step_stream(
        &mut self,
        mut session: Box<StreamSession>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        match std::mem::replace(&mut session.stage, Stage::Starting) {
            Stage::Starting => self.start_stream(session, ctx),
            Stage::Connecting {
                buffers,
                upstream,
                since,
            } => self.step_stream_connecting(session, buffers, upstream, since, ctx),
            Stage::Relaying {
                buffers,
                upstream,
                tunnel,
            } => self.step_stream_relaying(session, buffers, upstream, tunnel, ctx),
        }
    }

    fn start_stream(
        &mut self,
        mut session: Box<StreamSession>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let Some(mut buffers) = ctx.buffers.take() else {
            if !self.waiting_for_buffers {
                debug!("#{} waiting for a free buffer set", ctx.slot);
                self.waiting_for_buffers = true;
                ctx.buffer_waiters.push_back(ctx.slot);
            }
            return (Phase::Stream(session), false);
        };
        self.waiting_for_buffers = false;
        session.started = ctx.now;
        session.started_ms = ctx.now_ms;
        if session.settings(ctx).is_some_and(|s| s.proxy_protocol) {
            let local = self.client.socket().and_then(|s| s.local_addr().ok());
            let set = &mut *buffers;
            set.upstream_head.clear();
            crate::proxy_protocol::write_v1(self.peer, local, &mut set.upstream_head);
            set.request.push_slice(&set.upstream_head);
            set.upstream_head.clear();
        }
        self.connect_stream(session, buffers, ctx)
    }

    /// Connects to the next server of the group, or ends the session when
    /// none is left (`proxy_next_upstream` and its limits decide).
    fn connect_stream(
        &mut self,
        mut session: Box<StreamSession>,
        buffers: Box<BufferSet>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let Some(settings) = session.settings(ctx).copied() else {
            ctx.buffers.give_back(buffers);
            return (Phase::Closed, true);
        };
        loop {
            let attempts = session.tried.count();
            let out_of_tries =
                settings.next_upstream_tries != 0 && attempts >= settings.next_upstream_tries;
            let out_of_time = !settings.next_upstream_timeout.is_zero()
                && ctx.now.saturating_duration_since(session.started)
                    >= settings.next_upstream_timeout;
            let may_try =
                attempts == 0 || (settings.next_upstream && !out_of_tries && !out_of_time);
            let picked = may_try
                .then(|| {
                    ctx.upstreams.pick(
                        &ctx.config,
                        settings.group,
                        self.peer.ip(),
                        0,
                        ctx.now,
                        session.tried,
                    )
                })
                .flatten();
            let Some(peer) = picked else {
                if attempts == 0 {
                    let name = ctx
                        .config
                        .upstreams
                        .get(settings.group)
                        .map_or("", |g| g.name.as_str());
                    error!(
                        "#{} no live upstreams while connecting to upstream \"{name}\", client: {}, server: {}",
                        ctx.slot, self.peer, settings.listen
                    );
                }
                ctx.buffers.give_back(buffers);
                return self.end_stream(&session, "upstream", ctx);
            };
            session.tried.add(peer.server as usize);
            session.peer = Some(peer);
            match ctx
                .upstreams
                .connect(&ctx.config, peer, ctx.slot, ctx.registry, None)
            {
                Ok(upstream) => {
                    debug!("#{}/upstream connecting to {}", ctx.slot, peer.addr);
                    session.stage = Stage::Connecting {
                        buffers,
                        upstream,
                        since: ctx.now,
                    };
                    return (Phase::Stream(session), true);
                }
                Err(e) => self.stream_connect_failed(&session, peer, &e.to_string(), ctx),
            }
        }
    }

    /// nginx's error line for a failed connect, and the failure counted
    /// against the server (`max_fails`).
    fn stream_connect_failed(
        &self,
        session: &StreamSession,
        peer: Peer,
        why: &str,
        ctx: &mut Context<'_>,
    ) {
        let listen = session.settings(ctx).map(|s| s.listen);
        error!(
            "#{} connect() to {} failed ({why}) while connecting to upstream, client: {}, server: {}, upstream: \"{}\"",
            ctx.slot,
            peer.addr,
            self.peer,
            listen.map_or_else(|| "-".to_string(), |a| a.to_string()),
            peer.addr
        );
        ctx.upstreams.failed(&ctx.config, peer, ctx.now);
    }

    fn step_stream_connecting(
        &mut self,
        mut session: Box<StreamSession>,
        buffers: Box<BufferSet>,
        mut upstream: UpstreamConn,
        since: Instant,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        if !upstream.ready.writable && !upstream.ready.readable {
            session.stage = Stage::Connecting {
                buffers,
                upstream,
                since,
            };
            return (Phase::Stream(session), false);
        }
        match upstream.stream.connect_result() {
            Ok(()) => {
                if let Err(e) = upstream.stream.set_nodelay() {
                    debug!("#{}/upstream TCP_NODELAY: {e}", ctx.slot);
                }
                if let Some(peer) = session.peer {
                    debug!("#{}/upstream connected to {}", ctx.slot, peer.addr);
                    ctx.upstreams.succeeded(&ctx.config, peer);
                }
                session.stage = Stage::Relaying {
                    buffers,
                    upstream,
                    tunnel: TunnelState {
                        last_activity: Mark::since(session.started_ms, ctx.now_ms),
                        ..TunnelState::default()
                    },
                };
                (Phase::Stream(session), true)
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotConnected
                    || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                upstream.ready = Readiness::default();
                session.stage = Stage::Connecting {
                    buffers,
                    upstream,
                    since,
                };
                (Phase::Stream(session), false)
            }
            Err(e) => {
                ctx.upstreams.close(&ctx.config, upstream);
                if let Some(peer) = session.peer {
                    self.stream_connect_failed(&session, peer, &e.to_string(), ctx);
                }
                self.connect_stream(session, buffers, ctx)
            }
        }
    }

    fn step_stream_relaying(
        &mut self,
        mut session: Box<StreamSession>,
        mut buffers: Box<BufferSet>,
        mut upstream: UpstreamConn,
        mut tunnel: TunnelState,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let half_close = session.settings(ctx).is_some_and(|s| s.half_close);
        let mut head_sent = 0;
        let moved = relay(
            Ends {
                client: &mut self.client,
                client_ready: &mut self.client_ready,
                upstream: &mut upstream,
                to_upstream: &mut buffers.request,
                to_client: &mut buffers.response,
                head: &[],
                head_sent: &mut head_sent,
            },
            &mut tunnel,
            half_close,
            Mark::since(session.started_ms, ctx.now_ms),
            ctx.slot,
        );
        session.from_client += moved.from_client as u64;
        session.to_client += moved.to_client as u64;
        session.from_upstream += moved.from_upstream as u64;
        session.to_upstream += moved.to_upstream as u64;
        if moved.failed || moved.done {
            // Which side's end closed it, in nginx's words.
            let who = if tunnel.client_eof && !tunnel.upstream_eof {
                "client"
            } else {
                "upstream"
            };
            ctx.upstreams.close(&ctx.config, upstream);
            ctx.buffers.give_back(buffers);
            return self.end_stream(&session, who, ctx);
        }
        session.stage = Stage::Relaying {
            buffers,
            upstream,
            tunnel,
        };
        (Phase::Stream(session), moved.progress)
    }

    /// The session is over: nginx's closing line (at info, as nginx logs
    /// it) and the client socket closes.
    fn end_stream(
        &mut self,
        session: &StreamSession,
        who: &str,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        info!(
            "#{} {who} disconnected, bytes from/to client:{}/{}, bytes from/to upstream:{}/{}",
            ctx.slot,
            session.from_client,
            session.to_client,
            session.from_upstream,
            session.to_upstream
        );
        self.bytes_in += session.from_client;
        self.bytes_out += session.to_client;
        (Phase::Closed, true)
    }

    /// Its deadline passed: a connect is given up on (the next server is
    /// tried), or a quiet session or one that never got a buffer set ends.
    pub(super) fn stream_deadline(
        &mut self,
        mut session: Box<StreamSession>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        match std::mem::replace(&mut session.stage, Stage::Starting) {
            Stage::Starting => {
                error!(
                    "#{} no buffer set came free within proxy_connect_timeout; closing",
                    ctx.slot
                );
                (Phase::Closed, true)
            }
            Stage::Connecting {
                buffers, upstream, ..
            } => {
                ctx.upstreams.close(&ctx.config, upstream);
                if let Some(peer) = session.peer {
                    self.stream_connect_failed(&session, peer, "upstream timed out", ctx);
                }
                self.connect_stream(session, buffers, ctx)
            }
            Stage::Relaying {
                buffers, upstream, ..
            } => {
                let idle: Duration = session.settings(ctx).map_or(Duration::ZERO, |s| s.timeout);
                info!(
                    "#{} timed out after {} ms with no byte moved (proxy_timeout)",
                    ctx.slot,
                    idle.as_millis()
                );
                ctx.upstreams.close(&ctx.config, upstream);
                ctx.buffers.give_back(buffers);
                self.end_stream(&session, "upstream", ctx)
            }
        }
    }
}

//! `limit_req` and `limit_conn` in the connection: nginx's PREACCESS phase
//! while the request is routed ([`preaccess`]), and the `Delayed` phase a
//! request over its rate (within its burst) waits in.
//!
//! ```text
//! ReadingRequest --(limit_req: excess)--> Delayed --(timer)--> ReadingRequest (again)
//! ```
//!
//! A delayed request holds no buffer set while it waits: the bytes the
//! client sent (its head, and whatever followed) are copied out, the set
//! goes back to the pool, and when the timer fires they are put in a set
//! again and the request is routed anew, its `limit_req` lines skipped
//! (nginx moves on to the next phase handler the same way). `limit_conn`
//! counts it from then on, as nginx's comes after `limit_req`.
//!
//! In the course (docs/learn): chapter 7: the connection state machine
//! (chapter 4 at full size).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, log};

use super::phase::Phase;
use super::starting::Target;
use super::{Connection, Context};
use crate::buffer::BufferSet;
use crate::config::Limits;
use crate::limits::{self, Held, ReqDecision};
use crate::variables::RequestView;

/// nginx's delay lines are one level quieter than its refusals.
fn quieter(level: log::Level) -> log::Level {
    match level {
        log::Level::Error => log::Level::Warn,
        log::Level::Warn => log::Level::Info,
        _ => log::Level::Debug,
    }
}

/// The `limit_req` lines (unless the request waited for them already),
/// then the `limit_conn` lines, as nginx runs them: `Some` answers the
/// request (the zone's status) or delays it (`Target::Delayed`, before any
/// `limit_conn` count); `None` lets it go on. Counts taken in `limit_conn`
/// zones go to `held`.
pub(super) fn preaccess(
    limits: &Limits,
    view: &RequestView<'_>,
    held: &mut Vec<Held>,
    requests_passed: bool,
) -> Option<Target> {
    let dry = |dry_run: bool| if dry_run { ", dry run" } else { "" };
    if !limits.requests.is_empty() && !requests_passed {
        match limits::check_requests(&limits.requests, view, limits::now_ms()) {
            ReqDecision::Pass => {}
            ReqDecision::Refuse { excess, zone } => {
                log!(
                    limits.request_log_level,
                    "limiting requests{}, excess: {}.{:03} by zone \"{}\", client: {}",
                    dry(limits.request_dry_run),
                    excess / 1000,
                    excess % 1000,
                    zone.name,
                    view.client.ip()
                );
                zone.refused.fetch_add(1, Ordering::Relaxed);
                if !limits.request_dry_run {
                    return Some(Target::Code(limits.request_status));
                }
            }
            ReqDecision::Delay { ms, excess, zone } => {
                log!(
                    quieter(limits.request_log_level),
                    "delaying request{}, excess: {}.{:03}, by zone \"{}\", client: {}",
                    dry(limits.request_dry_run),
                    excess / 1000,
                    excess % 1000,
                    zone.name,
                    view.client.ip()
                );
                zone.delayed.fetch_add(1, Ordering::Relaxed);
                if !limits.request_dry_run {
                    return Some(Target::Delayed(ms));
                }
            }
        }
    }
    if !limits.connections.is_empty() {
        if let Err(zone) = limits::acquire(&limits.connections, view, held) {
            log!(
                limits.connection_log_level,
                "limiting connections{} by zone \"{}\", client: {}",
                dry(limits.connection_dry_run),
                zone.name,
                view.client.ip()
            );
            zone.refused.fetch_add(1, Ordering::Relaxed);
            if !limits.connection_dry_run {
                return Some(Target::Code(limits.connection_status));
            }
        }
    }
    None
}

/// A request waiting out its `limit_req` delay: what the client sent,
/// copied out of the buffer set it gave back.
pub struct Delayed {
    sent: Box<[u8]>,
    /// The timer's time; `None` once it passed and the request waits for a
    /// free buffer set.
    pub(super) until: Option<Instant>,
}

impl Connection {
    /// Copies out what the client sent, gives the buffer set back, waits.
    pub(super) fn start_delay(
        &mut self,
        mut buffers: Box<BufferSet>,
        ms: u64,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        debug!("#{} delaying the request {ms} ms (limit_req)", ctx.slot);
        let sent: Box<[u8]> = buffers.request.make_contiguous().into();
        ctx.buffers.give_back(buffers);
        (
            Phase::Delayed(Box::new(Delayed {
                sent,
                until: Some(ctx.now + Duration::from_millis(ms)),
            })),
            true,
        )
    }

    /// The delay is over (or a buffer set came free): the request is read
    /// again from a buffer set, its `limit_req` lines passed.
    pub(super) fn end_delay(
        &mut self,
        mut waiting: Box<Delayed>,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        let Some(mut buffers) = ctx.buffers.take() else {
            if !self.waiting_for_buffers {
                self.waiting_for_buffers = true;
                ctx.buffer_waiters.push_back(ctx.slot);
            }
            waiting.until = None;
            return (Phase::Delayed(waiting), false);
        };
        self.waiting_for_buffers = false;
        debug!("#{} delay over: routing the request again", ctx.slot);
        buffers.request.push_slice(&waiting.sent);
        self.limit_req_passed = true;
        (
            Phase::ReadingRequest {
                buffers,
                searched: 0,
                since: ctx.now,
            },
            true,
        )
    }
}

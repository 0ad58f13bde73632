//! `limit_req` and `limit_conn` in the connection: nginx's PREACCESS phase
//! while the request is routed ([`preaccess`]), and the `Delayed` phase a
//! request over its rate (within its burst) waits in.
//!
//! ```text
//! ReadingRequest --(limit_req: excess)--> Delayed --(timer)--> start_exchange
//! ```
//!
//! A delayed request keeps its buffer set: the head is parsed, the
//! upstream's head written, and they wait there for the timer. Nothing is
//! read from the client meanwhile.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, log};

use super::phase::Phase;
use super::reading::{ParsedRequest, Target};
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

/// The `limit_req` lines, then the `limit_conn` lines, as nginx runs them:
/// `Err` answers the request (the zone's status), `Ok` lets it go on after
/// the delay it returns (0: none). Counts taken in `limit_conn` zones go to
/// `held`.
pub(super) fn preaccess(
    limits: &Limits,
    view: &RequestView<'_>,
    held: &mut Vec<Held>,
) -> Result<u64, Target> {
    let mut delay = 0;
    let dry = |dry_run: bool| if dry_run { ", dry run" } else { "" };
    if !limits.requests.is_empty() {
        match limits::check_requests(&limits.requests, view, limits::now_ms()) {
            ReqDecision::Pass => {}
            ReqDecision::Refuse { excess, zone } => {
                log!(
                    limits.request_log_level,
                    "limiting requests{}, excess: {}.{:03} by zone \"{zone}\", client: {}",
                    dry(limits.request_dry_run),
                    excess / 1000,
                    excess % 1000,
                    view.client.ip()
                );
                count(&limits.requests, &zone, true);
                if !limits.request_dry_run {
                    return Err(Target::Code(limits.request_status));
                }
            }
            ReqDecision::Delay { ms, excess, zone } => {
                log!(
                    quieter(limits.request_log_level),
                    "delaying request{}, excess: {}.{:03}, by zone \"{zone}\", client: {}",
                    dry(limits.request_dry_run),
                    excess / 1000,
                    excess % 1000,
                    view.client.ip()
                );
                count(&limits.requests, &zone, false);
                if !limits.request_dry_run {
                    delay = ms;
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
                return Err(Target::Code(limits.connection_status));
            }
        }
    }
    Ok(delay)
}

/// Counts a refusal or a delay on the zone named `name`.
fn count(lines: &[limits::LimitReq], name: &str, refused: bool) {
    if let Some(zone) = lines.iter().map(|l| &l.zone).find(|z| z.name == name) {
        if refused {
            zone.refused.fetch_add(1, Ordering::Relaxed);
        } else {
            zone.delayed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A request waiting out its `limit_req` delay.
pub struct Delayed {
    buffers: Box<BufferSet>,
    parsed: ParsedRequest,
    pub(super) until: Instant,
}

impl Connection {
    pub(super) fn start_delay(
        &mut self,
        buffers: Box<BufferSet>,
        parsed: ParsedRequest,
        ms: u64,
        ctx: &mut Context<'_>,
    ) -> (Phase, bool) {
        debug!("#{} delaying the request {ms} ms (limit_req)", ctx.slot);
        (
            Phase::Delayed(Box::new(Delayed {
                buffers,
                parsed,
                until: ctx.now + Duration::from_millis(ms),
            })),
            true,
        )
    }

    /// The delay is over: the request goes on (to its password check, if
    /// it has one: nginx's ACCESS phase comes after).
    pub(super) fn end_delay(&mut self, waiting: Delayed, ctx: &mut Context<'_>) -> (Phase, bool) {
        let Delayed {
            buffers,
            mut parsed,
            ..
        } = waiting;
        debug!("#{} delay over", ctx.slot);
        match parsed.take_password_check() {
            Some(check) => self.start_password_check(buffers, parsed, check, ctx),
            None => self.start_exchange(buffers, parsed, ctx),
        }
    }
}

/// Gives up a delayed request (the worker stops).
pub(super) fn abandon(waiting: Delayed, ctx: &mut Context<'_>) {
    ctx.buffers.give_back(waiting.buffers);
}

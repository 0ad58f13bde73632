//! How long the loop may sleep, and why: the nearest deadline of every
//! kind (connections' timers, idle upstream connections, paused accepting,
//! a graceful shutdown's limit), or none when work is left. The reason is
//! what each `loop turn` trace line prints (`RUST_LOG=ferry=trace`).
//!
//! In the course (docs/learn): chapter 7, step 1 (what each `loop turn` line
//! says).

use super::*;

impl EventLoop {
    /// Why the next poll may sleep, and until what (for the trace).
    pub(super) fn waiting_for(&self) -> WaitingFor {
        if !self.again.is_empty() {
            return WaitingFor::WorkLeft;
        }
        if self.spin_until.is_some() {
            return WaitingFor::Spinning;
        }
        let now = self.clock.now();
        let mut nearest: Option<(Instant, WaitingFor)> = None;
        let mut consider = |at: Option<Instant>, why: WaitingFor| {
            if let Some(at) = at {
                if nearest.as_ref().is_none_or(|(best, _)| at < *best) {
                    nearest = Some((at, why));
                }
            }
        };
        if let Some(entry) = self.timers.next() {
            // An entry whose connection closed or moved its deadline is
            // stale: the loop wakes only to drop it.
            let live = self
                .connections
                .get(entry.slot)
                .is_some_and(|c| c.id == entry.id && c.scheduled == Some(entry.at));
            let why = match live {
                true => WaitingFor::Deadline(entry.slot, 0),
                false => WaitingFor::StaleDeadline(entry.slot, 0),
            };
            consider(Some(entry.at), why);
        }
        consider(self.upstreams.idle.next_expiry(), WaitingFor::PoolExpiry(0));
        consider(self.accept_resume_at, WaitingFor::AcceptResume(0));
        consider(self.shutdown_deadline(), WaitingFor::Shutdown(0));
        match nearest {
            None => WaitingFor::Event,
            Some((at, why)) => why.in_ms(at.saturating_duration_since(now).as_millis() as u64 + 1),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        // Rounded up to the next millisecond: epoll cannot wait less, and
        // waking a hair early would spin until the deadline. Measured from
        // the last turn's time, not the clock: a deadline is then late by
        // at most that turn's work (nginx's timers behave alike), and a
        // turn reads the clock once.
        let pool_expiry = self.upstreams.idle.next_expiry();
        [
            self.timers.next_deadline(),
            pool_expiry,
            self.accept_resume_at,
            self.shutdown_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(self.clock.now()) + Duration::from_millis(1))
    }
}

/// What a sleeping loop waits for, as the per-turn trace line says it.
pub(super) enum WaitingFor {
    /// Connections yielded with work left: no sleep.
    WorkLeft,
    /// `--poll-spin-us`: polling without sleeping.
    Spinning,
    /// No deadline anywhere: only an event wakes the loop.
    Event,
    /// A connection's deadline (its slot), in so many ms.
    Deadline(usize, u64),
    /// A deadline the connection no longer has (closed, or moved).
    StaleDeadline(usize, u64),
    /// An idle upstream connection's keep-alive expiry.
    PoolExpiry(u64),
    /// Accepting resumes after a descriptor shortage.
    AcceptResume(u64),
    /// `worker_shutdown_timeout`.
    Shutdown(u64),
}

impl WaitingFor {
    fn in_ms(self, ms: u64) -> WaitingFor {
        match self {
            WaitingFor::Deadline(slot, _) => WaitingFor::Deadline(slot, ms),
            WaitingFor::StaleDeadline(slot, _) => WaitingFor::StaleDeadline(slot, ms),
            WaitingFor::PoolExpiry(_) => WaitingFor::PoolExpiry(ms),
            WaitingFor::AcceptResume(_) => WaitingFor::AcceptResume(ms),
            WaitingFor::Shutdown(_) => WaitingFor::Shutdown(ms),
            other => other,
        }
    }
}

impl fmt::Display for WaitingFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitingFor::WorkLeft => f.write_str("no sleep: connections have work left"),
            WaitingFor::Spinning => f.write_str("no sleep: spinning after recent events"),
            WaitingFor::Event => f.write_str("slept with no deadline, until an event"),
            WaitingFor::Deadline(slot, ms) => {
                write!(f, "would have slept {ms} ms, until #{slot}'s deadline")
            }
            WaitingFor::StaleDeadline(slot, ms) => write!(
                f,
                "would have slept {ms} ms, until a deadline #{slot} no longer has"
            ),
            WaitingFor::PoolExpiry(ms) => write!(
                f,
                "would have slept {ms} ms, until an idle upstream connection expires"
            ),
            WaitingFor::AcceptResume(ms) => {
                write!(f, "would have slept {ms} ms, until accepting resumes")
            }
            WaitingFor::Shutdown(ms) => {
                write!(f, "would have slept {ms} ms, until the shutdown timeout")
            }
        }
    }
}

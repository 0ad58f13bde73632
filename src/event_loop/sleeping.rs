//! How long the loop may sleep, and why: the nearest deadline of every
//! kind (connections' timers, idle upstream connections, paused accepting,
//! a graceful shutdown's limit), or none when work is left. The reason is
//! what each `loop turn` trace line prints (`RUST_LOG=ferry=trace`).
//!
//! In the course (docs/learn): chapter 7, step 1 (what each `loop turn` line
//! says).

use super::*;

/// What bounds a sleep: the nearest deadline of one kind.
#[derive(Clone, Copy)]
pub(super) enum Until {
    /// A connection's timer entry (it may be stale: see `waiting_for`).
    Deadline { slot: usize, id: u64 },
    /// An idle upstream connection's keep-alive expiry.
    PoolExpiry,
    /// Accepting resumes after a descriptor shortage.
    AcceptResume,
    /// `worker_shutdown_timeout`.
    Shutdown,
}

/// What a sleeping loop waits for, as the per-turn trace line says it.
pub(super) enum WaitingFor {
    /// Connections yielded with work left: no sleep.
    WorkLeft,
    /// `--poll-spin-us`: polling without sleeping.
    Spinning,
    /// No deadline anywhere: only an event wakes the loop.
    Event,
    /// At most `ms`, until `until`; `stale` when it is a deadline its
    /// connection no longer has (closed, or moved): the loop wakes only to
    /// drop it.
    Deadline { ms: u64, until: Until, stale: bool },
}

impl EventLoop {
    /// The nearest deadline of any kind, and its kind.
    fn nearest_deadline(&self) -> Option<(Instant, Until)> {
        let timer = self.timers.next().map(|entry| {
            let until = Until::Deadline {
                slot: entry.slot,
                id: entry.id,
            };
            (entry.at, until)
        });
        [
            timer,
            self.upstreams
                .idle
                .next_expiry()
                .map(|at| (at, Until::PoolExpiry)),
            self.accept_resume_at.map(|at| (at, Until::AcceptResume)),
            self.shutdown_deadline().map(|at| (at, Until::Shutdown)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
    }

    /// How long the next poll may sleep: not at all with work left, else
    /// until the nearest deadline. Rounded up to the next millisecond:
    /// epoll cannot wait less, and waking a hair early would spin until the
    /// deadline. Measured from the last turn's time, not the clock: a
    /// deadline is then late by at most that turn's work (nginx's timers
    /// behave alike), and a turn reads the clock once.
    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        self.nearest_deadline().map(|(at, _)| {
            at.saturating_duration_since(self.clock.now()) + Duration::from_millis(1)
        })
    }

    /// Why the next poll may sleep, and until what (for the trace).
    pub(super) fn waiting_for(&self) -> WaitingFor {
        if !self.again.is_empty() {
            return WaitingFor::WorkLeft;
        }
        if self.spin_until.is_some() {
            return WaitingFor::Spinning;
        }
        let Some((at, until)) = self.nearest_deadline() else {
            return WaitingFor::Event;
        };
        let stale = match until {
            Until::Deadline { slot, id } => !self
                .connections
                .get(slot)
                .is_some_and(|c| c.id == id && c.scheduled == Some(at)),
            _ => false,
        };
        let ms = at.saturating_duration_since(self.clock.now()).as_millis() as u64 + 1;
        WaitingFor::Deadline { ms, until, stale }
    }
}

impl fmt::Display for WaitingFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ms, until, stale) = match self {
            WaitingFor::WorkLeft => return f.write_str("no sleep: connections have work left"),
            WaitingFor::Spinning => return f.write_str("no sleep: spinning after recent events"),
            WaitingFor::Event => return f.write_str("slept with no deadline, until an event"),
            WaitingFor::Deadline { ms, until, stale } => (ms, until, stale),
        };
        write!(f, "would have slept {ms} ms, until ")?;
        match until {
            Until::Deadline { slot, .. } if *stale => write!(f, "a deadline #{slot} no longer has"),
            Until::Deadline { slot, .. } => write!(f, "#{slot}'s deadline"),
            Until::PoolExpiry => f.write_str("an idle upstream connection expires"),
            Until::AcceptResume => f.write_str("accepting resumes"),
            Until::Shutdown => f.write_str("the shutdown timeout"),
        }
    }
}

//! Deadlines without a timer thread.
//!
//! Each connection says when it next needs attention
//! (`Connection::deadline`); the event loop keeps a min-heap of those
//! instants and passes the nearest to `Poll::poll` as its timeout.
//!
//! The heap holds at most one live entry per connection: an entry is pushed
//! only when a connection's deadline moves *earlier* than the entry it
//! already has. A deadline that moves later leaves the old entry in place;
//! when it fires, the loop sees the connection's real deadline is later and
//! pushes that instead. Entries of closed connections are recognised by the
//! connection id and dropped. So stale entries cost one pop each, and a
//! connection that refreshes its deadline on every read costs no heap work.
//!
//! Stale entries wait until their time comes, which for a closed connection
//! can be a minute (`client_header_timeout`): at thousands of new
//! connections a second that would grow the heap with the connection rate.
//! So when stale entries outnumber live ones, the loop compacts the heap in
//! place ([`Timers::retain`]); its size stays within about twice the open
//! connections, and it never reallocates once warm.
//!
//! [`LoopClock`] is the loop's sense of time: read once per turn, as nginx
//! caches its time once per cycle.
//!
//! In the course (docs/learn): chapter 4's exercise 2 and chapter 7:
//! deadlines, and what bounds each sleep of the loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The time a loop turn runs at: the monotonic instant (deadlines), the
/// same in milliseconds since the loop started (an exchange's clocks), and
/// the wall clock (the `Date` field, logs). Reading a clock is a call into
/// the kernel's vDSO; a turn reads one. The wall clock is derived from the
/// monotonic one and read again whenever the loop enters a new second, so
/// a change of the system time shows within a second and the derived time
/// never drifts more than a second's clock slew (under a millisecond).
pub struct LoopClock {
    started: Instant,
    now: Instant,
    now_ms: u64,
    /// The wall clock in milliseconds since the Unix epoch at
    /// `synced_ms` on the loop's clock, and the second that reading was in.
    wall_ms_at_sync: u64,
    synced_ms: u64,
}

impl LoopClock {
    pub fn new() -> LoopClock {
        let started = Instant::now();
        LoopClock {
            started,
            now: started,
            now_ms: 0,
            wall_ms_at_sync: wall_ms(SystemTime::now()),
            synced_ms: 0,
        }
    }

    /// Reads the clock for a new turn.
    pub fn tick(&mut self) {
        self.now = Instant::now();
        let since_start = self.now.saturating_duration_since(self.started);
        self.now_ms = u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX);
        if self.now_ms / 1000 != self.synced_ms / 1000 {
            self.wall_ms_at_sync = wall_ms(SystemTime::now());
            self.synced_ms = self.now_ms;
        }
    }

    /// This turn's instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// This turn's instant in milliseconds since the loop started.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// This turn's wall clock, to the millisecond.
    pub fn wall_clock(&self) -> SystemTime {
        let wall = self.wall_ms_at_sync + self.now_ms.saturating_sub(self.synced_ms);
        UNIX_EPOCH + Duration::from_millis(wall)
    }

    /// When the loop started, for connection ages.
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Default for LoopClock {
    fn default() -> LoopClock {
        LoopClock::new()
    }
}

fn wall_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerEntry {
    pub at: Instant,
    pub slot: usize,
    /// Distinguishes connections that reuse a slot.
    pub id: u64,
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<TimerEntry>>,
}

impl Timers {
    pub fn schedule(&mut self, entry: TimerEntry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest entry (possibly stale: its connection may have moved
    /// its deadline since).
    pub fn next(&self) -> Option<&TimerEntry> {
        self.heap.peek().map(|Reverse(entry)| entry)
    }

    /// The earliest entry due at `now`, removed from the heap.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live` says are still wanted, in place.
    pub fn retain(&mut self, mut live: impl FnMut(&TimerEntry) -> bool) {
        self.heap.retain(|Reverse(entry)| live(entry));
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut timers = Timers::default();
        for (ms, slot) in [(30, 3), (10, 1), (20, 2)] {
            timers.schedule(TimerEntry {
                at: at(ms),
                slot,
                id: slot as u64,
            });
        }
        assert_eq!(timers.next().map(|entry| entry.at), Some(at(10)));
        assert_eq!(timers.pop_due(at(5)), None);
        assert_eq!(timers.pop_due(at(25)).map(|e| e.slot), Some(1));
        assert_eq!(timers.pop_due(at(25)).map(|e| e.slot), Some(2));
        assert_eq!(timers.pop_due(at(25)), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn retain_drops_stale_entries_and_keeps_the_order() {
        let start = Instant::now();
        let mut timers = Timers::default();
        for slot in 0..100 {
            timers.schedule(TimerEntry {
                at: start + Duration::from_millis(1000 - slot as u64),
                slot,
                id: 0,
            });
        }
        timers.retain(|entry| entry.slot % 10 == 0);
        assert_eq!(timers.len(), 10);
        let order: Vec<usize> = std::iter::from_fn(|| {
            timers
                .pop_due(start + Duration::from_secs(2))
                .map(|e| e.slot)
        })
        .collect();
        assert_eq!(order, [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]);
    }
}

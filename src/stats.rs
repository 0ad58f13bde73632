//! The counters the status pages show, kept so that any worker can read
//! every worker's.
//!
//! Each worker owns one [`WorkerStats`] and is the only thread that writes
//! it; the status pages (`stub_status`, its Prometheus form) read all of
//! them and add them up. A counter is an atomic only so that another thread
//! may read it: with one writer an increment is a plain load and store
//! (no locked instruction), which costs what a `u64` field would. Nothing
//! here is locked on the path of a request: the list of upstream servers
//! changes only at start and on reload.
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A count written by one thread and read by any.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this, so the load and the
    /// store cannot race with another writer.
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds a signed change (a gauge: connections moving between states).
    pub fn change(&self, by: i64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).saturating_add_signed(by),
            Ordering::Relaxed,
        );
    }

    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Connections accepted since start (nginx's `accepts` and `handled`).
    pub accepted: Counter,
    /// Requests begun since start, counted from their first byte as nginx
    /// counts them.
    pub requests: Counter,
    /// Client connections open now.
    pub active: Counter,
    /// Connections reading a request head now.
    pub reading: Counter,
    /// Connections with a request under way now.
    pub writing: Counter,
    /// Responses sent to clients, by status class: 1xx … 5xx.
    pub responses: [Counter; 5],
    /// Upstream connections open, and those of them idle in the pool.
    pub upstream_connections: Counter,
    pub pooled_connections: Counter,
    /// TLS handshakes completed (of them, resumed sessions) and failed.
    pub tls_handshakes: Counter,
    pub tls_resumed: Counter,
    pub tls_failures: Counter,
    /// The same for TLS to upstreams (`proxy_pass https://`).
    pub upstream_tls_handshakes: Counter,
    pub upstream_tls_resumed: Counter,
    pub upstream_tls_failures: Counter,
    /// `gzip`: responses compressed, and their bytes before and after.
    pub gzip_responses: Counter,
    pub gzip_bytes_in: Counter,
    pub gzip_bytes_out: Counter,
    /// `auth_basic`: requests answered 401.
    pub auth_failures: Counter,
    /// The servers of the configuration in force, replaced on reload.
    pub servers: Mutex<Vec<Arc<ServerStats>>>,
}

impl WorkerStats {
    /// Counts a response's status in its class.
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100);
        if let Some(counter) = class.checked_sub(1).and_then(|i| self.responses.get(i)) {
            counter.add(1);
        }
    }

    /// The server list of this worker (empty if the lock was poisoned by a
    /// panicking reader, which ferry's code never does).
    pub fn servers(&self) -> Vec<Arc<ServerStats>> {
        self.servers.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn set_servers(&self, servers: Vec<Arc<ServerStats>>) {
        if let Ok(mut current) = self.servers.lock() {
            *current = servers;
        }
    }
}

/// One server of one upstream group, as one worker has seen it.
#[derive(Debug)]
pub struct ServerStats {
    pub group: String,
    pub addr: crate::upstream::addr::ServerAddr,
    /// Requests sent to it (each try counts).
    pub requests: Counter,
    /// Connect errors and timeouts (nginx's `max_fails` failures).
    pub failures: Counter,
    /// Idle keep-alive connections to its address in this worker's pool.
    pub pooled: Counter,
    /// Marked down in the configuration.
    pub configured_down: bool,
    /// After `max_fails` failures: unavailable until this time, in
    /// milliseconds since the Unix epoch (0: available).
    unavailable_until_ms: Counter,
}

impl ServerStats {
    pub fn new(
        group: &str,
        addr: crate::upstream::addr::ServerAddr,
        configured_down: bool,
    ) -> ServerStats {
        ServerStats {
            group: group.to_string(),
            addr,
            requests: Counter::default(),
            failures: Counter::default(),
            pooled: Counter::default(),
            configured_down,
            unavailable_until_ms: Counter::default(),
        }
    }

    /// Whether it may be picked at `now_ms` (milliseconds since the epoch).
    pub fn is_up(&self, now_ms: u64) -> bool {
        !self.configured_down && self.unavailable_until_ms.get() <= now_ms
    }

    pub fn mark_unavailable_until(&self, until_ms: u64) {
        self.unavailable_until_ms.set(until_ms);
    }

    pub fn mark_available(&self) {
        self.unavailable_until_ms.set(0);
    }
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn epoch_ms(now: std::time::SystemTime) -> u64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every worker's counters added up, for the status pages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub requests: u64,
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub responses: [u64; 5],
    pub upstream_connections: u64,
    pub pooled_connections: u64,
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    pub tls_failures: u64,
    pub upstream_tls_handshakes: u64,
    pub upstream_tls_resumed: u64,
    pub upstream_tls_failures: u64,
    pub gzip_responses: u64,
    pub gzip_bytes_in: u64,
    pub gzip_bytes_out: u64,
    pub auth_failures: u64,
}

impl Totals {
    pub fn of(workers: &[Arc<WorkerStats>]) -> Totals {
        let mut totals = Totals::default();
        for worker in workers {
            totals.accepted += worker.accepted.get();
            totals.requests += worker.requests.get();
            totals.active += worker.active.get();
            totals.reading += worker.reading.get();
            totals.writing += worker.writing.get();
            for (sum, counter) in totals.responses.iter_mut().zip(&worker.responses) {
                *sum += counter.get();
            }
            totals.upstream_connections += worker.upstream_connections.get();
            totals.pooled_connections += worker.pooled_connections.get();
            totals.tls_handshakes += worker.tls_handshakes.get();
            totals.tls_resumed += worker.tls_resumed.get();
            totals.tls_failures += worker.tls_failures.get();
            totals.upstream_tls_handshakes += worker.upstream_tls_handshakes.get();
            totals.upstream_tls_resumed += worker.upstream_tls_resumed.get();
            totals.upstream_tls_failures += worker.upstream_tls_failures.get();
            totals.gzip_responses += worker.gzip_responses.get();
            totals.gzip_bytes_in += worker.gzip_bytes_in.get();
            totals.gzip_bytes_out += worker.gzip_bytes_out.get();
            totals.auth_failures += worker.auth_failures.get();
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_change() {
        let counter = Counter::default();
        counter.add(3);
        counter.change(-1);
        counter.change(-5);
        assert_eq!(counter.get(), 0, "a gauge never goes below zero");
        counter.change(2);
        assert_eq!(counter.get(), 2);
    }

    #[test]
    fn responses_by_class() {
        let stats = WorkerStats::default();
        for status in [101, 200, 204, 304, 404, 502, 999, 42] {
            stats.count_response(status);
        }
        let counts: Vec<u64> = stats.responses.iter().map(Counter::get).collect();
        assert_eq!(counts, [1, 2, 1, 1, 1]);
    }

    #[test]
    fn totals_add_workers_up() {
        let workers: Vec<Arc<WorkerStats>> = (0..3).map(|_| Arc::default()).collect();
        for (n, worker) in workers.iter().enumerate() {
            worker.accepted.add(n as u64 + 1);
            worker.requests.add(10);
        }
        let totals = Totals::of(&workers);
        assert_eq!(totals.accepted, 6);
        assert_eq!(totals.requests, 30);
    }
}

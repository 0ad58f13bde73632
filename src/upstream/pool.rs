//! Idle keep-alive connections to upstream servers, per server address.
//!
//! A connection enters the pool only after a response that ended exactly on
//! its framing boundary, so the next request starts on a clean stream. While
//! pooled it stays registered with the poll: any event on it means the
//! upstream closed it (or misbehaved), and it is dropped then, not when the
//! next request would have hit the dead socket.
//!
//! In the course (docs/learn): chapter 6 (the upstream pool, and the check
//! before reuse).

use std::time::Instant;

use super::{ServerAddr, UpstreamConn};

/// Idle connections, grouped by the address they are connected to. The
/// address and the expiry live here rather than in `UpstreamConn`, which
/// every client connection carries inline whether it uses one or not.
///
/// Each server's list is ordered by expiry, so the loop's per-turn
/// questions (when is the next expiry, has one expired) look at one entry
/// per server, however many are pooled. Connections are pooled as they
/// finish, so with one `keepalive_timeout` per address this is the order
/// they arrive in, and the newest (the one reused first) is last.
#[derive(Default)]
pub struct IdlePool {
    servers: Vec<(ServerAddr, Vec<Pooled>)>,
    /// Connections over all servers, kept so that counting is not a walk.
    total: usize,
}

struct Pooled {
    conn: UpstreamConn,
    /// When the group's `keepalive_timeout` closes it.
    expires_at: Instant,
}

impl IdlePool {
    /// The most recently used idle connection to `addr` made with the TLS
    /// settings `tls_id` names (0: plain TCP): the one least likely to
    /// have been closed by the upstream's idle timer.
    pub fn take(&mut self, addr: ServerAddr, tls_id: u64) -> Option<UpstreamConn> {
        let (_, idle) = self
            .servers
            .iter_mut()
            .find(|(server, _)| *server == addr)?;
        // The newest is last; a server spoken to with several settings is
        // rare.
        let index = idle
            .iter()
            .rposition(|pooled| pooled.conn.stream.upstream_tls_id() == tls_id)?;
        self.total -= 1;
        Some(idle.remove(index).conn)
    }

    /// Pools `conn` (connected to `addr`) until `expires_at` if its server
    /// has fewer than `limit` idle connections; hands it back otherwise.
    pub fn put(
        &mut self,
        addr: ServerAddr,
        conn: UpstreamConn,
        limit: usize,
        expires_at: Instant,
    ) -> Option<UpstreamConn> {
        let index = match self.servers.iter().position(|(server, _)| *server == addr) {
            Some(index) => index,
            None => {
                self.servers.push((addr, Vec::new()));
                self.servers.len() - 1
            }
        };
        let idle = &mut self.servers[index].1;
        if idle.len() >= limit {
            return Some(conn);
        }
        // At the end, unless two groups with different timeouts share the
        // address.
        let at = idle.partition_point(|pooled| pooled.expires_at <= expires_at);
        idle.insert(at, Pooled { conn, expires_at });
        self.total += 1;
        None
    }

    /// Looks at the pooled socket `link` after an event; returns it (and
    /// its address) if it must be closed.
    pub fn check_after_event(&mut self, link: usize) -> Option<(ServerAddr, UpstreamConn)> {
        for (addr, idle) in self.servers.iter_mut() {
            if let Some(index) = idle.iter().position(|p| p.conn.link == link) {
                // EOF, stray bytes or an error: unusable.
                if idle[index].conn.stream.still_idle() {
                    return None;
                }
                self.total -= 1;
                return Some((*addr, idle.remove(index).conn));
            }
        }
        None
    }

    /// A pooled connection whose keep-alive time is over.
    pub fn take_expired(&mut self, now: Instant) -> Option<(ServerAddr, UpstreamConn)> {
        for (addr, idle) in self.servers.iter_mut() {
            if idle.first().is_some_and(|oldest| oldest.expires_at <= now) {
                self.total -= 1;
                return Some((*addr, idle.remove(0).conn));
            }
        }
        None
    }

    /// A pooled connection whose server address `unwanted` says to drop.
    pub fn take_matching(
        &mut self,
        unwanted: impl Fn(ServerAddr) -> bool,
    ) -> Option<(ServerAddr, UpstreamConn)> {
        self.servers
            .iter_mut()
            .find(|(addr, idle)| !idle.is_empty() && unwanted(*addr))
            .and_then(|(addr, idle)| Some((*addr, idle.pop()?.conn)))
            .inspect(|_| self.total -= 1)
    }

    /// When the next pooled connection expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.servers
            .iter()
            .filter_map(|(_, idle)| Some(idle.first()?.expires_at))
            .min()
    }

    /// Idle connections to `addr`.
    pub fn count(&self, addr: ServerAddr) -> usize {
        self.servers
            .iter()
            .find(|(server, _)| *server == addr)
            .map_or(0, |(_, idle)| idle.len())
    }

    /// The addresses it has held connections to.
    pub fn addrs(&self) -> Vec<ServerAddr> {
        self.servers.iter().map(|(addr, _)| *addr).collect()
    }

    /// Idle connections over all servers.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

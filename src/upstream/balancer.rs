//! Choosing a server in an upstream group, as nginx does, and remembering
//! which servers failed.
//!
//! * Round robin is nginx's *smooth* weighted round robin: each pick adds
//!   every available server's weight to its current weight, takes the
//!   largest, and subtracts the total from it. Weights 3:1 give A A B A.
//! * `least_conn` picks the fewest active connections relative to weight,
//!   breaking ties by round robin.
//! * `ip_hash` hashes the first three octets of an IPv4 client (the whole
//!   IPv6 address) as nginx does; `hash KEY` hashes the key with CRC32, and
//!   `hash KEY consistent` places each server on a ring (ketama), so that
//!   adding a server moves few keys.
//!
//! Passive health: a connect error or timeout counts a failure; `max_fails`
//! failures make a server unavailable for `fail_timeout`, after which it is
//! tried again. As in nginx, a group of one server never marks it so. `down` servers are never picked; `backup` servers only when
//! no primary is available. A pick skips the servers already tried for this
//! request (`tried`), which is how "next upstream" works.
//!
//! Pure state and arithmetic: time comes in as `now`.
//!
//! In the course (docs/learn): chapter 7, "The order": upstreams (chapters 4
//! and 6 at full size).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::group::{Balance, UpstreamGroup, UpstreamServer};
use crate::checksum::Crc32;

/// What the balancer remembers of one server.
#[derive(Clone, Debug, Default)]
pub struct PeerState {
    current_weight: i64,
    effective_weight: i64,
    /// Connections to it in use now (for `least_conn`).
    pub active: u32,
    /// The most in use at once in this `keepalive_timeout` window and in
    /// the one before, and when this one started: the idle pool keeps as
    /// many as the recent peak needed when `keepalive` is not set.
    pub peak: u32,
    peak_before: u32,
    window_started: Option<Instant>,
    fails: u32,
    /// When the current failure window started.
    checked: Option<Instant>,
}

impl PeerState {
    /// The most connections to this server in use at once lately: in this
    /// `window` (the group's `keepalive_timeout`) and the one before, so a
    /// peak is remembered for one to two windows and then forgotten.
    pub fn recent_peak(&mut self, now: Instant, window: Duration) -> u32 {
        let fresh = self
            .window_started
            .is_some_and(|start| now.saturating_duration_since(start) < window);
        if !fresh {
            self.peak_before = self.peak;
            self.peak = self.active;
            self.window_started = Some(now);
        }
        self.peak.max(self.peak_before)
    }
}

/// One group's state, parallel to `UpstreamGroup::servers`.
#[derive(Clone, Debug)]
pub struct GroupState {
    pub peers: Vec<PeerState>,
    /// The ring of `hash … consistent`: (point, server index), sorted.
    ring: Vec<(u32, usize)>,
}

/// Servers of a group already tried by one request, as a bit set (a group
/// of more than 64 servers only tracks the first 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    pub fn add(&mut self, index: usize) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }

    pub fn contains(self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }

    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

impl GroupState {
    pub fn new(group: &UpstreamGroup) -> GroupState {
        let peers = group
            .servers
            .iter()
            .map(|server| PeerState {
                effective_weight: i64::from(server.weight),
                ..PeerState::default()
            })
            .collect();
        let mut ring = Vec::new();
        if let Balance::Hash {
            consistent: true, ..
        } = group.balance
        {
            for (index, server) in group.servers.iter().enumerate() {
                for point in 0..160 * server.weight {
                    let mut crc = Crc32::new();
                    crc.update(server.name.as_bytes());
                    crc.update(b"\0");
                    crc.update(&point.to_le_bytes());
                    ring.push((crc.finish(), index));
                }
            }
            ring.sort_unstable();
        }
        GroupState { peers, ring }
    }

    /// Whether `index` may be picked now.
    fn available(&self, server: &UpstreamServer, index: usize, now: Instant, tried: Tried) -> bool {
        let Some(peer) = self.peers.get(index) else {
            return false;
        };
        if server.down || tried.contains(index) {
            return false;
        }
        // nginx: a group of one server never marks it unavailable.
        let single = self.peers.len() == 1;
        let failed_recently = !single
            && server.max_fails > 0
            && peer.fails >= server.max_fails
            && peer.checked.is_some_and(|checked| {
                now.saturating_duration_since(checked) <= server.fail_timeout
            });
        !failed_recently
    }

    /// Whether any server may be picked now.
    pub fn any_available(&self, group: &UpstreamGroup, now: Instant, tried: Tried) -> bool {
        (0..group.servers.len()).any(|i| self.available(&group.servers[i], i, now, tried))
    }

    /// Picks a server index for a request; `None` when no server is
    /// available ("no live upstreams").
    pub fn pick(
        &mut self,
        group: &UpstreamGroup,
        client: IpAddr,
        key_hash: u32,
        now: Instant,
        tried: Tried,
    ) -> Option<usize> {
        // One server (the common `proxy_pass http://host:port`): every
        // method would choose it, when it may be chosen at all.
        if let [only] = group.servers.as_slice() {
            return self.available(only, 0, now, tried).then_some(0);
        }
        let hashed = match &group.balance {
            Balance::IpHash => self.pick_hashed(group, ip_hash(client), now, tried),
            Balance::Hash {
                consistent: true, ..
            } => self.pick_on_ring(group, key_hash, now, tried),
            Balance::Hash {
                consistent: false, ..
            } => self.pick_hashed(group, key_hash, now, tried),
            Balance::RoundRobin | Balance::LeastConn => None,
        };
        if hashed.is_some() {
            return hashed;
        }
        let least_conn = group.balance == Balance::LeastConn;
        self.pick_weighted(group, false, least_conn, now, tried)
            .or_else(|| self.pick_weighted(group, true, least_conn, now, tried))
    }

    /// Smooth weighted round robin over the primaries (or the backups),
    /// restricted to the least loaded ones for `least_conn`.
    fn pick_weighted(
        &mut self,
        group: &UpstreamGroup,
        backup: bool,
        least_conn: bool,
        now: Instant,
        tried: Tried,
    ) -> Option<usize> {
        // Two passes over the servers rather than a list of candidates:
        // a pick happens per request and allocates nothing.
        let eligible = |state: &GroupState, i: usize| {
            group.servers[i].backup == backup && state.available(&group.servers[i], i, now, tried)
        };
        // Fewest active connections per unit of weight (cross-multiplied,
        // to stay in integers), for least_conn.
        let load = |state: &GroupState, i: usize| {
            (
                u64::from(state.peers[i].active),
                u64::from(group.servers[i].weight.max(1)),
            )
        };
        let mut least: Option<(u64, u64)> = None;
        if least_conn {
            for i in (0..group.servers.len()).filter(|&i| eligible(self, i)) {
                let (l, w) = load(self, i);
                if least.is_none_or(|(lb, wb)| l * wb < lb * w) {
                    least = Some((l, w));
                }
            }
        }
        let mut best: Option<(usize, i64)> = None;
        let mut total = 0i64;
        for index in 0..group.servers.len() {
            if !eligible(self, index) {
                continue;
            }
            if let Some((lb, wb)) = least {
                let (l, w) = load(self, index);
                if l * wb != lb * w {
                    continue;
                }
            }
            let weight = i64::from(group.servers[index].weight);
            let peer = &mut self.peers[index];
            peer.current_weight += peer.effective_weight;
            total += peer.effective_weight;
            if peer.effective_weight < weight {
                peer.effective_weight += 1;
            }
            if best.is_none_or(|(_, current)| peer.current_weight > current) {
                best = Some((index, peer.current_weight));
            }
        }
        let (best, _) = best?;
        self.peers[best].current_weight -= total;
        Some(best)
    }

    /// nginx's `ip_hash` and plain `hash`: the hash chooses by weight; an
    /// unavailable choice is rehashed up to 20 times, then round robin.
    fn pick_hashed(
        &mut self,
        group: &UpstreamGroup,
        mut hash: u32,
        now: Instant,
        tried: Tried,
    ) -> Option<usize> {
        let total: u64 = group
            .servers
            .iter()
            .filter(|s| !s.backup)
            .map(|s| u64::from(s.weight))
            .sum();
        if total == 0 {
            return None;
        }
        for _ in 0..20 {
            let mut w = u64::from(hash) % total;
            let mut chosen = None;
            for (index, server) in group.servers.iter().enumerate().filter(|(_, s)| !s.backup) {
                if w < u64::from(server.weight) {
                    chosen = Some(index);
                    break;
                }
                w -= u64::from(server.weight);
            }
            if let Some(index) = chosen {
                if self.available(&group.servers[index], index, now, tried) {
                    return Some(index);
                }
            }
            let mut crc = Crc32::new();
            crc.update(&hash.to_le_bytes());
            hash = crc.finish();
        }
        None
    }

    /// `hash … consistent`: the first point on the ring at or after the
    /// key's hash whose server is available.
    fn pick_on_ring(
        &mut self,
        group: &UpstreamGroup,
        hash: u32,
        now: Instant,
        tried: Tried,
    ) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let start = self.ring.partition_point(|(point, _)| *point < hash);
        (0..self.ring.len())
            .map(|offset| self.ring[(start + offset) % self.ring.len()].1)
            .find(|&index| self.available(&group.servers[index], index, now, tried))
    }

    /// A connect error or timeout to `index`.
    pub fn failed(&mut self, group: &UpstreamGroup, index: usize, now: Instant) -> bool {
        let (Some(peer), Some(server)) = (self.peers.get_mut(index), group.servers.get(index))
        else {
            return false;
        };
        if server.max_fails == 0 || group.servers.len() == 1 {
            return false;
        }
        let window_over = peer
            .checked
            .is_none_or(|checked| now.saturating_duration_since(checked) > server.fail_timeout);
        if window_over {
            peer.fails = 0;
            peer.checked = Some(now);
        }
        peer.fails += 1;
        let weight = i64::from(server.weight);
        peer.effective_weight =
            (peer.effective_weight - weight / i64::from(server.max_fails)).max(0);
        peer.fails >= server.max_fails
    }

    /// A response came from `index`: its failures are forgiven.
    pub fn succeeded(&mut self, index: usize) {
        if let Some(peer) = self.peers.get_mut(index) {
            peer.fails = 0;
            peer.checked = None;
        }
    }
}

/// nginx's `ip_hash`: the first three octets of IPv4, all of IPv6.
fn ip_hash(client: IpAddr) -> u32 {
    let mut hash: u32 = 89;
    let (v4, v6);
    let octets: &[u8] = match client {
        IpAddr::V4(addr) => {
            v4 = addr.octets();
            &v4[..3]
        }
        IpAddr::V6(addr) => {
            v6 = addr.octets();
            &v6
        }
    };
    for &octet in octets {
        hash = (hash * 113 + u32::from(octet)) % 6271;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn server(name: &str, weight: u32) -> UpstreamServer {
        UpstreamServer {
            addr: "127.0.0.1:1".parse().unwrap(),
            name: name.into(),
            weight,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
        }
    }

    fn group(servers: Vec<UpstreamServer>, balance: Balance) -> UpstreamGroup {
        UpstreamGroup {
            implicit: false,
            stream: false,
            name: "g".into(),
            servers,
            balance,
            keepalive: Some(0),
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 100,
        }
    }

    fn picks(group: &UpstreamGroup, state: &mut GroupState, n: usize) -> String {
        let now = Instant::now();
        (0..n)
            .map(|_| {
                let index = state
                    .pick(group, "10.0.0.1".parse().unwrap(), 0, now, Tried::default())
                    .unwrap();
                group.servers[index].name.clone()
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves() {
        let g = group(vec![server("A", 3), server("B", 1)], Balance::RoundRobin);
        let mut state = GroupState::new(&g);
        assert_eq!(picks(&g, &mut state, 8), "AABAAABA");
        let g = group(
            vec![server("a", 5), server("b", 1), server("c", 1)],
            Balance::RoundRobin,
        );
        let mut state = GroupState::new(&g);
        // nginx's documented sequence for 5:1:1.
        assert_eq!(picks(&g, &mut state, 7), "aabacaa");
    }

    #[test]
    fn down_and_failed_servers_are_skipped_and_return_after_fail_timeout() {
        let mut servers = vec![server("A", 1), server("B", 1), server("C", 1)];
        servers[2].down = true;
        let g = group(servers, Balance::RoundRobin);
        let mut state = GroupState::new(&g);
        let now = Instant::now();
        assert!(state.failed(&g, 0, now));
        let ip = "10.0.0.1".parse().unwrap();
        for _ in 0..4 {
            assert_eq!(state.pick(&g, ip, 0, now, Tried::default()), Some(1));
        }
        let later = now + Duration::from_secs(11);
        let names: Vec<usize> = (0..4)
            .filter_map(|_| state.pick(&g, ip, 0, later, Tried::default()))
            .collect();
        assert!(names.contains(&0), "{names:?}");
    }

    #[test]
    fn backups_only_when_every_primary_is_unavailable() {
        let mut servers = vec![server("A", 1), server("B", 1)];
        servers[1].backup = true;
        let g = group(servers, Balance::RoundRobin);
        let mut state = GroupState::new(&g);
        let now = Instant::now();
        let ip = "10.0.0.1".parse().unwrap();
        assert_eq!(state.pick(&g, ip, 0, now, Tried::default()), Some(0));
        state.failed(&g, 0, now);
        assert_eq!(state.pick(&g, ip, 0, now, Tried::default()), Some(1));
        let mut tried = Tried::default();
        tried.add(1);
        assert_eq!(state.pick(&g, ip, 0, now, tried), None, "no live upstreams");
    }

    #[test]
    fn least_conn_prefers_the_idle_server() {
        let g = group(vec![server("A", 1), server("B", 1)], Balance::LeastConn);
        let mut state = GroupState::new(&g);
        state.peers[0].active = 3;
        assert_eq!(picks(&g, &mut state, 3), "BBB");
    }

    #[test]
    fn ip_hash_sticks_per_network() {
        let g = group(
            vec![server("A", 1), server("B", 1), server("C", 1)],
            Balance::IpHash,
        );
        let mut state = GroupState::new(&g);
        let now = Instant::now();
        let first = state.pick(&g, "192.0.2.7".parse().unwrap(), 0, now, Tried::default());
        for last in [1, 50, 254] {
            let ip = format!("192.0.2.{last}").parse().unwrap();
            assert_eq!(state.pick(&g, ip, 0, now, Tried::default()), first);
        }
    }

    #[test]
    fn the_recent_peak_lasts_one_to_two_windows() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut peer = PeerState {
            active: 40,
            peak: 40,
            ..PeerState::default()
        };
        assert_eq!(peer.recent_peak(start, window), 40);
        peer.active = 3;
        // Next window: the last one's peak still counts.
        assert_eq!(peer.recent_peak(start + window, window), 40);
        // The window after: only what it saw (3 in use when it began).
        assert_eq!(peer.recent_peak(start + window * 2, window), 3);
    }

    #[test]
    fn consistent_hash_sticks_and_moves_few_keys() {
        let three = group(
            vec![server("a:1", 1), server("b:1", 1), server("c:1", 1)],
            Balance::Hash {
                key: crate::variables::Template::compile("$request_uri").unwrap(),
                consistent: true,
            },
        );
        let four = group(
            vec![
                server("a:1", 1),
                server("b:1", 1),
                server("c:1", 1),
                server("d:1", 1),
            ],
            three.balance.clone(),
        );
        let (mut s3, mut s4) = (GroupState::new(&three), GroupState::new(&four));
        let now = Instant::now();
        let ip = "10.0.0.1".parse().unwrap();
        let mut moved = 0;
        for key in 0..1000u32 {
            let mut crc = Crc32::new();
            crc.update(format!("/item/{key}").as_bytes());
            let hash = crc.finish();
            let a = s3.pick(&three, ip, hash, now, Tried::default()).unwrap();
            assert_eq!(s3.pick(&three, ip, hash, now, Tried::default()), Some(a));
            let b = s4.pick(&four, ip, hash, now, Tried::default()).unwrap();
            if three.servers[a].name != four.servers[b].name {
                moved += 1;
            }
        }
        // Ideal is a quarter; far from "everything moves".
        assert!(moved < 400, "{moved} of 1000 keys moved");
    }
}

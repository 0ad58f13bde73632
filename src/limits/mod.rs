//! Request and connection limits (ngx_http_limit_req_module and
//! ngx_http_limit_conn_module): zones of per-key state shared by every
//! worker, and the decisions nginx makes with them.
//!
//! A `limit_req_zone` keeps, per key, a leaky bucket in thousandths of a
//! request: each request adds 1,000, the rate drains it, and a request
//! that would overflow `burst` is refused (503 unless `limit_req_status`
//! says otherwise); below that, the excess beyond `delay` (all of it
//! unless `nodelay`) is turned into a wait. A `limit_conn_zone` keeps, per
//! key, the requests under way; one over `limit_conn`'s number is refused.
//! [`check_requests`] and [`acquire`] are the decisions, over the zones
//! only: no sockets, no clock reading of their own.
//!
//! Zones live for the process: a reload that declares a zone of the same
//! name, kind and size keeps its state, as nginx keeps shared memory.
//!
//! In the course (docs/learn): chapter 7, "The order": limits, consulted
//! before a request goes on.

pub mod zone;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use crate::variables::{RequestView, Template};
use zone::Zone;

/// One key's leaky bucket (nginx's `ngx_http_limit_req_node_t`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Bucket {
    /// Thousandths of a request above the rate.
    excess: u64,
    /// When `excess` was last brought up to date (zone milliseconds).
    last_ms: u64,
    /// Requests between their lookup and their accounting (several limits).
    pending: u32,
}

/// What a zone counts.
pub enum ZoneKind {
    /// `limit_req_zone … rate=`: the rate in thousandths of a request per
    /// second.
    Requests {
        rate: u64,
        buckets: Mutex<Zone<Bucket>>,
    },
    /// `limit_conn_zone`: requests under way per key.
    Connections { counts: Mutex<Zone<u32>> },
}

/// A `limit_req_zone` or `limit_conn_zone`.
pub struct LimitZone {
    pub name: String,
    pub key: Template,
    pub size: u64,
    pub kind: ZoneKind,
    /// Counted for the status page: requests refused and delayed (by
    /// every worker, so atomically added to).
    pub refused: AtomicU64,
    pub delayed: AtomicU64,
}

impl std::fmt::Debug for LimitZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LimitZone({})", self.name)
    }
}

/// Milliseconds on one clock every worker reads.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The zone named `name`: the one a previous configuration declared with
/// the same kind and size (its state kept), or a new one.
pub fn zone(name: &str, key: Template, size: u64, rate: Option<u64>) -> Arc<LimitZone> {
    static ZONES: OnceLock<Mutex<HashMap<String, Weak<LimitZone>>>> = OnceLock::new();
    let registry = ZONES.get_or_init(Default::default);
    let mut zones = registry.lock().unwrap_or_else(|e| e.into_inner());
    let same = |zone: &LimitZone| {
        zone.size == size
            && match (&zone.kind, rate) {
                (ZoneKind::Requests { rate: r, .. }, Some(rate)) => *r == rate,
                (ZoneKind::Connections { .. }, None) => true,
                _ => false,
            }
    };
    if let Some(existing) = zones.get(name).and_then(Weak::upgrade) {
        if same(&existing) && existing.key == key {
            return existing;
        }
    }
    let kind = match rate {
        Some(rate) => ZoneKind::Requests {
            rate,
            buckets: Mutex::new(Zone::new(size)),
        },
        None => ZoneKind::Connections {
            counts: Mutex::new(Zone::new(size)),
        },
    };
    let made = Arc::new(LimitZone {
        name: name.to_string(),
        key,
        size,
        kind,
        refused: Default::default(),
        delayed: Default::default(),
    });
    zones.insert(name.to_string(), Arc::downgrade(&made));
    made
}

/// A `limit_req` line.
#[derive(Clone, Debug)]
pub struct LimitReq {
    pub zone: Arc<LimitZone>,
    /// `burst=`, in thousandths of a request.
    pub burst: u64,
    /// `delay=` in thousandths (`u64::MAX` for `nodelay`, 0 by default).
    pub delay: u64,
}

impl PartialEq for LimitReq {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.zone, &other.zone)
            && self.burst == other.burst
            && self.delay == other.delay
    }
}

impl Eq for LimitReq {}

/// A `limit_conn` line.
#[derive(Clone, Debug)]
pub struct LimitConn {
    pub zone: Arc<LimitZone>,
    pub max: u32,
}

impl PartialEq for LimitConn {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.zone, &other.zone) && self.max == other.max
    }
}

impl Eq for LimitConn {}

/// What the `limit_req` lines say about a request; `zone` is the line's
/// that decided, `excess` (thousandths of a request) is for the log.
#[derive(Clone, Copy, Debug)]
pub enum ReqDecision<'a> {
    Pass,
    /// Wait this long first.
    Delay {
        ms: u64,
        excess: u64,
        zone: &'a LimitZone,
    },
    Refuse {
        excess: u64,
        zone: &'a LimitZone,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bucket's excess after `elapsed` ms and one more request.
fn drained(bucket: &Bucket, rate: u64, now: u64) -> (u64, u64) {
    let elapsed = now.saturating_sub(bucket.last_ms);
    let drained = rate.saturating_mul(elapsed) / 1000;
    (
        bucket.excess.saturating_sub(drained).saturating_add(1000),
        elapsed,
    )
}

/// nginx's `ngx_http_limit_req_handler` over `limits`: each key looked up
/// in turn (an empty key skips its line), the last one accounted at once,
/// the others after all passed; the longest delay wins.
pub fn check_requests<'a>(
    limits: &'a [LimitReq],
    view: &RequestView<'_>,
    now: u64,
) -> ReqDecision<'a> {
    let mut key = Vec::new();
    // Buckets looked up but not yet accounted: (line, entry).
    let mut held: Vec<(usize, usize)> = Vec::new();
    let mut last_excess = 0;
    let mut decided = false;
    for (n, limit) in limits.iter().enumerate() {
        let ZoneKind::Requests { rate, buckets } = &limit.zone.kind else {
            continue;
        };
        key.clear();
        limit.zone.key.render(view, &mut key);
        if key.is_empty() {
            continue;
        }
        let account = n == limits.len() - 1;
        let mut zone = lock(buckets);
        let (at, excess) = match zone.get(&key) {
            Some((at, bucket)) => {
                let (excess, elapsed) = drained(bucket, *rate, now);
                if excess > limit.burst {
                    drop(zone);
                    release_held(limits, &held);
                    return ReqDecision::Refuse {
                        excess,
                        zone: &limit.zone,
                    };
                }
                if account {
                    bucket.excess = excess;
                    if elapsed > 0 {
                        bucket.last_ms = now;
                    }
                } else {
                    bucket.pending += 1;
                }
                (at, excess)
            }
            None => {
                let bucket = Bucket {
                    excess: 0,
                    last_ms: if account { now } else { 0 },
                    pending: u32::from(!account),
                };
                match zone.insert(&key, bucket, |b| b.pending == 0) {
                    Some((at, _)) => (at, 0),
                    None => {
                        drop(zone);
                        log::error!("limit_req zone \"{}\" is full", limit.zone.name);
                        release_held(limits, &held);
                        return ReqDecision::Refuse {
                            excess: 0,
                            zone: &limit.zone,
                        };
                    }
                }
            }
        };
        drop(zone);
        decided = true;
        if account {
            last_excess = excess;
        } else {
            held.push((n, at));
        }
    }
    if !decided {
        return ReqDecision::Pass;
    }
    // The last line's delay, then each held line's once accounted.
    let mut best: Option<(u64, u64, &LimitZone)> = None;
    if let Some(last) = limits.last() {
        if let ZoneKind::Requests { rate, .. } = &last.zone.kind {
            if last_excess > last.delay && *rate > 0 {
                let ms = (last_excess - last.delay) * 1000 / rate;
                best = Some((ms, last_excess, &last.zone));
            }
        }
    }
    for &(n, at) in &held {
        let Some(limit) = limits.get(n) else { continue };
        let ZoneKind::Requests { rate, buckets } = &limit.zone.kind else {
            continue;
        };
        let mut zone = lock(buckets);
        let Some(bucket) = zone.at(at) else { continue };
        let (excess, elapsed) = drained(bucket, *rate, now);
        if elapsed > 0 {
            bucket.last_ms = now;
        }
        bucket.excess = excess;
        bucket.pending = bucket.pending.saturating_sub(1);
        drop(zone);
        if excess > limit.delay && *rate > 0 {
            let ms = (excess - limit.delay) * 1000 / rate;
            if best.is_none_or(|(longest, _, _)| ms > longest) {
                best = Some((ms, excess, &limit.zone));
            }
        }
    }
    match best {
        Some((ms, excess, zone)) if ms > 0 => ReqDecision::Delay { ms, excess, zone },
        _ => ReqDecision::Pass,
    }
}

fn release_held(limits: &[LimitReq], held: &[(usize, usize)]) {
    for &(n, at) in held {
        if let Some(ZoneKind::Requests { buckets, .. }) = limits.get(n).map(|l| &l.zone.kind) {
            if let Some(bucket) = lock(buckets).at(at) {
                bucket.pending = bucket.pending.saturating_sub(1);
            }
        }
    }
}

/// A request counted in a `limit_conn_zone`, released when dropped (the
/// request ended, however it ended).
#[derive(Debug)]
pub struct Held {
    zone: Arc<LimitZone>,
    at: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let ZoneKind::Connections { counts } = &self.zone.kind {
            let mut zone = lock(counts);
            let empty = match zone.at(self.at) {
                Some(count) => {
                    *count = count.saturating_sub(1);
                    *count == 0
                }
                None => false,
            };
            if empty {
                zone.remove(self.at);
            }
        }
    }
}

/// nginx's `ngx_http_limit_conn_handler`: counts the request in each
/// line's zone under its key; the first line over its number refuses it
/// (its zone is returned) and nothing stays counted. The counts taken are
/// pushed to `held`.
pub fn acquire<'a>(
    limits: &'a [LimitConn],
    view: &RequestView<'_>,
    held: &mut Vec<Held>,
) -> Result<(), &'a LimitZone> {
    let mut key = Vec::new();
    let first = held.len();
    for limit in limits {
        let ZoneKind::Connections { counts } = &limit.zone.kind else {
            continue;
        };
        key.clear();
        limit.zone.key.render(view, &mut key);
        if key.is_empty() {
            continue;
        }
        let mut zone = lock(counts);
        let taken = match zone.get(&key) {
            Some((at, count)) if *count < limit.max => {
                *count += 1;
                Some(at)
            }
            Some(_) => None,
            None => zone.insert(&key, 1, |count| *count == 0).map(|(at, _)| at),
        };
        drop(zone);
        match taken {
            Some(at) => held.push(Held {
                zone: Arc::clone(&limit.zone),
                at,
            }),
            None => {
                held.truncate(first);
                return Err(&limit.zone);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> RequestView<'static> {
        RequestView::for_tests()
    }

    fn limit(name: &str, per_second: u64, burst: u64, delay: u64) -> LimitReq {
        let key = Template::compile_with("$remote_addr", &[]).unwrap();
        LimitReq {
            zone: zone(name, key, 1 << 20, Some(per_second * 1000)),
            burst: burst * 1000,
            delay,
        }
    }

    #[test]
    fn burst_and_nodelay_decide_as_nginx_does() {
        // 1 r/s, burst=3 nodelay: four pass at once, the fifth is refused.
        let limits = [limit("test-nodelay", 1, 3, u64::MAX)];
        let decisions: Vec<bool> = (0..5)
            .map(|_| matches!(check_requests(&limits, &view(), 10_000), ReqDecision::Pass))
            .collect();
        assert_eq!(decisions, [true, true, true, true, false]);
        // A second later one more fits.
        assert!(matches!(
            check_requests(&limits, &view(), 11_000),
            ReqDecision::Pass
        ));
    }

    #[test]
    fn without_nodelay_the_excess_waits() {
        // 10 r/s, burst=2: the first passes, the next two wait 100 and
        // 200 ms, the fourth is refused.
        let limits = [limit("test-delay", 10, 2, 0)];
        let now = 50_000;
        assert!(matches!(
            check_requests(&limits, &view(), now),
            ReqDecision::Pass
        ));
        let waits: Vec<ReqDecision> = (0..3)
            .map(|_| check_requests(&limits, &view(), now))
            .collect();
        assert!(
            matches!(waits[0], ReqDecision::Delay { ms: 100, .. }),
            "{waits:?}"
        );
        assert!(
            matches!(waits[1], ReqDecision::Delay { ms: 200, .. }),
            "{waits:?}"
        );
        assert!(matches!(waits[2], ReqDecision::Refuse { .. }), "{waits:?}");
    }

    #[test]
    fn connections_are_counted_and_released() {
        let key = Template::compile_with("$remote_addr", &[]).unwrap();
        let limits = [LimitConn {
            zone: zone("test-conn", key, 1 << 20, None),
            max: 2,
        }];
        let mut held = Vec::new();
        assert!(acquire(&limits, &view(), &mut held).is_ok());
        assert!(acquire(&limits, &view(), &mut held).is_ok());
        assert!(acquire(&limits, &view(), &mut held).is_err());
        assert_eq!(held.len(), 2);
        drop(held.pop());
        assert!(acquire(&limits, &view(), &mut held).is_ok());
    }
}

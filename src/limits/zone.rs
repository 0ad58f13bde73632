//! A zone: a bounded map from a key (the rendered `limit_*_zone` key) to
//! a small state, with the least recently used entry evicted when it is
//! full, as nginx's shared-memory zones do. One zone is shared by every
//! worker behind a mutex; a request touches it once or twice, for a few
//! hundred nanoseconds.
//!
//! In the course (docs/learn): chapter 7, "The order": limits, consulted
//! before a request goes on.

use std::collections::HashMap;

/// Bytes nginx's docs count per state ("one megabyte zone can keep about
/// 16 thousand 64-byte states"); a zone of SIZE holds SIZE / 64 keys.
pub const STATE_BYTES: u64 = 64;

/// One key's entry: its state and its place in the recency list.
struct Entry<S> {
    key: Box<[u8]>,
    state: S,
    newer: Option<usize>,
    older: Option<usize>,
}

/// Keys to states, at most `capacity` of them.
pub struct Zone<S> {
    capacity: usize,
    index: HashMap<Box<[u8]>, usize>,
    entries: slab::Slab<Entry<S>>,
    newest: Option<usize>,
    oldest: Option<usize>,
}

impl<S> Zone<S> {
    pub fn new(size_bytes: u64) -> Zone<S> {
        let capacity = usize::try_from(size_bytes / STATE_BYTES)
            .unwrap_or(usize::MAX)
            .max(1);
        Zone {
            capacity,
            index: HashMap::new(),
            entries: slab::Slab::new(),
            newest: None,
            oldest: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn unlink(&mut self, at: usize) {
        let Some(entry) = self.entries.get(at) else {
            return;
        };
        let (newer, older) = (entry.newer, entry.older);
        match newer {
            Some(n) => {
                if let Some(e) = self.entries.get_mut(n) {
                    e.older = older;
                }
            }
            None => self.newest = older,
        }
        match older {
            Some(o) => {
                if let Some(e) = self.entries.get_mut(o) {
                    e.newer = newer;
                }
            }
            None => self.oldest = newer,
        }
    }

    fn push_newest(&mut self, at: usize) {
        let previous = self.newest;
        if let Some(entry) = self.entries.get_mut(at) {
            entry.newer = None;
            entry.older = previous;
        }
        if let Some(p) = previous.and_then(|p| self.entries.get_mut(p)) {
            p.newer = Some(at);
        }
        self.newest = Some(at);
        if self.oldest.is_none() {
            self.oldest = Some(at);
        }
    }

    /// The entry of `key`, now the most recently used; `None` if absent.
    pub fn get(&mut self, key: &[u8]) -> Option<(usize, &mut S)> {
        let at = *self.index.get(key)?;
        self.unlink(at);
        self.push_newest(at);
        self.entries.get_mut(at).map(|e| (at, &mut e.state))
    }

    /// Adds `key` with `state`, evicting the least recently used entries
    /// that `evictable` allows while the zone is full; `None` when nothing
    /// could be evicted (nginx: "could not allocate node").
    pub fn insert(
        &mut self,
        key: &[u8],
        state: S,
        evictable: impl Fn(&S) -> bool,
    ) -> Option<(usize, &mut S)> {
        let mut candidate = self.oldest;
        while self.entries.len() >= self.capacity {
            let at = candidate?;
            let entry = self.entries.get(at)?;
            candidate = entry.newer;
            if evictable(&entry.state) {
                self.remove(at);
            }
        }
        let key: Box<[u8]> = key.into();
        let at = self.entries.insert(Entry {
            key: key.clone(),
            state,
            newer: None,
            older: None,
        });
        self.index.insert(key, at);
        self.push_newest(at);
        self.entries.get_mut(at).map(|e| (at, &mut e.state))
    }

    /// The entry at `at` (from `get` or `insert`), if it is still there.
    pub fn at(&mut self, at: usize) -> Option<&mut S> {
        self.entries.get_mut(at).map(|e| &mut e.state)
    }

    pub fn remove(&mut self, at: usize) {
        self.unlink(at);
        if self.entries.contains(at) {
            let entry = self.entries.remove(at);
            self.index.remove(&entry.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_key_goes_first() {
        let mut zone: Zone<u32> = Zone::new(3 * STATE_BYTES);
        for key in [b"a", b"b", b"c"] {
            zone.insert(key, 0, |_| true).unwrap();
        }
        zone.get(b"a").unwrap();
        zone.insert(b"d", 0, |_| true).unwrap();
        assert!(zone.get(b"b").is_none(), "b was the oldest");
        assert!(zone.get(b"a").is_some() && zone.get(b"c").is_some());
        assert_eq!(zone.len(), 3);
    }

    #[test]
    fn entries_in_use_are_not_evicted() {
        let mut zone: Zone<u32> = Zone::new(2 * STATE_BYTES);
        zone.insert(b"busy", 1, |_| true).unwrap();
        zone.insert(b"idle", 0, |_| true).unwrap();
        zone.insert(b"new", 0, |count| *count == 0).unwrap();
        assert!(zone.get(b"busy").is_some());
        assert!(zone.get(b"idle").is_none());
        // Everything busy: no room.
        let mut full: Zone<u32> = Zone::new(STATE_BYTES);
        full.insert(b"x", 1, |_| true).unwrap();
        assert!(full.insert(b"y", 0, |count| *count == 0).is_none());
    }

    #[test]
    fn many_keys_stay_within_the_capacity() {
        let mut zone: Zone<u64> = Zone::new(100 * STATE_BYTES);
        for n in 0..10_000u64 {
            let key = n.to_le_bytes();
            zone.insert(&key, n, |_| true).unwrap();
            assert!(zone.len() <= 100);
        }
        assert!(zone.get(&9_999u64.to_le_bytes()).is_some());
        assert!(zone.get(&0u64.to_le_bytes()).is_none());
    }
}

//! Fixed-capacity byte storage: the ring buffer each direction of a connection
//! moves its bytes through, and the pool that lends buffers to busy connections.
//!
//! Data flows in one end and out the other: a socket read lands in the free
//! space ([`RingBuffer::fill_with`]), the HTTP layer looks at the readable
//! bytes without copying them ([`RingBuffer::readable_from`]), and a socket
//! write takes them out ([`RingBuffer::drain_with`]). The capacity never
//! changes, whatever the body size: a full buffer is the signal for the event
//! loop to stop reading the side that fills it (back-pressure).
//!
//! Invariants: `read_at < capacity` (or 0), `len <= capacity`, and the
//! indices are reset when the buffer empties, so that in the common case of
//! one request fitting in a buffer the bytes never wrap.
//!
//! [`BufferPool`] keeps buffer sets of idle connections for the next busy
//! one: an idle keep-alive connection holds no buffer at all. A transfer that
//! keeps filling its ring (a download or upload of many buffers' worth) gets
//! a larger storage lent for the rest of its exchange ([`BufferPool::grow`]),
//! so that a megabyte moves in a few dozen syscalls instead of a hundred and
//! more; there are few of those at once, so memory stays bounded.
//!
//! In the course (docs/learn): chapter 4 (two fixed rings per connection,
//! back-pressure); the pool that lends them is ferry's own addition.

use std::io::{self, IoSlice, IoSliceMut};

use crate::variables::UpstreamAttempt;

/// The storage lent to a ring that keeps filling: a 1 MiB body then moves in
/// about four reads and four writes per side instead of sixty-four.
pub const LARGE_BUFFER_SIZE: usize = 256 * 1024;

/// Consecutive fills of half the ring or more that make a transfer "bulk".
/// Two, so that a response whose head and first body bytes fill the ring
/// once does not take a large buffer.
const LARGE_FILLS_TO_GROW: u32 = 2;

/// A fixed-capacity FIFO of bytes over one heap allocation.
pub struct RingBuffer {
    storage: Box<[u8]>,
    read_at: usize,
    len: usize,
    /// Fills that took at least half the capacity at once: the sign of a
    /// bulk transfer, which a larger storage would serve in fewer syscalls.
    large_fills: u32,
}

impl RingBuffer {
    /// A buffer of `capacity` bytes, allocated once.
    pub fn new(capacity: usize) -> RingBuffer {
        RingBuffer {
            storage: vec![0; capacity].into_boxed_slice(),
            read_at: 0,
            len: 0,
            large_fills: 0,
        }
    }

    /// Whether the last fills filled half the buffer or more each time: a
    /// transfer limited by the buffer's size rather than by its peers.
    pub fn keeps_filling(&self) -> bool {
        self.large_fills >= LARGE_FILLS_TO_GROW
    }

    /// Moves the bytes held into `storage` (which must be able to hold them)
    /// and returns the old storage.
    fn replace_storage(&mut self, mut storage: Box<[u8]>) -> Box<[u8]> {
        let len = self.len;
        let (first, second) = self.readable_from(0, len);
        let split = first.len();
        storage[..split].copy_from_slice(first);
        storage[split..len].copy_from_slice(second);
        self.read_at = 0;
        self.large_fills = 0;
        std::mem::replace(&mut self.storage, storage)
    }

    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Forgets every byte held.
    pub fn clear(&mut self) {
        self.read_at = 0;
        self.len = 0;
        self.large_fills = 0;
    }

    fn write_at(&self) -> usize {
        let capacity = self.capacity();
        if capacity == 0 {
            return 0;
        }
        (self.read_at + self.len) % capacity
    }
}

/// The continuous interface: whole regions handed to a syscall at once.
impl RingBuffer {
    /// Lets `fill` write into the free space (one or two slices, for a vectored
    /// read) and records the bytes it reports written.
    ///
    /// Returns what `fill` returned. A fill that reports more bytes than it
    /// was offered is a bug in the caller, and is clamped rather than trusted.
    pub fn fill_with<F>(&mut self, fill: F) -> io::Result<usize>
    where
        F: FnOnce(&mut [IoSliceMut<'_>]) -> io::Result<usize>,
    {
        if self.len == 0 {
            self.read_at = 0;
        }
        let offered = self.free();
        let write_at = self.write_at();
        let wrapped = write_at < self.read_at || (self.len > 0 && write_at == self.read_at);
        let n = if wrapped || write_at == 0 {
            // Free space is one region: [write_at, read_at) or the whole storage.
            let end = if wrapped {
                self.read_at
            } else {
                self.capacity()
            };
            let region = &mut self.storage[write_at..end];
            fill(&mut [IoSliceMut::new(region)])?
        } else {
            // Free space is [write_at, capacity) followed by [0, read_at).
            let (head, tail) = self.storage.split_at_mut(write_at);
            let head = &mut head[..self.read_at];
            fill(&mut [IoSliceMut::new(tail), IoSliceMut::new(head)])?
        };
        let n = n.min(offered);
        self.len += n;
        if n == offered && 2 * n >= self.capacity() {
            self.large_fills += 1;
        } else {
            self.large_fills = 0;
        }
        Ok(n)
    }

    /// Lets `drain` read from the readable bytes (one or two slices, for a
    /// vectored write) and removes the bytes it reports written.
    pub fn drain_with<F>(&mut self, limit: usize, drain: F) -> io::Result<usize>
    where
        F: FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    {
        let (first, second) = self.readable_from(0, limit);
        let n = if second.is_empty() {
            drain(&[IoSlice::new(first)])?
        } else {
            drain(&[IoSlice::new(first), IoSlice::new(second)])?
        };
        let n = n.min(limit.min(self.len));
        self.consume(n);
        Ok(n)
    }

    /// The readable bytes from `offset` on, at most `limit` of them, as the
    /// two slices they occupy (the second is empty unless the data wraps).
    pub fn readable_from(&self, offset: usize, limit: usize) -> (&[u8], &[u8]) {
        if offset >= self.len {
            return (&[], &[]);
        }
        let available = (self.len - offset).min(limit);
        let capacity = self.capacity();
        let start = (self.read_at + offset) % capacity;
        let first_len = available.min(capacity - start);
        let first = &self.storage[start..start + first_len];
        let second = &self.storage[..available - first_len];
        (first, second)
    }

    /// Removes `n` bytes from the front (fewer if fewer are held).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.read_at = if self.len == 0 {
            0
        } else {
            (self.read_at + n) % self.capacity()
        };
    }

    /// Moves the readable bytes to the start of the storage and returns them
    /// as one slice, for parsers that need a message head in one piece.
    pub fn make_contiguous(&mut self) -> &[u8] {
        if self.read_at + self.len > self.capacity() {
            self.storage.rotate_left(self.read_at);
            self.read_at = 0;
        }
        &self.storage[self.read_at..self.read_at + self.len]
    }

    /// [`RingBuffer::make_contiguous`], writable: for the one fix-up made
    /// to a request line in place (see `request::accept_higher_minor_version`).
    pub fn make_contiguous_mut(&mut self) -> &mut [u8] {
        self.make_contiguous();
        &mut self.storage[self.read_at..self.read_at + self.len]
    }
}

/// The discrete interface: copying slices in and out, for small writes
/// and tests.
impl RingBuffer {
    /// Appends as much of `data` as fits; returns how much that was.
    pub fn push_slice(&mut self, data: &[u8]) -> usize {
        let mut data = data;
        let mut written = 0;
        while !data.is_empty() && !self.is_full() {
            let pushed = self
                .fill_with(|regions| {
                    let mut copied = 0;
                    for region in regions.iter_mut() {
                        let n = region.len().min(data.len() - copied);
                        region[..n].copy_from_slice(&data[copied..copied + n]);
                        copied += n;
                    }
                    Ok(copied)
                })
                .unwrap_or(0);
            written += pushed;
            data = &data[pushed..];
        }
        written
    }

    /// Copies up to `out.len()` bytes from the front into `out` and removes
    /// them; returns how many.
    pub fn pop_slice(&mut self, out: &mut [u8]) -> usize {
        let (first, second) = self.readable_from(0, out.len());
        let n = first.len() + second.len();
        out[..first.len()].copy_from_slice(first);
        out[first.len()..n].copy_from_slice(second);
        self.consume(n);
        n
    }
}

/// Everything a connection needs while it is busy with a request, lent by the
/// [`BufferPool`] and given back when the connection goes idle.
pub struct BufferSet {
    /// Bytes read from the client, not yet forwarded (request head and body,
    /// and any pipelined requests behind them).
    pub request: RingBuffer,
    /// Bytes read from the upstream, not yet written to the client.
    pub response: RingBuffer,
    /// The re-serialized request head, waiting to be written upstream. Kept
    /// until the first response byte so a failed reused connection can be
    /// retried.
    pub upstream_head: Vec<u8>,
    /// The re-serialized response head (or ferry's own response), waiting
    /// to be written to the client.
    pub client_head: Vec<u8>,
    /// The access log's request-time values, captured when the head
    /// arrived, for the line written after the request's bytes are gone.
    pub log_fields: Vec<u8>,
    /// `add_header` lines rendered for this request.
    pub extra_headers: Vec<u8>,
    /// A `return` text with variables, rendered for this request.
    pub return_text: Vec<u8>,
    /// The request's normalized path (nginx's `$uri`), for routing.
    pub path: Vec<u8>,
    /// The client's request line and host, for error log lines written
    /// after the head's bytes are gone (nginx's `request: "…", host: "…"`).
    pub request_line: Vec<u8>,
    pub host: Vec<u8>,
    /// A static location's file name (the last one tried), and the uri and
    /// arguments of an internal redirect (`index`, `try_files`).
    pub file_path: Vec<u8>,
    pub redirect: Vec<u8>,
    pub redirect_args: Vec<u8>,
    /// The arguments a `rewrite` makes, until they become `redirect_args`.
    pub rewrite_args: Vec<u8>,
    /// The values `set` gives this request's variables
    /// (`variables::SetValues`).
    pub set_values: Vec<u8>,
    pub set_spans: Vec<(u32, u32)>,
    /// The text the last regex matched and its groups (`$1`…`$9`).
    pub captured: Vec<u8>,
    pub capture_spans: Vec<Option<(usize, usize)>>,
    /// The file a static answer is reading from (`ResponseState::File`
    /// says where it is): kept here rather than in the exchange's state so
    /// that state stays plain data, and closed when the set goes back.
    pub file: Option<std::fs::File>,
    /// Upstream servers tried before the current one, for the
    /// `$upstream_*` lists.
    pub attempts: Vec<UpstreamAttempt>,
    /// The request's counts in `limit_conn` zones: each is given back when
    /// dropped, so every way an exchange ends releases them.
    pub held_limits: Vec<crate::limits::Held>,
}

impl BufferSet {
    fn new(capacity: usize) -> BufferSet {
        BufferSet {
            request: RingBuffer::new(capacity),
            response: RingBuffer::new(capacity),
            upstream_head: Vec::with_capacity(1024),
            client_head: Vec::with_capacity(1024),
            log_fields: Vec::with_capacity(256),
            extra_headers: Vec::new(),
            return_text: Vec::new(),
            path: Vec::with_capacity(256),
            request_line: Vec::with_capacity(256),
            host: Vec::with_capacity(64),
            file_path: Vec::new(),
            redirect: Vec::new(),
            redirect_args: Vec::new(),
            rewrite_args: Vec::new(),
            set_values: Vec::new(),
            set_spans: Vec::new(),
            captured: Vec::new(),
            capture_spans: Vec::new(),
            file: None,
            attempts: Vec::with_capacity(4),
            held_limits: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.request.clear();
        self.response.clear();
        self.upstream_head.clear();
        self.client_head.clear();
        self.log_fields.clear();
        self.extra_headers.clear();
        self.return_text.clear();
        self.path.clear();
        self.request_line.clear();
        self.host.clear();
        self.attempts.clear();
        self.file = None;
        self.held_limits.clear();
    }
}

/// A free list of [`BufferSet`]s, so that steady-state traffic allocates
/// nothing and idle connections cost nothing. At most `max_lent` sets are out
/// at once: memory is bounded in total, not only per connection, and a
/// connection that finds the pool empty waits for a set to come back.
pub struct BufferPool {
    // Boxed on purpose: connections hold a set by pointer (keeping an idle
    // connection small), and handing one over must not copy 32 KiB.
    #[allow(clippy::vec_box)]
    free: Vec<Box<BufferSet>>,
    buffer_size: usize,
    keep_free: usize,
    max_lent: usize,
    lent: usize,
    /// Large storages not in use, and the small ones their rings gave up
    /// while they hold a large one (given back when the set returns, so
    /// growing allocates nothing once the lists are warm).
    large_free: Vec<Box<[u8]>>,
    small_free: Vec<Box<[u8]>>,
    large_lent: usize,
    max_large_lent: usize,
}

impl BufferPool {
    /// A pool of sets whose ring buffers hold `buffer_size` bytes each; at
    /// most `keep_free` returned sets are kept for reuse, the rest are freed.
    pub fn new(buffer_size: usize, keep_free: usize, max_lent: usize) -> BufferPool {
        let max_large_lent = Self::large_cap(max_lent);
        BufferPool {
            free: Vec::new(),
            buffer_size,
            keep_free,
            max_lent,
            lent: 0,
            large_free: Vec::with_capacity(max_large_lent),
            small_free: Vec::with_capacity(max_large_lent),
            large_lent: 0,
            max_large_lent,
        }
    }

    /// Large storages lent at once: one ring in eight, at least four. With
    /// 512 sets of 2 x 16 KiB that is 64 x 256 KiB, as much again as the
    /// small rings: the bound on memory at most doubles.
    fn large_cap(max_lent: usize) -> usize {
        (max_lent / 8).max(4)
    }

    /// Gives `ring` a [`LARGE_BUFFER_SIZE`] storage if it is smaller and
    /// one is available, keeping its bytes. Rings that keep filling call
    /// this (see [`RingBuffer::keeps_filling`]); when all large storages
    /// are out the ring stays as it is, which is only slower. Returns
    /// whether it grew.
    pub fn grow(&mut self, ring: &mut RingBuffer) -> bool {
        if ring.capacity() >= LARGE_BUFFER_SIZE || self.large_lent >= self.max_large_lent {
            ring.large_fills = 0;
            return false;
        }
        let large = self
            .large_free
            .pop()
            .unwrap_or_else(|| vec![0; LARGE_BUFFER_SIZE].into_boxed_slice());
        self.large_lent += 1;
        let small = ring.replace_storage(large);
        if self.small_free.len() < self.max_large_lent {
            self.small_free.push(small);
        }
        true
    }

    /// Takes a grown ring's large storage back, giving it a small one.
    fn shrink(&mut self, ring: &mut RingBuffer) {
        if ring.capacity() != LARGE_BUFFER_SIZE || self.buffer_size == LARGE_BUFFER_SIZE {
            return;
        }
        ring.clear();
        let small = match self.small_free.pop() {
            Some(small) if small.len() == self.buffer_size => small,
            _ => vec![0; self.buffer_size].into_boxed_slice(),
        };
        let large = ring.replace_storage(small);
        self.large_lent = self.large_lent.saturating_sub(1);
        if self.large_free.len() < self.max_large_lent {
            self.large_free.push(large);
        }
    }

    /// Large storages currently held by rings.
    pub fn large_lent(&self) -> usize {
        self.large_lent
    }

    /// A set, or `None` when `max_lent` are already out.
    pub fn take(&mut self) -> Option<Box<BufferSet>> {
        if self.lent >= self.max_lent {
            return None;
        }
        self.lent += 1;
        Some(
            self.free
                .pop()
                .unwrap_or_else(|| Box::new(BufferSet::new(self.buffer_size))),
        )
    }

    pub fn has_room(&self) -> bool {
        self.lent < self.max_lent
    }

    pub fn give_back(&mut self, mut set: Box<BufferSet>) {
        self.lent = self.lent.saturating_sub(1);
        self.shrink(&mut set.request);
        self.shrink(&mut set.response);
        // A head scratch grown by a huge head is not kept at that size.
        if set.upstream_head.capacity() > 64 * 1024 || set.client_head.capacity() > 64 * 1024 {
            return;
        }
        // Lent before a reload changed the size: not reused.
        if set.request.capacity() != self.buffer_size {
            return;
        }
        if self.free.len() < self.keep_free {
            set.reset();
            self.free.push(set);
        }
    }

    /// A reload changed the buffer size or the number of sets: new sets get
    /// the new size, sets of the old size are freed as they come back.
    pub fn reconfigure(&mut self, buffer_size: usize, max_lent: usize) {
        if buffer_size != self.buffer_size {
            self.free.clear();
            self.small_free.clear();
            self.buffer_size = buffer_size;
        }
        self.max_lent = max_lent;
        self.max_large_lent = Self::large_cap(max_lent);
    }

    /// Sets currently held by connections.
    pub fn lent(&self) -> usize {
        self.lent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A tiny deterministic generator, so the property test needs no crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn the_pool_lends_at_most_its_cap_and_reuses_sets() {
        let mut pool = BufferPool::new(64, 1, 2);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert!(pool.take().is_none());
        pool.give_back(a);
        assert!(pool.has_room());
        let c = pool.take().unwrap();
        assert_eq!(c.request.capacity(), 64);
        pool.give_back(b);
        pool.give_back(c);
        assert_eq!(pool.lent(), 0);
    }

    #[test]
    fn a_ring_that_keeps_filling_grows_keeping_its_bytes_and_shrinks_on_return() {
        let mut pool = BufferPool::new(64, 1, 8);
        let mut set = pool.take().unwrap();
        let ring = &mut set.response;
        // A small fill does not count; two fills of the whole ring do.
        ring.push_slice(&[1; 10]);
        ring.consume(10);
        assert!(!ring.keeps_filling());
        ring.push_slice(&[2; 64]);
        ring.consume(60);
        ring.push_slice(&[3; 60]);
        assert!(ring.keeps_filling());
        // Wrapped bytes survive the move, in order.
        pool.grow(ring);
        assert_eq!(ring.capacity(), LARGE_BUFFER_SIZE);
        assert_eq!(pool.large_lent(), 1);
        let mut out = [0u8; 64];
        assert_eq!(ring.pop_slice(&mut out), 64);
        assert_eq!(&out[..4], &[2; 4]);
        assert_eq!(&out[4..], &[3; 60]);
        pool.give_back(set);
        assert_eq!(pool.large_lent(), 0);
        // The set comes back small, and the next growth reuses the storage.
        let mut set = pool.take().unwrap();
        assert_eq!(set.response.capacity(), 64);
        pool.grow(&mut set.request);
        assert_eq!(set.request.capacity(), LARGE_BUFFER_SIZE);
        pool.give_back(set);
    }

    #[test]
    fn large_storages_are_capped() {
        let mut pool = BufferPool::new(64, 8, 8);
        let cap = BufferPool::large_cap(8);
        let mut sets: Vec<_> = (0..cap + 1).map(|_| pool.take().unwrap()).collect();
        for set in &mut sets {
            pool.grow(&mut set.response);
        }
        let grown = sets
            .iter()
            .filter(|set| set.response.capacity() == LARGE_BUFFER_SIZE)
            .count();
        assert_eq!(grown, cap);
        for set in sets {
            pool.give_back(set);
        }
        assert_eq!(pool.large_lent(), 0);
    }

    #[test]
    fn push_pop_round_trip() {
        let mut ring = RingBuffer::new(8);
        assert_eq!(ring.push_slice(b"hello"), 5);
        assert_eq!(ring.push_slice(b"world"), 3);
        assert!(ring.is_full());
        let mut out = [0; 8];
        assert_eq!(ring.pop_slice(&mut out), 8);
        assert_eq!(&out, b"hellowor");
        assert!(ring.is_empty());
    }

    #[test]
    fn fill_offers_both_free_regions_when_wrapped() {
        let mut ring = RingBuffer::new(8);
        ring.push_slice(b"abcdef");
        ring.consume(4); // "ef" at 4..6, free: 6..8 and 0..4
        let n = ring
            .fill_with(|regions| {
                assert_eq!(regions.len(), 2);
                assert_eq!(regions[0].len(), 2);
                assert_eq!(regions[1].len(), 4);
                Ok(0)
            })
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn make_contiguous_rotates_wrapped_data() {
        let mut ring = RingBuffer::new(8);
        ring.push_slice(b"abcdef");
        ring.consume(4);
        ring.push_slice(b"ghij"); // "efghij" wraps
        assert_eq!(ring.make_contiguous(), b"efghij");
        assert_eq!(ring.readable_from(2, 3).0, b"ghi");
    }

    #[test]
    fn indices_reset_when_empty() {
        let mut ring = RingBuffer::new(8);
        ring.push_slice(b"abc");
        ring.consume(3);
        ring.push_slice(b"12345678");
        assert_eq!(ring.readable_from(0, 8), (&b"12345678"[..], &b""[..]));
    }

    #[test]
    fn over_reporting_fill_is_clamped() {
        let mut ring = RingBuffer::new(4);
        let n = ring.fill_with(|_| Ok(100)).unwrap();
        assert_eq!(n, 4);
        assert!(ring.is_full());
    }

    #[test]
    fn behaves_like_a_vecdeque_under_random_operations() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for capacity in [1, 2, 7, 16, 61] {
            let mut ring = RingBuffer::new(capacity);
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut next_byte = 0u8;
            for _ in 0..5_000 {
                match rng.below(4) {
                    0 | 1 => {
                        let want = rng.below(capacity * 2 + 1);
                        let data: Vec<u8> = (0..want)
                            .map(|_| {
                                next_byte = next_byte.wrapping_add(1);
                                next_byte
                            })
                            .collect();
                        let pushed = ring.push_slice(&data);
                        assert_eq!(pushed, want.min(capacity - model.len()));
                        model.extend(&data[..pushed]);
                        next_byte = next_byte.wrapping_sub((want - pushed) as u8);
                    }
                    2 => {
                        let mut out = vec![0; rng.below(capacity + 1)];
                        let n = ring.pop_slice(&mut out);
                        let expected: Vec<u8> = model.drain(..n).collect();
                        assert_eq!(&out[..n], &expected[..]);
                    }
                    _ => {
                        let offset = rng.below(capacity + 1);
                        let (a, b) = ring.readable_from(offset, usize::MAX);
                        let seen: Vec<u8> = a.iter().chain(b).copied().collect();
                        let expected: Vec<u8> = model.iter().skip(offset).copied().collect();
                        assert_eq!(seen, expected);
                        if rng.below(3) == 0 {
                            let contiguous = ring.make_contiguous().to_vec();
                            assert_eq!(contiguous, model.iter().copied().collect::<Vec<_>>());
                        }
                    }
                }
                assert_eq!(ring.len(), model.len());
            }
        }
    }
}

//! Moving one message body through a ring buffer without overrunning it.
//!
//! A [`BodyRelay`] sits between a ring buffer and the body decoder: it feeds
//! newly arrived bytes to the decoder and says what may be written to the
//! other side ([`BodyRelay::output`]). Bytes beyond the body's end stay in
//! the ring: they are the next pipelined request, or an upstream's protocol
//! violation.
//!
//! A chunked body is never passed on as received. Its chunk lines are
//! validated by the decoder and dropped from the ring; what goes out is the
//! data with ferry's own framing around it (`{size:x}\r\n`, no extensions,
//! no trailers, as nginx does), or the bare data for an HTTP/1.0 client.
//! That way a chunk line the next hop might read differently from ferry
//! (the raw material of request smuggling) can never reach it. The framing
//! ferry writes is a few bytes made from three facts (a chunk's data ended,
//! a chunk of N bytes starts, the body ended), so the relay keeps those
//! facts, not a byte buffer, and renders them when it writes.
//!
//! One write carries one run of data with the framing before and after it;
//! several small chunks that arrived together take one write each.
//!
//! In the course (docs/learn): chapter 5 (framing), applied to bodies as they
//! pass through the rings.

use crate::buffer::RingBuffer;
use crate::http::framing::{BodyDecoder, BodyKind, FramingError, Segment};

/// How the body's framing is passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayMode {
    /// Forward the bytes exactly as received: Content-Length and
    /// close-delimited bodies, whose framing is not in the bytes.
    AsReceived,
    /// Forward only chunk data, for an HTTP/1.0 client that cannot read
    /// chunked coding.
    Dechunk,
    /// Forward chunk data in ferry's own chunk framing.
    Rechunk,
    /// Forward nothing: the body is read, checked and dropped
    /// (`proxy_pass_request_body off`, `proxy_set_body`).
    Discard,
}

/// The most bytes of framing ferry writes around one run of data:
/// CRLF + 16 hex digits + CRLF before it, CRLF + `0\r\n\r\n` after it.
pub const FRAMING_SCRATCH: usize = 20 + 7;

/// Chunk framing ferry owes the next hop, kept as facts and rendered on
/// demand: `[CRLF] [size CRLF | 0 CRLF CRLF]`. Facts are only ever added
/// at the end, so the count of bytes written stays valid as the rendering
/// grows. One byte (three flags and that count) keeps a connection small;
/// the chunk size is kept by the relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ChunkFraming(u8);

impl ChunkFraming {
    /// The CRLF that ends the previous chunk's data.
    const CRLF: u8 = 0x80;
    /// A size line: a chunk starts.
    const SIZED: u8 = 0x40;
    /// The last chunk and the end of the (empty) trailer section.
    const LAST: u8 = 0x20;
    /// Bytes of the rendering already written (at most 27).
    const WRITTEN: u8 = 0x1f;

    fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    fn add(&mut self, segment: &Segment) {
        if segment.chunk_end {
            self.0 |= Self::CRLF;
        }
        if segment.chunk_start > 0 {
            self.0 |= Self::SIZED;
        }
        if segment.complete {
            self.0 |= Self::LAST;
        }
    }

    fn written(self) -> usize {
        usize::from(self.0 & Self::WRITTEN)
    }

    /// Renders the whole framing into `out` (`size` is the chunk's, if
    /// one starts); returns its length.
    fn render(self, size: u64, out: &mut [u8]) -> usize {
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            if let Some(slot) = out.get_mut(len..len + bytes.len()) {
                slot.copy_from_slice(bytes);
                len += bytes.len();
            }
        };
        if self.has(Self::CRLF) {
            put(b"\r\n");
        }
        if self.has(Self::SIZED) {
            let mut digits = [0u8; 16];
            let mut at = digits.len();
            let mut rest = size;
            while at > 0 {
                at -= 1;
                digits[at] = b"0123456789abcdef"[(rest & 0xf) as usize];
                rest >>= 4;
                if rest == 0 {
                    break;
                }
            }
            put(&digits[at..]);
            put(b"\r\n");
        }
        if self.has(Self::LAST) {
            put(b"0\r\n\r\n");
        }
        len
    }

    fn len(self, size: u64) -> usize {
        let digits = (64 - size.leading_zeros() as usize).div_ceil(4).max(1);
        2 * usize::from(self.has(Self::CRLF))
            + if self.has(Self::SIZED) { digits + 2 } else { 0 }
            + 5 * usize::from(self.has(Self::LAST))
    }

    fn unwritten(self, size: u64) -> usize {
        self.len(size).saturating_sub(self.written())
    }

    /// Counts up to `n` written bytes; returns how many it took. Fully
    /// written framing is forgotten.
    fn take_written(&mut self, n: usize, size: u64) -> usize {
        let taken = n.min(self.unwritten(size));
        // written + taken <= len <= FRAMING_SCRATCH < 32: fits the field.
        let written = (self.written() + taken) as u8 & Self::WRITTEN;
        self.0 = (self.0 & !Self::WRITTEN) | written;
        if self.unwritten(size) == 0 {
            *self = ChunkFraming::default();
        }
        taken
    }
}

/// What one write of the body may send, in order.
pub struct BodyOut<'a> {
    pub before: &'a [u8],
    pub data: (&'a [u8], &'a [u8]),
    pub after: &'a [u8],
}

impl<'a> BodyOut<'a> {
    /// The first `limit` bytes of `ring`, with no framing around them.
    pub fn plain(ring: &'a RingBuffer, limit: usize) -> BodyOut<'a> {
        BodyOut {
            before: &[],
            data: ring.readable_from(0, limit),
            after: &[],
        }
    }

    pub fn len(&self) -> usize {
        self.before.len() + self.data.0.len() + self.data.1.len() + self.after.len()
    }

    /// The first `max` bytes of it (`limit_rate`).
    pub fn truncated(self, max: usize) -> BodyOut<'a> {
        if self.len() <= max {
            return self;
        }
        let mut left = max;
        let mut take = |part: &'a [u8]| {
            let n = part.len().min(left);
            left -= n;
            part.get(..n).unwrap_or(part)
        };
        let before = take(self.before);
        let data = (take(self.data.0), take(self.data.1));
        let after = take(self.after);
        BodyOut {
            before,
            data,
            after,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub struct BodyRelay {
    decoder: BodyDecoder,
    mode: RelayMode,
    /// Body data at the front of the ring, cleared for writing.
    ready: usize,
    /// The size of the chunk whose size line `before` holds. (The size
    /// line in `after` is the decoder's next chunk: it stops there.)
    before_size: u64,
    /// Chunked bodies: framing bytes in the ring right after the ready
    /// data, already decoded; consumed once the data is written.
    skip: u32,
    /// Framing to write before the ready data, and after it.
    before: ChunkFraming,
    after: ChunkFraming,
}

impl BodyRelay {
    pub fn new(kind: BodyKind, mode: RelayMode) -> BodyRelay {
        // Only chunked bodies carry framing in their bytes.
        let mode = match (kind, mode) {
            (_, RelayMode::Discard) | (BodyKind::Chunked, _) => mode,
            _ => RelayMode::AsReceived,
        };
        BodyRelay {
            decoder: BodyDecoder::new(kind),
            mode,
            ready: 0,
            before_size: 0,
            skip: 0,
            before: ChunkFraming::default(),
            after: ChunkFraming::default(),
        }
    }

    /// Whether there is anything to write to the other side now.
    pub fn has_output(&self) -> bool {
        self.ready > 0
            || self.before != ChunkFraming::default()
            || self.after != ChunkFraming::default()
    }

    /// The size of the chunk `after`'s size line announces.
    fn after_size(&self) -> u64 {
        self.decoder.chunk_remaining()
    }

    /// Bytes at the front of the ring that belong to this body and are
    /// still held (data to write and the framing after it).
    pub fn held(&self) -> usize {
        self.ready + self.skip as usize
    }

    /// Body data seen so far, for size limits and logs.
    pub fn data_seen(&self) -> u64 {
        self.decoder.data_seen()
    }

    /// All of the body has been seen (it may still await writing).
    pub fn fully_received(&self) -> bool {
        self.decoder.is_complete()
    }

    /// All of the body has been seen and written.
    pub fn is_complete(&self) -> bool {
        self.decoder.is_complete() && !self.has_output() && self.skip == 0
    }

    /// The body is read and dropped, not passed on.
    pub fn is_discarding(&self) -> bool {
        self.mode == RelayMode::Discard
    }

    pub fn is_until_close(&self) -> bool {
        self.decoder.is_until_close()
    }

    /// Runs the decoder over bytes that arrived since the last scan.
    pub fn scan(&mut self, ring: &mut RingBuffer) -> Result<(), FramingError> {
        if self.mode == RelayMode::Discard {
            while !self.decoder.is_complete() {
                let (input, _) = ring.readable_from(0, usize::MAX);
                if input.is_empty() {
                    break;
                }
                let segment = self.decoder.decode(input)?;
                if segment.len == 0 {
                    break;
                }
                ring.consume(segment.len);
            }
            return Ok(());
        }
        if self.mode == RelayMode::AsReceived {
            while !self.decoder.is_complete() {
                let (input, _) = ring.readable_from(self.ready, usize::MAX);
                if input.is_empty() {
                    break;
                }
                let segment = self.decoder.decode(input)?;
                self.ready += segment.len;
                if segment.len == 0 {
                    break;
                }
            }
            return Ok(());
        }
        while !self.decoder.is_complete() {
            let held = self.held();
            let (input, _) = ring.readable_from(held, usize::MAX);
            if input.is_empty() {
                break;
            }
            if self.decoder.at_data() && self.skip > 0 {
                // The next run of data waits until this one is written.
                break;
            }
            let segment = self.decoder.decode(input)?;
            if segment.len == 0 {
                break;
            }
            let rechunk = self.mode == RelayMode::Rechunk;
            match (segment.is_data, held) {
                (true, _) => self.ready += segment.len,
                (false, 0) => {
                    // Framing at the front: it is replaced by ferry's own.
                    ring.consume(segment.len);
                    if rechunk {
                        self.before.add(&segment);
                        if segment.chunk_start > 0 {
                            self.before_size = segment.chunk_start;
                        }
                    }
                }
                (false, _) => {
                    // Framing after the ready data: dropped with it.
                    self.skip += u32::try_from(segment.len).unwrap_or(u32::MAX);
                    if rechunk {
                        self.after.add(&segment);
                    }
                }
            }
        }
        Ok(())
    }

    /// What may be written now: framing rendered into `scratch`, the ready
    /// data in the ring, framing after it.
    pub fn output<'a>(
        &self,
        ring: &'a RingBuffer,
        scratch: &'a mut [u8; FRAMING_SCRATCH],
    ) -> BodyOut<'a> {
        let before_len = self.before.render(self.before_size, &mut scratch[..]);
        let (before, rest) = scratch.split_at_mut(before_len);
        let after_len = self.after.render(self.after_size(), rest);
        let written = self.before.written().min(before.len());
        BodyOut {
            before: &before[written..],
            data: ring.readable_from(0, self.ready),
            after: &rest[..after_len],
        }
    }

    /// `n` bytes of [`BodyRelay::output`] were written: consumes the data
    /// (and the framing it replaced) from the ring. Returns how many of
    /// them were body data.
    pub fn written(&mut self, n: usize, ring: &mut RingBuffer) -> usize {
        let mut n = n - self.before.take_written(n, self.before_size);
        let data = n.min(self.ready);
        ring.consume(data);
        self.ready -= data;
        n -= data;
        if self.ready == 0 && (self.skip > 0 || self.after != ChunkFraming::default()) {
            ring.consume(self.skip as usize);
            self.skip = 0;
            self.before = std::mem::take(&mut self.after);
            self.before_size = self.after_size();
            self.before.take_written(n, self.before_size);
        }
        data
    }

    /// The source closed: complete for close-delimited bodies, an error
    /// otherwise.
    pub fn finish_on_eof(&mut self) -> Result<(), FramingError> {
        self.decoder.finish_on_eof()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes everything the relay offers, `max` bytes per write.
    fn drain(relay: &mut BodyRelay, ring: &mut RingBuffer, out: &mut Vec<u8>, max: usize) {
        loop {
            let mut scratch = [0u8; FRAMING_SCRATCH];
            let body = relay.output(ring, &mut scratch);
            let mut offered = Vec::new();
            for part in [body.before, body.data.0, body.data.1, body.after] {
                offered.extend_from_slice(part);
            }
            let n = offered.len().min(max);
            if n == 0 {
                return;
            }
            out.extend_from_slice(&offered[..n]);
            relay.written(n, ring);
        }
    }

    /// Feeds `body` through a ring of `capacity`, `step` bytes at a time,
    /// writing at most `max` bytes per write; returns what went out and
    /// what is left in the ring.
    fn relay_all(
        body: &[u8],
        mode: RelayMode,
        capacity: usize,
        step: usize,
        max: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut ring = RingBuffer::new(capacity);
        let mut relay = BodyRelay::new(BodyKind::Chunked, mode);
        let mut out = Vec::new();
        let mut input = body;
        for _ in 0..100_000 {
            if relay.is_complete() {
                break;
            }
            let room = ring.free().min(step).min(input.len());
            let pushed = ring.push_slice(&input[..room]);
            input = &input[pushed..];
            relay.scan(&mut ring).unwrap();
            drain(&mut relay, &mut ring, &mut out, max);
        }
        assert!(
            relay.is_complete(),
            "stuck after {:?}",
            String::from_utf8_lossy(&out)
        );
        let mut rest = ring.make_contiguous().to_vec();
        rest.extend_from_slice(input);
        (out, rest)
    }

    #[test]
    fn as_received_stops_before_the_next_request() {
        let mut ring = RingBuffer::new(64);
        ring.push_slice(b"helloGET / HTTP/1.1\r\n");
        let mut relay = BodyRelay::new(BodyKind::Length(5), RelayMode::AsReceived);
        relay.scan(&mut ring).unwrap();
        let mut out = Vec::new();
        drain(&mut relay, &mut ring, &mut out, usize::MAX);
        assert!(relay.is_complete());
        assert_eq!(out, b"hello");
        assert_eq!(ring.make_contiguous(), b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn rechunk_writes_ferrys_own_framing() {
        let body = b"003;ext=\"a;b\"\r\nabc\r\n5 ; x = y\r\ndefgh\r\n0;end\r\nT: 1\r\n\r\nGET /";
        let (out, rest) = relay_all(body, RelayMode::Rechunk, 64, 64, usize::MAX);
        assert_eq!(out, b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n");
        assert_eq!(rest, b"GET /");
    }

    #[test]
    fn one_chunk_and_the_last_go_out_in_one_write() {
        let mut ring = RingBuffer::new(64);
        ring.push_slice(b"d\r\nHello, world!\r\n0\r\n\r\n");
        let mut relay = BodyRelay::new(BodyKind::Chunked, RelayMode::Rechunk);
        relay.scan(&mut ring).unwrap();
        let mut scratch = [0u8; FRAMING_SCRATCH];
        let body = relay.output(&ring, &mut scratch);
        assert_eq!(body.before, b"d\r\n");
        assert_eq!(body.data.0, b"Hello, world!");
        assert_eq!(body.after, b"\r\n0\r\n\r\n");
        let n = body.len();
        assert_eq!(relay.written(n, &mut ring), 13);
        assert!(relay.is_complete() && ring.is_empty());
    }

    #[test]
    fn rechunk_and_dechunk_give_the_same_bytes_for_any_split_and_write_size() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n1\r\nZ\r\n0\r\nA: b\r\nC: d\r\n\r\n";
        let rechunked = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n1\r\nZ\r\n0\r\n\r\n";
        for capacity in [7, 16, 64] {
            for step in [1, 2, 5, 64] {
                for max in [1, 3, 8, 1000] {
                    let (out, rest) = relay_all(body, RelayMode::Rechunk, capacity, step, max);
                    assert_eq!(out, rechunked, "capacity {capacity} step {step} max {max}");
                    assert!(rest.is_empty());
                    let (out, _) = relay_all(body, RelayMode::Dechunk, capacity, step, max);
                    assert_eq!(out, b"abc0123456789abcdefZ");
                }
            }
        }
    }

    #[test]
    fn random_chunked_bodies_are_rechunked_whole() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..100 {
            let mut encoded = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..(next() % 6) {
                let len = (next() % 300) as usize + 1;
                let chunk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                encoded.extend_from_slice(format!("{len:04X};n=v\r\n").as_bytes());
                encoded.extend_from_slice(&chunk);
                encoded.extend_from_slice(b"\r\n");
                expected.extend_from_slice(format!("{len:x}\r\n").as_bytes());
                expected.extend_from_slice(&chunk);
                expected.extend_from_slice(b"\r\n");
            }
            encoded.extend_from_slice(b"0\r\n\r\n");
            expected.extend_from_slice(b"0\r\n\r\n");
            let capacity = (next() % 200) as usize + 8;
            let step = (next() % 100) as usize + 1;
            let max = (next() % 100) as usize + 1;
            let (out, rest) = relay_all(&encoded, RelayMode::Rechunk, capacity, step, max);
            assert_eq!(out, expected);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn framing_rendering_has_the_length_it_says() {
        for size in [1u64, 15, 16, 255, 4096, u64::MAX] {
            for crlf in [0, ChunkFraming::CRLF] {
                let framing = ChunkFraming(crlf | ChunkFraming::SIZED);
                let mut out = [0u8; FRAMING_SCRATCH];
                let len = framing.render(size, &mut out);
                assert_eq!(len, framing.len(size));
                let text = std::str::from_utf8(&out[..len]).unwrap();
                assert_eq!(text.trim_start_matches("\r\n"), format!("{size:x}\r\n"));
            }
        }
    }
}

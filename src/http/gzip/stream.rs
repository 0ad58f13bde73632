//! The gzip body filter, [`GzipStream`]: sans-IO, body data in, a gzip
//! stream out, already framed for the client (chunks for HTTP/1.1, bare for
//! 1.0). It writes into its own bounded buffer only once the previous
//! output has gone to the client, so a slow client stops the compression,
//! which stops the reading of the upstream: memory stays bounded whatever
//! the body's size. When the input runs dry before the body ends, it
//! flushes (a sync flush), so a client sees what the upstream has sent so
//! far. Streams are pooled by the event loop ([`GzipPool`]): an idle
//! connection holds none.
//!
//! In the course (docs/learn): chapter 7, "The order": sans-IO HTTP, bytes in
//! and meaning out.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The gzip header (RFC 1952): deflate, no name, no time, Unix (nginx's).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
/// Compressed bytes per chunk, at most (the header and trailer aside).
const CHUNK: usize = 16 * 1024;
/// Room kept for `{size:x}\r\n` in front of a chunk: sizes stay under
/// 0x10000, four hex digits.
const SIZE_LINE: usize = 6;

/// What follows the input given to [`GzipStream::compress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEnd {
    /// More body data, right now (the second half of a wrapped ring).
    MoreNow,
    /// Nothing more for now: what was compressed is flushed out, so the
    /// client sees what the upstream sent so far.
    Dry,
    /// The end of the body: the stream is finished.
    BodyEnd,
}

/// The gzip body filter for one response.
pub struct GzipStream {
    compress: Compress,
    level: u32,
    crc: Crc,
    /// The chunk being built (`SIZE_LINE` reserved bytes, then data) or,
    /// once sealed, the framed bytes to write from `sent` on.
    out: Vec<u8>,
    sealed: bool,
    sent: usize,
    /// Chunked framing (HTTP/1.1), else bare bytes (HTTP/1.0, close).
    chunked: bool,
    header_written: bool,
    /// Input taken since the last completed flush.
    unflushed: bool,
    finished: bool,
    /// Body bytes taken and gzip bytes produced (for "bytes saved").
    pub taken: u64,
    pub produced: u64,
}

impl GzipStream {
    pub fn new(level: u32) -> Box<GzipStream> {
        Box::new(GzipStream {
            compress: Compress::new(Compression::new(level), false),
            level,
            crc: Crc::new(),
            out: Vec::with_capacity(SIZE_LINE + HEADER.len() + CHUNK + 8 + 2 + 5),
            sealed: false,
            sent: 0,
            chunked: true,
            header_written: false,
            unflushed: false,
            finished: false,
            taken: 0,
            produced: 0,
        })
    }

    /// Ready for a new response (a pooled stream keeps its memory).
    pub fn start(&mut self, chunked: bool) {
        self.compress.reset();
        self.crc.reset();
        self.out.clear();
        self.sealed = false;
        self.sent = 0;
        self.chunked = chunked;
        self.header_written = false;
        self.unflushed = false;
        self.finished = false;
        self.taken = 0;
        self.produced = 0;
    }

    pub fn level(&self) -> u32 {
        self.level
    }

    /// Framed bytes waiting for the client.
    pub fn output(&self) -> &[u8] {
        if self.sealed {
            self.out.get(self.sent..).unwrap_or_default()
        } else {
            &[]
        }
    }

    /// `n` bytes of [`GzipStream::output`] were written.
    pub fn written(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.out.len());
        if self.sealed && self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            self.sealed = false;
        }
    }

    /// The whole stream, last chunk included, was produced and written.
    pub fn is_done(&self) -> bool {
        self.finished && !self.sealed
    }

    /// Compresses body data from `input` while its chunk has room; returns
    /// how many bytes it took. Once all of `input` is taken, `end` says what
    /// comes next (see [`InputEnd`]). Output waits in a sealed chunk until
    /// it is written; nothing is taken meanwhile.
    pub fn compress(&mut self, input: &[u8], end: InputEnd) -> usize {
        let mut taken = 0;
        while !self.finished && !self.sealed {
            let rest = input.get(taken..).unwrap_or_default();
            let flush = match end {
                _ if !rest.is_empty() => FlushCompress::None,
                InputEnd::BodyEnd => FlushCompress::Finish,
                InputEnd::Dry if self.unflushed => FlushCompress::Sync,
                InputEnd::Dry | InputEnd::MoreNow => break,
            };
            let (used, room_left, status) = self.deflate(rest, flush);
            self.crc.update(rest.get(..used).unwrap_or_default());
            self.taken += used as u64;
            taken += used;
            self.unflushed |= used > 0;
            if status == Status::StreamEnd {
                self.end_stream();
            } else if !room_left {
                // Full: out it goes; a flush in progress resumes after.
                self.seal();
            } else if flush == FlushCompress::Sync {
                // A sync flush that fit is complete.
                self.unflushed = false;
                self.seal();
            } else if used == 0 {
                break;
            }
        }
        taken
    }

    /// One deflate call into the chunk being built; returns the input
    /// used and whether the chunk still has room.
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> (usize, bool, Status) {
        if self.out.is_empty() {
            self.out.resize(SIZE_LINE, 0);
            if !self.header_written {
                self.out.extend_from_slice(&HEADER);
                self.produced += HEADER.len() as u64;
                self.header_written = true;
            }
        }
        let start = self.out.len();
        let end = SIZE_LINE + HEADER.len() + CHUNK;
        let room = end.saturating_sub(start);
        self.out.resize(start + room, 0);
        let (before_in, before_out) = (self.compress.total_in(), self.compress.total_out());
        let status = match self.out.get_mut(start..) {
            Some(space) => self
                .compress
                .compress(input, space, flush)
                .unwrap_or(Status::BufError),
            None => Status::BufError,
        };
        let produced = usize::try_from(self.compress.total_out() - before_out).unwrap_or(0);
        let used = usize::try_from(self.compress.total_in() - before_in).unwrap_or(0);
        self.out.truncate(start + produced);
        self.produced += produced as u64;
        (used, produced < room, status)
    }

    /// Frames the chunk built so far: its size line in front (the data
    /// moved left when the line is shorter than its room) and CRLF after;
    /// bare output just drops the room. A chunk with no data is dropped.
    fn seal(&mut self) {
        let data = self.out.len().saturating_sub(SIZE_LINE);
        if data == 0 {
            self.out.clear();
            return;
        }
        let line_len = if self.chunked {
            let digits = (usize::BITS - data.leading_zeros()).div_ceil(4).max(1) as usize;
            digits + 2
        } else {
            0
        };
        self.out.copy_within(SIZE_LINE.., line_len);
        self.out.truncate(line_len + data);
        if self.chunked {
            let mut rest = data;
            for at in (0..line_len - 2).rev() {
                if let Some(slot) = self.out.get_mut(at) {
                    *slot = b"0123456789abcdef"[rest & 0xf];
                }
                rest >>= 4;
            }
            if let Some(crlf) = self.out.get_mut(line_len - 2..line_len) {
                crlf.copy_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(b"\r\n");
        }
        self.sealed = true;
        self.sent = 0;
    }

    /// After the last deflate block: the trailer (CRC-32 and length, little
    /// endian) and, chunked, the last chunk.
    fn end_stream(&mut self) {
        if self.out.is_empty() {
            self.out.resize(SIZE_LINE, 0);
        }
        self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
        self.out.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.produced += 8;
        self.seal();
        if self.chunked {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        self.finished = true;
    }
}

/// Streams of finished responses, kept for the next ones: a deflate state
/// is some 300 KiB, so only a few stay, and no idle connection holds one.
#[derive(Default)]
pub struct GzipPool {
    /// Boxed as exchanges hold them, so handing one over moves a pointer.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<GzipStream>>,
}

impl GzipPool {
    /// Streams kept idle, at most.
    const KEEP: usize = 8;

    /// A stream for a response at `level`, reset.
    pub fn take(&mut self, level: u32, chunked: bool) -> Box<GzipStream> {
        let mut stream = match self.idle.iter().position(|s| s.level() == level) {
            Some(at) => self.idle.swap_remove(at),
            None => GzipStream::new(level),
        };
        stream.start(chunked);
        stream
    }

    pub fn give_back(&mut self, stream: Box<GzipStream>) {
        if self.idle.len() < Self::KEEP {
            self.idle.push(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undoes the client framing: chunks (checked strictly) or bare.
    fn unframe(bytes: &[u8], chunked: bool) -> Vec<u8> {
        if !chunked {
            return bytes.to_vec();
        }
        let mut out = Vec::new();
        let mut rest = bytes;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                assert_eq!(rest, b"\r\n");
                return out;
            }
            out.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Feeds `body` `step` bytes at a time, the client taking at most
    /// `take` bytes per write; returns what the client got.
    fn run(body: &[u8], step: usize, take: usize, chunked: bool) -> Vec<u8> {
        let mut stream = GzipStream::new(6);
        stream.start(chunked);
        let mut sent = Vec::new();
        let mut fed: usize = 0;
        for _ in 0..1_000_000 {
            let available = fed.saturating_add(step).min(body.len());
            let end = if available == body.len() {
                InputEnd::BodyEnd
            } else {
                InputEnd::Dry
            };
            fed += stream.compress(&body[fed..available], end);
            let out = stream.output();
            let n = out.len().min(take);
            sent.extend_from_slice(&out[..n]);
            stream.written(n);
            if stream.is_done() {
                return sent;
            }
        }
        panic!("stuck after {} bytes", sent.len());
    }

    #[test]
    fn any_split_gives_the_body_back() {
        let mut body = Vec::new();
        let mut seed = 7u32;
        for i in 0..200_000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Text with some repetition and some noise.
            body.push(if i % 7 == 0 {
                (seed >> 24) as u8
            } else {
                b"abcdefgh "[(i % 9) as usize]
            });
        }
        for size in [0, 1, 20, 1000, 65_536, 200_000] {
            let body = &body[..size];
            for (step, take) in [
                (usize::MAX, usize::MAX),
                (1, 7),
                (4096, 100),
                (777, usize::MAX),
            ] {
                for chunked in [true, false] {
                    let framed = run(body, step, take, chunked);
                    let gz = unframe(&framed, chunked);
                    assert_eq!(gunzip(&gz), body, "size {size} step {step} take {take}");
                }
            }
        }
    }
}

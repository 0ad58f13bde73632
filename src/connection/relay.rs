//! Moving one message body through a ring buffer without overrunning it.
//!
//! A [`BodyRelay`] sits between a ring buffer and the body decoder: it feeds
//! newly arrived bytes to the decoder and keeps count of how many bytes at
//! the front of the ring are cleared to be written to the other side
//! ([`BodyRelay::ready`]). Bytes beyond the body's end stay in the ring: they
//! are the next pipelined request, or an upstream's protocol violation.

use crate::buffer::RingBuffer;
use crate::http::framing::{BodyDecoder, BodyKind, FramingError};

/// Whether chunk framing is passed on or stripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayMode {
    /// Forward the bytes exactly as received (framing included).
    AsReceived,
    /// Forward only chunk data, for an HTTP/1.0 client that cannot read
    /// chunked coding. Framing bytes are consumed from the ring here.
    Dechunk,
}

#[derive(Clone, Debug)]
pub struct BodyRelay {
    decoder: BodyDecoder,
    mode: RelayMode,
    ready: usize,
}

impl BodyRelay {
    pub fn new(kind: BodyKind, mode: RelayMode) -> BodyRelay {
        BodyRelay {
            decoder: BodyDecoder::new(kind),
            mode,
            ready: 0,
        }
    }

    /// Bytes at the front of the ring cleared for writing.
    pub fn ready(&self) -> usize {
        self.ready
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
        self.decoder.is_complete() && self.ready == 0
    }

    pub fn is_until_close(&self) -> bool {
        self.decoder.is_until_close()
    }

    /// Runs the decoder over bytes that arrived since the last scan.
    pub fn scan(&mut self, ring: &mut RingBuffer) -> Result<(), FramingError> {
        match self.mode {
            RelayMode::AsReceived => {
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
            }
            RelayMode::Dechunk => {
                while self.ready == 0 && !self.decoder.is_complete() {
                    let (input, _) = ring.readable_from(0, usize::MAX);
                    if input.is_empty() {
                        break;
                    }
                    let segment = self.decoder.decode(input)?;
                    if segment.is_data {
                        self.ready = segment.len;
                    } else {
                        ring.consume(segment.len);
                    }
                    if segment.len == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// `n` ready bytes were written and consumed from the ring.
    pub fn written(&mut self, n: usize) {
        self.ready -= n.min(self.ready);
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

    fn drain(relay: &mut BodyRelay, ring: &mut RingBuffer, out: &mut Vec<u8>) {
        let n = relay.ready();
        let (a, b) = ring.readable_from(0, n);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        ring.consume(n);
        relay.written(n);
    }

    #[test]
    fn as_received_stops_before_the_next_request() {
        let mut ring = RingBuffer::new(64);
        ring.push_slice(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n");
        let mut relay = BodyRelay::new(BodyKind::Chunked, RelayMode::AsReceived);
        relay.scan(&mut ring).unwrap();
        assert_eq!(relay.ready(), 13);
        let mut out = Vec::new();
        drain(&mut relay, &mut ring, &mut out);
        assert!(relay.is_complete());
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(ring.make_contiguous(), b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn dechunk_forwards_only_data_across_wraps_and_small_rings() {
        let body = b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\nT: 1\r\n\r\n";
        let mut ring = RingBuffer::new(7);
        let mut relay = BodyRelay::new(BodyKind::Chunked, RelayMode::Dechunk);
        let mut out = Vec::new();
        let mut input = &body[..];
        while !relay.is_complete() {
            let pushed = ring.push_slice(input);
            input = &input[pushed..];
            relay.scan(&mut ring).unwrap();
            drain(&mut relay, &mut ring, &mut out);
        }
        assert_eq!(out, b"abcdefgh");
        assert!(input.is_empty() && ring.is_empty());
    }
}

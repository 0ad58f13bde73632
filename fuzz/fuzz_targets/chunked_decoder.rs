//! The body decoder: never panics, never loops, and gives the same answer
//! for any split of the input into reads (the first byte picks the split).
//! What it accepts, the relay re-frames (`RelayMode::Rechunk`) through a
//! small ring buffer with short writes, and ferry's framing decodes to the
//! same data, ending exactly where it should.
#![no_main]

use ferry::buffer::RingBuffer;
use ferry::connection::relay::{BodyRelay, RelayMode, FRAMING_SCRATCH};
use ferry::http::framing::{BodyDecoder, BodyKind};
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], step: usize) -> (Vec<u8>, usize, Result<bool, ()>) {
    let mut decoder = BodyDecoder::new(BodyKind::Chunked);
    let mut data = Vec::new();
    let mut offset = 0;
    while offset < input.len() {
        let end = (offset + step).min(input.len());
        let mut piece = &input[offset..end];
        while !piece.is_empty() {
            let Ok(segment) = decoder.decode(piece) else {
                return (Vec::new(), 0, Err(()));
            };
            assert!(segment.len > 0 || segment.complete, "no progress");
            assert!(segment.len <= piece.len());
            if segment.is_data {
                data.extend_from_slice(&piece[..segment.len]);
            }
            piece = &piece[segment.len..];
            offset += segment.len;
            if segment.complete {
                return (data, offset, Ok(true));
            }
        }
    }
    (data, offset, Ok(false))
}

/// Passes a complete chunked body through a relay: pushes `step` bytes at
/// a time into a ring of `capacity`, writes at most `max` bytes per write.
fn rechunk(body: &[u8], capacity: usize, step: usize, max: usize) -> Vec<u8> {
    let mut ring = RingBuffer::new(capacity);
    let mut relay = BodyRelay::new(BodyKind::Chunked, RelayMode::Rechunk);
    let mut out = Vec::new();
    let mut input = body;
    // Each turn moves at least one byte in or out; a bound catches a stall.
    for _ in 0..(body.len() + 64) * 4 {
        if relay.is_complete() {
            return out;
        }
        let pushed = ring.push_slice(&input[..input.len().min(step)]);
        input = &input[pushed..];
        relay.scan(&mut ring).expect("the decoder accepted it");
        let mut scratch = [0u8; FRAMING_SCRATCH];
        let offered = relay.output(&ring, &mut scratch);
        let mut bytes = Vec::new();
        for part in [offered.before, offered.data.0, offered.data.1, offered.after] {
            bytes.extend_from_slice(part);
        }
        let n = bytes.len().min(max);
        out.extend_from_slice(&bytes[..n]);
        relay.written(n, &mut ring);
    }
    panic!("the relay stalled");
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let whole = run(input, input.len().max(1));
    let pieces = run(input, usize::from(split % 16) + 1);
    assert_eq!(whole, pieces);
    if let (body, used, Ok(true)) = &whole {
        let capacity = usize::from(split >> 4) * 4 + 8;
        let out = rechunk(&input[..*used], capacity, usize::from(split % 7) + 1, usize::from(split % 5) + 1);
        let again = run(&out, out.len().max(1));
        assert_eq!(&again.0, body, "re-framed data differs");
        assert_eq!(again.1, out.len(), "re-framed body ends early");
        assert_eq!(again.2, Ok(true));
    }
});

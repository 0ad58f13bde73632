//! The body decoder: never panics, never loops, and gives the same answer
//! for any split of the input into reads (the first byte picks the split).
#![no_main]

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

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let whole = run(input, input.len().max(1));
    let pieces = run(input, usize::from(split % 16) + 1);
    assert_eq!(whole, pieces);
});

//! `$request_id`, drawn per request on first use.
//!
//! In the course (docs/learn): chapter 7, "The order": variables, rendered
//! from a request view.

/// `$request_id`: 16 random bytes in hex, as nginx makes it, drawn the
/// first time the request uses it (a request that never does pays
/// nothing) and the same for every use within the request: the header sent
/// upstream and the log line agree. Unpredictable enough to correlate
/// requests, not a secret: the generator is seeded from the process's
/// random hash keys, not a cryptographic source.
#[derive(Default)]
pub struct RequestId(std::cell::Cell<Option<[u8; 32]>>);

impl RequestId {
    pub fn get(&self) -> [u8; 32] {
        if let Some(id) = self.0.get() {
            return id;
        }
        let id = next_request_id();
        self.0.set(Some(id));
        id
    }
}

fn next_request_id() -> [u8; 32] {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(request_id_seed());
    }
    // splitmix64, twice: 128 bits.
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let (high, low) = (next(), next());
    let mut id = [0u8; 32];
    let digits = b"0123456789abcdef";
    for (index, slot) in id.iter_mut().enumerate() {
        let word = if index < 16 { high } else { low };
        let shift = 60 - 4 * (index % 16);
        *slot = digits[((word >> shift) & 0xf) as usize];
    }
    id
}

fn request_id_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

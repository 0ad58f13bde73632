//! CRC-32, the one checksum both sides need: the balancer hashes keys with
//! it (`hash`, `ip_hash` as nginx does) and the variables make
//! `$request_id` with it. A module of its own so neither depends on the
//! other.
//!
//! In the course (docs/learn): chapter 7, "The order".

/// CRC-32 (IEEE), as nginx's `ngx_crc32_long`, computed bitwise: keys are
/// short and this runs once per request.
#[derive(Clone, Copy, Debug)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Crc32 {
        Crc32::new()
    }
}

impl Crc32 {
    pub fn new() -> Crc32 {
        Crc32(0xFFFF_FFFF)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
    }

    pub fn finish(self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        let mut crc = Crc32::new();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xCBF4_3926);
    }
}

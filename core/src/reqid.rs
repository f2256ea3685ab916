//! Request ids: 128-bit, unique per worker and unguessable, without a CSPRNG call per request.
//!
//! Each worker seeds a SipHash-1-3 key from the operating system's random source once, then
//! the id of the n-th request is `SipHash128(key, pid || n)`. SipHash is a keyed PRF, so
//! without the key an id reveals nothing about the next one; the counter makes ids unique
//! within a worker and the pid (with the independent key) across workers. One id costs a
//! single 16-byte hash (tens of nanoseconds) instead of a syscall or a CSPRNG block.

use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// Generator of request ids; one per worker process.
pub struct RequestIds {
    k0: u64,
    k1: u64,
    pid: u32,
    counter: u64,
}

impl RequestIds {
    /// A generator keyed with `seed` (16 random bytes) for process `pid`.
    pub fn new(seed: [u8; 16], pid: u32) -> Self {
        let (a, b) = seed.split_at(8);
        Self {
            k0: u64::from_le_bytes(a.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(b.try_into().unwrap_or_default()),
            pid,
            counter: 0,
        }
    }

    /// A generator seeded from the operating system.
    pub fn from_os(pid: u32) -> Self {
        Self::new(os_seed(), pid)
    }

    /// The next id as 32 lowercase hex digits.
    pub fn next_hex(&mut self) -> [u8; 32] {
        self.counter = self.counter.wrapping_add(1);
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u32(self.pid);
        h.write_u64(self.counter);
        let v = h.finish128().as_u128();
        hex32(v)
    }
}

/// 16 random bytes from the operating system (`getrandom`). Without OS randomness at all it
/// falls back to time and address entropy: ids stay unique (the counter), only their
/// unpredictability suffers.
pub fn os_seed() -> [u8; 16] {
    let mut seed = [0u8; 16];
    if getrandom::fill(&mut seed).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        seed = (t ^ (&seed as *const _ as u128)).to_le_bytes();
    }
    seed
}

/// Formats a u128 as 32 lowercase hex digits.
pub fn hex32(v: u128) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_hex_and_unique() {
        let mut g = RequestIds::new([7; 16], 42);
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = g.next_hex();
            assert!(id
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn different_keys_or_pids_give_different_ids() {
        let a = RequestIds::new([1; 16], 1).next_hex();
        let b = RequestIds::new([2; 16], 1).next_hex();
        let c = RequestIds::new([1; 16], 2).next_hex();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn hex32_formats_big_endian() {
        assert_eq!(&hex32(0xab), b"000000000000000000000000000000ab");
        assert_eq!(&hex32(u128::MAX), b"ffffffffffffffffffffffffffffffff");
    }
}

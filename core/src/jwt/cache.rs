//! Per-worker LRU cache of verified tokens.
//!
//! The key is a 128-bit SipHash-1-3 of (key-set id, token) under a random per-process key.
//! SipHash is a keyed PRF: without the key (never exposed) an attacker cannot aim for a
//! collision, and 128 bits make an accidental one negligible, so the token bytes need not
//! be stored. Entries past their `exp` are never returned; the caller still runs
//! [`crate::jwt::check_claims`] on every hit (time moves, policies differ per location).
//!
//! Keying by token bytes is right for this cache and only for it: it remembers that a string
//! verified, nothing more. ECDSA signatures are malleable (if (r, s) verifies, so does
//! (r, n - s)), so one set of claims has several valid token strings, and an attacker can mint
//! the second from the first without the key; each is simply verified and cached on its own.
//! Anything that must recognise "the same token" (a denylist, a replay or one-time-use check)
//! must key by verified claims (`jti`, with `iss`), never by the token string or its hash.

use super::token::Verified;
use lru::LruCache;
use ring::rand::{SecureRandom, SystemRandom};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;

/// The system random generator failed while keying the cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("system random generator failed")]
pub struct CacheInitError;

struct Entry {
    verified: Arc<Verified>,
    exp: Option<i64>,
}

/// The map's own hasher: the key already is a keyed PRF output, so take its low bits.
#[derive(Clone, Copy, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached through write_u128 below on platforms that split it; fold bytes in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

#[derive(Clone, Copy, Default)]
struct BuildPassThrough;

impl BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// Where a token that missed goes ([`TokenCache::lookup`]): its hash, already computed.
#[derive(Debug)]
pub struct CacheSlot(Option<u128>);

/// LRU cache of verified tokens, one per worker (not shared between threads).
pub struct TokenCache {
    lru: Option<LruCache<u128, Entry, BuildPassThrough>>,
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl TokenCache {
    /// A cache for up to `capacity` tokens, keyed from the system random generator.
    /// Capacity 0 gives a cache that stores nothing.
    pub fn new(capacity: usize) -> Result<TokenCache, CacheInitError> {
        let mut seed = [0u8; 16];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| CacheInitError)?;
        Ok(TokenCache::with_seed(capacity, seed))
    }

    /// As [`TokenCache::new`] with an explicit 16-byte hash key (tests, benchmarks).
    pub fn with_seed(capacity: usize, seed: [u8; 16]) -> TokenCache {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&seed[..8]);
        k1.copy_from_slice(&seed[8..]);
        TokenCache {
            lru: NonZeroUsize::new(capacity).map(|c| LruCache::with_hasher(c, BuildPassThrough)),
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    fn key(&self, keyset_id: u64, token: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u64(keyset_id);
        h.write(token);
        h.finish128().as_u128()
    }

    /// The verified token for (`keyset_id`, `token`), unless absent or `now >= exp`
    /// (an expired entry is dropped).
    pub fn get(&mut self, keyset_id: u64, token: &[u8], now: i64) -> Option<Arc<Verified>> {
        self.lookup(keyset_id, token, now).ok()
    }

    /// As [`TokenCache::get`], but a miss returns the token's slot, for
    /// [`TokenCache::insert_at`] once the token verified: the token is hashed once per request,
    /// not once for the lookup and again for the insert (a miss then costs a hash of the token
    /// and a probe, the time a cache that never hits adds; see `gw-jwt bench`).
    pub fn lookup(
        &mut self,
        keyset_id: u64,
        token: &[u8],
        now: i64,
    ) -> Result<Arc<Verified>, CacheSlot> {
        let Some(lru) = self.lru.as_mut() else {
            return Err(CacheSlot(None));
        };
        let key = {
            let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
            h.write_u64(keyset_id);
            h.write(token);
            h.finish128().as_u128()
        };
        match lru.get(&key) {
            Some(Entry { exp: Some(exp), .. }) if now >= *exp => {
                lru.pop(&key);
                Err(CacheSlot(Some(key)))
            }
            Some(e) => Ok(Arc::clone(&e.verified)),
            None => Err(CacheSlot(Some(key))),
        }
    }

    /// Stores a verified token (not if it is already expired at `now`).
    pub fn insert(&mut self, keyset_id: u64, token: &[u8], verified: Arc<Verified>, now: i64) {
        let slot = CacheSlot(self.lru.as_ref().map(|_| self.key(keyset_id, token)));
        self.insert_at(slot, verified, now);
    }

    /// Stores a verified token where [`TokenCache::lookup`] missed it (not if it is already
    /// expired at `now`). The slot must come from this cache and the same token.
    pub fn insert_at(&mut self, slot: CacheSlot, verified: Arc<Verified>, now: i64) {
        let exp = verified.exp();
        if exp.is_some_and(|exp| now >= exp) {
            return;
        }
        if let (Some(lru), Some(key)) = (self.lru.as_mut(), slot.0) {
            lru.put(key, Entry { verified, exp });
        }
    }

    /// Drops every entry (e.g. after a key set changed).
    pub fn clear(&mut self) {
        if let Some(lru) = self.lru.as_mut() {
            lru.clear();
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, LruCache::len)
    }

    /// True if the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.cap().get())
    }
}

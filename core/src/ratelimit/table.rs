//! The shared rate-limit table: a fixed-capacity hash table with an LRU list, living entirely
//! inside a caller-provided byte region (an nginx shared-memory zone).
//!
//! # Layout
//!
//! ```text
//! offset 0                128                 128 + 4*nbuckets
//! +-----------------------+-------------------+-------------------------------+--------+
//! | Header (128 bytes)    | buckets: [u32]    | slots: [Slot; capacity]       | unused |
//! +-----------------------+-------------------+-------------------------------+--------+
//! ```
//!
//! Everything is `#[repr(C)]` plain data linked by `u32` slot indices (`u32::MAX` = none), so the
//! region is position-independent: every worker may map it at a different address, and it
//! survives `nginx -s reload` (nginx keeps a zone whose name and size are unchanged, and
//! [`Table::attach`] checks that the header still describes this layout). Nothing is allocated
//! and nothing points outside the region.
//!
//! A slot is 64 bytes: the 128-bit keyed hash of the key, the key length, the 24-byte
//! algorithm [`State`], the last access time, LRU links and the hash-chain link. The key bytes
//! themselves are not stored, so slots have a fixed size whatever the keys. Buckets hold the
//! head of a singly linked chain; there are as many buckets as the next power of two above
//! the slot count (load factor below 1). A 1 MiB region holds 15 358 slots.
//!
//! # Keys and collisions
//!
//! Keys are identified by SipHash-1-3 with a 128-bit output, keyed with a random 128-bit seed
//! chosen at [`Table::init`] (so clients cannot aim keys at one chain), plus the key length. Two
//! distinct keys share a slot only if their 128-bit hashes and lengths collide: for a key
//! looked up while `n` others are stored that is about `n / 2^128` (below 2^-114 for a table
//! of 16 384 slots), and about `q * n / 2^128` over `q` lookups, 2^-74 even after 2^40 lookups.
//! The consequence would be two clients sharing one counter, nothing worse.
//!
//! # Concurrency and robustness
//!
//! Nothing here locks: the caller holds the zone's mutex around [`Table::attach`] and every
//! call on the returned table. The region may still hold garbage (a corrupted zone, a bug in
//! another module): no input makes this code panic or touch memory outside the region. Header
//! fields are checked by [`Table::attach`]; every index read from a bucket or slot is checked
//! before use, and every traversal is capped by the slot count. An inconsistency found during
//! an operation resets the table to empty (counted in [`Stats::resets`]), after which the
//! operation proceeds: a rate limiter that forgets its counters is better than a worker that
//! crashes. There is no `unsafe` here; the region is viewed as typed slices with `bytemuck`,
//! which checks size and alignment.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use bytemuck::{Pod, Zeroable};
use siphasher::sip128::SipHasher13;

use super::algo::State;
use super::sync::{cluster_id, Claim, Part, SyncRec};

/// First 8 bytes of a formatted region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"NGXGWRL\x01");
/// Format version; bumped on any change of meaning not caught by the layout hash.
pub const VERSION: u32 = 3;

const NIL: u32 = u32::MAX;
const HEADER_LEN: usize = std::mem::size_of::<Header>();
const SLOT_LEN: usize = std::mem::size_of::<Slot>();
const BUCKET_LEN: usize = std::mem::size_of::<u32>();
const EXT_LEN: usize = std::mem::size_of::<SyncRec>();
/// Fewest slots a region must hold.
const MIN_CAPACITY: usize = 8;
/// Fewest buckets: keeps the slot array 64-byte aligned relative to the region start.
const MIN_BUCKETS: usize = 16;
/// Most buckets (a power of two that fits `u32` with room to spare).
const MAX_BUCKETS: usize = 1 << 30;
/// Most slots (indices are `u32`, and `u32::MAX` means none).
const MAX_CAPACITY: usize = (u32::MAX - 1) as usize;

#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Header {
    magic: u64,
    version: u32,
    header_len: u32,
    layout: u64,
    region_len: u64,
    seed: [u64; 2],
    capacity: u32,
    nbuckets: u32,
    used: u32,
    lru_head: u32,
    lru_tail: u32,
    /// Bytes of sync record per slot (0, or 64 for a zone synced through Redis).
    ext_len: u32,
    evictions: u64,
    reclaims: u64,
    resets: u64,
    inserts: u64,
    eviction_log_ms: u64,
    evictions_logged: u64,
    /// Non-zero while the zone's sync is failing (set by the syncing worker).
    sync_down: u32,
    /// Where the next sync walk starts.
    sync_cursor: u32,
}

const _: () = assert!(HEADER_LEN == 128);
// SAFETY: `Header` is `repr(C)`, has only integer fields and arrays of them, and no padding:
// 8+4+4+8+8+16 + 6*4 + 7*8 = 128 = size_of (asserted above), so all-zero is a valid value.
unsafe impl Zeroable for Header {}
// SAFETY: as above; it is `Copy + 'static` and every bit pattern is a valid value.
unsafe impl Pod for Header {}

#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Slot {
    hash: [u64; 2],
    state: State,
    last_ms: u64,
    lru_prev: u32,
    lru_next: u32,
    chain_next: u32,
    key_len: u32,
}

const _: () = assert!(SLOT_LEN == 64);
const _: () = assert!(std::mem::align_of::<Slot>() == 8);
// SAFETY: `Slot` is `repr(C)`, its fields are integers, an integer array and `State` (itself
// `Pod`), and it has no padding: 16 + 24 + 8 + 4*4 = 64 = size_of (asserted above).
unsafe impl Zeroable for Slot {}
// SAFETY: as above; `Copy + 'static`, and every bit pattern is a valid value of every field.
unsafe impl Pod for Slot {}

/// FNV-1a, usable in a `const` context.
// Only evaluated at compile time (for LAYOUT_HASH), where a panic would be a build error.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// Fingerprint of the region layout: changes whenever the structures or the hashing change,
/// so that a region formatted by another build of the module is not misread after a reload
/// (binary upgrade, or a reload that loads a new `.so`).
pub const LAYOUT_HASH: u64 = {
    let desc = b"header:magic8,version4,header_len4,layout8,region_len8,seed16,capacity4,\
nbuckets4,used4,lru_head4,lru_tail4,ext_len4,evictions8,reclaims8,resets8,inserts8,\
eviction_log_ms8,evictions_logged8,sync_down4,sync_cursor4;\
ext:syncrec64(id16,win8,cur16,prev16,period4,flags4)|0,after slots;\
slot:hash16,state24(t8,a4,b4,kind4,aux4),last_ms8,lru_prev4,lru_next4,chain_next4,key_len4;\
bucket:u32;nil:u32max;hash:siphash13x128(seed0,seed1),bucket=h0&(n-1);\
geometry:c0=(len-128)/(68+ext),nb=max(16,pow2ceil(c0)),cap=(len-128-4nb)/(64+ext)";
    let h = fnv1a(desc, 0xcbf2_9ce4_8422_2325);
    fnv1a(
        &[
            HEADER_LEN as u8,
            SLOT_LEN as u8,
            BUCKET_LEN as u8,
            VERSION as u8,
        ],
        h,
    )
};

/// Why a region cannot be used as a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The region is smaller than [`Table::min_region_len`].
    #[error("region too small: {len} bytes, at least {min} needed")]
    TooSmall {
        /// The region's length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The region does not start at an 8-byte aligned address.
    #[error("region not 8-byte aligned")]
    Misaligned,
    /// The region does not start with the table's magic number: never formatted, or garbage.
    #[error("region not formatted as a rate-limit table")]
    NotFormatted,
    /// The region was formatted by another version of the module.
    #[error("region formatted by table version {found}, this is version {expected}")]
    Version {
        /// The version in the region.
        found: u32,
        /// This build's [`VERSION`].
        expected: u32,
    },
    /// The region was formatted with another layout (another build of the module).
    #[error("region formatted with another layout")]
    Layout,
    /// The header's sizes do not match this region.
    #[error("region header does not match its size ({0})")]
    Geometry(&'static str),
    /// The header's contents are inconsistent.
    #[error("region header is inconsistent ({0})")]
    Inconsistent(&'static str),
}

/// What [`Table::lookup_or_insert`] did to find a slot for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The key was present.
    Found,
    /// The key was new and took a free slot.
    Inserted,
    /// The key was new and the table full: it took the least recently used slot, whose state
    /// had already expired, so nothing was lost.
    Reclaimed,
    /// The key was new and the table full: it took the least recently used slot, whose key
    /// still had live counts, now forgotten (that key starts afresh: the zone is too small).
    Evicted,
    /// The table was found inconsistent (corrupted memory) and was cleared; the key was then
    /// inserted into the empty table.
    Reset,
}

/// A key claimed by [`Table::sync_claims`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotClaim {
    /// Slot index.
    pub idx: u32,
    /// The key's cluster id (checked again when the exchange ends).
    pub id: [u64; 2],
    /// What is pushed.
    pub claim: Claim,
}

/// Counters from the header (they survive reloads with the region).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Slots in the region.
    pub capacity: u32,
    /// Slots in use.
    pub used: u32,
    /// Keys inserted, in total.
    pub inserts: u64,
    /// Slots reused while their key still had live counts ([`Outcome::Evicted`]).
    pub evictions: u64,
    /// Slots reused after their key's counts had expired ([`Outcome::Reclaimed`]).
    pub reclaims: u64,
    /// Times the table was found corrupted and cleared ([`Outcome::Reset`]).
    pub resets: u64,
}

/// Marker for an inconsistency found while walking the structures.
#[derive(Debug)]
struct Corrupt;

/// Slot and bucket counts for a region of `len` bytes, or `None` if it is too small.
fn geometry(len: usize, ext: usize) -> Option<(usize, usize)> {
    let avail = len.checked_sub(HEADER_LEN)?;
    let per_slot = SLOT_LEN.checked_add(ext)?;
    let c0 = avail.checked_div(per_slot.checked_add(BUCKET_LEN)?)?;
    if c0 < MIN_CAPACITY {
        return None;
    }
    let nbuckets = c0
        .checked_next_power_of_two()
        .unwrap_or(MAX_BUCKETS)
        .clamp(MIN_BUCKETS, MAX_BUCKETS);
    let capacity = avail
        .checked_sub(nbuckets.checked_mul(BUCKET_LEN)?)?
        .checked_div(per_slot)?
        .min(MAX_CAPACITY);
    (capacity >= MIN_CAPACITY).then_some((capacity, nbuckets))
}

/// Views the region as header, buckets and slots.
type Parts<'a> = (
    &'a mut Header,
    &'a mut [u32],
    &'a mut [Slot],
    &'a mut [SyncRec],
);

fn split(
    region: &mut [u8],
    capacity: usize,
    nbuckets: usize,
    ext: usize,
) -> Result<Parts<'_>, TableError> {
    let bad = TableError::Geometry("region shorter than its header says");
    let buckets_len = nbuckets.checked_mul(BUCKET_LEN).ok_or(bad.clone())?;
    let slots_len = capacity.checked_mul(SLOT_LEN).ok_or(bad.clone())?;
    let (h, rest) = region.split_at_mut_checked(HEADER_LEN).ok_or(bad.clone())?;
    let (b, rest) = rest.split_at_mut_checked(buckets_len).ok_or(bad.clone())?;
    let (s, rest) = rest.split_at_mut_checked(slots_len).ok_or(bad.clone())?;
    let ext_len = if ext == 0 {
        0
    } else {
        capacity.checked_mul(EXT_LEN).ok_or(bad.clone())?
    };
    let (e, _) = rest.split_at_mut_checked(ext_len).ok_or(bad)?;
    let header = bytemuck::try_from_bytes_mut::<Header>(h).map_err(|_| TableError::Misaligned)?;
    let buckets = bytemuck::try_cast_slice_mut::<u8, u32>(b).map_err(|_| TableError::Misaligned)?;
    let slots = bytemuck::try_cast_slice_mut::<u8, Slot>(s).map_err(|_| TableError::Misaligned)?;
    let exts =
        bytemuck::try_cast_slice_mut::<u8, SyncRec>(e).map_err(|_| TableError::Misaligned)?;
    Ok((header, buckets, slots, exts))
}

fn check_region(region: &[u8], ext: usize) -> Result<(usize, usize), TableError> {
    let min = Table::min_region_len();
    if region.len() < min {
        return Err(TableError::TooSmall {
            len: region.len(),
            min,
        });
    }
    if region.as_ptr().align_offset(8) != 0 {
        return Err(TableError::Misaligned);
    }
    geometry(region.len(), ext).ok_or(TableError::TooSmall {
        len: region.len(),
        min,
    })
}

/// A random 128-bit hash seed for [`Table::init`], from the OS randomness behind the standard
/// library's `RandomState`, mixed with the time. The glue may pass its own (`ngx_random`)
/// instead; it only has to be unpredictable to clients.
#[must_use]
pub fn random_seed() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(nanos);
        h.write_usize(&salt as *const u64 as usize);
        h.finish()
    };
    (u128::from(word(1)) << 64) | u128::from(word(2))
}

/// A rate-limit table viewed over its region, valid while the caller holds the zone's lock.
///
/// Obtain one with [`Table::init`] (format a new region) or [`Table::attach`] (use a formatted
/// one); both are cheap enough to call on every request (`attach` checks a few header fields).
#[derive(Debug)]
pub struct Table<'a> {
    hdr: &'a mut Header,
    buckets: &'a mut [u32],
    slots: &'a mut [Slot],
    /// Sync records, one per slot (empty unless the zone is synced).
    exts: &'a mut [SyncRec],
    /// Returned by `lookup_or_insert` if even an empty table cannot take a key (unreachable
    /// unless this code has a bug): answering with a throwaway state beats panicking.
    scratch: State,
}

impl<'a> Table<'a> {
    /// Smallest region a table can be formatted in.
    pub const fn min_region_len() -> usize {
        HEADER_LEN + MIN_BUCKETS * BUCKET_LEN + MIN_CAPACITY * SLOT_LEN
    }

    /// How many keys a region of `len` bytes holds (0 if it is too small).
    #[must_use]
    pub fn capacity_for(len: usize) -> usize {
        geometry(len, 0).map_or(0, |(c, _)| c)
    }

    /// Formats `region` as an empty table with the given hash seed (see [`random_seed`]).
    ///
    /// The region must be 8-byte aligned and at least [`Table::min_region_len`] bytes; all of
    /// its contents are overwritten. Space beyond the last whole slot is left unused.
    pub fn init(region: &'a mut [u8], seed: u128) -> Result<Self, TableError> {
        Self::init_with(region, seed, false)
    }

    /// [`Table::init`], with a sync record per slot when `synced` (a zone shared through
    /// Redis: fewer slots fit, see [`SyncRec`]).
    pub fn init_with(region: &'a mut [u8], seed: u128, synced: bool) -> Result<Self, TableError> {
        let len = region.len();
        let ext = if synced { EXT_LEN } else { 0 };
        let (capacity, nbuckets) = check_region(region, ext)?;
        let (hdr, buckets, slots, exts) = split(region, capacity, nbuckets, ext)?;
        *hdr = Header {
            magic: MAGIC,
            version: VERSION,
            header_len: HEADER_LEN as u32,
            layout: LAYOUT_HASH,
            region_len: len as u64,
            // Truncating casts pick the low and high halves.
            seed: [seed as u64, (seed >> 64) as u64],
            capacity: u32::try_from(capacity).unwrap_or(0),
            nbuckets: u32::try_from(nbuckets).unwrap_or(0),
            used: 0,
            lru_head: NIL,
            lru_tail: NIL,
            ext_len: ext as u32,
            ..Header::zeroed()
        };
        buckets.fill(NIL);
        slots.fill(Slot::zeroed());
        exts.fill(SyncRec::zeroed());
        Ok(Table {
            hdr,
            buckets,
            slots,
            exts,
            scratch: State::EMPTY,
        })
    }

    /// Uses a region formatted by [`Table::init`], keeping its keys and counters (as after
    /// `nginx -s reload`).
    ///
    /// Checks the magic number, version, layout fingerprint, that the recorded sizes match this
    /// region, and that the header's counts and list ends are in range; it reads nothing else,
    /// so it costs a few nanoseconds. Any mismatch is an error and nothing is changed; the
    /// caller may then [`Table::init`] the region afresh (losing its counts) or refuse to start.
    pub fn attach(region: &'a mut [u8]) -> Result<Self, TableError> {
        let len = region.len();
        let ext = region
            .get(..HEADER_LEN)
            .and_then(|h| bytemuck::try_from_bytes::<Header>(h).ok())
            .map_or(0, |h| h.ext_len as usize);
        if ext != 0 && ext != EXT_LEN {
            return Err(TableError::Layout);
        }
        let (capacity, nbuckets) = check_region(region, ext)?;
        let (hdr, buckets, slots, exts) = split(region, capacity, nbuckets, ext)?;
        if hdr.magic != MAGIC {
            return Err(TableError::NotFormatted);
        }
        if hdr.version != VERSION {
            return Err(TableError::Version {
                found: hdr.version,
                expected: VERSION,
            });
        }
        if hdr.layout != LAYOUT_HASH || hdr.header_len as usize != HEADER_LEN {
            return Err(TableError::Layout);
        }
        if hdr.region_len != len as u64 {
            return Err(TableError::Geometry(
                "formatted for a region of another size",
            ));
        }
        if hdr.capacity as usize != capacity || hdr.nbuckets as usize != nbuckets {
            return Err(TableError::Geometry("slot or bucket count"));
        }
        let used = hdr.used;
        if used > hdr.capacity {
            return Err(TableError::Inconsistent("more slots used than exist"));
        }
        let ends_ok = if used == 0 {
            hdr.lru_head == NIL && hdr.lru_tail == NIL
        } else {
            hdr.lru_head < used && hdr.lru_tail < used
        };
        if !ends_ok {
            return Err(TableError::Inconsistent("lru list ends"));
        }
        Ok(Table {
            hdr,
            buckets,
            slots,
            exts,
            scratch: State::EMPTY,
        })
    }

    /// The header's counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            capacity: self.hdr.capacity,
            used: self.hdr.used,
            inserts: self.hdr.inserts,
            evictions: self.hdr.evictions,
            reclaims: self.hdr.reclaims,
            resets: self.hdr.resets,
        }
    }

    /// Rate-limits the "zone is full" warning across all workers: returns the number of
    /// evictions since the last report if there were any and at least `interval_ms` have passed
    /// since then (or since the first eviction ever), and records this report in the header.
    ///
    /// Workers' clocks are cached per worker, so one may report a few milliseconds "before"
    /// the last report of another: that is not a clock going back. Only a clock that went back
    /// by a whole interval or more starts a new one at once.
    pub fn eviction_report(&mut self, now_ms: u64, interval_ms: u64) -> Option<u64> {
        let new = self.hdr.evictions.saturating_sub(self.hdr.evictions_logged);
        let due = self.hdr.evictions_logged == 0
            || now_ms.saturating_sub(self.hdr.eviction_log_ms) >= interval_ms
            || now_ms.saturating_add(interval_ms) <= self.hdr.eviction_log_ms;
        if new == 0 || !due {
            return None;
        }
        self.hdr.eviction_log_ms = now_ms;
        self.hdr.evictions_logged = self.hdr.evictions;
        Some(new)
    }

    /// Finds the state of `key`, inserting an empty one if the key is new, and marks the key as
    /// the most recently used. Never fails: when the table is full the least recently used slot
    /// is reused (see [`Outcome`]).
    ///
    /// Cost: one SipHash of the key, a walk of one short chain, and a few writes.
    pub fn lookup_or_insert(&mut self, key: &[u8], now_ms: u64) -> (&mut State, Outcome) {
        let (state, _, outcome) = self.lookup_or_insert_synced(key, now_ms);
        (state, outcome)
    }

    /// [`Table::lookup_or_insert`], also giving the key's sync record in a synced table (a
    /// new key's record is reset with its cluster id, see [`cluster_id`]).
    pub fn lookup_or_insert_synced(
        &mut self,
        key: &[u8],
        now_ms: u64,
    ) -> (&mut State, Option<&mut SyncRec>, Outcome) {
        let hash = self.hash(key);
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let found = match self.try_lookup_or_insert(hash, key_len, now_ms) {
            Ok(found) => Some(found),
            Err(Corrupt) => {
                self.reset();
                self.try_lookup_or_insert(hash, key_len, now_ms)
                    .ok()
                    .map(|(idx, _)| (idx, Outcome::Reset))
            }
        };
        let Some((idx, outcome)) = found else {
            self.scratch = State::EMPTY;
            return (&mut self.scratch, None, Outcome::Reset);
        };
        let rec = self.exts.get_mut(idx as usize);
        match self.slots.get_mut(idx as usize) {
            Some(slot) => {
                let mut rec = rec;
                if let Some(r) = rec.as_deref_mut() {
                    if !r.has_id() {
                        r.reset_for(cluster_id(key));
                    }
                }
                (&mut slot.state, rec, outcome)
            }
            None => {
                self.scratch = State::EMPTY;
                (&mut self.scratch, None, Outcome::Reset)
            }
        }
    }

    /// Whether the table keeps sync records ([`Table::init_with`]).
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.hdr.ext_len != 0
    }

    /// Whether the zone's sync is marked as failing.
    #[must_use]
    pub fn sync_down(&self) -> bool {
        self.hdr.sync_down != 0
    }

    /// Marks the zone's sync as failing or working; returns the previous mark.
    pub fn set_sync_down(&mut self, down: bool) -> bool {
        let was = self.hdr.sync_down != 0;
        self.hdr.sync_down = u32::from(down);
        was
    }

    /// The state and sync record of `key` if present (for a refund).
    pub fn get_mut_synced(&mut self, key: &[u8]) -> Option<(&mut State, Option<&mut SyncRec>)> {
        let hash = self.hash(key);
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let idx = self.find(hash, key_len).ok()?? as usize;
        let rec = self.exts.get_mut(idx);
        self.slots.get_mut(idx).map(|s| (&mut s.state, rec))
    }

    /// Starts a sync exchange: walks at most `max_scan` slots from where the last walk ended
    /// and claims (see [`SyncRec::claim`]) the keys that have counts to push or were used in
    /// their last period (their totals are worth pulling), or were never pulled (a new key of a
    /// `persistent` zone), at most `max_claims` of them. `offset_ms`: the zone's UTC offset.
    pub fn sync_claims(
        &mut self,
        now_ms: u64,
        offset_ms: i64,
        settle_ms: u64,
        max_scan: usize,
        max_claims: usize,
        out: &mut Vec<SlotClaim>,
    ) {
        let used = (self.hdr.used as usize)
            .min(self.exts.len())
            .min(self.slots.len());
        if used == 0 {
            return;
        }
        let mut i = (self.hdr.sync_cursor as usize)
            .checked_rem(used)
            .unwrap_or(0);
        for _ in 0..max_scan.min(used) {
            if out.len() >= max_claims {
                break;
            }
            if let (Some(slot), Some(rec)) = (self.slots.get(i), self.exts.get_mut(i)) {
                let period = u64::from(rec.period);
                let recent = slot.last_ms.saturating_add(period) >= now_ms;
                let sliding = slot.state.algorithm() == Some(super::algo::Algorithm::Sliding);
                let windows = super::calendar::Windows {
                    period_ms: period,
                    offset_ms,
                };
                if rec.has_id()
                    && (sliding || !rec.pulled())
                    && period > 0
                    && (recent || rec.has_pending())
                {
                    out.push(SlotClaim {
                        idx: i as u32,
                        id: rec.id,
                        claim: rec.claim_settled(now_ms, &windows, settle_ms),
                    });
                }
            }
            i = i.wrapping_add(1);
            if i >= used {
                i = 0;
            }
        }
        self.hdr.sync_cursor = i as u32;
    }

    /// Ends a sync exchange for one key: `Some((current total, previous total))` from Redis,
    /// or `None` when the exchange failed (the claimed counts become pending again). A slot
    /// reused by another key in the meantime is left alone.
    pub fn sync_apply(&mut self, c: &SlotClaim, totals: Option<(u64, Option<u64>)>) {
        if c.idx >= self.hdr.used {
            return;
        }
        let Some(rec) = self.exts.get_mut(c.idx as usize) else {
            return;
        };
        if !rec.has_id() || rec.id != c.id {
            return;
        }
        match totals {
            Some((cur, prev)) => rec.apply(&c.claim, cur, prev),
            None => rec.unclaim(&c.claim),
        }
    }

    /// [`Table::sync_apply`] window by window ([`SyncRec::finish`]).
    pub fn sync_finish(&mut self, c: &SlotClaim, cur: Part, prev: Part) {
        if c.idx >= self.hdr.used {
            return;
        }
        let Some(rec) = self.exts.get_mut(c.idx as usize) else {
            return;
        };
        if rec.has_id() && rec.id == c.id {
            rec.finish(&c.claim, cur, prev);
        }
    }

    /// The state of `key` if present, without inserting it or changing the LRU order (for a
    /// refund, or to report headers without counting).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut State> {
        let hash = self.hash(key);
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let idx = self.find(hash, key_len).ok()??;
        self.slots.get_mut(idx as usize).map(|s| &mut s.state)
    }

    /// The state of `key` if present, read-only.
    #[must_use]
    pub fn get(&self, key: &[u8]) -> Option<&State> {
        let hash = self.hash(key);
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let idx = self.find(hash, key_len).ok()??;
        self.slots.get(idx as usize).map(|s| &s.state)
    }

    /// Removes every key (counters in [`Stats`] are kept; `resets` is incremented).
    pub fn reset(&mut self) {
        self.hdr.used = 0;
        self.hdr.lru_head = NIL;
        self.hdr.lru_tail = NIL;
        self.hdr.resets = self.hdr.resets.wrapping_add(1);
        self.buckets.fill(NIL);
    }

    /// Checks every invariant of the structures (O(capacity), allocates): the LRU list holds
    /// each used slot exactly once with consistent back links, and every used slot is reachable
    /// exactly once from the bucket its hash selects. For tests, and for the glue to run once
    /// after attaching to a zone kept across a reload.
    pub fn verify(&self) -> Result<(), TableError> {
        let used = self.hdr.used as usize;
        let mut seen = vec![false; used];
        // LRU list, head to tail.
        let mut prev = NIL;
        let mut i = self.hdr.lru_head;
        let mut n = 0usize;
        while i != NIL {
            let s = self
                .slot(i)
                .map_err(|_| TableError::Inconsistent("lru index"))?;
            let mark = seen
                .get_mut(i as usize)
                .ok_or(TableError::Inconsistent("lru index"))?;
            if *mark || s.lru_prev != prev {
                return Err(TableError::Inconsistent("lru links"));
            }
            *mark = true;
            n = n.saturating_add(1);
            prev = i;
            i = s.lru_next;
        }
        if n != used || self.hdr.lru_tail != prev {
            return Err(TableError::Inconsistent("lru length or tail"));
        }
        // Hash chains.
        seen.fill(false);
        let mut n = 0usize;
        for (b, &head) in self.buckets.iter().enumerate() {
            let mut i = head;
            while i != NIL {
                let s = self
                    .slot(i)
                    .map_err(|_| TableError::Inconsistent("chain index"))?;
                let mark = seen
                    .get_mut(i as usize)
                    .ok_or(TableError::Inconsistent("chain index"))?;
                if *mark || self.bucket_of(s.hash) != b {
                    return Err(TableError::Inconsistent("chain links"));
                }
                *mark = true;
                n = n.saturating_add(1);
                i = s.chain_next;
            }
        }
        if n != used {
            return Err(TableError::Inconsistent("chained slot count"));
        }
        Ok(())
    }

    fn hash(&self, key: &[u8]) -> [u64; 2] {
        let (h0, h1) = SipHasher13::new_with_keys(self.hdr.seed[0], self.hdr.seed[1])
            .hash(key)
            .as_u64();
        [h0, h1]
    }

    fn bucket_of(&self, hash: [u64; 2]) -> usize {
        // nbuckets is a power of two (checked by attach/init against the geometry).
        (hash[0] as usize) & self.buckets.len().wrapping_sub(1)
    }

    /// The used slot `i`, or `Corrupt` if `i` is out of range.
    fn slot(&self, i: u32) -> Result<&Slot, Corrupt> {
        if i >= self.hdr.used {
            return Err(Corrupt);
        }
        self.slots.get(i as usize).ok_or(Corrupt)
    }

    fn slot_mut(&mut self, i: u32) -> Result<&mut Slot, Corrupt> {
        if i >= self.hdr.used {
            return Err(Corrupt);
        }
        self.slots.get_mut(i as usize).ok_or(Corrupt)
    }

    fn find(&self, hash: [u64; 2], key_len: u32) -> Result<Option<u32>, Corrupt> {
        let mut i = *self.buckets.get(self.bucket_of(hash)).ok_or(Corrupt)?;
        // A chain is at most `used` long; one more step means a cycle.
        for _ in 0..=self.hdr.used {
            if i == NIL {
                return Ok(None);
            }
            let s = self.slot(i)?;
            if s.hash == hash && s.key_len == key_len {
                return Ok(Some(i));
            }
            i = s.chain_next;
        }
        Err(Corrupt)
    }

    fn try_lookup_or_insert(
        &mut self,
        hash: [u64; 2],
        key_len: u32,
        now_ms: u64,
    ) -> Result<(u32, Outcome), Corrupt> {
        if let Some(i) = self.find(hash, key_len)? {
            if self.hdr.lru_head != i {
                self.lru_unlink(i)?;
                self.lru_push_front(i)?;
            }
            self.slot_mut(i)?.last_ms = now_ms;
            return Ok((i, Outcome::Found));
        }
        let (i, outcome) = if self.hdr.used < self.hdr.capacity {
            let i = self.hdr.used;
            self.hdr.used = i.checked_add(1).ok_or(Corrupt)?;
            (i, Outcome::Inserted)
        } else {
            let i = self.hdr.lru_tail;
            let victim = self.slot(i)?;
            let outcome = if victim.state.is_idle(now_ms) {
                self.hdr.reclaims = self.hdr.reclaims.wrapping_add(1);
                Outcome::Reclaimed
            } else {
                self.hdr.evictions = self.hdr.evictions.wrapping_add(1);
                Outcome::Evicted
            };
            self.chain_remove(i)?;
            self.lru_unlink(i)?;
            (i, outcome)
        };
        let b = self.bucket_of(hash);
        let head = *self.buckets.get(b).ok_or(Corrupt)?;
        *self.slot_mut(i)? = Slot {
            hash,
            state: State::EMPTY,
            last_ms: now_ms,
            lru_prev: NIL,
            lru_next: NIL,
            chain_next: head,
            key_len,
        };
        if let Some(e) = self.exts.get_mut(i as usize) {
            *e = SyncRec::zeroed();
        }
        *self.buckets.get_mut(b).ok_or(Corrupt)? = i;
        self.lru_push_front(i)?;
        self.hdr.inserts = self.hdr.inserts.wrapping_add(1);
        Ok((i, outcome))
    }

    /// Unlinks slot `i` from its hash chain.
    fn chain_remove(&mut self, i: u32) -> Result<(), Corrupt> {
        let target = *self.slot(i)?;
        let b = self.bucket_of(target.hash);
        let mut prev = NIL;
        let mut cur = *self.buckets.get(b).ok_or(Corrupt)?;
        for _ in 0..=self.hdr.used {
            if cur == NIL {
                return Err(Corrupt); // not in the chain its hash selects
            }
            if cur == i {
                if prev == NIL {
                    *self.buckets.get_mut(b).ok_or(Corrupt)? = target.chain_next;
                } else {
                    self.slot_mut(prev)?.chain_next = target.chain_next;
                }
                return Ok(());
            }
            prev = cur;
            cur = self.slot(cur)?.chain_next;
        }
        Err(Corrupt)
    }

    /// Unlinks slot `i` from the LRU list, checking the neighbours point back at it.
    fn lru_unlink(&mut self, i: u32) -> Result<(), Corrupt> {
        let s = *self.slot(i)?;
        let (p, n) = (s.lru_prev, s.lru_next);
        let prev_ok = if p == NIL {
            self.hdr.lru_head == i
        } else {
            self.slot(p)?.lru_next == i
        };
        let next_ok = if n == NIL {
            self.hdr.lru_tail == i
        } else {
            self.slot(n)?.lru_prev == i
        };
        if !prev_ok || !next_ok {
            return Err(Corrupt);
        }
        if p == NIL {
            self.hdr.lru_head = n;
        } else {
            self.slot_mut(p)?.lru_next = n;
        }
        if n == NIL {
            self.hdr.lru_tail = p;
        } else {
            self.slot_mut(n)?.lru_prev = p;
        }
        Ok(())
    }

    /// Makes slot `i` (not in the list) the most recently used.
    fn lru_push_front(&mut self, i: u32) -> Result<(), Corrupt> {
        let head = self.hdr.lru_head;
        {
            let s = self.slot_mut(i)?;
            s.lru_prev = NIL;
            s.lru_next = head;
        }
        if head == NIL {
            self.hdr.lru_tail = i;
        } else {
            self.slot_mut(head)?.lru_prev = i;
        }
        self.hdr.lru_head = i;
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;
    use crate::ratelimit::algo::{check_and_consume, Algorithm, Params};
    use std::collections::{HashMap, VecDeque};

    /// An 8-byte aligned buffer of `len` bytes.
    struct Region(Vec<u64>, usize);
    impl Region {
        fn new(len: usize) -> Self {
            Region(vec![0u64; len.div_ceil(8)], len)
        }
        fn bytes(&mut self) -> &mut [u8] {
            &mut bytemuck::cast_slice_mut(&mut self.0)[..self.1]
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    fn key(i: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&i.to_le_bytes());
        k[8..].copy_from_slice(b"10.0.0.1");
        k
    }

    const HOUR: Params = Params {
        algorithm: Algorithm::Sliding,
        count: 1_000_000,
        period_ms: 3_600_000,
        burst: 0,
        offset_ms: 0,
        cost: 1,
    };

    /// Region length whose table holds about `cap` slots (exactly `cap` while the minimum
    /// bucket count applies, i.e. for `cap <= 16`).
    fn len_for(cap: usize) -> usize {
        HEADER_LEN + MIN_BUCKETS * BUCKET_LEN + cap * SLOT_LEN
    }

    #[test]
    fn geometry_and_capacity() {
        assert_eq!(Table::capacity_for(Table::min_region_len()), MIN_CAPACITY);
        assert_eq!(Table::capacity_for(Table::min_region_len() - 1), 0);
        assert_eq!(Table::capacity_for(0), 0);
        assert_eq!(Table::capacity_for(len_for(10)), 10);
        let mb = Table::capacity_for(1 << 20);
        eprintln!(
            "slots per MiB: {mb}; per 10 MiB: {}",
            Table::capacity_for(10 << 20)
        );
        assert!(mb >= 8000);
        assert_eq!(mb, 15_358);
        // Huge sizes do not overflow.
        let _ = geometry(usize::MAX, 0);
        let _ = geometry(usize::MAX, EXT_LEN);
        assert!(Table::capacity_for(usize::MAX) <= MAX_CAPACITY);
        for len in (0..100_000).step_by(97) {
            if let Some((c, b)) = geometry(len, 0) {
                assert!(b.is_power_of_two() && b >= MIN_BUCKETS);
                assert!(HEADER_LEN + b * BUCKET_LEN + c * SLOT_LEN <= len);
            }
        }
    }

    #[test]
    fn insert_and_lookup() {
        let mut r = Region::new(64 << 10);
        let mut t = Table::init(r.bytes(), 1).unwrap();
        let (st, o) = t.lookup_or_insert(b"alice", 10);
        assert_eq!(o, Outcome::Inserted);
        assert_eq!(*st, State::EMPTY);
        assert!(check_and_consume(st, 10, &HOUR).allowed);
        let (st, o) = t.lookup_or_insert(b"bob", 11);
        assert_eq!(o, Outcome::Inserted);
        assert_eq!(*st, State::EMPTY);
        let (st, o) = t.lookup_or_insert(b"alice", 12);
        assert_eq!(o, Outcome::Found);
        assert_eq!(check_and_consume(st, 12, &HOUR).remaining, HOUR.count - 2);
        // Empty key and long keys are keys like any other.
        assert_eq!(t.lookup_or_insert(b"", 13).1, Outcome::Inserted);
        assert_eq!(t.lookup_or_insert(b"", 13).1, Outcome::Found);
        let long = vec![b'x'; 100_000];
        assert_eq!(t.lookup_or_insert(&long, 13).1, Outcome::Inserted);
        assert_eq!(t.lookup_or_insert(&long, 13).1, Outcome::Found);
        assert!(t.get(b"carol").is_none());
        assert!(t.get_mut(b"bob").is_some());
        assert_eq!(t.stats().used, 4);
        assert_eq!(t.stats().inserts, 4);
        t.verify().unwrap();
    }

    #[test]
    fn lru_eviction_order() {
        let cap = 10;
        let mut r = Region::new(len_for(cap));
        let mut t = Table::init(r.bytes(), 7).unwrap();
        assert_eq!(t.stats().capacity as usize, cap);
        for i in 0..cap as u64 {
            let (st, o) = t.lookup_or_insert(&key(i), i);
            assert_eq!(o, Outcome::Inserted);
            check_and_consume(st, i, &HOUR);
        }
        // Touch 0 and 1: the least recently used is now 2, then 3, ...
        assert_eq!(t.lookup_or_insert(&key(0), 20).1, Outcome::Found);
        assert_eq!(t.lookup_or_insert(&key(1), 21).1, Outcome::Found);
        for (n, victim) in [2u64, 3, 4].into_iter().enumerate() {
            let (st, o) = t.lookup_or_insert(&key(100 + n as u64), 30);
            assert_eq!(o, Outcome::Evicted);
            assert_eq!(*st, State::EMPTY);
            assert!(t.get(&key(victim)).is_none(), "key {victim} should be gone");
            t.verify().unwrap();
        }
        for i in [0, 1, 5, 6, 7, 8, 9, 100, 101, 102] {
            assert!(t.get(&key(i)).is_some(), "key {i} should remain");
        }
        assert_eq!(t.stats().evictions, 3);
        assert_eq!(t.stats().used as usize, cap);
        assert_eq!(t.eviction_report(1000, 60_000), Some(3));
        assert_eq!(t.eviction_report(2000, 60_000), None);
        t.lookup_or_insert(&key(200), 30);
        assert_eq!(t.eviction_report(3000, 60_000), None, "within the interval");
        // Another worker's cached clock a few ms behind is no reason to report again.
        assert_eq!(
            t.eviction_report(995, 60_000),
            None,
            "clock skew between workers"
        );
        assert_eq!(t.eviction_report(61_000, 60_000), Some(1));
        // A clock set back by a whole interval or more starts a new one at once.
        t.lookup_or_insert(&key(201), 30);
        assert_eq!(t.eviction_report(1000, 60_000), Some(1), "clock went back");
    }

    #[test]
    fn idle_slots_are_reclaimed_not_evicted() {
        let mut r = Region::new(len_for(8));
        let mut t = Table::init(r.bytes(), 7).unwrap();
        let p = Params {
            algorithm: Algorithm::Sliding,
            count: 5,
            period_ms: 1000,
            burst: 0,
            offset_ms: 0,
            cost: 1,
        };
        for i in 0..8 {
            let (st, _) = t.lookup_or_insert(&key(i), 1000);
            check_and_consume(st, 1000, &p);
        }
        // At 3000 every key's counts have expired.
        assert_eq!(t.lookup_or_insert(&key(50), 3000).1, Outcome::Reclaimed);
        let (st, _) = t.lookup_or_insert(&key(51), 3000);
        check_and_consume(st, 3000, &p);
        assert_eq!(t.stats().reclaims, 2);
        assert_eq!(t.stats().evictions, 0);
    }

    #[test]
    fn one_mib_holds_its_capacity_of_16_byte_keys() {
        let mut r = Region::new(1 << 20);
        let mut t = Table::init(r.bytes(), random_seed()).unwrap();
        let cap = t.stats().capacity as u64;
        assert!(cap >= 8000);
        for i in 0..cap {
            let (st, o) = t.lookup_or_insert(&key(i), i);
            assert_eq!(o, Outcome::Inserted);
            assert!(check_and_consume(st, i, &HOUR).allowed);
        }
        for i in 0..cap {
            assert!(t.get(&key(i)).is_some());
        }
        assert_eq!(t.stats().evictions, 0);
        t.verify().unwrap();
        assert_eq!(t.lookup_or_insert(&key(cap), 0).1, Outcome::Evicted);
        assert!(t.get(&key(0)).is_none());
    }

    #[test]
    fn attach_after_init_keeps_everything() {
        let mut r = Region::new(256 << 10);
        {
            let mut t = Table::init(r.bytes(), 99).unwrap();
            for i in 0..100 {
                let (st, _) = t.lookup_or_insert(&key(i), 5);
                for _ in 0..=i {
                    check_and_consume(st, 5, &HOUR);
                }
            }
        }
        let mut t = Table::attach(r.bytes()).unwrap();
        t.verify().unwrap();
        assert_eq!(t.stats().used, 100);
        for i in 0..100 {
            let (st, o) = t.lookup_or_insert(&key(i), 6);
            assert_eq!(o, Outcome::Found);
            let d = check_and_consume(st, 6, &HOUR);
            assert_eq!(d.remaining, HOUR.count - (i + 2));
        }
    }

    #[test]
    fn attach_rejects_mismatches_and_garbage() {
        let len = 64 << 10;
        let mut r = Region::new(len);
        assert_eq!(
            Table::attach(r.bytes()).unwrap_err(),
            TableError::NotFormatted
        );
        Table::init(r.bytes(), 1).unwrap();
        // A shorter view of the same bytes: formatted for another size.
        assert!(matches!(
            Table::attach(&mut r.bytes()[..len - 64]),
            Err(TableError::Geometry(_))
        ));
        // Misaligned.
        assert_eq!(
            Table::attach(&mut r.bytes()[4..]).unwrap_err(),
            TableError::Misaligned
        );
        assert_eq!(
            Table::init(&mut r.bytes()[4..], 1).unwrap_err(),
            TableError::Misaligned
        );
        // Too small.
        assert!(matches!(
            Table::init(&mut r.bytes()[..100], 1),
            Err(TableError::TooSmall { .. })
        ));
        // Another version, another layout.
        let h: &mut Header = bytemuck::from_bytes_mut(&mut r.bytes()[..HEADER_LEN]);
        h.version = 1;
        assert!(matches!(
            Table::attach(r.bytes()),
            Err(TableError::Version { found: 1, .. })
        ));
        let h: &mut Header = bytemuck::from_bytes_mut(&mut r.bytes()[..HEADER_LEN]);
        h.version = VERSION;
        h.layout ^= 1;
        assert_eq!(Table::attach(r.bytes()).unwrap_err(), TableError::Layout);
        let h: &mut Header = bytemuck::from_bytes_mut(&mut r.bytes()[..HEADER_LEN]);
        h.layout ^= 1;
        h.used = h.capacity + 1;
        assert!(matches!(
            Table::attach(r.bytes()),
            Err(TableError::Inconsistent(_))
        ));
        let h: &mut Header = bytemuck::from_bytes_mut(&mut r.bytes()[..HEADER_LEN]);
        h.used = 3;
        h.lru_head = 3;
        assert!(matches!(
            Table::attach(r.bytes()),
            Err(TableError::Inconsistent(_))
        ));
        // Random garbage, and garbage behind a valid magic: never a panic.
        let mut rng = Rng(0xDEAD_BEEF);
        for round in 0..2000 {
            for w in r.0.iter_mut() {
                *w = rng.next();
            }
            if round % 2 == 0 {
                let h: &mut Header = bytemuck::from_bytes_mut(&mut r.bytes()[..HEADER_LEN]);
                h.magic = MAGIC;
                h.version = VERSION;
                h.layout = LAYOUT_HASH;
            }
            assert!(Table::attach(r.bytes()).is_err());
        }
    }

    /// Random operations against a model: a HashMap of per-key counts and a VecDeque in
    /// recency order (front = most recent).
    #[test]
    fn random_ops_match_model() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut r = Region::new(len_for(8 + rng.below(40) as usize));
            let mut t = Table::init(r.bytes(), u128::from(seed)).unwrap();
            let cap = t.stats().capacity as usize;
            let mut counts: HashMap<u64, u64> = HashMap::new();
            let mut lru: VecDeque<u64> = VecDeque::new();
            let key_space = cap as u64 * (1 + rng.below(3));
            for step in 0..5000 {
                let k = rng.below(key_space);
                let now = 1_000 + step; // well within the hour: evictions are all "live"
                if rng.below(5) == 0 {
                    // Read-only lookup: no LRU change.
                    let got = t.get(&key(k)).map(|st| {
                        let d = crate::ratelimit::algo::peek(st, now, &HOUR);
                        HOUR.count - d.remaining - 1
                    });
                    assert_eq!(got, counts.get(&k).copied(), "seed {seed} step {step}");
                    continue;
                }
                // Re-attach now and then, as the glue does per request.
                if rng.below(50) == 0 {
                    t = Table::attach(r.bytes()).unwrap();
                }
                let (st, o) = t.lookup_or_insert(&key(k), now);
                let d = check_and_consume(st, now, &HOUR);
                let expected = if let Some(c) = counts.get_mut(&k) {
                    assert_eq!(o, Outcome::Found);
                    lru.retain(|&x| x != k);
                    *c += 1;
                    *c
                } else {
                    if lru.len() == cap {
                        assert_eq!(o, Outcome::Evicted);
                        let victim = lru.pop_back().unwrap();
                        counts.remove(&victim);
                    } else {
                        assert_eq!(o, Outcome::Inserted);
                    }
                    counts.insert(k, 1);
                    1
                };
                lru.push_front(k);
                assert_eq!(d.remaining, HOUR.count - expected);
                if step % 500 == 0 {
                    t.verify().unwrap();
                }
            }
            t.verify().unwrap();
            assert_eq!(t.stats().used as usize, lru.len());
            assert_eq!(t.stats().resets, 0);
        }
    }

    /// Scribbling over the slots and buckets of a live table never panics; inconsistencies
    /// are detected and the table resets itself.
    #[test]
    fn corrupted_contents_never_panic() {
        let mut rng = Rng(12345);
        let cap = 64;
        let len = len_for(cap);
        let mut resets = 0;
        for round in 0..300 {
            let mut r = Region::new(len);
            {
                let mut t = Table::init(r.bytes(), round).unwrap();
                for i in 0..(cap as u64 + 10) {
                    t.lookup_or_insert(&key(i), i);
                }
            }
            let bytes = r.bytes();
            for _ in 0..1 + rng.below(8) {
                let pos = HEADER_LEN + rng.below((len - HEADER_LEN) as u64) as usize;
                bytes[pos] = if rng.below(2) == 0 {
                    rng.next() as u8
                } else {
                    // Small values make in-range but wrong indices.
                    rng.below(cap as u64 + 2) as u8
                };
            }
            let Ok(mut t) = Table::attach(r.bytes()) else {
                continue;
            };
            for _ in 0..500 {
                let k = key(rng.below(cap as u64 * 2));
                let now = rng.below(10_000);
                let (st, _) = t.lookup_or_insert(&k, now);
                check_and_consume(st, now, &HOUR);
                let _ = t.get(&k);
                if let Some(st) = t.get_mut(&k) {
                    crate::ratelimit::algo::refund(st, now, &HOUR);
                }
            }
            resets += t.stats().resets;
            let _ = t.verify();
        }
        eprintln!("corruption rounds that led to a reset: {resets}");
        assert!(resets > 0);
    }

    /// `cargo test --release -- --ignored --nocapture table::tests::timing`
    #[test]
    #[ignore = "timing; run in release with --nocapture"]
    fn timing() {
        use std::time::Instant;
        let mut r = Region::new(1 << 20);
        let cap = Table::init(r.bytes(), random_seed())
            .unwrap()
            .stats()
            .capacity as u64;
        let keys: Vec<[u8; 16]> = (0..cap).map(key).collect();
        {
            let mut t = Table::attach(r.bytes()).unwrap();
            for (i, k) in keys.iter().enumerate() {
                t.lookup_or_insert(k, i as u64);
            }
        }
        let mut rng = Rng(1);
        let order: Vec<usize> = (0..1_000_000).map(|_| rng.below(cap) as usize).collect();
        for (name, p) in [
            ("sliding", HOUR),
            (
                "token_bucket",
                Params {
                    algorithm: Algorithm::TokenBucket,
                    count: 1000,
                    period_ms: 1000,
                    burst: 100,
                    offset_ms: 0,
                    cost: 1,
                },
            ),
        ] {
            let start = Instant::now();
            let mut allowed = 0u64;
            for (n, &i) in order.iter().enumerate() {
                // As the glue will: attach, look up, decide; all under the zone lock.
                let mut t = Table::attach(r.bytes()).unwrap();
                let (st, _) = t.lookup_or_insert(&keys[i], 10_000 + n as u64 / 1000);
                allowed += check_and_consume(st, 10_000 + n as u64 / 1000, &p).allowed as u64;
            }
            let ns = start.elapsed().as_nanos() as f64 / order.len() as f64;
            eprintln!(
                "{name}: attach + lookup_or_insert (hit) + check_and_consume: {ns:.1} ns/op \
                 over {cap} keys in 1 MiB ({allowed} allowed)"
            );
        }
        // Misses: every lookup inserts, evicting the LRU tail.
        let start = Instant::now();
        let n = 1_000_000u64;
        for j in 0..n {
            let mut t = Table::attach(r.bytes()).unwrap();
            let (st, _) = t.lookup_or_insert(&key(cap + j), 20_000);
            check_and_consume(st, 20_000, &HOUR);
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        eprintln!("miss + evict + check: {ns:.1} ns/op");
        // Hashing alone.
        let t = Table::attach(r.bytes()).unwrap();
        let start = Instant::now();
        let mut acc = 0u64;
        for k in keys.iter().cycle().take(1_000_000) {
            acc ^= t.hash(k)[0];
        }
        let ns = start.elapsed().as_nanos() as f64 / 1e6;
        eprintln!("siphash13-128 of a 16-byte key: {ns:.1} ns ({acc:x})");
    }

    #[test]
    fn synced_table_keeps_sync_records() {
        use crate::ratelimit::sync::check_and_consume_synced;
        let mut r = Region::new(64 * 1024);
        let plain_cap = Table::init(r.bytes(), 1).unwrap().stats().capacity;
        let t = Table::init_with(r.bytes(), 1, true).unwrap();
        assert!(t.is_synced());
        assert!(t.stats().capacity < plain_cap);
        let p = Params::new(
            Algorithm::Sliding,
            crate::parse::parse_rate("10r/m").unwrap(),
            0,
        );
        let now = 600_000;
        {
            let mut t = Table::attach(r.bytes()).unwrap();
            assert!(t.is_synced());
            for _ in 0..3 {
                let (st, rec, _) = t.lookup_or_insert_synced(b"alice", now);
                let rec = rec.unwrap();
                assert_eq!(rec.id, cluster_id(b"alice"));
                assert!(check_and_consume_synced(st, rec, now, &p, None).allowed);
            }
            t.verify().unwrap();
        }
        let mut t = Table::attach(r.bytes()).unwrap();
        let mut claims = Vec::new();
        t.sync_claims(now + 100, 0, u64::MAX, 100, 100, &mut claims);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].claim.cur, 3);
        // Another node admitted 5: the total is 8.
        t.sync_apply(&claims[0], Some((8, Some(0))));
        let (st, rec, o) = t.lookup_or_insert_synced(b"alice", now + 200);
        assert_eq!(o, Outcome::Found);
        let rec = rec.unwrap();
        assert_eq!(rec.cur.others(), 5);
        let d = check_and_consume_synced(st, rec, now + 200, &p, None);
        assert_eq!((d.allowed, d.remaining), (true, 1));
        // A failed exchange gives the counts back.
        claims.clear();
        t.sync_claims(now + 300, 0, u64::MAX, 100, 100, &mut claims);
        assert_eq!(claims[0].claim.cur, 1);
        t.sync_apply(&claims[0], None);
        assert_eq!(
            t.get_mut_synced(b"alice").unwrap().1.unwrap().cur.pending,
            1
        );
        assert!(!t.set_sync_down(true));
        assert!(t.sync_down());
        // A plain table has no records.
        let mut r2 = Region::new(64 * 1024);
        let mut t2 = Table::init(r2.bytes(), 1).unwrap();
        assert!(t2.lookup_or_insert_synced(b"x", 1).1.is_none());
        claims.clear();
        t2.sync_claims(1, 0, u64::MAX, 100, 100, &mut claims);
        assert!(claims.is_empty());
    }
}

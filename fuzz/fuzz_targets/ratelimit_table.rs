//! The shared-memory rate-limit table over a small region, driven by a sequence of operations
//! decoded from the input: lookups with checks and refunds under arbitrary parameters and
//! times, resets, reattaching, and now and then raw corruption of the region's bytes.
//!
//! Never panics or reads outside the region. While the region has not been corrupted, the
//! table must match a model (a map of states plus an exact LRU order): the same outcomes, the
//! same decisions, the same victims on eviction, and `verify()` must pass after every step.
#![no_main]

use gateway_core::ratelimit::algo::{check_and_consume, peek, refund, Algorithm, Params, State};
use gateway_core::ratelimit::table::{Outcome, Table};
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, VecDeque};

const WORDS: usize = 1024; // 8 KiB

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for i in 0..8 {
            v |= u64::from(self.byte().unwrap_or(0)) << (8 * i);
        }
        v
    }
    fn key(&mut self) -> Vec<u8> {
        // Mostly one-byte keys (so they repeat and fill small tables), sometimes longer ones.
        let b = self.byte().unwrap_or(0);
        if b < 224 {
            vec![b]
        } else {
            let n = usize::from(b - 224);
            (0..n).map(|_| self.byte().unwrap_or(0)).collect()
        }
    }
    fn params(&mut self) -> Params {
        let sel = self.byte().unwrap_or(0);
        let algorithm = if sel & 1 == 0 {
            Algorithm::Sliding
        } else {
            Algorithm::TokenBucket
        };
        let count = match (sel >> 1) & 3 {
            0 => u64::from(self.byte().unwrap_or(0) % 8),
            1 => u64::from(self.byte().unwrap_or(0)),
            2 => 1000 * u64::from(self.byte().unwrap_or(0)),
            _ => self.u64(),
        };
        let period_ms = match (sel >> 3) & 7 {
            0 | 1 => 1_000,
            2 => 60_000,
            3 => 3_600_000,
            4 => 86_400_000,
            5 => u64::from(self.byte().unwrap_or(0)),
            _ => self.u64(),
        };
        let burst = match sel >> 6 {
            0 => 0,
            1 | 2 => u64::from(self.byte().unwrap_or(0) % 16),
            _ => self.u64(),
        };
        Params {
            algorithm,
            count,
            period_ms,
            burst,
            offset_ms: 0,
            cost: 1,
        }
    }
}

/// The table as it should be: states by key, and keys from most to least recently used.
#[derive(Default)]
struct Model {
    states: HashMap<Vec<u8>, State>,
    lru: VecDeque<Vec<u8>>,
}

impl Model {
    fn clear(&mut self) {
        self.states.clear();
        self.lru.clear();
    }
    fn touch(&mut self, key: &[u8]) {
        if let Some(i) = self.lru.iter().position(|k| k == key) {
            let k = self.lru.remove(i).expect("in range");
            self.lru.push_front(k);
        }
    }
}

fn check_decision(p: &Params, d: &gateway_core::ratelimit::algo::Decision) {
    assert_eq!(d.limit, p.limit(), "decision limit vs params limit");
    assert!(
        d.remaining <= d.limit,
        "remaining {} > limit {}",
        d.remaining,
        d.limit
    );
    if d.allowed {
        assert_eq!(d.retry_after_ms, 0);
        assert_eq!(d.retry_after_secs(), 0);
    } else {
        assert!(d.retry_after_ms >= 1);
        assert!(d.retry_after_secs() >= 1);
        // Retry-After, RateLimit t= and X-RateLimit-Reset say the same wait.
        assert_eq!(d.reset_ms, d.retry_after_ms);
        assert_eq!(d.reset_secs(), d.retry_after_secs());
    }
    let _ = d.reset_secs();
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut buf = vec![0u64; WORDS];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
    let len =
        (Table::min_region_len() + 29 * usize::from(input.byte().unwrap_or(0))).min(bytes.len());
    // A misaligned or short region is refused, never used.
    assert!(Table::init(&mut bytes[1..len], 0).is_err());
    assert!(Table::attach(&mut bytes[1..len]).is_err());
    assert!(Table::init(&mut bytes[..Table::min_region_len() - 1], 0).is_err());
    let region = &mut bytes[..len];
    let seed = u128::from(input.u64());
    let capacity = Table::init(region, seed).expect("init").stats().capacity as usize;
    assert_eq!(capacity, Table::capacity_for(len));

    let mut model = Model::default();
    let mut corrupted = false;
    let mut now = input.u64() >> (input.byte().unwrap_or(0) % 64);

    while let Some(op) = input.byte() {
        // Time moves on by a step chosen from a few scales; rarely it goes back.
        now = match op >> 5 {
            0..=2 => now,
            3 => now.saturating_add(1),
            4 => now.saturating_add(u64::from(input.byte().unwrap_or(0))),
            5 => now.saturating_add(1000 * u64::from(input.byte().unwrap_or(0))),
            6 => now.saturating_add(60_000 * u64::from(input.byte().unwrap_or(0))),
            _ => now.saturating_sub(u64::from(input.byte().unwrap_or(0))),
        };
        let mut table = match Table::attach(region) {
            Ok(t) => t,
            Err(e) => {
                assert!(corrupted, "attach failed on an intact region: {e}");
                let _ = e.to_string();
                model.clear();
                corrupted = false;
                Table::init(region, seed).expect("re-init")
            }
        };
        match op & 31 {
            // A request: look the key up, check it, maybe refund it.
            0..=19 => {
                let key = input.key();
                let p = input.params();
                let refund_now = op & 1 == 1 && op & 2 == 2;
                let (state, outcome) = table.lookup_or_insert(&key, now);
                let before = *state;
                let d = check_and_consume(state, now, &p);
                check_decision(&p, &d);
                if refund_now && d.allowed {
                    let admitted = *state;
                    refund(state, now, &p);
                    // Undoing the request leaves the key as if it had never come.
                    let again = peek(state, now, &p);
                    let first = peek(&before, now, &p);
                    assert_eq!(
                        (again.allowed, again.remaining),
                        (first.allowed, first.remaining),
                        "refund did not undo: before {before:?}, admitted {admitted:?}, \
                         refunded {state:?}, {p:?} at {now}"
                    );
                }
                let after = *state;
                if outcome == Outcome::Reset {
                    model.clear();
                    corrupted = false;
                    model.states.insert(key.clone(), State::EMPTY);
                    model.lru.push_front(key.clone());
                } else if !corrupted {
                    let expected = if model.states.contains_key(&key) {
                        model.touch(&key);
                        Outcome::Found
                    } else {
                        if model.lru.len() < capacity {
                            Outcome::Inserted
                        } else {
                            let victim = model.lru.pop_back().expect("full model");
                            let vs = model.states.remove(&victim).expect("victim state");
                            if vs.is_idle(now) {
                                Outcome::Reclaimed
                            } else {
                                Outcome::Evicted
                            }
                        }
                    };
                    if expected != Outcome::Found {
                        model.states.insert(key.clone(), State::EMPTY);
                        model.lru.push_front(key.clone());
                    }
                    assert_eq!(outcome, expected, "outcome for {key:?}");
                }
                if !corrupted {
                    let ms = model.states.get_mut(&key).expect("model has the key");
                    assert_eq!(*ms, before, "stored state for {key:?}");
                    let md = check_and_consume(ms, now, &p);
                    assert_eq!(md, d);
                    if refund_now && d.allowed {
                        refund(ms, now, &p);
                    }
                    assert_eq!(*ms, after);
                }
            }
            // A refund for a key that may or may not be there.
            20..=22 => {
                let key = input.key();
                let p = input.params();
                let present = table.get(&key).is_some();
                if let Some(state) = table.get_mut(&key) {
                    refund(state, now, &p);
                    let _ = peek(state, now, &p);
                    if !corrupted {
                        let ms = model.states.get_mut(&key).expect("model has the key");
                        refund(ms, now, &p);
                        assert_eq!(ms, state);
                    }
                }
                if !corrupted {
                    assert_eq!(present, model.states.contains_key(&key), "get {key:?}");
                }
            }
            23 => {
                let interval = u64::from(input.byte().unwrap_or(0)) * 1000;
                let _ = table.eviction_report(now, interval);
            }
            24 => {
                table.reset();
                model.clear();
                corrupted = false;
            }
            // Corrupt one to eight bytes of the region (rare: two opcodes out of 32).
            25 | 26 => {
                drop(table);
                let n = 1 + input.byte().unwrap_or(0) % 8;
                for _ in 0..n {
                    let hi = usize::from(input.byte().unwrap_or(0));
                    let lo = usize::from(input.byte().unwrap_or(0));
                    let at = (hi << 8 | lo) % region.len();
                    region[at] = input.byte().unwrap_or(0);
                }
                corrupted = true;
                match Table::attach(region) {
                    Ok(t) => {
                        let _ = t.verify();
                        let _ = t.stats();
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
                continue;
            }
            _ => {
                let key = input.key();
                if let Some(s) = table.get(&key) {
                    let _ = s.algorithm();
                    let _ = s.is_idle(now);
                }
            }
        }
        let Ok(table) = Table::attach(region) else {
            assert!(corrupted, "attach failed on an intact region");
            continue;
        };
        let stats = table.stats();
        assert!(stats.used <= stats.capacity);
        if !corrupted {
            if let Err(e) = table.verify() {
                panic!("verify failed without corruption: {e}");
            }
            assert_eq!(stats.used as usize, model.states.len());
            assert_eq!(model.lru.len(), model.states.len());
        }
    }
});

//! Rate limiting: the algorithms ([`algo`], pure functions over a small state) and the table
//! that keeps one state per key inside a shared-memory region ([`table`]).
//!
//! The glue's per-request sequence, under the zone's mutex:
//!
//! ```
//! use gateway_core::parse::parse_rate;
//! use gateway_core::ratelimit::algo::{check_and_consume, Algorithm, Params};
//! use gateway_core::ratelimit::counter_key;
//! use gateway_core::ratelimit::table::{random_seed, Table};
//!
//! let mut zone = vec![0u64; 1 << 17]; // stands in for the shared memory (8-byte aligned)
//! let region: &mut [u8] = bytemuck::cast_slice_mut(&mut zone);
//! Table::init(region, random_seed()).unwrap(); // once, when the zone is created
//!
//! let params = Params::new(Algorithm::Sliding, parse_rate("100r/m").unwrap(), 0);
//! let now_ms = 1_000;
//! // per request:
//! let mut table = Table::attach(region).unwrap();
//! let counter = counter_key(b"203.0.113.7", params.period_ms);
//! let (state, _outcome) = table.lookup_or_insert(&counter, now_ms);
//! let decision = check_and_consume(state, now_ms, &params);
//! assert!(decision.allowed);
//! assert_eq!(decision.remaining, 99);
//! ```

pub mod algo;
pub mod calendar;
pub mod sync;
pub mod table;
pub mod topology;

/// The table key of a limit's counter: the zone's key and the limit's period.
///
/// Limits of different periods on one zone (`100r/m` and `3r/h`) keep separate counters, so
/// each holds exactly; limits of one period share the counter, in every location, so a key's
/// count is the same whichever location counted it. The period is appended as 8 fixed bytes,
/// so no two (key, period) pairs give the same bytes. Every node derives the same bytes, so a
/// synced zone's Redis keys ([`sync::cluster_id`]) agree across nodes.
#[must_use]
pub fn counter_key(key: &[u8], period_ms: u64) -> Vec<u8> {
    let mut counter = Vec::with_capacity(key.len().saturating_add(8));
    counter.extend_from_slice(key);
    counter.extend_from_slice(&period_ms.to_be_bytes());
    counter
}

#[cfg(test)]
mod tests {
    use super::counter_key;
    use super::sync::{cluster_id, redis_key};

    #[test]
    fn counters_per_period() {
        let minute = counter_key(b"k", 60_000);
        let hour = counter_key(b"k", 3_600_000);
        assert_ne!(minute, hour);
        assert_eq!(minute, counter_key(b"k", 60_000));
        // The same window start (an hour boundary is also a minute boundary) names two keys.
        let win = 7_200_000;
        assert_ne!(
            redis_key("z", cluster_id(&minute), win),
            redis_key("z", cluster_id(&hour), win)
        );
        // The period has a fixed length, so key bytes never pass for a period.
        assert_ne!(
            counter_key(b"a", 0),
            counter_key(b"", 0x6100_0000_0000_0000)
        );
    }
}

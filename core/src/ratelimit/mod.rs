//! Rate limiting: the algorithms ([`algo`], pure functions over a small state) and the table
//! that keeps one state per key inside a shared-memory region ([`table`]).
//!
//! The glue's per-request sequence, under the zone's mutex:
//!
//! ```
//! use gateway_core::parse::parse_rate;
//! use gateway_core::ratelimit::algo::{check_and_consume, Algorithm, Params};
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
//! let (state, _outcome) = table.lookup_or_insert(b"203.0.113.7", now_ms);
//! let decision = check_and_consume(state, now_ms, &params);
//! assert!(decision.allowed);
//! assert_eq!(decision.remaining, 99);
//! ```

pub mod algo;
pub mod sync;
pub mod table;

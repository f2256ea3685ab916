//! Pure-Rust core of ngx-gateway.
//!
//! Everything here is plain Rust with no nginx types, so it is unit-tested with `cargo test`
//! and fuzzed without an nginx build. The nginx glue in the `ngx-gateway` crate calls into it.

pub mod bearer;
pub mod header;
pub mod jwks;
pub mod jwt;
pub mod log;
pub mod metrics;
pub mod oidc;
pub mod parse;
pub mod policy;
pub mod ratelimit;
pub mod reqid;
pub mod resp;
pub mod trace;

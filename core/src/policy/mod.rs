//! Consumers and central policy (issue 13): the policy document, its validation, and the
//! compiled image that every worker reads in place.
//!
//! [`compile`] parses and validates a JSON policy document (schema version 1, described in
//! `schema/policy.schema.json`) and builds an *image*: a position-independent byte blob (offsets
//! only, little-endian, a magic and a format version in front) that the nginx glue copies into
//! shared memory. [`View::new`] checks an image's header in O(1) and every accessor is
//! bounds-checked, so no byte string can make them panic or read outside the image. Lookups are
//! binary searches over sorted tables (O(log n)); an API key's digest is compared in constant
//! time once the search has found its candidate.
//!
//! ```
//! use gateway_core::policy::{compile, key_digest, Access, Period, View};
//!
//! let doc = br#"{
//!   "version": "v1",
//!   "plans": {"free": {"limits": {"minute": 100}}},
//!   "consumers": [{"id": "acme", "groups": ["partners"], "plan": "free",
//!                  "credentials": {"api_keys": [{"sha256":
//!                  "8d5be2b6a6be2f3ad0bb6e2cb7b1d06c1ed5aa2e4c1f2e9b09a2f1d0f0c5b35e"}]}}],
//!   "access": [{"route": "orders", "groups": ["partners"], "methods": ["GET"]}]
//! }"#;
//! let (image, summary) = compile(doc).unwrap();
//! assert_eq!(summary.consumers, 1);
//! let view = View::new(&image).unwrap();
//! let acme = view.consumer(b"acme").unwrap();
//! assert_eq!(acme.plan().unwrap().limit(Period::Minute), Some(100));
//! let groups: Vec<&[u8]> = acme.groups().collect();
//! assert_eq!(view.access(b"orders", b"GET", &groups, true), Access::Allowed);
//! assert_eq!(view.access(b"orders", b"DELETE", &groups, true), Access::Forbidden);
//! assert!(view.by_key_digest(&key_digest(b"not the key")).is_none());
//! ```

mod doc;
mod gen;
mod image;
#[cfg(test)]
mod tests;

pub use gen::{generate, GEN_GROUPS, GEN_ISSUER};
pub use image::{Access, Consumer, Period, Plan, Strs, View};

use std::fmt;

/// Why a document was refused: a reason code (`bad_json`, `bad_value`, `unknown_member`,
/// `bad_version`, `duplicate_id`, `unknown_plan`, `duplicate_key`, `duplicate_binding`,
/// `too_large`) and a message naming the place, e.g.
/// `consumers[3].credentials.api_keys[0].sha256: not 64 hex digits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The reason code (a metric label and a log field).
    pub code: &'static str,
    /// What is wrong and where.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

/// Counts of a compiled document, for logs, the status page and `gw-jwt policy check`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// The document's `version`.
    pub version: String,
    /// Number of consumers.
    pub consumers: usize,
    /// Number of API keys over all consumers.
    pub api_keys: usize,
    /// Number of plans.
    pub plans: usize,
    /// Number of access rules.
    pub rules: usize,
    /// Number of deny entries (consumers, API keys, `jti` and `sub` values; repeats count once).
    pub denied: usize,
}

/// Parses and validates `doc` and builds the image: a position-independent byte blob that the
/// glue copies into shared memory and every worker reads in place with [`View::new`].
///
/// # Errors
/// The first rule the document breaks, as a [`PolicyError`]; nothing is built then.
pub fn compile(doc: &[u8]) -> Result<(Vec<u8>, Summary), PolicyError> {
    let parsed = doc::parse_json(doc)?;
    let image = image::build(&parsed.model()?)?;
    let summary = View::new(&image)
        .map(|v| v.summary())
        .ok_or_else(|| PolicyError {
            code: "too_large",
            message: "document: the compiled image is not readable".into(),
        })?;
    Ok((image, summary))
}

/// SHA-256 of the raw key bytes (what `api_keys[].sha256` holds).
#[must_use]
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A digest as 64 lowercase hex digits.
#[must_use]
pub fn digest_hex(d: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// 64 hex digits (either case) as a digest; `None` for anything else.
#[must_use]
pub fn parse_digest(s: &[u8]) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Equality of two byte strings in time that depends only on their lengths.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

//! JWT (JWS compact serialization) verification: the nginx-independent half of `auth_jwt`.
//!
//! Nothing here knows about nginx. The glue calls, per request:
//!
//! 1. [`TokenCache::lookup`] with the key set's [`KeySet::id`] and the token bytes; on a miss
//! 2. [`decode_and_verify_signature`] (size check, strict parsing, key selection, the
//!    signature check in the library [`crypto::backend_for`] names), then
//!    [`TokenCache::insert_at`];
//! 3. always [`check_claims`] (time, issuer, audience, type, claim rules) with the current time.
//!
//! [`verify`] does 2 and 3 in one call.
//!
//! # Choices (documented for the README)
//!
//! * **Maximum token size**: [`DEFAULT_MAX_TOKEN_SIZE`] = 8192 bytes, checked before any
//!   decoding. nginx's default `large_client_header_buffers 4 8k` cannot carry a longer
//!   `Authorization` line anyway.
//! * **Algorithms**: names are matched exactly (case-sensitive) as RFC 7515 requires; `none`
//!   in any spelling is refused with `alg_not_allowed` and never exists as an [`Alg`].
//!   `Ed25519` (RFC 9864) is accepted as a synonym of `EdDSA`.
//! * **`crit`**: we implement no extension, so a header with `crit` in any form (even `[]`)
//!   is `malformed`.
//! * **`jwk`, `jku`, `x5u`, `x5c`** in a token header are ignored; keys only come from the
//!   configured [`KeySet`].
//! * **`kid`**: if the token has one, only configured keys with exactly that `kid` are
//!   tried (a key without `kid`, e.g. from a PEM file, never matches a token with a `kid`;
//!   see [`KeySet::set_default_kid`]). Without `kid`, the keys whose type and algorithms fit
//!   the token's `alg` are tried, at most [`MAX_SIGNATURE_CHECKS`] of them (also for a `kid`
//!   that several keys share); past that bound the token is `unknown_key`.
//! * **Remote key sets** ([`KeySet::load_remote`]) hold public keys only: a symmetric (`oct`)
//!   key in one is refused. Degenerate public keys (Ed25519 points of small order, EC points
//!   off the curve, RSA moduli under 2048 bits, bad exponents) are refused wherever they come
//!   from.
//! * **ECDSA signatures are malleable**: if (r, s) verifies, so does (r, n - s), a different
//!   token string for the same claims. Anything keyed by token bytes must tolerate that; a
//!   denylist or replay check must key by verified claims (`jti`), never by the token.
//! * **JSON**: header and payload must be UTF-8 JSON objects without duplicate member names
//!   at any depth, nested at most [`MAX_JSON_DEPTH`] levels.
//! * **Time claims** `exp`, `nbf`, `iat` must be JSON numbers in `0..=253402300799`
//!   (fractions are truncated); anything else is `malformed`. `iss` and `sub` must be strings,
//!   `aud` a string or an array of strings, `typ` (header) a string, else `malformed`.
//! * **Private JWKs** (members `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`) are refused at load:
//!   a verifier needs only public keys, and a private key in a verifier's config is a leak.
//! * **Claim paths** are dotted (`realm_access.roles`); a literal dot in a name is written
//!   `\.` and a literal backslash `\\` (`https://example\.com/roles`).
//! * **Missing claims**: every claim rule fails when its claim is absent, `ne` included
//!   (fail closed).

mod b64;
mod cache;
mod claims;
pub mod crypto;
mod der;
mod error;
pub(crate) mod json;
mod keys;
pub mod sign;
mod token;

#[cfg(test)]
mod tests;

pub use cache::{CacheInitError, CacheSlot, TokenCache};
pub use claims::{check_claims, var_string, verify, ClaimOp, ClaimRule, Policy};
pub use crypto::{backend_for, Backend};
pub use error::{JwtError, KeyError};
pub use json::MAX_JSON_DEPTH;
pub use keys::{Key, KeyKind, KeySet, Verifier, MAX_SIGNATURE_CHECKS};
pub use token::{decode_and_verify_signature, decode_trusted, Verified};

use std::fmt;

/// Whether the request path's JSON validation (no tree built) and the strict parser behind
/// [`Verified::payload`] give the same answer on `bytes`, with the same values for the claims
/// read directly. For the fuzz target `json_scan`; not part of the API.
#[doc(hidden)]
pub fn json_validators_agree(bytes: &[u8]) -> bool {
    json::validators_agree(bytes)
}

/// Default limit on the token length in bytes (see the module documentation).
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8192;

/// Largest accepted `exp`/`nbf`/`iat`: 9999-12-31T23:59:59Z.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// A JWS signature algorithm this crate verifies. There is deliberately no `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256 (raw R||S signature).
    ES256,
    /// ECDSA P-384 with SHA-384 (raw R||S signature).
    ES384,
    /// EdDSA (RFC 8037): Ed25519 or Ed448, as the key's `crv` says.
    EdDSA,
    /// ECDSA P-521 with SHA-512 (raw R||S signature, 66 bytes each).
    ES512,
}

impl Alg {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Alg; 13] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
        Alg::ES512,
    ];

    /// The JOSE name (`"RS256"`).
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::ES512 => "ES512",
        }
    }

    /// Parses a JOSE name exactly (case-sensitive). `none` and unknown names give `None`.
    /// `Ed25519` (RFC 9864) maps to [`Alg::EdDSA`].
    pub fn from_name(name: &str) -> Option<Alg> {
        if name == "Ed25519" {
            return Some(Alg::EdDSA);
        }
        Alg::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// True for the HMAC algorithms.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// Minimum HMAC secret length in bytes (the hash output size); 0 for other algorithms.
    pub fn min_secret_len(self) -> usize {
        match self {
            Alg::HS256 => 32,
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => 0,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Alg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Alg::from_name(s).ok_or_else(|| {
            if s.eq_ignore_ascii_case("none") {
                "algorithm \"none\" is never allowed".to_string()
            } else {
                format!("unknown algorithm \"{}\"", s.escape_debug())
            }
        })
    }
}

/// A set of [`Alg`] values (a bit set; `Copy`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AlgSet(u16);

impl AlgSet {
    /// The empty set.
    pub const EMPTY: AlgSet = AlgSet(0);
    /// Every algorithm.
    pub const ALL: AlgSet = AlgSet((1 << 13) - 1);
    /// HS256, HS384, HS512.
    pub const HMAC: AlgSet = AlgSet(0b111);
    /// RS* and PS*.
    pub const RSA: AlgSet = AlgSet(0b111_111 << 3);

    /// A set holding the given algorithms.
    pub fn of(algs: &[Alg]) -> AlgSet {
        algs.iter().fold(AlgSet::EMPTY, |s, a| s.with(*a))
    }
    /// A set holding only `alg`.
    pub fn single(alg: Alg) -> AlgSet {
        AlgSet(alg.bit())
    }
    /// This set plus `alg`.
    pub fn with(self, alg: Alg) -> AlgSet {
        AlgSet(self.0 | alg.bit())
    }
    /// Adds `alg`.
    pub fn insert(&mut self, alg: Alg) {
        self.0 |= alg.bit();
    }
    /// Whether `alg` is in the set.
    pub fn contains(self, alg: Alg) -> bool {
        self.0 & alg.bit() != 0
    }
    /// Union.
    pub fn union(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 | other.0)
    }
    /// Intersection.
    pub fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }
    /// True if no algorithm is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The members, in [`Alg::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Alg> {
        Alg::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl fmt::Display for AlgSet {
    /// Space-separated names, e.g. `RS256 ES256`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for a in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(a.name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for AlgSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlgSet({self})")
    }
}

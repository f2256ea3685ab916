//! Verification keys: JWKS / JWK / PEM loading, validation, and signature checks.
//!
//! Every check that can happen at load time does: key sizes, curve membership of EC points,
//! RSA exponent range, HMAC secret length, `use`/`key_ops`/`alg` binding. Each algorithm is
//! verified by the library [`crypto::backend_for`] names. For OpenSSL the key is parsed at
//! load into an `EVP_PKEY` with its contexts ([`crypto`]); for ring, HMAC keys are pre-built
//! `ring::hmac::Key`s and the others keep validated raw components (ring has no pre-parsed
//! public key type; it re-reads them in well under a microsecond).

use super::crypto::{self, Backend, OsslKey};
use super::der::{self, PublicKeyDer};
use super::error::{JwtError, KeyError};
use super::json;
use super::{b64, Alg, AlgSet};
use ring::{agreement, hmac, rand, signature};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[cfg(test)]
thread_local! {
    /// Signature checks run on this thread (tests prove that some tokens cost none).
    pub(crate) static SIGNATURE_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The type of a key, as in the JWK `kty` (and `crv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA public key (RS*, PS*).
    Rsa,
    /// EC P-256 public key (ES256).
    EcP256,
    /// EC P-384 public key (ES384).
    EcP384,
    /// EC P-521 public key (ES512).
    EcP521,
    /// Ed25519 public key (EdDSA).
    Ed25519,
    /// Ed448 public key (EdDSA, RFC 8037).
    Ed448,
    /// HMAC secret (HS*).
    Oct,
}

impl KeyKind {
    /// Algorithms this kind of key can ever verify.
    pub fn algs(self) -> AlgSet {
        match self {
            KeyKind::Rsa => AlgSet::RSA,
            KeyKind::EcP256 => AlgSet::single(Alg::ES256),
            KeyKind::EcP384 => AlgSet::single(Alg::ES384),
            KeyKind::EcP521 => AlgSet::single(Alg::ES512),
            KeyKind::Ed25519 | KeyKind::Ed448 => AlgSet::single(Alg::EdDSA),
            KeyKind::Oct => AlgSet::HMAC,
        }
    }

    fn label(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcP256 => "EC P-256",
            KeyKind::EcP384 => "EC P-384",
            KeyKind::EcP521 => "EC P-521",
            KeyKind::Ed25519 => "OKP Ed25519",
            KeyKind::Ed448 => "OKP Ed448",
            KeyKind::Oct => "oct",
        }
    }
}

#[derive(Clone)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        point: Vec<u8>,
    },
    Ed25519 {
        x: [u8; 32],
    },
    Ed448 {
        x: Vec<u8>,
    },
    /// One pre-built ring key per HS algorithm the secret may be used with
    /// (index 0 = HS256, 1 = HS384, 2 = HS512).
    Hmac {
        keys: Box<[Option<hmac::Key>; 3]>,
        len: usize,
    },
}

/// One verification key, bound to its type and the algorithms it may verify.
/// `Debug` never shows secret material.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    kind: KeyKind,
    algs: AlgSet,
    material: Material,
    /// The key in OpenSSL, when some algorithm of the key is verified there.
    ossl: Option<Arc<OsslKey>>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Key");
        d.field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algs", &self.algs);
        match &self.material {
            Material::Rsa { n, .. } => d.field("bits", &bit_len(n)),
            Material::Hmac { len, .. } => d.field("secret_len", len),
            _ => &mut d,
        };
        d.finish()
    }
}

fn bit_len(n: &[u8]) -> usize {
    match n.first() {
        Some(b) => (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

impl Key {
    /// The key id (`kid`), if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// The key type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }
    /// Algorithms this key accepts.
    pub fn algs(&self) -> AlgSet {
        self.algs
    }

    /// The public key as a JWK object (`kty`, `kid`, `alg` if narrowed to one, `use: sig`).
    /// `None` for HMAC secrets, which are never exported.
    pub fn to_public_jwk(&self) -> Option<Map<String, Value>> {
        let mut m = Map::new();
        match &self.material {
            Material::Rsa { n, e } => {
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), b64::encode(n).into());
                m.insert("e".into(), b64::encode(e).into());
            }
            Material::Ec { point } => {
                let (crv, len) = match self.kind {
                    KeyKind::EcP384 => ("P-384", 48),
                    KeyKind::EcP521 => ("P-521", 66),
                    _ => ("P-256", 32),
                };
                let coords = point.get(1..)?;
                let (x, y) = coords.split_at(len.min(coords.len()));
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), crv.into());
                m.insert("x".into(), b64::encode(x).into());
                m.insert("y".into(), b64::encode(y).into());
            }
            Material::Ed25519 { x } => {
                m.insert("kty".into(), "OKP".into());
                m.insert("crv".into(), "Ed25519".into());
                m.insert("x".into(), b64::encode(x).into());
            }
            Material::Ed448 { x } => {
                m.insert("kty".into(), "OKP".into());
                m.insert("crv".into(), "Ed448".into());
                m.insert("x".into(), b64::encode(x).into());
            }
            Material::Hmac { .. } => return None,
        }
        if let Some(kid) = &self.kid {
            m.insert("kid".into(), kid.clone().into());
        }
        let mut algs = self.algs.iter();
        if let (Some(a), None) = (algs.next(), algs.next()) {
            m.insert("alg".into(), a.name().into());
        }
        m.insert("use".into(), "sig".into());
        Some(m)
    }

    /// Verifies `sig` over `msg` with `alg`, in the library [`crypto::backend_for`] chooses.
    /// The caller has checked `self.algs.contains(alg)`.
    fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        #[cfg(test)]
        SIGNATURE_CHECKS.with(|n| n.set(n.get() + 1));
        match crypto::backend_for(alg, self.kind) {
            Backend::Ring => self.verify_ring(alg, msg, sig),
            Backend::OpenSsl => self.ossl.as_ref().is_some_and(|k| k.verify(alg, msg, sig)),
        }
    }

    /// A verifier of this key in `backend`, whatever [`crypto::backend_for`] says (for the
    /// cross-check of the two libraries and `gw-jwt bench`); `None` when `backend` cannot
    /// verify this kind of key. The OpenSSL key is built anew (the per-request path reuses
    /// the one built at load).
    pub fn verifier(&self, backend: Backend) -> Option<Verifier<'_>> {
        let supported = self.algs.iter().any(|a| backend.supports(a, self.kind));
        if !supported {
            return None;
        }
        let ossl = match backend {
            Backend::Ring => None,
            Backend::OpenSsl => Some(Arc::new(self.material.openssl(self.kind).ok()?)),
        };
        Some(Verifier { key: self, ossl })
    }

    fn verify_ring(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Hmac { keys, .. } => {
                let idx = match alg {
                    Alg::HS256 => 0,
                    Alg::HS384 => 1,
                    Alg::HS512 => 2,
                    _ => return false,
                };
                match &keys[idx] {
                    // ring::hmac::verify compares in constant time.
                    Some(k) => hmac::verify(k, msg, sig).is_ok(),
                    None => false,
                }
            }
            Material::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            Material::Ec { point } => {
                let a: &'static dyn signature::VerificationAlgorithm = match (alg, self.kind) {
                    (Alg::ES256, KeyKind::EcP256) => &signature::ECDSA_P256_SHA256_FIXED,
                    (Alg::ES384, KeyKind::EcP384) => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                signature::UnparsedPublicKey::new(a, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            Material::Ed25519 { x } => {
                alg == Alg::EdDSA
                    && signature::UnparsedPublicKey::new(&signature::ED25519, x)
                        .verify(msg, sig)
                        .is_ok()
            }
            Material::Ed448 { .. } => false,
        }
    }

    /// A key of `kind` with its algorithms; its OpenSSL object built now when some of its
    /// algorithms are verified by OpenSSL.
    fn build(kind: KeyKind, material: Material, kid: Option<String>) -> Result<Key, KeyError> {
        let algs = kind.algs();
        let ossl = if algs
            .iter()
            .any(|a| crypto::backend_for(a, kind) == Backend::OpenSsl)
        {
            Some(Arc::new(material.openssl(kind).map_err(KeyError::new)?))
        } else {
            None
        };
        Ok(Key {
            kid,
            kind,
            algs,
            material,
            ossl,
        })
    }

    fn rsa(n: &[u8], e: &[u8], kid: Option<String>) -> Result<Key, KeyError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_len(n);
        if bits < 2048 {
            return Err(KeyError::new(format!(
                "RSA key is {bits} bits, at least 2048 required"
            )));
        }
        if bits > 8192 {
            return Err(KeyError::new(format!(
                "RSA key is {bits} bits, at most 8192 supported"
            )));
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err(KeyError::new("RSA modulus is even"));
        }
        let e_bits = bit_len(e);
        if !(2..=33).contains(&e_bits) || e.last().is_some_and(|b| b & 1 == 0) {
            return Err(KeyError::new(
                "RSA public exponent must be odd and between 3 and 2^33-1",
            ));
        }
        let material = Material::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        };
        Key::build(KeyKind::Rsa, material, kid)
    }

    fn ec(kind: KeyKind, point: &[u8], kid: Option<String>) -> Result<Key, KeyError> {
        // ring validates a peer point fully (on the curve, not the identity) when it is used
        // for ECDH; do that once here so a bad key fails at load, not per request. P-521
        // (OpenSSL only) is checked by OpenSSL (EC_KEY_check_key) when its key is built.
        let (ecdh, len) = match kind {
            KeyKind::EcP256 => (Some(&agreement::ECDH_P256), 65),
            KeyKind::EcP384 => (Some(&agreement::ECDH_P384), 97),
            _ => (None, 133),
        };
        if point.len() != len || point.first() != Some(&0x04) {
            return Err(KeyError::new("bad EC public key encoding"));
        }
        if let Some(ecdh) = ecdh {
            let rng = rand::SystemRandom::new();
            let eph = agreement::EphemeralPrivateKey::generate(ecdh, &rng)
                .map_err(|_| KeyError::new("system random generator failed"))?;
            agreement::agree_ephemeral(
                eph,
                &agreement::UnparsedPublicKey::new(ecdh, point),
                |_| (),
            )
            .map_err(|_| KeyError::new("EC public key is not a valid point on its curve"))?;
        }
        let material = Material::Ec {
            point: point.to_vec(),
        };
        Key::build(kind, material, kid)
    }

    fn ed25519(x: &[u8], kid: Option<String>) -> Result<Key, KeyError> {
        let x: [u8; 32] = x
            .try_into()
            .map_err(|_| KeyError::new("Ed25519 public key must be 32 bytes"))?;
        check_ed25519_point(&x)?;
        Key::build(KeyKind::Ed25519, Material::Ed25519 { x }, kid)
    }

    fn ed448(x: &[u8], kid: Option<String>) -> Result<Key, KeyError> {
        if x.len() != 57 {
            return Err(KeyError::new("Ed448 public key must be 57 bytes"));
        }
        check_ed448_point(x)?;
        Key::build(KeyKind::Ed448, Material::Ed448 { x: x.to_vec() }, kid)
    }

    /// An HMAC key usable with `algs` (already narrowed by the JWK `alg`, if any).
    fn hmac(secret: &[u8], alg: Option<Alg>, kid: Option<String>) -> Result<Key, KeyError> {
        let len = secret.len();
        let wanted: &[Alg] = match alg {
            Some(a) => {
                if len < a.min_secret_len() {
                    return Err(KeyError::new(format!(
                        "{a} secret is {len} bytes, at least {} required",
                        a.min_secret_len()
                    )));
                }
                &[a]
            }
            None => {
                if len < 32 {
                    return Err(KeyError::new(format!(
                        "HMAC secret is {len} bytes, at least 32 required"
                    )));
                }
                &[Alg::HS256, Alg::HS384, Alg::HS512]
            }
        };
        let mut keys: [Option<hmac::Key>; 3] = [None, None, None];
        let mut algs = AlgSet::EMPTY;
        for &a in wanted {
            if len < a.min_secret_len() {
                continue;
            }
            let (idx, ra) = match a {
                Alg::HS256 => (0, hmac::HMAC_SHA256),
                Alg::HS384 => (1, hmac::HMAC_SHA384),
                _ => (2, hmac::HMAC_SHA512),
            };
            keys[idx] = Some(hmac::Key::new(ra, secret));
            algs.insert(a);
        }
        Ok(Key {
            kid,
            kind: KeyKind::Oct,
            algs,
            material: Material::Hmac {
                keys: Box::new(keys),
                len,
            },
            ossl: None,
        })
    }

    fn from_der(k: PublicKeyDer<'_>) -> Result<Key, KeyError> {
        match k {
            PublicKeyDer::Rsa { n, e } => Key::rsa(n, e, None),
            PublicKeyDer::P256(p) => Key::ec(KeyKind::EcP256, p, None),
            PublicKeyDer::P384(p) => Key::ec(KeyKind::EcP384, p, None),
            PublicKeyDer::P521(p) => Key::ec(KeyKind::EcP521, p, None),
            PublicKeyDer::Ed25519(x) => Key::ed25519(x, None),
            PublicKeyDer::Ed448(x) => Key::ed448(x, None),
        }
    }
}

/// Every encoding of a point of small order (1, 2, 4 or 8) on edwards25519: the 8 points of
/// the torsion subgroup in their canonical encodings, then the 6 non-canonical encodings of
/// some of them (y + p for y = 0 and 1, and x = 0 with the sign bit set). Little-endian y with
/// the sign of x in the top bit (RFC 8032 section 5.1.2). A public key that is one of these
/// verifies forged signatures: with A of small order, [S]B = R + [k]A holds for S = 0 and R =
/// -[k]A, which an attacker hits for 1 message in 8 (for the identity, every message, with R =
/// identity). ring's Ed25519 verifier checks neither, so keys are checked here, at load.
///
/// Sources: the small-order list of libsodium (`ge25519_has_small_order`,
/// crypto_core/ed25519/ref10/ed25519_ref10.c) and "Taming the many EdDSAs" (Chalkias, Garillot,
/// Nikolaenko, 2020); re-derived by computing the torsion subgroup (all points T with
/// [8]T = identity) and checked by `tests::ed25519_small_order_keys_forge_and_are_refused`,
/// which forges a signature ring accepts for each canonical entry.
const ED25519_SMALL_ORDER: [[u8; 32]; 14] = {
    const fn y(lo: u8, mid: u8, hi: u8) -> [u8; 32] {
        let mut b = [mid; 32];
        b[0] = lo;
        b[31] = hi;
        b
    }
    const ORDER8_A: [u8; 32] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ];
    const ORDER8_B: [u8; 32] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    const fn signed(mut b: [u8; 32]) -> [u8; 32] {
        b[31] |= 0x80;
        b
    }
    [
        // Canonical: the identity (0, 1), order 1.
        y(0x01, 0x00, 0x00),
        // (0, -1), order 2: y = p - 1.
        y(0xec, 0xff, 0x7f),
        // (sqrt(-1), 0) and (-sqrt(-1), 0), order 4: y = 0, both signs of x.
        y(0x00, 0x00, 0x00),
        y(0x00, 0x00, 0x80),
        // The four points of order 8: two y values, both signs of x.
        ORDER8_A,
        signed(ORDER8_A),
        ORDER8_B,
        signed(ORDER8_B),
        // Non-canonical: x = 0 with the sign bit set, for y = 1 and y = -1.
        y(0x01, 0x00, 0x80),
        y(0xec, 0xff, 0xff),
        // Non-canonical: y = p (means 0) and y = p + 1 (means 1), both sign bits.
        y(0xed, 0xff, 0x7f),
        y(0xed, 0xff, 0xff),
        y(0xee, 0xff, 0x7f),
        y(0xee, 0xff, 0xff),
    ]
};

/// Refuses an Ed25519 public key of small order (see [`ED25519_SMALL_ORDER`]) and any
/// non-canonical encoding (y >= p = 2^255 - 19, which RFC 8032 section 5.1.3 says to reject).
fn check_ed25519_point(x: &[u8; 32]) -> Result<(), KeyError> {
    if ED25519_SMALL_ORDER.contains(x) {
        return Err(KeyError::new(
            "Ed25519 public key is a point of small order (it would verify forged signatures)",
        ));
    }
    // y >= p: the 31 low bytes are all 0xff from byte 1 on, byte 0 >= 0xed, and the high byte
    // without the sign bit is 0x7f.
    if x[31] & 0x7f == 0x7f && x[1..31].iter().all(|b| *b == 0xff) && x[0] >= 0xed {
        return Err(KeyError::new(
            "Ed25519 public key is not canonically encoded (y >= 2^255-19)",
        ));
    }
    Ok(())
}

/// A key prepared in one library: [`Key::verifier`].
#[derive(Debug)]
pub struct Verifier<'k> {
    key: &'k Key,
    ossl: Option<Arc<OsslKey>>,
}

impl Verifier<'_> {
    /// Whether `sig` is a valid signature of `msg` with `alg` (false when the key does not
    /// allow `alg`).
    pub fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        if !self.key.algs.contains(alg) {
            return false;
        }
        match &self.ossl {
            Some(k) => k.verify(alg, msg, sig),
            None => self.key.verify_ring(alg, msg, sig),
        }
    }
}

impl Material {
    /// This key in OpenSSL, prepared for every algorithm its kind allows.
    fn openssl(&self, kind: KeyKind) -> Result<OsslKey, String> {
        match self {
            Material::Rsa { n, e } => OsslKey::rsa(n, e, kind.algs().iter()),
            Material::Ec { point } => OsslKey::ec(kind, point, kind.algs().iter()),
            Material::Ed25519 { x } => OsslKey::ed25519(x),
            Material::Ed448 { x } => OsslKey::ed448(x),
            Material::Hmac { .. } => Err("HMAC keys are verified by ring".into()),
        }
    }
}

/// Refuses an Ed448 public key that is not a canonical encoding of a point on the curve, or
/// is a point of small order (the identity (0, 1), (0, -1) of order 2, (+-1, 0) of order 4:
/// y in {1, p - 1, 0}), which would verify forged signatures as in [`ED25519_SMALL_ORDER`].
/// RFC 8032 5.2.3: 56 bytes of little-endian y < p = 2^448 - 2^224 - 1, then one byte whose
/// top bit is the sign of x and whose other bits are zero.
fn check_ed448_point(x: &[u8]) -> Result<(), KeyError> {
    let not_canonical = || KeyError::new("Ed448 public key is not canonically encoded");
    let (y, last) = x.split_at(56);
    if last[0] & 0x7f != 0 {
        return Err(not_canonical());
    }
    // p in little-endian: 28 bytes 0xff, 0xfe, 27 bytes 0xff.
    let p_byte = |i: usize| if i == 28 { 0xfe } else { 0xff };
    let mut p_minus_1 = [0u8; 56];
    for (i, b) in p_minus_1.iter_mut().enumerate() {
        *b = p_byte(i);
    }
    p_minus_1[0] = 0xfe;
    // y >= p: compare from the most significant byte.
    let ge_p = (0..56)
        .rev()
        .find(|&i| y[i] != p_byte(i))
        .map_or(true, |i| y[i] > p_byte(i));
    if ge_p {
        return Err(not_canonical());
    }
    let mut one = [0u8; 56];
    one[0] = 1;
    if y == [0u8; 56] || y == one || y == p_minus_1 {
        return Err(KeyError::new(
            "Ed448 public key is a point of small order (it would verify forged signatures)",
        ));
    }
    if !crypto::ed448_y_on_curve(y) {
        return Err(KeyError::new(
            "Ed448 public key is not a point on the curve",
        ));
    }
    Ok(())
}

/// The most signature checks one token may cost: a token without `kid` (or with a `kid` that
/// several keys share) is tried against at most this many keys that fit its `alg`, in the
/// set's order (key files first, then the fetched set); past them it is refused as
/// `unknown_key`. One `{"alg":"ES256"}` token against a set of thousands of P-256 keys would
/// otherwise cost a worker a signature check per key.
pub const MAX_SIGNATURE_CHECKS: usize = 8;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A set of verification keys, loaded once at configuration time.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: Vec<Key>,
    id: u64,
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet::new()
    }
}

impl KeySet {
    /// An empty key set (verifies nothing).
    pub fn new() -> KeySet {
        KeySet {
            keys: Vec::new(),
            id: fresh_id(),
        }
    }

    /// Loads keys from a file's contents, auto-detecting a JWKS (`{"keys":[...]}`), a single
    /// JWK, or one or more PEM public keys (`BEGIN PUBLIC KEY`, `BEGIN RSA PUBLIC KEY`).
    ///
    /// JWKs with `use` other than `sig`, or `key_ops` without `verify`, are skipped. Anything
    /// else unusable (bad JSON, unknown `kty`/`crv`/`alg`, bad base64url, weak keys, private
    /// keys) is an error, as is a file with no usable signing key.
    pub fn load(bytes: &[u8]) -> Result<KeySet, KeyError> {
        KeySet::from_keys(load_keys(bytes, None)?)
    }

    /// Loads a key set someone else publishes (`auth_jwt_key_request`, OIDC discovery): as
    /// [`KeySet::load`], but
    ///
    /// * a symmetric key (`kty: oct`) is refused: a published set is readable by anyone who
    ///   can reach it, and an HMAC secret in it would let every reader sign tokens;
    /// * a key that cannot be used (symmetric, weak, degenerate, unknown `kty`/`crv`/`alg`,
    ///   private, bad base64url...) is skipped instead of failing the whole set, so one exotic
    ///   key published by the identity provider does not take the others down.
    ///
    /// Returns the set (an error when the text is not JSON/PEM at all, or no usable key is
    /// left) and, in either case, why each skipped key was skipped.
    pub fn load_remote(bytes: &[u8]) -> (Result<KeySet, KeyError>, Vec<KeyError>) {
        let mut skipped = Vec::new();
        let set = load_keys(bytes, Some(&mut skipped)).and_then(KeySet::from_keys);
        (set, skipped)
    }

    pub(crate) fn from_keys(keys: Vec<Key>) -> Result<KeySet, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::new("no usable signing key"));
        }
        Ok(KeySet {
            keys,
            id: fresh_id(),
        })
    }

    /// Adds the keys of `other` (e.g. several `auth_jwt_key_file` directives). The set gets a
    /// new [`KeySet::id`].
    pub fn extend(&mut self, other: KeySet) {
        self.keys.extend(other.keys);
        self.id = fresh_id();
    }

    /// Gives `kid` to every key that has none (e.g. keys from a PEM file), so that tokens
    /// carrying that `kid` select them. The set gets a new [`KeySet::id`].
    pub fn set_default_kid(&mut self, kid: &str) {
        for k in &mut self.keys {
            if k.kid.is_none() {
                k.kid = Some(kid.to_owned());
            }
        }
        self.id = fresh_id();
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Every algorithm some key supports (the default allow-list).
    pub fn algs(&self) -> AlgSet {
        self.keys.iter().fold(AlgSet::EMPTY, |s, k| s.union(k.algs))
    }

    /// An identity unique within the process for this set's contents (changes on `extend`);
    /// part of the token cache key.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Selects keys and verifies the signature; see the module documentation for the rules.
    pub(crate) fn verify_signature(
        &self,
        alg: Alg,
        kid: Option<&str>,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), JwtError> {
        let mut tried = 0;
        let mut kid_seen = false;
        for key in &self.keys {
            if let Some(kid) = kid {
                if key.kid.as_deref() != Some(kid) {
                    continue;
                }
                kid_seen = true;
            }
            if !key.algs.contains(alg) {
                continue;
            }
            if tried == MAX_SIGNATURE_CHECKS {
                return Err(JwtError::UnknownKey(
                    "more keys fit the token's alg and kid than are tried, and none of those \
                     tried verified it",
                ));
            }
            tried += 1;
            if key.verify(alg, msg, sig) {
                return Ok(());
            }
        }
        if tried > 0 {
            Err(JwtError::BadSignature)
        } else if kid_seen {
            Err(JwtError::AlgNotAllowed(
                "the key named by kid does not support the token's alg".into(),
            ))
        } else if kid.is_some() {
            Err(JwtError::UnknownKey("no key with the token's kid"))
        } else {
            Err(JwtError::UnknownKey("no key for the token's alg"))
        }
    }
}

/// Error sink: `None` = strict (first per-key error fails the load), `Some` = collect & skip.
/// Only remote sets are loaded leniently, so `Some` also means "public keys only".
type Skipped<'a> = Option<&'a mut Vec<KeyError>>;

fn keep(
    result: Result<Key, KeyError>,
    out: &mut Vec<Key>,
    skipped: &mut Skipped<'_>,
) -> Result<(), KeyError> {
    match (result, skipped) {
        (Ok(k), _) => out.push(k),
        (Err(e), Some(list)) => list.push(e),
        (Err(e), None) => return Err(e),
    }
    Ok(())
}

fn load_keys(bytes: &[u8], skipped: Skipped<'_>) -> Result<Vec<Key>, KeyError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let body = &bytes[start..];
    if body.starts_with(b"-----BEGIN") {
        load_pem(body, skipped)
    } else if body.starts_with(b"{") {
        load_json(body, skipped)
    } else if body.is_empty() {
        Err(KeyError::new("key file is empty"))
    } else {
        Err(KeyError::new(
            "unrecognised key file format: expected JWKS or JWK JSON, or PEM public keys",
        ))
    }
}

fn load_pem(body: &[u8], mut skipped: Skipped<'_>) -> Result<Vec<Key>, KeyError> {
    let blocks =
        pem::parse_many(body).map_err(|_| KeyError::new("invalid PEM armour or base64"))?;
    if blocks.is_empty() {
        return Err(KeyError::new("no valid PEM block found"));
    }
    let mut keys = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let ctx = || format!("PEM block #{} ({})", i + 1, block.tag());
        let parsed = match block.tag() {
            "PUBLIC KEY" => der::parse_spki(block.contents()),
            "RSA PUBLIC KEY" => der::parse_pkcs1(block.contents()),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY"
            | "OPENSSH PRIVATE KEY" => {
                Err("a private key was given; configure the public key (openssl pkey -pubout)")
            }
            "CERTIFICATE" => Err(
                "certificates are not supported; extract the public key (openssl x509 -pubkey -noout)",
            ),
            _ => Err("unsupported PEM type"),
        };
        let key = parsed
            .map_err(KeyError::new)
            .and_then(Key::from_der)
            .map_err(|e| e.context(ctx()));
        keep(key, &mut keys, &mut skipped)?;
    }
    Ok(keys)
}

fn load_json(body: &[u8], mut skipped: Skipped<'_>) -> Result<Vec<Key>, KeyError> {
    let obj = json::parse_object(body).map_err(|e| KeyError::new(e.to_string()))?;
    if let Some(keys) = obj.get("keys") {
        let Value::Array(list) = keys else {
            return Err(KeyError::new("JWKS \"keys\" is not an array"));
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let ctx = || match v.get("kid").and_then(Value::as_str) {
                Some(kid) => format!("key #{} (kid \"{}\")", i + 1, printable(kid)),
                None => format!("key #{}", i + 1),
            };
            let key = match v {
                Value::Object(jwk) => parse_jwk(jwk, skipped.is_some()),
                _ => Err(KeyError::new("not a JSON object")),
            };
            match key {
                Ok(None) => {}
                Ok(Some(k)) => out.push(k),
                Err(e) => keep(Err(e.context(ctx())), &mut out, &mut skipped)?,
            }
        }
        Ok(out)
    } else if obj.contains_key("kty") {
        let mut out = Vec::new();
        if let Some(k) = parse_jwk(&obj, skipped.is_some()).transpose() {
            keep(k, &mut out, &mut skipped)?;
        }
        Ok(out)
    } else {
        Err(KeyError::new(
            "JSON key file is neither a JWKS (\"keys\") nor a JWK (\"kty\")",
        ))
    }
}

/// A short, log-safe rendering of an untrusted string (kid from a remote JWKS).
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

fn opt_str<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, KeyError> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyError::new(format!("JWK \"{name}\" is not a string"))),
    }
}

fn req_b64(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    let s =
        opt_str(jwk, name)?.ok_or_else(|| KeyError::new(format!("JWK \"{name}\" is missing")))?;
    b64::decode(s.as_bytes())
        .ok_or_else(|| KeyError::new(format!("JWK \"{name}\" is not valid base64url")))
}

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Parses one JWK. `Ok(None)` means "not a signature-verification key: skip". A `remote`
/// JWK (from a published set) must not be a symmetric key.
fn parse_jwk(jwk: &Map<String, Value>, remote: bool) -> Result<Option<Key>, KeyError> {
    let kty = opt_str(jwk, "kty")?.ok_or_else(|| KeyError::new("JWK \"kty\" is missing"))?;
    if let Some(u) = opt_str(jwk, "use")? {
        if u != "sig" {
            return Ok(None);
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let Value::Array(ops) = ops else {
            return Err(KeyError::new("JWK \"key_ops\" is not an array"));
        };
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    if remote && kty == "oct" {
        return Err(KeyError::symmetric());
    }
    let kid = opt_str(jwk, "kid")?.map(str::to_owned);
    let alg = match opt_str(jwk, "alg")? {
        None => None,
        Some(name) => Some(Alg::from_name(name).ok_or_else(|| {
            KeyError::new(format!(
                "JWK \"alg\" \"{}\" is not a supported signature algorithm",
                printable(name)
            ))
        })?),
    };
    if kty != "oct" && PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(KeyError::new(
            "JWK contains private key material; configure the public key only",
        ));
    }
    let key = match kty {
        "RSA" => Key::rsa(&req_b64(jwk, "n")?, &req_b64(jwk, "e")?, kid)?,
        "EC" => {
            let (kind, len) = match opt_str(jwk, "crv")? {
                Some("P-256") => (KeyKind::EcP256, 32),
                Some("P-384") => (KeyKind::EcP384, 48),
                Some("P-521") => (KeyKind::EcP521, 66),
                Some(c) => {
                    return Err(KeyError::new(format!(
                        "EC curve \"{}\" is not supported (use P-256, P-384 or P-521)",
                        printable(c)
                    )))
                }
                None => return Err(KeyError::new("JWK \"crv\" is missing")),
            };
            let x = req_b64(jwk, "x")?;
            let y = req_b64(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err(KeyError::new(format!(
                    "EC coordinates must be {len} bytes each"
                )));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key::ec(kind, &point, kid)?
        }
        "OKP" => match opt_str(jwk, "crv")? {
            Some("Ed25519") => Key::ed25519(&req_b64(jwk, "x")?, kid)?,
            Some("Ed448") => Key::ed448(&req_b64(jwk, "x")?, kid)?,
            Some(c) => {
                return Err(KeyError::new(format!(
                    "OKP curve \"{}\" is not supported (use Ed25519 or Ed448)",
                    printable(c)
                )))
            }
            None => return Err(KeyError::new("JWK \"crv\" is missing")),
        },
        "oct" => {
            if let Some(a) = alg {
                if !a.is_hmac() {
                    return Err(KeyError::new(format!("JWK alg {a} does not fit kty oct")));
                }
            }
            Key::hmac(&req_b64(jwk, "k")?, alg, kid)?
        }
        other => {
            return Err(KeyError::new(format!(
                "JWK kty \"{}\" is not supported",
                printable(other)
            )))
        }
    };
    narrow(key, alg).map(Some)
}

fn narrow(mut key: Key, alg: Option<Alg>) -> Result<Key, KeyError> {
    if let Some(a) = alg {
        if !key.algs.contains(a) {
            return Err(KeyError::new(format!(
                "JWK alg {a} does not fit a {} key",
                key.kind.label()
            )));
        }
        key.algs = AlgSet::single(a);
    }
    Ok(key)
}

//! Which library verifies each signature algorithm ([`backend_for`], the one place that
//! decides), and the OpenSSL half of verification.
//!
//! Two implementations are linked:
//!
//! * **ring** (`ring` crate): HMAC, ECDSA P-256/P-384, Ed25519, RSA.
//! * **OpenSSL libcrypto**, the system's `libcrypto.so.3` that nginx itself links (through the
//!   `openssl` / `openssl-sys` crates; no second copy is loaded): RSA, ECDSA P-256/P-384/P-521,
//!   Ed448 (and Ed25519).
//!
//! The choice per algorithm is made by measurement (`gw-jwt bench` prints the raw verify time
//! of each library; README "Cryptography" has the table) and kept in [`backend_for`].
//!
//! An OpenSSL key is parsed once, at load, into an `EVP_PKEY` (RSA keys keep their Montgomery
//! context inside it), and for each algorithm the key may verify a digest context and a
//! signature context are set up once, with digests fetched once (`EVP_MD_fetch`): a request
//! only runs digest init/update/final and `EVP_PKEY_verify` on them, with no algorithm fetch
//! and no key setup. The contexts sit behind a mutex (a key set may be built on one thread and
//! used on another); nginx workers are single-threaded so it is never contended there, and a
//! contended call builds throw-away contexts rather than wait. The libcrypto error queue is
//! cleared after every OpenSSL call sequence, so nothing leaks into nginx's SSL error reports.

use super::keys::KeyKind;
use super::Alg;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::error::ErrorStack;
use openssl::md::Md;
use openssl::md_ctx::MdCtx;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::RsaPssSaltlen;
use std::sync::Mutex;

/// A library that verifies signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The `ring` crate.
    Ring,
    /// The system's OpenSSL libcrypto (the one nginx links).
    OpenSsl,
}

impl Backend {
    /// Both backends.
    pub const ALL: [Backend; 2] = [Backend::Ring, Backend::OpenSsl];

    /// `ring` or `openssl`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::OpenSsl => "openssl",
        }
    }

    /// Whether this library can verify `alg` with a key of `kind` at all.
    pub fn supports(self, alg: Alg, kind: KeyKind) -> bool {
        if !kind.algs().contains(alg) {
            return false;
        }
        match self {
            Backend::Ring => !matches!(kind, KeyKind::EcP521 | KeyKind::Ed448),
            // HMAC stays in ring: 0.5 us, nothing to gain, and the secret stays in Rust memory.
            Backend::OpenSsl => kind != KeyKind::Oct,
        }
    }
}

/// The library that verifies `alg` with a key of `kind`: the single place of this choice.
///
/// | algorithm | key | library | why (`gw-jwt bench` on a quiet machine, medians of 3 runs; README "Cryptography") |
/// |---|---|---|---|
/// | HS256/384/512 | oct | ring | 0.5 us (HS256); OpenSSL would add FFI and context setup |
/// | RS*, PS* | RSA | OpenSSL | RSA-2048 RS256: 19.7 us against ring's 24.7; RSA-3072: 40.3 against 51.2 |
/// | ES256 | P-256 | ring | 62.3 us against OpenSSL's 70.8 |
/// | ES384 | P-384 | ring | 604 against 570 us: the same within the noise (earlier runs had ring ahead) |
/// | ES512 | P-521 | OpenSSL | only OpenSSL has it (0.46 ms) |
/// | EdDSA | Ed25519 | ring | 44.2 us against OpenSSL's 99.1 |
/// | EdDSA | Ed448 | OpenSSL | only OpenSSL has it (0.17 ms) |
pub fn backend_for(alg: Alg, kind: KeyKind) -> Backend {
    match (alg, kind) {
        (_, KeyKind::Oct) => Backend::Ring,
        (_, KeyKind::Rsa) => Backend::OpenSsl,
        (_, KeyKind::EcP256) => Backend::Ring,
        (_, KeyKind::EcP384) => Backend::Ring,
        (_, KeyKind::EcP521) => Backend::OpenSsl,
        (_, KeyKind::Ed25519) => Backend::Ring,
        (_, KeyKind::Ed448) => Backend::OpenSsl,
    }
}

/// Clears libcrypto's per-thread error queue (nginx reads it after its own SSL calls).
pub(crate) fn clear_errors() {
    // SAFETY: ERR_clear_error only empties the calling thread's error queue; always valid.
    unsafe { openssl_sys::ERR_clear_error() }
}

/// The OpenSSL digest name, and whether the algorithm is RSA-PSS.
fn digest_of(alg: Alg) -> Option<(&'static str, Option<Padding>)> {
    Some(match alg {
        Alg::RS256 => ("SHA2-256", Some(Padding::PKCS1)),
        Alg::RS384 => ("SHA2-384", Some(Padding::PKCS1)),
        Alg::RS512 => ("SHA2-512", Some(Padding::PKCS1)),
        Alg::PS256 => ("SHA2-256", Some(Padding::PKCS1_PSS)),
        Alg::PS384 => ("SHA2-384", Some(Padding::PKCS1_PSS)),
        Alg::PS512 => ("SHA2-512", Some(Padding::PKCS1_PSS)),
        Alg::ES256 => ("SHA2-256", None),
        Alg::ES384 => ("SHA2-384", None),
        Alg::ES512 => ("SHA2-512", None),
        _ => return None,
    })
}

/// Digest and signature contexts for one algorithm of one key, reused request after request.
struct Contexts {
    md: MdCtx,
    pkey: PkeyCtx<Public>,
}

struct Slot {
    alg: Alg,
    md: Md,
    padding: Option<Padding>,
    ctx: Mutex<Contexts>,
}

/// A public key loaded into OpenSSL, ready to verify the algorithms it was built for.
pub(crate) struct OsslKey {
    pkey: PKey<Public>,
    kind: KeyKind,
    /// Signature length in bytes: RSA modulus length, 2 x the EC field size, Ed448 114.
    sig_len: usize,
    /// EC field size in bytes (0 for the others).
    field_len: usize,
    slots: Vec<Slot>,
}

impl std::fmt::Debug for OsslKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsslKey").field("kind", &self.kind).finish()
    }
}

fn contexts(
    pkey: &PKey<Public>,
    md: &Md,
    padding: Option<Padding>,
) -> Result<Contexts, ErrorStack> {
    let mut p = PkeyCtx::new(pkey)?;
    p.verify_init()?;
    if let Some(pad) = padding {
        p.set_rsa_padding(pad)?;
        if pad == Padding::PKCS1_PSS {
            // RFC 7518 3.5: the salt is as long as the hash (ring checks the same);
            // MGF1 uses the signature hash by default.
            p.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
        }
    }
    p.set_signature_md(md)?;
    Ok(Contexts {
        md: MdCtx::new()?,
        pkey: p,
    })
}

impl OsslKey {
    /// An RSA key from its modulus and exponent (already validated by the caller).
    pub(crate) fn rsa(
        n: &[u8],
        e: &[u8],
        algs: impl Iterator<Item = Alg>,
    ) -> Result<OsslKey, String> {
        let built = (|| {
            let rsa = Rsa::from_public_components(BigNum::from_slice(n)?, BigNum::from_slice(e)?)?;
            PKey::from_rsa(rsa)
        })();
        OsslKey::finish(built, KeyKind::Rsa, n.len(), 0, algs)
    }

    /// An EC key from its uncompressed point; refuses a point that is not on the curve or not
    /// in the prime-order group.
    pub(crate) fn ec(
        kind: KeyKind,
        point: &[u8],
        algs: impl Iterator<Item = Alg>,
    ) -> Result<OsslKey, String> {
        let (nid, len) = match kind {
            KeyKind::EcP256 => (Nid::X9_62_PRIME256V1, 32),
            KeyKind::EcP384 => (Nid::SECP384R1, 48),
            KeyKind::EcP521 => (Nid::SECP521R1, 66),
            _ => return Err("not an EC key".into()),
        };
        // Decoding checks that the point is on the curve, check_key that it is not the point
        // at infinity and lies in the group of prime order.
        let key = (|| -> Result<EcKey<Public>, ErrorStack> {
            let group = EcGroup::from_curve_name(nid)?;
            let mut bn = BigNumContext::new()?;
            let p = EcPoint::from_bytes(&group, point, &mut bn)?;
            let key = EcKey::from_public_key(&group, &p)?;
            key.check_key()?;
            Ok(key)
        })();
        let key = match key {
            Ok(k) => k,
            Err(_) => {
                clear_errors();
                return Err("EC public key is not a valid point on its curve".into());
            }
        };
        OsslKey::finish(PKey::from_ec_key(key), kind, 2 * len, len, algs)
    }

    /// An Ed448 key from its 57-byte encoding (RFC 8032).
    pub(crate) fn ed448(x: &[u8]) -> Result<OsslKey, String> {
        let built = PKey::public_key_from_raw_bytes(x, Id::ED448);
        OsslKey::finish(built, KeyKind::Ed448, 114, 0, std::iter::empty())
    }

    /// An Ed25519 key (only for the cross-check against ring and the bench).
    pub(crate) fn ed25519(x: &[u8]) -> Result<OsslKey, String> {
        let built = PKey::public_key_from_raw_bytes(x, Id::ED25519);
        OsslKey::finish(built, KeyKind::Ed25519, 64, 0, std::iter::empty())
    }

    fn finish(
        built: Result<PKey<Public>, ErrorStack>,
        kind: KeyKind,
        sig_len: usize,
        field_len: usize,
        algs: impl Iterator<Item = Alg>,
    ) -> Result<OsslKey, String> {
        let result = (|| {
            let pkey = built?;
            let mut slots = Vec::new();
            for alg in algs {
                let Some((name, padding)) = digest_of(alg) else {
                    continue;
                };
                let md = Md::fetch(None, name, None)?;
                let ctx = Mutex::new(contexts(&pkey, &md, padding)?);
                slots.push(Slot {
                    alg,
                    md,
                    padding,
                    ctx,
                });
            }
            Ok(OsslKey {
                pkey,
                kind,
                sig_len,
                field_len,
                slots,
            })
        })();
        clear_errors();
        result.map_err(|e: ErrorStack| {
            let why = e
                .errors()
                .first()
                .and_then(|e| e.reason())
                .unwrap_or("unknown error");
            format!("OpenSSL refused the key: {why}")
        })
    }

    /// Verifies `sig` (JWS encoding) over `msg` with `alg`.
    pub(crate) fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        let ok = self.verify_inner(alg, msg, sig).unwrap_or(false);
        clear_errors();
        ok
    }

    fn verify_inner(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> Result<bool, ErrorStack> {
        // Signatures have exactly one length (RFC 7518; RFC 8017 8.2.2 for RSA: OpenSSL
        // would take a shorter RSA signature as if left-padded with zeros, ring would not).
        if sig.len() != self.sig_len {
            return Ok(false);
        }
        if matches!(self.kind, KeyKind::Ed448 | KeyKind::Ed25519) {
            if alg != Alg::EdDSA {
                return Ok(false);
            }
            let mut ctx = MdCtx::new()?;
            ctx.digest_verify_init(None, &self.pkey)?;
            return ctx.digest_verify(msg, sig);
        }
        let Some(slot) = self.slots.iter().find(|s| s.alg == alg) else {
            return Ok(false);
        };
        let mut der = [0u8; 2 * (3 + 67) + 3];
        let sig = if self.field_len > 0 {
            match ecdsa_der(sig, self.field_len, &mut der) {
                Some(d) => d,
                None => return Ok(false),
            }
        } else {
            sig
        };
        let mut digest = [0u8; 64];
        let mut run = |c: &mut Contexts| -> Result<bool, ErrorStack> {
            c.md.digest_init(&slot.md)?;
            c.md.digest_update(msg)?;
            let n = c.md.digest_final(&mut digest)?;
            c.pkey.verify(&digest[..n], sig)
        };
        match slot.ctx.try_lock() {
            Ok(mut c) => run(&mut c),
            // Another thread is verifying with this key (never in an nginx worker): use
            // contexts of our own rather than wait.
            Err(_) => run(&mut contexts(&self.pkey, &slot.md, slot.padding)?),
        }
    }
}

/// Encodes a JWS ECDSA signature (R || S, each `len` bytes) as the DER `ECDSA-Sig-Value`
/// OpenSSL verifies, into `out`. `None` if the length is wrong.
fn ecdsa_der<'o>(raw: &[u8], len: usize, out: &'o mut [u8; 143]) -> Option<&'o [u8]> {
    if raw.len() != 2 * len || len > 66 {
        return None;
    }
    let (r, s) = raw.split_at(len);
    let mut ints = [[0u8; 69]; 2];
    let mut lens = [0usize; 2];
    for (i, v) in [r, s].into_iter().enumerate() {
        let skip = v.iter().take_while(|b| **b == 0).count().min(v.len() - 1);
        let v = &v[skip..];
        let pad = usize::from(v[0] & 0x80 != 0);
        let body = v.len() + pad;
        let t = &mut ints[i];
        t[0] = 0x02;
        t[1] = body as u8;
        t[2 + pad..2 + body].copy_from_slice(v);
        lens[i] = 2 + body;
    }
    let content = lens[0] + lens[1];
    let mut at = 0;
    out[at] = 0x30;
    at += 1;
    if content >= 0x80 {
        out[at] = 0x81;
        at += 1;
    }
    out[at] = content as u8;
    at += 1;
    for i in 0..2 {
        out[at..at + lens[i]].copy_from_slice(&ints[i][..lens[i]]);
        at += lens[i];
    }
    Some(&out[..at])
}

// SAFETY note for the auto traits: OsslKey is Send + Sync through its fields (PKey, Md,
// MdCtx and PkeyCtx are Send + Sync in the openssl crate; the contexts, which OpenSSL does not
// allow two threads to use at once, are behind a Mutex). Checked at compile time:
const _: fn() = || {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<OsslKey>();
};

/// Whether the 56-byte little-endian `y` (already < p) is the y of a point on edwards448
/// (RFC 8032 5.2.3: x^2 = (y^2 - 1) / (d y^2 - 1) must have a square root mod p).
pub(crate) fn ed448_y_on_curve(y_le: &[u8]) -> bool {
    let r = (|| -> Result<bool, ErrorStack> {
        let mut ctx = BigNumContext::new()?;
        let mut be = y_le.to_vec();
        be.reverse();
        let y = BigNum::from_slice(&be)?;
        // p = 2^448 - 2^224 - 1
        let mut p = BigNum::new()?;
        p.set_bit(448)?;
        let mut t = BigNum::new()?;
        t.set_bit(224)?;
        let mut p2 = BigNum::new()?;
        p2.checked_sub(&p, &t)?;
        let one = BigNum::from_u32(1)?;
        p.checked_sub(&p2, &one)?;
        // d = -39081 mod p
        let mut d = BigNum::new()?;
        let k = BigNum::from_u32(39081)?;
        d.checked_sub(&p, &k)?;
        let mut y2 = BigNum::new()?;
        y2.mod_sqr(&y, &p, &mut ctx)?;
        let mut u = BigNum::new()?;
        u.mod_sub(&y2, &one, &p, &mut ctx)?;
        let mut dy2 = BigNum::new()?;
        dy2.mod_mul(&d, &y2, &p, &mut ctx)?;
        let mut v = BigNum::new()?;
        v.mod_sub(&dy2, &one, &p, &mut ctx)?;
        if u.num_bits() == 0 {
            return Ok(true);
        }
        let mut vinv = BigNum::new()?;
        vinv.mod_inverse(&v, &p, &mut ctx)?;
        let mut x2 = BigNum::new()?;
        x2.mod_mul(&u, &vinv, &p, &mut ctx)?;
        // Euler's criterion: x2^((p-1)/2) == 1.
        let mut e = BigNum::new()?;
        e.checked_sub(&p, &one)?;
        let mut half = BigNum::new()?;
        half.rshift1(&e)?;
        let mut r = BigNum::new()?;
        r.mod_exp(&x2, &half, &p, &mut ctx)?;
        Ok(r == one)
    })();
    clear_errors();
    r.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_der_encoding() {
        let mut out = [0u8; 143];
        // r = 1 (leading zeros stripped), s = 0x80.. (sign octet added).
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        let d = ecdsa_der(&raw, 32, &mut out).unwrap().to_vec();
        assert_eq!(&d[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
        assert_eq!(&d[5..8], &[0x02, 33, 0x00]);
        assert_eq!(d.len(), 2 + 3 + 35);
        // P-521 sized, long form length.
        let raw = [0xffu8; 132];
        let d = ecdsa_der(&raw, 66, &mut out).unwrap();
        assert_eq!(&d[..3], &[0x30, 0x81, 2 * 69]);
        assert_eq!(d.len(), 3 + 2 * 69);
        assert!(ecdsa_der(&raw[..131], 66, &mut out).is_none());
    }

    #[test]
    fn every_kind_has_a_backend_that_supports_it() {
        for kind in [
            KeyKind::Rsa,
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::EcP521,
            KeyKind::Ed25519,
            KeyKind::Ed448,
            KeyKind::Oct,
        ] {
            for alg in kind.algs().iter() {
                assert!(backend_for(alg, kind).supports(alg, kind), "{alg} {kind:?}");
            }
        }
    }
}

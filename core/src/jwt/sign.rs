//! Token minting, for the `gw-jwt` tool, tests, and the client assertions a relying party
//! sends to a token endpoint at sign-in (`client_auth client_secret_jwt | private_key_jwt`).
//! Never used to check a client's token.
//!
//! Signing keys: PKCS#8 PEM (`BEGIN PRIVATE KEY`, as `openssl genpkey` writes) for RSA, EC
//! and Ed25519, PKCS#1 `BEGIN RSA PRIVATE KEY` for RSA, and a JWK `kty: oct` for HMAC.
//! No strength checks: tests need weak keys too.

use super::error::KeyError;
use super::{b64, json, Alg};
use ring::{hmac, rand, signature};
use serde_json::Value;

/// A private key bound to one algorithm.
pub struct Signer {
    alg: Alg,
    inner: Inner,
}

enum Inner {
    Hmac(hmac::Key),
    Rsa(signature::RsaKeyPair),
    Ecdsa(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
    /// ES512 and Ed448, which ring lacks: signed by OpenSSL.
    OpenSsl(openssl::pkey::PKey<openssl::pkey::Private>, Vec<u8>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg).finish()
    }
}

impl Signer {
    /// An HMAC signer with the raw `secret` (any length).
    pub fn hmac(alg: Alg, secret: &[u8]) -> Result<Signer, KeyError> {
        let ra = match alg {
            Alg::HS256 => hmac::HMAC_SHA256,
            Alg::HS384 => hmac::HMAC_SHA384,
            Alg::HS512 => hmac::HMAC_SHA512,
            _ => return Err(KeyError::new(format!("{alg} is not an HMAC algorithm"))),
        };
        Ok(Signer {
            alg,
            inner: Inner::Hmac(hmac::Key::new(ra, secret)),
        })
    }

    /// A signer from a key file: a JWK `oct` (HMAC) or a PEM private key.
    pub fn from_file_bytes(alg: Alg, bytes: &[u8]) -> Result<Signer, KeyError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"{") {
            let jwk = json::parse_object(trimmed).map_err(|e| KeyError::new(e.to_string()))?;
            if jwk.get("kty").and_then(Value::as_str) != Some("oct") {
                return Err(KeyError::new("only kty oct JWKs can be used for signing"));
            }
            let k = jwk
                .get("k")
                .and_then(Value::as_str)
                .and_then(|k| b64::decode(k.as_bytes()))
                .ok_or_else(|| KeyError::new("JWK \"k\" missing or not base64url"))?;
            return Signer::hmac(alg, &k);
        }
        let block = pem::parse(trimmed).map_err(|_| KeyError::new("invalid PEM"))?;
        match block.tag() {
            "PRIVATE KEY" => Signer::from_pkcs8(alg, block.contents()),
            "RSA PRIVATE KEY" if !alg.is_hmac() => Ok(Signer {
                alg,
                inner: Inner::Rsa(
                    signature::RsaKeyPair::from_der(block.contents())
                        .map_err(|e| KeyError::new(format!("bad RSA private key: {e}")))?,
                ),
            }),
            t => Err(KeyError::new(format!("unsupported PEM type \"{t}\""))),
        }
    }

    /// A signer from a PKCS#8 DER private key.
    pub fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<Signer, KeyError> {
        let bad = |e: ring::error::KeyRejected| {
            KeyError::new(format!("private key does not fit {alg}: {e}"))
        };
        let inner = match alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Inner::Rsa(signature::RsaKeyPair::from_pkcs8(der).map_err(bad)?)
            }
            Alg::ES256 | Alg::ES384 => {
                let a = if alg == Alg::ES256 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                Inner::Ecdsa(
                    signature::EcdsaKeyPair::from_pkcs8(a, der, &rand::SystemRandom::new())
                        .map_err(bad)?,
                )
            }
            Alg::EdDSA => match signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                Ok(k) => Inner::Ed25519(k),
                Err(e) => openssl_key(der, openssl::pkey::Id::ED448).ok_or_else(|| bad(e))?,
            },
            Alg::ES512 => openssl_key(der, openssl::pkey::Id::EC).ok_or_else(|| {
                KeyError::new(format!("private key does not fit {alg}: not a P-521 key"))
            })?,
            Alg::HS256 | Alg::HS384 | Alg::HS512 => {
                return Err(KeyError::new("HMAC keys are given as a JWK oct file"))
            }
        };
        Ok(Signer { alg, inner })
    }

    /// The algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The DER SubjectPublicKeyInfo-less raw public key bytes (RSA: PKCS#1 RSAPublicKey;
    /// EC: uncompressed point; Ed25519: 32 bytes); `None` for HMAC.
    pub fn public_key_bytes(&self) -> Option<&[u8]> {
        use signature::KeyPair;
        match &self.inner {
            Inner::Hmac(_) => None,
            Inner::Rsa(k) => Some(k.public_key().as_ref()),
            Inner::Ecdsa(k) => Some(k.public_key().as_ref()),
            Inner::Ed25519(k) => Some(k.public_key().as_ref()),
            Inner::OpenSsl(_, public) => Some(public),
        }
    }

    /// Signs `msg` (the JWS signing input).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = rand::SystemRandom::new();
        let failed = |_| KeyError::new("signing failed");
        match &self.inner {
            Inner::Hmac(k) => Ok(hmac::sign(k, msg).as_ref().to_vec()),
            Inner::Rsa(k) => {
                let pad: &'static dyn signature::RsaEncoding = match self.alg {
                    Alg::RS256 => &signature::RSA_PKCS1_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(pad, &rng, msg, &mut sig).map_err(failed)?;
                Ok(sig)
            }
            Inner::Ecdsa(k) => Ok(k.sign(&rng, msg).map_err(failed)?.as_ref().to_vec()),
            Inner::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Inner::OpenSsl(k, _) => {
                let r = openssl_sign(k, msg);
                super::crypto::clear_errors();
                r.map_err(|_| KeyError::new("signing failed"))
            }
        }
    }
}

/// A PKCS#8 private key of type `id` in OpenSSL (EC keys: P-521 only), with its raw public
/// key (the uncompressed point, or the 57 Ed448 bytes).
fn openssl_key(der: &[u8], id: openssl::pkey::Id) -> Option<Inner> {
    use openssl::{bn::BigNumContext, ec::PointConversionForm, nid::Nid, pkey::PKey};
    let r = (|| {
        let k = PKey::private_key_from_der(der).ok()?;
        if k.id() != id {
            return None;
        }
        let public = if id == openssl::pkey::Id::EC {
            let ec = k.ec_key().ok()?;
            if ec.group().curve_name() != Some(Nid::SECP521R1) {
                return None;
            }
            let mut ctx = BigNumContext::new().ok()?;
            ec.public_key()
                .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
                .ok()?
        } else {
            k.raw_public_key().ok()?
        };
        Some(Inner::OpenSsl(k, public))
    })();
    super::crypto::clear_errors();
    r
}

fn openssl_sign(
    k: &openssl::pkey::PKey<openssl::pkey::Private>,
    msg: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    use openssl::{ecdsa::EcdsaSig, hash::MessageDigest, sign::Signer as OsslSigner};
    if k.id() == openssl::pkey::Id::ED448 {
        return OsslSigner::new_without_digest(k)?.sign_oneshot_to_vec(msg);
    }
    let mut s = OsslSigner::new(MessageDigest::sha512(), k)?;
    s.update(msg)?;
    let der = EcdsaSig::from_der(&s.sign_to_vec()?)?;
    let mut raw = der.r().to_vec_padded(66)?;
    raw.extend(der.s().to_vec_padded(66)?);
    Ok(raw)
}

/// Base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    b64::encode(bytes)
}

/// `b64(header).b64(payload)`, the JWS signing input.
pub fn signing_input(header_json: &[u8], payload_json: &[u8]) -> String {
    format!("{}.{}", b64::encode(header_json), b64::encode(payload_json))
}

/// A compact JWS over the exact header and payload bytes given.
pub fn encode_token(
    header_json: &[u8],
    payload_json: &[u8],
    signer: &Signer,
) -> Result<String, KeyError> {
    let input = signing_input(header_json, payload_json);
    let sig = signer.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64::encode(&sig)))
}

/// A compact token with the given signature bytes (possibly empty): for crafted tokens.
pub fn encode_with_signature(header_json: &[u8], payload_json: &[u8], sig: &[u8]) -> String {
    format!(
        "{}.{}",
        signing_input(header_json, payload_json),
        b64::encode(sig)
    )
}

//! Token parsing and signature verification (the expensive, cacheable half).

use super::error::JwtError;
use super::json;
use super::keys::KeySet;
use super::{b64, Alg, AlgSet, MAX_NUMERIC_DATE};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A token whose signature verified. Time claims, issuer, audience and claim rules are
/// checked separately by [`crate::jwt::check_claims`] (on every request, also on cache hits).
#[derive(Debug, Clone)]
pub struct Verified {
    alg: Alg,
    kid: Option<String>,
    header: Map<String, Value>,
    payload: Map<String, Value>,
    payload_json: String,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    token_len: usize,
}

impl Verified {
    /// The verified algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }
    /// The header `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// The parsed JOSE header.
    pub fn header_map(&self) -> &Map<String, Value> {
        &self.header
    }
    /// A header parameter (`$jwt_header_<name>`).
    pub fn header(&self, name: &str) -> Option<&Value> {
        self.header.get(name)
    }
    /// The parsed claim set.
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }
    /// The decoded claim set exactly as signed (`$jwt_payload`).
    pub fn payload_json(&self) -> &str {
        &self.payload_json
    }
    /// A claim by path: `&["sub"]`, `&["realm_access", "roles"]`. Each step after the first
    /// descends into an object.
    pub fn claim(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.payload.get(*first)?;
        for step in rest {
            v = v.as_object()?.get(*step)?;
        }
        Some(v)
    }
    /// As [`Verified::claim`] with owned path segments.
    pub fn claim_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.payload.get(first.as_ref())?;
        for step in rest {
            v = v.as_object()?.get(step.as_ref())?;
        }
        Some(v)
    }
    /// `exp` (validated NumericDate, fractions truncated).
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }
    /// `nbf`.
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }
    /// `iat`.
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }
    /// `sub` (always a string when present).
    pub fn sub(&self) -> Option<&str> {
        self.payload.get("sub").and_then(Value::as_str)
    }
    /// `iss` (always a string when present).
    pub fn iss(&self) -> Option<&str> {
        self.payload.get("iss").and_then(Value::as_str)
    }
    /// The `aud` values (a string claim yields one value).
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        let slice: &[Value] = match self.payload.get("aud") {
            Some(Value::Array(a)) => a,
            Some(v @ Value::String(_)) => std::slice::from_ref(v),
            _ => &[],
        };
        slice.iter().filter_map(Value::as_str)
    }
    /// Header `typ` (always a string when present).
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
    /// Length of the token in bytes.
    pub fn token_len(&self) -> usize {
        self.token_len
    }
}

/// Parses `token` (compact JWS), selects a key and verifies the signature.
///
/// Order: size (before any decoding) → 3 segments → header (strict base64url, strict JSON
/// object) → `alg` (never `none`, must be in `allowed`) → `crit` (refused) → `kid` →
/// payload base64url → signature base64url → key selection and ring verify → payload JSON
/// and claim types. The payload JSON is parsed only after the signature verified.
pub fn decode_and_verify_signature(
    token: &[u8],
    keys: &KeySet,
    allowed: AlgSet,
    max_size: usize,
) -> Result<Verified, JwtError> {
    decode_with(token, allowed, max_size, |alg, kid, input, sig| {
        keys.verify_signature(alg, kid, input, sig)
    })
}

/// Parses a token this gateway verified itself earlier and kept where no one else can write
/// (the ID token of a browser session, in the gateway's shared memory): the same parsing and
/// claim-type rules as [`decode_and_verify_signature`], without the signature check. Never
/// for a token that comes from a request.
pub fn decode_trusted(token: &[u8], max_size: usize) -> Result<Verified, JwtError> {
    decode_with(token, AlgSet::ALL, max_size, |_, _, _, _| Ok(()))
}

fn decode_with(
    token: &[u8],
    allowed: AlgSet,
    max_size: usize,
    verify: impl FnOnce(Alg, Option<&str>, &[u8], &[u8]) -> Result<(), JwtError>,
) -> Result<Verified, JwtError> {
    if token.is_empty() {
        return Err(JwtError::Missing);
    }
    if token.len() > max_size {
        return Err(JwtError::TooLarge {
            size: token.len(),
            limit: max_size,
        });
    }
    let mut dots = token
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i);
    let (d1, d2) = match (dots.next(), dots.next(), dots.next()) {
        (Some(a), Some(b), None) => (a, b),
        _ => {
            let segments = token.iter().filter(|b| **b == b'.').count() + 1;
            return Err(if segments == 5 {
                JwtError::malformed("JWE (5 segments) not supported")
            } else {
                let plural = if segments == 1 { "" } else { "s" };
                JwtError::Malformed(Cow::Owned(format!(
                    "{segments} segment{plural}, expected 3"
                )))
            });
        }
    };
    let header_b64 = &token[..d1];
    let payload_b64 = &token[d1 + 1..d2];
    let sig_b64 = &token[d2 + 1..];
    let signing_input = &token[..d2];

    let header_bytes =
        b64::decode(header_b64).ok_or(JwtError::malformed("header is not valid base64url"))?;
    let header = json::parse_object(&header_bytes)
        .map_err(|e| JwtError::Malformed(Cow::Owned(format!("header: {}", e.short()))))?;

    let alg = match header.get("alg") {
        Some(Value::String(name)) => match Alg::from_name(name) {
            Some(a) => a,
            None if name.eq_ignore_ascii_case("none") => {
                return Err(JwtError::AlgNotAllowed("unsigned token (alg none)".into()))
            }
            None => return Err(JwtError::AlgNotAllowed("unsupported algorithm".into())),
        },
        Some(_) => return Err(JwtError::malformed("header alg is not a string")),
        None => return Err(JwtError::malformed("header has no alg")),
    };
    if !allowed.contains(alg) {
        return Err(JwtError::AlgNotAllowed(Cow::Owned(format!(
            "{alg} is not in the allowed list"
        ))));
    }
    if header.contains_key("crit") {
        // RFC 7515 4.1.11: we understand no extension, and an empty list is invalid.
        return Err(JwtError::malformed("crit header parameter not supported"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::malformed("header kid is not a string")),
    };
    if header.get("typ").is_some_and(|t| !t.is_string()) {
        return Err(JwtError::malformed("header typ is not a string"));
    }

    let payload_bytes =
        b64::decode(payload_b64).ok_or(JwtError::malformed("payload is not valid base64url"))?;
    let sig =
        b64::decode(sig_b64).ok_or(JwtError::malformed("signature is not valid base64url"))?;

    verify(alg, kid.as_deref(), signing_input, &sig)?;

    let payload_json = String::from_utf8(payload_bytes)
        .map_err(|_| JwtError::malformed("payload: invalid UTF-8"))?;
    let payload = json::parse_object_str(&payload_json)
        .map_err(|e| JwtError::Malformed(Cow::Owned(format!("payload: {}", e.short()))))?;

    let exp = numeric_date(&payload, "exp")?;
    let nbf = numeric_date(&payload, "nbf")?;
    let iat = numeric_date(&payload, "iat")?;
    for name in ["iss", "sub"] {
        if payload.get(name).is_some_and(|v| !v.is_string()) {
            return Err(JwtError::Malformed(Cow::Owned(format!(
                "{name} is not a string"
            ))));
        }
    }
    match payload.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => {
            return Err(JwtError::malformed(
                "aud is not a string or array of strings",
            ))
        }
    }

    Ok(Verified {
        alg,
        kid,
        header,
        payload,
        payload_json,
        exp,
        nbf,
        iat,
        token_len: token.len(),
    })
}

/// Reads an optional NumericDate claim: a JSON number in `0..=MAX_NUMERIC_DATE`.
fn numeric_date(payload: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    let Some(v) = payload.get(name) else {
        return Ok(None);
    };
    let bad = || JwtError::Malformed(Cow::Owned(format!("{name} is not a valid NumericDate")));
    let Value::Number(n) = v else {
        return Err(bad());
    };
    let t = if let Some(i) = n.as_i64() {
        i
    } else if let Some(f) = n.as_f64() {
        // u64 beyond i64 also lands here as f64 and fails the range check.
        if !f.is_finite() || !(0.0..=(MAX_NUMERIC_DATE as f64)).contains(&f) {
            return Err(bad());
        }
        f.trunc() as i64
    } else {
        return Err(bad());
    };
    if !(0..=MAX_NUMERIC_DATE).contains(&t) {
        return Err(bad());
    }
    Ok(Some(t))
}

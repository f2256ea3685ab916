//! Token parsing and signature verification (the expensive, cacheable half).

use super::error::JwtError;
use super::json::{self, Top};
use super::keys::KeySet;
use super::{b64, Alg, AlgSet, MAX_NUMERIC_DATE};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::OnceLock;

/// A token whose signature verified. Time claims, issuer, audience and claim rules are
/// checked separately by [`crate::jwt::check_claims`] (on every request, also on cache hits).
///
/// Built for the miss path: one buffer holds the decoded header and payload JSON, the claims
/// the gateway reads on every request (`exp`, `nbf`, `iat`, `iss`, `sub`, `aud`, `kid`,
/// `typ`) are kept as positions in it, and the full header and claim maps are built only
/// when something asks for them (a claim rule, a `$jwt_claim_*` variable), then kept with the
/// token (also in the cache).
#[derive(Debug, Clone)]
pub struct Verified {
    alg: Alg,
    /// The decoded header JSON, then the decoded payload JSON.
    text: Box<str>,
    /// Where the payload starts in `text`.
    split: usize,
    kid: Option<Text>,
    typ: Option<Text>,
    iss: Option<Text>,
    sub: Option<Text>,
    aud: Aud,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    token_len: usize,
    header: OnceLock<Map<String, Value>>,
    payload: OnceLock<Map<String, Value>>,
}

/// A string member: where it sits in [`Verified::text`], or its decoded form when it had an
/// escape.
#[derive(Debug, Clone)]
enum Text {
    At(usize, usize),
    Owned(Box<str>),
}

impl Text {
    fn new(base: &str, s: Cow<'_, str>) -> Text {
        match s {
            Cow::Borrowed(b) => {
                // A borrowed string is a slice of `base` (serde_json borrows from its input).
                let start = (b.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
                Text::At(start, start.saturating_add(b.len()))
            }
            Cow::Owned(o) => Text::Owned(o.into_boxed_str()),
        }
    }

    fn get<'a>(&'a self, text: &'a str) -> &'a str {
        match self {
            // In range by construction (a slice serde_json borrowed from this text); `get`
            // keeps even a broken invariant from panicking.
            Text::At(a, b) => text.get(*a..*b).unwrap_or_default(),
            Text::Owned(s) => s,
        }
    }
}

#[derive(Debug, Clone)]
enum Aud {
    None,
    One(Text),
    Many(Vec<Text>),
}

impl Verified {
    /// The verified algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }
    /// The header `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_ref().map(|t| t.get(&self.text))
    }
    /// The parsed JOSE header (built on first use).
    pub fn header_map(&self) -> &Map<String, Value> {
        self.header
            .get_or_init(|| materialize(&self.text[..self.split]))
    }
    /// A header parameter (`$jwt_header_<name>`).
    pub fn header(&self, name: &str) -> Option<&Value> {
        self.header_map().get(name)
    }
    /// The parsed claim set (built on first use).
    pub fn payload(&self) -> &Map<String, Value> {
        self.payload
            .get_or_init(|| materialize(self.payload_json()))
    }
    /// The decoded claim set exactly as signed (`$jwt_payload`).
    pub fn payload_json(&self) -> &str {
        &self.text[self.split..]
    }
    /// A claim by path: `&["sub"]`, `&["realm_access", "roles"]`. Each step after the first
    /// descends into an object.
    pub fn claim(&self, path: &[&str]) -> Option<&Value> {
        self.claim_path(path)
    }
    /// As [`Verified::claim`] with owned path segments.
    pub fn claim_path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.payload().get(first.as_ref())?;
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
        self.sub.as_ref().map(|t| t.get(&self.text))
    }
    /// `iss` (always a string when present).
    pub fn iss(&self) -> Option<&str> {
        self.iss.as_ref().map(|t| t.get(&self.text))
    }
    /// The `aud` values (a string claim yields one value).
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        let list: &[Text] = match &self.aud {
            Aud::None => &[],
            Aud::One(t) => std::slice::from_ref(t),
            Aud::Many(v) => v,
        };
        list.iter().map(|t| t.get(&self.text))
    }
    /// Header `typ` (always a string when present).
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_ref().map(|t| t.get(&self.text))
    }
    /// Length of the token in bytes.
    pub fn token_len(&self) -> usize {
        self.token_len
    }
}

/// The map of a JSON object [`json::scan_object`] accepted (so the strict parser accepts it
/// too; the fuzz target `jwt_verify` and the unit tests hold the two to the same answers).
fn materialize(text: &str) -> Map<String, Value> {
    json::parse_object_str(text).unwrap_or_default()
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
    let (d1, d2) = match dots(token) {
        Some(d) => d,
        None => {
            let segments = memchr::memchr_iter(b'.', token).count() + 1;
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

    // One buffer for the decoded header and payload, sized exactly (no reallocation, and it
    // becomes the Verified's text as it is).
    let hlen =
        b64::decoded_len(header_b64).ok_or(JwtError::malformed("header is not valid base64url"))?;
    // An impossible payload length is reported where the payload is decoded (after the
    // header checks, as always).
    let plen = b64::decoded_len(payload_b64);
    let mut buf = vec![0u8; hlen + plen.unwrap_or(0)];
    let (hbuf, pbuf) = buf.split_at_mut(hlen);
    if !b64::decode_into(header_b64, hbuf) {
        return Err(JwtError::malformed("header is not valid base64url"));
    }
    let header_text =
        std::str::from_utf8(hbuf).map_err(|_| JwtError::malformed("header: invalid UTF-8"))?;
    let [alg, crit, kid, typ] = json::scan_object(header_text, &["alg", "crit", "kid", "typ"])
        .map_err(|e| JwtError::Malformed(Cow::Owned(format!("header: {}", e.short()))))?;

    let alg = match alg {
        Some(Top::Str(name)) => match Alg::from_name(&name) {
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
    if crit.is_some() {
        // RFC 7515 4.1.11: we understand no extension, and an empty list is invalid.
        return Err(JwtError::malformed("crit header parameter not supported"));
    }
    let kid = match kid {
        None => None,
        Some(Top::Str(k)) => Some(Text::new(header_text, k)),
        Some(_) => return Err(JwtError::malformed("header kid is not a string")),
    };
    let typ = match typ {
        None => None,
        Some(Top::Str(t)) => Some(Text::new(header_text, t)),
        Some(_) => return Err(JwtError::malformed("header typ is not a string")),
    };

    if plen.is_none() || !b64::decode_into(payload_b64, pbuf) {
        return Err(JwtError::malformed("payload is not valid base64url"));
    }
    // Signatures up to 8192-bit RSA are decoded on the stack.
    let mut sig_stack = [0u8; 1024];
    let mut sig_heap = Vec::new();
    let sig: &[u8] = match b64::decoded_len(sig_b64) {
        Some(n) if n <= sig_stack.len() && b64::decode_into(sig_b64, &mut sig_stack[..n]) => {
            &sig_stack[..n]
        }
        Some(n) if n > sig_stack.len() => {
            sig_heap.resize(n, 0);
            if !b64::decode_into(sig_b64, &mut sig_heap) {
                return Err(JwtError::malformed("signature is not valid base64url"));
            }
            &sig_heap
        }
        _ => return Err(JwtError::malformed("signature is not valid base64url")),
    };

    {
        let kid_text = kid.as_ref().map(|t| t.get(header_text));
        verify(alg, kid_text, signing_input, sig)?;
    }

    let text = String::from_utf8(buf).map_err(|e| {
        if e.utf8_error().valid_up_to() < hlen {
            JwtError::malformed("header: invalid UTF-8")
        } else {
            JwtError::malformed("payload: invalid UTF-8")
        }
    })?;
    let payload_text = &text[hlen..];
    let [exp, nbf, iat, iss, sub, aud] =
        json::scan_object(payload_text, &["exp", "nbf", "iat", "iss", "sub", "aud"])
            .map_err(|e| JwtError::Malformed(Cow::Owned(format!("payload: {}", e.short()))))?;

    let exp = numeric_date(exp, "exp")?;
    let nbf = numeric_date(nbf, "nbf")?;
    let iat = numeric_date(iat, "iat")?;
    let string = |v: Option<Top<'_>>, name: &str| match v {
        None => Ok(None),
        Some(Top::Str(s)) => Ok(Some(Text::new(&text, s))),
        Some(_) => Err(JwtError::Malformed(Cow::Owned(format!(
            "{name} is not a string"
        )))),
    };
    let iss = string(iss, "iss")?;
    let sub = string(sub, "sub")?;
    let aud = match aud {
        None => Aud::None,
        Some(Top::Str(s)) => Aud::One(Text::new(&text, s)),
        Some(Top::Strings(list)) => {
            Aud::Many(list.into_iter().map(|s| Text::new(&text, s)).collect())
        }
        Some(_) => {
            return Err(JwtError::malformed(
                "aud is not a string or array of strings",
            ))
        }
    };

    Ok(Verified {
        alg,
        text: text.into_boxed_str(),
        split: hlen,
        kid,
        typ,
        iss,
        sub,
        aud,
        exp,
        nbf,
        iat,
        token_len: token.len(),
        header: OnceLock::new(),
        payload: OnceLock::new(),
    })
}

/// The positions of the two dots of a three-segment token, `None` for any other count.
fn dots(token: &[u8]) -> Option<(usize, usize)> {
    // memchr: the token is scanned a word at a time, not a byte at a time.
    let mut it = memchr::memchr_iter(b'.', token);
    match (it.next(), it.next(), it.next()) {
        (Some(d1), Some(d2), None) => Some((d1, d2)),
        _ => None,
    }
}

/// Reads an optional NumericDate claim: a JSON number in `0..=MAX_NUMERIC_DATE`.
fn numeric_date(v: Option<Top<'_>>, name: &'static str) -> Result<Option<i64>, JwtError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let bad = || JwtError::Malformed(Cow::Owned(format!("{name} is not a valid NumericDate")));
    let t = match v {
        Top::U64(u) => i64::try_from(u).map_err(|_| bad())?,
        Top::I64(i) => i,
        Top::F64(f) => {
            if !f.is_finite() || !(0.0..=(MAX_NUMERIC_DATE as f64)).contains(&f) {
                return Err(bad());
            }
            f.trunc() as i64
        }
        _ => return Err(bad()),
    };
    if !(0..=MAX_NUMERIC_DATE).contains(&t) {
        return Err(bad());
    }
    Ok(Some(t))
}

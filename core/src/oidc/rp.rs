//! The relying-party half of OpenID Connect (`oidc_provider`, `auth_oidc`): what the gateway
//! sends to the provider and what it accepts back. Pure logic; the glue does the I/O.
//!
//! - [`Pending`]: a login under way (state, nonce, PKCE verifier, the page first asked for),
//!   kept server-side until the callback uses it once.
//! - [`Session`]: a signed-in browser (tokens and times), kept server-side; the browser only
//!   holds an opaque, unguessable id.
//! - [`check_id_token`]: the ID token rules of OpenID Connect Core 3.1.3.7 that the JWT engine
//!   does not already apply (issuer, audience, azp, nonce, iat).
//! - [`return_path`]: the open-redirect guard: only a path of this origin.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::jwt::Verified;

/// `n` random bytes from the operating system's CSPRNG, base64url without padding.
pub fn random_token(n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).ok()?;
    Some(URL_SAFE_NO_PAD.encode(b))
}

/// The PKCE S256 challenge of a verifier (RFC 7636 section 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `Authorization: Basic` for a client (RFC 6749 section 2.3.1: the id and the secret are
/// form-encoded first).
pub fn basic_auth(client_id: &str, secret: &str) -> String {
    let creds = format!("{}:{}", form_encode(client_id), form_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    )
}

/// A client assertion (RFC 7523 section 2.2, OpenID Connect Core section 9:
/// `client_secret_jwt` with an HMAC signer, `private_key_jwt` with a private key): the client
/// as issuer and subject, the token endpoint as audience, a minute of validity, a fresh `jti`.
pub fn client_assertion(
    signer: &crate::jwt::sign::Signer,
    kid: Option<&str>,
    client_id: &str,
    token_endpoint: &str,
    now: u64,
) -> Option<String> {
    let mut header = serde_json::json!({"alg": signer.alg().name(), "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = Value::String(k.to_string());
    }
    let payload = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "jti": random_token(16)?,
        "iat": now,
        "exp": now + 60,
    });
    crate::jwt::sign::encode_token(
        header.to_string().as_bytes(),
        payload.to_string().as_bytes(),
        signer,
    )
    .ok()
}

/// Pairs as a form body or query string.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `url` with `pairs` added to its query string.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", form(pairs))
}

/// The value of argument `name` in a query string, percent-decoded (`+` is a space).
pub fn query_arg(query: &[u8], name: &str) -> Option<String> {
    for pair in query.split(|&b| b == b'&') {
        let mut it = pair.splitn(2, |&b| b == b'=');
        let k = it.next().unwrap_or_default();
        if percent_decode(k).as_deref() == Some(name.as_bytes()) {
            let v = percent_decode(it.next().unwrap_or_default())?;
            return String::from_utf8(v).ok();
        }
    }
    None
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let h = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The page to send the browser back to after login: the request's own path and query, and
/// only that (an absolute URL, a scheme-relative `//host`, a backslash that browsers read as a
/// slash, or a control byte make it `/`). At most 2048 bytes.
pub fn return_path(uri: &[u8]) -> String {
    let ok = uri.first() == Some(&b'/')
        && uri.get(1) != Some(&b'/')
        && uri.get(1) != Some(&b'\\')
        && uri.len() <= 2048
        && uri.iter().all(|&b| b > b' ' && b != 0x7f && b != b'\\');
    if ok {
        String::from_utf8(uri.to_vec()).unwrap_or_else(|_| "/".into())
    } else {
        "/".into()
    }
}

/// A login under way, from the redirect to the provider until its callback (used once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub nonce: String,
    pub verifier: String,
    pub return_to: String,
    pub created: u64,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// Seconds since the epoch.
    pub created: u64,
    pub last_seen: u64,
    /// When the access token expires (0: unknown).
    pub access_exp: u64,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
}

fn put(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

fn take<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let s = b.get(4..4 + n)?;
    *b = &b[4 + n..];
    Some(s)
}

fn take_u64(b: &mut &[u8]) -> Option<u64> {
    let v = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    *b = &b[8..];
    Some(v)
}

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

impl Pending {
    /// Bytes for the shared zone.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.return_to.len());
        out.extend_from_slice(&self.created.to_le_bytes());
        put(&mut out, self.nonce.as_bytes());
        put(&mut out, self.verifier.as_bytes());
        put(&mut out, self.return_to.as_bytes());
        out
    }

    /// The record back; `None` for anything that is not one.
    pub fn decode(mut b: &[u8]) -> Option<Pending> {
        let created = take_u64(&mut b)?;
        Some(Pending {
            created,
            nonce: text(take(&mut b)?)?,
            verifier: text(take(&mut b)?)?,
            return_to: text(take(&mut b)?)?,
        })
    }
}

impl Session {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            48 + self.id_token.len() + self.access_token.len() + self.refresh_token.len(),
        );
        for v in [self.created, self.last_seen, self.access_exp] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put(&mut out, self.id_token.as_bytes());
        put(&mut out, self.access_token.as_bytes());
        put(&mut out, self.refresh_token.as_bytes());
        out
    }

    pub fn decode(mut b: &[u8]) -> Option<Session> {
        Some(Session {
            created: take_u64(&mut b)?,
            last_seen: take_u64(&mut b)?,
            access_exp: take_u64(&mut b)?,
            id_token: text(take(&mut b)?)?,
            access_token: text(take(&mut b)?)?,
            refresh_token: text(take(&mut b)?)?,
        })
    }
}

/// What the token endpoint answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub id_token: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// Parses a token endpoint response body (RFC 6749 section 5.1). An error response gives its
/// `error` code.
pub fn parse_tokens(body: &[u8]) -> Result<Tokens, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_string())?;
    let o = v.as_object().ok_or("not a JSON object")?;
    if let Some(e) = o.get("error").and_then(Value::as_str) {
        let e: String = e
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return Err(format!("error \"{e}\""));
    }
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let access_token = s("access_token").ok_or("no access_token")?;
    if let Some(t) = s("token_type") {
        if !t.eq_ignore_ascii_case("bearer") && !t.eq_ignore_ascii_case("dpop") {
            return Err("token_type is not Bearer".into());
        }
    }
    Ok(Tokens {
        id_token: s("id_token"),
        access_token,
        refresh_token: s("refresh_token"),
        expires_in: o.get("expires_in").and_then(Value::as_u64),
    })
}

/// The ID token rules beyond the signature and the time claims (OpenID Connect Core 3.1.3.7):
/// the issuer, the client among the audiences, `azp` when present or when there are several
/// audiences, the nonce of this login, and an `iat` that is not in the future. Returns a reason
/// code.
pub fn check_id_token(
    v: &Verified,
    issuer: &str,
    client_id: &str,
    nonce: Option<&str>,
    now: i64,
    leeway: i64,
) -> Result<(), &'static str> {
    if v.iss() != Some(issuer) {
        return Err("issuer_mismatch");
    }
    let auds: Vec<&str> = v.audiences().collect();
    if !auds.contains(&client_id) {
        return Err("audience_mismatch");
    }
    let azp = v.claim(&["azp"]).and_then(Value::as_str);
    if (auds.len() > 1 || azp.is_some()) && azp != Some(client_id) {
        return Err("azp_mismatch");
    }
    if let Some(n) = nonce {
        if v.claim(&["nonce"]).and_then(Value::as_str) != Some(n) {
            return Err("nonce_mismatch");
        }
    }
    match v.exp() {
        Some(exp) if exp + leeway > now => {}
        _ => return Err("id_token_expired"),
    }
    match v.iat() {
        Some(iat) if iat <= now + leeway => {}
        _ => return Err("iat_invalid"),
    }
    if v.sub().is_none_or_empty() {
        return Err("no_subject");
    }
    Ok(())
}

trait NoneOrEmpty {
    fn is_none_or_empty(&self) -> bool;
}

impl NoneOrEmpty for Option<&str> {
    fn is_none_or_empty(&self) -> bool {
        self.map_or(true, str::is_empty)
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`; `Secure` on https.
/// `max_age`: `Some(0)` deletes the cookie, `None` makes a browser-session cookie.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    c
}

/// The value of cookie `name` in a `Cookie` header value.
pub fn cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name)
            .then(|| &pair[eq + 1..])
            .filter(|v| !v.is_empty())
    })
}

/// Logins under way in one browser at most (two tabs that both send the browser to the
/// provider before either comes back).
pub const MAX_STATES: usize = 3;

/// The states a state cookie holds (dot-separated base64url values; anything else dropped).
pub fn cookie_states(value: &[u8]) -> Vec<&[u8]> {
    value
        .split(|&b| b == b'.')
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .collect()
}

/// The state cookie's value with `state` added (the oldest dropped beyond [`MAX_STATES`]).
pub fn states_with(old: Option<&[u8]>, state: &str) -> String {
    let mut v: Vec<String> = old
        .map(cookie_states)
        .unwrap_or_default()
        .into_iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.push(state.to_string());
    let skip = v.len().saturating_sub(MAX_STATES);
    v[skip..].join(".")
}

/// The state cookie's value without `state` (empty when none is left).
pub fn states_without(old: &[u8], state: &str) -> String {
    cookie_states(old)
        .into_iter()
        .filter(|s| *s != state.as_bytes())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether a request looks like a browser navigation (so a missing session earns a redirect
/// to the provider rather than 401): GET or HEAD, and `Sec-Fetch-Mode: navigate`, or no
/// `Sec-Fetch-Mode` and an `Accept` that names `text/html`.
pub fn is_navigation(method: &[u8], sec_fetch_mode: Option<&[u8]>, accept: Option<&[u8]>) -> bool {
    if method != b"GET" && method != b"HEAD" {
        return false;
    }
    match sec_fetch_mode {
        Some(m) => m.eq_ignore_ascii_case(b"navigate"),
        None => accept.is_some_and(|a| a.windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_differ_and_are_url_safe() {
        let a = random_token(32).unwrap();
        let b = random_token(32).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn return_path_is_same_origin_only() {
        assert_eq!(return_path(b"/app/x?y=1"), "/app/x?y=1");
        for bad in [
            &b"//evil.example/x"[..],
            b"/\\evil.example",
            b"https://evil.example/",
            b"evil",
            b"",
            b"/a\r\nLocation: x",
            b"/a b",
        ] {
            assert_eq!(return_path(bad), "/", "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let p = Pending {
            nonce: "n".into(),
            verifier: "v".into(),
            return_to: "/x".into(),
            created: 7,
        };
        assert_eq!(Pending::decode(&p.encode()), Some(p.clone()));
        let s = Session {
            created: 1,
            last_seen: 2,
            access_exp: 3,
            id_token: "a.b.c".into(),
            access_token: "at".into(),
            refresh_token: String::new(),
        };
        assert_eq!(Session::decode(&s.encode()), Some(s.clone()));
        let e = s.encode();
        for n in 0..e.len() {
            assert!(Session::decode(&e[..n]).is_none() || n == e.len());
        }
        assert!(Pending::decode(b"\xff\xff").is_none());
    }

    #[test]
    fn token_responses() {
        let t = parse_tokens(br#"{"access_token":"a","token_type":"Bearer","id_token":"x.y.z","refresh_token":"r","expires_in":60}"#).unwrap();
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
        assert_eq!(t.expires_in, Some(60));
        assert_eq!(
            parse_tokens(br#"{"error":"invalid_grant"}"#).unwrap_err(),
            "error \"invalid_grant\""
        );
        assert!(parse_tokens(b"nope").is_err());
        assert!(parse_tokens(br#"{"access_token":"a","token_type":"mac"}"#).is_err());
    }

    #[test]
    fn forms_and_queries() {
        assert_eq!(form(&[("a b", "x&y=z/é")]), "a+b=x%26y%3Dz%2F%C3%A9");
        assert_eq!(
            query_arg(b"code=a%2Fb&state=s+t", "state").as_deref(),
            Some("s t")
        );
        assert_eq!(query_arg(b"code=a%2Fb", "code").as_deref(), Some("a/b"));
        assert_eq!(query_arg(b"code=%zz", "code"), None);
        assert_eq!(
            with_query("https://x/a?b=1", &[("c", "2")]),
            "https://x/a?b=1&c=2"
        );
    }

    #[test]
    fn navigation_rule() {
        assert!(is_navigation(b"GET", Some(b"navigate"), None));
        assert!(!is_navigation(b"GET", Some(b"cors"), Some(b"text/html")));
        assert!(is_navigation(
            b"GET",
            None,
            Some(b"text/html,application/xhtml+xml")
        ));
        assert!(!is_navigation(b"GET", None, Some(b"application/json")));
        assert!(!is_navigation(b"POST", Some(b"navigate"), None));
    }

    #[test]
    fn state_cookie_holds_a_few_logins() {
        assert_eq!(states_with(None, "a"), "a");
        assert_eq!(states_with(Some(b"a.b"), "c"), "a.b.c");
        assert_eq!(states_with(Some(b"a.b.c"), "d"), "b.c.d");
        assert_eq!(states_with(Some(b"a.<x>.b"), "c"), "a.b.c");
        assert_eq!(states_without(b"a.b.c", "b"), "a.c");
        assert_eq!(states_without(b"a", "a"), "");
        assert!(cookie_states(b"a.b").contains(&&b"b"[..]));
        assert!(!cookie_states(b"ab").contains(&&b"a"[..]));
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie(b"a=1; gw=xyz; b=2", b"gw"), Some(&b"xyz"[..]));
        assert_eq!(cookie(b"gwx=1", b"gw"), None);
        assert_eq!(
            set_cookie("gw", "v", true, Some(0)),
            "gw=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0"
        );
    }
}

//! Remote key sets (`auth_jwt_key_request`): what a fetched response must look like, and how
//! long a fetched set stays fresh. The nginx glue does the fetching (a subrequest) and keeps
//! the result in shared memory; the rules are here, testable without nginx.

use crate::jwt::json;
use crate::jwt::{KeyError, KeySet};

/// How long fetched sets live (all in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `auth_jwt_key_cache`: the longest a set is used before it is fetched again.
    pub cache_ms: u64,
    /// `auth_jwt_key_refresh_interval`: the shortest time between two fetches (after a
    /// failure, or for a token with an unknown `kid`), across all workers.
    pub refresh_ms: u64,
    /// `auth_jwt_key_max_stale`: how long the last good set stays in force after it should
    /// have been refreshed, while the provider keeps failing.
    pub max_stale_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            cache_ms: 10 * 60_000,
            refresh_ms: 30_000,
            max_stale_ms: 24 * 3_600_000,
        }
    }
}

impl Timing {
    /// How long a set fetched now is fresh: the provider's `max-age` when it gave one, kept
    /// within `[refresh_ms, cache_ms]`; otherwise `cache_ms`.
    pub fn fresh_for(&self, max_age_secs: Option<u64>) -> u64 {
        let lo = self.refresh_ms.min(self.cache_ms);
        match max_age_secs {
            Some(s) => s.saturating_mul(1000).clamp(lo, self.cache_ms),
            None => self.cache_ms,
        }
    }
}

/// `max-age` of a `Cache-Control` value, in seconds (`no-cache`/`no-store` count as 0).
pub fn parse_max_age(cache_control: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(cache_control).ok()?;
    let mut found = None;
    for part in text.split(',') {
        let part = part.trim();
        let lower = part.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            found = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    found
}

/// The parts of a key-set response the glue hands over.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: usize,
    pub content_type: &'a [u8],
    pub content_encoding: &'a [u8],
    pub body: &'a [u8],
}

/// Checks a fetched response and loads its keys. Refused: a status other than 200, a content
/// type that is not JSON (`application/json`, `application/jwk-set+json`, anything `+json`),
/// any content encoding (a gzip body is not JSON), an empty or oversized body, bad JSON
/// (parsed as strictly as a token: no duplicate member names, nesting limited), and a set
/// without a usable signing key (`use: enc` only). Keys that cannot be used next to good
/// ones (symmetric, weak, degenerate, exotic) are skipped, not fatal: see
/// [`KeySet::load_remote`]. The second value says why each skipped key was skipped, also when
/// the set as a whole is refused.
pub fn load_response(resp: &Response, max_body: usize) -> (Result<KeySet, String>, Vec<KeyError>) {
    if let Err(why) = check_response(resp, max_body, "a key set") {
        return (Err(why), Vec::new());
    }
    let (set, skipped) = KeySet::load_remote(resp.body);
    (set.map_err(|e| e.reason().to_string()), skipped)
}

/// The checks a key set and a discovery document share: status, content type and encoding,
/// body size, and that the body is a JSON object (it is then parsed strictly). `what` names
/// the document in the messages.
fn check_response(resp: &Response, max_body: usize, what: &str) -> Result<(), String> {
    if resp.status != 200 {
        return Err(format!("status {}", resp.status));
    }
    let ct = String::from_utf8_lossy(resp.content_type).to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !(mime == "application/json" || mime.ends_with("+json")) {
        return Err(format!(
            "content type \"{}\" is not JSON",
            mime.escape_default()
        ));
    }
    let enc = resp.content_encoding.trim_ascii();
    if !enc.is_empty() && !enc.eq_ignore_ascii_case(b"identity") {
        return Err(format!(
            "content encoding \"{}\" ({what} must be sent uncompressed)",
            String::from_utf8_lossy(enc).escape_default()
        ));
    }
    if resp.body.is_empty() {
        return Err("empty body".into());
    }
    if resp.body.len() > max_body {
        return Err(format!(
            "body of {} bytes, the limit is {max_body}",
            resp.body.len()
        ));
    }
    let trimmed = resp.body.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return Err("body is not a JSON object".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &[u8] = include_bytes!("../../t/keys/jwks.json");
    const ENC_ONLY: &[u8] = include_bytes!("../../t/keys/enc-only.jwks");

    fn resp<'a>(status: usize, ct: &'a [u8], enc: &'a [u8], body: &'a [u8]) -> Response<'a> {
        Response {
            status,
            content_type: ct,
            content_encoding: enc,
            body,
        }
    }

    #[test]
    fn accepts_a_good_set() {
        let set = load_response(
            &resp(200, b"application/json; charset=utf-8", b"", JWKS),
            1 << 20,
        )
        .0
        .expect("good set");
        assert!(set.len() >= 5);
        assert!(
            load_response(&resp(200, b"application/jwk-set+json", b"", JWKS), 1 << 20)
                .0
                .is_ok()
        );
    }

    #[test]
    fn refuses_each_failure_mode() {
        let cases: Vec<(Response, &str)> = vec![
            (resp(500, b"application/json", b"", JWKS), "status 500"),
            (resp(200, b"text/html", b"", JWKS), "not JSON"),
            (resp(200, b"application/json", b"gzip", JWKS), "encoding"),
            (resp(200, b"application/json", b"", b""), "empty"),
            (
                resp(200, b"application/json", b"", b"{\"keys\": [}"),
                "JSON",
            ),
            (
                resp(200, b"application/json", b"", b"[1,2]"),
                "not a JSON object",
            ),
            (resp(200, b"application/json", b"", ENC_ONLY), "usable"),
        ];
        for (r, want) in cases {
            let e = load_response(&r, 1 << 20).0.expect_err(want);
            assert!(e.contains(want), "{e} should mention {want}");
        }
        let big = vec![b' '; 100];
        assert!(
            load_response(&resp(200, b"application/json", b"", &big), 10)
                .0
                .unwrap_err()
                .contains("limit")
        );
    }

    const JSON: &[u8] = b"application/json";

    #[test]
    fn skipped_keys_are_reported() {
        // An HMAC secret next to a public key: the set loads, the secret is reported as
        // symmetric. Only secrets: refused, and still reported.
        let pub_key = r#"{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let oct =
            r#"{"kty":"oct","kid":"hs","k":"c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IHNlY3JldA"}"#;
        let body = format!(r#"{{"keys":[{oct},{pub_key}]}}"#);
        let (set, skipped) = load_response(&resp(200, JSON, b"", body.as_bytes()), 1 << 20);
        assert_eq!(set.unwrap().len(), 1);
        assert!(skipped.len() == 1 && skipped[0].is_symmetric());
        let body = format!(r#"{{"keys":[{oct}]}}"#);
        let (set, skipped) = load_response(&resp(200, JSON, b"", body.as_bytes()), 1 << 20);
        assert!(set.unwrap_err().contains("no usable signing key"));
        assert!(skipped.len() == 1 && skipped[0].is_symmetric());
        // A refused response reports no key.
        let (set, skipped) = load_response(&resp(500, JSON, b"", body.as_bytes()), 1 << 20);
        assert!(set.is_err() && skipped.is_empty());
    }

    #[test]
    fn key_sets_are_parsed_strictly() {
        let key = r#"{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert!(load_response(
            &resp(200, JSON, b"", format!(r#"{{"keys":[{key}]}}"#).as_bytes()),
            1 << 20
        )
        .0
        .is_ok());
        for body in [
            format!(r#"{{"keys":[{key}],"keys":[]}}"#),
            format!(r#"{{"keys":[],"keys":[{key}]}}"#),
            key.replace(r#""kid":"ed""#, r#""kid":"ed","kid":"other""#),
            format!(
                r#"{{"keys":[{}]}}"#,
                key.replace(r#""kid":"ed""#, r#""kid":"ed","kid":"other""#)
            ),
            format!(
                r#"{{"keys":[{}]}}"#,
                key.replace(r#""crv""#, r#""x":"AA","crv""#)
            ),
        ] {
            let (set, skipped) = load_response(&resp(200, JSON, b"", body.as_bytes()), 1 << 20);
            let e = set.expect_err(&body);
            assert!(e.contains("duplicate member name"), "{e}");
            assert!(skipped.is_empty());
        }
        let deep = format!(
            r#"{{"keys":[{key}],"x":{}1{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        let e = load_response(&resp(200, JSON, b"", deep.as_bytes()), 1 << 20)
            .0
            .unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
    }

    #[test]
    fn max_age_within_bounds() {
        let t = Timing {
            cache_ms: 600_000,
            refresh_ms: 30_000,
            max_stale_ms: 0,
        };
        assert_eq!(t.fresh_for(None), 600_000);
        assert_eq!(t.fresh_for(Some(120)), 120_000);
        assert_eq!(t.fresh_for(Some(5)), 30_000);
        assert_eq!(t.fresh_for(Some(86_400)), 600_000);
        assert_eq!(parse_max_age(b"public, max-age=300"), Some(300));
        assert_eq!(parse_max_age(b"no-store"), Some(0));
        assert_eq!(parse_max_age(b"private"), None);
        assert_eq!(parse_max_age(b"max-age=abc"), None);
    }
}

/// What the glue needs from an OpenID Provider's discovery document
/// (`/.well-known/openid-configuration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// `issuer`: becomes the required `iss` unless `auth_jwt_issuer` says otherwise.
    pub issuer: String,
    /// `jwks_uri`: where the key set is (exposed as `$jwt_jwks_uri`).
    pub jwks_uri: String,
    /// The endpoints a relying party uses (`oidc_provider`), when the document names them.
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
}

/// An http(s) URL with nothing that could break out of a header or a query string.
fn plain_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && !u.bytes().any(|b| b <= b' ' || b == b'"' || b == 0x7f)
}

/// Checks a fetched discovery document (same response rules as a key set, and parsed as
/// strictly: two `issuer` or `jwks_uri` members refuse it, they do not let the last one win)
/// and extracts the issuer and the key set's URL (`http://` or `https://`, no spaces or
/// quotes).
pub fn load_discovery(resp: &Response, max_body: usize) -> Result<Discovery, String> {
    check_response(resp, max_body, "the discovery document")?;
    let v = json::parse_object(resp.body).map_err(|e| e.to_string())?;
    let field = |name: &str| -> Result<String, String> {
        v.get(name)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("no \"{name}\" string"))
    };
    let issuer = field("issuer")?;
    let jwks_uri = field("jwks_uri")?;
    if !plain_url(&jwks_uri) {
        return Err("\"jwks_uri\" is not an http(s) URL".into());
    }
    let endpoint = |name: &str| -> Result<Option<String>, String> {
        match v.get(name) {
            None => Ok(None),
            Some(x) => match x.as_str() {
                Some(u) if plain_url(u) => Ok(Some(u.to_string())),
                _ => Err(format!("\"{name}\" is not an http(s) URL")),
            },
        }
    };
    Ok(Discovery {
        issuer,
        jwks_uri,
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        end_session_endpoint: endpoint("end_session_endpoint")?,
    })
}

#[cfg(test)]
mod discovery_tests {
    use super::*;

    #[test]
    fn discovery_document() {
        let body = br#"{"issuer":"https://idp.example/realms/a","jwks_uri":"https://idp.example/certs","x":1}"#;
        let r = Response {
            status: 200,
            content_type: b"application/json",
            content_encoding: b"",
            body,
        };
        let d = load_discovery(&r, 1 << 16).expect("valid");
        assert_eq!(d.issuer, "https://idp.example/realms/a");
        assert_eq!(d.jwks_uri, "https://idp.example/certs");
        for bad in [
            &br#"{"issuer":"x"}"#[..],
            br#"{"issuer":"x","jwks_uri":"file:///etc/passwd"}"#,
            br#"{"issuer":"x","jwks_uri":"https://a b"}"#,
            b"nope",
        ] {
            let r = Response {
                status: 200,
                content_type: b"application/json",
                content_encoding: b"",
                body: bad,
            };
            assert!(load_discovery(&r, 1 << 16).is_err());
        }
    }

    #[test]
    fn discovery_is_parsed_strictly() {
        let load = |body: &[u8]| {
            load_discovery(
                &Response {
                    status: 200,
                    content_type: b"application/json",
                    content_encoding: b"",
                    body,
                },
                1 << 16,
            )
        };
        for (body, why) in [
            (
                &br#"{"issuer":"https://a","issuer":"https://b","jwks_uri":"https://a/k"}"#[..],
                "duplicate member name",
            ),
            (
                br#"{"issuer":"https://a","jwks_uri":"https://a/k","jwks_uri":"https://b/k"}"#,
                "duplicate member name",
            ),
            (
                br#"{"issuer":"https://a","jwks_uri":"https://a/k","x":{"y":1,"y":2}}"#,
                "duplicate member name",
            ),
            // The same name spelled with an escape is the same name.
            (
                br#"{"issuer":"https://a","issuer":"https://b","jwks_uri":"https://a/k"}"#,
                "duplicate member name",
            ),
            (b"", "empty body"),
            (b"[]", "not a JSON object"),
            (
                br#"{"issuer":"https://a","jwks_uri":"https://a/k"} x"#,
                "invalid JSON",
            ),
        ] {
            let e = load(body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let deep = format!(
            r#"{{"issuer":"https://a","jwks_uri":"https://a/k","x":{}1{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(load(deep.as_bytes()).unwrap_err().contains("nested deeper"));
        assert!(load(br#"{"issuer":"https://a","jwks_uri":"https://a/k"}"#).is_ok());
    }
}

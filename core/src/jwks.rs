//! Remote key sets (`auth_jwt_key_request`): what a fetched response must look like, and how
//! long a fetched set stays fresh. The nginx glue does the fetching (a subrequest) and keeps
//! the result in shared memory; the rules are here, testable without nginx.

use crate::jwt::KeySet;

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
/// any content encoding (a gzip body is not JSON), an empty or oversized body, bad JSON, and a
/// set without a usable signing key (`use: enc` only). Exotic keys next to good ones are
/// skipped, not fatal.
pub fn load_response(resp: &Response, max_body: usize) -> Result<KeySet, String> {
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
            "content encoding \"{}\" (a key set must be sent uncompressed)",
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
    KeySet::load_lenient(resp.body)
        .map(|(set, _skipped)| set)
        .map_err(|e| e.reason().to_string())
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
        .expect("good set");
        assert!(set.len() >= 5);
        assert!(load_response(&resp(200, b"application/jwk-set+json", b"", JWKS), 1 << 20).is_ok());
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
            let e = load_response(&r, 1 << 20).expect_err(want);
            assert!(e.contains(want), "{e} should mention {want}");
        }
        let big = vec![b' '; 100];
        assert!(
            load_response(&resp(200, b"application/json", b"", &big), 10)
                .unwrap_err()
                .contains("limit")
        );
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

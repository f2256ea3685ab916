//! Request-time JWT authentication: token extraction, the per-worker verification cache, and
//! the answer (401/403/500 with `WWW-Authenticate`) when a token is refused.
//!
//! The outcome is computed at most once per request and kept in the request context; the
//! access handler and every `$jwt_*` variable read that one result, whichever runs first
//! (a `map` or `limit_req_zone` key may evaluate a claim before the access phase).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gateway_core::bearer::bearer_token;
use gateway_core::jwt::{
    check_claims, decode_and_verify_signature, AlgSet, JwtError, KeySet, TokenCache, Verified,
};
use nginx_sys::{ngx_cached_time, ngx_int_t, NGX_LOG_ERR, NGX_LOG_INFO};
use ngx::http::Request;

use super::{ctx::RequestCtx, set_www_authenticate};
use crate::conf::jwt::JwtRuntime;

/// Entries of the per-worker cache of verified tokens (`auth_jwt_cache`); 0 disables it.
pub static CACHE_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_CACHE_SIZE);
/// Default `auth_jwt_cache size=`.
pub const DEFAULT_CACHE_SIZE: usize = 1024;

thread_local! {
    static CACHE: RefCell<Option<TokenCache>> = const { RefCell::new(None) };
}

/// What authentication decided for a request.
pub struct AuthOutcome {
    /// The location configuration the outcome was computed for.
    pub runtime: *const JwtRuntime,
    /// The token with a valid signature (even if a claim check then failed).
    pub verified: Option<Arc<Verified>>,
    /// Why the token was refused; `None` when it is valid.
    pub error: Option<JwtError>,
    /// A valid token failed an `auth_jwt_require` check.
    pub denied_by_requirement: bool,
}

impl AuthOutcome {
    /// The token is valid: signature, time claims and policy.
    pub fn valid(&self) -> Option<&Verified> {
        match self.error {
            None => self.verified.as_deref(),
            Some(_) => None,
        }
    }

    /// `$jwt_status`: `valid`, `invalid`, `missing` or `error` (keys unavailable).
    pub fn status(&self) -> &'static str {
        match &self.error {
            None => "valid",
            Some(JwtError::Missing) => "missing",
            Some(JwtError::KeyUnavailable) => "error",
            Some(_) => "invalid",
        }
    }
}

fn now() -> i64 {
    // SAFETY: nginx keeps `ngx_cached_time` pointing at a valid, updated time slot.
    unsafe { (*ngx_cached_time).sec }
}

fn token<'r>(request: &'r Request, rt: &JwtRuntime) -> Option<&'r [u8]> {
    match rt.token {
        // SAFETY: the complex value was compiled from this configuration.
        Some(cv) => request
            .get_complex_value(unsafe { &*cv.0 })
            .map(|s| s.as_bytes())
            .filter(|s| !s.is_empty()),
        None => {
            let h = request.as_ref().headers_in.authorization;
            if h.is_null() {
                return None;
            }
            // SAFETY: a non-null header element of the live request.
            bearer_token(unsafe { (*h).value.as_bytes() })
        }
    }
}

/// Whether the request carries a token where the location's `auth_jwt` looks for one.
pub fn has_token(request: &Request, rt: &JwtRuntime) -> bool {
    token(request, rt).is_some()
}

/// The keys and algorithms a location verifies with now: its key files, plus the fetched set
/// when it uses `auth_jwt_key_request`. `None` when there is nothing to verify with.
fn keys_for(request: &Request, rt: &JwtRuntime) -> Option<(Arc<KeySet>, AlgSet)> {
    match &rt.remote {
        None => Some((rt.keys.clone(), rt.allowed)),
        Some(remote) => {
            let snap = super::jwks::snapshot_now(remote);
            super::jwks::current(
                &rt.current,
                &rt.keys,
                rt.policy.algorithms,
                remote,
                &snap,
                request.log(),
            )
        }
    }
}

fn verify_cached(
    request: &Request,
    token: &[u8],
    rt: &JwtRuntime,
    now: i64,
) -> Result<Arc<Verified>, JwtError> {
    let Some((keys, allowed)) = keys_for(request, rt) else {
        return Err(JwtError::KeyUnavailable);
    };
    let size = CACHE_SIZE.load(Ordering::Relaxed);
    let keyset = keys.id();
    // The token is hashed once: a miss keeps its slot for the insert.
    let mut slot = None;
    if size > 0 {
        let hit = CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let cache = c.get_or_insert_with(|| {
                TokenCache::new(size)
                    .unwrap_or_else(|_| TokenCache::with_seed(size, gateway_core::reqid::os_seed()))
            });
            cache.lookup(keyset, token, now)
        });
        super::metrics::inc_cache(hit.is_ok());
        match hit {
            Ok(v) => {
                gw_debug!(request, "jwt: token from the cache");
                return Ok(v);
            }
            Err(s) => slot = Some(s),
        }
    }
    let v = match decode_and_verify_signature(token, &keys, allowed, rt.policy.max_token_size) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            gw_debug!(request, "jwt: token failed verification");
            return Err(e);
        }
    };
    gw_debug!(request, "jwt: token verified");
    if let Some(slot) = slot {
        CACHE.with(|c| {
            if let Some(cache) = c.borrow_mut().as_mut() {
                cache.insert_at(slot, v.clone(), now);
            }
        });
    }
    Ok(v)
}

/// Authenticates the request against `rt`, once: later calls return the stored outcome
/// (recomputed only if the request moved to a location with a different configuration).
pub fn authenticate<'c>(
    request: &Request,
    ctx: &'c mut RequestCtx,
    rt: &Rc<JwtRuntime>,
) -> &'c AuthOutcome {
    let rtp = Rc::as_ptr(rt);
    if ctx.auth.as_ref().is_some_and(|a| a.runtime == rtp) {
        return ctx.auth.as_ref().expect("checked above");
    }
    let outcome = match token(request, rt) {
        None => AuthOutcome {
            runtime: rtp,
            verified: None,
            error: Some(JwtError::Missing),
            denied_by_requirement: false,
        },
        Some(t) => {
            let now = now();
            match verify_cached(request, t, rt, now) {
                Ok(v) => {
                    let mut error = check_claims(&v, &rt.policy, now).err();
                    // With discovery and no auth_jwt_issuer, the provider's issuer is required;
                    // when it is not known (no usable discovery document), nothing passes.
                    let discovered = rt
                        .remote
                        .as_ref()
                        .filter(|r| r.discovery.is_some() && rt.policy.issuers.is_empty());
                    if let (None, Some(remote)) = (&error, discovered) {
                        error = match super::jwks::discovery(remote, request.log()) {
                            None => Some(JwtError::KeyUnavailable),
                            Some(d) if v.iss() != Some(d.issuer.as_str()) => {
                                Some(JwtError::BadIssuer)
                            }
                            Some(_) => None,
                        };
                    }
                    AuthOutcome {
                        runtime: rtp,
                        verified: Some(v),
                        error,
                        denied_by_requirement: false,
                    }
                }
                Err(e) => AuthOutcome {
                    runtime: rtp,
                    verified: None,
                    error: Some(e),
                    denied_by_requirement: false,
                },
            }
        }
    };
    ctx.auth.insert(outcome)
}

/// The status of the first `auth_jwt_require` of the location that does not hold for the
/// request's token (a bearer token, or the ID token of a browser session).
pub fn failed_requirement(request: &Request, rt: &JwtRuntime) -> Option<u16> {
    for req in &rt.requirements {
        for cv in &req.values {
            // SAFETY: the complex value was compiled from this configuration.
            let ok = request
                .get_complex_value(unsafe { &*cv.0 })
                .is_some_and(|v| truthy(v.as_bytes()));
            if !ok {
                return Some(req.status);
            }
        }
    }
    None
}

/// "a value is non-empty and not 0", as NGINX Plus's `auth_jwt_require`.
fn truthy(v: &[u8]) -> bool {
    !v.is_empty() && v != b"0"
}

/// The access-phase decision, in the terms of nginx's access modules: `NGX_OK` when the token
/// is valid and meets every requirement (access granted: under `satisfy any` nginx skips the
/// remaining access checks), `NGX_AGAIN` while keys are being fetched, 401 or 403 with a
/// `WWW-Authenticate` challenge when refused, another status on an error.
pub fn access(request: &mut Request, ctx: &mut RequestCtx, rt: &Rc<JwtRuntime>) -> ngx_int_t {
    decide(request, ctx, rt).unwrap_or(nginx_sys::NGX_OK as ngx_int_t)
}

/// [`access`], with `None` for a granted request.
fn decide(request: &mut Request, ctx: &mut RequestCtx, rt: &Rc<JwtRuntime>) -> Option<ngx_int_t> {
    let log = request.log();
    if let Some(remote) = &rt.remote {
        use super::jwks::{plan, wait, Plan};
        match plan(request, ctx, remote, false) {
            Plan::Wait => {
                wait(request, ctx);
                return Some(nginx_sys::NGX_AGAIN as ngx_int_t);
            }
            Plan::Verify | Plan::Unavailable => {}
        }
        // Variables may have evaluated the token before the keys arrived: decide again.
        if ctx.jwks.fetched
            && ctx.auth.as_ref().is_some_and(|a| {
                matches!(
                    a.error,
                    Some(
                        JwtError::KeyUnavailable
                            | JwtError::UnknownKey(_)
                            | JwtError::AlgNotAllowed(_)
                    )
                )
            })
        {
            ctx.auth = None;
        }
        // With no auth_jwt_algorithms, the algorithms allowed are those of the keys held: a
        // token signed with a new key of another type (an RSA set rotated to EC) is refused
        // as alg_not_allowed rather than unknown_key, and must trigger the refresh as well.
        let unknown = matches!(
            authenticate(request, ctx, rt).error,
            Some(JwtError::UnknownKey(_) | JwtError::AlgNotAllowed(_))
        );
        // A kid we do not know may be a rotated key: refresh (at most once per refresh
        // interval, one fetch for all workers), then decide again.
        if unknown && !ctx.jwks.fetched {
            if let Plan::Wait = plan(request, ctx, remote, true) {
                ctx.auth = None;
                wait(request, ctx);
                return Some(nginx_sys::NGX_AGAIN as ngx_int_t);
            }
        }
    }
    let outcome = authenticate(request, ctx, rt);
    let (status, error) = match &outcome.error {
        None => {
            let failed = failed_requirement(request, rt);
            match failed {
                None => return None,
                Some(s) => {
                    if let Some(a) = ctx.auth.as_mut() {
                        a.denied_by_requirement = true;
                    }
                    gw_log!(
                        NGX_LOG_INFO,
                        log,
                        "jwt refused: auth_jwt_require failed (require_failed), status {s}"
                    );
                    (
                        s,
                        if s == 403 {
                            "insufficient_scope"
                        } else {
                            "invalid_token"
                        },
                    )
                }
            }
        }
        Some(JwtError::Missing) => {
            gw_log!(NGX_LOG_INFO, log, "jwt refused: no token (missing)");
            (401, "")
        }
        Some(JwtError::KeyUnavailable) => {
            let status = rt.remote.as_ref().map_or(500, |r| r.unavailable);
            gw_log!(
                NGX_LOG_ERR,
                log,
                "jwt: no usable keys, answering {status} (key_unavailable)"
            );
            if status == 500 {
                return Some(500);
            }
            (status, "invalid_token")
        }
        Some(e @ JwtError::ClaimMismatch { rule, .. }) => {
            let s = rt.rule_status.get(*rule).copied().unwrap_or(403);
            gw_log!(NGX_LOG_INFO, log, "jwt refused: {e} ({})", e.code());
            (
                s,
                if s == 403 {
                    "insufficient_scope"
                } else {
                    "invalid_token"
                },
            )
        }
        Some(e) => {
            gw_log!(NGX_LOG_INFO, log, "jwt refused: {e} ({})", e.code());
            (401, "invalid_token")
        }
    };
    // SAFETY: the realm complex value was compiled from this configuration.
    let realm = request
        .get_complex_value(unsafe { &*rt.realm.0 })
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default();
    let mut v = Vec::with_capacity(realm.len() + 48);
    v.extend_from_slice(b"Bearer realm=\"");
    for &b in &realm {
        if b == b'"' || b == b'\\' {
            v.push(b'\\');
        }
        if gateway_core::header::is_field_byte(b) {
            v.push(b);
        }
    }
    v.push(b'"');
    if !error.is_empty() {
        v.extend_from_slice(b", error=\"");
        v.extend_from_slice(error.as_bytes());
        v.push(b'"');
    }
    if set_www_authenticate(request, &v).is_none() {
        return Some(500);
    }
    Some(status as ngx_int_t)
}

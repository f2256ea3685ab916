//! The module's nginx variables.

use std::cell::RefCell;

use gateway_core::jwt::var_string;
use gateway_core::reqid::RequestIds;
use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_t, ngx_int_t,
    ngx_str_t, ngx_uint_t, ngx_variable_value_t, NGX_ERROR, NGX_HTTP_VAR_PREFIX, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_string;

use super::jwt::{authenticate, AuthOutcome};
use super::{guard_request, set_not_found, set_variable, GatewayModule, RequestCtx};
use crate::conf::ClaimVar;

type GetHandler =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

/// The module's variables: name, handler, flags, data passed to the handler.
const VARIABLES: &[(ngx_str_t, GetHandler, u32, usize)] = &[
    (ngx_string!("gateway_request_id"), request_id_variable, 0, 0),
    (ngx_string!("gateway_log_json"), log_json_variable, 0, 0),
    (
        ngx_string!("gateway_traceparent"),
        trace_variable,
        0,
        T_PARENT,
    ),
    (
        ngx_string!("gateway_trace_id"),
        trace_variable,
        0,
        T_TRACE_ID,
    ),
    (ngx_string!("gateway_span_id"), trace_variable, 0, T_SPAN_ID),
    (
        ngx_string!("gateway_parent_span_id"),
        trace_variable,
        0,
        T_PARENT_SPAN_ID,
    ),
    (
        ngx_string!("jwt_claim_"),
        jwt_claim_variable,
        NGX_HTTP_VAR_PREFIX,
        0,
    ),
    (
        ngx_string!("jwt_header_"),
        jwt_header_variable,
        NGX_HTTP_VAR_PREFIX,
        0,
    ),
    (ngx_string!("jwt_payload"), jwt_payload_variable, 0, 0),
    (ngx_string!("jwt_status"), jwt_status_variable, 0, 0),
    (ngx_string!("jwt_error"), jwt_error_variable, 0, 0),
    (ngx_string!("jwt_jwks_uri"), jwt_jwks_uri_variable, 0, 0),
    (ngx_string!("oidc_jwks_uri"), oidc_endpoint_variable, 0, 0),
    (
        ngx_string!("oidc_token_endpoint"),
        oidc_endpoint_variable,
        0,
        1,
    ),
    (
        ngx_string!("rate_limit_status"),
        rate_limit_variable,
        0,
        RL_STATUS,
    ),
    (
        ngx_string!("rate_limit_remaining"),
        rate_limit_variable,
        0,
        RL_REMAINING,
    ),
    (
        ngx_string!("rate_limit_policy"),
        rate_limit_variable,
        0,
        RL_POLICY,
    ),
    (ngx_string!("gateway_consumer"), consumer_variable, 0, C_ID),
    (
        ngx_string!("gateway_consumer_username"),
        consumer_variable,
        0,
        C_USERNAME,
    ),
    (
        ngx_string!("gateway_consumer_groups"),
        consumer_variable,
        0,
        C_GROUPS,
    ),
    (ngx_string!("gateway_plan"), consumer_variable, 0, C_PLAN),
    (
        ngx_string!("gateway_credential"),
        consumer_variable,
        0,
        C_CREDENTIAL,
    ),
    (
        ngx_string!("gateway_policy_version"),
        consumer_variable,
        0,
        C_VERSION,
    ),
];

const T_PARENT: usize = 0;
const T_TRACE_ID: usize = 1;
const T_SPAN_ID: usize = 2;
const T_PARENT_SPAN_ID: usize = 3;

/// The location's and the http block's configuration of the request.
fn confs(request: &Request) -> Option<(&crate::conf::LocConf, &crate::conf::MainConf)> {
    Some((
        GatewayModule::location_conf(request)?,
        <GatewayModule as ngx::http::HttpModuleMainConf>::main_conf(request)?,
    ))
}

/// `$gateway_traceparent`, `$gateway_trace_id`, `$gateway_span_id`,
/// `$gateway_parent_span_id`: the request's trace context (see `gateway_trace`).
unsafe extern "C" fn trace_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let Some((lcf, mcf)) = confs(request) else {
            set_not_found(v);
            return NGX_OK as ngx_int_t;
        };
        let Some(ctx) = RequestCtx::get_or_create(request) else {
            set_not_found(v);
            return NGX_ERROR as ngx_int_t;
        };
        let Some(t) = super::trace::state(request, ctx, lcf, mcf) else {
            set_not_found(v);
            return NGX_OK as ngx_int_t;
        };
        let (trace, span, parent) = t.ids();
        match data {
            T_PARENT => set_copy(request, v, &t.traceparent()),
            T_TRACE_ID => set_copy(request, v, trace),
            T_SPAN_ID => set_copy(request, v, span),
            _ => match parent {
                Some(p) => set_copy(request, v, p),
                None => {
                    set_not_found(v);
                    NGX_OK as ngx_int_t
                }
            },
        }
    })
}

const C_ID: usize = 0;
const C_USERNAME: usize = 1;
const C_GROUPS: usize = 2;
const C_PLAN: usize = 3;
const C_CREDENTIAL: usize = 4;
const C_VERSION: usize = 5;

const RL_STATUS: usize = 0;
const RL_REMAINING: usize = 1;
const RL_POLICY: usize = 2;

/// Adds the module's variables to the configuration.
///
/// # Safety
/// `cf` must be the configuration nginx passed to `preconfiguration`.
pub unsafe fn register(cf: *mut ngx_conf_t) -> Result<(), ()> {
    for (name, handler, flags, data) in VARIABLES {
        let mut name = *name;
        // SAFETY: `cf` is valid; nginx copies the name into its own pool.
        let var: *mut ngx_http_variable_t =
            unsafe { ngx_http_add_variable(cf, &mut name, *flags as ngx_uint_t) };
        if var.is_null() {
            return Err(());
        }
        // SAFETY: `var` was just returned non-null by nginx.
        unsafe {
            (*var).get_handler = Some(*handler);
            // Prefix variables get their full name as data from nginx itself.
            if *flags != NGX_HTTP_VAR_PREFIX {
                (*var).data = *data;
            }
        }
    }
    Ok(())
}

thread_local! {
    /// This worker's request id generator, seeded on first use (always after fork, so every
    /// worker has its own key).
    static REQUEST_IDS: RefCell<Option<RequestIds>> = const { RefCell::new(None) };
}

pub fn next_request_id() -> [u8; 32] {
    REQUEST_IDS.with(|g| {
        let mut g = g.borrow_mut();
        g.get_or_insert_with(|| RequestIds::from_os(std::process::id()))
            .next_hex()
    })
}

/// `$gateway_request_id`: 32 hex digits, unique per request, stable within the request.
unsafe extern "C" fn request_id_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        #[cfg(feature = "test-hooks")]
        super::test_hooks::maybe_panic(request, "variable");
        let Some(ctx) = RequestCtx::get_or_create(request) else {
            set_not_found(v);
            return NGX_ERROR as ngx_int_t;
        };
        let id = ctx.request_id.get_or_insert_with(next_request_id);
        set_variable(request, v, id.as_ptr(), id.len());
        NGX_OK as ngx_int_t
    })
}

/// Copies `bytes` into the request pool and gives `v` the copy (through `set_variable`, which
/// withholds a value that could break a header line).
fn set_copy(request: &Request, v: *mut ngx_variable_value_t, bytes: &[u8]) -> ngx_int_t {
    if bytes.is_empty() {
        set_variable(request, v, b"".as_ptr(), 0);
        return NGX_OK as ngx_int_t;
    }
    let p = request.pool().alloc_unaligned(bytes.len()).cast::<u8>();
    if p.is_null() {
        set_not_found(v);
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: `p` has room for `bytes.len()` bytes and lives as long as the request.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    set_variable(request, v, p, bytes.len());
    NGX_OK as ngx_int_t
}

/// Evaluates a `$jwt_*` variable: authenticates the request (once) with the current
/// location's `auth_jwt` configuration, then lets `f` produce the value. Not found when
/// `auth_jwt` is not on here or `f` has nothing.
fn jwt_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    f: impl FnOnce(&AuthOutcome) -> Option<Vec<u8>>,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        // A browser session (auth_oidc): the ID token verified at sign-in.
        let session = RequestCtx::get(request)
            .and_then(|c| c.auth.as_ref())
            .filter(|a| a.runtime.is_null());
        if let Some(outcome) = session {
            return match f(outcome) {
                Some(bytes) => set_copy(request, v, &bytes),
                None => {
                    set_not_found(v);
                    NGX_OK as ngx_int_t
                }
            };
        }
        let Some(rt) = GatewayModule::location_conf(request).and_then(|c| c.jwt.runtime.clone())
        else {
            set_not_found(v);
            return NGX_OK as ngx_int_t;
        };
        let Some(ctx) = RequestCtx::get_or_create(request) else {
            set_not_found(v);
            return NGX_ERROR as ngx_int_t;
        };
        let outcome = authenticate(request, ctx, &rt);
        match f(outcome) {
            Some(bytes) => set_copy(request, v, &bytes),
            None => {
                set_not_found(v);
                NGX_OK as ngx_int_t
            }
        }
    })
}

/// The part of a prefix variable's name after `prefix` (nginx passes the full name in data;
/// it lives in the configuration, so no copy is made).
fn suffix(data: usize, prefix: &str) -> &'static str {
    // SAFETY: for prefix variables nginx passes a pointer to the variable's full name, which
    // stays valid for the configuration's life.
    let name: &'static ngx_str_t = unsafe { &*(data as *const ngx_str_t) };
    let bytes: &'static [u8] = if name.data.is_null() {
        b""
    } else {
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts(name.data, name.len) }
    };
    std::str::from_utf8(bytes.get(prefix.len()..).unwrap_or_default()).unwrap_or("")
}

/// `$jwt_claim_<name>`: a top-level claim of a valid token (arrays joined with commas,
/// objects as JSON).
unsafe extern "C" fn jwt_claim_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    let name = suffix(data, "jwt_claim_");
    jwt_variable(r, v, |o| {
        o.valid()?
            .claim(&[name])
            .map(|c| var_string(c).into_owned().into_bytes())
    })
}

/// `$jwt_header_<name>`: a JOSE header parameter of a valid token.
unsafe extern "C" fn jwt_header_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    let name = suffix(data, "jwt_header_");
    jwt_variable(r, v, |o| {
        o.valid()?
            .header(name)
            .map(|c| var_string(c).into_owned().into_bytes())
    })
}

/// `$jwt_payload`: the payload JSON of a valid token.
unsafe extern "C" fn jwt_payload_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    jwt_variable(r, v, |o| {
        Some(o.valid()?.payload_json().as_bytes().to_vec())
    })
}

/// `$jwt_status`: `valid`, `invalid`, `missing` or `error`.
unsafe extern "C" fn jwt_status_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    jwt_variable(r, v, |o| Some(o.status().as_bytes().to_vec()))
}

/// `$jwt_error`: the stable reason code of a refused token, empty for a valid one.
unsafe extern "C" fn jwt_error_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    jwt_variable(r, v, |o| {
        Some(
            o.error
                .as_ref()
                .map(|e| e.code())
                .unwrap_or("")
                .as_bytes()
                .to_vec(),
        )
    })
}

/// Variables defined by `auth_jwt_claim_set` / `auth_jwt_header_set`.
pub unsafe extern "C" fn claim_set_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: `data` is the `ClaimVar` allocated in the configuration pool for this variable.
    let cv = unsafe { &*(data as *const ClaimVar) };
    jwt_variable(r, v, |o| {
        let t = o.valid()?;
        let value = if cv.header {
            let (first, rest) = cv.path.split_first()?;
            rest.iter()
                .try_fold(t.header(first)?, |v, k| v.get(k.as_str()))
        } else {
            t.claim_path(&cv.path)
        }?;
        Some(var_string(value).into_owned().into_bytes())
    })
}

/// `$rate_limit_status` (PASSED, REJECTED, REJECTED_DRY_RUN), `$rate_limit_remaining` and
/// `$rate_limit_policy` of the most restrictive limit that applied; not found when
/// no limit applied to the request.
unsafe extern "C" fn rate_limit_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let o = RequestCtx::get_or_create(request).and_then(|c| c.rate_limit.as_ref());
        let Some(o) = o else {
            set_not_found(v);
            return NGX_OK as ngx_int_t;
        };
        match data {
            RL_STATUS => set_copy(request, v, o.status.as_str().as_bytes()),
            RL_REMAINING => set_copy(request, v, o.decision.remaining.to_string().as_bytes()),
            _ => set_copy(request, v, o.policy.as_bytes()),
        }
    })
}

/// `$gateway_consumer` (id), `$gateway_consumer_username`, `$gateway_consumer_groups`
/// (joined by ", "), `$gateway_plan`, `$gateway_credential` of the request's identified
/// consumer (not found before the access phase identified one), and `$gateway_policy_version`
/// (the version that identified the consumer, else the one in force).
unsafe extern "C" fn consumer_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let id = RequestCtx::get(request).and_then(|c| c.consumer.as_ref());
        let value: Option<std::borrow::Cow<'_, str>> = match (data, id) {
            (C_VERSION, Some(id)) => Some((*id.version).into()),
            (C_VERSION, None) => {
                <GatewayModule as ngx::http::HttpModuleMainConf>::main_conf(request)
                    .and_then(|m| m.policy.as_ref())
                    .and_then(super::policy::version_in_force)
                    .map(Into::into)
            }
            (_, None) => None,
            (C_ID, Some(id)) => Some(id.id.as_str().into()),
            (C_USERNAME, Some(id)) => Some(id.username().into()),
            (C_GROUPS, Some(id)) => Some(id.groups_joined().into()),
            (C_PLAN, Some(id)) => id.plan.as_deref().map(Into::into),
            (_, Some(id)) => Some(id.credential.as_str().into()),
        };
        match value {
            Some(s) => set_copy(request, v, s.as_bytes()),
            None => {
                set_not_found(v);
                NGX_OK as ngx_int_t
            }
        }
    })
}

/// `$gateway_log_json`: the request's JSON record (as `gateway_log` would write it for this
/// location), for `log_format` / `access_log` users.
unsafe extern "C" fn log_json_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let Some((lcf, mcf)) = confs(request) else {
            set_not_found(v);
            return NGX_OK as ngx_int_t;
        };
        let json = super::log::record_line(request, lcf, mcf, true);
        set_copy(request, v, &json)
    })
}

/// `$jwt_jwks_uri`: the `jwks_uri` of the discovery document of the (main) request's
/// location, for the key-request location to `proxy_pass` to.
unsafe extern "C" fn jwt_jwks_uri_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request; `main` is its main request.
        let main = unsafe { Request::from_ngx_http_request((*r).main) };
        // SAFETY: as above.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let uri = GatewayModule::location_conf(main)
            .and_then(|c| c.jwt.runtime.clone())
            .and_then(|rt| {
                let remote = rt.remote.as_ref()?;
                super::jwks::discovery(remote, request.log()).map(|d| d.jwks_uri)
            });
        match uri {
            Some(u) => set_copy(request, v, u.as_bytes()),
            None => {
                set_not_found(v);
                NGX_OK as ngx_int_t
            }
        }
    })
}

/// `$oidc_jwks_uri`, `$oidc_token_endpoint`: from the discovery document of the `auth_oidc`
/// provider of the (main) request's location, for the key and token locations' `proxy_pass`.
unsafe extern "C" fn oidc_endpoint_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx evaluates variables for a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        match super::oidc::endpoint(request, data) {
            Some(u) => set_copy(request, v, u.as_bytes()),
            None => {
                set_not_found(v);
                NGX_OK as ngx_int_t
            }
        }
    })
}

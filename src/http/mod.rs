//! Request-time glue: phase handlers, variables, the per-request context, and the panic
//! boundary that every entry point from nginx goes through.

use core::ptr;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
    ngx_http_phases_NGX_HTTP_LOG_PHASE, ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE,
    ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_str_t, ngx_table_elt_t, ngx_uint_t,
    ngx_variable_value_t, NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR, NGX_LOG_INFO,
    NGX_OK,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};

use crate::conf::{LocConf, MainConf};

mod ctx;
mod fetch;
pub mod jwks;
pub mod jwt;
pub mod log;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod ratelimit;
pub mod redis;
mod sync;
pub mod trace;
pub mod variables;

pub use ctx::RequestCtx;

/// Marker type implementing ngx's module traits.
pub struct GatewayModule;

// SAFETY: the module's loc conf slot holds a `LocConf` (see `conf::create_loc_conf`).
unsafe impl HttpModuleLocationConf for GatewayModule {
    type LocationConf = LocConf;
}

// SAFETY: the module's main conf slot holds a `MainConf` (see `conf::create_main_conf`).
unsafe impl HttpModuleMainConf for GatewayModule {
    type MainConf = MainConf;
}

thread_local! {
    /// Message of the last panic on this thread, recorded by our panic hook so the boundary
    /// can put it in nginx's error log instead of stderr.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            // One line for nginx's error log: "message (at file:line)".
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let msg = match info.location() {
                Some(l) => format!("{} (at {}:{})", text.replace('\n', " "), l.file(), l.line()),
                None => text.replace('\n', " "),
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = msg);
        }));
    });
}

fn take_panic_message() -> String {
    LAST_PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// nginx's cached wall-clock time in milliseconds: the same in every worker, and meaningful
/// across reloads (the shared zones' counters and leases survive them).
pub fn now_ms() -> u64 {
    // SAFETY: nginx keeps `ngx_cached_time` pointing at a valid, updated time slot.
    unsafe {
        let t = nginx_sys::ngx_cached_time;
        ((*t).sec as u64) * 1000 + (*t).msec as u64
    }
}

/// Runs a configuration-time callback; a panic is logged and turned into `on_panic`.
pub fn guard_conf<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            let log = ngx::log::ngx_cycle_log().as_ptr();
            gw_log!(NGX_LOG_ERR, log, "panic: {}", take_panic_message());
            on_panic
        }
    }
}

/// Runs a request-time callback; a panic is logged at `error` with its message and the
/// request gets 500, so a bug never takes the worker down.
pub fn guard_request(r: *mut ngx_http_request_t, f: impl FnOnce() -> ngx_int_t) -> ngx_int_t {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => {
            // SAFETY: `r` is the live request nginx called us with; its connection log is valid.
            let log: *mut ngx_log_t = unsafe { (*(*r).connection).log };
            gw_log!(NGX_LOG_ERR, log, "panic: {}", take_panic_message());
            NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
        }
    }
}

/// `preconfiguration`: registers the module's variables.
pub unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    install_panic_hook();
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls preconfiguration with a valid configuration.
        match unsafe { variables::register(cf) } {
            Ok(()) => NGX_OK as ngx_int_t,
            Err(()) => NGX_ERROR as ngx_int_t,
        }
    })
}

/// `postconfiguration`: installs the phase handlers.
pub unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls postconfiguration with a valid configuration.
        let cf = unsafe { &mut *cf };
        let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else {
            return NGX_ERROR as ngx_int_t;
        };
        // nginx runs a phase's handlers from the last registered to the first. auth_jwt goes
        // first in the array, so it runs after the access modules registered before it
        // (allow/deny, auth_basic, auth_request): under `satisfy any` an address or password
        // that grants access skips the signature check, under `satisfy all` a denied address
        // is answered 403 before any token is read, and no module can grant after auth_jwt
        // refused (its challenge never stays on a granted response).
        let phases = [
            (
                nginx_sys::ngx_http_phases_NGX_HTTP_POST_READ_PHASE,
                log::redact_request_line as Handler,
                false,
            ),
            (
                ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
                access_handler as Handler,
                true,
            ),
            (
                ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE,
                ratelimit::precontent_handler,
                false,
            ),
            (ngx_http_phases_NGX_HTTP_LOG_PHASE, log::log_handler, false),
        ];
        for (phase, handler, runs_last) in phases {
            // SAFETY: the phase handler arrays are nginx arrays of `ngx_http_handler_pt`.
            if unsafe {
                add_phase_handler(
                    &mut cmcf.phases[phase as usize].handlers,
                    handler,
                    runs_last,
                )
            }
            .is_none()
            {
                return NGX_ERROR as ngx_int_t;
            }
        }
        let Some(mcf) = GatewayModule::main_conf_mut(cf) else {
            return NGX_ERROR as ngx_int_t;
        };
        let mut index = |name: &'static str| {
            let mut n = ngx_str_t {
                len: name.len(),
                data: name.as_ptr().cast_mut(),
            };
            // SAFETY: `cf` is the configuration being parsed; nginx resolves the index later.
            let i = unsafe { nginx_sys::ngx_http_get_variable_index(cf, &mut n) };
            usize::try_from(i).ok()
        };
        let vars = (|| {
            Some(log::LogVars {
                host: index("host")?,
                upstream_addr: index("upstream_addr")?,
                upstream_status: index("upstream_status")?,
                upstream_response_time: index("upstream_response_time")?,
                traceparent: index("http_traceparent")?,
            })
        })();
        let Some(vars) = vars else {
            return NGX_ERROR as ngx_int_t;
        };
        mcf.log_vars = vars;
        if mcf.jwks_used {
            let size = mcf.jwks_zone_size.unwrap_or(jwks::DEFAULT_ZONE_SIZE);
            match jwks::add_zone(cf, size, &mcf.jwks_uris) {
                Ok(shm) => mcf.jwks_shm = shm,
                Err(e) => {
                    gw_conf_err!(cf, "{}", e);
                    return NGX_ERROR as ngx_int_t;
                }
            }
        }
        if let Err(e) = policy::add_zone(cf, mcf) {
            gw_conf_err!(cf, "{}", e);
            return NGX_ERROR as ngx_int_t;
        }
        metrics::finish_registry(cf, mcf);
        if let Err(e) = metrics::add_zone(cf, mcf) {
            gw_conf_err!(cf, "{}", e);
            return NGX_ERROR as ngx_int_t;
        }
        NGX_OK as ngx_int_t
    })
}

type Handler = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;

/// Registers a phase handler: appended (it runs before the handlers registered so far), or
/// with `runs_last` inserted at the front (it runs after them).
///
/// # Safety
/// `handlers` must be an nginx array of `ngx_http_handler_pt` (a phase's `handlers`).
unsafe fn add_phase_handler(
    handlers: &mut nginx_sys::ngx_array_t,
    handler: Handler,
    runs_last: bool,
) -> Option<()> {
    // SAFETY: the caller guarantees the element type; a pushed element is properly aligned,
    // and the array holds `nelts` initialized elements after the push.
    unsafe {
        let h = nginx_sys::ngx_array_push(handlers).cast::<ngx_http_handler_pt>();
        if h.is_null() {
            return None;
        }
        let first = handlers.elts.cast::<ngx_http_handler_pt>();
        if runs_last {
            ptr::copy(first, first.add(1), handlers.nelts - 1);
            *first = Some(handler);
        } else {
            *h = Some(handler);
        }
    }
    Some(())
}

/// `init_process`: per-worker setup.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    install_panic_hook();
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx passes the running cycle.
        let cycle = unsafe { &*cycle };
        if let Some(mcf) = GatewayModule::main_conf(cycle) {
            let size = mcf.jwt_cache.unwrap_or(jwt::DEFAULT_CACHE_SIZE);
            jwt::CACHE_SIZE.store(size, std::sync::atomic::Ordering::Relaxed);
            metrics::attach(mcf);
            jwks::attach(mcf.jwks_shm);
            sync::init_process(cycle, mcf);
            policy::init_process(cycle, mcf);
        }
        NGX_OK as ngx_int_t
    })
}

/// `exit_process`: per-worker cleanup.
pub unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    guard_conf((), policy::exit_process);
    guard_conf((), sync::exit_process)
}

/// Access phase: `auth_jwt`. Like nginx's own access modules it answers `NGX_OK` (granted),
/// `NGX_DECLINED` (nothing to check here), 401/403 (refused) or another status (an error),
/// and nginx's access-phase checker combines that with the other access modules under
/// `satisfy all|any`. Rate limits run later, in the precontent phase, whichever module granted
/// the request ([`ratelimit::precontent_handler`]).
unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx calls phase handlers with a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let Some(lcf) = GatewayModule::location_conf(request) else {
            return Status::NGX_DECLINED.into();
        };
        if !lcf.is_enabled() {
            gw_debug!(request, "access phase: disabled");
            return Status::NGX_DECLINED.into();
        }
        gw_debug!(request, "access phase: enabled");
        #[cfg(feature = "test-hooks")]
        test_hooks::maybe_panic(request, "access");
        if !matches!(lcf.oidc, Some(Some(_))) && !policy::wanted(lcf) && lcf.jwt.runtime.is_none() {
            return Status::NGX_DECLINED.into();
        }
        let start = metrics::timer();
        if let Some(Some(p)) = lcf.oidc {
            let Some(ctx) = RequestCtx::get_or_create(request) else {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            };
            // SAFETY: providers live in the configuration pool.
            let rc = oidc::access(request, ctx, lcf, unsafe { &*p });
            if rc != NGX_OK as ngx_int_t || !policy::wanted(lcf) {
                ctx.add_time(start);
                return rc;
            }
        }
        if policy::wanted(lcf) {
            let Some(ctx) = RequestCtx::get_or_create(request) else {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            };
            let rc = policy::access(request, ctx, lcf);
            ctx.add_time(start);
            return rc;
        }
        let Some(rt) = &lcf.jwt.runtime else {
            return Status::NGX_DECLINED.into();
        };
        let Some(ctx) = RequestCtx::get_or_create(request) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let rc = jwt::access(request, ctx, rt);
        ctx.add_time(start);
        rc
    })
}

/// Adds a response header (the value is copied into the request pool). Headers added in the
/// access phase stay on whatever response follows: proxied, static, or an error page.
pub fn push_header(
    request: &mut Request,
    key: &'static str,
    value: &[u8],
) -> Option<*mut ngx_table_elt_t> {
    let r = request.as_mut();
    // SAFETY: the request pool lives as long as the request; the header list belongs to it.
    unsafe {
        let data = nginx_sys::ngx_pnalloc(r.pool, value.len().max(1)).cast::<u8>();
        let h = nginx_sys::ngx_list_push(&mut r.headers_out.headers).cast::<ngx_table_elt_t>();
        if data.is_null() || h.is_null() {
            return None;
        }
        ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        // Zeroing also clears `next` (nginx >= 1.23) and `lowcase_key`.
        ptr::write_bytes(h, 0, 1);
        (*h).hash = 1;
        (*h).key = ngx_str_t {
            len: key.len(),
            data: key.as_ptr().cast_mut(),
        };
        (*h).value = ngx_str_t {
            len: value.len(),
            data,
        };
        Some(h)
    }
}

/// Test-only trigger of the panic boundary (feature `test-hooks`, built by `scripts/test`
/// only): a request header `X-Gateway-Test-Panic: <entry point>` makes that entry point
/// panic, so the suite can prove a panic answers 500, logs `[error]` and leaves the worker up.
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    use ngx::http::Request;

    pub fn maybe_panic(request: &Request, point: &str) {
        for h in request.headers_in_iterator() {
            let name = h.0.as_bytes();
            if name.eq_ignore_ascii_case(b"x-gateway-test-panic")
                && h.1.as_bytes() == point.as_bytes()
            {
                panic!("gateway test panic in {point}");
            }
        }
    }
}

/// Adds a `WWW-Authenticate` challenge to the response (kept by nginx's error pages for
/// 401/403) and links it from `headers_out.www_authenticate`, as nginx's access modules do:
/// under `satisfy any`, nginx drops the challenges linked there when another module grants
/// access. From nginx 1.23 the challenges of modules that refused before are kept linked too.
pub fn set_www_authenticate(request: &mut Request, value: &[u8]) -> Option<()> {
    let h = push_header(request, "WWW-Authenticate", value)?;
    let out = &mut request.as_mut().headers_out;
    #[cfg(nginx1_23)]
    // SAFETY: `h` is the element just pushed to the request's header list.
    unsafe {
        (*h).next = out.www_authenticate;
    }
    out.www_authenticate = h;
    Some(())
}

/// The rate-limit headers of `o` in the configured format(s), and `Retry-After` on rejection.
pub fn add_rate_limit_headers(request: &mut Request, o: &ratelimit::RlOutcome) -> Option<()> {
    use crate::conf::ratelimit::HeaderMode;
    let d = &o.decision;
    if o.status == ratelimit::RlStatus::Rejected {
        push_header(
            request,
            "Retry-After",
            d.retry_after_secs().to_string().as_bytes(),
        )?;
    }
    let (draft, legacy) = match o.headers {
        HeaderMode::Draft => (true, false),
        HeaderMode::Legacy => (false, true),
        HeaderMode::Both => (true, true),
        HeaderMode::Off => (false, false),
    };
    let reset = d.reset_secs().to_string();
    if draft {
        let policy = format!("\"{}\";q={};w={}", o.policy, o.policy_q, o.policy_w);
        push_header(request, "RateLimit-Policy", policy.as_bytes())?;
        let now = format!("\"{}\";r={};t={}", o.policy, d.remaining, d.reset_secs());
        push_header(request, "RateLimit", now.as_bytes())?;
    }
    if legacy {
        let limit = d.limit.to_string();
        let remaining = d.remaining.to_string();
        push_header(request, "X-RateLimit-Limit", limit.as_bytes())?;
        push_header(request, "X-RateLimit-Remaining", remaining.as_bytes())?;
        push_header(request, "X-RateLimit-Reset", reset.as_bytes())?;
        push_header(request, "RateLimit-Limit", limit.as_bytes())?;
        push_header(request, "RateLimit-Remaining", remaining.as_bytes())?;
        push_header(request, "RateLimit-Reset", reset.as_bytes())?;
    }
    Some(())
}

/// Whether the location has an `error_page` for `status`.
pub(crate) fn has_error_page(request: &Request, status: ngx_int_t) -> bool {
    let Some(clcf) = NgxHttpCoreModule::location_conf(request) else {
        return false;
    };
    if clcf.error_pages.is_null() {
        return false;
    }
    // SAFETY: `error_pages` is an nginx array of `ngx_http_err_page_t`.
    let pages = unsafe { (*clcf.error_pages).as_slice::<nginx_sys::ngx_http_err_page_t>() };
    pages.iter().any(|p| p.status as ngx_int_t == status)
}

/// Answers a rate-limited request: with the location's `error_page` for the status if there
/// is one, otherwise with an RFC 9457 problem+json body naming the violated policy.
pub fn reject_rate_limited(
    request: &mut Request,
    ctx: &RequestCtx,
    status: ngx_int_t,
) -> ngx_int_t {
    if has_error_page(request, status) {
        return status;
    }
    let (policy, retry) = ctx
        .rate_limit
        .as_ref()
        .map(|o| (o.policy.as_str(), o.decision.retry_after_secs()))
        .unwrap_or(("", 1));
    let title: &[u8] = if status == 429 {
        b"Too Many Requests"
    } else {
        b"Request Rejected"
    };
    let mut problem = gateway_core::log::Record::new();
    problem.str("type", b"about:blank");
    problem.str("title", title);
    problem.int("status", status as i64);
    problem.string(
        "detail",
        format!("rate limit \"{policy}\" exceeded, retry in {retry} s").into_bytes(),
    );
    problem.str("policy", policy.as_bytes());
    let mut body = Vec::with_capacity(200);
    problem.write_line(&mut body);
    let r: *mut ngx_http_request_t = request.as_mut();
    // SAFETY: `r` is the live request.
    let rc = unsafe { send_body(r, status, "application/problem+json", &body) };
    // SAFETY: the response is complete: finalize the request and return NGX_DONE, so the
    // phase checker does not touch the (possibly freed) request again.
    unsafe { nginx_sys::ngx_http_finalize_request(r, rc) };
    nginx_sys::NGX_DONE as ngx_int_t
}

/// Sends a complete response (status, content type, body copied into the request pool) and
/// returns nginx's result for the caller to finalize with (a content handler returns it).
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn send_body(
    r: *mut ngx_http_request_t,
    status: ngx_int_t,
    content_type: &'static str,
    body: &[u8],
) -> ngx_int_t {
    // SAFETY: the caller guarantees `r`; the copy lives in the request pool.
    unsafe {
        let data = nginx_sys::ngx_pnalloc((*r).pool, body.len().max(1)).cast::<u8>();
        if data.is_null() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        ptr::copy_nonoverlapping(body.as_ptr(), data, body.len());
        let mut cv: nginx_sys::ngx_http_complex_value_t = core::mem::zeroed();
        cv.value = ngx_str_t {
            len: body.len(),
            data,
        };
        let mut ct = ngx_str_t {
            len: content_type.len(),
            data: content_type.as_ptr().cast_mut(),
        };
        nginx_sys::ngx_http_send_response(r, status as ngx_uint_t, &mut ct, &mut cv)
    }
}

/// Gives a variable its value: `len` bytes at `data` that live as long as the request.
///
/// Every variable of the module gets its value here, so none can ever break a header line
/// (README, "Security"): a value holding a byte that may not appear in a header field (CR, LF,
/// NUL, the other control bytes but HTAB, and DEL; see [`gateway_core::header`]) is withheld.
/// The variable is then not found, exactly as if the claim were absent, and an `info` line says
/// which byte (never the value).
fn set_variable(request: &Request, v: *mut ngx_variable_value_t, data: *const u8, len: usize) {
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: the caller passes `len` readable bytes at `data`.
        unsafe { core::slice::from_raw_parts(data, len) }
    };
    if let Some(i) = gateway_core::header::first_unsafe_byte(bytes) {
        gw_log!(
            NGX_LOG_INFO,
            request.log(),
            "variable value withheld: it holds the control byte {:#04x}",
            bytes[i]
        );
        set_not_found(v);
        return;
    }
    // SAFETY: nginx passes a valid variable value slot; the bytes outlive the request.
    unsafe {
        (*v).set_len(len as u32);
        (*v).set_valid(1);
        (*v).set_no_cacheable(0);
        (*v).set_not_found(0);
        (*v).data = data.cast_mut();
    }
}

/// Marks a variable as not found (an empty value in `log_format`, false in `if`).
fn set_not_found(v: *mut ngx_variable_value_t) {
    // SAFETY: nginx passes a valid variable value slot.
    unsafe {
        (*v).set_not_found(1);
        (*v).set_valid(0);
        (*v).data = ptr::null_mut();
    }
}

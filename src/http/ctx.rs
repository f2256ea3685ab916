//! The per-request context: what the gateway learned about a request, computed once and read
//! by the access handler, the variables and the log phase.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{ngx_http_request_t, ngx_pool_cleanup_add, NGX_ALIGNMENT};
use ngx::http::{HttpModule, Request};

use super::GatewayModule;

/// Per-request state, allocated in the request pool (dropped with it).
#[derive(Default)]
pub struct RequestCtx {
    /// `$gateway_request_id`, generated on first use.
    pub request_id: Option<[u8; 32]>,
    /// What `auth_jwt` decided, once computed.
    pub auth: Option<super::jwt::AuthOutcome>,
    /// What the rate limiter decided. Once set, the limits are not applied again to the same
    /// request after an internal redirect (`index`, `try_files`, `error_page`, ...), as with
    /// nginx's `limit_req`.
    pub rate_limit: Option<super::ratelimit::RlOutcome>,
    /// A key-set fetch this request started or waits for.
    pub jwks: super::jwks::FetchState,
    /// The request's consumer, once identified (`auth_consumer`, `auth_api_key`).
    pub consumer: Option<super::policy::Identity>,
    /// The consumer layer's own per-request state.
    pub policy: super::policy::ConsumerState,
    /// `auth_oidc`: the sign-in under way.
    pub oidc: super::oidc::OidcState,
    /// Nanoseconds the gateway's access and limit handlers took for this request (summed
    /// over their runs), if any of them did something.
    pub gateway_ns: Option<u64>,
    /// The trace context, once made (`Some(None)`: none).
    pub trace: Option<Option<super::trace::TraceState>>,
}

impl RequestCtx {
    /// Adds the time since `start` (from `metrics::timer`, `None` when the histograms are
    /// off) to the gateway's own time of the request.
    pub fn add_time(&mut self, start: Option<std::time::Instant>) {
        let Some(start) = start else {
            return;
        };
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.gateway_ns = Some(self.gateway_ns.unwrap_or(0).saturating_add(ns));
    }
}

/// The context with the request it belongs to, kept in a cleanup of the request pool.
///
/// nginx zeroes every module context of a request on an internal redirect (`index`,
/// `try_files`, `error_page`, `rewrite ... last`, named locations), but the request and its
/// pool stay. Keeping the context in a pool cleanup lets us find it again afterwards (the way
/// nginx's realip module keeps its context), so a redirected request is not counted twice by
/// the rate limiter and keeps its request id. `owner` tells apart the subrequests, which share
/// the pool but are other requests.
struct Stored {
    owner: *const ngx_http_request_t,
    ctx: RequestCtx,
}

const _: () = assert!(core::mem::align_of::<Stored>() <= NGX_ALIGNMENT);

/// Cleanup handler: drops the context with the request pool.
unsafe extern "C" fn drop_stored(data: *mut c_void) {
    // SAFETY: `data` is the `Stored` written by `get_or_create`, dropped exactly once here.
    unsafe { ptr::drop_in_place(data.cast::<Stored>()) }
}

const DROP_STORED: unsafe extern "C" fn(*mut c_void) = drop_stored;

impl RequestCtx {
    /// The request's context if something created it (also after an internal redirect).
    pub fn get<'a>(request: &Request) -> Option<&'a mut RequestCtx> {
        // SAFETY: as in `get_or_create`.
        Self::find(request).map(|p| unsafe { &mut *p })
    }

    /// This module's context slot, or the context kept in the pool cleanup list for this very
    /// request (restored into the slot), or `None`.
    fn find(request: &Request) -> Option<*mut RequestCtx> {
        let module = GatewayModule::module();
        // SAFETY: `ctx` has a slot per HTTP module; ours holds null or a `RequestCtx`.
        let p = unsafe { *request.as_ref().ctx.add(module.ctx_index) }.cast::<RequestCtx>();
        if !p.is_null() {
            return Some(p);
        }
        let r: *const ngx_http_request_t = request.as_ref();
        // SAFETY: the request pool and its cleanup list are valid while the request lives;
        // entries with our handler hold a `Stored`.
        unsafe {
            let mut c = (*request.as_ref().pool).cleanup;
            while !c.is_null() {
                if (*c).handler.map(|h| h as usize) == Some(DROP_STORED as usize) {
                    let stored = (*c).data.cast::<Stored>();
                    if (*stored).owner == r {
                        let p: *mut RequestCtx = &mut (*stored).ctx;
                        request.set_module_ctx(p.cast(), module);
                        return Some(p);
                    }
                }
                c = (*c).next;
            }
        }
        None
    }

    /// The request's context, created on first use (and found again after an internal
    /// redirect). `None` only when the pool is exhausted.
    ///
    /// The context lives in the request pool, not inside `Request`, so its borrow is not tied
    /// to the `Request` borrow: callers hold both while the request is being processed.
    pub fn get_or_create<'a>(request: &Request) -> Option<&'a mut RequestCtx> {
        if let Some(p) = Self::find(request) {
            // SAFETY: `p` is this module's context for the request, in the request pool and
            // only accessed from the worker's single thread while the request lives.
            return Some(unsafe { &mut *p });
        }
        let module = GatewayModule::module();
        let r: *const ngx_http_request_t = request.as_ref();
        let pool = request.as_ref().pool;
        // SAFETY: the request pool is valid while the request lives; the cleanup entry gets a
        // `Stored` written before its handler is set.
        unsafe {
            let cln = ngx_pool_cleanup_add(pool, core::mem::size_of::<Stored>());
            if cln.is_null() {
                return None;
            }
            let stored = (*cln).data.cast::<Stored>();
            ptr::write(
                stored,
                Stored {
                    owner: r,
                    ctx: RequestCtx::default(),
                },
            );
            (*cln).handler = Some(DROP_STORED);
            let p: *mut RequestCtx = &mut (*stored).ctx;
            request.set_module_ctx(p.cast(), module);
            Some(&mut *p)
        }
    }
}

//! The per-request context: what the gateway learned about a request, computed once and read
//! by the access handler, the variables and the log phase.

use ngx::http::{HttpModule, Request};

use super::GatewayModule;

/// Per-request state, allocated in the request pool (dropped with it).
#[derive(Default)]
pub struct RequestCtx {
    /// `$gateway_request_id`, generated on first use.
    pub request_id: Option<[u8; 32]>,
    /// What `auth_jwt` decided, once computed.
    pub auth: Option<super::jwt::AuthOutcome>,
    /// What the rate limiter decided.
    pub rate_limit: Option<super::ratelimit::RlOutcome>,
}

impl RequestCtx {
    /// The request's context if something created it.
    pub fn get<'a>(request: &Request) -> Option<&'a mut RequestCtx> {
        let p = request
            .get_module_ctx::<RequestCtx>(GatewayModule::module())
            .map(|c| c as *const RequestCtx as *mut RequestCtx)?;
        // SAFETY: as in `get_or_create`.
        Some(unsafe { &mut *p })
    }

    /// The request's context, created on first use. `None` only when the pool is exhausted.
    ///
    /// The context lives in the request pool, not inside `Request`, so its borrow is not tied
    /// to the `Request` borrow: callers hold both while the request is being processed.
    pub fn get_or_create<'a>(request: &Request) -> Option<&'a mut RequestCtx> {
        let module = GatewayModule::module();
        let existing = request
            .get_module_ctx::<RequestCtx>(module)
            .map(|c| c as *const RequestCtx as *mut RequestCtx);
        let p = match existing {
            Some(p) => p,
            None => {
                let p = request.pool().allocate(RequestCtx::default());
                if p.is_null() {
                    return None;
                }
                request.set_module_ctx(p.cast(), module);
                p
            }
        };
        // SAFETY: `p` is this module's context for the request, allocated in the request pool
        // and only accessed from the worker's single thread while the request lives.
        Some(unsafe { &mut *p })
    }
}

//! The per-request context: what the gateway learned about a request, computed once and read
//! by the access handler, the variables and the log phase.

use ngx::http::{HttpModule, Request};

use super::GatewayModule;

/// Per-request state, allocated in the request pool (dropped with it).
#[derive(Default)]
pub struct RequestCtx {
    /// `$gateway_request_id`, generated on first use.
    pub request_id: Option<[u8; 32]>,
}

impl RequestCtx {
    /// The request's context, created on first use. `None` only when the pool is exhausted.
    pub fn get_or_create(request: &mut Request) -> Option<&mut RequestCtx> {
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

//! Request-time glue: phase handlers, variables, the per-request context, and the panic
//! boundary that every entry point from nginx goes through.

use core::ptr;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
    ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_variable_value_t, NGX_ERROR,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR, NGX_OK,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};

use crate::conf::LocConf;

mod ctx;
mod variables;

pub use ctx::RequestCtx;

/// Marker type implementing ngx's module traits.
pub struct GatewayModule;

// SAFETY: the module's loc conf slot holds a `LocConf` (see `conf::create_loc_conf`).
unsafe impl HttpModuleLocationConf for GatewayModule {
    type LocationConf = LocConf;
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
            let msg = info.to_string();
            LAST_PANIC.with(|p| *p.borrow_mut() = msg);
        }));
    });
}

fn take_panic_message() -> String {
    LAST_PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()))
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
        let handlers = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize].handlers;
        // SAFETY: the phase handler array is an nginx array of `ngx_http_handler_pt`.
        let h = unsafe { nginx_sys::ngx_array_push(handlers) }.cast::<ngx_http_handler_pt>();
        if h.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: `h` points at a freshly pushed, properly aligned element.
        unsafe { *h = Some(access_handler) };
        NGX_OK as ngx_int_t
    })
}

/// `init_process`: per-worker setup.
pub unsafe extern "C" fn init_process(_cycle: *mut ngx_cycle_t) -> ngx_int_t {
    install_panic_hook();
    NGX_OK as ngx_int_t
}

/// Access phase: authentication and rate limits run here (in that order).
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
        if RequestCtx::get_or_create(request).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        gw_debug!(request, "access phase: enabled");
        Status::NGX_DECLINED.into()
    })
}

/// Points an nginx variable value at `len` bytes at `data` that live as long as the request.
fn set_variable(v: *mut ngx_variable_value_t, data: *const u8, len: usize) {
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

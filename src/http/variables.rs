//! The module's nginx variables.

use std::cell::RefCell;

use gateway_core::reqid::RequestIds;
use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_t, ngx_int_t,
    ngx_str_t, ngx_uint_t, ngx_variable_value_t, NGX_ERROR, NGX_OK,
};
use ngx::http::Request;
use ngx::ngx_string;

use super::{guard_request, set_not_found, set_variable, RequestCtx};

type GetHandler =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

/// Variables with fixed names: name, handler, flags.
const VARIABLES: &[(ngx_str_t, GetHandler, u32)] =
    &[(ngx_string!("gateway_request_id"), request_id_variable, 0)];

/// Adds the module's variables to the configuration.
///
/// # Safety
/// `cf` must be the configuration nginx passed to `preconfiguration`.
pub unsafe fn register(cf: *mut ngx_conf_t) -> Result<(), ()> {
    for (name, handler, flags) in VARIABLES {
        let mut name = *name;
        // SAFETY: `cf` is valid; nginx copies the name into its own pool.
        let var: *mut ngx_http_variable_t =
            unsafe { ngx_http_add_variable(cf, &mut name, *flags as ngx_uint_t) };
        if var.is_null() {
            return Err(());
        }
        // SAFETY: `var` was just returned non-null by nginx.
        unsafe { (*var).get_handler = Some(*handler) };
    }
    Ok(())
}

thread_local! {
    /// This worker's request id generator, seeded on first use (always after fork, so every
    /// worker has its own key).
    static REQUEST_IDS: RefCell<Option<RequestIds>> = const { RefCell::new(None) };
}

fn next_request_id() -> [u8; 32] {
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
        let Some(ctx) = RequestCtx::get_or_create(request) else {
            set_not_found(v);
            return NGX_ERROR as ngx_int_t;
        };
        let id = ctx.request_id.get_or_insert_with(next_request_id);
        set_variable(v, id.as_ptr(), id.len());
        NGX_OK as ngx_int_t
    })
}

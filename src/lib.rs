//! ngx-gateway: JWT authentication, shared-memory rate limits, JSON request logs and metrics
//! inside nginx workers.
//!
//! This file only declares the module; configuration lives in `conf`, the request-time glue
//! in `http`, and everything that can be plain Rust in the `gateway-core` crate.

use core::ptr;

use nginx_sys::{ngx_http_module_t, ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE};

#[macro_use]
mod log;

mod conf;
mod http;

use http::GatewayModule;

static NGX_HTTP_GATEWAY_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(http::preconfiguration),
    postconfiguration: Some(http::postconfiguration),
    create_main_conf: Some(conf::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(conf::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

// The module table nginx looks up in a dynamic module (`ngx_modules`, `ngx_module_names`).
ngx::ngx_modules!(ngx_http_gateway_module);

#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_gateway_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(NGX_HTTP_GATEWAY_MODULE_CTX).cast_mut().cast(),
    // SAFETY: the command table is a static that lives as long as the module.
    commands: unsafe { ptr::addr_of_mut!(conf::COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(http::init_process),
    exit_process: Some(http::exit_process),
    ..ngx_module_t::default()
};

impl ngx::http::HttpModule for GatewayModule {
    fn module() -> &'static ngx_module_t {
        // SAFETY: nginx only writes the module's index fields before configuration is read;
        // afterwards the static is read-only.
        unsafe { &*ptr::addr_of!(ngx_http_gateway_module) }
    }
}

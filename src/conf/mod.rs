//! Directives, configuration structures and their merge rules.
//!
//! Values are parsed once here; request-time code never re-parses configuration.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_set_flag_slot, ngx_conf_t, ngx_flag_t, ngx_uint_t, NGX_CONF_FLAG,
    NGX_CONF_UNSET, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_SRV_CONF,
};
use ngx::core::{Pool, NGX_CONF_ERROR};
use ngx::ngx_string;

use crate::http::guard_conf;

/// Per-location configuration (also created for http and server blocks and merged down).
#[derive(Debug)]
pub struct LocConf {
    /// `gateway on|off`: the master switch for every gateway feature in this location.
    pub enabled: ngx_flag_t,
}

impl Default for LocConf {
    fn default() -> Self {
        Self {
            enabled: NGX_CONF_UNSET as ngx_flag_t,
        }
    }
}

impl LocConf {
    /// Fills unset values from the enclosing block, then from the defaults.
    fn merge(&mut self, prev: &LocConf) {
        merge_flag(&mut self.enabled, prev.enabled, true);
    }

    /// Whether the gateway handlers run for requests in this location.
    pub fn is_enabled(&self) -> bool {
        self.enabled == 1
    }
}

fn merge_flag(v: &mut ngx_flag_t, prev: ngx_flag_t, default: bool) {
    if *v == NGX_CONF_UNSET as ngx_flag_t {
        *v = if prev == NGX_CONF_UNSET as ngx_flag_t {
            default as ngx_flag_t
        } else {
            prev
        };
    }
}

const ANY_CONF: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// The module's directive table.
pub static mut COMMANDS: [ngx_command_t; 2] = [
    ngx_command_t {
        name: ngx_string!("gateway"),
        type_: (ANY_CONF | NGX_CONF_FLAG) as ngx_uint_t,
        set: Some(ngx_conf_set_flag_slot),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: offset_of!(LocConf, enabled),
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

/// `create_loc_conf`: a fresh `LocConf` in the configuration pool (dropped with the pool).
pub unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    guard_conf(ptr::null_mut(), || {
        // SAFETY: nginx passes a valid configuration whose pool outlives the configuration.
        let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
        pool.allocate(LocConf::default()).cast()
    })
}

/// `merge_loc_conf`: inherit unset values from the enclosing block.
pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    guard_conf(NGX_CONF_ERROR, || {
        // SAFETY: both pointers were returned by `create_loc_conf` for this module.
        let (prev, conf) = unsafe { (&*prev.cast::<LocConf>(), &mut *conf.cast::<LocConf>()) };
        conf.merge(prev);
        let _ = cf;
        ptr::null_mut()
    })
}

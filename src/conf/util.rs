//! Small helpers shared by the directive handlers.

use nginx_sys::{
    ngx_conf_full_name, ngx_conf_t, ngx_http_compile_complex_value,
    ngx_http_compile_complex_value_t, ngx_http_complex_value_t, ngx_str_t, NGX_OK,
};
use ngx::core::Pool;

/// A compiled nginx complex value (a string that may contain variables), allocated in the
/// configuration pool, so it lives as long as the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ComplexValue(pub *mut ngx_http_complex_value_t);

/// A directive handler's body: the configuration, this module's conf struct, the arguments
/// (`args[0]` is the directive name). An `Err` is logged as `[emerg]` with file and line.
pub type DirectiveResult = Result<(), String>;

/// The directive's arguments, the name included.
pub fn args(cf: &ngx_conf_t) -> &[ngx_str_t] {
    // SAFETY: while a directive handler runs, `cf.args` is an array of `ngx_str_t` holding the
    // directive name and its arguments.
    unsafe { (*cf.args).as_slice() }
}

/// An argument as UTF-8 text (nginx configuration is bytes; ours must be text).
pub fn arg_str(a: &ngx_str_t) -> Result<&str, String> {
    let bytes = a.as_bytes();
    std::str::from_utf8(bytes).map_err(|_| "argument is not valid UTF-8".to_string())
}

/// The directive's name, for messages.
pub fn name(cf: &ngx_conf_t) -> String {
    args(cf).first().map(|a| a.to_string()).unwrap_or_default()
}

/// An error message of a directive handler as nginx prints it: when the message does not name
/// the directive already, ` in "directive" directive` is appended (nginx's own wording, as in
/// `invalid number of arguments in "x" directive`), so that every refusal names it.
pub fn with_directive(cf: &ngx_conf_t, msg: String) -> String {
    let name = name(cf);
    if name.is_empty() || msg.contains(&format!("\"{name}\"")) {
        msg
    } else {
        format!("{msg} in \"{name}\" directive")
    }
}

/// `invalid value "x" in "directive" directive` (nginx's wording).
pub fn invalid(cf: &ngx_conf_t, value: &str, why: &str) -> String {
    if why.is_empty() {
        format!("invalid value \"{}\" in \"{}\" directive", value, name(cf))
    } else {
        format!(
            "invalid value \"{}\" in \"{}\" directive, {}",
            value,
            name(cf),
            why
        )
    }
}

/// `"directive" directive is duplicate` (nginx's wording).
pub fn duplicate(cf: &ngx_conf_t) -> String {
    format!("\"{}\" directive is duplicate", name(cf))
}

/// Compiles `value` as a complex value.
pub fn compile_cv(cf: &mut ngx_conf_t, value: &ngx_str_t) -> Result<ComplexValue, String> {
    // SAFETY: `cf.pool` is the configuration pool; it outlives the configuration.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let cv = pool.calloc_type::<ngx_http_complex_value_t>();
    let v = pool.calloc_type::<ngx_str_t>();
    if cv.is_null() || v.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: both were just allocated; `ccv` is zero-initialized as nginx expects.
    unsafe {
        *v = *value;
        let mut ccv: ngx_http_compile_complex_value_t = core::mem::zeroed();
        ccv.cf = cf;
        ccv.value = v;
        ccv.complex_value = cv;
        if ngx_http_compile_complex_value(&mut ccv) != NGX_OK as isize {
            return Err(format!("cannot compile \"{}\"", value));
        }
    }
    Ok(ComplexValue(cv))
}

/// Resolves a path relative to nginx's configuration prefix, like nginx does for its files.
pub fn full_path(cf: &mut ngx_conf_t, value: &ngx_str_t) -> Result<String, String> {
    let mut name = *value;
    // SAFETY: `cf.cycle` is the cycle being configured; nginx allocates the result in its pool.
    let rc = unsafe { ngx_conf_full_name(cf.cycle, &mut name, 1) };
    if rc != NGX_OK as isize {
        return Err(format!("cannot resolve path \"{}\"", value));
    }
    Ok(name.to_string())
}

/// Splits `key=value`; `None` when the argument has no `=`.
pub fn kv(a: &str) -> Option<(&str, &str)> {
    a.split_once('=')
}

/// Defines an `extern "C"` directive handler around `$body(cf, conf) -> DirectiveResult`,
/// with the panic boundary and `[emerg]` reporting.
macro_rules! directive {
    ($name:ident, $conf:ty, $body:expr) => {
        unsafe extern "C" fn $name(
            cf: *mut ::nginx_sys::ngx_conf_t,
            _cmd: *mut ::nginx_sys::ngx_command_t,
            conf: *mut ::core::ffi::c_void,
        ) -> *mut ::core::ffi::c_char {
            $crate::http::guard_conf(::ngx::core::NGX_CONF_ERROR, || {
                // SAFETY: nginx calls directive handlers with the configuration being parsed
                // and this module's conf struct of the directive's context.
                let (cfr, conf) = unsafe { (&mut *cf, &mut *conf.cast::<$conf>()) };
                let body: fn(
                    &mut ::nginx_sys::ngx_conf_t,
                    &mut $conf,
                ) -> $crate::conf::util::DirectiveResult = $body;
                match body(cfr, conf) {
                    Ok(()) => ::ngx::core::NGX_CONF_OK,
                    Err(msg) => {
                        // SAFETY: as above; the handler's borrows have ended.
                        let msg = $crate::conf::util::with_directive(unsafe { &*cf }, msg);
                        gw_conf_err!(cf, "{}", msg);
                        ::ngx::core::NGX_CONF_ERROR
                    }
                }
            })
        }
    };
}
pub(crate) use directive;

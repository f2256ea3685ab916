//! Logging with the module's fixed `gateway: ` prefix, in the style of nginx's own modules:
//! lowercase messages, context appended (`, zone: "api"`).

/// Logs at `level` to a request's connection log with the `gateway: ` prefix.
macro_rules! gw_log {
    ($level:expr, $log:expr, $($arg:tt)+) => {
        ::ngx::ngx_log_error!($level, $log, "gateway: {}", format_args!($($arg)+))
    };
}

/// Debug line for a request (compiled away unless nginx was built `--with-debug`).
macro_rules! gw_debug {
    ($request:expr, $($arg:tt)+) => {
        ::ngx::ngx_log_debug_http!($request, "gateway: {}", format_args!($($arg)+))
    };
}

#[allow(unused_macros)]
/// `[emerg]`-style message while reading the configuration (nginx appends file and line).
macro_rules! gw_conf_err {
    ($cf:expr, $($arg:tt)+) => {
        ::ngx::ngx_conf_log_error!(::nginx_sys::NGX_LOG_EMERG, $cf, $($arg)+)
    };
}

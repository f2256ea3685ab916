//! Log phase: metrics for every request and one JSON record per request to the configured
//! destinations; also `$gateway_log_json`.

use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use gateway_core::log::credentials::redact_query;
use gateway_core::log::{Record, Rfc3339Cache, Value};
use nginx_sys::{
    ngx_add_timer, ngx_cached_time, ngx_del_timer, ngx_event_t, ngx_http_get_indexed_variable,
    ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_open_file_t, ngx_syslog_add_header,
    ngx_syslog_send, NGX_DECLINED, NGX_LOG_ERR, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};

use super::{guard_request, GatewayModule, RequestCtx};
use crate::conf::log::{field_index, LogConf, LogDest, LogFile, Target};
use crate::conf::MainConf;

/// Indexes of nginx variables the record uses (`MainConf::log_vars`), set at
/// postconfiguration.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogVars {
    pub host: usize,
    pub upstream_addr: usize,
    pub upstream_status: usize,
    pub upstream_response_time: usize,
    pub traceparent: usize,
}

pub fn var(request: &Request, index: usize) -> &[u8] {
    let r = request as *const Request as *mut ngx_http_request_t;
    // SAFETY: `index` was obtained with ngx_http_get_variable_index for this configuration;
    // the value lives in the request pool.
    unsafe {
        let v = ngx_http_get_indexed_variable(r, index);
        if v.is_null() || (*v).not_found() != 0 || (*v).valid() == 0 {
            return b"";
        }
        core::slice::from_raw_parts((*v).data, (*v).len() as usize)
    }
}

fn ngx_bytes(s: &nginx_sys::ngx_str_t) -> &[u8] {
    if s.data.is_null() {
        b""
    } else {
        // SAFETY: a non-null nginx string of the live request.
        unsafe { core::slice::from_raw_parts(s.data, s.len) }
    }
}

/// The status nginx logs as `$status`.
pub fn status(request: &Request) -> usize {
    let r = request.as_ref();
    if r.err_status != 0 {
        r.err_status
    } else {
        r.headers_out.status
    }
}

/// The request time in milliseconds, as nginx's `$request_time`.
pub fn request_time_ms(request: &Request) -> u64 {
    let r = request.as_ref();
    // SAFETY: nginx keeps `ngx_cached_time` valid.
    let now = unsafe { (*ngx_cached_time).sec * 1000 + (*ngx_cached_time).msec as i64 };
    let start = r.start_sec * 1000 + r.start_msec as i64;
    (now - start).max(0) as u64
}

/// The auth result and reason of a request (for the record and the metrics), if `auth_jwt`
/// ran.
pub fn auth_result(ctx: Option<&RequestCtx>) -> Option<(&'static str, &'static str)> {
    let a = ctx?.auth.as_ref()?;
    Some(match &a.error {
        None if a.denied_by_requirement => ("forbidden", "requirement"),
        None => ("valid", ""),
        Some(e @ gateway_core::jwt::JwtError::ClaimMismatch { .. }) => ("forbidden", e.code()),
        Some(e) => (a.status(), e.code()),
    })
}

thread_local! {
    /// The formatted second of the last timestamp (one format per second per worker).
    static TS: std::cell::RefCell<Rfc3339Cache> = std::cell::RefCell::new(Rfc3339Cache::default());
}

/// Builds the request's record from the location's `gateway_log*` settings. `redact` names
/// the query arguments whose values never appear (`access_token` and those `auth_jwt` reads
/// tokens from anywhere in the configuration).
pub fn build_record<'a>(
    request: &'a Request,
    ctx: Option<&'a RequestCtx>,
    conf: &'a LogConf,
    redact: &[Vec<u8>],
    policy_conf: Option<&crate::conf::policy::PolicyConf>,
    trace: Option<super::trace::TraceState>,
    vars: &LogVars,
) -> Record<'a> {
    let mut rec = Record::new();
    let keep = |f: &str| field_index(f).is_some_and(|i| conf.keeps(i));
    let r = request.as_ref();
    if keep("ts") {
        // SAFETY: nginx keeps `ngx_cached_time` valid.
        let (sec, msec) = unsafe { ((*ngx_cached_time).sec, (*ngx_cached_time).msec) };
        rec.push(
            "ts",
            Value::Str(
                TS.with(|t| t.borrow_mut().format(sec, msec as u32).to_vec())
                    .into(),
            ),
        );
    }
    if keep("request_id") {
        if let Some(id) = ctx.and_then(|c| c.request_id.as_ref()) {
            rec.push_str("request_id", id);
        }
    }
    if let Some((t, s, p)) = trace.as_ref().map(|t| t.ids()) {
        if keep("trace_id") {
            rec.string("trace_id", t.to_vec());
        }
        if keep("span_id") {
            rec.string("span_id", s.to_vec());
        }
        if let (true, Some(p)) = (keep("parent_span_id"), p) {
            rec.string("parent_span_id", p.to_vec());
        }
    }
    if keep("client_ip") {
        // SAFETY: the connection of a live request.
        rec.push_str(
            "client_ip",
            ngx_bytes(unsafe { &(*r.connection).addr_text }),
        );
    }
    if keep("method") {
        rec.push_str("method", ngx_bytes(&r.method_name));
    }
    if keep("host") {
        rec.push_str("host", var(request, vars.host));
    }
    let uri = ngx_bytes(&r.unparsed_uri);
    let (path, query) = match uri.iter().position(|&b| b == b'?') {
        Some(i) => (&uri[..i], &uri[i + 1..]),
        None => (uri, &b""[..]),
    };
    if keep("path") {
        rec.push_str("path", path);
    }
    if keep("query") && !query.is_empty() {
        rec.push("query", Value::Str(redact_query(query, redact)));
    }
    if keep("status") {
        rec.push("status", Value::Int(status(request) as i64));
    }
    if keep("bytes_sent") {
        // SAFETY: the connection of a live request.
        rec.push("bytes_sent", Value::Int(unsafe { (*r.connection).sent }));
    }
    if keep("request_time") {
        rec.push(
            "request_time",
            Value::Millis(request_time_ms(request) as i64),
        );
    }
    if keep("upstream_addr") {
        rec.push_auto("upstream_addr", var(request, vars.upstream_addr));
    }
    if keep("upstream_status") {
        rec.push_auto("upstream_status", var(request, vars.upstream_status));
    }
    if keep("upstream_response_time") {
        rec.push_auto(
            "upstream_response_time",
            var(request, vars.upstream_response_time),
        );
    }
    if keep("user_agent") && !r.headers_in.user_agent.is_null() {
        // SAFETY: a non-null header of the live request.
        rec.push_str(
            "user_agent",
            ngx_bytes(unsafe { &(*r.headers_in.user_agent).value }),
        );
    }
    let identity = ctx.and_then(|c| c.consumer.as_ref());
    if let (true, Some(id)) = (keep("consumer"), identity) {
        rec.push_str("consumer", id.id.as_bytes());
    }
    if let Some(a) = ctx.and_then(|c| c.auth.as_ref()) {
        // Facts from a token whose signature verified (so not attacker-chosen), even if a
        // claim check then failed.
        let v = a.verified.as_deref();
        if keep("consumer") && identity.is_none() {
            if let Some(sub) = v.and_then(|v| v.sub()) {
                rec.push_str("consumer", sub.as_bytes());
            }
        }
        if keep("auth") {
            let mut auth = Record::new();
            if let Some((result, reason)) = auth_result(ctx) {
                auth.push_str("result", result.as_bytes());
                auth.push_str("reason", reason.as_bytes());
            }
            if let Some(v) = v {
                auth.push_str("kid", v.kid().unwrap_or_default().as_bytes());
                auth.push_str("alg", v.alg().name().as_bytes());
                auth.push_str("iss", v.iss().unwrap_or_default().as_bytes());
            }
            rec.push("auth", auth.into_value());
        }
    }
    if keep("policy") {
        if let Some(mcf_policy) = policy_conf {
            let mut o = Record::new();
            let version = match identity {
                Some(id) => Some(id.version.to_string()),
                None => super::policy::version_in_force(mcf_policy),
            };
            if let Some(v) = version {
                o.string("version", v.into_bytes());
            }
            if let Some(id) = identity {
                o.push_str("credential", id.credential.as_str().as_bytes());
                if let Some(p) = &id.plan {
                    o.push_str("plan", p.as_bytes());
                }
                if !id.groups_joined().is_empty() {
                    o.string("groups", id.groups_joined().as_bytes().to_vec());
                }
            }
            if let Some(code) = ctx.and_then(|c| c.policy.refused) {
                o.push_str("refused", code.as_bytes());
            }
            rec.push("policy", o.into_value());
        }
    }
    if keep("rate_limit") {
        if let Some(rl) = ctx.and_then(|c| c.rate_limit.as_ref()) {
            let mut o = Record::new();
            o.push_str("result", rl.status.as_str().as_bytes());
            o.push_str("policy", rl.policy.as_bytes());
            o.push("remaining", Value::Int(rl.decision.remaining as i64));
            rec.push("rate_limit", o.into_value());
        }
    }
    for (name, cv) in conf.fields.as_deref().unwrap_or_default() {
        // SAFETY: the complex value was compiled from this configuration.
        if let Some(v) = request.get_complex_value(unsafe { &*cv.0 }) {
            rec.auto(name, v.as_bytes());
        }
    }
    rec
}

fn condition_holds(request: &Request, d: &LogDest) -> bool {
    match d.condition {
        None => true,
        Some(cv) => {
            // SAFETY: the complex value was compiled from this configuration.
            let v = request.get_complex_value(unsafe { &*cv.0 });
            v.is_some_and(|v| !v.is_empty() && v.as_bytes() != b"0")
        }
    }
}

/// Writes `bytes` to `fd` completely.
fn write_fd(fd: i32, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: nginx owns the descriptor; ManuallyDrop keeps File from closing it.
    let mut f = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    f.write_all(bytes)
}

fn flush_file(lf: &LogFile, log: *mut ngx_log_t) {
    let mut buf = lf.buf.borrow_mut();
    if buf.is_empty() {
        return;
    }
    // SAFETY: the open-file entry belongs to the cycle and lives as long as it.
    let (fd, name) = unsafe { ((*lf.file).fd, (*lf.file).name) };
    if let Err(e) = write_fd(fd, &buf) {
        super::metrics::inc_log_write_error();
        if !lf.error_reported.replace(true) {
            gw_log!(
                NGX_LOG_ERR,
                log,
                "gateway_log: write to \"{}\" failed: {e} (reported once per worker)",
                name
            );
        }
    }
    buf.clear();
    // SAFETY: the event belongs to this LogFile; deleting a set timer is what nginx expects.
    unsafe {
        if (*lf.event).timer_set() != 0 {
            ngx_del_timer(lf.event);
        }
    }
}

/// `ngx_open_file_t.flush`: nginx calls it before reopening logs (SIGUSR1) and when a worker
/// exits (stop, reload), so buffered records are never lost.
pub unsafe extern "C" fn file_flush(file: *mut ngx_open_file_t, log: *mut ngx_log_t) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `data` is the LogFile we registered with this file.
        let lf = unsafe { &*(*file).data.cast::<LogFile>() };
        flush_file(lf, log);
    });
}

/// The `flush=` timer.
pub unsafe extern "C" fn flush_timer_handler(ev: *mut ngx_event_t) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the event's data is its LogFile.
        let lf = unsafe { &*(*ev).data.cast::<LogFile>() };
        flush_file(lf, unsafe { (*ev).log });
    });
}

fn write(request: &Request, d: &LogDest, line: &[u8]) {
    let log = request.log();
    match d.target {
        Target::Stderr => {
            if write_fd(2, line).is_err() {
                super::metrics::inc_log_write_error();
            }
        }
        Target::Syslog(peer) => {
            let mut buf = Vec::with_capacity(line.len() + 256);
            buf.resize(256, 0);
            // SAFETY: the peer was configured by nginx; the header fits in 256 bytes
            // (NGX_SYSLOG_MAX_STR minus the message is far more than a header needs).
            unsafe {
                let end = ngx_syslog_add_header(peer, buf.as_mut_ptr());
                let hlen = end.offset_from(buf.as_ptr()) as usize;
                buf.truncate(hlen);
                buf.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
                if ngx_syslog_send(peer, buf.as_mut_ptr(), buf.len()) < 0 {
                    super::metrics::inc_log_write_error();
                }
            }
        }
        Target::File(lf) => {
            // SAFETY: LogFiles live in the configuration pool.
            let lf = unsafe { &*lf };
            if lf.size == 0 {
                lf.buf.borrow_mut().extend_from_slice(line);
                flush_file(lf, log);
                return;
            }
            let was_empty = {
                let mut buf = lf.buf.borrow_mut();
                let e = buf.is_empty();
                if buf.capacity() == 0 {
                    buf.reserve(lf.size + 1024);
                }
                buf.extend_from_slice(line);
                e
            };
            if lf.buf.borrow().len() >= lf.size {
                flush_file(lf, log);
            } else if was_empty && lf.flush_ms > 0 {
                // SAFETY: the event belongs to this LogFile and runs in this worker.
                unsafe {
                    if (*lf.event).timer_set() == 0 {
                        ngx_add_timer(lf.event, lf.flush_ms as nginx_sys::ngx_msec_t);
                    }
                }
            }
        }
    }
}

/// Post-read phase: when the query carries a token argument (`access_token`, or one an
/// `auth_jwt ... token=$arg_NAME` of the configuration reads), the request line nginx logs
/// (`$request` in `access_log`, `request: "..."` in error-log lines, the module's own among
/// them) shows its value as `[REDACTED]`, as the record's `query` field does. Only the logged
/// copy changes: the request is served with its URI and arguments as sent.
pub unsafe extern "C" fn redact_request_line(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx calls phase handlers with a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let rr = request.as_ref();
        if rr.args.len == 0 || rr.request_line.len == 0 {
            return NGX_DECLINED as ngx_int_t;
        }
        let Some(mcf) = GatewayModule::main_conf(request) else {
            return NGX_DECLINED as ngx_int_t;
        };
        let line = ngx_bytes(&rr.request_line);
        let args = ngx_bytes(&rr.args);
        let redacted = redact_query(args, &mcf.credentials.redact_args);
        if matches!(redacted, std::borrow::Cow::Borrowed(_)) {
            return NGX_DECLINED as ngx_int_t;
        }
        // The arguments inside the line: in place for HTTP/1 (nginx points `args` into the
        // line it read), found by value otherwise.
        let start = (args.as_ptr() as usize)
            .checked_sub(line.as_ptr() as usize)
            .filter(|&o| o + args.len() <= line.len())
            .or_else(|| line.windows(args.len()).position(|w| w == args));
        let Some(start) = start else {
            return NGX_DECLINED as ngx_int_t;
        };
        let mut new = Vec::with_capacity(line.len() + redacted.len());
        new.extend_from_slice(&line[..start]);
        new.extend_from_slice(&redacted);
        new.extend_from_slice(&line[start + args.len()..]);
        // SAFETY: the request pool of the live request; the copy lives as long as the request.
        unsafe {
            let p = nginx_sys::ngx_pnalloc((*r).pool, new.len()).cast::<u8>();
            if p.is_null() {
                return NGX_DECLINED as ngx_int_t;
            }
            core::ptr::copy_nonoverlapping(new.as_ptr(), p, new.len());
            (*r).request_line = nginx_sys::ngx_str_t {
                len: new.len(),
                data: p,
            };
        }
        NGX_DECLINED as ngx_int_t
    })
}

/// The log-phase handler.
pub unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx calls phase handlers with a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let Some(mcf) = GatewayModule::main_conf(request) else {
            return NGX_DECLINED as ngx_int_t;
        };
        #[cfg(feature = "test-hooks")]
        super::test_hooks::maybe_panic(request, "log");
        let lcf = GatewayModule::location_conf(request);
        // With gateway_trace on, the trace is made now if nothing asked yet (the exemplars of
        // the histograms carry its id).
        let traced = lcf.is_some_and(|l| l.is_enabled() && l.trace.on()) && mcf.obs.histograms;
        let mut ctx = if traced {
            RequestCtx::get_or_create(request)
        } else {
            RequestCtx::get(request)
        };
        if let (true, Some(c), Some(l)) = (traced, ctx.as_deref_mut(), lcf) {
            super::trace::state(request, c, l, mcf);
        }
        let route_id = lcf.map_or(0, |l| l.consumer.route_id);
        super::metrics::count_request(mcf, request, route_id, ctx.as_deref());
        let Some(lcf) = lcf else {
            return NGX_OK as ngx_int_t;
        };
        if !lcf.is_enabled() {
            return NGX_OK as ngx_int_t;
        }
        let dests = lcf.log.dests.as_deref().unwrap_or_default();
        if dests.is_empty() {
            return NGX_OK as ngx_int_t;
        }
        // One scratch buffer per worker: no allocation per record for the line itself.
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            write_record(request, lcf, mcf, &mut line, false);
            for d in dests {
                if condition_holds(request, d) {
                    write(request, d, &line);
                }
            }
        });
        NGX_OK as ngx_int_t
    })
}

thread_local! {
    static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
}

/// The record of the request as bytes: one line with `\n`, or bare JSON for the variable.
pub fn record_line(
    request: &Request,
    lcf: &crate::conf::LocConf,
    mcf: &MainConf,
    bare: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_record(request, lcf, mcf, &mut out, bare);
    out
}

/// Appends the request's record to `out` (a line ending in `\n` unless `bare`).
fn write_record(
    request: &Request,
    lcf: &crate::conf::LocConf,
    mcf: &MainConf,
    out: &mut Vec<u8>,
    bare: bool,
) {
    let mut ctx = RequestCtx::get_or_create(request);
    let mut trace = None;
    if let Some(c) = ctx.as_deref_mut() {
        if lcf.log.keeps(field_index("request_id").unwrap_or(0)) && c.request_id.is_none() {
            c.request_id = Some(super::variables::next_request_id());
        }
        trace = super::trace::state(request, c, lcf, mcf);
    }
    let rec = build_record(
        request,
        ctx.map(|c| &*c),
        &lcf.log,
        &mcf.credentials.redact_args,
        mcf.policy.as_ref(),
        trace,
        &mcf.log_vars,
    );
    if bare {
        rec.write_json(out);
    } else {
        rec.write_line(out);
    }
}

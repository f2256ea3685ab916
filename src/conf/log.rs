//! `gateway_log*` directives: destinations (files opened the way nginx opens its logs,
//! stderr, syslog), buffering, conditions, extra fields, and which default fields to write.

use std::cell::{Cell, RefCell};
use std::ptr;
use std::rc::Rc;

use nginx_sys::{
    ngx_conf_open_file, ngx_conf_t, ngx_event_t, ngx_open_file_t, ngx_syslog_peer_t,
    ngx_syslog_process_conf,
};
use ngx::core::Pool;

use gateway_core::log::credentials::{
    credential_variable, referenced_variables, ALWAYS_REDACTED_ARGS,
};
use ngx::http::HttpModuleMainConf;

use super::jwt::ConfPos;
use super::util::{arg_str, args, compile_cv, invalid, name, ComplexValue};
use crate::http::log::{file_flush, flush_timer_handler};

/// The default fields of a record, in the order they are written. `query` is off unless
/// asked for with `gateway_log_fields`.
pub const DEFAULT_FIELDS: &[&str] = &[
    "ts",
    "request_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "client_ip",
    "method",
    "host",
    "path",
    "query",
    "status",
    "bytes_sent",
    "request_time",
    "upstream_addr",
    "upstream_status",
    "upstream_response_time",
    "user_agent",
    "consumer",
    "auth",
    "policy",
    "rate_limit",
];

/// A buffered log file, one per path, shared by every `gateway_log` naming it. Lives in the
/// configuration pool; after fork every worker has its own copy of the buffer.
pub struct LogFile {
    pub file: *mut ngx_open_file_t,
    pub buf: RefCell<Vec<u8>>,
    pub size: usize,
    pub flush_ms: u64,
    pub event: *mut ngx_event_t,
    /// A write error was already reported (reported once per worker).
    pub error_reported: Cell<bool>,
}

/// Where records go.
pub enum Target {
    File(*mut LogFile),
    Stderr,
    Syslog(*mut ngx_syslog_peer_t),
}

/// One `gateway_log` directive.
pub struct LogDest {
    pub target: Target,
    pub condition: Option<ComplexValue>,
}

/// The `gateway_log*` settings of one block (`None` = not set here).
#[derive(Default)]
pub struct LogConf {
    /// `gateway_log ...` destinations; `Some(empty)` after `gateway_log off`.
    pub dests: Option<Vec<Rc<LogDest>>>,
    pub fields: Option<Vec<(String, ComplexValue)>>,
    /// Bit set over `DEFAULT_FIELDS` (bit i = write field i).
    pub keep: Option<u32>,
}

impl std::fmt::Debug for LogConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConf").finish_non_exhaustive()
    }
}

/// Every default field but `query`.
pub fn default_keep() -> u32 {
    let all = (1u32 << DEFAULT_FIELDS.len()) - 1;
    all & !(1 << field_index("query").unwrap_or(0))
}

pub fn field_index(name: &str) -> Option<usize> {
    DEFAULT_FIELDS.iter().position(|f| *f == name)
}

impl LogConf {
    pub fn merge(&mut self, prev: &LogConf) {
        if self.dests.is_none() {
            self.dests.clone_from(&prev.dests);
        }
        if self.fields.is_none() {
            self.fields.clone_from(&prev.fields);
        }
        self.keep = self.keep.or(prev.keep);
    }

    pub fn keeps(&self, field: usize) -> bool {
        self.keep.unwrap_or_else(default_keep) & (1 << field) != 0
    }
}

/// What the credential guard knows of the whole `http` block (kept in `MainConf`): the
/// variables `auth_jwt ... token=` reads tokens from and the variables `gateway_log_field`s
/// log, each with where it was written, so a conflict is refused whichever comes first in the
/// file; and the query arguments the record redacts.
#[derive(Debug)]
pub struct CredentialGuard {
    token_vars: Vec<(String, Option<ConfPos>)>,
    logged_vars: Vec<(String, Option<ConfPos>)>,
    /// Arguments whose values the `query` field never shows: `access_token` and every
    /// `NAME` of an `auth_jwt ... token=$arg_NAME` of the configuration.
    pub redact_args: Vec<Vec<u8>>,
}

impl Default for CredentialGuard {
    fn default() -> Self {
        Self {
            token_vars: Vec::new(),
            logged_vars: Vec::new(),
            redact_args: ALWAYS_REDACTED_ARGS
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
        }
    }
}

fn guard(cf: &ngx_conf_t) -> Result<&'static mut CredentialGuard, String> {
    crate::http::GatewayModule::main_conf_mut(cf)
        .map(|m| &mut m.credentials)
        .ok_or_else(|| "no http main conf".to_string())
}

fn at(pos: &Option<ConfPos>) -> String {
    pos.map(|p| format!(" in {p}")).unwrap_or_default()
}

/// `auth_jwt ... token=VALUE`: the variables VALUE reads become credentials for the guard,
/// and the arguments among them are redacted from the `query` field.
pub fn guard_token_source(cf: &ngx_conf_t, value: &str) -> Result<(), String> {
    let g = guard(cf)?;
    let pos = ConfPos::of(cf);
    for var in referenced_variables(value) {
        if let Some((_, logged_at)) = g.logged_vars.iter().find(|(v, _)| *v == var) {
            return Err(format!(
                "\"{}\" reads tokens from \"${var}\", which \"gateway_log_field\"{} logs: credentials never go to the log",
                name(cf),
                at(logged_at)
            ));
        }
        if let Some(arg) = var.strip_prefix("arg_") {
            if !g.redact_args.iter().any(|a| a == arg.as_bytes()) {
                g.redact_args.push(arg.as_bytes().to_vec());
            }
        }
        g.token_vars.push((var, pos));
    }
    Ok(())
}

/// `gateway_log path|stderr|syslog:... [buffer=size] [flush=time] [if=condition] | off`
pub fn set_log(cf: &mut ngx_conf_t, c: &mut LogConf) -> Result<(), String> {
    let a = args(cf).to_vec();
    let dest = arg_str(&a[1])?;
    if dest == "off" {
        if a.len() > 2 {
            return Err(invalid(cf, arg_str(&a[2])?, "\"off\" takes no parameters"));
        }
        if c.dests.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err("\"gateway_log off\" cannot be combined with other destinations".into());
        }
        c.dests = Some(Vec::new());
        return Ok(());
    }
    if c.dests.as_ref().is_some_and(|d| d.is_empty()) {
        return Err("\"gateway_log off\" cannot be combined with other destinations".into());
    }
    let mut size = None;
    let mut flush = None;
    let mut condition = None;
    for v in &a[2..] {
        let s = arg_str(v)?;
        match super::util::kv(s) {
            Some(("buffer", b)) => {
                size = Some(
                    gateway_core::parse::parse_size(b)
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid(cf, s, "invalid buffer size"))?,
                )
            }
            Some(("flush", t)) => {
                flush = Some(
                    gateway_core::parse::parse_duration_ms(t)
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid(cf, s, "invalid flush time"))?,
                )
            }
            Some(("if", _)) => {
                let mut value = *v;
                // SAFETY: skips the 3-byte ASCII prefix "if=" of this argument.
                value.data = unsafe { value.data.add(3) };
                value.len -= 3;
                condition = Some(compile_cv(cf, &value)?);
            }
            _ => return Err(invalid(cf, s, "")),
        }
    }
    // SAFETY: `cf.pool` is the configuration pool; allocations live as long as it.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let target = if dest == "stderr" {
        if size.is_some() || flush.is_some() {
            return Err("\"buffer\" and \"flush\" apply to files only".into());
        }
        Target::Stderr
    } else if dest.starts_with("syslog:") {
        if size.is_some() || flush.is_some() {
            return Err("\"buffer\" and \"flush\" apply to files only".into());
        }
        let peer = pool.calloc_type::<ngx_syslog_peer_t>();
        if peer.is_null() {
            return Err("out of memory".into());
        }
        // SAFETY: nginx parses `syslog:...` from cf->args[1] into the zeroed peer.
        let rc = unsafe { ngx_syslog_process_conf(cf, peer) };
        if !rc.is_null() {
            return Err(format!("invalid syslog destination \"{dest}\""));
        }
        Target::Syslog(peer)
    } else {
        if flush.is_some() && size.is_none() {
            return Err("\"flush\" requires \"buffer\"".into());
        }
        let mut fname = a[1];
        // SAFETY: nginx opens (or finds) the file in the cycle's open files; it resolves the
        // name against the prefix and reopens it on SIGUSR1.
        let file = unsafe { ngx_conf_open_file(cf.cycle, &mut fname) };
        if file.is_null() {
            return Err(format!("cannot open \"{dest}\""));
        }
        // nginx opens the file only after the whole configuration is read, and then reports a
        // missing directory without the directive's line: check it here, where the line is
        // known.
        // SAFETY: `file` is a valid open-file entry; its name is the full path.
        let full = unsafe { (*file).name.to_string() };
        if let Some(dir) = std::path::Path::new(&full).parent() {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                return Err(format!(
                    "cannot log to \"{full}\": the directory \"{}\" does not exist",
                    dir.display()
                ));
            }
        }
        // SAFETY: `file` is a valid open-file entry of the cycle.
        let existing = unsafe { ((*file).flush, (*file).data) };
        let lf = match existing {
            (Some(f), data) if f as *const () == file_flush as *const () => data.cast::<LogFile>(),
            (None, d) if d.is_null() => {
                let event = pool.calloc_type::<ngx_event_t>();
                if event.is_null() {
                    return Err("out of memory".into());
                }
                let lf = pool.allocate(LogFile {
                    file,
                    buf: RefCell::new(Vec::new()),
                    size: size.unwrap_or(0),
                    flush_ms: flush.unwrap_or(if size.is_some() { 1000 } else { 0 }),
                    event,
                    error_reported: Cell::new(false),
                });
                if lf.is_null() {
                    return Err("out of memory".into());
                }
                // SAFETY: the event and file entry are valid; the timer only runs in workers.
                // The event's log is the new cycle's own `new_log` (what `cycle->log` becomes
                // once the cycle is running), never `cf->cycle->log`: while a configuration is
                // read that is still the previous cycle's log, which the master frees right
                // after a reload, so workers forked later would log through freed memory.
                unsafe {
                    (*event).data = lf.cast();
                    (*event).handler = Some(flush_timer_handler);
                    (*event).log = ptr::addr_of_mut!((*cf.cycle).new_log);
                    (*event).set_cancelable(1);
                    (*file).flush = Some(file_flush);
                    (*file).data = lf.cast();
                }
                lf
            }
            _ => {
                return Err(format!(
                    "\"{dest}\" is also written by another module with its own buffer (e.g. a buffered access_log); use another file"
                ))
            }
        };
        Target::File(lf)
    };
    c.dests
        .get_or_insert_with(Vec::new)
        .push(Rc::new(LogDest { target, condition }));
    Ok(())
}

/// `gateway_log_field name $value` (may repeat)
pub fn set_field(cf: &mut ngx_conf_t, c: &mut LogConf) -> Result<(), String> {
    let a = args(cf).to_vec();
    let fname = arg_str(&a[1])?;
    let valid = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !fname.split('.').all(valid) {
        return Err(invalid(
            cf,
            fname,
            "field names are letters, digits, \"_\" and \"-\", nested with \".\"",
        ));
    }
    let value = arg_str(&a[2])?;
    let g = guard(cf)?;
    let pos = ConfPos::of(cf);
    for var in referenced_variables(value) {
        let why = credential_variable(&var).map(str::to_string).or_else(|| {
            let (_, token_at) = g.token_vars.iter().find(|(v, _)| *v == var)?;
            Some(format!("\"auth_jwt\"{} reads tokens from it", at(token_at)))
        });
        if let Some(why) = why {
            return Err(format!(
                "\"{}\" refuses to log \"${var}\": credentials never go to the log ({why})",
                name(cf)
            ));
        }
        g.logged_vars.push((var, pos));
    }
    let cv = compile_cv(cf, &a[2])?;
    c.fields
        .get_or_insert_with(Vec::new)
        .push((fname.to_string(), cv));
    Ok(())
}

/// `gateway_log_fields default|none|name|-name ...`
pub fn set_fields(cf: &mut ngx_conf_t, c: &mut LogConf) -> Result<(), String> {
    if c.keep.is_some() {
        return Err(super::util::duplicate(cf));
    }
    let mut keep = 0u32;
    for v in &args(cf)[1..] {
        let s = arg_str(v)?;
        match s {
            "default" => keep |= default_keep(),
            "none" => keep = 0,
            _ => {
                let (remove, n) = match s.strip_prefix('-') {
                    Some(n) => (true, n),
                    None => (false, s),
                };
                let i = field_index(n).ok_or_else(|| invalid(cf, s, "unknown field"))?;
                if remove {
                    keep &= !(1 << i);
                } else {
                    keep |= 1 << i;
                }
            }
        }
    }
    c.keep = Some(keep);
    Ok(())
}

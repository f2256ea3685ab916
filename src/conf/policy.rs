//! Consumers and the central policy: `gateway_policy` (where the document comes from),
//! `gateway_route`, `auth_api_key`, `auth_consumer`, `auth_consumer_groups_claim` and
//! `auth_consumer_acl`.

use gateway_core::parse::{parse_duration_ms, parse_size};
use nginx_sys::ngx_conf_t;

use super::util::{arg_str, args, duplicate, full_path, invalid, kv, name};
use super::MainConf;

/// Where the policy document comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A local file (full path), read when the configuration loads and checked on the interval.
    File(String),
    /// A local URI (a location that proxies to the control plane), fetched by subrequest.
    Url(String),
}

impl Source {
    /// The source as written in the log and in `gateway_status`.
    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => format!("file \"{p}\""),
            Source::Url(u) => format!("url \"{u}\""),
        }
    }
}

/// The document read when the configuration loaded (file source): installed by the zone's
/// init, so a started or reloaded nginx enforces it from its first request.
#[derive(Debug)]
pub struct Initial {
    pub image: Vec<u8>,
    /// SHA-256 of the document's bytes.
    pub digest: [u8; 32],
    /// The file's size, modification time and inode when it was read.
    pub stamp: Option<crate::http::policy::Stamp>,
}

/// `gateway_policy`.
#[derive(Debug)]
pub struct PolicyConf {
    pub source: Source,
    pub interval_ms: u64,
    pub max_size: usize,
    pub zone_size: usize,
    pub initial: Option<Initial>,
    /// The `gateway_policy` shared zone (set in postconfiguration).
    pub shm: *mut nginx_sys::ngx_shm_zone_t,
}

/// Default `interval=`.
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
/// Default `max_size=`.
pub const DEFAULT_MAX_SIZE: usize = 16 * 1024 * 1024;

/// Where `auth_api_key` looks for the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A request header (name as written; compared case-insensitively).
    Header(String),
    /// A query-string argument.
    Query(String),
    /// A cookie.
    Cookie(String),
}

/// `auth_api_key`.
#[derive(Debug, Clone)]
pub struct ApiKeyConf {
    /// Looked at in this order; the first present is the request's key.
    pub sources: Vec<KeySource>,
    /// `hide_credentials`: the key is removed before the request goes upstream.
    pub hide: bool,
}

/// `auth_consumer on [unregistered=allow|refuse] [anonymous=ID]`.
#[derive(Debug, Clone)]
pub struct ConsumerMode {
    pub on: bool,
    /// A valid token that no consumer's binding names is still a consumer (by its `sub`).
    pub unregistered_allow: bool,
    /// The consumer of requests with no credential at all.
    pub anonymous: Option<String>,
}

/// The consumer settings of one block (`None` = not set here).
#[derive(Debug, Default, Clone)]
pub struct ConsumerConf {
    /// `gateway_route`.
    pub route: Option<String>,
    /// The route's number in `MainConf::routes` plus one (0: no route), for the metrics.
    pub route_id: usize,
    /// `auth_api_key` (`Some(None)`: `off`).
    pub api_key: Option<Option<ApiKeyConf>>,
    /// `auth_consumer`.
    pub mode: Option<ConsumerMode>,
    /// `auth_consumer_groups_claim`: claim paths whose values are groups.
    pub groups_claims: Option<Vec<Vec<String>>>,
    /// `auth_consumer_acl`.
    pub acl: Option<bool>,
}

impl ConsumerConf {
    pub fn merge(&mut self, prev: &ConsumerConf) {
        if self.route.is_none() {
            self.route.clone_from(&prev.route);
            self.route_id = prev.route_id;
        }
        if self.api_key.is_none() {
            self.api_key.clone_from(&prev.api_key);
        }
        if self.mode.is_none() {
            self.mode.clone_from(&prev.mode);
        }
        if self.groups_claims.is_none() {
            self.groups_claims.clone_from(&prev.groups_claims);
        }
        self.acl = self.acl.or(prev.acl);
    }

    /// The API key settings in force, if any.
    pub fn api_key(&self) -> Option<&ApiKeyConf> {
        self.api_key.as_ref().and_then(|a| a.as_ref())
    }

    /// Whether requests here are identified as consumers: `auth_consumer on`, or an
    /// `auth_api_key` (a key means nothing without the consumer it belongs to).
    pub fn active(&self) -> bool {
        match &self.mode {
            Some(m) => m.on,
            None => self.api_key().is_some(),
        }
    }

    pub fn unregistered_allow(&self) -> bool {
        self.mode.as_ref().map_or(true, |m| m.unregistered_allow)
    }

    pub fn anonymous(&self) -> Option<&str> {
        self.mode.as_ref().and_then(|m| m.anonymous.as_deref())
    }

    pub fn acl(&self) -> bool {
        self.acl.unwrap_or(false)
    }
}

fn name_ok(v: &str, max: usize) -> bool {
    !v.is_empty()
        && v.len() <= max
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `gateway_policy file=PATH | url=URI [interval=time] [max_size=size] [zone_size=size]`
pub fn set_policy(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    if mcf.policy.is_some() {
        return Err(duplicate(cf));
    }
    let a = args(cf).to_vec();
    let mut source = None;
    let mut interval = DEFAULT_INTERVAL_MS;
    let mut max_size = DEFAULT_MAX_SIZE;
    let mut zone_size = None;
    for v in &a[1..] {
        let s = arg_str(v)?;
        match kv(s) {
            Some(("file" | "url", _)) if source.is_some() => {
                return Err(invalid(cf, s, "give one source: \"file=\" or \"url=\""))
            }
            Some(("file", p)) if !p.is_empty() => {
                let mut path = *v;
                // SAFETY: skips the 5-byte ASCII prefix "file=" of this argument.
                path.data = unsafe { path.data.add(5) };
                path.len -= 5;
                source = Some(Source::File(full_path(cf, &path)?));
            }
            Some(("url", u)) if u.starts_with('/') => {
                if u.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(invalid(cf, s, "the URI must not contain spaces or control bytes"));
                }
                source = Some(Source::Url(u.to_string()));
            }
            Some(("url", _)) => {
                return Err(invalid(
                    cf,
                    s,
                    "the URL is a local URI (a location that proxies to the control plane), starting with \"/\"",
                ))
            }
            Some(("interval", t)) => {
                interval = parse_duration_ms(t).map_err(|e| invalid(cf, s, &e.to_string()))?;
                if !(1000..=86_400_000).contains(&interval) {
                    return Err(invalid(cf, s, "must be between 1s and 1d"));
                }
            }
            Some(("max_size", n)) => {
                max_size = parse_size(n).map_err(|e| invalid(cf, s, &e.to_string()))?;
                if !(1024..=1 << 30).contains(&max_size) {
                    return Err(invalid(cf, s, "must be between 1k and 1g"));
                }
            }
            Some(("zone_size", n)) => {
                let z = parse_size(n).map_err(|e| invalid(cf, s, &e.to_string()))?;
                if z < 64 * 1024 {
                    return Err(invalid(cf, s, "the zone must be at least 64k"));
                }
                zone_size = Some(z);
            }
            _ => {
                return Err(invalid(
                    cf,
                    s,
                    "parameters are file=, url=, interval=, max_size= and zone_size=",
                ))
            }
        }
    }
    let Some(source) = source else {
        return Err(format!(
            "\"{}\" needs a source: \"file=\" or \"url=\"",
            name(cf)
        ));
    };
    // Room for the document in force, the next one and the slab allocator's overhead.
    let zone_size = zone_size.unwrap_or_else(|| (2 * max_size + (1 << 20)).max(4 << 20));
    let initial = match &source {
        Source::File(path) => Some(load_file(path, max_size)?),
        Source::Url(_) => None,
    };
    mcf.policy = Some(PolicyConf {
        source,
        interval_ms: interval,
        max_size,
        zone_size,
        initial,
        shm: core::ptr::null_mut(),
    });
    Ok(())
}

/// Reads and compiles the file source when the configuration loads (`nginx -t` checks it).
fn load_file(path: &str, max_size: usize) -> Result<Initial, String> {
    let stamp = crate::http::policy::file_stamp(path);
    let doc = read_limited(path, max_size)?;
    let (image, _) = gateway_core::policy::compile(&doc)
        .map_err(|e| format!("policy document \"{path}\" refused: {}: {e}", e.code))?;
    Ok(Initial {
        image,
        digest: gateway_core::policy::key_digest(&doc),
        stamp,
    })
}

/// The file's bytes, refused when larger than `max_size`.
pub fn read_limited(path: &str, max_size: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open \"{path}\": {e}"))?;
    let mut doc = Vec::new();
    f.take(max_size as u64 + 1)
        .read_to_end(&mut doc)
        .map_err(|e| format!("cannot read \"{path}\": {e}"))?;
    if doc.len() > max_size {
        return Err(format!(
            "policy document \"{path}\" refused: too_large: larger than max_size={max_size}"
        ));
    }
    Ok(doc)
}

/// `gateway_route NAME`
pub fn set_route(cf: &mut ngx_conf_t, c: &mut ConsumerConf) -> Result<(), String> {
    if c.route.is_some() {
        return Err(duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    if !name_ok(v, 64) {
        return Err(invalid(
            cf,
            v,
            "a route name is 1 to 64 letters, digits, \".\", \"_\" or \"-\"",
        ));
    }
    c.route = Some(v.to_string());
    Ok(())
}

/// `auth_api_key off | header=NAME | query=NAME | cookie=NAME ... [hide_credentials]`
pub fn set_api_key(cf: &mut ngx_conf_t, c: &mut ConsumerConf) -> Result<(), String> {
    if c.api_key.is_some() {
        return Err(duplicate(cf));
    }
    let a = args(cf).to_vec();
    if a.len() == 2 && arg_str(&a[1])? == "off" {
        c.api_key = Some(None);
        return Ok(());
    }
    let mut conf = ApiKeyConf {
        sources: Vec::new(),
        hide: false,
    };
    for v in &a[1..] {
        let s = arg_str(v)?;
        let src = match kv(s) {
            _ if s == "hide_credentials" => {
                conf.hide = true;
                continue;
            }
            Some(("header", n)) if header_name_ok(n) => KeySource::Header(n.to_string()),
            Some(("query", n)) if arg_name_ok(n) => KeySource::Query(n.to_string()),
            Some(("cookie", n)) if arg_name_ok(n) => KeySource::Cookie(n.to_string()),
            Some(("header" | "query" | "cookie", _)) => {
                return Err(invalid(cf, s, "the name has bytes it may not have"))
            }
            _ => {
                return Err(invalid(
                    cf,
                    s,
                    "parameters are header=, query=, cookie= and hide_credentials, or \"off\"",
                ))
            }
        };
        if conf.sources.contains(&src) {
            return Err(invalid(cf, s, "named twice"));
        }
        // The key is a credential: `gateway_log_field` may not log it, and a query argument
        // is redacted from the logged request line and the record's `query`.
        let var = match &src {
            KeySource::Header(n) => format!("$http_{}", n.to_ascii_lowercase().replace('-', "_")),
            KeySource::Query(n) => format!("$arg_{n}"),
            KeySource::Cookie(n) => format!("$cookie_{n}"),
        };
        super::log::guard_token_source(cf, &var)?;
        conf.sources.push(src);
    }
    if conf.sources.is_empty() {
        return Err(format!(
            "\"{}\" needs where to read the key: header=, query= or cookie=",
            name(cf)
        ));
    }
    c.api_key = Some(Some(conf));
    Ok(())
}

fn header_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A query argument or cookie name: what an nginx variable name can hold (`$arg_NAME`).
fn arg_name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `auth_consumer on|off [unregistered=allow|refuse] [anonymous=ID]`
pub fn set_consumer(cf: &mut ngx_conf_t, c: &mut ConsumerConf) -> Result<(), String> {
    if c.mode.is_some() {
        return Err(duplicate(cf));
    }
    let a = args(cf).to_vec();
    let on = match arg_str(&a[1])? {
        "on" => true,
        "off" => false,
        v => {
            return Err(invalid(
                cf,
                v,
                "the first parameter must be \"on\" or \"off\"",
            ))
        }
    };
    let mut mode = ConsumerMode {
        on,
        unregistered_allow: true,
        anonymous: None,
    };
    for v in &a[2..] {
        let s = arg_str(v)?;
        match kv(s) {
            _ if !on => return Err(invalid(cf, s, "\"off\" takes no parameters")),
            Some(("unregistered", "allow")) => mode.unregistered_allow = true,
            Some(("unregistered", "refuse")) => mode.unregistered_allow = false,
            Some(("anonymous", id))
                if !id.is_empty()
                    && id.len() <= 128
                    && id.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-')
                    }) =>
            {
                mode.anonymous = Some(id.to_string())
            }
            _ => {
                return Err(invalid(
                    cf,
                    s,
                    "parameters are unregistered=allow|refuse and anonymous=ID",
                ))
            }
        }
    }
    c.mode = Some(mode);
    Ok(())
}

/// `auth_consumer_groups_claim PATH ...` (a path is claim names joined by ".")
pub fn set_groups_claim(cf: &mut ngx_conf_t, c: &mut ConsumerConf) -> Result<(), String> {
    if c.groups_claims.is_some() {
        return Err(duplicate(cf));
    }
    let a = args(cf).to_vec();
    let mut paths = Vec::new();
    for v in &a[1..] {
        let s = arg_str(v)?;
        let path: Vec<String> = s.split('.').map(String::from).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(invalid(cf, s, "a path is claim names joined by \".\""));
        }
        paths.push(path);
    }
    c.groups_claims = Some(paths);
    Ok(())
}

/// `auth_consumer_acl on|off`
pub fn set_acl(cf: &mut ngx_conf_t, c: &mut ConsumerConf) -> Result<(), String> {
    if c.acl.is_some() {
        return Err(duplicate(cf));
    }
    c.acl = Some(super::on_off(cf)?);
    Ok(())
}

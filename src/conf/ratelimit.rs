//! `rate_limit*` directives and the shared-memory zones behind them.

use core::ffi::c_void;
use core::ptr;

use gateway_core::parse::{
    parse_duration_ms, parse_number, parse_rate, parse_zone, split_key_value,
};
use gateway_core::ratelimit::algo::Algorithm;
use gateway_core::ratelimit::sync::{parse_redis_url, RedisUrl};
use gateway_core::ratelimit::table::{random_seed, Table};
use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_pagesize, ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_alloc,
    ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::core::Pool;

use super::util::{arg_str, args, compile_cv, duplicate, invalid, name, ComplexValue};
use super::MainConf;
use ngx::http::HttpModuleMainConf;

use crate::http::{guard_conf, GatewayModule};

/// A `rate_limit_zone`: its key and, once nginx has mapped it, its table region.
#[derive(Debug)]
pub struct Zone {
    pub name: String,
    pub key: ComplexValue,
    /// The key as written, to notice a changed key on reload.
    pub key_text: String,
    pub shm: *mut ngx_shm_zone_t,
    /// The algorithm limits on this zone use (one per zone: switching would reset counts).
    pub algorithm: Option<Algorithm>,
    /// Set by `init_zone`.
    pub region: *mut u8,
    pub region_len: usize,
    /// `sync=redis://...`: counts shared with other nodes through Redis.
    pub sync: Option<SyncConf>,
    /// `tz=`: the UTC offset (ms) on which windows are aligned (0: UTC).
    pub tz_offset_ms: i64,
    /// `persistent[=N]` (synced zones): the units a node admits for a key before its first
    /// exchange has pulled the key's count from Redis.
    pub persistent: Option<u64>,
}

/// The sync parameters of a `rate_limit_zone`.
#[derive(Debug)]
pub struct SyncConf {
    pub url: RedisUrl,
    /// The URL's servers (the one server, the sentinels or the cluster seeds), resolved when
    /// the configuration is read (configuration pool), in the URL's order.
    pub seeds: Vec<SyncAddr>,
    /// `redis-cluster://`: the hash slot of the zone's keys (all share the tag `{zone}`).
    pub slot: u16,
    /// `sync_resolve` (ms; 0 = off): how often the host name of a `redis://` URL is resolved
    /// again through nginx's `resolver` (also after each failure).
    pub resolve_ms: u64,
    /// The host name to resolve again (`None`: an IP address, or not `redis://`).
    pub resolve_name: Option<std::ffi::CString>,
    /// `sentinel_password_file` / `sentinel_password_env`: `AUTH` for the sentinels (their
    /// `requirepass`), which is not the data servers' password.
    pub sentinel_password: Option<String>,
    /// The http block's core location configuration: its `resolver`, read at run time (the
    /// directive may come after `rate_limit_zone`).
    pub clcf: *mut nginx_sys::ngx_http_core_loc_conf_t,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// `sync_fail=closed`: reject while Redis is unreachable (default: open, local limits).
    pub fail_closed: bool,
    /// `gateway_rate_limit_sync_errors_total{zone}`.
    pub errors_slot: usize,
    /// `rediss://`: the TLS settings.
    pub tls: Option<SyncTls>,
}

/// One server address of a `sync=` URL.
#[derive(Debug)]
pub struct SyncAddr {
    pub sockaddr: *mut nginx_sys::sockaddr,
    pub socklen: nginx_sys::socklen_t,
    pub name: *mut ngx_str_t,
}

/// The TLS side of a `rediss://` sync: an OpenSSL context of nginx's own (configuration pool,
/// freed by a pool cleanup), the name to check and send as SNI, whether to verify.
#[derive(Debug)]
pub struct SyncTls {
    pub ssl: *mut nginx_sys::ngx_ssl_t,
    /// `sync_tls_name` or the URL's host (NUL-terminated for SSL_set_tlsext_host_name).
    pub name: std::ffi::CString,
    /// `sync_tls_verify` (on by default).
    pub verify: bool,
    /// The parameter that sets `name` (for log lines).
    pub name_param: &'static str,
}

/// The trusted CAs of `rediss://` without `sync_tls_ca`.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Default `sync_resolve`.
pub const DEFAULT_SYNC_RESOLVE_MS: u64 = 30_000;

/// Default `sync_interval`.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 100;
/// Default `sync_timeout`.
pub const DEFAULT_SYNC_TIMEOUT_MS: u64 = 500;

impl Zone {
    /// The zone's slab pool (its mutex guards the table).
    pub fn shpool(&self) -> *mut ngx_slab_pool_t {
        // SAFETY: `shm` was returned by ngx_shared_memory_add; after initialization its
        // address is the slab pool nginx set up.
        unsafe { (*self.shm).shm.addr.cast() }
    }
}

impl Zone {
    /// Whether the zone's sync is failing (`None` before initialization or without sync).
    pub fn sync_down(&self) -> Option<bool> {
        if self.region.is_null() || self.sync.is_none() {
            return None;
        }
        let shpool = self.shpool();
        // SAFETY: the slab pool's mutex guards the table region in the zone's shared memory.
        unsafe {
            nginx_sys::ngx_shmtx_lock(&mut (*shpool).mutex);
            let region = core::slice::from_raw_parts_mut(self.region, self.region_len);
            let s = Table::attach(region).ok().map(|t| t.sync_down());
            nginx_sys::ngx_shmtx_unlock(&mut (*shpool).mutex);
            s
        }
    }

    /// The table's counters, read under the zone's mutex (`None` before initialization).
    pub fn stats(&self) -> Option<gateway_core::ratelimit::table::Stats> {
        if self.region.is_null() {
            return None;
        }
        let shpool = self.shpool();
        // SAFETY: the slab pool's mutex guards the table region in the zone's shared memory.
        unsafe {
            nginx_sys::ngx_shmtx_lock(&mut (*shpool).mutex);
            let region = core::slice::from_raw_parts_mut(self.region, self.region_len);
            let s = Table::attach(region).ok().map(|t| t.stats());
            nginx_sys::ngx_shmtx_unlock(&mut (*shpool).mutex);
            s
        }
    }
}

/// The rate of a limit: fixed, or from a variable (`map $jwt_claim_plan $quota {...}`).
#[derive(Clone, Copy, Debug)]
pub enum RateSpec {
    Fixed(gateway_core::parse::Rate),
    Variable(ComplexValue),
    /// `plan`: the limit of this period in the plan of the request's consumer.
    Plan(gateway_core::policy::Period),
}

/// One `rate_limit` directive.
#[derive(Clone, Debug)]
pub struct Limit {
    pub zone: *mut Zone,
    pub rate: RateSpec,
    pub algorithm: Algorithm,
    pub burst: u64,
    pub dry_run: bool,
    pub policy: String,
    /// `gateway_rate_limit_total` slots: passed, rejected, rejected in dry run.
    pub slots: [usize; 3],
    /// `cost=`: the units a request consumes.
    pub cost: CostSpec,
}

/// The cost of a request: fixed (default 1) or from a variable.
#[derive(Clone, Copy, Debug)]
pub enum CostSpec {
    Fixed(u64),
    Variable(ComplexValue),
}

/// Default allowance of `persistent`.
pub const DEFAULT_PERSISTENT_ALLOWANCE: u64 = 10;

/// Parses a cost: a whole number 0 to 4294967295.
pub fn parse_cost(v: &[u8]) -> Option<u64> {
    parse_number(v).ok().filter(|n| *n <= u64::from(u32::MAX))
}

/// `rate_limit_headers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMode {
    Draft,
    Legacy,
    Both,
    Off,
}

/// The `rate_limit*` settings of one block (`None` = not set here).
#[derive(Default, Debug)]
pub struct RateLimitConf {
    pub limits: Option<Vec<Limit>>,
    pub status: Option<u16>,
    pub headers: Option<HeaderMode>,
    pub dry_run: Option<bool>,
    /// `rate_limit_invalid_rate pass|error`: what a bad rate from a variable does.
    pub invalid_rate_error: Option<bool>,
}

impl RateLimitConf {
    pub fn merge(&mut self, prev: &RateLimitConf) {
        if self.limits.is_none() {
            self.limits.clone_from(&prev.limits);
        }
        self.status = self.status.or(prev.status);
        self.headers = self.headers.or(prev.headers);
        self.dry_run = self.dry_run.or(prev.dry_run);
        self.invalid_rate_error = self.invalid_rate_error.or(prev.invalid_rate_error);
    }

    pub fn status(&self) -> u16 {
        self.status.unwrap_or(429)
    }

    pub fn header_mode(&self) -> HeaderMode {
        self.headers.unwrap_or(HeaderMode::Draft)
    }
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `rate_limit_zone $key zone=name:size`
pub fn set_zone(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    let a = args(cf).to_vec();
    let key_text = arg_str(&a[1])?.to_string();
    if key_text.is_empty() {
        return Err(invalid(cf, &key_text, "the key must not be empty"));
    }
    let key = compile_cv(cf, &a[1])?;
    let mut zone_arg = None;
    let mut sync_url = None;
    let mut interval = None;
    let mut timeout = None;
    let mut password = None;
    let mut password_from = None;
    let mut sentinel_password = None;
    let mut tls_ca = None;
    let mut tls_verify = true;
    let mut tls_name = None;
    let mut tls_cert = None;
    let mut tls_key = None;
    let mut fail_closed = false;
    let mut tz_offset_ms = 0;
    let mut persistent = None;
    let mut resolve_ms = None;
    for v in &a[2..] {
        let s = arg_str(v)?;
        if s == "persistent" {
            persistent = Some(DEFAULT_PERSISTENT_ALLOWANCE);
            continue;
        }
        match split_key_value(s) {
            Ok((b"tz", t)) => {
                tz_offset_ms =
                    gateway_core::ratelimit::calendar::parse_offset(t).ok_or_else(|| {
                        invalid(
                        cf,
                        s,
                        "the time zone must be a fixed UTC offset such as \"+02:00\" or \"UTC\"",
                    )
                    })?
            }
            Ok((b"persistent", n)) => {
                persistent = Some(parse_cost(n).ok_or_else(|| {
                    invalid(cf, s, "the allowance must be a whole number of requests")
                })?)
            }
            Ok((b"zone", z)) => zone_arg = Some(z.to_vec()),
            Ok((b"sync", u)) => {
                sync_url = Some(parse_redis_url(&utf8(u)).map_err(|e| {
                    // Not the value itself: it may hold a password.
                    format!(
                        "invalid \"sync\" parameter in \"{}\" directive, {e}",
                        name(cf)
                    )
                })?)
            }
            Ok((b"sync_interval", t)) => {
                let ms = parse_duration_ms(t).map_err(|e| invalid(cf, s, &e.to_string()))?;
                if !(10..=60_000).contains(&ms) {
                    return Err(invalid(cf, s, "must be between 10ms and 60s"));
                }
                interval = Some(ms)
            }
            Ok((b"sync_timeout", t)) => {
                let ms = parse_duration_ms(t).map_err(|e| invalid(cf, s, &e.to_string()))?;
                if !(1..=60_000).contains(&ms) {
                    return Err(invalid(cf, s, "must be between 1ms and 60s"));
                }
                timeout = Some(ms)
            }
            Ok((b"password", p)) if !p.is_empty() => password = Some(utf8(p)),
            Ok((b"password_file", p)) if !p.is_empty() => {
                password_from = Some(password_from_file(cf, p, "password_file")?)
            }
            Ok((b"password_env", p)) if !p.is_empty() => {
                password_from = Some(password_from_env(&utf8(p), "password_env")?)
            }
            Ok((b"sentinel_password_file", p)) if !p.is_empty() => {
                sentinel_password = Some(password_from_file(cf, p, "sentinel_password_file")?)
            }
            Ok((b"sentinel_password_env", p)) if !p.is_empty() => {
                sentinel_password = Some(password_from_env(&utf8(p), "sentinel_password_env")?)
            }
            Ok((b"sync_tls_ca", p)) if !p.is_empty() => tls_ca = Some(utf8(p)),
            Ok((b"sync_tls_cert", p)) if !p.is_empty() => tls_cert = Some(utf8(p)),
            Ok((b"sync_tls_key", p)) if !p.is_empty() => tls_key = Some(utf8(p)),
            Ok((b"sync_tls_name", p)) if !p.is_empty() => tls_name = Some(utf8(p)),
            Ok((b"sync_tls_verify", b"on")) => tls_verify = true,
            Ok((b"sync_tls_verify", b"off")) => tls_verify = false,
            Ok((b"sync_tls_verify", _)) => return Err(invalid(cf, s, "must be \"on\" or \"off\"")),
            Ok((b"sync_resolve", b"off")) => resolve_ms = Some(0),
            Ok((b"sync_resolve", t)) => {
                let ms = parse_duration_ms(t).map_err(|e| invalid(cf, s, &e.to_string()))?;
                if !(1000..=86_400_000).contains(&ms) {
                    return Err(invalid(cf, s, "must be \"off\" or between 1s and 1d"));
                }
                resolve_ms = Some(ms)
            }
            Ok((b"sync_fail", b"open")) => fail_closed = false,
            Ok((b"sync_fail", b"closed")) => fail_closed = true,
            Ok((b"sync_fail", _)) => return Err(invalid(cf, s, "must be \"open\" or \"closed\"")),
            _ => return Err(invalid(cf, s, "")),
        }
    }
    if sync_url.is_none()
        && (interval.is_some()
            || timeout.is_some()
            || password.is_some()
            || password_from.is_some())
    {
        return Err(format!(
            "\"{}\": \"sync_interval\", \"sync_timeout\" and \"password\" need \"sync\"",
            name(cf)
        ));
    }
    let tls_params = tls_ca.is_some()
        || tls_cert.is_some()
        || tls_key.is_some()
        || tls_name.is_some()
        || !tls_verify;
    if tls_params && !sync_url.as_ref().is_some_and(|u| u.tls) {
        return Err(format!(
            "\"{}\": the \"sync_tls_*\" parameters need \"sync=rediss://...\"",
            name(cf)
        ));
    }
    if tls_cert.is_some() != tls_key.is_some() {
        return Err(format!(
            "\"{}\": \"sync_tls_cert\" and \"sync_tls_key\" go together",
            name(cf)
        ));
    }
    if password.is_some() && password_from.is_some() {
        return Err(format!(
            "\"{}\": one of \"password\", \"password_file\" and \"password_env\"",
            name(cf)
        ));
    }
    if resolve_ms.is_some()
        && !sync_url
            .as_ref()
            .is_some_and(|u| u.topology == gateway_core::ratelimit::sync::Topology::Direct)
    {
        return Err(format!(
            "\"{}\": \"sync_resolve\" is for \"sync=redis://\" and \"sync=rediss://\" (sentinels and cluster nodes name their servers by address)",
            name(cf)
        ));
    }
    if sentinel_password.is_some()
        && !sync_url.as_ref().is_some_and(|u| {
            matches!(
                u.topology,
                gateway_core::ratelimit::sync::Topology::Sentinel(_)
            )
        })
    {
        return Err(format!(
            "\"{}\": \"sentinel_password_file\" and \"sentinel_password_env\" are for \"sync=redis-sentinel://\"",
            name(cf)
        ));
    }
    if sync_url.is_none() && persistent.is_some() {
        return Err(format!(
            "\"{}\": \"persistent\" needs \"sync\" (the counts persist in Redis)",
            name(cf)
        ));
    }
    let Some(z) = zone_arg else {
        return Err(format!("\"{}\" must have \"zone\" parameter", name(cf)));
    };
    let (zname, size) = parse_zone(&z, true).map_err(|e| format!("{e}"))?;
    let size = size.unwrap_or(0);
    let min = 8 * 4096usize;
    if size < min {
        return Err(format!(
            "zone \"{}\" is too small, at least 32k",
            utf8(zname)
        ));
    }
    let zname = utf8(zname);
    if zname == crate::http::metrics::ZONE_NAME {
        return Err(format!(
            "zone name \"{zname}\" is reserved for the module's metrics, use another name"
        ));
    }
    if zname == crate::http::policy::ZONE_NAME {
        return Err(format!(
            "zone name \"{zname}\" is reserved for the module's policy, use another name"
        ));
    }
    if zname == crate::http::jwks::ZONE_NAME {
        return Err(format!(
            "zone name \"{zname}\" is reserved for the module's fetched key sets, use another name"
        ));
    }
    // SAFETY: `mcf.zones` holds zones allocated in the configuration pool.
    if mcf.zones.iter().any(|z| unsafe { (**z).name == zname }) {
        return Err(format!("duplicate zone \"{zname}\""));
    }
    let sync = match sync_url {
        None => None,
        Some(mut url) => {
            if password.is_some() {
                url.password = password;
            }
            if let Some(pw) = password_from {
                url = url.with_password(pw).map_err(|e| {
                    format!(
                        "\"{}\": \"password_file\" or \"password_env\" given and {e}",
                        name(cf)
                    )
                })?;
            }
            let mut seeds = Vec::with_capacity(url.seeds.len());
            for addr in &url.seeds {
                let (sockaddr, socklen, name) = resolve(cf, addr)?;
                seeds.push(SyncAddr {
                    sockaddr,
                    socklen,
                    name,
                });
            }
            let resolve_name = (url.topology == gateway_core::ratelimit::sync::Topology::Direct
                && url.host.parse::<std::net::IpAddr>().is_err())
            .then(|| std::ffi::CString::new(url.host.clone()).ok())
            .flatten();
            // SAFETY: in the http block `cf.ctx` is its ngx_http_conf_ctx_t; the core module's
            // slot of its loc_conf array is the http-level core location configuration.
            let clcf = unsafe {
                let ctx = cf.ctx.cast::<nginx_sys::ngx_http_conf_ctx_t>();
                (*(*ctx)
                    .loc_conf
                    .add(nginx_sys::ngx_http_core_module.ctx_index))
                .cast::<nginx_sys::ngx_http_core_loc_conf_t>()
            };
            let slot = gateway_core::ratelimit::topology::key_slot(
                gateway_core::ratelimit::sync::redis_key(&zname, [0, 0], 0).as_bytes(),
            );
            let tls = if url.tls {
                let name_text = tls_name.unwrap_or_else(|| url.host.clone());
                Some(tls_context(
                    cf,
                    &format!("rate_limit_zone \"{zname}\""),
                    "sync_",
                    name_text,
                    tls_verify,
                    tls_ca.as_deref().unwrap_or(SYSTEM_CA_FILE),
                    tls_cert.zip(tls_key),
                )?)
            } else {
                None
            };
            mcf.metrics.family(gateway_core::metrics::Family {
                name: "gateway_rate_limit_sync_errors_total",
                help: "Failed Redis sync exchanges of rate-limit zones.",
                kind: "counter",
            });
            let errors_slot = mcf
                .metrics
                .slot("gateway_rate_limit_sync_errors_total", &[("zone", &zname)]);
            Some(SyncConf {
                url,
                seeds,
                slot,
                resolve_ms: resolve_ms.unwrap_or(DEFAULT_SYNC_RESOLVE_MS),
                sentinel_password,
                resolve_name,
                clcf,
                interval_ms: interval.unwrap_or(DEFAULT_SYNC_INTERVAL_MS),
                timeout_ms: timeout.unwrap_or(DEFAULT_SYNC_TIMEOUT_MS),
                fail_closed,
                errors_slot,
                tls,
            })
        }
    };

    // SAFETY: `cf.pool` is the configuration pool; the zone is dropped with it.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let zone = pool.allocate(Zone {
        name: zname.clone(),
        key,
        key_text,
        shm: ptr::null_mut(),
        algorithm: None,
        region: ptr::null_mut(),
        region_len: 0,
        sync,
        tz_offset_ms,
        persistent,
    });
    if zone.is_null() {
        return Err("out of memory".into());
    }
    let mut nname = ngx_str_t {
        len: zname.len(),
        data: pool.alloc_unaligned(zname.len()).cast(),
    };
    if nname.data.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: `nname.data` has room for the name; the module static lives forever.
    let shm = unsafe {
        ptr::copy_nonoverlapping(zname.as_ptr(), nname.data, zname.len());
        ngx_shared_memory_add(
            cf,
            &mut nname,
            size,
            ptr::addr_of_mut!(crate::ngx_http_gateway_module).cast(),
        )
    };
    if shm.is_null() {
        return Err(format!("cannot add shared zone \"{zname}\""));
    }
    // SAFETY: `shm` was just returned by nginx; `zone` lives in the configuration pool.
    unsafe {
        if !(*shm).data.is_null() {
            return Err(format!(
                "zone \"{zname}\" is already used by another module or directive"
            ));
        }
        (*shm).init = Some(init_zone);
        (*shm).data = zone.cast();
        (*zone).shm = shm;
    }
    mcf.zones.push(zone);
    Ok(())
}

/// Shared-zone initialization: a reused zone (reload with the same name and size) keeps its
/// table and counters; a new one gets a freshly formatted table.
unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx passes the zone we registered; `data` is the previous cycle's `Zone`
        // for the same name and size, or null.
        let (zone, old) = unsafe {
            (
                &mut *(*shm_zone).data.cast::<Zone>(),
                data.cast::<Zone>().as_ref(),
            )
        };
        let log = ngx::log::ngx_cycle_log().as_ptr();
        let shpool = zone.shpool();
        if let Some(old) = old {
            zone.region = old.region;
            zone.region_len = old.region_len;
            // SAFETY: the region lives in the same (reused) shared memory.
            let region = unsafe { core::slice::from_raw_parts_mut(zone.region, zone.region_len) };
            let synced = zone.sync.is_some();
            let reusable = old.key_text == zone.key_text
                && Table::attach(&mut *region).is_ok_and(|t| t.is_synced() == synced);
            if reusable {
                return NGX_OK as ngx_int_t;
            }
            let why = if old.key_text != zone.key_text {
                format!(
                    "key changed from \"{}\" to \"{}\"",
                    old.key_text, zone.key_text
                )
            } else if old.sync.is_some() != zone.sync.is_some() {
                "sync turned on or off".to_string()
            } else {
                "table from an incompatible build".to_string()
            };
            gw_log!(
                NGX_LOG_NOTICE,
                log,
                "rate_limit_zone \"{}\": {why}, counters start afresh",
                zone.name
            );
            return match Table::init_with(region, random_seed(), synced) {
                Ok(_) => NGX_OK as ngx_int_t,
                Err(e) => {
                    gw_log!(NGX_LOG_EMERG, log, "rate_limit_zone \"{}\": {e}", zone.name);
                    NGX_ERROR as ngx_int_t
                }
            };
        }
        // A fresh zone: one big block from the slab pool for the table.
        // SAFETY: nginx initialized the slab pool at the start of the zone.
        unsafe {
            let pagesize = ngx_pagesize;
            let mut pages = (*shpool).pfree;
            // The first tries may not fit (slab metadata): no [crit] line for those.
            (*shpool).set_log_nomem(0);
            let mut region: *mut u8 = ptr::null_mut();
            while pages > 1 && region.is_null() {
                pages -= 1;
                region = ngx_slab_alloc(shpool, pages * pagesize).cast::<u8>();
            }
            if region.is_null() {
                gw_log!(
                    NGX_LOG_EMERG,
                    log,
                    "rate_limit_zone \"{}\" is too small",
                    zone.name
                );
                return NGX_ERROR as ngx_int_t;
            }
            zone.region = region;
            zone.region_len = pages * pagesize;
            (*shpool).data = region.cast();
            let r = core::slice::from_raw_parts_mut(region, zone.region_len);
            if let Err(e) = Table::init_with(r, random_seed(), zone.sync.is_some()) {
                gw_log!(NGX_LOG_EMERG, log, "rate_limit_zone \"{}\": {e}", zone.name);
                return NGX_ERROR as ngx_int_t;
            }
        }
        NGX_OK as ngx_int_t
    })
}

/// `rate_limit zone=name rate=N r/s|r/m|r/h|r/d [burst=N] [algorithm=..] [dry_run] [policy=label]`
pub fn set_limit(cf: &mut ngx_conf_t, c: &mut RateLimitConf) -> Result<(), String> {
    let a = args(cf).to_vec();
    let mut zone_name = None;
    let mut rate = None;
    let mut burst = None;
    let mut algorithm = Algorithm::Sliding;
    let mut dry_run = false;
    let mut policy = None;
    let mut plan = false;
    let mut cost = CostSpec::Fixed(1);
    for v in &a[1..] {
        let s = arg_str(v)?;
        if s == "dry_run" {
            dry_run = true;
            continue;
        }
        if s == "plan" {
            plan = true;
            continue;
        }
        let Ok((k, val)) = split_key_value(s) else {
            let why = if s.ends_with('=') {
                "the value is empty"
            } else {
                "parameters are zone=, rate=, plan, cost=, burst=, algorithm=, dry_run and policy="
            };
            return Err(invalid(cf, s, why));
        };
        match k {
            b"zone" => zone_name = Some(utf8(val)),
            b"rate" if val.starts_with(b"$") => {
                let mut value = *v;
                // SAFETY: skips the 5-byte ASCII prefix "rate=" of this argument.
                value.data = unsafe { value.data.add(5) };
                value.len -= 5;
                rate = Some(RateSpec::Variable(compile_cv(cf, &value)?));
            }
            b"rate" => rate = Some(RateSpec::Fixed(parse_rate(val).map_err(|e| e.to_string())?)),
            b"cost" if val.starts_with(b"$") => {
                let mut value = *v;
                // SAFETY: skips the 5-byte ASCII prefix "cost=" of this argument.
                value.data = unsafe { value.data.add(5) };
                value.len -= 5;
                cost = CostSpec::Variable(compile_cv(cf, &value)?);
            }
            b"cost" => {
                cost = CostSpec::Fixed(parse_cost(val).filter(|n| *n >= 1).ok_or_else(|| {
                    invalid(
                        cf,
                        s,
                        "\"cost\" must be a whole number from 1 to 4294967295",
                    )
                })?)
            }
            b"burst" => {
                burst =
                    Some(parse_number(val).map_err(|_| {
                        invalid(cf, s, "\"burst\" must be a whole number of requests")
                    })?)
            }
            b"algorithm" => {
                algorithm = Algorithm::parse(val)
                    .ok_or_else(|| invalid(cf, s, "must be \"sliding\" or \"token_bucket\""))?
            }
            b"policy"
                if !val.is_empty()
                    && val
                        .iter()
                        .all(|c| c.is_ascii_graphic() && *c != b'"' && *c != b'\\') =>
            {
                policy = Some(utf8(val))
            }
            b"policy" => {
                return Err(invalid(
                    cf,
                    s,
                    "the label must be printable ASCII without spaces, quotes or backslashes",
                ))
            }
            _ => return Err(invalid(
                cf,
                s,
                "parameters are zone=, rate=, plan, cost=, burst=, algorithm=, dry_run and policy=",
            )),
        }
    }
    let Some(zone_name) = zone_name else {
        return Err(format!("\"{}\" must have \"zone\" parameter", name(cf)));
    };
    let rates: Vec<(RateSpec, Option<&str>)> = match (rate, plan) {
        (Some(_), true) => {
            return Err(format!(
                "\"{}\": \"rate\" and \"plan\" exclude each other",
                name(cf)
            ))
        }
        (Some(r), false) => vec![(r, None)],
        (None, true) => {
            let has_policy = <GatewayModule as HttpModuleMainConf>::main_conf(cf)
                .is_some_and(|m| m.policy.is_some());
            if !has_policy {
                return Err(format!(
                    "\"{}\" with \"plan\" needs a \"gateway_policy\" (declare it before)",
                    name(cf)
                ));
            }
            gateway_core::policy::Period::ALL
                .iter()
                .map(|p| (RateSpec::Plan(*p), Some(p.name())))
                .collect()
        }
        (None, false) => {
            return Err(format!(
                "\"{}\" must have \"rate\" or \"plan\" parameter",
                name(cf)
            ))
        }
    };
    if let (Some(RateSpec::Fixed(r)), Algorithm::TokenBucket) = (&rate, algorithm) {
        let win = gateway_core::ratelimit::calendar::Windows {
            period_ms: r.period_ms,
            offset_ms: 0,
        };
        if win.is_calendar() {
            return Err(format!(
                "\"{}\": rate={r} is a calendar window, which algorithm=token_bucket does not support",
                name(cf)
            ));
        }
    }
    if burst.is_some() && algorithm == Algorithm::Sliding {
        return Err("\"burst\" applies to algorithm=token_bucket only".into());
    }
    let mcf = GatewayModule::main_conf_mut(cf).ok_or("no http main conf")?;
    // SAFETY: zones live in the configuration pool.
    let zone = mcf
        .zones
        .iter()
        .copied()
        .find(|z| unsafe { (**z).name == zone_name })
        .ok_or_else(|| format!("unknown rate_limit_zone \"{zone_name}\" (declare it with \"rate_limit_zone\" before use)"))?;
    // SAFETY: as above.
    let z = unsafe { &mut *zone };
    if z.sync.is_some() && algorithm == Algorithm::TokenBucket {
        return Err(format!(
            "zone \"{zone_name}\" is synced through Redis, which supports algorithm=sliding only"
        ));
    }
    match z.algorithm {
        Some(prev) if prev != algorithm => {
            return Err(format!(
                "zone \"{zone_name}\" is used with algorithm={} elsewhere; one zone keeps one kind of counter, use another zone",
                prev.as_str()
            ))
        }
        _ => z.algorithm = Some(algorithm),
    }
    let base = policy.unwrap_or(zone_name.clone());
    for (rate, period) in rates {
        // A plan's limits are policies "<policy>.<period>" (e.g. "consumers.minute").
        let policy = match period {
            Some(p) => format!("{base}.{p}"),
            None => base.clone(),
        };
        let mut slot = |result| {
            mcf.metrics.slot(
                "gateway_rate_limit_total",
                &[
                    ("zone", &zone_name),
                    ("policy", &policy),
                    ("result", result),
                ],
            )
        };
        let slots = [slot("passed"), slot("rejected"), slot("rejected_dry_run")];
        c.limits.get_or_insert_with(Vec::new).push(Limit {
            zone,
            rate,
            algorithm,
            burst: burst.unwrap_or(0),
            dry_run,
            policy,
            slots,
            cost,
        });
    }
    Ok(())
}

/// `rate_limit_status code`
pub fn set_status(cf: &mut ngx_conf_t, c: &mut RateLimitConf) -> Result<(), String> {
    if c.status.is_some() {
        return Err(duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    let n: u16 = v
        .parse()
        .ok()
        .filter(|n| (400..=599).contains(n))
        .ok_or_else(|| invalid(cf, v, "value must be between 400 and 599"))?;
    c.status = Some(n);
    Ok(())
}

/// `rate_limit_headers draft|legacy|both|off`
pub fn set_headers(cf: &mut ngx_conf_t, c: &mut RateLimitConf) -> Result<(), String> {
    if c.headers.is_some() {
        return Err(duplicate(cf));
    }
    c.headers = Some(match arg_str(&args(cf)[1])? {
        "draft" => HeaderMode::Draft,
        "legacy" => HeaderMode::Legacy,
        "both" => HeaderMode::Both,
        "off" => HeaderMode::Off,
        v => {
            return Err(invalid(
                cf,
                v,
                "must be \"draft\", \"legacy\", \"both\" or \"off\"",
            ))
        }
    });
    Ok(())
}

/// `rate_limit_dry_run on|off`
pub fn set_dry_run(cf: &mut ngx_conf_t, c: &mut RateLimitConf) -> Result<(), String> {
    if c.dry_run.is_some() {
        return Err(duplicate(cf));
    }
    c.dry_run = Some(super::on_off(cf)?);
    Ok(())
}

/// `rate_limit_invalid_rate pass|error`
pub fn set_invalid_rate(cf: &mut ngx_conf_t, c: &mut RateLimitConf) -> Result<(), String> {
    if c.invalid_rate_error.is_some() {
        return Err(duplicate(cf));
    }
    c.invalid_rate_error = Some(match arg_str(&args(cf)[1])? {
        "pass" => false,
        "error" => true,
        v => return Err(invalid(cf, v, "must be \"pass\" or \"error\"")),
    });
    Ok(())
}

/// Resolves `host:port` when the configuration is read (as nginx does for upstream servers).
pub(crate) fn resolve(
    cf: &mut ngx_conf_t,
    addr: &str,
) -> Result<
    (
        *mut nginx_sys::sockaddr,
        nginx_sys::socklen_t,
        *mut ngx_str_t,
    ),
    String,
> {
    // SAFETY: `cf.pool` is the configuration pool; `ngx_url_t` is plain data (zeroed is its
    // documented initial state), and ngx_parse_url allocates the results in the pool.
    unsafe {
        let pool = Pool::from_ngx_pool(cf.pool);
        let data = pool.alloc_unaligned(addr.len()).cast::<u8>();
        if data.is_null() {
            return Err("out of memory".into());
        }
        ptr::copy_nonoverlapping(addr.as_ptr(), data, addr.len());
        let mut u: nginx_sys::ngx_url_t = core::mem::zeroed();
        u.url = ngx_str_t {
            len: addr.len(),
            data,
        };
        u.default_port = 6379;
        if nginx_sys::ngx_parse_url(cf.pool, &mut u) != NGX_OK as ngx_int_t || u.naddrs == 0 {
            let err = if u.err.is_null() {
                "host not found".to_string()
            } else {
                core::ffi::CStr::from_ptr(u.err)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!("{err} in sync server \"{addr}\""));
        }
        let a = &mut *u.addrs;
        Ok((a.sockaddr, a.socklen, &mut a.name))
    }
}

/// `password_file=PATH`: the file's first line (relative paths from nginx's prefix, as nginx
/// does for its files). Its content is never logged.
pub(crate) fn password_from_file(
    cf: &mut ngx_conf_t,
    path: &[u8],
    param: &str,
) -> Result<String, String> {
    let v = cstr_in_pool(cf, &utf8(path))?;
    let full = super::util::full_path(cf, &v)?;
    let text = std::fs::read_to_string(&full)
        .map_err(|e| format!("\"{}\": cannot read \"{param}\" \"{full}\": {e}", name(cf)))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(format!("\"{}\": \"{param}\" \"{full}\" is empty", name(cf)));
    }
    Ok(line.to_string())
}

/// `password_env=NAME`: read when the configuration is read, in the master process (which has
/// the environment nginx was started with). Its value is never logged.
pub(crate) fn password_from_env(var: &str, param: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!(
            "\"{param}\": environment variable \"{var}\" is not set or empty"
        )),
    }
}

/// A NUL-terminated copy of `s` in the configuration pool (nginx's file functions hand the
/// data to C as a string).
fn cstr_in_pool(cf: &mut ngx_conf_t, s: &str) -> Result<ngx_str_t, String> {
    // SAFETY: `cf.pool` is the configuration pool.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let data = pool.alloc_unaligned(s.len() + 1).cast::<u8>();
    if data.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: `data` has room for `s` and the NUL.
    unsafe {
        ptr::copy_nonoverlapping(s.as_ptr(), data, s.len());
        *data.add(s.len()) = 0;
    }
    Ok(ngx_str_t { len: s.len(), data })
}

/// The OpenSSL context of a `rediss://` sync, made as nginx makes `proxy_ssl`'s: TLS 1.2 and
/// 1.3, the trusted CAs (unless `sync_tls_verify=off`), an optional client certificate. It
/// belongs to the configuration cycle: a pool cleanup frees it with the pool.
/// `owner` names the configuration in messages (`rate_limit_zone "api"`), `prefix` the
/// parameters (`sync_` for `sync_tls_ca`, empty for `session_store`'s `tls_ca`).
pub(crate) fn tls_context(
    cf: &mut ngx_conf_t,
    owner: &str,
    prefix: &'static str,
    name_text: String,
    verify: bool,
    ca: &str,
    cert_key: Option<(String, String)>,
) -> Result<SyncTls, String> {
    use nginx_sys::{ngx_pcalloc, ngx_pool_cleanup_add, ngx_ssl_cleanup_ctx, ngx_ssl_t};
    let name_param = if prefix.is_empty() {
        "tls_name"
    } else {
        "sync_tls_name"
    };
    let cname = std::ffi::CString::new(name_text)
        .map_err(|_| format!("\"{}\": bad \"{name_param}\"", name(cf)))?;
    let zone = owner;
    // SAFETY: `cf.pool` is the configuration pool; a zeroed ngx_ssl_t is what nginx's
    // ngx_pcalloc gives proxy_ssl; ngx_ssl_create fills it; the cleanup frees its SSL_CTX with
    // the pool. The path strings are NUL-terminated pool copies.
    unsafe {
        let ssl = ngx_pcalloc(cf.pool, core::mem::size_of::<ngx_ssl_t>()).cast::<ngx_ssl_t>();
        if ssl.is_null() {
            return Err("out of memory".into());
        }
        (*ssl).log = cf.log;
        let protocols = (nginx_sys::NGX_SSL_TLSv1_2 | nginx_sys::NGX_SSL_TLSv1_3) as usize;
        if nginx_sys::ngx_ssl_create(ssl, protocols, ptr::null_mut()) != NGX_OK as ngx_int_t {
            return Err(format!("{zone}: cannot create the TLS context"));
        }
        let cln = ngx_pool_cleanup_add(cf.pool, 0);
        if cln.is_null() {
            ngx_ssl_cleanup_ctx(ssl.cast());
            return Err("out of memory".into());
        }
        (*cln).handler = Some(ngx_ssl_cleanup_ctx);
        (*cln).data = ssl.cast();
        if let Some((cert, key)) = cert_key {
            let mut c = cstr_in_pool(cf, &cert)?;
            let mut k = cstr_in_pool(cf, &key)?;
            if nginx_sys::ngx_ssl_certificate(cf, ssl, &mut c, &mut k, ptr::null_mut())
                != NGX_OK as ngx_int_t
            {
                return Err(format!(
                    "{zone}: cannot load \"{prefix}tls_cert\" \"{cert}\" or \"{prefix}tls_key\" \"{key}\""
                ));
            }
        }
        if verify {
            let mut c = cstr_in_pool(cf, ca)?;
            if nginx_sys::ngx_ssl_trusted_certificate(cf, ssl, &mut c, 9) != NGX_OK as ngx_int_t {
                return Err(format!(
                    "{zone}: cannot load the trusted CAs \"{ca}\" ({prefix}tls_ca)"
                ));
            }
        } else {
            ngx::ngx_conf_log_error!(
                nginx_sys::NGX_LOG_WARN,
                cf,
                "gateway: {zone}: {prefix}tls_verify=off, the Redis server's certificate is not verified"
            );
        }
        Ok(SyncTls {
            ssl,
            name: cname,
            verify,
            name_param,
        })
    }
}

//! Directives, configuration structures and their merge rules.
//!
//! Values are parsed once here; request-time code never re-parses configuration.

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_add_variable, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE,
    NGX_CONF_2MORE, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12,
    NGX_CONF_TAKE2, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
};
use ngx::core::{Pool, NGX_CONF_ERROR};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use ngx::ngx_string;

use crate::http::guard_conf;

pub mod jwt;
pub mod log;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod ratelimit;
pub mod trace;
pub mod util;

use util::{arg_str, args, directive, invalid};

/// Per-location configuration (also created for http and server blocks and merged down).
#[derive(Debug, Default)]
pub struct LocConf {
    /// `gateway on|off`: the master switch for every gateway feature in this location.
    pub enabled: Option<bool>,
    /// `auth_jwt*`.
    pub jwt: jwt::JwtConf,
    /// `rate_limit*`.
    pub rl: ratelimit::RateLimitConf,
    /// `gateway_log*`.
    pub log: log::LogConf,
    /// `gateway_route`, `auth_api_key`, `auth_consumer*`.
    pub consumer: policy::ConsumerConf,
    /// `auth_oidc` (`Some(None)`: off).
    pub oidc: Option<Option<*const oidc::Provider>>,
    /// `gateway_trace`.
    pub trace: trace::TraceConf,
}

impl LocConf {
    /// Fills unset values from the enclosing block, then from the defaults. `location` is the
    /// name of the location being merged (empty for `http` and `server` blocks).
    fn merge(&mut self, prev: &LocConf, location: &str) -> Result<(), jwt::MergeError> {
        if self.enabled.is_none() {
            self.enabled = prev.enabled;
        }
        self.rl.merge(&prev.rl);
        self.log.merge(&prev.log);
        self.consumer.merge(&prev.consumer);
        self.trace.merge(&prev.trace);
        if self.oidc.is_none() {
            self.oidc = prev.oidc;
        }
        self.jwt.merge(&prev.jwt, location)
    }

    /// Whether the gateway handlers run for requests in this location.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

/// http-level configuration.
#[derive(Debug)]
pub struct MainConf {
    /// The counter layout of this configuration (`gateway_metrics`).
    pub metrics: gateway_core::metrics::Registry,
    /// Slots of the fixed counters.
    pub slots: crate::http::metrics::Slots,
    /// The `gateway_metrics` shared zone.
    pub metrics_shm: *mut nginx_sys::ngx_shm_zone_t,
    /// `gateway_metrics_buckets`.
    pub buckets: metrics::Buckets,
    /// `gateway_metrics_histograms`.
    pub histograms: Option<bool>,
    /// `gateway_metrics_consumers`.
    pub consumer_metrics: Option<metrics::ConsumerMetrics>,
    /// Names of the `gateway_route`s of the configuration (a location's `route_id` is its
    /// index plus one).
    pub routes: Vec<String>,
    /// Slots of the histograms, the per-route and the per-upstream series (set at
    /// postconfiguration).
    pub obs: crate::http::metrics::ObsSlots,
    /// A location uses `auth_jwt_key_request` (the `gateway_jwks` zone is needed).
    pub jwks_used: bool,
    /// The `gateway_jwks` shared zone.
    pub jwks_shm: *mut nginx_sys::ngx_shm_zone_t,
    /// `auth_jwt_key_zone size`.
    pub jwks_zone_size: Option<usize>,
    /// Every `auth_jwt_key_request` and `auth_jwt_oidc_discovery` URI of the configuration
    /// (a reload frees the zone's entries of the others).
    pub jwks_uris: Vec<String>,
    /// Indexes of the nginx variables the JSON record reads.
    pub log_vars: crate::http::log::LogVars,
    /// `auth_jwt_cache size=N | off`: entries of the per-worker verified-token cache.
    pub jwt_cache: Option<usize>,
    /// `rate_limit_zone`s, allocated in the configuration pool.
    pub zones: Vec<*mut ratelimit::Zone>,
    /// What keeps credentials out of the log (`gateway_log_field`, `auth_jwt token=`).
    pub credentials: log::CredentialGuard,
    /// `gateway_policy`.
    pub policy: Option<policy::PolicyConf>,
    /// `oidc_provider` blocks, allocated in the configuration pool.
    pub oidc: Vec<*mut oidc::Provider>,
}

/// A variable defined by `auth_jwt_claim_set` / `auth_jwt_header_set`.
#[derive(Debug)]
pub struct ClaimVar {
    /// Look in the JOSE header instead of the payload.
    pub header: bool,
    /// Names from the top level down.
    pub path: Vec<String>,
}

const ANY_CONF: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

const fn command(
    name: ngx_str_t,
    type_: u32,
    conf: usize,
    set: unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

const LOC: usize = NGX_HTTP_LOC_CONF_OFFSET;
const MAIN: usize = NGX_HTTP_MAIN_CONF_OFFSET;

/// The module's directive table.
pub static mut COMMANDS: [ngx_command_t; 47] = [
    command(
        ngx_string!("gateway"),
        ANY_CONF | NGX_CONF_FLAG,
        LOC,
        cmd_gateway,
    ),
    command(
        ngx_string!("auth_jwt"),
        ANY_CONF | NGX_CONF_TAKE12,
        LOC,
        cmd_auth_jwt,
    ),
    command(
        ngx_string!("auth_jwt_key_file"),
        ANY_CONF | NGX_CONF_TAKE12,
        LOC,
        cmd_key_file,
    ),
    command(
        ngx_string!("auth_jwt_leeway"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_leeway,
    ),
    command(
        ngx_string!("auth_jwt_type"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_type,
    ),
    command(
        ngx_string!("auth_jwt_require"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_require,
    ),
    command(
        ngx_string!("auth_jwt_claim_set"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_2MORE,
        MAIN,
        cmd_claim_set,
    ),
    command(
        ngx_string!("auth_jwt_header_set"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_2MORE,
        MAIN,
        cmd_header_set,
    ),
    command(
        ngx_string!("auth_jwt_algorithms"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_algorithms,
    ),
    command(
        ngx_string!("auth_jwt_issuer"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_issuer,
    ),
    command(
        ngx_string!("auth_jwt_audience"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_audience,
    ),
    command(
        ngx_string!("auth_jwt_typ"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_typ,
    ),
    command(
        ngx_string!("auth_jwt_require_exp"),
        ANY_CONF | NGX_CONF_FLAG,
        LOC,
        cmd_require_exp,
    ),
    command(
        ngx_string!("auth_jwt_require_claim"),
        ANY_CONF | NGX_CONF_2MORE,
        LOC,
        cmd_require_claim,
    ),
    command(
        ngx_string!("auth_jwt_cache"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        MAIN,
        cmd_jwt_cache,
    ),
    command(
        ngx_string!("auth_jwt_max_size"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_max_size,
    ),
    command(
        ngx_string!("rate_limit_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_2MORE,
        MAIN,
        cmd_rl_zone,
    ),
    command(
        ngx_string!("rate_limit"),
        ANY_CONF | NGX_CONF_2MORE,
        LOC,
        cmd_rl,
    ),
    command(
        ngx_string!("rate_limit_status"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_rl_status,
    ),
    command(
        ngx_string!("rate_limit_headers"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_rl_headers,
    ),
    command(
        ngx_string!("rate_limit_dry_run"),
        ANY_CONF | NGX_CONF_FLAG,
        LOC,
        cmd_rl_dry_run,
    ),
    command(
        ngx_string!("rate_limit_invalid_rate"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_rl_invalid_rate,
    ),
    command(
        ngx_string!("auth_jwt_key_request"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_key_request,
    ),
    command(
        ngx_string!("auth_jwt_key_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        MAIN,
        cmd_key_zone,
    ),
    command(
        ngx_string!("auth_jwt_oidc_discovery"),
        ANY_CONF | NGX_CONF_TAKE12,
        LOC,
        cmd_discovery,
    ),
    command(
        ngx_string!("auth_jwt_key_cache"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_key_cache,
    ),
    command(
        ngx_string!("auth_jwt_key_refresh_interval"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_key_refresh,
    ),
    command(
        ngx_string!("auth_jwt_key_max_stale"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_key_max_stale,
    ),
    command(
        ngx_string!("auth_jwt_key_unavailable"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_key_unavailable,
    ),
    command(
        ngx_string!("gateway_log"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_log,
    ),
    command(
        ngx_string!("gateway_log_field"),
        ANY_CONF | NGX_CONF_TAKE2,
        LOC,
        cmd_log_field,
    ),
    command(
        ngx_string!("gateway_log_fields"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_log_fields,
    ),
    command(
        ngx_string!("gateway_metrics"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        LOC,
        cmd_metrics,
    ),
    command(
        ngx_string!("gateway_metrics_buckets"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_2MORE,
        MAIN,
        cmd_metrics_buckets,
    ),
    command(
        ngx_string!("gateway_metrics_consumers"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        MAIN,
        cmd_metrics_consumers,
    ),
    command(
        ngx_string!("gateway_metrics_histograms"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_FLAG,
        MAIN,
        cmd_metrics_histograms,
    ),
    command(
        ngx_string!("gateway_trace"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_trace,
    ),
    command(
        ngx_string!("gateway_policy"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        MAIN,
        cmd_policy,
    ),
    command(
        ngx_string!("gateway_route"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_route,
    ),
    command(
        ngx_string!("auth_api_key"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_api_key,
    ),
    command(
        ngx_string!("auth_consumer"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_consumer,
    ),
    command(
        ngx_string!("auth_consumer_groups_claim"),
        ANY_CONF | NGX_CONF_1MORE,
        LOC,
        cmd_groups_claim,
    ),
    command(
        ngx_string!("auth_consumer_acl"),
        ANY_CONF | NGX_CONF_FLAG,
        LOC,
        cmd_acl,
    ),
    command(
        ngx_string!("oidc_provider"),
        NGX_HTTP_MAIN_CONF | nginx_sys::NGX_CONF_BLOCK | NGX_CONF_TAKE1,
        MAIN,
        cmd_oidc_provider,
    ),
    command(
        ngx_string!("auth_oidc"),
        ANY_CONF | NGX_CONF_TAKE1,
        LOC,
        cmd_auth_oidc,
    ),
    command(
        ngx_string!("gateway_status"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        LOC,
        cmd_status,
    ),
    ngx_command_t::empty(),
];

pub(crate) fn on_off(cf: &ngx_conf_t) -> Result<bool, String> {
    match arg_str(&args(cf)[1])? {
        "on" => Ok(true),
        "off" => Ok(false),
        v => Err(invalid(cf, v, "it must be \"on\" or \"off\"")),
    }
}

/// An `on|off` directive that may appear once per block.
fn set_flag_once(cf: &ngx_conf_t, slot: &mut Option<bool>) -> Result<(), String> {
    if slot.is_some() {
        return Err(util::duplicate(cf));
    }
    *slot = Some(on_off(cf)?);
    Ok(())
}

directive!(cmd_gateway, LocConf, |cf, c| set_flag_once(
    cf,
    &mut c.enabled
));
directive!(cmd_auth_jwt, LocConf, |cf, c| jwt::set_auth_jwt(
    cf, &mut c.jwt
));
directive!(cmd_key_file, LocConf, |cf, c| jwt::set_key_file(
    cf, &mut c.jwt
));
directive!(cmd_leeway, LocConf, |cf, c| jwt::set_leeway(cf, &mut c.jwt));
directive!(cmd_type, LocConf, |cf, c| jwt::set_type(cf, &mut c.jwt));
directive!(cmd_require, LocConf, |cf, c| jwt::set_require(
    cf, &mut c.jwt
));
directive!(cmd_algorithms, LocConf, |cf, c| jwt::set_algorithms(
    cf, &mut c.jwt
));
directive!(cmd_issuer, LocConf, |cf, c| jwt::set_issuer(cf, &mut c.jwt));
directive!(cmd_audience, LocConf, |cf, c| jwt::set_audience(
    cf, &mut c.jwt
));
directive!(cmd_typ, LocConf, |cf, c| jwt::set_typ(cf, &mut c.jwt));
directive!(cmd_require_exp, LocConf, |cf, c| jwt::set_require_exp(
    cf, &mut c.jwt
));
directive!(cmd_require_claim, LocConf, |cf, c| jwt::set_require_claim(
    cf, &mut c.jwt
));
directive!(cmd_max_size, LocConf, |cf, c| jwt::set_max_size(
    cf, &mut c.jwt
));
directive!(cmd_metrics, LocConf, |cf, _c| {
    let clcf =
        <ngx::http::NgxHttpCoreModule as ngx::http::HttpModuleLocationConf>::location_conf_mut(cf)
            .ok_or("no core location conf")?;
    clcf.handler = Some(crate::http::metrics::metrics_handler);
    Ok(())
});
directive!(cmd_status, LocConf, |cf, _c| {
    let clcf =
        <ngx::http::NgxHttpCoreModule as ngx::http::HttpModuleLocationConf>::location_conf_mut(cf)
            .ok_or("no core location conf")?;
    clcf.handler = Some(crate::http::policy::status_handler);
    Ok(())
});
directive!(cmd_policy, MainConf, policy::set_policy);
directive!(cmd_oidc_provider, MainConf, oidc::set_provider);
directive!(cmd_auth_oidc, LocConf, |cf, c| oidc::set_auth_oidc(
    cf,
    &mut c.oidc
));
directive!(cmd_metrics_buckets, MainConf, metrics::set_buckets);
directive!(cmd_metrics_consumers, MainConf, metrics::set_consumers);
directive!(cmd_metrics_histograms, MainConf, |cf, m| set_flag_once(
    cf,
    &mut m.histograms
));
directive!(cmd_trace, LocConf, |cf, c| trace::set_trace(
    cf,
    &mut c.trace
));
directive!(cmd_route, LocConf, |cf, c| {
    policy::set_route(cf, &mut c.consumer)?;
    let mcf = <crate::http::GatewayModule as ngx::http::HttpModuleMainConf>::main_conf_mut(cf)
        .ok_or("no gateway main conf")?;
    let name = c.consumer.route.clone().unwrap_or_default();
    c.consumer.route_id = match mcf.routes.iter().position(|r| *r == name) {
        Some(i) => i + 1,
        None => {
            mcf.routes.push(name);
            mcf.routes.len()
        }
    };
    Ok(())
});
directive!(cmd_api_key, LocConf, |cf, c| policy::set_api_key(
    cf,
    &mut c.consumer
));
directive!(cmd_consumer, LocConf, |cf, c| policy::set_consumer(
    cf,
    &mut c.consumer
));
directive!(cmd_groups_claim, LocConf, |cf, c| {
    policy::set_groups_claim(cf, &mut c.consumer)
});
directive!(cmd_acl, LocConf, |cf, c| policy::set_acl(
    cf,
    &mut c.consumer
));
directive!(cmd_key_request, LocConf, |cf, c| {
    jwt::set_key_request(cf, &mut c.jwt)?;
    let uri = c.jwt.key_request.clone().unwrap_or_default();
    uses_jwks_zone(cf, uri)
});
directive!(cmd_discovery, LocConf, |cf, c| {
    jwt::set_discovery(cf, &mut c.jwt)?;
    let uri = c.jwt.discovery.clone().unwrap_or_default().0;
    uses_jwks_zone(cf, uri)
});
directive!(cmd_key_zone, MainConf, |cf, c| {
    if c.jwks_zone_size.is_some() {
        return Err(util::duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    let n = gateway_core::parse::parse_size(v).map_err(|e| invalid(cf, v, &e.to_string()))?;
    if n < crate::http::jwks::MIN_ZONE_SIZE {
        return Err(invalid(cf, v, "the zone must be at least 32k"));
    }
    c.jwks_zone_size = Some(n);
    Ok(())
});

/// A location fetches `uri` (a key set or a discovery document): the `gateway_jwks` zone is
/// needed and keeps an entry for it.
pub(crate) fn uses_jwks_zone(cf: &mut ngx_conf_t, uri: String) -> Result<(), String> {
    let mcf = <crate::http::GatewayModule as ngx::http::HttpModuleMainConf>::main_conf_mut(cf)
        .ok_or("no http main conf")?;
    mcf.jwks_used = true;
    if !mcf.jwks_uris.contains(&uri) {
        mcf.jwks_uris.push(uri);
    }
    Ok(())
}
directive!(cmd_key_cache, LocConf, |cf, c| jwt::set_key_cache(
    cf, &mut c.jwt
));
directive!(cmd_key_refresh, LocConf, |cf, c| jwt::set_key_refresh(
    cf, &mut c.jwt
));
directive!(cmd_key_max_stale, LocConf, |cf, c| jwt::set_key_max_stale(
    cf, &mut c.jwt
));
directive!(cmd_key_unavailable, LocConf, |cf, c| {
    jwt::set_key_unavailable(cf, &mut c.jwt)
});
directive!(cmd_log, LocConf, |cf, c| log::set_log(cf, &mut c.log));
directive!(cmd_log_field, LocConf, |cf, c| log::set_field(
    cf, &mut c.log
));
directive!(cmd_log_fields, LocConf, |cf, c| log::set_fields(
    cf, &mut c.log
));
directive!(cmd_rl_zone, MainConf, ratelimit::set_zone);
directive!(cmd_rl, LocConf, |cf, c| ratelimit::set_limit(cf, &mut c.rl));
directive!(cmd_rl_status, LocConf, |cf, c| ratelimit::set_status(
    cf, &mut c.rl
));
directive!(cmd_rl_headers, LocConf, |cf, c| ratelimit::set_headers(
    cf, &mut c.rl
));
directive!(cmd_rl_dry_run, LocConf, |cf, c| ratelimit::set_dry_run(
    cf, &mut c.rl
));
directive!(cmd_rl_invalid_rate, LocConf, |cf, c| {
    ratelimit::set_invalid_rate(cf, &mut c.rl)
});
directive!(cmd_claim_set, MainConf, |cf, _c| claim_variable(cf, false));
directive!(cmd_header_set, MainConf, |cf, _c| claim_variable(cf, true));
directive!(cmd_jwt_cache, MainConf, |cf, c| {
    if c.jwt_cache.is_some() {
        return Err(util::duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    let n = match v {
        "off" => 0,
        _ => match util::kv(v) {
            Some(("size", n)) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000_000).contains(n))
                .ok_or_else(|| invalid(cf, v, "size must be a number of entries, 1 to 10000000"))?,
            _ => return Err(invalid(cf, v, "expected \"size=N\" or \"off\"")),
        },
    };
    c.jwt_cache = Some(n);
    Ok(())
});

/// `auth_jwt_claim_set $var name ...` / `auth_jwt_header_set $var name ...`
fn claim_variable(cf: &mut ngx_conf_t, header: bool) -> Result<(), String> {
    let a = args(cf).to_vec();
    let var = arg_str(&a[1])?;
    let Some(var_name) = var.strip_prefix('$').filter(|n| !n.is_empty()) else {
        return Err(invalid(
            cf,
            var,
            "a variable name starting with \"$\" is expected",
        ));
    };
    let path = a[2..]
        .iter()
        .map(|s| arg_str(s).map(String::from))
        .collect::<Result<Vec<_>, _>>()?;
    // SAFETY: `cf.pool` is the configuration pool; the value is dropped with it.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let data = pool.allocate(ClaimVar { header, path });
    if data.is_null() {
        return Err("out of memory".into());
    }
    let mut name = a[1];
    // SAFETY: skipping the leading "$" checked above.
    name.data = unsafe { name.data.add(1) };
    name.len -= 1;
    // SAFETY: `cf` is the configuration being parsed; nginx copies the name.
    let v = unsafe { ngx_http_add_variable(cf, &mut name, 0) };
    if v.is_null() {
        return Err(format!("cannot add variable \"{var_name}\""));
    }
    // SAFETY: `v` is a valid variable just returned by nginx.
    unsafe {
        if (*v).get_handler.is_some() {
            return Err(format!("variable \"{var_name}\" is already defined"));
        }
        (*v).get_handler = Some(crate::http::variables::claim_set_variable);
        (*v).data = data as usize;
    }
    Ok(())
}

/// `create_main_conf`
pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    guard_conf(ptr::null_mut(), || {
        // SAFETY: nginx passes a valid configuration whose pool outlives the configuration.
        let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
        let mut metrics = gateway_core::metrics::Registry::new();
        let slots = crate::http::metrics::init_registry(&mut metrics);
        pool.allocate(MainConf {
            metrics,
            slots,
            metrics_shm: ptr::null_mut(),
            buckets: Default::default(),
            consumer_metrics: None,
            histograms: None,
            routes: Vec::new(),
            obs: Default::default(),
            log_vars: Default::default(),
            jwks_used: false,
            jwks_shm: ptr::null_mut(),
            jwks_zone_size: None,
            jwks_uris: Vec::new(),
            jwt_cache: None,
            zones: Vec::new(),
            credentials: Default::default(),
            policy: None,
            oidc: Vec::new(),
        })
        .cast()
    })
}

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
        // SAFETY: nginx merges with a valid configuration; while a location is merged, its
        // context's loc_conf is that location's (ngx_http_merge_locations).
        let cf = unsafe { &mut *cf };
        let location = NgxHttpCoreModule::location_conf(&*cf)
            .map(|clcf| String::from_utf8_lossy(clcf.name.as_bytes()).into_owned())
            .unwrap_or_default();
        let merged = conf.merge(prev, &location).and_then(|()| {
            let policy = <crate::http::GatewayModule as ngx::http::HttpModuleMainConf>::main_conf(
                &*cf,
            )
            .is_some_and(|m| m.policy.is_some());
            if (conf.consumer.active() || conf.consumer.acl()) && !policy {
                return Err(jwt::MergeError {
                    msg: "\"auth_api_key\", \"auth_consumer\" and \"auth_consumer_acl\" need a \"gateway_policy\" in the http block".into(),
                    at: None,
                });
            }
            Ok(())
        });
        match merged {
            Ok(()) => ptr::null_mut(),
            Err(e) => {
                // Point the message at the directive, not at the end of the http block.
                // SAFETY: `conf_file` is valid while the configuration is processed.
                let saved = unsafe { cf.conf_file.as_mut() }.map(|f| {
                    let saved = (f.file.name, f.line);
                    if let Some(at) = e.at {
                        f.file.name = at.file;
                        f.line = at.line;
                    }
                    saved
                });
                gw_conf_err!(cf, "{}", e.msg);
                // SAFETY: as above.
                if let (Some((name, line)), Some(f)) = (saved, unsafe { cf.conf_file.as_mut() }) {
                    f.file.name = name;
                    f.line = line;
                }
                NGX_CONF_ERROR
            }
        }
    })
}

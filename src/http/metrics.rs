//! Counters in shared memory, shared by all workers, and the `gateway_metrics` handler.
//!
//! The counter layout is fixed when the configuration loads (`MainConf::metrics`); the
//! values live in the `gateway_metrics` shared zone as an array of `u64` updated with atomic
//! adds, so counting costs no lock. A reload with the same layout keeps the values.

use core::ffi::c_void;
use core::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use gateway_core::metrics::{
    write_labels, Family, Histogram, LabelTable, Registry, EXEMPLAR_WORDS,
};
use nginx_sys::{
    ngx_conf_t, ngx_http_request_t, ngx_http_upstream_srv_conf_t, ngx_http_upstream_state_t,
    ngx_int_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_alloc, ngx_slab_pool_t, NGX_ERROR,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_UPSTREAM_CREATE, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule, Request};

use super::{guard_conf, guard_request, GatewayModule, RequestCtx};
use crate::conf::metrics::{GATEWAY_SCALE, REQUEST_SCALE};
use crate::conf::MainConf;

const MAGIC: u64 = 0x6777_6d65_7472_6963; // "gwmetric"
const HEADER_WORDS: usize = 4; // magic, layout hash, slots in use, words in the block
const ZONE_SIZE: usize = 256 * 1024;
/// The name of the metrics zone (reserved: `rate_limit_zone` refuses it).
pub const ZONE_NAME: &str = "gateway_metrics";

/// The JWT reason codes counted in `gateway_auth_total` (a closed set).
pub const AUTH_REASONS: &[&str] = &[
    "",
    "missing",
    "too_large",
    "malformed",
    "alg_not_allowed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_audience",
    "bad_type",
    "claim_mismatch",
    "key_unavailable",
    "requirement",
];

/// Results counted in `gateway_consumer_total{result}` (a closed set): how a consumer was
/// identified, or the reason code of a refusal.
pub const CONSUMER_RESULTS: &[&str] = &[
    "api_key",
    "jwt",
    "anonymous",
    "credential_missing",
    "key_unknown",
    "key_revoked",
    "token_revoked",
    "consumer_disabled",
    "consumer_denied",
    "unregistered",
    "group_forbidden",
    "route_unknown",
    "policy_unavailable",
];

/// Declares `gateway_consumer_total` (with `gateway_policy`); returns its first slot.
pub fn init_consumer_registry(r: &mut Registry) -> usize {
    r.family(Family {
        name: "gateway_consumer_total",
        help: "Consumer identification (auth_consumer, auth_api_key) by credential or refusal reason.",
        kind: "counter",
    });
    let slots: Vec<usize> = CONSUMER_RESULTS
        .iter()
        .map(|res| r.slot("gateway_consumer_total", &[("result", res)]))
        .collect();
    slots[0]
}

static CONSUMER_BASE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Counts a consumer identification or refusal (`result` from [`CONSUMER_RESULTS`]).
pub fn inc_consumer(result: &str) {
    let base = CONSUMER_BASE.load(Ordering::Relaxed);
    if let Some(i) = CONSUMER_RESULTS.iter().position(|r| *r == result) {
        inc(base.wrapping_add(i));
    }
}

/// Slots of the counters every configuration has.
#[derive(Debug, Default, Clone)]
pub struct Slots {
    /// `gateway_auth_total{result,reason}` by (result, reason) name.
    pub auth: Vec<(&'static str, &'static str, usize)>,
    pub cache_hit: usize,
    pub cache_miss: usize,
    pub log_write_errors: usize,
    pub jwks_ok: usize,
    pub jwks_failed: usize,
    /// `gateway_jwks_keys_refused_total{reason}`: "symmetric", "unusable".
    pub jwks_key_symmetric: usize,
    pub jwks_key_unusable: usize,
    /// `gateway_requests_total{status}` for 1xx..5xx (index 0..4).
    pub requests: [usize; 5],
    /// First slot of `gateway_consumer_total` (with `gateway_policy`).
    pub consumer_base: usize,
}

/// Declares the fixed counters; rate-limit counters are added by `rate_limit` directives.
pub fn init_registry(r: &mut Registry) -> Slots {
    r.family(Family {
        name: "gateway_requests_total",
        help: "Requests logged by the gateway, by status class.",
        kind: "counter",
    });
    r.family(Family {
        name: "gateway_auth_total",
        help: "auth_jwt decisions by result and reason code.",
        kind: "counter",
    });
    r.family(Family {
        name: "gateway_rate_limit_total",
        help: "Rate-limit decisions by zone, policy and result.",
        kind: "counter",
    });
    r.family(Family {
        name: "gateway_jwt_cache_total",
        help: "Verified-token cache lookups by result.",
        kind: "counter",
    });
    r.family(Family {
        name: "gateway_log_write_errors_total",
        help: "Failed writes of gateway_log records.",
        kind: "counter",
    });
    r.family(Family {
        name: "gateway_jwks_fetch_total",
        help: "Key-set and discovery fetches (auth_jwt_key_request) by result.",
        kind: "counter",
    });
    r.family(Family {
        name: "gateway_jwks_keys_refused_total",
        help: "Keys of fetched key sets that were skipped, by reason.",
        kind: "counter",
    });
    let mut s = Slots {
        consumer_base: usize::MAX,
        ..Slots::default()
    };
    for (i, class) in CLASSES.iter().enumerate() {
        s.requests[i] = r.slot("gateway_requests_total", &[("status", class)]);
    }
    for reason in AUTH_REASONS {
        let result = match *reason {
            "" => "valid",
            "missing" => "missing",
            "key_unavailable" => "error",
            "requirement" | "claim_mismatch" => "forbidden",
            _ => "invalid",
        };
        let slot = r.slot(
            "gateway_auth_total",
            &[("result", result), ("reason", reason)],
        );
        s.auth.push((result, reason, slot));
    }
    s.cache_hit = r.slot("gateway_jwt_cache_total", &[("result", "hit")]);
    s.cache_miss = r.slot("gateway_jwt_cache_total", &[("result", "miss")]);
    s.log_write_errors = r.slot("gateway_log_write_errors_total", &[]);
    s.jwks_ok = r.slot("gateway_jwks_fetch_total", &[("result", "ok")]);
    s.jwks_failed = r.slot("gateway_jwks_fetch_total", &[("result", "failed")]);
    s.jwks_key_symmetric = r.slot(
        "gateway_jwks_keys_refused_total",
        &[("reason", "symmetric")],
    );
    s.jwks_key_unusable = r.slot("gateway_jwks_keys_refused_total", &[("reason", "unusable")]);
    s
}

/// Configured upstreams that get series of their own (in the order nginx lists them); the
/// others, and requests whose upstream is no configured block, count as `upstream="other"`.
pub const MAX_UPSTREAM_SERIES: usize = 100;

/// The series of one route (index 0 of `ObsSlots::routes`: requests with no route).
#[derive(Debug, Default, Clone)]
pub struct RouteSlots {
    /// `gateway_requests_total` by status class.
    pub requests: [usize; 5],
    /// `gateway_auth_total`, in the order of `Slots::auth`.
    pub auth: Vec<usize>,
    /// `gateway_route_rate_limit_total` by result (passed, rejected, rejected_dry_run); none
    /// (`usize::MAX`) for requests without a route.
    pub limits: [usize; 3],
    /// `gateway_request_duration_seconds`.
    pub request: Histogram,
    /// `gateway_processing_duration_seconds`.
    pub gateway: Histogram,
}

/// The series of one upstream.
#[derive(Debug, Default, Clone)]
pub struct UpstreamSlots {
    /// `gateway_upstream_responses_total` by status class of each try.
    pub responses: [usize; 5],
    /// `gateway_upstream_response_duration_seconds`.
    pub duration: Histogram,
}

/// Slots of the histograms, routes and upstreams, fixed at postconfiguration.
#[derive(Debug, Default)]
pub struct ObsSlots {
    /// `gateway_metrics_histograms on` (the histograms exist and are observed).
    pub histograms: bool,
    pub routes: Vec<RouteSlots>,
    /// Configured upstream blocks (by address) and their series.
    pub upstreams: Vec<(*const ngx_http_upstream_srv_conf_t, UpstreamSlots)>,
    pub other: UpstreamSlots,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Declares the histograms and the per-route and per-upstream series, once every directive
/// is read (the buckets, the routes and the upstream blocks are known then).
pub fn finish_registry(cf: &mut ngx_conf_t, mcf: &mut MainConf) {
    let on = mcf.histograms.unwrap_or(true);
    let r = &mut mcf.metrics;
    r.family(Family {
        name: "gateway_request_duration_seconds",
        help: "Request time ($request_time), by route.",
        kind: "histogram",
    });
    r.family(Family {
        name: "gateway_processing_duration_seconds",
        help: "Time the gateway spent on a request in the access phase (tokens, consumers, limits), by route.",
        kind: "histogram",
    });
    r.family(Family {
        name: "gateway_upstream_response_duration_seconds",
        help: "Upstream response time ($upstream_response_time, summed over tries), by upstream block.",
        kind: "histogram",
    });
    r.family(Family {
        name: "gateway_route_rate_limit_total",
        help: "Requests of a route that rate limits applied to, by result.",
        kind: "counter",
    });
    r.family(Family {
        name: "gateway_upstream_responses_total",
        help: "Upstream tries by upstream block and status class ($upstream_status).",
        kind: "counter",
    });
    let req_bounds = mcf.buckets.request();
    let gw_bounds = mcf.buckets.gateway();
    // Off: the histogram families have no series (and are not written).
    let hist =
        |r: &mut Registry, family, labels: &[(&'static str, &str)], bounds: &[u64], scale| {
            if on {
                r.histogram(family, labels, bounds, scale)
            } else {
                Histogram::default()
            }
        };
    let mut routes = Vec::with_capacity(mcf.routes.len() + 1);
    routes.push(RouteSlots {
        requests: mcf.slots.requests,
        auth: mcf.slots.auth.iter().map(|a| a.2).collect(),
        limits: [usize::MAX; 3],
        request: hist(
            r,
            "gateway_request_duration_seconds",
            &[],
            &req_bounds,
            REQUEST_SCALE,
        ),
        gateway: hist(
            r,
            "gateway_processing_duration_seconds",
            &[],
            &gw_bounds,
            GATEWAY_SCALE,
        ),
    });
    for name in &mcf.routes {
        let mut rs = RouteSlots::default();
        for (i, class) in CLASSES.iter().enumerate() {
            rs.requests[i] = r.slot(
                "gateway_requests_total",
                &[("route", name), ("status", class)],
            );
        }
        rs.auth = mcf
            .slots
            .auth
            .iter()
            .map(|(result, reason, _)| {
                r.slot(
                    "gateway_auth_total",
                    &[("route", name), ("result", result), ("reason", reason)],
                )
            })
            .collect();
        for (i, result) in ["passed", "rejected", "rejected_dry_run"]
            .iter()
            .enumerate()
        {
            rs.limits[i] = r.slot(
                "gateway_route_rate_limit_total",
                &[("route", name), ("result", result)],
            );
        }
        rs.request = hist(
            r,
            "gateway_request_duration_seconds",
            &[("route", name)],
            &req_bounds,
            REQUEST_SCALE,
        );
        rs.gateway = hist(
            r,
            "gateway_processing_duration_seconds",
            &[("route", name)],
            &gw_bounds,
            GATEWAY_SCALE,
        );
        routes.push(rs);
    }
    let mut upstream = |name: &str| {
        let mut us = UpstreamSlots::default();
        for (i, class) in CLASSES.iter().enumerate() {
            us.responses[i] = r.slot(
                "gateway_upstream_responses_total",
                &[("upstream", name), ("status", class)],
            );
        }
        us.duration = hist(
            r,
            "gateway_upstream_response_duration_seconds",
            &[("upstream", name)],
            &req_bounds,
            REQUEST_SCALE,
        );
        us
    };
    let mut upstreams = Vec::new();
    if let Some(umcf) = NgxHttpUpstreamModule::main_conf(cf) {
        // SAFETY: the upstream module's array of `ngx_http_upstream_srv_conf_t` pointers,
        // complete once the http block is read.
        let list = unsafe {
            umcf.upstreams
                .as_slice::<*mut ngx_http_upstream_srv_conf_t>()
        };
        for &u in list.iter().take(MAX_UPSTREAM_SERIES) {
            // SAFETY: every entry is a live upstream configuration of this cycle.
            let (flags, host, port) = unsafe { ((*u).flags, (*u).host, (*u).port) };
            let host = String::from_utf8_lossy(host.as_bytes()).into_owned();
            // An `upstream` block by its name; an implicit one (`proxy_pass http://host:port`)
            // by host and port, both from the configuration.
            let name = if flags & NGX_HTTP_UPSTREAM_CREATE as usize != 0 || port == 0 {
                host
            } else {
                format!("{host}:{port}")
            };
            if name == "other" {
                continue;
            }
            upstreams.push((u.cast_const(), upstream(&name)));
        }
    }
    let other = upstream("other");
    mcf.obs = ObsSlots {
        histograms: on,
        routes,
        upstreams,
        other,
    };
    // Last: the consumer table's words follow every counter.
    if let Some(cm) = mcf.consumer_metrics.as_mut() {
        cm.base = r.reserve("consumers", LabelTable::words(cm.max));
    }
}

/// `len` words of the attached zone from `base`.
fn zone_slice(base: usize, len: usize) -> Option<&'static [AtomicU64]> {
    let p = COUNTERS.load(Ordering::Relaxed);
    if p.is_null() || base.checked_add(len)? > COUNTERS_LEN.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: inside the counters of the zone, mapped for the life of the process.
    Some(unsafe { core::slice::from_raw_parts(p.add(base), len) })
}

/// The consumer table of the configuration, if any.
fn consumer_table(mcf: &MainConf) -> Option<LabelTable<'static>> {
    let cm = mcf.consumer_metrics.as_ref()?;
    LabelTable::new(zone_slice(cm.base, LabelTable::words(cm.max))?, cm.max)
}

/// Counts the request under its consumer (`gateway_metrics_consumers`): `value=`, else the
/// consumer the policy identified, else the `sub` of a token whose signature verified.
fn count_consumer(mcf: &MainConf, request: &Request, ctx: Option<&RequestCtx>) {
    let Some(cm) = mcf.consumer_metrics.as_ref() else {
        return;
    };
    let Some(table) = consumer_table(mcf) else {
        return;
    };
    let from_value;
    let label: &[u8] = match cm.value {
        // SAFETY: the complex value was compiled from this configuration.
        Some(cv) => match request.get_complex_value(unsafe { &*cv.0 }) {
            Some(v) => {
                from_value = v;
                from_value.as_bytes()
            }
            None => return,
        },
        None => {
            let id = ctx
                .and_then(|c| c.consumer.as_ref())
                .map(|i| i.id.as_bytes());
            let sub = || {
                ctx.and_then(|c| c.auth.as_ref())
                    .and_then(|a| a.verified.as_deref())
                    .and_then(|v| v.sub())
                    .map(str::as_bytes)
            };
            match id.or_else(sub) {
                Some(l) => l,
                None => return,
            }
        }
    };
    if label.is_empty() {
        return;
    }
    let rejected = ctx.is_some_and(|c| {
        c.policy.refused.is_some()
            || c.rate_limit
                .as_ref()
                .is_some_and(|r| r.status == super::ratelimit::RlStatus::Rejected)
    }) || super::log::auth_result(ctx).is_some_and(|(r, _)| r != "valid");
    table.count(label, rejected);
}

/// The consumer series, read at scrape time.
fn consumer_lines(mcf: &MainConf) -> String {
    let mut out = String::new();
    let Some(table) = consumer_table(mcf) else {
        return out;
    };
    let entries = table.entries();
    let (other_req, other_rej, dropped) = table.other();
    for (name, help, rejections) in [
        (
            "gateway_consumer_requests_total",
            "Requests by consumer (gateway_metrics_consumers; other: past the cap).",
            false,
        ),
        (
            "gateway_consumer_rejections_total",
            "Requests by consumer that the gateway refused (auth, access rules, rate limits).",
            true,
        ),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for e in &entries {
            out.push_str(name);
            write_labels(
                &mut out,
                &[("consumer", String::from_utf8_lossy(&e.value).into_owned())],
            );
            let v = if rejections { e.rejections } else { e.requests };
            out.push_str(&format!(" {v}\n"));
        }
        out.push_str(name);
        write_labels(&mut out, &[("consumer", "other".to_string())]);
        let v = if rejections { other_rej } else { other_req };
        out.push_str(&format!(" {v}\n"));
    }
    out.push_str(&format!(
        "# HELP gateway_metrics_labels_dropped_total Requests whose consumer got no series of its own (cap reached, or a value longer than 128 bytes).\n# TYPE gateway_metrics_labels_dropped_total counter\ngateway_metrics_labels_dropped_total {dropped}\n"
    ));
    out
}

/// Adds `v` to a counter (no-op before the zone is attached).
fn add(slot: usize, v: u64) {
    let p = COUNTERS.load(Ordering::Relaxed);
    if !p.is_null() && slot < COUNTERS_LEN.load(Ordering::Relaxed) {
        // SAFETY: as in `inc`.
        unsafe { (*p.add(slot)).fetch_add(v, Ordering::Relaxed) };
    }
}

/// Records one observation of `v` units in a histogram: two atomic adds, no lock; with the
/// id of a sampled trace, also the bucket's exemplar.
pub fn observe(h: &Histogram, v: u64, trace: Option<[u8; 16]>) {
    inc(h.bucket_slot(v));
    add(h.sum_slot(), v);
    if let Some(id) = trace {
        if let Some(w) = zone_slice(h.exemplar_slot(v), EXEMPLAR_WORDS) {
            gateway_core::metrics::write_exemplar(w, id, v);
        }
    }
}

/// `gateway_metrics_histograms` of the configuration in force (set by `attach`).
static HISTOGRAMS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The start of a timed handler run: the monotonic clock when the histograms are on.
pub fn timer() -> Option<std::time::Instant> {
    HISTOGRAMS
        .load(Ordering::Relaxed)
        .then(std::time::Instant::now)
}

static COUNTERS: AtomicPtr<AtomicU64> = AtomicPtr::new(ptr::null_mut());
static COUNTERS_LEN: AtomicUsize = AtomicUsize::new(0);
/// Slots of counters bumped where no configuration is at hand (set by `attach`).
static CACHE_HIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static CACHE_MISS: AtomicUsize = AtomicUsize::new(usize::MAX);
static LOG_WRITE_ERRORS: AtomicUsize = AtomicUsize::new(usize::MAX);
static JWKS_OK: AtomicUsize = AtomicUsize::new(usize::MAX);
static JWKS_FAILED: AtomicUsize = AtomicUsize::new(usize::MAX);
static JWKS_KEY_SYMMETRIC: AtomicUsize = AtomicUsize::new(usize::MAX);
static JWKS_KEY_UNUSABLE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Counts a key-set fetch.
pub fn inc_jwks(ok: bool) {
    inc(if ok { &JWKS_OK } else { &JWKS_FAILED }.load(Ordering::Relaxed));
}

/// Counts a key of a fetched set that was skipped (`symmetric`: an HMAC secret in a published
/// set; otherwise weak, degenerate or unsupported).
pub fn inc_jwks_key_refused(symmetric: bool) {
    inc(if symmetric {
        &JWKS_KEY_SYMMETRIC
    } else {
        &JWKS_KEY_UNUSABLE
    }
    .load(Ordering::Relaxed));
}

/// Counts a verified-token cache lookup.
pub fn inc_cache(hit: bool) {
    inc(if hit { &CACHE_HIT } else { &CACHE_MISS }.load(Ordering::Relaxed));
}

/// Counts a failed log write.
pub fn inc_log_write_error() {
    inc(LOG_WRITE_ERRORS.load(Ordering::Relaxed));
}

/// Adds 1 to a counter (no-op before the zone is attached).
pub fn inc(slot: usize) {
    let p = COUNTERS.load(Ordering::Relaxed);
    if !p.is_null() && slot < COUNTERS_LEN.load(Ordering::Relaxed) {
        // SAFETY: `p` points at `COUNTERS_LEN` u64 slots in the shared zone, mapped for the
        // life of the process; atomics make concurrent increments from all workers exact.
        unsafe { (*p.add(slot)).fetch_add(1, Ordering::Relaxed) };
    }
}

/// The first `n` words (the counters; not the reserved tables).
fn values(n: usize) -> Vec<u64> {
    let p = COUNTERS.load(Ordering::Relaxed);
    let n = n.min(COUNTERS_LEN.load(Ordering::Relaxed));
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: as in `inc`.
    (0..n)
        .map(|i| unsafe { (*p.add(i)).load(Ordering::Relaxed) })
        .collect()
}

/// Adds the `gateway_metrics` shared zone (called once the registry is complete).
pub fn add_zone(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    let need = (HEADER_WORDS + mcf.metrics.len()) * 8 * 2 + 16 * 4096;
    let size = need.max(ZONE_SIZE).next_multiple_of(4096);
    let mut name = ngx::ngx_string!("gateway_metrics");
    debug_assert_eq!(name.as_bytes(), ZONE_NAME.as_bytes());
    // SAFETY: `cf` is the configuration being parsed; the module static lives forever.
    let shm = unsafe {
        ngx_shared_memory_add(
            cf,
            &mut name,
            size,
            ptr::addr_of_mut!(crate::ngx_http_gateway_module).cast(),
        )
    };
    if shm.is_null() {
        return Err("cannot add the gateway_metrics shared zone".into());
    }
    // SAFETY: `shm` was just returned by nginx; `mcf` lives in the configuration pool.
    unsafe {
        // A zone of this cycle that someone else already set up (rate_limit_zone refuses the
        // name, but another module could take it): never reuse its memory as counters.
        if !(*shm).data.is_null() {
            return Err(format!(
                "the shared memory zone \"{ZONE_NAME}\" is already used by another directive"
            ));
        }
        (*shm).init = Some(init_zone);
        (*shm).data = (mcf as *mut MainConf).cast();
        (*shm).noreuse = 0;
    }
    mcf.metrics_shm = shm;
    Ok(())
}

/// The counter array: a block of the zone's slab pool, recorded in the pool's `data`.
fn zone_words(shm: *mut ngx_shm_zone_t) -> *mut u64 {
    // SAFETY: nginx initialized the zone as a slab pool; `data` is null or our block.
    unsafe {
        (*(*shm).shm.addr.cast::<ngx_slab_pool_t>())
            .data
            .cast::<u64>()
    }
}

unsafe extern "C" fn init_zone(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: `data` is the MainConf registered in `add_zone`.
        let mcf = unsafe { &*(*shm).data.cast::<MainConf>() };
        let n = mcf.metrics.len();
        let hash = mcf.metrics.layout_hash();
        let shpool = unsafe { (*shm).shm.addr.cast::<ngx_slab_pool_t>() };
        let mut words = zone_words(shm);
        // SAFETY: a reused zone keeps its block (with room for `cap` words, recorded in the
        // header); a new one gets a fresh block. Init runs in the master before any worker
        // exists, so plain writes are fine.
        unsafe {
            let cap = if words.is_null() {
                0
            } else {
                *words.add(3) as usize
            };
            if words.is_null() || cap < HEADER_WORDS + n {
                let want = (HEADER_WORDS + n).max(ZONE_SIZE / 16);
                words = ngx_slab_alloc(shpool, want * 8).cast::<u64>();
                if words.is_null() {
                    return NGX_ERROR as ngx_int_t;
                }
                ptr::write_bytes(words, 0, want);
                *words.add(3) = want as u64;
                (*shpool).data = words.cast();
            }
            let same = *words == MAGIC && *words.add(1) == hash && *words.add(2) == n as u64;
            if !same {
                if *words == MAGIC {
                    let log = ngx::log::ngx_cycle_log().as_ptr();
                    gw_log!(
                        NGX_LOG_NOTICE,
                        log,
                        "metrics layout changed, counters start from zero"
                    );
                }
                // Word 3 (the block's size) stays.
                ptr::write_bytes(words, 0, 3);
                ptr::write_bytes(words.add(HEADER_WORDS), 0, n);
                *words = MAGIC;
                *words.add(1) = hash;
                *words.add(2) = n as u64;
            }
            if let Some(cm) = mcf.consumer_metrics.as_ref() {
                let len = LabelTable::words(cm.max);
                let t = core::slice::from_raw_parts(
                    words.add(HEADER_WORDS + cm.base).cast::<AtomicU64>(),
                    len,
                );
                if let Some(t) = LabelTable::new(t, cm.max) {
                    t.seed(gateway_core::reqid::os_seed());
                }
            }
        }
        NGX_OK as ngx_int_t
    })
}

/// Per worker: points `inc` at this configuration's counters.
pub fn attach(mcf: &MainConf) {
    if mcf.metrics_shm.is_null() {
        return;
    }
    let words = zone_words(mcf.metrics_shm);
    if words.is_null() {
        return;
    }
    // SAFETY: the counters follow the header words inside the zone's block.
    let p = unsafe { words.add(HEADER_WORDS) }.cast::<AtomicU64>();
    COUNTERS.store(p, Ordering::Relaxed);
    COUNTERS_LEN.store(mcf.metrics.len(), Ordering::Relaxed);
    CACHE_HIT.store(mcf.slots.cache_hit, Ordering::Relaxed);
    CACHE_MISS.store(mcf.slots.cache_miss, Ordering::Relaxed);
    LOG_WRITE_ERRORS.store(mcf.slots.log_write_errors, Ordering::Relaxed);
    JWKS_OK.store(mcf.slots.jwks_ok, Ordering::Relaxed);
    JWKS_FAILED.store(mcf.slots.jwks_failed, Ordering::Relaxed);
    JWKS_KEY_SYMMETRIC.store(mcf.slots.jwks_key_symmetric, Ordering::Relaxed);
    JWKS_KEY_UNUSABLE.store(mcf.slots.jwks_key_unusable, Ordering::Relaxed);
    CONSUMER_BASE.store(mcf.slots.consumer_base, Ordering::Relaxed);
    HISTOGRAMS.store(mcf.obs.histograms, Ordering::Relaxed);
}

/// Counts one request in the log phase: status class, auth decision, request time and the
/// gateway's own time under the location's route; upstream tries and time under the upstream.
pub fn count_request(mcf: &MainConf, request: &Request, route_id: usize, ctx: Option<&RequestCtx>) {
    let Some(rs) = mcf.obs.routes.get(route_id) else {
        return;
    };
    let status = super::log::status(request);
    if (100..600).contains(&status) {
        inc(rs.requests[status / 100 - 1]);
    }
    if let Some((result, reason)) = super::log::auth_result(ctx) {
        if let Some(i) = mcf
            .slots
            .auth
            .iter()
            .position(|(r, c, _)| *r == result && *c == reason)
        {
            inc(rs.auth[i]);
        }
    }
    if let Some(rl) = ctx.and_then(|c| c.rate_limit.as_ref()) {
        use super::ratelimit::RlStatus;
        inc(rs.limits[match rl.status {
            RlStatus::Passed => 0,
            RlStatus::Rejected => 1,
            RlStatus::RejectedDryRun => 2,
        }]);
    }
    let trace = ctx
        .and_then(|c| c.trace.flatten())
        .and_then(|t| t.sampled_trace_id());
    if mcf.obs.histograms {
        observe(
            &rs.request,
            super::log::request_time_ms(request) * 1000,
            trace,
        );
        if let Some(ns) = ctx.and_then(|c| c.gateway_ns) {
            observe(&rs.gateway, ns, trace);
        }
    }
    count_upstream(mcf, request, trace);
    count_consumer(mcf, request, ctx);
}

/// The tries of the request's upstream: their status classes, and their summed response time.
fn count_upstream(mcf: &MainConf, request: &Request, trace: Option<[u8; 16]>) {
    let r = request.as_ref();
    if r.upstream.is_null() || r.upstream_states.is_null() {
        return;
    }
    // SAFETY: `upstream` of a live request; its `upstream` is null or a configured block.
    let uscf = unsafe { (*r.upstream).upstream }.cast_const();
    let us = mcf
        .obs
        .upstreams
        .iter()
        .find(|(u, _)| *u == uscf)
        .map_or(&mcf.obs.other, |(_, s)| s);
    // SAFETY: `upstream_states` is an nginx array of `ngx_http_upstream_state_t` in the
    // request pool.
    let states = unsafe { (*r.upstream_states).as_slice::<ngx_http_upstream_state_t>() };
    let mut ms = 0u64;
    let mut tries = 0;
    // As `$upstream_response_time`: entries without a peer separate the upstreams of internal
    // redirects; a try that got no time has -1.
    for s in states.iter().filter(|s| !s.peer.is_null()) {
        tries += 1;
        if s.response_time != nginx_sys::ngx_msec_t::MAX {
            ms += s.response_time as u64;
        }
        if (100..600).contains(&s.status) {
            inc(us.responses[s.status / 100 - 1]);
        }
    }
    if tries > 0 && mcf.obs.histograms {
        observe(&us.duration, ms * 1000, trace);
    }
}

/// Per-zone gauges read at scrape time: capacity, keys in use, evictions.
fn zone_lines(mcf: &MainConf) -> String {
    let mut out = String::new();
    let families = [
        (
            "gateway_rate_limit_zone_keys",
            "Keys held by the rate-limit zone.",
            "gauge",
        ),
        (
            "gateway_rate_limit_zone_capacity",
            "Keys the rate-limit zone can hold.",
            "gauge",
        ),
        (
            "gateway_rate_limit_zone_evictions_total",
            "Keys with live counts evicted because the zone was full.",
            "counter",
        ),
    ];
    let stats: Vec<_> = mcf
        .zones
        .iter()
        // SAFETY: zones live in the configuration pool.
        .filter_map(|z| unsafe { (**z).stats().map(|s| ((**z).name.clone(), s)) })
        .collect();
    if !stats.is_empty() {
        for (i, (name, help, kind)) in families.iter().enumerate() {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (zone, s) in &stats {
                out.push_str(name);
                write_labels(&mut out, &[("zone", zone.clone())]);
                let v = match i {
                    0 => u64::from(s.used),
                    1 => u64::from(s.capacity),
                    _ => s.evictions,
                };
                out.push_str(&format!(" {v}\n"));
            }
        }
    }
    if let Some(pc) = mcf.policy.as_ref() {
        out.push_str(&policy_lines(pc));
    }
    out.push_str(&consumer_lines(mcf));
    let sync: Vec<_> = mcf
        .zones
        .iter()
        // SAFETY: zones live in the configuration pool.
        .filter_map(|z| unsafe { (**z).sync_down().map(|d| ((**z).name.clone(), d)) })
        .collect();
    if !sync.is_empty() {
        out.push_str("# HELP gateway_rate_limit_sync_up Whether the zone's last Redis sync succeeded (1) or failed (0).\n# TYPE gateway_rate_limit_sync_up gauge\n");
        for (zone, down) in sync {
            out.push_str("gateway_rate_limit_sync_up");
            write_labels(&mut out, &[("zone", zone)]);
            out.push_str(if down { " 0\n" } else { " 1\n" });
        }
    }
    out
}

/// The policy's gauges and counters, read at scrape time.
fn policy_lines(pc: &crate::conf::policy::PolicyConf) -> String {
    let st = super::policy::state(pc);
    let mut out = String::new();
    out.push_str("# HELP gateway_policy_info The policy version in force on this node (value 1).\n# TYPE gateway_policy_info gauge\n");
    if let Some(v) = &st.version {
        out.push_str("gateway_policy_info");
        write_labels(&mut out, &[("version", v.clone())]);
        out.push_str(" 1\n");
    }
    let consumers = st.summary.as_ref().map_or(0, |s| s.consumers);
    out.push_str(&format!(
        "# HELP gateway_policy_consumers Consumers in the policy in force.\n# TYPE gateway_policy_consumers gauge\ngateway_policy_consumers {consumers}\n"
    ));
    out.push_str("# HELP gateway_policy_loads_total Checks of the policy source by result: installed (a new version), refused (invalid document), failed (fetch, read or room).\n# TYPE gateway_policy_loads_total counter\n");
    for (result, n) in [
        ("installed", st.installed),
        ("refused", st.refused),
        ("failed", st.failed),
    ] {
        out.push_str("gateway_policy_loads_total");
        write_labels(&mut out, &[("result", result.to_string())]);
        out.push_str(&format!(" {n}\n"));
    }
    out.push_str(&format!(
        "# HELP gateway_policy_installed_timestamp_seconds When the version in force was installed.\n# TYPE gateway_policy_installed_timestamp_seconds gauge\ngateway_policy_installed_timestamp_seconds {}\n",
        st.installed_ms / 1000
    ));
    out
}

/// Content handler of `gateway_metrics`: the Prometheus text exposition (0.0.4), or
/// OpenMetrics 1.0 when the `Accept` header asks for it.
pub unsafe extern "C" fn metrics_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx calls content handlers with a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let Some(mcf) = GatewayModule::main_conf(request) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let om = request.headers_in_iterator().any(|(k, v)| {
            k.as_bytes().eq_ignore_ascii_case(b"accept")
                && gateway_core::metrics::wants_openmetrics(v.as_bytes())
        });
        let n = mcf.metrics.counter_words();
        let (body, content_type) = if om {
            // Two readings: an exemplar is shown only if no worker wrote it in between.
            let first = values(n);
            std::sync::atomic::fence(Ordering::Acquire);
            let again = values(n);
            let text = mcf
                .metrics
                .render_exemplars(&first, Some(&again), &zone_lines(mcf));
            (
                gateway_core::metrics::to_openmetrics(&text),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                mcf.metrics.render(&values(n), &zone_lines(mcf)),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        // SAFETY: `r` is live; the body is copied into its pool by `send_body`.
        unsafe { super::send_body(r, 200, content_type, body.as_bytes()) }
    })
}

//! Request-time rate limiting: every decision under the zone's mutex, all limits of a
//! location must pass, and a request rejected by one limit consumes none of the others.

use super::now_ms;
use std::sync::atomic::{AtomicU64, Ordering};

use gateway_core::parse::parse_rate;
use gateway_core::ratelimit::algo::{check_and_consume, refund, Decision, Params, State};
use gateway_core::ratelimit::counter_key;
use gateway_core::ratelimit::sync::{check_and_consume_synced, refund_synced, Persist};
use gateway_core::ratelimit::table::{Outcome, Table};
use nginx_sys::{
    ngx_http_request_t, ngx_int_t, ngx_shmtx_lock, ngx_shmtx_unlock,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, Request};

use super::ctx::RequestCtx;
use super::GatewayModule;
use crate::conf::ratelimit::{
    parse_cost, CostSpec, HeaderMode, Limit, RateLimitConf, RateSpec, Zone,
};

/// `$rate_limit_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RlStatus {
    Passed,
    Rejected,
    RejectedDryRun,
}

impl RlStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RlStatus::Passed => "PASSED",
            RlStatus::Rejected => "REJECTED",
            RlStatus::RejectedDryRun => "REJECTED_DRY_RUN",
        }
    }
}

/// What the limiter decided for a request: the overall status and the decision of the most
/// restrictive limit that applied (the one whose values the headers carry).
#[derive(Clone, Debug)]
pub struct RlOutcome {
    pub status: RlStatus,
    pub decision: Decision,
    pub policy: String,
    /// The reported limit's quota policy: `q` requests per `w` seconds (`Params::policy`).
    pub policy_q: u64,
    pub policy_w: u64,
    pub headers: HeaderMode,
}

/// Runs `f` on the zone's table with the zone's mutex held.
fn with_table<T>(zone: &Zone, f: impl FnOnce(&mut Table) -> T) -> Option<T> {
    let shpool = zone.shpool();
    // SAFETY: the slab pool's mutex guards the table region, which lives in the zone's shared
    // memory for as long as the configuration does.
    unsafe {
        ngx_shmtx_lock(&mut (*shpool).mutex);
        let region = core::slice::from_raw_parts_mut(zone.region, zone.region_len);
        let r = Table::attach(region).ok().map(|mut t| f(&mut t));
        ngx_shmtx_unlock(&mut (*shpool).mutex);
        r
    }
}

/// Once-a-minute limiter for error-log lines about bad rates from variables (per worker).
static LAST_BAD_RATE_LOG: AtomicU64 = AtomicU64::new(0);

/// Logs a bad value of a variable (rate or cost) at most once a minute per worker, and says
/// what the limit does: skipped, or the request answered 500 (`rate_limit_invalid_rate`).
fn bad_value(
    request: &Request,
    limit: &Limit,
    conf: &RateLimitConf,
    now: u64,
    what: &str,
) -> ParamsOr {
    let last = LAST_BAD_RATE_LOG.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60_000 {
        LAST_BAD_RATE_LOG.store(now, Ordering::Relaxed);
        gw_log!(
            NGX_LOG_ERR,
            request.log(),
            "rate_limit \"{}\": {what} from variable",
            limit.policy
        );
    }
    if conf.invalid_rate_error.unwrap_or(false) {
        ParamsOr::Error
    } else {
        ParamsOr::Skip
    }
}

/// The request's cost for `limit`: `None` when the variable's value is not a number.
fn cost_for(request: &Request, limit: &Limit) -> Option<u64> {
    match limit.cost {
        CostSpec::Fixed(n) => Some(n),
        CostSpec::Variable(cv) => {
            // SAFETY: the complex value was compiled from this configuration.
            let v = request.get_complex_value(unsafe { &*cv.0 });
            let v = v.map(|s| s.as_bytes()).unwrap_or_default();
            if v.is_empty() {
                Some(1)
            } else {
                parse_cost(v)
            }
        }
    }
}

enum ParamsOr {
    Params(Params),
    Skip,
    Error,
}

fn params_for(
    request: &Request,
    ctx: &RequestCtx,
    limit: &Limit,
    conf: &RateLimitConf,
    zone: &Zone,
    now: u64,
) -> ParamsOr {
    let cost = match cost_for(request, limit) {
        Some(0) => return ParamsOr::Skip, // a free request: this limit neither counts nor refuses it
        Some(n) => n,
        None => return bad_value(request, limit, conf, now, "invalid cost"),
    };
    match params_for_rate(request, ctx, limit, conf, now) {
        ParamsOr::Params(p) => ParamsOr::Params(p.with_offset(zone.tz_offset_ms).with_cost(cost)),
        other => other,
    }
}

fn params_for_rate(
    request: &Request,
    ctx: &RequestCtx,
    limit: &Limit,
    conf: &RateLimitConf,
    now: u64,
) -> ParamsOr {
    match limit.rate {
        // The consumer's plan (kept in the request's identity): a consumer without a plan, or
        // a plan without a limit for this period, is not limited by it.
        RateSpec::Plan(period) => match ctx.consumer.as_ref().and_then(|c| c.plan_limit(period)) {
            Some(count) => ParamsOr::Params(Params::new(
                limit.algorithm,
                gateway_core::parse::Rate {
                    count,
                    period_ms: period.period_ms(),
                },
                limit.burst,
            )),
            None => ParamsOr::Skip,
        },
        RateSpec::Fixed(r) => ParamsOr::Params(Params::new(limit.algorithm, r, limit.burst)),
        RateSpec::Variable(cv) => {
            // SAFETY: the complex value was compiled from this configuration.
            let v = request.get_complex_value(unsafe { &*cv.0 });
            let v = v.map(|s| s.as_bytes()).unwrap_or_default();
            match parse_rate(v) {
                Ok(r)
                    if limit.algorithm == gateway_core::ratelimit::algo::Algorithm::TokenBucket
                        && Params::new(limit.algorithm, r, 0).windows().is_calendar() =>
                {
                    bad_value(
                        request,
                        limit,
                        conf,
                        now,
                        &format!("rate \"{r}\" is a calendar window, which algorithm=token_bucket does not support,"),
                    )
                }
                Ok(r) => ParamsOr::Params(Params::new(limit.algorithm, r, limit.burst)),
                Err(_) if v.is_empty() => ParamsOr::Skip,
                Err(e) => bad_value(request, limit, conf, now, &e.to_string()),
            }
        }
    }
}

/// A limit that admitted the request, kept to refund it if a later limit rejects.
struct Consumed<'a> {
    zone: &'a Zone,
    node: Vec<u8>,
    params: Params,
}

/// One limit's decision on its counter, under the zone's lock, and the number of evictions to
/// report if the insertion evicted a live key. With `count` false the counter is only read.
/// `earlier`: the parameters of a limit of this request that counted it on the same counter
/// already; then the decision is taken on the counter as it was before this request (two
/// limits of one period on one zone are both checked, and the request counted once).
fn decide(
    zone: &Zone,
    node: &[u8],
    params: &Params,
    earlier: Option<&Params>,
    count: bool,
    now: u64,
) -> Option<(Decision, Option<u64>)> {
    let fail_closed = zone.sync.as_ref().is_some_and(|s| s.fail_closed);
    let persist = zone.persistent.map(|allowance| Persist {
        allowance,
        retry_ms: zone.sync.as_ref().map_or(1000, |s| s.interval_ms),
    });
    with_table(zone, |t| {
        if fail_closed && t.sync_down() {
            // sync_fail=closed: nothing passes while the cluster's counts are unknown.
            let retry = zone.sync.as_ref().map_or(1000, |s| s.interval_ms.max(1000));
            let d = Decision {
                allowed: false,
                limit: params.limit(),
                remaining: 0,
                reset_ms: retry,
                retry_after_ms: retry,
            };
            return (d, None);
        }
        // sync_fail=open while Redis is failing: local limits, so no allowance waits for a
        // pull that cannot happen.
        let persist = persist.filter(|_| !t.sync_down());
        if earlier.is_some() || !count {
            let mut st = State::EMPTY;
            let mut rec = None;
            if let Some((state, r)) = t.get_mut_synced(node) {
                st = *state;
                rec = r.map(|r| *r);
            }
            if let Some(e) = earlier {
                match rec.as_mut() {
                    Some(r) => refund_synced(&mut st, r, now, e),
                    None => refund(&mut st, now, e),
                }
            }
            let d = match rec.as_mut() {
                Some(r) => check_and_consume_synced(&mut st, r, now, params, persist),
                None => check_and_consume(&mut st, now, params),
            };
            return (d, None);
        }
        let (state, rec, outcome) = t.lookup_or_insert_synced(node, now);
        let d = match rec {
            Some(rec) => check_and_consume_synced(state, rec, now, params, persist),
            None => check_and_consume(state, now, params),
        };
        let evicted = if outcome == Outcome::Evicted {
            t.eviction_report(now, 60_000)
        } else {
            None
        };
        (d, evicted)
    })
}

type Reported<'a> = (Decision, &'a Limit, (u64, u64));

/// Applies the location's limits. Returns the status to answer when the request is rejected.
pub fn access(
    request: &mut Request,
    ctx: &mut RequestCtx,
    conf: &RateLimitConf,
) -> Option<ngx_int_t> {
    let limits = conf.limits.as_deref().unwrap_or_default();
    if limits.is_empty() || ctx.rate_limit.is_some() {
        // Limits apply once per request: after an internal redirect (index, try_files,
        // error_page of a rejection...) the decision already made stands, as with limit_req.
        return None;
    }
    let now = now_ms();
    let dry_all = conf.dry_run.unwrap_or(false);
    let mut consumed: Vec<Consumed> = Vec::with_capacity(limits.len());
    let mut best: Option<Reported> = None;
    let mut status = None;
    let mut rejected: Option<Reported> = None;

    for limit in limits {
        // SAFETY: zones live in the configuration pool, as long as this configuration.
        let zone = unsafe { &*limit.zone };
        // SAFETY: the key complex value was compiled from this configuration.
        let key = request
            .get_complex_value(unsafe { &*zone.key.0 })
            .map(|k| k.as_bytes())
            .unwrap_or_default();
        if key.is_empty() {
            continue; // an empty key is not limited, as with limit_req
        }
        let params = match params_for(request, ctx, limit, conf, zone, now) {
            ParamsOr::Params(p) => p,
            ParamsOr::Skip => continue,
            ParamsOr::Error => {
                rollback(&consumed, now);
                return Some(500);
            }
        };
        let node = counter_key(key, params.period_ms);
        let earlier = consumed
            .iter()
            .find(|c| core::ptr::eq(c.zone, zone) && c.node == node)
            .map(|c| c.params);
        let dry = limit.dry_run || dry_all;
        if let Some((r, _, _)) = &rejected {
            // Rejected already: the enforced limits after the one that rejected are only read,
            // so that Retry-After says when every one of them admits a request.
            let retry = r.retry_after_ms;
            if !dry {
                if let Some((d, _)) = decide(zone, &node, &params, earlier.as_ref(), false, now) {
                    if !d.allowed && d.retry_after_ms > retry {
                        rejected = Some((d, limit, params.policy(now)));
                    }
                }
            }
            continue;
        }
        let log = request.log();
        let r = decide(zone, &node, &params, earlier.as_ref(), true, now);
        let Some((d, evicted)) = r else {
            gw_log!(
                NGX_LOG_ERR,
                log,
                "rate_limit_zone \"{}\" is unusable, limit skipped",
                zone.name
            );
            continue;
        };
        if let Some(n) = evicted {
            gw_log!(
                NGX_LOG_WARN,
                log,
                "rate_limit_zone \"{}\" is full: {n} key{} with live counts evicted since the last report (reported at most once a minute); make the zone larger",
                zone.name,
                if n == 1 { "" } else { "s" }
            );
        }
        let window = params.policy(now);
        let dry = !d.allowed && dry;
        let slot = if d.allowed {
            0
        } else if dry {
            2
        } else {
            1
        };
        super::metrics::inc(limit.slots[slot]);
        if d.allowed {
            if earlier.is_none() {
                consumed.push(Consumed { zone, node, params });
            }
            // The most restrictive limit is reported; among exhausted ones, the one that
            // frees up last.
            if best.as_ref().map_or(true, |(b, _, _)| {
                d.remaining < b.remaining
                    || (d.remaining == 0 && b.remaining == 0 && d.reset_ms > b.reset_ms)
            }) {
                best = Some((d, limit, window));
            }
        } else if dry {
            gw_log!(
                NGX_LOG_INFO,
                log,
                "rate_limit \"{}\" would reject (dry run)",
                limit.policy
            );
            status = Some(RlStatus::RejectedDryRun);
            if best
                .as_ref()
                .map_or(true, |(b, _, _)| d.remaining <= b.remaining)
            {
                best = Some((d, limit, window));
            }
        } else {
            gw_log!(
                NGX_LOG_INFO,
                log,
                "rate_limit \"{}\" rejected the request, retry after {}s",
                limit.policy,
                d.retry_after_secs()
            );
            rejected = Some((d, limit, window));
        }
    }

    let was_rejected = rejected.is_some();
    if was_rejected {
        rollback(&consumed, now);
    }
    let (d, limit, window) = rejected.or(best)?;
    let status = if was_rejected {
        RlStatus::Rejected
    } else {
        status.unwrap_or(RlStatus::Passed)
    };
    ctx.rate_limit = Some(RlOutcome {
        status,
        decision: d,
        policy: limit.policy.clone(),
        policy_q: window.0,
        policy_w: window.1,
        headers: conf.header_mode(),
    });
    let outcome = ctx.rate_limit.as_ref().expect("just set");
    if super::add_rate_limit_headers(request, outcome).is_none() {
        return Some(500);
    }
    (status == RlStatus::Rejected).then(|| conf.status() as ngx_int_t)
}

fn rollback(consumed: &[Consumed], now: u64) {
    for c in consumed {
        with_table(c.zone, |t| match t.get_mut_synced(&c.node) {
            Some((state, Some(rec))) => refund_synced(state, rec, now, &c.params),
            Some((state, None)) => refund(state, now, &c.params),
            None => {}
        });
    }
}

/// Precontent phase: the location's rate limits, after every access check has granted the
/// request, whichever module granted it (`auth_jwt`, `allow`, `auth_basic`, `auth_request`,
/// under `satisfy all` or `any`). A request refused by an access check is answered 401/403
/// before this phase and counts against no limit.
///
/// Only the main request is limited, once: subrequests (`auth_request`, SSI, `mirror`, key
/// fetches) never are, and after an internal redirect (`index`, `try_files`, `error_page`) the
/// first decision stands (the request context survives redirects, see [`RequestCtx`]).
/// Registered after `try_files` and `mirror`, so it runs before them.
pub unsafe extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    super::guard_request(r, || {
        // SAFETY: nginx calls phase handlers with a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        if !request.is_main() {
            return Status::NGX_DECLINED.into();
        }
        let Some(lcf) = GatewayModule::location_conf(request) else {
            return Status::NGX_DECLINED.into();
        };
        if !lcf.is_enabled() {
            return Status::NGX_DECLINED.into();
        }
        let wanted = super::policy::wanted(lcf);
        let limited = !lcf.rl.limits.as_deref().unwrap_or_default().is_empty();
        if !wanted && !limited {
            return Status::NGX_DECLINED.into();
        }
        let start = super::metrics::timer();
        // A request that another access module granted (`satisfy any`) skipped the consumer
        // layer: the client's identity headers must still not reach the upstream.
        if wanted {
            let Some(ctx) = RequestCtx::get_or_create(request) else {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            };
            if super::policy::identity_headers_once(request, ctx, &lcf.consumer).is_none() {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
            if !limited {
                ctx.add_time(start);
                return Status::NGX_DECLINED.into();
            }
        }
        let Some(ctx) = RequestCtx::get_or_create(request) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let decided = access(request, ctx, &lcf.rl);
        ctx.add_time(start);
        match decided {
            Some(status) => super::reject_rate_limited(request, ctx, status),
            None => Status::NGX_DECLINED.into(),
        }
    })
}

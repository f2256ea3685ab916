//! Rate-limit algorithms: pure functions over a small `Copy` state.
//!
//! Two algorithms share one 24-byte [`State`] (so it fits a fixed-size shared-memory slot):
//!
//! * **Sliding window counter** ([`Algorithm::Sliding`], the default; for quotas such as
//!   `1000r/h`). Time is cut into fixed windows of `period_ms` (aligned to multiples of the
//!   period on the caller's clock). The state keeps the count of the current window and of the
//!   previous one; a request at offset `e` into the current window sees the estimate
//!   `prev * (P - e) / P + cur` and is admitted iff `estimate + 1 <= limit`. All arithmetic is
//!   exact integer arithmetic (the comparison is cross-multiplied in `u128`), no floats.
//!   The state also keeps the time of the last admission: once it is a full period old, every
//!   counted request is outside the sliding window and the counts are dropped. Without that,
//!   the estimate (which assumes the previous window's requests were spread over it) would keep
//!   a client that used its quota at the start of a window waiting up to `2P - P/L`, e.g. 72
//!   minutes for `5r/h`; with it, a limited client waits at most one period.
//!
//! * **Calendar windows** (`r/w`, `r/M`, [`super::calendar`]): fixed windows with the real
//!   bounds of the week or month on the zone's clock; a request is admitted iff the window's
//!   count plus its cost fits the limit, and everything is back at the window's end. The sliding
//!   estimate is not applied (a month's quota is "N per calendar month").
//!
//! * **GCRA** ([`Algorithm::TokenBucket`], a token bucket with `burst`): the state is the
//!   theoretical arrival time `tat`, kept in **nanoseconds** so that high rates stay exact
//!   (3000r/s gives an emission interval of 333 333 ns, not a rounded 0 or 1 ms). With
//!   `T = ceil(period / count)` and `tau = burst * T`, a request at `now` is admitted iff
//!   `tat - now <= tau`, and then `tat = max(tat, now) + T`. As with nginx's `limit_req`,
//!   `burst` counts requests in excess of the rate: `burst=5` lets 6 through at once.
//!
//! # Approximation bound of the sliding window counter
//!
//! Let `L` be the limit and `P` the period, with fixed windows `W_k = [kP, (k+1)P)`.
//!
//! 1. **Any fixed window admits at most `L`.** Admission needs `cur + 1 <= L - prev*(P-e)/P`,
//!    and the prev term is never negative, so `cur` never exceeds `L`.
//! 2. **Any sliding window of length `P` admits at most `L + floor(L*d/P)`, hence at most
//!    `2L - 1`**, where `[t, t+P)` starts at offset `d = t - kP` into `W_k`. Proof: let `c` be the
//!    number admitted in all of `W_k`, `a <= c` those admitted in `[t, (k+1)P)`, and `b` those in
//!    `[(k+1)P, t+P)`. When the last of the `b` is admitted, at offset `e < d` into `W_{k+1}`,
//!    the previous count is `c` and `b - 1` are already counted, so
//!    `c*(P-e)/P + b <= L`, i.e. `b <= L - c*(1 - e/P) < L - c*(1 - d/P)`. Then
//!    `a + b < a + L - c + c*d/P <= L + c*d/P <= L + L*d/P`, and `d < P` gives `< 2L`.
//!    The bound is approached when a full window's `L` requests arrive just before a window
//!    boundary and traffic then keeps arriving through the next window: the estimate assumes the
//!    previous window's requests were spread evenly, and they were not. With traffic that is
//!    spread out (the common case) the over-admission is small; the simulation test
//!    `sliding_window_bound_by_simulation` checks both bounds against random arrivals and prints
//!    the worst ratio seen. Use the token bucket where a strict bound over every interval
//!    matters: GCRA admits at most `burst + 1 + floor(t / T)` in any interval of length `t`.
//!
//! Dropping the counts a period after the last admission keeps both bounds: it only happens
//! when no request admitted in `W_k` lies in `[t, t+P)` (`a = 0`), and then `b <= L`.
//!
//! # What a client is told
//!
//! A rejection's `retry_after_ms` is the first millisecond at which a request would be
//! admitted if nothing else arrives (exact: the estimate only falls as time passes), never more
//! than one period (sliding) or one emission interval (token bucket). `reset_ms` is the same
//! instant whenever `remaining` is 0, admitted or not, so `Retry-After`, `RateLimit: ...;t=` and
//! `X-RateLimit-Reset` agree; with quota left it is when the full quota is back. The test
//! `retry_after_is_when_the_next_request_is_admitted` states the invariant with its rounding.
//!
//! The bounds hold while the parameters of a key stay the same and the clock does not go back.
//! When the parameters change between requests (per-plan rates from a variable), the state is
//! reinterpreted, never trusted blindly: counts are compared against the new limit, an old GCRA
//! backlog is clamped to what the new parameters allow, and a state kept for the other algorithm
//! is restarted. A clock that goes backwards is treated as standing still.
//!
//! # Costs
//!
//! A request of cost `c` ([`Params::cost`], default 1) is admitted iff `c` more units fit
//! (sliding and calendar: `estimate + c <= limit`; GCRA: `c` emission intervals within the
//! tolerance) and then counts `c`; a cost above the limit never fits. `retry_after_ms` is when
//! `c` units fit; `reset_ms` with `remaining` 0 when one does.
//!
//! # Several limits on one request, and dry runs
//!
//! [`check_and_consume`] leaves the state untouched when it rejects. The glue applies limits in
//! order, each under its own zone's lock; when limit B rejects after A admitted, it calls
//! [`refund`] on A, so a rejected request consumes nothing anywhere. A `dry_run` limit calls
//! [`check_and_consume`] exactly as an enforced one (consuming only when it admits, as
//! enforcement would) and merely ignores a rejection, so its counters and headers show what
//! enforcement would have done.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use bytemuck::{Pod, Zeroable};

use super::calendar::Windows;
use crate::parse::Rate;

/// Which algorithm a limit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Sliding window counter (`algorithm=sliding`, the default).
    #[default]
    Sliding,
    /// GCRA token bucket (`algorithm=token_bucket`).
    TokenBucket,
}

impl Algorithm {
    /// Parses the value of `algorithm=`: `sliding` or `token_bucket`.
    pub fn parse(value: &[u8]) -> Option<Self> {
        match value {
            b"sliding" => Some(Algorithm::Sliding),
            b"token_bucket" => Some(Algorithm::TokenBucket),
            _ => None,
        }
    }

    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sliding => "sliding",
            Algorithm::TokenBucket => "token_bucket",
        }
    }
}

/// The parameters of one limit as applied to one request.
///
/// Any values are accepted: `count` is clamped to `1..=u32::MAX`, `period_ms` to
/// `1..=u32::MAX`, and `burst` to `0..=u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Params {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Requests per period.
    pub count: u64,
    /// Period in milliseconds.
    pub period_ms: u64,
    /// Token bucket only: requests allowed at once in excess of the rate (nginx's `burst`).
    /// The sliding window ignores it.
    pub burst: u64,
    /// The local clock's offset from UTC (ms) on which windows are aligned (`tz=`).
    pub offset_ms: i64,
    /// Units one request consumes (`cost=`); 0 is taken as 1.
    pub cost: u64,
}

impl Params {
    /// Parameters from a parsed rate.
    pub fn new(algorithm: Algorithm, rate: Rate, burst: u64) -> Self {
        Params {
            algorithm,
            count: rate.count,
            period_ms: rate.period_ms,
            burst,
            offset_ms: 0,
            cost: 1,
        }
    }

    /// The same parameters with windows aligned on a UTC offset (ms).
    #[must_use]
    pub fn with_offset(mut self, offset_ms: i64) -> Self {
        self.offset_ms = offset_ms;
        self
    }

    /// The same parameters with a request costing `cost` units.
    #[must_use]
    pub fn with_cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// Where this limit's windows lie on the clock.
    #[must_use]
    pub fn windows(&self) -> Windows {
        Windows {
            period_ms: self.period_ms(),
            offset_ms: self.offset_ms,
        }
    }

    pub(crate) fn cost(&self) -> u64 {
        self.cost.clamp(1, u64::from(u32::MAX))
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.clamp(1, u64::from(u32::MAX))
    }

    pub(crate) fn period_ms(&self) -> u64 {
        self.period_ms.clamp(1, u64::from(u32::MAX))
    }

    fn burst(&self) -> u64 {
        self.burst.min(u64::from(u32::MAX))
    }

    /// The limit as reported in headers: `count` for the sliding window; for the token bucket
    /// its capacity, `burst + 1` (or more at rates above 1000r/s with a small burst, see
    /// [`Params::gcra`]). Same value as [`Decision::limit`].
    #[must_use]
    pub fn limit(&self) -> u64 {
        match self.algorithm {
            Algorithm::Sliding => self.count(),
            Algorithm::TokenBucket => {
                let (t, tau) = self.gcra();
                (tau.checked_div(t).unwrap_or(0)).saturating_add(1)
            }
        }
    }

    /// The quota policy advertised in `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers):
    /// `(q, w)`, `q` requests per window of `w` seconds, with `q / w` equal to the rate.
    ///
    /// Sliding window: `(count, period)` (the period in seconds, at least 1). Token bucket: the
    /// bucket's capacity over the time the rate takes to refill it, `w = max(1, ceil(capacity *
    /// T))` seconds, and `q = max(capacity, floor(count * w / period))` so that a rate above one
    /// bucket per second is not under-reported: `2r/h` gives `(1, 1800)`, `3r/h burst=2` gives
    /// `(3, 3600)`, `10r/s` gives `(10, 1)`. (Reporting `(capacity, period)` would claim one
    /// request per hour for `2r/h` without burst.)
    ///
    /// Calendar windows (`r/w`, `r/M`) report the length of the window holding `now_ms`: a
    /// month is 28 to 31 days.
    #[must_use]
    pub fn policy(&self, now_ms: u64) -> (u64, u64) {
        let period = u128::from(self.period_ms());
        let win = self.windows();
        match self.algorithm {
            Algorithm::Sliding if win.is_calendar() => {
                let len = win.len(win.start(now_ms));
                (self.count(), len.div_ceil(1000).max(1))
            }
            Algorithm::Sliding => (self.count(), self.period_ms().div_ceil(1000).max(1)),
            Algorithm::TokenBucket => {
                let cap = self.limit();
                let (t, _) = self.gcra();
                let refill_ns = u128::from(cap).saturating_mul(u128::from(t));
                let w = refill_ns.div_ceil(1_000_000_000).max(1);
                let q = u128::from(self.count())
                    .saturating_mul(w)
                    .saturating_mul(1000)
                    .checked_div(period)
                    .unwrap_or(0)
                    .max(u128::from(cap));
                (
                    u64::try_from(q).unwrap_or(u64::MAX),
                    u64::try_from(w).unwrap_or(u64::MAX),
                )
            }
        }
    }

    /// GCRA parameters in nanoseconds: the emission interval `T = ceil(period / count)` (at
    /// least 1) and the tolerance `tau = max(burst * T, 1 ms)`.
    ///
    /// The floor of one millisecond on `tau` is the clock's granularity: times arrive in whole
    /// milliseconds, so at rates above 1000r/s several requests share one timestamp and a
    /// tolerance below 1 ms would cap the rate at one request per millisecond (and lose credit
    /// every tick). With the floor the long-run rate is exact, and the extra instantaneous burst
    /// is at most one millisecond's worth of requests. nginx's cached clock only advances once
    /// per event-loop iteration, so at high rates also configure a `burst` covering a few
    /// milliseconds of traffic.
    #[must_use]
    pub fn gcra(&self) -> (u64, u64) {
        let period_ns = u128::from(self.period_ms()).saturating_mul(NS_PER_MS_128);
        let t = period_ns.div_ceil(u128::from(self.count()));
        let t = u64::try_from(t).unwrap_or(u64::MAX).max(1);
        let tau = self.burst().saturating_mul(t).max(NS_PER_MS);
        (t, tau)
    }
}

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_MS_128: u128 = 1_000_000;

/// The outcome of one check, with what the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted (and was counted).
    pub allowed: bool,
    /// The limit: `count` (sliding window) or `burst + 1` (token bucket).
    pub limit: u64,
    /// Requests that would still be admitted right now, after this one.
    pub remaining: u64,
    /// Milliseconds until the quota is back, if no further request arrives (rounded up): while
    /// `remaining` is 0, until the next request would be admitted (on a rejection the same as
    /// `retry_after_ms`); otherwise until `remaining` is back to `limit`.
    pub reset_ms: u64,
    /// When rejected, milliseconds until a request would be admitted (rounded up, at least 1);
    /// 0 when allowed.
    pub retry_after_ms: u64,
}

impl Decision {
    /// `reset_ms` in whole seconds, rounded up (for `RateLimit: ...;t=` and
    /// `X-RateLimit-Reset`).
    #[must_use]
    pub fn reset_secs(&self) -> u64 {
        self.reset_ms.div_ceil(1000)
    }

    /// The `Retry-After` value in seconds: rounded up, at least 1 (0 when allowed).
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        if self.allowed {
            0
        } else {
            self.retry_after_ms.div_ceil(1000).max(1)
        }
    }
}

/// Per-key algorithm state: 24 bytes, all-zero means "no requests seen".
///
/// Interpreted according to `kind`:
/// * sliding window: `t` = time (ms) of the last admission counted, `b` = the count of the
///   window that holds `t` (windows are aligned on multiples of the period), `a` = the count of
///   the window before it, `aux` = the period (ms) the counts belong to;
/// * GCRA: `t` = theoretical arrival time (ns).
///
/// Plain old data with no invalid bit patterns: any 24 bytes (a corrupted shared-memory slot)
/// are a valid `State` that the functions here handle without panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct State {
    t: u64,
    a: u32,
    b: u32,
    kind: u32,
    aux: u32,
}

const _: () = assert!(std::mem::size_of::<State>() == 24);
const _: () = assert!(std::mem::align_of::<State>() == 8);

// SAFETY: `State` is `repr(C)`, contains only integers (for which the all-zero pattern is
// valid), and has no padding: 8 + 4 + 4 + 4 + 4 = 24 = size_of (asserted above).
unsafe impl Zeroable for State {}
// SAFETY: as above; additionally `State` is `Copy + 'static` and every bit pattern is a valid
// value of each integer field, so any bytes are a valid `State`.
unsafe impl Pod for State {}

const KIND_EMPTY: u32 = 0;
const KIND_SLIDING: u32 = 1;
const KIND_GCRA: u32 = 2;

impl State {
    /// A state with no requests seen.
    pub const EMPTY: State = State {
        t: 0,
        a: 0,
        b: 0,
        kind: KIND_EMPTY,
        aux: 0,
    };

    /// Which algorithm last wrote this state, if any.
    #[must_use]
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.kind {
            KIND_SLIDING => Some(Algorithm::Sliding),
            KIND_GCRA => Some(Algorithm::TokenBucket),
            _ => None,
        }
    }

    /// Whether this state is indistinguishable from an empty one at `now_ms` (every counted
    /// request has expired), so that reusing its slot for another key loses nothing.
    #[must_use]
    pub fn is_idle(&self, now_ms: u64) -> bool {
        match self.kind {
            KIND_SLIDING => {
                // Every counted request happened at or before `t`: a period later, none counts.
                let period = u64::from(self.aux.max(1));
                (self.a == 0 && self.b == 0) || now_ms.saturating_sub(self.t) >= period
            }
            KIND_GCRA => self.t <= now_ms.saturating_mul(NS_PER_MS),
            _ => true,
        }
    }
}

/// The sliding-window state brought forward to `now`: the counts of the window that holds
/// `now` and of the one before, and the time of the last admission they include.
pub(crate) struct Window {
    /// Start (ms) of the window holding `now`.
    pub(crate) start: u64,
    /// End (ms, exclusive) of the window holding `now`.
    pub(crate) end: u64,
    /// Count of the previous window; 0 once its requests are all a period old, and always 0
    /// for calendar windows (they do not slide).
    pub(crate) prev: u64,
    /// Count of the current window.
    pub(crate) cur: u64,
    /// `now - start`.
    pub(crate) elapsed: u64,
    /// The last admission counted in `prev` or `cur` (meaningless when both are 0).
    pub(crate) last: u64,
    /// `now`, never before `last` (a clock that went back stands still at the last admission).
    pub(crate) now: u64,
    /// Calendar window (fixed, no sliding estimate).
    pub(crate) calendar: bool,
}

impl Window {
    /// Milliseconds until every request counted here is a full period old (0 if none is
    /// counted): at that moment the key's whole quota is back, whatever the weighted estimate
    /// says (it assumes the previous window's requests were spread over that window). For a
    /// calendar window: until its end.
    pub(crate) fn expiry(&self, period: u64) -> u64 {
        if self.prev == 0 && self.cur == 0 {
            0
        } else if self.calendar {
            self.end.saturating_sub(self.now)
        } else {
            self.last.saturating_add(period).saturating_sub(self.now)
        }
    }
}

pub(crate) fn sliding_window(st: &State, now_ms: u64, win: &Windows) -> Window {
    let period = win.period_ms.max(1);
    let (last, a, b) = if st.kind == KIND_SLIDING {
        (st.t, u64::from(st.a), u64::from(st.b))
    } else {
        (0, 0, 0)
    };
    let now = now_ms.max(last);
    let (start, start_last) = (win.start(now), win.start(last));
    let (prev, cur) = if start == start_last {
        (a, b)
    } else if start_last == win.prev_start(start) {
        (b, 0)
    } else {
        (0, 0)
    };
    let calendar = win.is_calendar();
    // Everything counted happened at or before `last`: a period later none of it is in the
    // sliding window, so the previous window's count no longer weighs (the current one is
    // then 0 already, since the current window started less than a period ago). Calendar
    // windows do not slide: the previous window never weighs.
    let prev = if calendar || now.saturating_sub(last) >= period {
        0
    } else {
        prev
    };
    Window {
        start,
        end: win.end(start),
        prev,
        cur,
        elapsed: now.saturating_sub(start),
        last,
        now,
        calendar,
    }
}

/// Stores `w` after an admission at `w.now` (counted in `w.cur`).
pub(crate) fn store_admitted(st: &mut State, w: &Window, period: u64) {
    *st = State {
        t: w.now,
        a: u32::try_from(w.prev).unwrap_or(u32::MAX),
        b: u32::try_from(w.cur).unwrap_or(u32::MAX),
        kind: KIND_SLIDING,
        aux: u32::try_from(period).unwrap_or(u32::MAX),
    };
}

/// `ceil(prev * (P - e) / P)`: the previous window's weighted contribution, rounded up.
pub(crate) fn weighted_prev(prev: u64, elapsed: u64, period: u64) -> u64 {
    let num = u128::from(prev).saturating_mul(u128::from(period.saturating_sub(elapsed)));
    let w = num.div_ceil(u128::from(period.max(1)));
    u64::try_from(w).unwrap_or(u64::MAX)
}

/// Whether `need` more units fit: `prev*(P-e)/P + cur + need <= L`, exactly.
pub(crate) fn sliding_admits(
    prev: u64,
    cur: u64,
    elapsed: u64,
    period: u64,
    limit: u64,
    need: u64,
) -> bool {
    let Some(room) = limit.checked_sub(cur).and_then(|r| r.checked_sub(need)) else {
        return false;
    };
    let lhs = u128::from(prev).saturating_mul(u128::from(period.saturating_sub(elapsed)));
    lhs <= u128::from(room).saturating_mul(u128::from(period))
}

/// Milliseconds from offset `elapsed` until `prev*(P-e')/P + cur + need <= limit` holds,
/// assuming no further requests (the window may roll over in between).
pub(crate) fn sliding_wait(
    prev: u64,
    cur: u64,
    elapsed: u64,
    period: u64,
    limit: u64,
    need: u64,
) -> u64 {
    // Smallest offset e' in a window with counts (p, c) at which one more fits, if any (<= P).
    let fit_at = |p: u64, c: u64| -> Option<u64> {
        let room = limit.checked_sub(c)?.checked_sub(need)?;
        if p == 0 {
            return Some(0);
        }
        // P - e' <= room * P / p  <=>  e' >= P - floor(room * P / p)
        let slack = u128::from(room)
            .saturating_mul(u128::from(period))
            .checked_div(u128::from(p))
            .unwrap_or(0);
        let slack = u64::try_from(slack).unwrap_or(u64::MAX);
        Some(period.saturating_sub(slack))
    };
    let to_end = period.saturating_sub(elapsed);
    match fit_at(prev, cur) {
        Some(e) if e < period => e.saturating_sub(elapsed),
        // Not in this window: after the roll the counts are (cur, 0).
        _ => match fit_at(cur, 0) {
            Some(e) => to_end.saturating_add(e),
            // More than the limit (a cost above it): it never fits; two windows regardless.
            None => to_end.saturating_add(period),
        },
    }
}

/// Milliseconds until a sliding state with these counts has fully reset, by the weighted
/// estimate alone.
fn sliding_reset(prev: u64, cur: u64, elapsed: u64, period: u64) -> u64 {
    let to_end = period.saturating_sub(elapsed);
    if cur > 0 {
        to_end.saturating_add(period)
    } else if prev > 0 {
        to_end
    } else {
        0
    }
}

/// A fixed calendar window (`r/w`, `r/M`): admitted iff the window's count plus the cost fits
/// the limit; everything is back at the window's end.
fn calendar_decide(
    st: &mut State,
    mut w: Window,
    others_cur: u64,
    period: u64,
    limit: u64,
    cost: u64,
) -> Decision {
    let allowed = w.cur.saturating_add(others_cur).saturating_add(cost) <= limit;
    if allowed {
        w.cur = w.cur.saturating_add(cost);
        w.last = w.now;
        store_admitted(st, &w, period);
    }
    let used = w.cur.saturating_add(others_cur);
    let to_end = w.end.saturating_sub(w.now).max(1);
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(used),
        reset_ms: if used > 0 { to_end } else { 0 },
        retry_after_ms: if allowed { 0 } else { to_end },
    }
}

/// A sliding-window decision over this node's counts `w` plus, for a zone synced through
/// Redis, the other nodes' counts of the same two windows (`others`, as last pulled). An
/// admitted request is counted in `st` (`cost` units). Returns the decision.
///
/// The request is admitted iff the weighted estimate over all counts plus its cost fits the
/// limit; this node's counts stop weighing a period after its last admission
/// ([`sliding_window`]). The waits assume no further request arrives and the other nodes'
/// counts do not change:
/// * `retry_after_ms` (on a rejection): until the first millisecond at which the request's
///   cost fits; `reset_ms` whenever `remaining` is 0: until one more unit fits. Locally this is
///   never more than one period: `min(weighted-estimate wait, expiry of the last admission)`.
/// * `reset_ms` when `remaining > 0`: until the full limit is back.
///
/// Calendar windows are fixed windows ([`calendar_decide`]).
pub(crate) fn sliding_decide(
    st: &mut State,
    mut w: Window,
    others: (u64, u64),
    win: &Windows,
    limit: u64,
    cost: u64,
) -> Decision {
    let period = win.period_ms.max(1);
    let (others_prev, others_cur) = others;
    if w.calendar {
        return calendar_decide(st, w, others_cur, period, limit, cost);
    }
    let allowed = sliding_admits(
        w.prev.saturating_add(others_prev),
        w.cur.saturating_add(others_cur),
        w.elapsed,
        period,
        limit,
        cost,
    );
    if allowed {
        w.cur = w.cur.saturating_add(cost);
        w.last = w.now;
        store_admitted(st, &w, period);
    }
    let (prev, cur) = (
        w.prev.saturating_add(others_prev),
        w.cur.saturating_add(others_cur),
    );
    let used = cur.saturating_add(weighted_prev(prev, w.elapsed, period));
    let remaining = limit.saturating_sub(used);
    let expiry = w.expiry(period);
    // Before `expiry` this node's counts weigh as the estimate says; from then on only the
    // other nodes' counts do.
    let wait_for = |need: u64| {
        let all = sliding_wait(prev, cur, w.elapsed, period, limit, need);
        if all < expiry {
            all
        } else {
            let theirs = sliding_wait(others_prev, others_cur, w.elapsed, period, limit, need);
            expiry.max(theirs)
        }
        .max(1)
    };
    let next = if allowed && remaining > 0 {
        0
    } else {
        wait_for(if allowed { 1 } else { cost })
    };
    let reset_ms = if remaining == 0 {
        if allowed || cost == 1 {
            next
        } else {
            wait_for(1)
        }
    } else {
        let mine = sliding_reset(w.prev, w.cur, w.elapsed, period).min(expiry);
        mine.max(sliding_reset(others_prev, others_cur, w.elapsed, period))
    };
    Decision {
        allowed,
        limit,
        remaining,
        reset_ms,
        retry_after_ms: if allowed { 0 } else { next },
    }
}

fn check_sliding(st: &mut State, now_ms: u64, p: &Params) -> Decision {
    let win = p.windows();
    let w = sliding_window(st, now_ms, &win);
    sliding_decide(st, w, (0, 0), &win, p.count(), p.cost())
}

fn ns_to_ms_ceil(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_MS)
}

fn check_gcra(st: &mut State, now_ms: u64, p: &Params) -> Decision {
    let now = now_ms.saturating_mul(NS_PER_MS);
    let (t, tau) = p.gcra();
    let limit = p.limit();
    let tat = if st.kind == KIND_GCRA { st.t } else { 0 };
    // Backlog in front of `now`. Under fixed parameters it never exceeds tau + T after an
    // admission; a larger one (slower rate before, or a clock that went back) is clamped, and
    // the clamp is stored even on rejection (it counts nothing, it only forgets an
    // impossible backlog; otherwise a key would stay blocked at the old, slower rate).
    let max_backlog = tau.saturating_add(t);
    let mut backlog = tat.saturating_sub(now);
    if backlog > max_backlog {
        backlog = max_backlog;
        st.t = now.saturating_add(max_backlog);
    }
    // A request of cost `c` takes `c` emission intervals: it fits iff the first `c - 1` of
    // them do not push the backlog beyond tau.
    let extra = p.cost().saturating_sub(1).saturating_mul(t);
    if backlog.saturating_add(extra) > tau {
        let retry = ns_to_ms_ceil(backlog.saturating_add(extra).saturating_sub(tau)).max(1);
        let remaining = tau.checked_sub(backlog).map_or(0, |slack| {
            slack.checked_div(t).unwrap_or(0).saturating_add(1)
        });
        let reset = ns_to_ms_ceil(backlog.saturating_sub(tau)).max(1);
        return Decision {
            allowed: false,
            limit,
            remaining: remaining.min(limit),
            reset_ms: if remaining == 0 {
                reset
            } else {
                ns_to_ms_ceil(backlog)
            },
            retry_after_ms: retry,
        };
    }
    let new_backlog = backlog.saturating_add(extra).saturating_add(t);
    *st = State {
        t: now.saturating_add(new_backlog),
        a: 0,
        b: 0,
        kind: KIND_GCRA,
        aux: 0,
    };
    let (remaining, reset_ns) = match tau.checked_sub(new_backlog) {
        // Full again once the backlog has drained.
        Some(slack) => (
            slack.checked_div(t).unwrap_or(0).saturating_add(1),
            new_backlog,
        ),
        // Exhausted: the next request fits once the backlog is down to tau.
        None => (0, new_backlog.saturating_sub(tau)),
    };
    Decision {
        allowed: true,
        limit,
        remaining: remaining.min(limit),
        reset_ms: ns_to_ms_ceil(reset_ns),
        retry_after_ms: 0,
    }
}

/// Checks one request against a limit and counts it if admitted.
///
/// A rejected request is not counted: the state is left as it was, except that a GCRA backlog
/// impossible under the current parameters (left by a slower rate, or by a clock that went
/// back) is clamped to the largest possible one, which only ever makes the state more lenient.
/// Never panics, whatever the state bytes and parameters.
pub fn check_and_consume(state: &mut State, now_ms: u64, params: &Params) -> Decision {
    match params.algorithm {
        Algorithm::Sliding => check_sliding(state, now_ms, params),
        Algorithm::TokenBucket => check_gcra(state, now_ms, params),
    }
}

/// Reports what [`check_and_consume`] would decide, without changing anything.
#[must_use]
pub fn peek(state: &State, now_ms: u64, params: &Params) -> Decision {
    let mut copy = *state;
    check_and_consume(&mut copy, now_ms, params)
}

/// Undoes one request admitted by [`check_and_consume`] with the same parameters, shortly
/// before. Saturates: refunding a state with nothing counted (for example one whose slot was
/// evicted and reused in between) does nothing, and a state kept for the other algorithm is
/// left alone.
pub fn refund(state: &mut State, now_ms: u64, params: &Params) {
    match params.algorithm {
        Algorithm::Sliding => {
            if state.kind != KIND_SLIDING {
                return;
            }
            // `t` stays: the last admission is never earlier than it says, so the counts
            // expire no sooner than they should.
            let cost = params.cost();
            let w = sliding_window(state, now_ms, &params.windows());
            if w.cur > 0 {
                state.a = u32::try_from(w.prev).unwrap_or(u32::MAX);
                state.b = u32::try_from(w.cur.saturating_sub(cost)).unwrap_or(u32::MAX);
            } else if w.prev > 0 {
                // The window rolled over since the hit: `t` is in the previous window now.
                state.a = 0;
                state.b = u32::try_from(w.prev.saturating_sub(cost)).unwrap_or(u32::MAX);
            }
            state.aux = u32::try_from(params.period_ms()).unwrap_or(u32::MAX);
        }
        Algorithm::TokenBucket => {
            if state.kind == KIND_GCRA {
                let t = params.gcra().0.saturating_mul(params.cost());
                state.t = state.t.saturating_sub(t);
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

    fn sliding(count: u64, period_ms: u64) -> Params {
        Params {
            algorithm: Algorithm::Sliding,
            count,
            period_ms,
            burst: 0,
            offset_ms: 0,
            cost: 1,
        }
    }

    fn bucket(count: u64, period_ms: u64, burst: u64) -> Params {
        Params {
            algorithm: Algorithm::TokenBucket,
            count,
            period_ms,
            burst,
            offset_ms: 0,
            cost: 1,
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    #[test]
    fn calendar_windows_are_fixed() {
        use crate::ratelimit::calendar::{days_from_civil, MONTH_MS, WEEK_MS};
        const DAY: u64 = 86_400_000;
        const H: u64 = 3_600_000;
        let at = |y, m, d| days_from_civil(y, m, d) as u64 * DAY;
        let p = sliding(3, MONTH_MS);
        let mut st = State::EMPTY;
        let feb = at(2024, 2, 1);
        for i in 0..3 {
            assert!(check_and_consume(&mut st, feb - H + i, &p).allowed);
        }
        // Exhausted until the month ends, whatever the sliding estimate would say.
        let d = check_and_consume(&mut st, feb - 1000, &p);
        assert!(!d.allowed);
        assert_eq!((d.retry_after_ms, d.reset_ms, d.remaining), (1000, 1000, 0));
        // The 1st: a fresh quota, the previous month does not weigh.
        let d = check_and_consume(&mut st, feb, &p);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
        assert_eq!(d.reset_ms, 29 * DAY); // leap February: back at March 1st
        refund(&mut st, feb + 1, &p);
        assert_eq!(peek(&st, feb + 2, &p).remaining, 2);
        // RateLimit-Policy w= is the length of the month holding now.
        assert_eq!(p.policy(feb), (3, 29 * 86_400));
        assert_eq!(p.policy(at(2026, 2, 10)), (3, 28 * 86_400));
        assert_eq!(p.policy(at(2026, 4, 30)), (3, 30 * 86_400));
        assert_eq!(p.policy(at(2026, 1, 10)), (3, 31 * 86_400));
        // +02:00: the local month starts at 22:00 UTC the day before.
        let p = sliding(1, MONTH_MS).with_offset(2 * H as i64);
        let mut st = State::EMPTY;
        assert!(check_and_consume(&mut st, feb - 3 * H, &p).allowed);
        let d = check_and_consume(&mut st, feb - 2 * H - 1, &p);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 1);
        assert!(check_and_consume(&mut st, feb - 2 * H, &p).allowed);
        // Weeks: Monday 00:00 to Monday 00:00 (2026-11-30 is a Monday).
        let p = sliding(2, WEEK_MS);
        let mon = at(2026, 11, 30);
        let mut st = State::EMPTY;
        assert!(check_and_consume(&mut st, mon - 1, &p).allowed);
        assert!(check_and_consume(&mut st, mon - 1, &p).allowed);
        assert_eq!(check_and_consume(&mut st, mon - 1, &p).retry_after_ms, 1);
        let d = check_and_consume(&mut st, mon, &p);
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_ms), (1, WEEK_MS));
        assert_eq!(p.policy(mon), (2, 7 * 86_400));
        // A state of a month kept across a whole month is dropped.
        let p = sliding(1, MONTH_MS);
        let mut st = State::EMPTY;
        assert!(check_and_consume(&mut st, at(2026, 1, 31), &p).allowed);
        assert!(check_and_consume(&mut st, at(2026, 3, 1), &p).allowed);
    }

    #[test]
    fn cost_consumes_units() {
        use crate::ratelimit::calendar::MONTH_MS;
        let p = sliding(10, 60_000).with_cost(4);
        let mut st = State::EMPTY;
        let t = 600_000;
        let d = check_and_consume(&mut st, t, &p);
        assert_eq!((d.allowed, d.remaining), (true, 6));
        let d = check_and_consume(&mut st, t, &p);
        assert_eq!((d.allowed, d.remaining), (true, 2));
        let before = st;
        let d = check_and_consume(&mut st, t + 1, &p);
        assert_eq!((d.allowed, d.remaining), (false, 2));
        assert_eq!(st, before, "a rejection consumes nothing");
        // Four units are back once the eight counted are a period old.
        assert_eq!(d.retry_after_ms, 60_000 - 1);
        // Two still fit.
        let two = p.with_cost(2);
        let d = check_and_consume(&mut st, t + 1, &two);
        assert_eq!((d.allowed, d.remaining), (true, 0));
        refund(&mut st, t + 2, &two);
        assert_eq!(peek(&st, t + 2, &sliding(10, 60_000)).remaining, 1);
        // A cost above the limit never fits.
        let d = check_and_consume(&mut State::default(), t, &p.with_cost(11));
        assert!(!d.allowed);
        assert!(check_and_consume(&mut State::default(), t, &p.with_cost(10)).allowed);
        // 0 counts as 1.
        assert_eq!(
            check_and_consume(&mut State::default(), t, &p.with_cost(0)).remaining,
            9
        );
        // Calendar windows count units the same way.
        let m = sliding(10, MONTH_MS).with_cost(3);
        let mut st = State::EMPTY;
        let n = (0..5)
            .filter(|_| check_and_consume(&mut st, t, &m).allowed)
            .count();
        assert_eq!(n, 3);
        assert_eq!(peek(&st, t, &m.with_cost(1)).remaining, 0);
        // Token bucket: a cost takes that many emission intervals.
        let b = bucket(1, 1000, 4).with_cost(3);
        let mut st = State::EMPTY;
        let d = check_and_consume(&mut st, t, &b);
        assert_eq!((d.allowed, d.remaining), (true, 2));
        let d = check_and_consume(&mut st, t, &b);
        assert_eq!((d.allowed, d.retry_after_ms), (false, 1000));
        assert!(check_and_consume(&mut st, t, &b.with_cost(2)).allowed);
        refund(&mut st, t, &b.with_cost(2));
        assert_eq!(peek(&st, t, &b.with_cost(1)).remaining, 1);
        assert!(!check_and_consume(&mut State::default(), t, &b.with_cost(6)).allowed);
    }

    #[test]
    fn policy_is_the_rate() {
        assert_eq!(sliding(100, 60_000).policy(0), (100, 60));
        assert_eq!(sliding(5, 1000).policy(0), (5, 1));
        assert_eq!(bucket(2, 3_600_000, 0).policy(0), (1, 1800));
        assert_eq!(bucket(1, 3_600_000, 0).policy(0), (1, 3600));
        assert_eq!(bucket(3, 3_600_000, 2).policy(0), (3, 3600));
        assert_eq!(bucket(10, 3_600_000, 39).policy(0), (40, 14_400));
        assert_eq!(bucket(10, 1000, 0).policy(0), (10, 1));
        assert_eq!(bucket(3000, 1000, 100).policy(0), (3000, 1));
        assert_eq!(bucket(1, 86_400_000, 6).policy(0), (7, 7 * 86_400));
        // Extreme values neither panic nor overflow.
        let _ = bucket(u64::MAX, u64::MAX, u64::MAX).policy(0);
        let _ = bucket(0, 0, 0).policy(0);
    }

    #[test]
    fn sliding_basic_window() {
        let p = sliding(3, 1000);
        let mut st = State::EMPTY;
        let base = 10_000; // window-aligned
        let d = check_and_consume(&mut st, base, &p);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining, d.retry_after_ms), (3, 2, 0));
        assert_eq!(d.reset_ms, 1000); // a period after the last admission, nothing counts
        assert!(check_and_consume(&mut st, base + 1, &p).allowed);
        let d = check_and_consume(&mut st, base + 2, &p);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // Exhausted: the reset is when the next request fits (see below).
        assert_eq!(d.reset_ms, 1000);
        let before = st;
        let d = check_and_consume(&mut st, base + 3, &p);
        assert!(!d.allowed);
        assert_eq!(st, before, "rejection must not change the state");
        // By the weighted estimate one more would fit once the window rolls (base+1000, prev=3)
        // and 3*(1000-e)/1000 <= 2, i.e. e >= 334: 997 + 334 ms, more than a period. But all
        // three requests are a period old at base+2+1000: the wait is 999 ms.
        assert_eq!(d.retry_after_ms, 999);
        assert_eq!(d.reset_ms, 999);
        assert_eq!((d.retry_after_secs(), d.reset_secs()), (1, 1));
        assert!(!check_and_consume(&mut st, base + 1001, &p).allowed);
        let d = check_and_consume(&mut st, base + 1002, &p);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
        // Three at the end of a window: the weighted estimate frees one sooner than a period.
        let mut st = State::EMPTY;
        for t in [base + 900, base + 901, base + 902] {
            assert!(check_and_consume(&mut st, t, &p).allowed);
        }
        let d = check_and_consume(&mut st, base + 903, &p);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 97 + 334);
        assert!(!check_and_consume(&mut st, base + 1333, &p).allowed);
        let d = check_and_consume(&mut st, base + 1334, &p);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // Two whole windows later everything has expired.
        let d = check_and_consume(&mut st, base + 3000, &p);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn sliding_retry_after_is_exact() {
        // For random states, retry_after is the first millisecond at which a request fits.
        let mut rng = Rng(7);
        for _ in 0..3000 {
            let p = sliding(1 + rng.below(20), 1 + rng.below(5000));
            let mut st = State::EMPTY;
            let mut now = rng.below(1 << 40);
            for _ in 0..rng.below(60) {
                now += rng.below(p.period_ms / 4 + 1);
                check_and_consume(&mut st, now, &p);
            }
            let d = peek(&st, now, &p);
            if d.allowed {
                continue;
            }
            let w = d.retry_after_ms;
            assert!(w >= 1);
            assert!(peek(&st, now + w, &p).allowed, "{p:?} {st:?} {now} {w}");
            assert!(
                !peek(&st, now + w - 1, &p).allowed,
                "{p:?} {st:?} {now} {w}"
            );
        }
    }

    #[test]
    fn sliding_remaining_and_reset_are_consistent() {
        // `remaining` further requests at the same instant are admitted, and no more; with
        // `remaining` 0, `reset_ms` is when the next one fits; otherwise the full limit is back
        // after `reset_ms`, and not a millisecond sooner.
        let mut rng = Rng(99);
        for _ in 0..2000 {
            let p = sliding(1 + rng.below(30), 1 + rng.below(3000));
            let mut st = State::EMPTY;
            let mut now = rng.below(1 << 30);
            for _ in 0..rng.below(40) {
                now += rng.below(p.period_ms / 3 + 1);
                check_and_consume(&mut st, now, &p);
            }
            let d = check_and_consume(&mut st, now, &p);
            let mut probe = st;
            for _ in 0..d.remaining {
                assert!(check_and_consume(&mut probe, now, &p).allowed);
            }
            assert!(!check_and_consume(&mut probe, now, &p).allowed);
            if d.remaining == 0 {
                assert!(peek(&st, now + d.reset_ms, &p).allowed, "{p:?} {d:?}");
                assert!(!peek(&st, now + d.reset_ms - 1, &p).allowed, "{p:?} {d:?}");
            } else {
                let full = peek(&st, now + d.reset_ms, &p);
                assert_eq!(full.remaining + 1, p.count, "{p:?} {d:?}");
                let before = peek(&st, now + d.reset_ms - 1, &p);
                assert!(before.remaining + 1 < p.count, "{p:?} {d:?}");
            }
            assert!(d.reset_ms <= p.period_ms, "{p:?} {d:?}");
        }
    }

    /// What a client is told, against when it is actually admitted, for both algorithms and
    /// many rates, histories and instants. The invariant, with `R` the `Retry-After` value
    /// (`retry_after_ms` rounded up to whole seconds, at least 1) of a request rejected at
    /// `now` (ms), and no other request of the key admitted meanwhile:
    ///
    /// * the first millisecond at which a request is admitted is exactly `now + retry_after_ms`,
    ///   so one sent `R` seconds later (or any time after) is admitted, and one sent `R - 1`
    ///   seconds later is not (`1000 (R - 1) < retry_after_ms <= 1000 R`);
    /// * `RateLimit: ...;t=` and `X-RateLimit-Reset` (`reset_secs`) say the same `R`;
    /// * the wait is at most one period of the rate (sliding window) or one emission interval
    ///   (token bucket): a client is never told to wait longer than the window it is limited in.
    ///
    /// The same holds for an admitted request that used up the quota (`remaining` 0): its
    /// `reset_ms` is when the next request fits.
    #[test]
    fn retry_after_is_when_the_next_request_is_admitted() {
        let periods = [1000, 60_000, 3_600_000, 86_400_000];
        let mut rng = Rng(0xC0FFEE);
        let mut rejections = 0;
        for round in 0..20_000 {
            let period = if rng.below(4) == 0 {
                1 + rng.below(100_000)
            } else {
                periods[rng.below(4) as usize]
            };
            let p = if round % 2 == 0 {
                sliding(1 + rng.below(100), period)
            } else {
                bucket(1 + rng.below(100), period, rng.below(10))
            };
            let mut st = State::EMPTY;
            let mut now = rng.below(1 << 41);
            // Bursts at one instant, gaps of up to a period: exhausted states of every shape.
            for _ in 0..rng.below(3 * p.count + 3) {
                now += match rng.below(3) {
                    0 => 0,
                    1 => rng.below(period / p.count + 1),
                    _ => rng.below(period),
                };
                check_and_consume(&mut st, now, &p);
            }
            let d = check_and_consume(&mut st, now, &p);
            if d.remaining > 0 {
                continue;
            }
            let wait = if d.allowed {
                d.reset_ms
            } else {
                rejections += 1;
                assert_eq!(d.reset_ms, d.retry_after_ms, "{p:?} {d:?}");
                assert_eq!(d.reset_secs(), d.retry_after_secs(), "{p:?} {d:?}");
                d.retry_after_ms
            };
            let secs = wait.div_ceil(1000).max(1);
            assert!(wait >= 1, "{p:?} {d:?}");
            assert!(
                peek(&st, now + wait, &p).allowed,
                "{p:?} {st:?} {now} {d:?}"
            );
            assert!(
                !peek(&st, now + wait - 1, &p).allowed,
                "{p:?} {st:?} {now} {d:?}"
            );
            assert!(peek(&st, now + 1000 * secs, &p).allowed, "{p:?} {d:?}");
            if secs >= 2 {
                assert!(
                    !peek(&st, now + 1000 * (secs - 1), &p).allowed,
                    "{p:?} {d:?}"
                );
            }
            let most = match p.algorithm {
                Algorithm::Sliding => period,
                Algorithm::TokenBucket => p.gcra().0.div_ceil(NS_PER_MS),
            };
            assert!(wait <= most, "{p:?} {d:?}: waits more than one window");
        }
        assert!(rejections > 1000, "only {rejections} rejections checked");
    }

    /// Simulates random arrivals and checks the derived bounds: at most L per fixed window,
    /// and at most L + floor(L*d/P) <= 2L-1 in any sliding window of length P.
    #[test]
    fn sliding_window_bound_by_simulation() {
        let mut rng = Rng(0x1234_5678);
        let mut worst_ratio: f64 = 0.0;
        for round in 0..300 {
            let limit = 1 + rng.below(50);
            let period = 100 + rng.below(2000);
            let p = sliding(limit, period);
            let mut st = State::EMPTY;
            let start = period * (1 + rng.below(1000));
            let mut now = start;
            let mut admitted = Vec::new();
            // Mix of patterns: uniform, bursty (runs at one instant), end-of-window bursts.
            for _ in 0..4000 {
                now += match round % 3 {
                    0 => rng.below(2 * period / limit + 1),
                    1 => {
                        if rng.below(10) == 0 {
                            rng.below(period)
                        } else {
                            0
                        }
                    }
                    _ => {
                        let to_end = period - 1 - now % period;
                        if rng.below(4) == 0 {
                            to_end
                        } else {
                            rng.below(period / 8 + 1)
                        }
                    }
                };
                if check_and_consume(&mut st, now, &p).allowed {
                    admitted.push(now);
                }
            }
            // Fixed windows.
            let mut i = 0;
            while i < admitted.len() {
                let w = admitted[i] / period;
                let n = admitted[i..]
                    .iter()
                    .take_while(|&&t| t / period == w)
                    .count();
                assert!(n as u64 <= limit, "fixed window over limit");
                i += n;
            }
            // Sliding windows [t, t+P) starting at every admission time (the maximum over all
            // t is attained at one of them).
            let mut j = 0;
            for (i, &t) in admitted.iter().enumerate() {
                while j < admitted.len() && admitted[j] < t + period {
                    j += 1;
                }
                let n = (j - i) as u64;
                let d = t % period;
                assert!(
                    n <= limit + limit * d / period,
                    "n={n} L={limit} d={d} P={period}"
                );
                assert!(n < 2 * limit.max(1), "n={n} L={limit}");
                worst_ratio = worst_ratio.max(n as f64 / limit as f64);
            }
        }
        eprintln!(
            "sliding window: worst count/limit over any window of length P: {worst_ratio:.3}"
        );
        assert!(
            worst_ratio > 1.0,
            "the adversarial pattern should exceed L somewhere"
        );
    }

    /// The bound is essentially tight: L requests at the end of a window, then steady traffic.
    #[test]
    fn sliding_window_worst_case_construction() {
        let (limit, period) = (100u64, 1000u64);
        let p = sliding(limit, period);
        let mut st = State::EMPTY;
        let mut admitted = 0;
        for _ in 0..limit {
            admitted += check_and_consume(&mut st, 999, &p).allowed as u64;
        }
        for t in 1000..1999 {
            admitted += check_and_consume(&mut st, t, &p).allowed as u64;
        }
        // Everything in [999, 1999) lies in one sliding window of length P.
        assert_eq!(admitted, 2 * limit - 1);
    }

    #[test]
    fn gcra_burst_and_spacing() {
        let p = bucket(10, 1000, 4); // T = 100 ms, 5 at once
        let mut st = State::EMPTY;
        for i in 0..5 {
            let d = check_and_consume(&mut st, 1000, &p);
            assert!(d.allowed);
            assert_eq!(d.limit, 5);
            assert_eq!(d.remaining, 4 - i);
        }
        let before = st;
        let d = check_and_consume(&mut st, 1000, &p);
        assert!(!d.allowed);
        assert_eq!(st, before);
        assert_eq!(d.retry_after_ms, 100);
        assert_eq!(
            d.reset_ms, 100,
            "exhausted: the reset is when the next one fits"
        );
        assert!(!check_and_consume(&mut st, 1099, &p).allowed);
        assert!(check_and_consume(&mut st, 1100, &p).allowed);
        // Full again after the backlog drains.
        let d = peek(&st, 1100 + 500, &p);
        assert_eq!(d.remaining, 4);
    }

    #[test]
    fn gcra_high_rates_are_exact() {
        for rate in [1000u64, 3000, 7000, 10_000, 1_000_000] {
            let p = bucket(rate, 1000, 0);
            let mut st = State::EMPTY;
            // Offer 2x the rate for 10 s, 1 ms apart in batches.
            let per_ms = 2 * rate / 1000 + 1;
            let mut ok = 0u64;
            for ms in 0..10_000u64 {
                for _ in 0..per_ms {
                    ok += check_and_consume(&mut st, 1_000_000 + ms, &p).allowed as u64;
                }
            }
            let expected = rate * 10;
            let err = (ok as f64 - expected as f64).abs() / expected as f64;
            assert!(
                err < 0.001,
                "rate {rate}: admitted {ok}, expected ~{expected}"
            );
            assert!(
                ok <= expected + p.limit(),
                "rate {rate}: over-admitted {ok}"
            );
        }
    }

    #[test]
    fn gcra_never_exceeds_its_bound() {
        // In any interval of length t: at most burst + 1 + floor(t / T) admitted.
        let mut rng = Rng(42);
        for _ in 0..200 {
            let p = bucket(1 + rng.below(100), 1000, rng.below(10));
            let (tns, tau) = p.gcra();
            let mut st = State::EMPTY;
            let mut now = 5_000_000;
            let mut admitted = Vec::new();
            for _ in 0..2000 {
                now += rng.below(30);
                if check_and_consume(&mut st, now, &p).allowed {
                    admitted.push(now);
                }
            }
            for i in 0..admitted.len() {
                for j in i..admitted.len().min(i + 300) {
                    let span_ns = (admitted[j] - admitted[i]) * NS_PER_MS;
                    let n = (j - i + 1) as u64;
                    assert!(n <= 1 + (span_ns + tau) / tns);
                }
            }
        }
    }

    #[test]
    fn refund_undoes_consume() {
        let mut rng = Rng(5);
        for _ in 0..2000 {
            let p = if rng.below(2) == 0 {
                sliding(1 + rng.below(10), 1 + rng.below(2000))
            } else {
                bucket(1 + rng.below(10), 1 + rng.below(2000), rng.below(5))
            };
            let mut st = State::EMPTY;
            let mut now = rng.below(1 << 30);
            for _ in 0..rng.below(20) {
                now += rng.below(200);
                check_and_consume(&mut st, now, &p);
            }
            let before = peek(&st, now, &p);
            let mut after = st;
            if check_and_consume(&mut after, now, &p).allowed {
                refund(&mut after, now, &p);
                assert_eq!(peek(&after, now, &p), before, "{p:?}");
            }
        }
        // Refunding an empty state or the other algorithm's state does nothing harmful.
        let mut st = State::EMPTY;
        refund(&mut st, 5, &sliding(1, 1000));
        refund(&mut st, 5, &bucket(1, 1000, 0));
        assert!(check_and_consume(&mut st, 5, &sliding(1, 1000)).allowed);
    }

    #[test]
    fn clock_going_backwards_is_tolerated() {
        let p = sliding(2, 1000);
        let mut st = State::EMPTY;
        assert!(check_and_consume(&mut st, 5500, &p).allowed);
        // 100 ms back, across the window start: treated as the window start.
        assert!(check_and_consume(&mut st, 4900, &p).allowed);
        assert!(!check_and_consume(&mut st, 0, &p).allowed);
        let g = bucket(10, 1000, 0);
        let mut st = State::EMPTY;
        assert!(check_and_consume(&mut st, 5000, &g).allowed);
        let d = check_and_consume(&mut st, 4000, &g);
        assert!(!d.allowed);
        assert!(d.retry_after_ms <= 100, "backlog clamped to one interval");
    }

    #[test]
    fn parameter_changes_are_clamped() {
        // GCRA at 1r/d leaves a day of backlog; switching to 100r/s waits at most one interval.
        let mut st = State::EMPTY;
        assert!(check_and_consume(&mut st, 1000, &bucket(1, 86_400_000, 0)).allowed);
        let fast = bucket(100, 1000, 0);
        let d = check_and_consume(&mut st, 1001, &fast);
        assert!(!d.allowed);
        assert!(d.retry_after_ms <= 10);
        assert!(check_and_consume(&mut st, 1011, &fast).allowed);
        // Sliding: a lower limit rejects until the counts age out, then works normally.
        let mut st = State::EMPTY;
        for _ in 0..10 {
            check_and_consume(&mut st, 0, &sliding(10, 1000));
        }
        assert!(!check_and_consume(&mut st, 10, &sliding(5, 1000)).allowed);
        assert!(check_and_consume(&mut st, 2000, &sliding(5, 1000)).allowed);
        // Switching algorithm restarts the state.
        assert!(check_and_consume(&mut st, 2001, &bucket(1, 1000, 0)).allowed);
        assert_eq!(st.algorithm(), Some(Algorithm::TokenBucket));
        // Degenerate parameters are clamped, not trusted.
        for p in [
            sliding(0, 0),
            sliding(u64::MAX, u64::MAX),
            bucket(0, 0, u64::MAX),
            bucket(u64::MAX, u64::MAX, u64::MAX),
        ] {
            let mut st = State::EMPTY;
            for now in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX, 3] {
                let d = check_and_consume(&mut st, now, &p);
                let _ = (d.reset_secs(), d.retry_after_secs());
                refund(&mut st, now, &p);
            }
        }
    }

    #[test]
    fn garbage_states_never_panic() {
        let mut rng = Rng(31337);
        for _ in 0..100_000 {
            let mut bytes = [0u8; 24];
            for b in bytes.iter_mut() {
                *b = rng.next() as u8;
            }
            let mut st: State = bytemuck::cast(bytes);
            if rng.below(2) == 0 {
                st.kind = rng.below(3) as u32;
            }
            let p = Params {
                algorithm: if rng.below(2) == 0 {
                    Algorithm::Sliding
                } else {
                    Algorithm::TokenBucket
                },
                count: rng.next() >> rng.below(64),
                period_ms: rng.next() >> rng.below(64),
                burst: rng.next() >> rng.below(64),
                offset_ms: (rng.next() >> rng.below(64)) as i64,
                cost: rng.next() >> rng.below(64),
            };
            let now = rng.next() >> rng.below(64);
            let _ = st.is_idle(now);
            let d = check_and_consume(&mut st, now, &p);
            assert!(d.remaining <= d.limit);
            assert_eq!(d.allowed, d.retry_after_ms == 0);
            refund(&mut st, now, &p);
        }
    }

    #[test]
    fn idle_detection() {
        let p = sliding(5, 1000);
        let mut st = State::EMPTY;
        assert!(st.is_idle(0));
        check_and_consume(&mut st, 1500, &p);
        assert!(!st.is_idle(2499));
        assert!(
            st.is_idle(2500),
            "a period after the last admission nothing counts"
        );
        let g = bucket(10, 1000, 3);
        let mut st = State::EMPTY;
        check_and_consume(&mut st, 1000, &g);
        assert!(!st.is_idle(1099));
        assert!(st.is_idle(1100));
    }

    #[test]
    fn decision_seconds() {
        let d = Decision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset_ms: 1001,
            retry_after_ms: 1,
        };
        assert_eq!((d.reset_secs(), d.retry_after_secs()), (2, 1));
        assert_eq!(
            Algorithm::parse(b"token_bucket"),
            Some(Algorithm::TokenBucket)
        );
        assert_eq!(Algorithm::parse(b"sliding"), Some(Algorithm::Sliding));
        assert_eq!(Algorithm::parse(b"leaky"), None);
    }
}

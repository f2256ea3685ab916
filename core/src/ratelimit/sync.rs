//! Cluster-wide sliding windows: the per-key arithmetic of a zone whose counts are shared
//! through Redis (`rate_limit_zone ... sync=redis://...`).
//!
//! Decisions stay local. Next to each key's [`State`] a synced zone keeps a [`SyncRec`]: for
//! the current and the previous window, the cluster total as last pulled from Redis
//! (`remote`), how many of this node's admissions Redis has acknowledged (`acked`), how many
//! are being pushed right now (`inflight`) and how many are not pushed yet (`pending`). The
//! other nodes' count of a window is `remote - acked` (saturating); a request is admitted iff
//! the sliding-window estimate over `local + others` fits the limit, so the limit is the
//! cluster's quota.
//!
//! A sync exchange per key ([`SyncRec::claim`] then [`SyncRec::apply`] or
//! [`SyncRec::unclaim`]): the pending counts move to `inflight`, are added in Redis to the
//! window's counter (`INCRBY` + `PEXPIRE`, or a plain `GET` when there is nothing to push), and
//! the totals Redis answers become the new `remote` values (never lowered within a window:
//! totals only grow, and replies may arrive out of order). A failed exchange puts the claimed
//! counts back to `pending`, to be pushed by a later one.
//!
//! Windows are aligned on the wall clock (multiples of the period, shifted by the zone's UTC
//! offset; calendar weeks and months, see [`super::calendar`]), so every node configured alike
//! names the same window the same way: the Redis key is
//! `gw:{zone}:<key id>:<window start ms>` ([`redis_key`]), where the key id is the first 128
//! bits of SHA-256 of the key ([`cluster_id`]), the same on every node (the table's own hash is
//! seeded per node).
//!
//! # Accuracy
//!
//! A node learns about another node's admission at most `2 * (I + d)` late (`I` the sync
//! interval, `d` the time of one exchange, at most `sync_timeout`): the other node pushes it at
//! its next exchange, this node pulls it at its own next one. Within that lag each of the `N`
//! nodes may admit what it still believes is free, so in any window the cluster admits at most
//! about `L + (N - 1) * min(L, r * 2 * (I + d))` where `r` is the rate at which one node
//! receives requests of that key. With `I = 100ms` and a client sending 100 r/s to each of
//! two nodes, that is at most about `L + 20`; when the two exchanges happen to be in phase the
//! lag is closer to `I + d`. With `N = 1` the zone behaves exactly as a local one. The simulation
//! test `cluster_over_admission_is_bounded` checks the bound with random arrivals.
//!
//! # Persistence
//!
//! A node that has never pulled a key (new to it, or its memory lost by a restart) does not know
//! the cluster's count of it. In a `persistent` zone ([`Persist`]) it admits at most an
//! allowance of `A` units of the key until an exchange has returned the key's totals (the key
//! is claimed even with nothing to push, [`SyncRec::pulled`]): a restarted node over-admits at
//! most `A` units per key beyond the lag bound above, and then continues the window's count.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use bytemuck::{Pod, Zeroable};

use super::algo::{refund, sliding_decide, sliding_window, Algorithm, Decision, Params, State};
use super::calendar::Windows;

/// Counts of one window as seen by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Counts {
    /// Cluster total as last pulled from Redis (includes this node's acknowledged pushes).
    pub remote: u32,
    /// This node's admissions acknowledged by Redis.
    pub acked: u32,
    /// This node's admissions being pushed.
    pub inflight: u32,
    /// This node's admissions not pushed yet.
    pub pending: u32,
}

impl Counts {
    /// The other nodes' count, as far as this node knows.
    #[must_use]
    pub fn others(&self) -> u64 {
        u64::from(self.remote.saturating_sub(self.acked))
    }
}

const FLAG_ID: u32 = 1;
/// A sync exchange for this key has returned Redis's totals since the record was reset.
const FLAG_PULLED: u32 = 2;
/// The previous window's total was read after every node had pushed to it (see
/// [`SyncRec::claim_settled`]): it is not read again.
const FLAG_PREV_FINAL: u32 = 4;

/// The sync state of one key: 64 bytes of plain data kept beside its slot in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct SyncRec {
    /// Cluster-wide key id ([`cluster_id`]).
    pub id: [u64; 2],
    /// Start (ms) of the window `cur` belongs to; `prev` belongs to `win - period`.
    pub win: u64,
    /// Current window.
    pub cur: Counts,
    /// Previous window.
    pub prev: Counts,
    /// Period (ms) of the windows.
    pub period: u32,
    /// Bit 0: `id` is set; bit 1: Redis's totals were pulled since (see [`SyncRec::pulled`]).
    pub flags: u32,
}

const _: () = assert!(std::mem::size_of::<SyncRec>() == 64);
const _: () = assert!(std::mem::align_of::<SyncRec>() == 8);
// SAFETY: `repr(C)`, integer fields only (Counts is four u32), no padding:
// 16 + 8 + 16 + 16 + 4 + 4 = 64 = size_of (asserted above); any bit pattern is valid.
unsafe impl Zeroable for SyncRec {}
// SAFETY: as above; `Copy + 'static`.
unsafe impl Pod for SyncRec {}
// SAFETY: four u32, no padding, any bit pattern valid.
unsafe impl Zeroable for Counts {}
// SAFETY: as above; `Copy + 'static`.
unsafe impl Pod for Counts {}

/// The cluster-wide id of a key: the first 128 bits of SHA-256 of its bytes.
#[must_use]
pub fn cluster_id(key: &[u8]) -> [u64; 2] {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    for (i, byte) in d.as_ref().iter().take(16).enumerate() {
        if i < 8 {
            if let Some(x) = a.get_mut(i) {
                *x = *byte;
            }
        } else if let Some(x) = b.get_mut(i.wrapping_sub(8)) {
            *x = *byte;
        }
    }
    [u64::from_be_bytes(a), u64::from_be_bytes(b)]
}

/// The Redis key of a window: `gw:{zone}:<32 hex digits>:<window start ms>`. The braces make
/// the zone a Redis Cluster hash tag (all keys of a zone on one shard, one pipeline).
#[must_use]
pub fn redis_key(zone: &str, id: [u64; 2], win: u64) -> String {
    let mut out = Vec::with_capacity(zone.len().saturating_add(60));
    redis_key_into(&mut out, zone, id, win);
    String::from_utf8(out).unwrap_or_default()
}

/// [`redis_key`] appended to `out` (no allocation beyond `out`'s growth).
pub fn redis_key_into(out: &mut Vec<u8>, zone: &str, id: [u64; 2], win: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"gw:{");
    out.extend_from_slice(zone.as_bytes());
    out.extend_from_slice(b"}:");
    for half in id {
        for shift in (0..16u32).rev() {
            let nibble = (half >> shift.saturating_mul(4)) & 0xf;
            out.push(HEX.get(nibble as usize).copied().unwrap_or(b'0'));
        }
    }
    out.push(b':');
    out.extend_from_slice(crate::resp::Digits::new(win).as_bytes());
}

/// What one sync exchange pushes for a key ([`SyncRec::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The current window's start when claimed.
    pub win: u64,
    /// Period (ms).
    pub period: u64,
    /// The zone's UTC offset (ms): with `period`, where the windows lie.
    pub offset_ms: i64,
    /// Start of the window before `win`.
    pub prev_start: u64,
    /// Admissions pushed to window `win`.
    pub cur: u32,
    /// Admissions pushed to window `win - period`.
    pub prev: u32,
    /// Whether the previous window's total is to be read (when nothing is pushed to it).
    pub pull_prev: bool,
    /// Claimed late enough in the window that every node has pushed to the previous one.
    pub settled: bool,
}

impl Claim {
    /// The previous window's start (0 if the current one is the first).
    #[must_use]
    pub fn prev_win(&self) -> u64 {
        self.prev_start
    }

    fn windows(&self) -> Windows {
        Windows {
            period_ms: self.period,
            offset_ms: self.offset_ms,
        }
    }
}

impl SyncRec {
    /// Whether the cluster id is set.
    #[must_use]
    pub fn has_id(&self) -> bool {
        self.flags & FLAG_ID != 0
    }

    /// Whether an exchange has returned Redis's totals for this key since this node started
    /// counting it (a `persistent` zone admits only a small allowance before that).
    #[must_use]
    pub fn pulled(&self) -> bool {
        self.flags & FLAG_PULLED != 0
    }

    /// Resets the record for a new key.
    pub fn reset_for(&mut self, id: [u64; 2]) {
        *self = SyncRec {
            id,
            flags: FLAG_ID,
            ..SyncRec::default()
        };
    }

    /// Brings the record forward to the window starting at `win` (the one before it starts at
    /// `prev_start`).
    pub fn roll(&mut self, win: u64, prev_start: u64, period: u64) {
        let period32 = u32::try_from(period).unwrap_or(u32::MAX);
        if self.period != period32 {
            let (id, flags) = (self.id, self.flags & !FLAG_PREV_FINAL);
            *self = SyncRec {
                id,
                flags,
                win,
                period: period32,
                ..SyncRec::default()
            };
            return;
        }
        if win <= self.win {
            return; // same window, or a clock that went back: stand still
        }
        if prev_start == self.win {
            self.prev = self.cur;
        } else {
            self.prev = Counts::default();
        }
        self.cur = Counts::default();
        self.win = win;
        self.flags &= !FLAG_PREV_FINAL;
    }

    /// Whether this record has counts to push.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        self.cur.pending > 0 || self.prev.pending > 0
    }

    /// Starts an exchange at `now_ms` on windows `windows`: the pending counts become in
    /// flight.
    pub fn claim(&mut self, now_ms: u64, windows: &Windows) -> Claim {
        self.claim_settled(now_ms, windows, u64::MAX)
    }

    /// [`SyncRec::claim`], knowing that every node pushes what it admitted in a window within
    /// `settle_ms` of the window's end (two sync intervals plus the exchange timeout): once the
    /// previous window's total has been read after that, it is final and is not read again
    /// for the rest of the window (one `GET` less per key and exchange, most of the time). A
    /// node that could not reach Redis for longer pushes its share of that window later than
    /// this; the others then under-count it in the previous window's (decreasing) share of
    /// the sliding estimate until the window ends.
    pub fn claim_settled(&mut self, now_ms: u64, windows: &Windows, settle_ms: u64) -> Claim {
        let period = windows.period_ms.max(1);
        let windows = Windows {
            period_ms: period,
            offset_ms: windows.offset_ms,
        };
        let win = windows.start(now_ms);
        self.roll(win, windows.prev_start(win), period);
        let c = Claim {
            win: self.win,
            period,
            offset_ms: windows.offset_ms,
            prev_start: windows.prev_start(self.win),
            cur: self.cur.pending,
            prev: self.prev.pending,
            pull_prev: self.flags & FLAG_PREV_FINAL == 0,
            settled: now_ms >= self.win.saturating_add(settle_ms),
        };
        self.cur.inflight = self.cur.inflight.saturating_add(c.cur);
        self.cur.pending = 0;
        self.prev.inflight = self.prev.inflight.saturating_add(c.prev);
        self.prev.pending = 0;
        c
    }

    /// The counts of window `w` if it is still the current or the previous one.
    fn window_mut(&mut self, w: u64, windows: &Windows) -> Option<&mut Counts> {
        if u64::from(self.period) != windows.period_ms {
            None
        } else if w == self.win {
            Some(&mut self.cur)
        } else if w == windows.prev_start(self.win) {
            Some(&mut self.prev)
        } else {
            None
        }
    }

    /// Ends an exchange: Redis answered `cur_total` for the claim's window and `prev_total`
    /// for the one before (`None` when not asked).
    pub fn apply(&mut self, c: &Claim, cur_total: u64, prev_total: Option<u64>) {
        self.finish(c, Part::Done(Some(cur_total)), Part::Done(prev_total));
    }

    /// Ends a failed exchange: the claimed counts are pending again.
    pub fn unclaim(&mut self, c: &Claim) {
        self.finish(c, Part::Back, Part::Back);
    }

    /// Ends an exchange window by window (a cluster may redirect one window's command and not
    /// the other's). The key counts as pulled when the current window's total was read.
    pub fn finish(&mut self, c: &Claim, cur: Part, prev: Part) {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        if matches!(cur, Part::Done(Some(_))) {
            self.flags |= FLAG_PULLED;
        }
        if c.settled && c.win == self.win && matches!(prev, Part::Done(Some(_))) {
            self.flags |= FLAG_PREV_FINAL;
        }
        for (w, n, part) in [(c.win, c.cur, cur), (c.prev_win(), c.prev, prev)] {
            let Some(counts) = self.window_mut(w, &c.windows()) else {
                continue;
            };
            counts.inflight = counts.inflight.saturating_sub(n);
            match part {
                Part::Done(total) => {
                    counts.acked = counts.acked.saturating_add(n);
                    if let Some(t) = total {
                        counts.remote = counts.remote.max(clamp(t));
                    }
                    // Redis's total includes every acknowledged push of ours.
                    counts.remote = counts.remote.max(counts.acked);
                }
                Part::Back => counts.pending = counts.pending.saturating_add(n),
            }
        }
    }
}

/// How one window of a claim ended ([`SyncRec::finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The push (if any) reached Redis; its total, if it was read.
    Done(Option<u64>),
    /// The push did not reach Redis: pending again.
    Back,
}

/// A `persistent` zone's rule for keys this node has not pulled from Redis yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persist {
    /// Units this node admits for such a key before the first exchange returns.
    pub allowance: u64,
    /// `Retry-After` (ms) of a request refused meanwhile (about one exchange).
    pub retry_ms: u64,
}

/// [`super::algo::check_and_consume`] for a key of a synced zone: the sliding window over this
/// node's counts plus the other nodes' as last pulled. An admitted request is counted locally
/// and as pending in `rec`. A token-bucket `params` (refused by configuration for synced zones)
/// falls back to the local algorithm.
///
/// With `persist` (a `persistent` zone), until an exchange has returned Redis's totals for the
/// key ([`SyncRec::pulled`]) this node admits at most `persist.allowance` units of it (counted
/// over its current and previous windows); more are refused with `Retry-After` of
/// `persist.retry_ms`. Nothing waits: the exchange that pulls the totals runs on its own.
pub fn check_and_consume_synced(
    st: &mut State,
    rec: &mut SyncRec,
    now_ms: u64,
    p: &Params,
    persist: Option<Persist>,
) -> Decision {
    if p.algorithm != Algorithm::Sliding {
        return super::algo::check_and_consume(st, now_ms, p);
    }
    let win = p.windows();
    let period = win.period_ms.max(1);
    let w = sliding_window(st, now_ms, &win);
    rec.roll(w.start, win.prev_start(w.start), period);
    if let Some(persist) = persist.filter(|_| !rec.pulled()) {
        let mine = w.prev.saturating_add(w.cur);
        if mine.saturating_add(p.cost()) > persist.allowance {
            let retry = persist.retry_ms.max(1);
            return Decision {
                allowed: false,
                limit: p.count(),
                remaining: 0,
                reset_ms: retry,
                retry_after_ms: retry,
            };
        }
    }
    let others = (rec.prev.others(), rec.cur.others());
    let d = sliding_decide(st, w, others, &win, p.count(), p.cost());
    if d.allowed {
        let cost = u32::try_from(p.cost()).unwrap_or(u32::MAX);
        rec.cur.pending = rec.cur.pending.saturating_add(cost);
    }
    d
}

/// [`refund`] for a synced key: also takes the request back from the pending count (if it
/// was pushed already, the cluster keeps counting it: the error is on the safe side).
pub fn refund_synced(st: &mut State, rec: &mut SyncRec, now_ms: u64, p: &Params) {
    refund(st, now_ms, p);
    if p.algorithm == Algorithm::Sliding {
        let cost = u32::try_from(p.cost()).unwrap_or(u32::MAX);
        rec.cur.pending = rec.cur.pending.saturating_sub(cost);
    }
}

/// A parsed `sync=` URL: `redis[s]://[[user]:password@]host[:port][/db]`, or, for the
/// high-availability deployments, `redis[s]-sentinel://[auth@]host[:port],.../master[/db]` and
/// `redis[s]-cluster://[auth@]host[:port],...` ([`Topology`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://` (or `rediss-sentinel://`, `rediss-cluster://`): the connections are TLS.
    pub tls: bool,
    /// How the server to write to is found.
    pub topology: Topology,
    /// The first server of the URL as `host:port` (the port defaults to 6379, 26379 for
    /// sentinels; an IPv6 address keeps its brackets).
    pub addr: String,
    /// Every server of the URL, as `addr` (one for `redis://`; sentinels or cluster seeds).
    pub seeds: Vec<String>,
    /// The first server's host alone (no port, no brackets): the default TLS name.
    pub host: String,
    /// The user part had no colon (`redis://word@host`): `word` is the password, or the user
    /// name when the password comes from elsewhere ([`RedisUrl::with_password`]).
    pub bare_auth: bool,
    /// ACL user name (`AUTH user password`), if any.
    pub user: Option<String>,
    /// Password (`AUTH password`), if any.
    pub password: Option<String>,
    /// Database number (`SELECT db`), 0 by default (always 0 in a cluster).
    pub db: u32,
}

/// How the Redis server that takes the writes is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// `redis://`: the one server named.
    Direct,
    /// `redis-sentinel://`: the servers named are sentinels; the master of this name is asked
    /// from them (`SENTINEL get-master-addr-by-name`) and checked with `ROLE`.
    Sentinel(String),
    /// `redis-cluster://`: the servers named are cluster nodes; the node that serves the zone's
    /// hash slot is found with `CLUSTER SLOTS` and followed on `MOVED`.
    Cluster,
}

impl RedisUrl {
    /// Sets the password given outside the URL (`password_file=`, `password_env=`): the URL may
    /// then name the user only (`redis://user@host`); a password in the URL too is an error.
    pub fn with_password(mut self, password: String) -> Result<RedisUrl, String> {
        if self.bare_auth {
            self.user = self.password.take();
        } else if self.password.is_some() {
            return Err("the URL has a password too".into());
        }
        self.password = Some(password);
        self.bare_auth = false;
        Ok(self)
    }
}

/// `host[:port]` with the default port, and the host alone (brackets of IPv6 removed).
fn host_port(hp: &str, default_port: u16) -> Result<(String, String), String> {
    if hp.is_empty() {
        return Err("no host".into());
    }
    let has_port = match hp.rfind(']') {
        Some(b) => hp.get(b..).is_some_and(|t| t.contains(':')),
        None => hp.contains(':'),
    };
    let addr = if has_port {
        let port = hp.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
        match port.parse::<u16>() {
            Ok(p) if p > 0 => hp.to_string(),
            _ => return Err(format!("bad port \"{port}\"")),
        }
    } else {
        format!("{hp}:{default_port}")
    };
    let host = match hp.rfind(']') {
        Some(_) => hp.trim_start_matches('[').split(']').next().unwrap_or(""),
        None => hp.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((addr, host.to_string()))
}

fn parse_db(d: &str) -> Result<u32, String> {
    if d.is_empty() {
        return Ok(0);
    }
    d.parse::<u32>()
        .map_err(|_| format!("bad database number \"{d}\""))
}

/// Parses a `sync=` URL (see [`RedisUrl`]).
pub fn parse_redis_url(s: &str) -> Result<RedisUrl, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("must start with \"redis://\" or \"rediss://\"")?;
    let (tls, kind) = match scheme {
        "redis" => (false, 0),
        "rediss" => (true, 0),
        "redis-sentinel" => (false, 1),
        "rediss-sentinel" => (true, 1),
        "redis-cluster" => (false, 2),
        "rediss-cluster" => (true, 2),
        _ => {
            return Err(
                "must start with \"redis://\", \"rediss://\", \"redis-sentinel://\" \
                        or \"redis-cluster://\""
                    .into(),
            )
        }
    };
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (hosts, path) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let default_port = if kind == 1 { 26379 } else { 6379 };
    let mut seeds = Vec::new();
    let mut first_host = String::new();
    for hp in hosts.split(',') {
        let (addr, host) = host_port(hp, default_port)?;
        if seeds.is_empty() {
            first_host = host;
        }
        seeds.push(addr);
    }
    if kind == 0 && seeds.len() > 1 {
        return Err(
            "one server only (several are for \"redis-sentinel://\" or \"redis-cluster://\")"
                .into(),
        );
    }
    if seeds.len() > 16 {
        return Err("at most 16 servers".into());
    }
    let (topology, db) = match kind {
        0 => (Topology::Direct, parse_db(path)?),
        1 => {
            let (master, db) = path.split_once('/').unwrap_or((path, ""));
            if master.is_empty() {
                return Err("the sentinel URL must name the master: .../name".into());
            }
            if !master
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(format!("bad master name \"{master}\""));
            }
            (Topology::Sentinel(master.to_string()), parse_db(db)?)
        }
        _ => {
            if parse_db(path)? != 0 {
                return Err("a Redis Cluster has database 0 only".into());
            }
            (Topology::Cluster, 0)
        }
    };
    let bare_auth = auth.is_some_and(|a| !a.is_empty() && !a.contains(':'));
    let (user, password) = match auth {
        None | Some("") => (None, None),
        Some(a) => match a.split_once(':') {
            Some(("", p)) => (None, Some(p.to_string())),
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (None, Some(a.to_string())),
        },
    };
    Ok(RedisUrl {
        tls,
        topology,
        addr: seeds.first().cloned().unwrap_or_default(),
        seeds,
        host: first_host,
        bare_auth,
        user,
        password,
        db,
    })
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
    use std::collections::HashMap;

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

    fn win(period_ms: u64) -> Windows {
        Windows {
            period_ms,
            offset_ms: 0,
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

    #[derive(Default)]
    struct Node {
        st: State,
        rec: SyncRec,
    }

    /// One exchange against a fake Redis (a map from window to total), as the glue does it.
    fn exchange(n: &mut Node, redis: &mut HashMap<u64, u64>, now: u64, period: u64) {
        let c = n.rec.claim(now, &win(period));
        let cur = redis.entry(c.win).or_insert(0);
        *cur += u64::from(c.cur);
        let cur = *cur;
        let prev = if c.win >= c.period {
            let p = redis.entry(c.prev_win()).or_insert(0);
            *p += u64::from(c.prev);
            Some(*p)
        } else {
            None
        };
        n.rec.apply(&c, cur, prev);
    }

    #[test]
    fn persistent_keys_wait_for_the_cluster_total() {
        use crate::ratelimit::calendar::MONTH_MS;
        // A node restarted mid-month with empty memory; Redis holds 95 of the month's 100.
        let p = sliding(100, MONTH_MS);
        let now = 1_764_547_200_000 + 86_400_000; // 2025-12-02
        let w = p.windows();
        let mut redis = HashMap::new();
        redis.insert(w.start(now), 95u64);
        let persist = Some(Persist {
            allowance: 3,
            retry_ms: 100,
        });
        let mut n = Node::default();
        n.rec.reset_for([1, 2]);
        let mut admitted = 0;
        for _ in 0..10 {
            let d = check_and_consume_synced(&mut n.st, &mut n.rec, now, &p, persist);
            if d.allowed {
                admitted += 1;
            } else {
                assert_eq!(d.retry_after_ms, 100);
            }
        }
        assert_eq!(
            admitted, 3,
            "the allowance before the first exchange returns"
        );
        // The first exchange pushes the 3 and pulls the total: 98.
        exchange(&mut n, &mut redis, now + 50, MONTH_MS);
        assert!(n.rec.pulled());
        let mut more = 0;
        for _ in 0..10 {
            let d = check_and_consume_synced(&mut n.st, &mut n.rec, now + 60, &p, persist);
            more += u32::from(d.allowed);
        }
        assert_eq!(more, 2, "the month continues at 98");
        exchange(&mut n, &mut redis, now + 100, MONTH_MS);
        assert_eq!(redis[&w.start(now)], 100);
        // Without `persistent`, a fresh node admits up to the whole limit before it knows.
        let mut fresh = Node::default();
        fresh.rec.reset_for([1, 2]);
        let n = (0..200)
            .filter(|_| {
                check_and_consume_synced(&mut fresh.st, &mut fresh.rec, now, &p, None).allowed
            })
            .count();
        assert_eq!(n, 100);
        // A cost counts in the allowance and in Redis.
        let mut c = Node::default();
        c.rec.reset_for([3, 4]);
        let p4 = p.with_cost(2);
        assert!(check_and_consume_synced(&mut c.st, &mut c.rec, now, &p4, persist).allowed);
        assert!(!check_and_consume_synced(&mut c.st, &mut c.rec, now, &p4, persist).allowed);
        let mut r2 = HashMap::new();
        exchange(&mut c, &mut r2, now + 10, MONTH_MS);
        assert_eq!(r2[&w.start(now)], 2);
    }

    #[test]
    fn redis_urls() {
        let u = parse_redis_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (u.addr.as_str(), u.db, u.password),
            ("127.0.0.1:6380", 2, None)
        );
        let u = parse_redis_url("redis://:s3cret@redis.internal").unwrap();
        assert_eq!(u.addr, "redis.internal:6379");
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        let u = parse_redis_url("redis://gw:pw@[::1]:7000/").unwrap();
        assert_eq!(
            (u.addr.as_str(), u.user.as_deref()),
            ("[::1]:7000", Some("gw"))
        );
        assert_eq!(parse_redis_url("redis://[::1]").unwrap().addr, "[::1]:6379");
        for bad in [
            "http://x",
            "redis://",
            "redis://h:0",
            "redis://h:x",
            "redis://h/x",
            "rediss://h:0",
        ] {
            assert!(parse_redis_url(bad).is_err(), "{bad}");
        }
        let u = parse_redis_url("rediss://redis.example:6380").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.addr.as_str(), u.host.as_str()),
            ("redis.example:6380", "redis.example")
        );
        assert_eq!(parse_redis_url("rediss://[::1]:7000").unwrap().host, "::1");
        assert!(!parse_redis_url("redis://h").unwrap().tls);
        assert!(parse_redis_url("redis://a,b").is_err());
    }

    #[test]
    fn redis_keys() {
        assert_eq!(
            redis_key("api", [0x0123_4567_89ab_cdef, 0xf], 1_700_000_000_000),
            "gw:{api}:0123456789abcdef000000000000000f:1700000000000"
        );
        let mut out = b"x".to_vec();
        redis_key_into(&mut out, "z", [u64::MAX, 0], 0);
        assert_eq!(out, b"xgw:{z}:ffffffffffffffff0000000000000000:0");
    }

    #[test]
    fn a_settled_previous_window_is_read_once() {
        let w = win(1000);
        let mut rec = SyncRec::default();
        rec.reset_for([1, 2]);
        // Early in the window: the previous total is read, and read again next time.
        let c = rec.claim_settled(10_050, &w, 300);
        assert!(c.pull_prev && !c.settled);
        rec.apply(&c, 1, Some(5));
        let c = rec.claim_settled(10_400, &w, 300);
        assert!(c.pull_prev && c.settled);
        rec.apply(&c, 1, Some(7));
        assert_eq!(rec.prev.remote, 7);
        // Read after the settle time: final for the rest of the window.
        let c = rec.claim_settled(10_500, &w, 300);
        assert!(!c.pull_prev);
        rec.apply(&c, 1, None);
        // The next window reads its previous one (this one) again.
        let c = rec.claim_settled(11_010, &w, 300);
        assert!(c.pull_prev);
        // A failed read does not make it final.
        let mut rec2 = SyncRec::default();
        rec2.reset_for([3, 4]);
        let c = rec2.claim_settled(10_500, &w, 300);
        rec2.unclaim(&c);
        assert!(rec2.claim_settled(10_600, &w, 300).pull_prev);
    }

    #[test]
    fn finish_window_by_window() {
        let w = win(60_000);
        let mut rec = SyncRec::default();
        rec.reset_for([1, 2]);
        rec.claim(60_000, &w);
        rec.cur.pending = 5;
        rec.prev.pending = 3;
        let c = rec.claim(60_010, &w);
        assert_eq!((c.cur, c.prev), (5, 3));
        // The current window was redirected, the previous one reached Redis.
        rec.finish(&c, Part::Back, Part::Done(Some(10)));
        assert_eq!(
            (rec.cur.pending, rec.cur.inflight, rec.cur.acked),
            (5, 0, 0)
        );
        assert_eq!(
            (rec.prev.pending, rec.prev.acked, rec.prev.remote),
            (0, 3, 10)
        );
        assert!(!rec.pulled(), "the current total was not read");
        let c = rec.claim(60_020, &w);
        assert_eq!(
            (c.cur, c.prev),
            (5, 0),
            "only what did not reach Redis is pushed again"
        );
        rec.finish(&c, Part::Done(Some(7)), Part::Done(None));
        assert_eq!((rec.cur.acked, rec.cur.remote), (5, 7));
        assert!(rec.pulled());
    }

    #[test]
    fn sentinel_and_cluster_urls() {
        let u =
            parse_redis_url("redis-sentinel://gw:pw@10.0.0.1,10.0.0.2:26380/mymaster/3").unwrap();
        assert_eq!(u.topology, Topology::Sentinel("mymaster".into()));
        assert_eq!(u.seeds, ["10.0.0.1:26379", "10.0.0.2:26380"]);
        assert_eq!((u.db, u.user.as_deref()), (3, Some("gw")));
        assert!(!u.tls);
        let u = parse_redis_url("rediss-sentinel://s1.example/m").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.addr.as_str()),
            ("s1.example", "s1.example:26379")
        );
        let u = parse_redis_url("redis-cluster://[::1]:7000,127.0.0.1:7001").unwrap();
        assert_eq!(u.topology, Topology::Cluster);
        assert_eq!(u.seeds, ["[::1]:7000", "127.0.0.1:7001"]);
        assert!(parse_redis_url("rediss-cluster://n1/").unwrap().tls);
        for bad in [
            "redis-sentinel://h",
            "redis-sentinel://h/",
            "redis-sentinel://h/a b",
            "redis-sentinel://h,/m",
            "redis-cluster://h/1",
            "redis-cluster://h:0",
            "redis-cluster://",
        ] {
            assert!(parse_redis_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_from_elsewhere() {
        let u = parse_redis_url("redis://gw@h").unwrap();
        let u = u.with_password("pw".into()).unwrap();
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("gw"), Some("pw"))
        );
        let u = parse_redis_url("redis://h")
            .unwrap()
            .with_password("pw".into())
            .unwrap();
        assert_eq!((u.user, u.password.as_deref()), (None, Some("pw")));
        assert!(parse_redis_url("redis://gw:x@h")
            .unwrap()
            .with_password("pw".into())
            .is_err());
        assert!(parse_redis_url("redis://:x@h")
            .unwrap()
            .with_password("pw".into())
            .is_err());
    }

    #[test]
    fn id_and_key() {
        let id = cluster_id(b"alice");
        assert_eq!(id, cluster_id(b"alice"));
        assert_ne!(id, cluster_id(b"bob"));
        let k = redis_key("api", [1, 2], 60_000);
        assert_eq!(k, "gw:{api}:00000000000000010000000000000002:60000");
    }

    #[test]
    fn single_node_is_the_local_algorithm() {
        let p = sliding(10, 1000);
        let mut rng = Rng(7);
        let mut local = State::EMPTY;
        let mut n = Node::default();
        let mut redis = HashMap::new();
        let mut now = 5_000;
        for i in 0..5000 {
            now += rng.below(60);
            let a = super::super::algo::check_and_consume(&mut local, now, &p);
            let b = check_and_consume_synced(&mut n.st, &mut n.rec, now, &p, None);
            assert_eq!(a, b, "request {i} at {now}");
            if i % 7 == 0 {
                exchange(&mut n, &mut redis, now, 1000);
            }
        }
    }

    #[test]
    fn others_count_against_the_limit() {
        let p = sliding(10, 60_000);
        let mut redis = HashMap::new();
        let (mut a, mut b) = (Node::default(), Node::default());
        let now = 120_000;
        for _ in 0..6 {
            assert!(check_and_consume_synced(&mut a.st, &mut a.rec, now, &p, None).allowed);
        }
        exchange(&mut a, &mut redis, now, 60_000);
        exchange(&mut b, &mut redis, now, 60_000);
        let mut admitted = 0;
        for _ in 0..10 {
            admitted +=
                u32::from(check_and_consume_synced(&mut b.st, &mut b.rec, now, &p, None).allowed);
        }
        assert_eq!(admitted, 4);
        exchange(&mut b, &mut redis, now, 60_000);
        exchange(&mut a, &mut redis, now, 60_000);
        assert!(!check_and_consume_synced(&mut a.st, &mut a.rec, now, &p, None).allowed);
        assert_eq!(a.rec.cur.others(), 4);
        assert_eq!(redis[&120_000], 10);
        // Next window, halfway: the other node's 4 weigh half; this node's own 6 are a period
        // old (it knows when its last one was), so they no longer count.
        let d = check_and_consume_synced(&mut a.st, &mut a.rec, 180_000 + 30_000, &p, None);
        assert!(d.allowed);
        assert_eq!(d.remaining, 10 - 2 - 1);
    }

    #[test]
    fn failed_exchange_is_retried() {
        let p = sliding(100, 1000);
        let mut n = Node::default();
        let mut redis = HashMap::new();
        for _ in 0..5 {
            check_and_consume_synced(&mut n.st, &mut n.rec, 10_100, &p, None);
        }
        let c = n.rec.claim(10_200, &win(1000));
        assert_eq!((c.cur, n.rec.cur.inflight, n.rec.cur.pending), (5, 5, 0));
        n.rec.unclaim(&c);
        assert_eq!((n.rec.cur.inflight, n.rec.cur.pending), (0, 5));
        // The window rolls before the retry: the counts go to the previous window's key.
        check_and_consume_synced(&mut n.st, &mut n.rec, 11_000, &p, None);
        exchange(&mut n, &mut redis, 11_050, 1000);
        assert_eq!(redis[&10_000], 5);
        assert_eq!(redis[&11_000], 1);
        assert_eq!(n.rec.prev.others(), 0);
        assert_eq!(n.rec.cur.others(), 0);
    }

    #[test]
    fn corrupt_records_do_not_panic() {
        let p = sliding(5, 1000);
        let mut rng = Rng(99);
        for _ in 0..2000 {
            let mut st = State::EMPTY;
            let mut rec: SyncRec = bytemuck::cast([rng.next(); 8]);
            let now = rng.next() >> rng.below(64);
            let _ = check_and_consume_synced(&mut st, &mut rec, now, &p, None);
            let c = rec.claim(now, &win(rng.next() >> rng.below(64)));
            rec.apply(&c, rng.next(), Some(rng.next()));
            rec.unclaim(&c);
            refund_synced(&mut st, &mut rec, now, &p);
        }
    }

    /// N nodes, random arrivals, a sync every `interval` ms taking `lag` ms: in every fixed
    /// window the cluster admits at most `L + (N-1) * min(L, r * 2 * (I + d))`, where `r` is
    /// one node's arrival rate (plus a 10% allowance for the randomness of the arrivals).
    #[test]
    fn cluster_over_admission_is_bounded() {
        let cases = [
            // nodes, limit, period, interval, lag, mean gap between arrivals per node (ms)
            (2usize, 100u64, 10_000u64, 100u64, 5u64, 5u64),
            (3, 100, 10_000, 100, 5, 2),
            (2, 50, 1_000, 100, 10, 3),
            (4, 1000, 60_000, 250, 20, 1),
            (2, 20, 60_000, 100, 1, 20),
            // Ten nodes (issue 15): the bound holds as the nodes multiply.
            (10, 1000, 60_000, 100, 5, 5),
            (10, 100, 10_000, 100, 10, 10),
            (10, 5000, 60_000, 200, 20, 2),
        ];
        for (nodes, limit, period, interval, lag, gap) in cases {
            let p = sliding(limit, period);
            let mut rng = Rng(0x5eed + limit);
            let mut ns: Vec<Node> = (0..nodes).map(|_| Node::default()).collect();
            let mut redis = HashMap::new();
            let mut admitted: HashMap<u64, u64> = HashMap::new();
            let mut next_sync: Vec<u64> = (0..nodes as u64).map(|i| i * interval / 3).collect();
            let mut claims: Vec<Option<(u64, Claim)>> = vec![None; nodes];
            let start = 1_000_000 * period;
            let end = start + 5 * period;
            let mut t = start;
            while t < end {
                for (i, n) in ns.iter_mut().enumerate() {
                    // Exchanges: claim at the tick, answer `lag` later.
                    if let Some((due, c)) = claims[i] {
                        if t >= due {
                            let cur = redis.entry(c.win).or_insert(0);
                            *cur += u64::from(c.cur);
                            let cur = *cur;
                            let pv = redis.entry(c.prev_win()).or_insert(0);
                            *pv += u64::from(c.prev);
                            let pv = *pv;
                            n.rec.apply(&c, cur, Some(pv));
                            claims[i] = None;
                        }
                    }
                    if t >= next_sync[i] && claims[i].is_none() {
                        claims[i] = Some((t + lag, n.rec.claim(t, &win(period))));
                        next_sync[i] = t + interval;
                    }
                    // Arrivals: about one per `gap` ms.
                    if rng.below(gap) == 0
                        && check_and_consume_synced(&mut n.st, &mut n.rec, t, &p, None).allowed
                    {
                        *admitted.entry(t - t % period).or_insert(0) += 1;
                    }
                }
                t += 1;
            }
            let rate_per_ms = 1.0 / gap as f64;
            let lagged = (1.1 * rate_per_ms * (2 * (interval + lag)) as f64).ceil() as u64;
            let bound = limit + (nodes as u64 - 1) * limit.min(lagged);
            let worst = admitted.values().copied().max().unwrap();
            println!(
                "nodes={nodes} limit={limit} period={period} interval={interval} lag={lag} gap={gap}: worst window {worst}, bound {bound}"
            );
            assert!(worst <= bound, "{worst} > {bound}");
            assert!(
                worst >= limit,
                "the cluster should reach its limit: {worst}"
            );
        }
    }
}

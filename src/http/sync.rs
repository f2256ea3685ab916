//! Cluster-wide rate limits: one worker per node (worker 0) pushes the zone's local
//! admissions to Redis and pulls the cluster's totals every `sync_interval`, over one
//! persistent non-blocking connection driven by nginx's event loop. The request path never
//! waits for Redis: it reads what the last exchange wrote into the shared zone.
//!
//! An exchange: under the zone's mutex, claim the keys to sync (`Table::sync_claims`); send one
//! pipelined batch (`AUTH`/`SELECT` first on a new connection; per key `INCRBY`+`PEXPIRE` when
//! there are admissions to push, else `GET`, for the current and the previous window); read the
//! replies; write the totals back under the mutex. Any failure (connect, write, read, a
//! protocol or server error, `sync_timeout`) closes the connection, gives the claimed counts
//! back to be pushed later, marks the zone as down (the request path then uses local counts,
//! or rejects with `sync_fail=closed`), counts `gateway_rate_limit_sync_errors_total`, logs
//! (at most once every 10 seconds per zone), and retries with a backoff of up to 5 seconds.
//! The first successful exchange marks the zone up again and logs it.

use super::now_ms;
use core::ptr;
use std::cell::RefCell;

use gateway_core::ratelimit::sync::{redis_key_into, Part, Topology};
use gateway_core::ratelimit::table::{SlotClaim, Table};
use gateway_core::ratelimit::topology::{self, Addr};
use gateway_core::resp::{self, Reply};
use nginx_sys::{
    ngx_connection_t, ngx_cycle_t, ngx_event_t, ngx_int_t, ngx_log_t, ngx_shmtx_lock,
    ngx_shmtx_unlock, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};

use super::redis::{Link, Recv};
use crate::conf::ratelimit::{SyncConf, Zone};
use crate::conf::MainConf;

/// Most keys claimed per exchange, and most slots scanned to find them.
const MAX_CLAIMS: usize = 2000;
const MAX_SCAN: usize = 20_000;
/// Longest wait before reconnecting after failures.
const MAX_BACKOFF_MS: u64 = 5000;
/// The same with sentinels or a cluster to ask: a failover is followed within about a second
/// of the sentinels or the cluster naming the new master.
const MAX_BACKOFF_HA_MS: u64 = 1000;
/// How often the sentinels are asked again which server is the master: a forced failover
/// leaves the old master up (and taking writes that will be lost) until the sentinels demote
/// it, so the syncer does not wait for an error to notice the switch.
const SENTINEL_RECHECK_MS: u64 = 1000;
/// At most one error line per zone this often.
const LOG_EVERY_MS: u64 = 10_000;

/// What a reply means.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// `AUTH` or `SELECT`: must not be an error.
    Handshake,
    /// The current window's total of claim `i`.
    Cur(usize),
    /// The previous window's total of claim `i`.
    Prev(usize),
    /// `PEXPIRE` of claim `i`: checked only for errors.
    Expire(usize),
    /// `ROLE` (sentinel mode): the server must be a master.
    Role,
    /// `SENTINEL get-master-addr-by-name`: where the master is.
    Master,
    /// `CLUSTER SLOTS`: which node serves the zone's slot.
    Slots,
}

/// An address learnt from a server (the master a sentinel names, the node a cluster names):
/// boxed, as the connection's `name` points into it.
struct Peer {
    sa: nginx_sys::ngx_sockaddr_t,
    len: nginx_sys::socklen_t,
    text: String,
    name: nginx_sys::ngx_str_t,
}

impl Peer {
    fn new(a: std::net::SocketAddr) -> Box<Peer> {
        // SAFETY: an all-zero socket address is a valid starting point; the family's fields
        // are filled below.
        let mut sa: nginx_sys::ngx_sockaddr_t = unsafe { core::mem::zeroed() };
        let len = match a {
            std::net::SocketAddr::V4(v4) => {
                sa.sockaddr_in.sin_family = nginx_sys::AF_INET as _;
                sa.sockaddr_in.sin_port = v4.port().to_be();
                sa.sockaddr_in.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                core::mem::size_of::<nginx_sys::sockaddr_in>()
            }
            std::net::SocketAddr::V6(v6) => {
                sa.sockaddr_in6.sin6_family = nginx_sys::AF_INET6 as _;
                sa.sockaddr_in6.sin6_port = v6.port().to_be();
                sa.sockaddr_in6.sin6_addr.__in6_u.__u6_addr8 = v6.ip().octets();
                core::mem::size_of::<nginx_sys::sockaddr_in6>()
            }
        };
        let mut p = Box::new(Peer {
            sa,
            len: len as nginx_sys::socklen_t,
            text: a.to_string(),
            name: nginx_sys::ngx_str_t::default(),
        });
        p.name = nginx_sys::ngx_str_t {
            len: p.text.len(),
            data: p.text.as_ptr().cast_mut(),
        };
        p
    }
}

struct Syncer {
    zone: *const Zone,
    log: *mut ngx_log_t,
    timer: ngx_event_t,
    /// The connection, its buffers and its TLS (shared with the session store's client).
    link: Link,
    /// The connection has been authenticated and has its database selected.
    ready: bool,
    /// An exchange is in flight.
    busy: bool,
    expect: Vec<Expect>,
    got: usize,
    claims: Vec<SlotClaim>,
    totals: Vec<(Option<u64>, Option<u64>)>,
    failures: u32,
    next_try_ms: u64,
    last_log_ms: u64,
    /// Errors since the last log line.
    unlogged: u64,
    /// Sentinel or cluster: the server that takes the writes, once learnt (`None`: ask).
    peer: Option<Box<Peer>>,
    /// Sentinel or cluster: the URL's server to ask next (rotates on failures).
    seed: usize,
    /// The connection is to a sentinel or a cluster seed, asking where to write.
    discovering: bool,
    /// What the asking found.
    found: Option<Addr>,
    /// Per claim, whether the current and the previous window's command was redirected by the
    /// cluster (`ASK` during a slot migration, `MOVED` after it): that part is given back and
    /// pushed again later.
    redirected: Vec<(bool, bool)>,
    /// A `MOVED` redirection: the node that serves the zone's slot from now on.
    moved_to: Option<Addr>,
    /// When the sentinels last named the master.
    asked_ms: u64,
    /// The server last named (logged when it changes).
    named: String,
    /// A Redis key being encoded (reused).
    key: Vec<u8>,
    /// `redis://host`: the address the resolver answered last, to use from the next connection
    /// (the exchange in flight finishes first).
    next_peer: Option<Box<Peer>>,
    /// The resolution in flight, if any.
    resolving: *mut nginx_sys::ngx_resolver_ctx_t,
    next_resolve_ms: u64,
}

thread_local! {
    /// Boxed: timers and connections point at their syncer, which must not move.
    #[allow(clippy::vec_box)]
    static SYNCERS: RefCell<Vec<Box<Syncer>>> = const { RefCell::new(Vec::new()) };
}

impl Syncer {
    fn zone(&self) -> &'static Zone {
        // SAFETY: zones live in the configuration pool, which outlives the worker's use.
        unsafe { &*self.zone }
    }

    fn conf(&self) -> &'static SyncConf {
        self.zone()
            .sync
            .as_ref()
            .expect("syncers exist for synced zones only")
    }

    fn with_table<T>(&self, f: impl FnOnce(&mut Table) -> T) -> Option<T> {
        let zone = self.zone();
        if zone.region.is_null() {
            return None;
        }
        let shpool = zone.shpool();
        // SAFETY: the slab pool's mutex guards the table region in the zone's shared memory.
        unsafe {
            ngx_shmtx_lock(&mut (*shpool).mutex);
            let region = core::slice::from_raw_parts_mut(zone.region, zone.region_len);
            let r = Table::attach(region).ok().map(|mut t| f(&mut t));
            ngx_shmtx_unlock(&mut (*shpool).mutex);
            r
        }
    }

    fn arm(&mut self, ms: u64) {
        // SAFETY: the timer event lives in this boxed syncer for the worker's life.
        unsafe { nginx_sys::ngx_add_timer(&mut self.timer, ms as nginx_sys::ngx_msec_t) };
    }

    /// The interval timer: starts an exchange unless one is in flight.
    fn tick(&mut self) {
        // SAFETY: plain reads of nginx's process flags.
        let exiting = unsafe { nginx_sys::ngx_exiting != 0 || nginx_sys::ngx_quit != 0 };
        if exiting {
            self.cancel_resolve();
            if !self.busy {
                self.close();
            }
            return;
        }
        let interval = self.conf().interval_ms;
        self.arm(interval);
        let now = now_ms();
        if now >= self.next_resolve_ms {
            self.resolve(now);
        }
        if self.busy {
            return;
        }
        if self.link.conn.is_null() && now < self.next_try_ms {
            return;
        }
        let mut claims = std::mem::take(&mut self.claims);
        claims.clear();
        let offset = self.zone().tz_offset_ms;
        // Every node pushes a window's admissions within two intervals and a timeout of its
        // end (SyncRec::claim_settled).
        let settle = self
            .conf()
            .interval_ms
            .saturating_mul(2)
            .saturating_add(self.conf().timeout_ms);
        self.with_table(|t| t.sync_claims(now, offset, settle, MAX_SCAN, MAX_CLAIMS, &mut claims));
        self.claims = claims;
        if self.claims.is_empty() {
            return;
        }
        self.busy = true;
        self.start();
    }

    /// Sends the claimed batch, connecting first if there is no connection: to the one server
    /// (`redis://`), to the master or node learnt, or to a sentinel or seed to ask where to
    /// write (`redis-sentinel://`, `redis-cluster://`), then to the answer (`discovered`).
    fn start(&mut self) {
        if self.link.conn.is_null() {
            let ask = self.conf().url.topology != Topology::Direct && self.peer.is_none();
            let r = if ask {
                let conf = self.conf();
                let a = &conf.seeds[self.seed % conf.seeds.len()];
                self.connect(a.sockaddr, a.socklen, a.name)
            } else if let Some(p) = self.peer.as_mut() {
                let (sa, len, name) = (
                    ptr::addr_of_mut!(p.sa.sockaddr),
                    p.len,
                    &mut p.name as *mut _,
                );
                self.connect(sa, len, name)
            } else {
                let a = &self.conf().seeds[0];
                self.connect(a.sockaddr, a.socklen, a.name)
            };
            if let Err(e) = r {
                self.fail(&e);
                return;
            }
            self.discovering = ask;
        }
        if self.discovering {
            self.build_discovery();
        } else {
            self.build();
        }
        self.link.arm_timeout(self.conf().timeout_ms);
        self.connected();
    }

    /// The batch that asks a sentinel for the master, or a cluster node for the slot map.
    fn build_discovery(&mut self) {
        self.reset_batch();
        let conf = self.conf();
        match &conf.url.topology {
            Topology::Sentinel(master) => {
                if let Some(pw) = &conf.sentinel_password {
                    resp::encode(&mut self.link.out, &[b"AUTH", pw.as_bytes()]);
                    self.expect.push(Expect::Handshake);
                }
                resp::encode(
                    &mut self.link.out,
                    &[b"SENTINEL", b"get-master-addr-by-name", master.as_bytes()],
                );
                self.expect.push(Expect::Master);
            }
            _ => {
                self.encode_auth();
                resp::encode(&mut self.link.out, &[b"CLUSTER", b"SLOTS"]);
                self.expect.push(Expect::Slots);
            }
        }
    }

    fn reset_batch(&mut self) {
        self.link.out.clear();
        self.link.sent = 0;
        self.link.inbuf.clear();
        self.expect.clear();
        self.got = 0;
        self.totals.clear();
        self.totals.resize(self.claims.len(), (None, None));
        self.redirected.clear();
        self.redirected.resize(self.claims.len(), (false, false));
        self.found = None;
        self.moved_to = None;
    }

    /// `AUTH` with the URL's credentials, if any.
    fn encode_auth(&mut self) {
        let url = &self.conf().url; // 'static: the configuration pool's
        if super::redis::encode_auth(&mut self.link.out, url) > 0 {
            self.expect.push(Expect::Handshake);
        }
    }

    /// The address asked for has come: connect to it and send the batch.
    fn discovered(&mut self) {
        let Some(a) = self.found.take() else {
            self.fail("no address in the answer");
            return;
        };
        let Some(sa) = topology::socket_addr(&a) else {
            self.fail(&format!(
                "the server to write to is announced as \"{}\", not an IP address",
                a.0
            ));
            return;
        };
        let from = self.target_text();
        self.close();
        let peer = Peer::new(sa);
        if peer.text != self.named {
            gw_log!(
                NGX_LOG_NOTICE,
                self.log,
                "rate_limit_zone \"{}\": {from} names {} as the {}",
                self.zone().name,
                peer.text,
                match self.conf().url.topology {
                    Topology::Sentinel(_) => "master",
                    _ => "node serving the zone's keys",
                }
            );
            self.named.clone_from(&peer.text);
        }
        self.asked_ms = now_ms();
        self.peer = Some(peer);
        self.start();
    }

    /// The server the connection goes (or went) to, for log lines.
    fn target_text(&self) -> String {
        let conf = self.conf();
        match (&conf.url.topology, &self.peer) {
            (Topology::Direct, _) => conf.url.addr.clone(),
            (_, Some(p)) if !self.discovering => p.text.clone(),
            (Topology::Sentinel(_), _) => format!(
                "sentinel {}",
                conf.url.seeds[self.seed % conf.url.seeds.len()]
            ),
            _ => format!(
                "cluster node {}",
                conf.url.seeds[self.seed % conf.url.seeds.len()]
            ),
        }
    }

    /// Encodes the batch for `self.claims`.
    fn build(&mut self) {
        self.reset_batch();
        // SAFETY: zones live in the configuration pool (not borrowed from `self`).
        let zone = unsafe { &*self.zone };
        let conf = zone.sync.as_ref().expect("synced zone");
        if !self.ready {
            self.encode_auth();
            if matches!(conf.url.topology, Topology::Sentinel(_)) {
                // Never write to a replica: the server the sentinels named must say it is
                // the master (a failover may have happened since).
                resp::encode(&mut self.link.out, &[b"ROLE"]);
                self.expect.push(Expect::Role);
            }
            if super::redis::encode_select(&mut self.link.out, &conf.url) > 0 {
                self.expect.push(Expect::Handshake);
            }
        }
        let mut key = std::mem::take(&mut self.key);
        for (i, sc) in self.claims.iter().enumerate() {
            let c = &sc.claim;
            let ttl = resp::Digits::new(2 * c.period);
            let mut one = |win: u64, n: u32, e: Expect| {
                key.clear();
                redis_key_into(&mut key, &zone.name, sc.id, win);
                if n > 0 {
                    let n = resp::Digits::new(u64::from(n));
                    resp::encode(&mut self.link.out, &[b"INCRBY", &key, n.as_bytes()]);
                    self.expect.push(e);
                    resp::encode(&mut self.link.out, &[b"PEXPIRE", &key, ttl.as_bytes()]);
                    self.expect.push(Expect::Expire(i));
                } else {
                    resp::encode(&mut self.link.out, &[b"GET", &key]);
                    self.expect.push(e);
                }
            };
            one(c.win, c.cur, Expect::Cur(i));
            if c.win >= c.period && (c.prev > 0 || c.pull_prev) {
                one(c.prev_win(), c.prev, Expect::Prev(i));
            }
        }
        self.key = key;
    }

    fn connect(
        &mut self,
        sockaddr: *mut nginx_sys::sockaddr,
        socklen: nginx_sys::socklen_t,
        name: *mut nginx_sys::ngx_str_t,
    ) -> Result<(), String> {
        let tls = self.conf().tls.is_some();
        let data = (self as *mut Syncer).cast();
        self.link.open(
            sockaddr,
            socklen,
            name,
            self.log,
            tls,
            false,
            data,
            Some(read_handler),
            Some(write_handler),
        )?;
        self.ready = false;
        Ok(())
    }

    /// Sends the batch once the connection (and its TLS: `rediss://`) is up.
    fn connected(&mut self) {
        let tls = self.conf().tls.as_ref();
        if let Err(e) = self.link.send(tls, Some(tls_handshake_handler)) {
            self.fail(&e);
        }
    }

    fn read(&mut self) {
        let c = self.link.conn;
        if c.is_null() {
            return;
        }
        loop {
            match self.link.recv() {
                Recv::Again => break,
                Recv::Closed => {
                    if self.busy {
                        self.fail("connection closed by the server");
                    } else {
                        self.close(); // idle connection closed (server restart): reconnect later
                    }
                    return;
                }
                Recv::Data => {
                    if !self.busy {
                        self.fail("unexpected data from the server");
                        return;
                    }
                    if let Err(e) = self.parse() {
                        self.fail(&e);
                        return;
                    }
                    if !self.busy || self.link.conn != c {
                        return; // exchange complete, or moved on to the server asked for
                    }
                }
            }
        }
        if let Err(e) = self.link.wait_read() {
            self.fail(e);
        }
    }

    fn parse(&mut self) -> Result<(), String> {
        let mut at = 0;
        while self.got < self.expect.len() {
            let Some((reply, used)) =
                resp::parse(&self.link.inbuf[at..]).map_err(|e| e.to_string())?
            else {
                break;
            };
            at += used;
            let e = self.expect[self.got];
            self.got += 1;
            if let Reply::Error(msg) = &reply {
                if let (Expect::Cur(i) | Expect::Prev(i) | Expect::Expire(i), Some(r)) =
                    (e, topology::redirect(msg))
                {
                    // A cluster slot moving (MOVED) or being moved (ASK): what did not reach
                    // Redis is given back and pushed again, to the right node. (A `PEXPIRE`
                    // follows its `INCRBY`, which did reach it.)
                    if let Some(x) = self.redirected.get_mut(i) {
                        match e {
                            Expect::Cur(_) => x.0 = true,
                            Expect::Prev(_) => x.1 = true,
                            _ => {}
                        }
                    }
                    if r.moved {
                        self.moved_to = Some(r.to);
                    }
                    continue;
                }
                if !matches!(e, Expect::Master) {
                    return Err(format!("server error: {}", String::from_utf8_lossy(msg)));
                }
            }
            match e {
                Expect::Handshake | Expect::Expire(_) => {}
                Expect::Role => {
                    if !topology::is_master(&reply) {
                        return Err(
                            "the server is not the master (a replica after a failover?)".into()
                        );
                    }
                }
                Expect::Master => self.found = Some(topology::master_addr(&reply)?),
                Expect::Slots => {
                    let conf = self.conf();
                    let seed_text = &conf.url.seeds[self.seed % conf.url.seeds.len()];
                    let seed_host = seed_text
                        .rsplit_once(':')
                        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                        .unwrap_or("")
                        .to_string();
                    match topology::slot_owner(&reply, conf.slot, &(seed_host, 0))? {
                        Some(a) => self.found = Some(a),
                        None => {
                            return Err(format!(
                                "no cluster node serves the zone's hash slot {}",
                                conf.slot
                            ))
                        }
                    }
                }
                Expect::Cur(i) | Expect::Prev(i) => {
                    let v = reply.as_count().ok_or("unexpected reply")?;
                    if let Some(t) = self.totals.get_mut(i) {
                        match e {
                            Expect::Cur(_) => t.0 = Some(v),
                            _ => t.1 = Some(v),
                        }
                    }
                }
            }
        }
        self.link.inbuf.drain(..at);
        if self.got == self.expect.len() {
            if self.discovering {
                self.discovered();
            } else {
                self.complete();
            }
        }
        Ok(())
    }

    fn complete(&mut self) {
        let claims = std::mem::take(&mut self.claims);
        let totals = std::mem::take(&mut self.totals);
        let redirected = std::mem::take(&mut self.redirected);
        let was_down = self
            .with_table(|t| {
                for ((c, (cur, prev)), r) in claims.iter().zip(totals.iter()).zip(&redirected) {
                    if *r == (false, false) {
                        t.sync_apply(c, cur.map(|cur| (cur, *prev)));
                    } else {
                        // What a cluster redirected did not reach Redis: pending again.
                        let part = |redirected: bool, total: Option<u64>| {
                            if redirected {
                                Part::Back
                            } else {
                                Part::Done(total)
                            }
                        };
                        t.sync_finish(c, part(r.0, *cur), part(r.1, *prev));
                    }
                }
                t.set_sync_down(false)
            })
            .unwrap_or(false);
        self.claims = claims;
        self.totals = totals;
        self.redirected = redirected;
        self.busy = false;
        self.ready = true;
        self.failures = 0;
        self.unlogged = 0;
        self.link.disarm_timeout();
        if let Some(p) = self.next_peer.take() {
            self.close();
            self.peer = Some(p);
        } else if let Some(to) = self.moved_to.take() {
            gw_log!(
                NGX_LOG_NOTICE,
                self.log,
                "rate_limit_zone \"{}\": the zone's hash slot moved to {}:{}, following it",
                self.zone().name,
                to.0,
                to.1
            );
            self.close();
            match topology::socket_addr(&to) {
                Some(sa) => self.peer = Some(Peer::new(sa)),
                None => self.peer = None, // a name: ask the seeds
            }
        } else if matches!(self.conf().url.topology, Topology::Sentinel(_))
            && now_ms().saturating_sub(self.asked_ms) >= SENTINEL_RECHECK_MS
        {
            // Ask the sentinels again before the next exchange (see SENTINEL_RECHECK_MS).
            self.close();
            self.peer = None;
        }
        if was_down {
            gw_log!(
                NGX_LOG_NOTICE,
                self.log,
                "rate_limit_zone \"{}\": redis sync resumed, limits are cluster-wide again",
                self.zone().name
            );
        }
    }

    /// Closes the connection (if any) without counting an error.
    fn close(&mut self) {
        self.link.close();
        self.ready = false;
    }

    fn fail(&mut self, why: &str) {
        self.close();
        if let Some(p) = self.next_peer.take() {
            self.peer = Some(p);
        }
        // A managed endpoint may have moved: resolve its name again before the next try.
        self.next_resolve_ms = 0;
        let claims = std::mem::take(&mut self.claims);
        let was_down = self
            .with_table(|t| {
                for c in &claims {
                    t.sync_apply(c, None);
                }
                t.set_sync_down(true)
            })
            .unwrap_or(true);
        self.claims = claims;
        self.busy = false;
        let now = now_ms();
        let conf = self.conf();
        let target = self.target_text();
        let max_backoff = if conf.url.topology == Topology::Direct {
            MAX_BACKOFF_MS
        } else {
            // Ask again where to write: a failover may be under way. The next question goes
            // to the next sentinel or seed if this one failed.
            if self.discovering || self.peer.is_none() {
                self.seed = self.seed.wrapping_add(1);
            }
            self.peer = None;
            self.discovering = false;
            MAX_BACKOFF_HA_MS
        };
        let backoff = conf
            .interval_ms
            .saturating_mul(1u64 << self.failures.min(10))
            .min(max_backoff);
        self.next_try_ms = now + backoff;
        self.failures = self.failures.saturating_add(1);
        super::metrics::inc(conf.errors_slot);
        self.unlogged += 1;
        if !was_down || now.saturating_sub(self.last_log_ms) >= LOG_EVERY_MS {
            let mode = if conf.fail_closed {
                "requests are rejected (sync_fail=closed)"
            } else {
                "limits are local to this node"
            };
            gw_log!(
                NGX_LOG_ERR,
                self.log,
                "rate_limit_zone \"{}\": redis sync with {target} failed: {why} ({} error{} since the last report); {mode} until it recovers",
                self.zone().name,
                self.unlogged,
                if self.unlogged == 1 { "" } else { "s" }
            );
            self.last_log_ms = now;
            self.unlogged = 0;
        }
    }
}

unsafe extern "C" fn tls_handshake_handler(c: *mut ngx_connection_t) {
    super::guard_conf((), || {
        // SAFETY: our connection's data is its syncer.
        let s = unsafe { &mut *(*c).data.cast::<Syncer>() };
        let Some(tls) = s.conf().tls.as_ref() else {
            return;
        };
        match s.link.tls_done(tls) {
            Ok(()) => s.connected(),
            Err(e) => s.fail(&e),
        }
    })
}

impl Syncer {
    /// Starts resolving the `redis://` host name through the http block's `resolver` (when
    /// there is a name, a `resolver` with servers, and `sync_resolve` is not off); `resolved`
    /// completes it.
    fn resolve(&mut self, now: u64) {
        let conf = self.conf();
        let Some(name) = conf.resolve_name.as_ref().filter(|_| conf.resolve_ms > 0) else {
            self.next_resolve_ms = u64::MAX;
            return;
        };
        if !self.resolving.is_null() {
            return;
        }
        self.next_resolve_ms = now.saturating_add(conf.resolve_ms);
        // SAFETY: `clcf` is the http block's core location configuration (configuration
        // pool); its resolver is NULL, or nginx's dummy one without servers, when none is
        // configured there. The context is nginx's until ngx_resolve_name_done; its handler
        // gets this boxed syncer.
        unsafe {
            let clcf = conf.clcf;
            let r = (*clcf).resolver;
            if r.is_null() || (*r).connections.nelts == 0 {
                self.next_resolve_ms = u64::MAX; // no resolver: the address from configuration
                return;
            }
            let ctx = nginx_sys::ngx_resolve_start(r, ptr::null_mut());
            if ctx.is_null() || ctx as isize == -1 {
                return;
            }
            (*ctx).name = nginx_sys::ngx_str_t {
                len: name.to_bytes().len(),
                data: name.as_ptr().cast_mut().cast(),
            };
            (*ctx).handler = Some(resolve_handler);
            (*ctx).data = (self as *mut Syncer).cast();
            // The http block's own configuration is never merged: an unset resolver_timeout
            // is NGX_CONF_UNSET_MSEC there; nginx's default is 30 s.
            let t = (*clcf).resolver_timeout;
            (*ctx).timeout = if t == nginx_sys::ngx_msec_t::MAX {
                30_000
            } else {
                t
            };
            self.resolving = ctx;
            if nginx_sys::ngx_resolve_name(ctx) != NGX_OK as ngx_int_t {
                // nginx has freed the context.
                self.resolving = ptr::null_mut();
            }
        }
    }

    /// A resolution ended: a new address is used from the next connection.
    fn resolved(&mut self, ctx: *mut nginx_sys::ngx_resolver_ctx_t) {
        self.resolving = ptr::null_mut();
        let conf = self.conf();
        let port = conf
            .url
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(6379);
        // SAFETY: nginx hands the context back with its answer, read before it is freed.
        let (answer, state) = unsafe {
            let answer = ((*ctx).state == 0 && (*ctx).naddrs > 0)
                .then(|| std_addr((*(*ctx).addrs).sockaddr))
                .flatten();
            (answer, (*ctx).state)
        };
        // SAFETY: the context is ours to end.
        unsafe { nginx_sys::ngx_resolve_name_done(ctx) };
        let Some(mut a) = answer else {
            // SAFETY: nginx's static error strings.
            let why = unsafe {
                core::ffi::CStr::from_ptr(nginx_sys::ngx_resolver_strerror(state))
                    .to_string_lossy()
                    .into_owned()
            };
            gw_log!(
                NGX_LOG_WARN,
                self.log,
                "rate_limit_zone \"{}\": cannot resolve \"{}\" ({why}), keeping its last address",
                self.zone().name,
                conf.url.host
            );
            return;
        };
        a.set_port(port);
        let current = match self.next_peer.as_ref().or(self.peer.as_ref()) {
            // SAFETY: the peer's socket address is ours.
            Some(p) => unsafe { std_addr(ptr::addr_of!(p.sa.sockaddr).cast_mut()) },
            // SAFETY: the configuration's address lives in the configuration pool.
            None => unsafe { std_addr(conf.seeds[0].sockaddr) },
        };
        if current == Some(a) {
            return;
        }
        gw_log!(
            NGX_LOG_NOTICE,
            self.log,
            "rate_limit_zone \"{}\": \"{}\" resolved to a new address {a}, reconnecting",
            self.zone().name,
            conf.url.host
        );
        if self.busy {
            self.next_peer = Some(Peer::new(a)); // after the exchange in flight
        } else {
            self.close();
            self.peer = Some(Peer::new(a));
        }
    }

    fn cancel_resolve(&mut self) {
        if !self.resolving.is_null() {
            // SAFETY: the resolution in flight is ours; ending it cancels it.
            unsafe { nginx_sys::ngx_resolve_name_done(self.resolving) };
            self.resolving = ptr::null_mut();
        }
    }
}

/// A socket address of nginx's as a standard one (IPv4 and IPv6 only).
///
/// # Safety
/// `sa` points at a valid socket address of its family's size.
unsafe fn std_addr(sa: *mut nginx_sys::sockaddr) -> Option<std::net::SocketAddr> {
    // SAFETY: per the function's contract.
    unsafe {
        match u32::from((*sa).sa_family) {
            nginx_sys::AF_INET => {
                let v4 = &*sa.cast::<nginx_sys::sockaddr_in>();
                let ip = std::net::Ipv4Addr::from(v4.sin_addr.s_addr.to_ne_bytes());
                Some(std::net::SocketAddr::from((ip, u16::from_be(v4.sin_port))))
            }
            nginx_sys::AF_INET6 => {
                let v6 = &*sa.cast::<nginx_sys::sockaddr_in6>();
                let ip = std::net::Ipv6Addr::from(v6.sin6_addr.__in6_u.__u6_addr8);
                Some(std::net::SocketAddr::from((ip, u16::from_be(v6.sin6_port))))
            }
            _ => None,
        }
    }
}

unsafe extern "C" fn resolve_handler(ctx: *mut nginx_sys::ngx_resolver_ctx_t) {
    super::guard_conf((), || {
        // SAFETY: the context's data is its boxed syncer.
        let s = unsafe { &mut *(*ctx).data.cast::<Syncer>() };
        s.resolved(ctx);
    })
}

fn syncer_of(ev: *mut ngx_event_t) -> *mut Syncer {
    // SAFETY: our connection events carry the connection, whose data is the syncer.
    unsafe { (*(*ev).data.cast::<ngx_connection_t>()).data.cast() }
}

unsafe extern "C" fn timer_handler(ev: *mut ngx_event_t) {
    super::guard_conf((), || {
        // SAFETY: the timer's data is its boxed syncer.
        let s = unsafe { &mut *(*ev).data.cast::<Syncer>() };
        s.tick();
    })
}

unsafe extern "C" fn read_handler(ev: *mut ngx_event_t) {
    super::guard_conf((), || {
        // SAFETY: see `syncer_of`.
        let s = unsafe { &mut *syncer_of(ev) };
        // SAFETY: `ev` is live.
        if unsafe { (*ev).timedout() } != 0 {
            s.fail("timed out (sync_timeout)");
            return;
        }
        s.read();
    })
}

unsafe extern "C" fn write_handler(ev: *mut ngx_event_t) {
    super::guard_conf((), || {
        // SAFETY: see `syncer_of`.
        let s = unsafe { &mut *syncer_of(ev) };
        // SAFETY: `ev` is live.
        if unsafe { (*ev).timedout() } != 0 {
            s.fail("timed out (sync_timeout)");
            return;
        }
        s.link.connecting = false;
        if s.busy {
            s.connected();
        }
    })
}

/// Per worker: worker 0 starts a syncer for every synced zone.
pub fn init_process(cycle: &ngx_cycle_t, mcf: &MainConf) {
    // SAFETY: plain read of nginx's worker number.
    if unsafe { nginx_sys::ngx_worker } != 0 {
        return;
    }
    SYNCERS.with(|list| {
        let mut list = list.borrow_mut();
        for &z in &mcf.zones {
            // SAFETY: zones live in the configuration pool.
            let zone = unsafe { &*z };
            let Some(conf) = zone.sync.as_ref() else {
                continue;
            };
            let mut s = Box::new(Syncer {
                zone: z,
                log: cycle.log,
                // SAFETY: an all-zero event is nginx's initial state for a timer event.
                timer: unsafe { core::mem::zeroed() },
                link: Link::new(),
                ready: false,
                busy: false,
                expect: Vec::new(),
                got: 0,
                claims: Vec::new(),
                totals: Vec::new(),
                failures: 0,
                next_try_ms: 0,
                last_log_ms: 0,
                unlogged: 0,
                peer: None,
                seed: 0,
                discovering: false,
                found: None,
                redirected: Vec::new(),
                moved_to: None,
                asked_ms: 0,
                named: String::new(),
                key: Vec::new(),
                next_peer: None,
                resolving: ptr::null_mut(),
                next_resolve_ms: now_ms().saturating_add(conf.resolve_ms),
            });
            let sp: *mut Syncer = &mut *s;
            s.timer.handler = Some(timer_handler);
            s.timer.data = sp.cast();
            s.timer.log = cycle.log;
            s.timer.set_cancelable(1);
            s.arm(conf.interval_ms);
            list.push(s);
        }
    });
}

/// Per worker, on exit: closes the connections (nginx reports sockets left open).
pub fn exit_process() {
    SYNCERS.with(|list| {
        for s in list.borrow_mut().iter_mut() {
            s.close();
            if s.timer.timer_set() != 0 {
                // SAFETY: the timer was armed by `arm`.
                unsafe { nginx_sys::ngx_del_timer(&mut s.timer) };
            }
        }
        for s in list.borrow_mut().iter_mut() {
            s.cancel_resolve();
        }
        list.borrow_mut().clear();
    });
}

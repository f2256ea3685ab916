//! Browser sign-in at request time (`auth_oidc`): the redirect to the provider, the callback
//! (code exchange by POST subrequest, ID token validation, a new session), the session on
//! every request (its claims become the request's verified token), refresh, and logout.
//!
//! **Store.** Each provider has a shared zone holding, in one open-addressing table of slots,
//! the logins under way (keyed by SHA-256 of their `state`, used once) and the sessions (keyed
//! by SHA-256 of the session id: the zone never holds an id a browser could present). A slot's
//! record is a blob in the zone's slab pool; times and the refresh lease are slot fields, so
//! a request updates no blob. When the zone is full the slot closest to expiry in the probe
//! window goes. Each worker keeps the parsed ID token of the sessions it served (keyed by the
//! slot's version), so a request with a valid session parses nothing.

use core::ffi::c_void;
use core::ptr;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use gateway_core::jwt::{decode_and_verify_signature, decode_trusted, Verified};
use gateway_core::oidc::rp::{self, Pending, Session};
use nginx_sys::{
    ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_shm_zone_t, ngx_slab_pool_t, NGX_ERROR,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR, NGX_LOG_INFO, NGX_OK,
};
use ngx::http::Request;

use super::ctx::RequestCtx;
use super::jwks::{self, Plan};
use super::jwt::AuthOutcome;
use super::{fetch, guard_conf, now_ms, push_header};
use crate::conf::oidc::{ClientAuth, Provider};
use crate::conf::LocConf;

const MAGIC: u64 = 0x6777_6f69_6463_0002;
const KIND_PENDING: u32 = 1;
const KIND_SESSION: u32 = 2;
/// A login must come back within this many seconds.
const PENDING_TTL: u64 = 600;
/// Slots looked at from a key's home slot.
const PROBE: usize = 32;
/// Largest token endpoint answer or stored token accepted.
const MAX_TOKEN: usize = 16 * 1024;
/// A refresh that has not ended after this long may be tried again.
const REFRESH_LEASE: u64 = 30;
/// How long a callback waits for its code exchange.
const EXCHANGE_WAIT_MS: u64 = 30_000;

#[repr(C)]
struct Table {
    magic: u64,
    nslots: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    key: [u8; 32],
    kind: u32,
    /// Bumped when the record changes (a refresh): per-worker caches compare it.
    version: u32,
    /// Absolute end (seconds).
    expires: u64,
    /// Idle end (seconds), moved by each request.
    idle_until: u64,
    /// A refresh of this session is under way until then.
    refreshing_until: u64,
    /// When the record was last read from or written to the shared store (`session_store`).
    checked: u64,
    blob: *mut u8,
    blob_len: u64,
}

/// Adds a provider's session zone.
pub fn add_zone(
    cf: &mut ngx_conf_t,
    name: &str,
    size: usize,
    provider: *mut Provider,
) -> Result<*mut ngx_shm_zone_t, String> {
    // nginx keeps the name (it compares it at the next reload to reuse the zone): it must
    // live in the configuration pool, not in a Rust string.
    // SAFETY: `cf.pool` is the configuration pool.
    let data = unsafe { nginx_sys::ngx_pnalloc(cf.pool, name.len().max(1)) }.cast::<u8>();
    if data.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: `data` has room for the name.
    unsafe { ptr::copy_nonoverlapping(name.as_ptr(), data, name.len()) };
    let mut n = nginx_sys::ngx_str_t {
        len: name.len(),
        data,
    };
    // SAFETY: `cf` is the configuration being parsed; nginx copies the name.
    let shm = unsafe {
        nginx_sys::ngx_shared_memory_add(
            cf,
            &mut n,
            size,
            ptr::addr_of_mut!(crate::ngx_http_gateway_module).cast(),
        )
    };
    if shm.is_null() {
        return Err(format!("cannot add the shared zone \"{name}\""));
    }
    // SAFETY: `shm` was just returned by nginx.
    unsafe {
        if !(*shm).data.is_null() {
            return Err(format!("the shared memory zone \"{name}\" is already used"));
        }
        (*shm).init = Some(init_zone);
        (*shm).data = provider.cast();
    }
    Ok(shm)
}

unsafe extern "C" fn init_zone(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: the zone's slab pool, set up by nginx; old workers may use a reused one.
        unsafe {
            let pool = (*shm).shm.addr.cast::<ngx_slab_pool_t>();
            (*pool).set_log_nomem(0);
            let t = (*pool).data.cast::<Table>();
            if !t.is_null() && (*t).magic == MAGIC {
                return NGX_OK as ngx_int_t;
            }
            let nslots = ((*shm).shm.size / 4096).max(64);
            let bytes = core::mem::size_of::<Table>() + nslots * core::mem::size_of::<Slot>();
            let t = nginx_sys::ngx_slab_alloc(pool, bytes).cast::<Table>();
            if t.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            ptr::write_bytes(t.cast::<u8>(), 0, bytes);
            (*t).magic = MAGIC;
            (*t).nslots = nslots as u64;
            (*pool).data = t.cast();
            NGX_OK as ngx_int_t
        }
    })
}

/// The provider's table, locked.
struct Store {
    pool: *mut ngx_slab_pool_t,
    slots: *mut Slot,
    n: usize,
}

fn with_store<T>(p: &Provider, f: impl FnOnce(&mut Store) -> T) -> Option<T> {
    if p.zone.is_null() {
        return None;
    }
    // SAFETY: the zone set up by `init_zone`; every access holds its mutex.
    unsafe {
        let pool = (*p.zone).shm.addr.cast::<ngx_slab_pool_t>();
        let t = (*pool).data.cast::<Table>();
        if t.is_null() || (*t).magic != MAGIC {
            return None;
        }
        nginx_sys::ngx_shmtx_lock(&mut (*pool).mutex);
        let mut s = Store {
            pool,
            slots: t.add(1).cast::<Slot>(),
            n: (*t).nslots as usize,
        };
        let r = f(&mut s);
        nginx_sys::ngx_shmtx_unlock(&mut (*pool).mutex);
        Some(r)
    }
}

impl Store {
    fn slot(&mut self, i: usize) -> &mut Slot {
        // SAFETY: `i < n`; the slots follow the table header.
        unsafe { &mut *self.slots.add(i % self.n) }
    }

    fn home(&self, key: &[u8; 32]) -> usize {
        u64::from_le_bytes(key[..8].try_into().unwrap_or_default()) as usize % self.n
    }

    fn live(s: &Slot, now: u64) -> bool {
        s.kind != 0 && now < s.expires && now < s.idle_until
    }

    fn free(&mut self, i: usize) {
        let pool = self.pool;
        let s = self.slot(i);
        if !s.blob.is_null() {
            // SAFETY: the blob was allocated from this pool; the mutex is held.
            unsafe { nginx_sys::ngx_slab_free_locked(pool, s.blob.cast()) };
        }
        *s = Slot {
            key: [0; 32],
            kind: 0,
            version: s.version.wrapping_add(1),
            expires: 0,
            idle_until: 0,
            refreshing_until: 0,
            checked: 0,
            blob: ptr::null_mut(),
            blob_len: 0,
        };
    }

    fn find(&mut self, key: &[u8; 32], kind: u32, now: u64) -> Option<usize> {
        let h = self.home(key);
        for k in 0..PROBE.min(self.n) {
            let i = (h + k) % self.n;
            let s = *self.slot(i);
            if s.kind == kind && s.key == *key {
                if Self::live(&s, now) {
                    return Some(i);
                }
                self.free(i);
                return None;
            }
        }
        None
    }

    /// Stores a record; when the probe window is full, the slot closest to its end goes.
    fn put(
        &mut self,
        key: &[u8; 32],
        kind: u32,
        blob: &[u8],
        expires: u64,
        idle: u64,
        now: u64,
    ) -> bool {
        let h = self.home(key);
        let mut target = None;
        let mut oldest = (u64::MAX, h);
        for k in 0..PROBE.min(self.n) {
            let i = (h + k) % self.n;
            let s = *self.slot(i);
            if s.kind == 0 || !Self::live(&s, now) || (s.kind == kind && s.key == *key) {
                target = Some(i);
                break;
            }
            let end = s.expires.min(s.idle_until);
            if end < oldest.0 {
                oldest = (end, i);
            }
        }
        if target.is_none() {
            EVICTED.with(|e| e.set(true));
        }
        let i = target.unwrap_or(oldest.1);
        self.free(i);
        // SAFETY: the mutex is held; on failure the oldest slots elsewhere are freed first.
        let mut p = unsafe { nginx_sys::ngx_slab_alloc_locked(self.pool, blob.len().max(1)) };
        let mut j = 0;
        while p.is_null() && j < self.n {
            let s = *self.slot(j);
            if s.kind != 0 && (s.kind == KIND_PENDING || !Self::live(&s, now)) {
                self.free(j);
                // SAFETY: as above.
                p = unsafe { nginx_sys::ngx_slab_alloc_locked(self.pool, blob.len().max(1)) };
            }
            j += 1;
        }
        if p.is_null() {
            return false;
        }
        // SAFETY: `p` has room for the blob.
        unsafe { ptr::copy_nonoverlapping(blob.as_ptr(), p.cast::<u8>(), blob.len()) };
        let s = self.slot(i);
        s.key = *key;
        s.kind = kind;
        s.version = s.version.wrapping_add(1);
        s.expires = expires;
        s.idle_until = idle;
        s.refreshing_until = 0;
        s.checked = now;
        s.blob = p.cast();
        s.blob_len = blob.len() as u64;
        true
    }

    fn blob(&mut self, i: usize) -> Vec<u8> {
        let s = *self.slot(i);
        if s.blob.is_null() {
            return Vec::new();
        }
        // SAFETY: the blob holds `blob_len` bytes; the mutex is held.
        unsafe { core::slice::from_raw_parts(s.blob, s.blob_len as usize).to_vec() }
    }
}

fn key_of(prefix: &[u8], value: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(prefix.len() + value.len());
    input.extend_from_slice(prefix);
    input.extend_from_slice(value);
    gateway_core::policy::key_digest(&input)
}

fn now_s() -> u64 {
    now_ms() / 1000
}

// ---------------------------------------------------------------------------------------
// Per-request state and the per-worker caches.

/// Per-request state of `auth_oidc`.
#[derive(Default)]
pub struct OidcState {
    /// The code exchange this callback started (its result is in EXCHANGES).
    pub exchange: Option<u64>,
    /// The login this callback completes (taken from the store, single use).
    pub pending: Option<Pending>,
    /// When the callback began waiting for the exchange.
    pub waiting_since: Option<u64>,
    /// A read of the shared store this request waits for (its result is in LOOKUPS).
    pub lookup: Option<u64>,
    /// The callback's state (taken off the browser's state cookie at the end).
    pub state: String,
}

struct Cached {
    version: u32,
    verified: Arc<Verified>,
    access_token: Rc<str>,
    access_exp: u64,
    has_refresh: bool,
}

thread_local! {
    static SESSIONS: RefCell<HashMap<[u8; 32], Cached>> = RefCell::new(HashMap::new());
    static EXCHANGES: RefCell<HashMap<u64, Result<rp::Tokens, String>>> = RefCell::new(HashMap::new());
    static NEXT_EXCHANGE: RefCell<u64> = const { RefCell::new(1) };
    /// A store of this worker evicted a live entry (reported by `report_eviction`).
    static EVICTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// When this worker last reported an eviction.
    static EVICTION_LOGGED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Answers of the shared store: the record, none (`Ok(None)`), or the store is down.
    static LOOKUPS: RefCell<HashMap<u64, StoreAnswer>> = RefCell::new(HashMap::new());
    /// This worker's connection to each provider's shared store.
    static CLIENTS: RefCell<HashMap<usize, Box<super::redis::Client>>> = RefCell::new(HashMap::new());
}

/// What the shared store answered for a session: its record, none, or an error (down).
type StoreAnswer = Result<Option<Vec<u8>>, ()>;

/// How long a node trusts its copy of a session before it asks the shared store again (a
/// logout or a refresh on another node is seen within this).
const REVALIDATE: u64 = 10;

/// Results waiting for their request (an exchange, a store read). A request that went away
/// never takes its result: past a few hundred entries, those of jobs far older than any wait
/// (job ids grow by one per job) are dropped, so abandoned results cannot pile up.
fn bounded_insert<T>(m: &mut HashMap<u64, T>, job: u64, v: T) {
    if m.len() >= 256 {
        m.retain(|&k, _| k + 65_536 > job);
    }
    m.insert(job, v);
}

/// A full session zone says so (at most once a minute per worker): making room evicted the
/// login or session closest to its end.
fn report_eviction(p: &Provider, log: *mut nginx_sys::ngx_log_t) {
    if !EVICTED.with(|e| e.replace(false)) {
        return;
    }
    let now = now_ms();
    if now.saturating_sub(EVICTION_LOGGED.with(|l| l.get())) < 60_000 {
        return;
    }
    EVICTION_LOGGED.with(|l| l.set(now));
    gw_log!(
        NGX_LOG_ERR,
        log,
        "oidc_provider \"{}\": the session zone is full, the login or session closest to its end was evicted; raise session_zone (logged at most once a minute)",
        p.name
    );
}

fn next_job() -> u64 {
    NEXT_EXCHANGE.with(|n| {
        let mut n = n.borrow_mut();
        *n += 1;
        *n
    })
}

/// The shared-store key of a session.
fn store_key(p: &Provider, key: &[u8; 32]) -> Vec<u8> {
    let mut k = format!("gw:oidc:{}:", p.name).into_bytes();
    for b in key {
        k.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    k
}

/// Runs a command on the provider's shared store, if it has one.
fn store_command(p: &Provider, args: &[&[u8]], cb: Option<super::redis::Callback>) -> bool {
    let Some(target) = p.store.as_ref() else {
        return false;
    };
    let id = p as *const Provider as usize;
    CLIENTS.with(|c| {
        let mut c = c.borrow_mut();
        let client = c.entry(id).or_insert_with(|| {
            super::redis::Client::new(
                target,
                format!("oidc_provider \"{}\" session_store", p.name),
            )
        });
        client.command(args, cb);
    });
    true
}

/// Writes a session to the shared store, to expire with it.
fn store_put(p: &Provider, key: &[u8; 32], blob: &[u8], ends: u64, now: u64) {
    let ms = (ends.saturating_sub(now).max(1) * 1000).to_string();
    let k = store_key(p, key);
    store_command(p, &[b"SET", &k, blob, b"PX", ms.as_bytes()], None);
}

fn store_del(p: &Provider, key: &[u8; 32]) {
    let k = store_key(p, key);
    store_command(p, &[b"DEL", &k], None);
}

// ---------------------------------------------------------------------------------------
// The access phase.

fn header<'r>(request: &'r Request, name: &[u8]) -> Option<&'r [u8]> {
    request
        .headers_in_iterator()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_bytes())
}

fn cookie<'r>(request: &'r Request, name: &str) -> Option<&'r [u8]> {
    request
        .headers_in_iterator()
        .filter(|(k, _)| k.as_bytes().eq_ignore_ascii_case(b"cookie"))
        .find_map(|(_, v)| rp::cookie(v.as_bytes(), name.as_bytes()))
}

fn is_https(request: &Request) -> bool {
    // SAFETY: the connection of a live request.
    unsafe { !(*request.as_ref().connection).ssl.is_null() }
}

/// The session cookie's name: `__Host-` prefixed on https (the browser then refuses it from
/// any other origin or path).
fn session_cookie<'p>(request: &Request, p: &'p Provider) -> &'p str {
    if is_https(request) {
        &p.host_cookie_name
    } else {
        &p.cookie_name
    }
}

/// `scheme://host` of the request, for the absolute redirect_uri.
fn origin(request: &Request) -> Option<String> {
    let host = header(request, b"host")?;
    if host.is_empty()
        || host
            .iter()
            .any(|&b| b <= b' ' || b == b'/' || b == b'\\' || b == 0x7f)
    {
        return None;
    }
    let scheme = if is_https(request) { "https" } else { "http" };
    Some(format!("{scheme}://{}", String::from_utf8_lossy(host)))
}

/// The access phase of a location with `auth_oidc`.
pub fn access(
    request: &mut Request,
    ctx: &mut RequestCtx,
    lcf: &LocConf,
    p: &Provider,
) -> ngx_int_t {
    let uri = request.as_ref().uri.as_bytes().to_vec();
    if uri == p.redirect_uri.as_bytes() {
        return callback(request, ctx, p);
    }
    if p.logout_uri.as_deref().map(str::as_bytes) == Some(&uri[..]) {
        return logout(request, p);
    }
    // A bearer token on a location that also has auth_jwt: checked as without auth_oidc.
    if let Some(rt) = &lcf.jwt.runtime {
        if super::jwt::has_token(request, rt) {
            let rt = rt.clone();
            return super::jwt::access(request, ctx, &rt);
        }
    }
    match session(request, ctx, p) {
        SessionState::Valid => {
            // The location's auth_jwt_require rules hold for sessions too.
            if let Some(rt) = &lcf.jwt.runtime {
                if let Some(status) = super::jwt::failed_requirement(request, rt) {
                    gw_log!(
                        NGX_LOG_INFO,
                        request.log(),
                        "oidc: session refused: auth_jwt_require failed, status {status}"
                    );
                    return status as ngx_int_t;
                }
            }
            NGX_OK as ngx_int_t
        }
        SessionState::Wait => nginx_sys::NGX_AGAIN as ngx_int_t,
        SessionState::None => {
            let r = request.as_ref();
            let nav = rp::is_navigation(
                r.method_name.as_bytes(),
                header(request, b"sec-fetch-mode"),
                header(request, b"accept"),
            );
            if nav {
                login(request, ctx, p)
            } else {
                let _ = super::set_www_authenticate(request, b"Bearer realm=\"oidc\"");
                401
            }
        }
    }
}

enum SessionState {
    Valid,
    Wait,
    None,
}

enum Pulled {
    /// A read of the store is under way: the request waits.
    Wait,
    /// The store has no such session (ended on another node, or expired).
    Gone,
    /// The local copy is up to date (or the store is down and the local copy stands).
    Kept,
}

/// Reads a session from the shared store into the zone (first pass: starts the read and
/// waits; second pass: applies the answer).
fn pull(
    request: &mut Request,
    ctx: &mut RequestCtx,
    p: &Provider,
    key: &[u8; 32],
    now: u64,
) -> Pulled {
    if let Some(job) = ctx.oidc.lookup {
        let Some(answer) = LOOKUPS.with(|l| l.borrow_mut().remove(&job)) else {
            let since = *ctx.jwks.wait_since.get_or_insert(now_ms());
            if now_ms().saturating_sub(since) < 5_000 {
                jwks::wait(request, ctx);
                return Pulled::Wait;
            }
            ctx.oidc.lookup = None;
            return Pulled::Kept;
        };
        ctx.oidc.lookup = None;
        return match answer {
            Ok(Some(blob)) => {
                let Some(sess) = Session::decode(&blob) else {
                    return Pulled::Gone;
                };
                let expires = sess.created + p.session_timeout;
                let idle = (now + p.session_idle_timeout).min(expires);
                if now >= expires {
                    return Pulled::Gone;
                }
                let same = with_store(p, |st| {
                    let i = st.find(key, KIND_SESSION, now)?;
                    let same = st.blob(i) == blob;
                    if same {
                        let s = st.slot(i);
                        s.checked = now;
                        s.idle_until = s.idle_until.max(idle);
                    }
                    Some(same)
                })
                .flatten()
                .unwrap_or(false);
                if !same {
                    with_store(p, |st| st.put(key, KIND_SESSION, &blob, expires, idle, now));
                    SESSIONS.with(|c| c.borrow_mut().remove(key));
                }
                // The store keeps the session as long as a node uses it.
                let ms = (idle.saturating_sub(now).max(1) * 1000).to_string();
                let k = store_key(p, key);
                store_command(p, &[b"PEXPIRE", &k, ms.as_bytes()], None);
                Pulled::Kept
            }
            Ok(None) => Pulled::Gone,
            Err(()) => {
                // The store is down: the node's own copy stands (checked again later).
                with_store(p, |st| {
                    if let Some(i) = st.find(key, KIND_SESSION, now) {
                        st.slot(i).checked = now;
                    }
                });
                Pulled::Kept
            }
        };
    }
    let job = next_job();
    let k = store_key(p, key);
    let sent = store_command(
        p,
        &[b"GET", &k],
        Some(Box::new(
            move |r: Result<gateway_core::resp::Reply, String>| {
                let answer = match r {
                    Ok(gateway_core::resp::Reply::Bulk(b)) => Ok(b),
                    _ => Err(()),
                };
                LOOKUPS.with(|l| bounded_insert(&mut l.borrow_mut(), job, answer));
                jwks::wake_waiters();
            },
        )),
    );
    if !sent {
        return Pulled::Kept;
    }
    // The answer may already be there (a connection that failed at once).
    ctx.oidc.lookup = Some(job);
    if LOOKUPS.with(|l| l.borrow().contains_key(&job)) {
        // Answered at once (the connection failed): apply it now, without a second read.
        return pull(request, ctx, p, key, now);
    }
    ctx.jwks.wait_since = Some(now_ms());
    jwks::wait(request, ctx);
    Pulled::Wait
}

/// The request's session, if its cookie names a live one: its ID token becomes the request's
/// verified token (claims, requirements, consumers, log), the access token may go upstream,
/// and a refresh starts when the access token is about to expire.
fn session(request: &mut Request, ctx: &mut RequestCtx, p: &Provider) -> SessionState {
    let name = session_cookie(request, p);
    // Only what this gateway issues (32 bytes, base64url) is looked up: a made-up cookie costs
    // neither a probe of the zone nor a read of the shared store.
    let Some(id) = cookie(request, name).filter(|c| {
        c.len() == 43
            && c.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) else {
        return SessionState::None;
    };
    let key = key_of(b"s:", id);
    let now = now_s();
    let mut meta = with_store(p, |st| {
        let i = st.find(&key, KIND_SESSION, now)?;
        let s = st.slot(i);
        // Moved at most once a second per session.
        let idle = now + p.session_idle_timeout;
        if s.idle_until < idle {
            s.idle_until = idle.min(s.expires);
        }
        Some((i, s.version))
    })
    .flatten();
    // With a shared store: a session this node does not hold (made on another node), or
    // holds for longer than REVALIDATE, is read from the store first.
    if p.store.is_some() {
        let stale = meta.is_none()
            || with_store(p, |st| {
                meta.is_some_and(|(i, _)| now.saturating_sub(st.slot(i).checked) >= REVALIDATE)
            })
            .unwrap_or(false);
        if stale {
            match pull(request, ctx, p, &key, now) {
                Pulled::Wait => return SessionState::Wait,
                Pulled::Gone => {
                    with_store(p, |st| {
                        if let Some(i) = st.find(&key, KIND_SESSION, now) {
                            st.free(i);
                        }
                    });
                    SESSIONS.with(|c| c.borrow_mut().remove(&key));
                    return SessionState::None;
                }
                Pulled::Kept => {}
            }
            meta = with_store(p, |st| {
                let i = st.find(&key, KIND_SESSION, now)?;
                Some((i, st.slot(i).version))
            })
            .flatten();
        }
    }
    let Some((slot, version)) = meta else {
        SESSIONS.with(|c| c.borrow_mut().remove(&key));
        return SessionState::None;
    };
    let cached = SESSIONS.with(|c| {
        c.borrow()
            .get(&key)
            .filter(|e| e.version == version)
            .map(|e| {
                (
                    e.verified.clone(),
                    e.access_token.clone(),
                    e.access_exp,
                    e.has_refresh,
                )
            })
    });
    let (verified, access_token, access_exp, has_refresh) = match cached {
        Some(c) => c,
        None => {
            let blob = with_store(p, |st| st.blob(slot)).unwrap_or_default();
            let Some(sess) = Session::decode(&blob) else {
                return SessionState::None;
            };
            let Ok(v) = decode_trusted(sess.id_token.as_bytes(), MAX_TOKEN) else {
                return SessionState::None;
            };
            let v = Arc::new(v);
            let at: Rc<str> = sess.access_token.as_str().into();
            SESSIONS.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() > 100_000 {
                    c.clear();
                }
                c.insert(
                    key,
                    Cached {
                        version,
                        verified: v.clone(),
                        access_token: at.clone(),
                        access_exp: sess.access_exp,
                        has_refresh: !sess.refresh_token.is_empty(),
                    },
                )
            });
            (v, at, sess.access_exp, !sess.refresh_token.is_empty())
        }
    };
    // Refresh ahead of the access token's expiry, one request per session.
    if has_refresh && access_exp > 0 && now + p.refresh_before >= access_exp {
        let lease = with_store(p, |st| {
            let s = st.slot(slot);
            if s.key == key && s.refreshing_until <= now {
                s.refreshing_until = now + REFRESH_LEASE;
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
        if lease {
            start_refresh(request, p, key, slot);
        }
        if now >= access_exp && p.pass_access_token {
            // The access token is gone: wait for the refresh (or the session's end).
            let since = *ctx.jwks.wait_since.get_or_insert(now_ms());
            if now_ms().saturating_sub(since) < EXCHANGE_WAIT_MS {
                jwks::wait(request, ctx);
                return SessionState::Wait;
            }
            return SessionState::None;
        }
    }
    ctx.auth = Some(AuthOutcome {
        runtime: ptr::null(),
        verified: Some(verified),
        error: None,
        denied_by_requirement: false,
    });
    if p.pass_access_token && !access_token.is_empty() {
        let v = format!("Bearer {access_token}");
        if set_request_header(request, "Authorization", v.as_bytes()).is_none() {
            return SessionState::None;
        }
    }
    SessionState::Valid
}

/// Replaces (or adds) a request header for the upstream.
fn set_request_header(request: &mut Request, name: &'static str, value: &[u8]) -> Option<()> {
    let r: *mut ngx_http_request_t = request.as_mut();
    // SAFETY: the live request; the value is copied into its pool.
    unsafe {
        let pool = (*r).pool;
        let mut part: *mut nginx_sys::ngx_list_part_t = &mut (*r).headers_in.headers.part;
        while !part.is_null() {
            let elts = (*part).elts.cast::<nginx_sys::ngx_table_elt_t>();
            for i in 0..(*part).nelts {
                let h = &mut *elts.add(i);
                if h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
                    let data = nginx_sys::ngx_pnalloc(pool, value.len()).cast::<u8>();
                    if data.is_null() {
                        return None;
                    }
                    ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
                    h.value = nginx_sys::ngx_str_t {
                        len: value.len(),
                        data,
                    };
                    return Some(());
                }
            }
            part = (*part).next;
        }
        let h = nginx_sys::ngx_list_push(&mut (*r).headers_in.headers)
            .cast::<nginx_sys::ngx_table_elt_t>();
        if h.is_null() {
            return None;
        }
        ptr::write_bytes(h, 0, 1);
        nginx_sys::add_to_ngx_table(h, pool, name, value)
    }
}

/// The discovery document (waiting for its fetch when needed).
fn discovery(
    request: &mut Request,
    ctx: &mut RequestCtx,
    p: &Provider,
) -> Result<gateway_core::jwks::Discovery, ngx_int_t> {
    match jwks::plan(request, ctx, &p.remote, false) {
        Plan::Wait => {
            jwks::wait(request, ctx);
            return Err(nginx_sys::NGX_AGAIN as ngx_int_t);
        }
        Plan::Verify | Plan::Unavailable => {}
    }
    match jwks::discovery(&p.remote, request.log()) {
        Some(d) if d.issuer == p.issuer => Ok(d),
        Some(d) => {
            gw_log!(
                NGX_LOG_ERR,
                request.log(),
                "oidc: the discovery document names the issuer \"{}\", not \"{}\" (issuer_mismatch)",
                d.issuer.escape_default(),
                p.issuer
            );
            Err(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)
        }
        None => {
            gw_log!(
                NGX_LOG_ERR,
                request.log(),
                "oidc: no usable discovery document"
            );
            Err(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)
        }
    }
}

/// No session, a browser: off to the provider.
fn login(request: &mut Request, ctx: &mut RequestCtx, p: &Provider) -> ngx_int_t {
    let d = match discovery(request, ctx, p) {
        Ok(d) => d,
        Err(rc) => return rc,
    };
    let Some(auth_ep) = d.authorization_endpoint.as_deref() else {
        gw_log!(
            NGX_LOG_ERR,
            request.log(),
            "oidc: the discovery document has no authorization_endpoint"
        );
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let Some(origin) = origin(request) else {
        return nginx_sys::NGX_HTTP_BAD_REQUEST as ngx_int_t;
    };
    let (Some(state), Some(nonce), Some(verifier)) = (
        rp::random_token(32),
        rp::random_token(32),
        rp::random_token(32),
    ) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let r = request.as_ref();
    let return_to = rp::return_path(r.unparsed_uri.as_bytes());
    let now = now_s();
    let pending = Pending {
        nonce: nonce.clone(),
        verifier: verifier.clone(),
        return_to,
        created: now,
    };
    let key = key_of(b"p:", state.as_bytes());
    let stored = with_store(p, |st| {
        st.put(
            &key,
            KIND_PENDING,
            &pending.encode(),
            now + PENDING_TTL,
            now + PENDING_TTL,
            now,
        )
    })
    .unwrap_or(false);
    report_eviction(p, request.log());
    if !stored {
        gw_log!(
            NGX_LOG_ERR,
            request.log(),
            "oidc: no room for a login in the session zone"
        );
        return nginx_sys::NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t;
    }
    let redirect_uri = format!("{origin}{}", p.redirect_uri);
    let challenge = rp::pkce_challenge(&verifier);
    let location = rp::with_query(
        auth_ep,
        &[
            ("response_type", "code"),
            ("client_id", &p.client_id),
            ("redirect_uri", &redirect_uri),
            ("scope", &p.scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    // Other logins of this browser under way (another tab) keep their state.
    let states = rp::states_with(cookie(request, &p.state_cookie()), &state);
    let state_cookie = rp::set_cookie(
        &p.state_cookie(),
        &states,
        is_https(request),
        Some(PENDING_TTL),
    );
    gw_log!(
        NGX_LOG_INFO,
        request.log(),
        "oidc: no session, redirecting to the provider"
    );
    redirect(request, &location, &[state_cookie])
}

/// Answers 302 with `Location` and cookies.
fn redirect(request: &mut Request, location: &str, cookies: &[String]) -> ngx_int_t {
    for c in cookies {
        if push_header(request, "Set-Cookie", c.as_bytes()).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    }
    if push_header(request, "Cache-Control", b"no-store").is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let r: *mut ngx_http_request_t = request.as_mut();
    // SAFETY: the live request. For a redirect status nginx's send_response makes the value
    // the `Location` header (and answers with its own short page).
    unsafe {
        let rc = super::send_body(r, 302, "text/html", location.as_bytes());
        nginx_sys::ngx_http_finalize_request(r, rc);
    }
    nginx_sys::NGX_DONE as ngx_int_t
}

/// A refusal during sign-in: logged with its reason, answered with a problem.
fn refuse(request: &mut Request, status: u16, code: &'static str, detail: &str) -> ngx_int_t {
    gw_log!(
        NGX_LOG_INFO,
        request.log(),
        "oidc refused: {detail} ({code}), status {status}"
    );
    let mut pr = gateway_core::log::Record::new();
    pr.str("type", b"about:blank");
    pr.str(
        "title",
        if status == 400 {
            b"Bad Request"
        } else {
            b"Unauthorized"
        },
    );
    pr.int("status", i64::from(status));
    pr.string("detail", detail.as_bytes().to_vec());
    pr.str("reason", code.as_bytes());
    let mut body = Vec::with_capacity(200);
    pr.write_line(&mut body);
    let r: *mut ngx_http_request_t = request.as_mut();
    // SAFETY: the live request.
    unsafe {
        let rc = super::send_body(r, status as ngx_int_t, "application/problem+json", &body);
        nginx_sys::ngx_http_finalize_request(r, rc);
    }
    nginx_sys::NGX_DONE as ngx_int_t
}

/// The provider sent the browser back: check the state, exchange the code, validate the ID
/// token, open a session.
fn callback(request: &mut Request, ctx: &mut RequestCtx, p: &Provider) -> ngx_int_t {
    let now = now_s();
    // A second pass (after the exchange or a fetch): the result is waiting.
    if let Some(job) = ctx.oidc.exchange {
        let result = EXCHANGES.with(|e| e.borrow_mut().remove(&job));
        let Some(result) = result else {
            let since = *ctx.oidc.waiting_since.get_or_insert(now_ms());
            if now_ms().saturating_sub(since) < EXCHANGE_WAIT_MS {
                jwks::wait(request, ctx);
                return nginx_sys::NGX_AGAIN as ngx_int_t;
            }
            return refuse(
                request,
                401,
                "code_exchange_failed",
                "the token endpoint did not answer in time",
            );
        };
        ctx.oidc.exchange = None;
        return finish_login(request, ctx, p, result);
    }
    let args = request.as_ref().args.as_bytes().to_vec();
    if let Some(e) = rp::query_arg(&args, "error") {
        let e: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return refuse(
            request,
            401,
            "provider_error",
            &format!("the provider answered error \"{e}\""),
        );
    }
    // RFC 9207: a provider that names itself in the callback must be ours (a mix-up attack
    // sends another provider's answer here).
    if let Some(iss) = rp::query_arg(&args, "iss") {
        if iss != p.issuer {
            return refuse(
                request,
                400,
                "issuer_mismatch",
                "the callback comes from another issuer",
            );
        }
    }
    let (Some(code), Some(state)) = (rp::query_arg(&args, "code"), rp::query_arg(&args, "state"))
    else {
        return refuse(
            request,
            400,
            "bad_callback",
            "the callback has no code or state",
        );
    };
    // The state must be the one this browser was given (its cookie)...
    let bound = cookie(request, &p.state_cookie())
        .is_some_and(|c| rp::cookie_states(c).contains(&state.as_bytes()));
    if !bound {
        return refuse(
            request,
            400,
            "state_mismatch",
            "the state is not the one this browser was given",
        );
    }
    // ... and a login under way, used once.
    if ctx.oidc.pending.is_none() {
        let key = key_of(b"p:", state.as_bytes());
        let pending = with_store(p, |st| {
            let i = st.find(&key, KIND_PENDING, now)?;
            let b = st.blob(i);
            st.free(i);
            Pending::decode(&b)
        })
        .flatten();
        let Some(pending) = pending else {
            return refuse(
                request,
                400,
                "state_unknown",
                "no login under way has this state (expired or already used)",
            );
        };
        ctx.oidc.pending = Some(pending);
        ctx.oidc.state = state.clone();
    }
    // The discovery document and the keys, then the exchange.
    let d = match discovery(request, ctx, p) {
        Ok(d) => d,
        Err(rc) => return rc,
    };
    let Some(origin) = origin(request) else {
        return nginx_sys::NGX_HTTP_BAD_REQUEST as ngx_int_t;
    };
    let pending = ctx.oidc.pending.clone().unwrap_or_else(|| Pending {
        nonce: String::new(),
        verifier: String::new(),
        return_to: "/".into(),
        created: now,
    });
    let redirect_uri = format!("{origin}{}", p.redirect_uri);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", pending.verifier.as_str()),
    ];
    let _ = d;
    let job = NEXT_EXCHANGE.with(|n| {
        let mut n = n.borrow_mut();
        *n += 1;
        *n
    });
    let mut assertion = String::new();
    let post = token_post(p, &mut form, &mut assertion);
    let started = fetch::start_post(
        request,
        &p.token_request,
        post,
        Box::new(move |a: &fetch::Answer| {
            let r = exchange_result(a);
            EXCHANGES.with(|e| bounded_insert(&mut e.borrow_mut(), job, r));
            jwks::wake_waiters();
        }),
    );
    if started.is_err() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    ctx.oidc.exchange = Some(job);
    ctx.oidc.waiting_since = Some(now_ms());
    jwks::wait(request, ctx);
    nginx_sys::NGX_AGAIN as ngx_int_t
}

/// The form and headers of a token request, with the client's authentication.
fn token_post<'a>(
    p: &'a Provider,
    form: &mut Vec<(&'a str, &'a str)>,
    assertion: &'a mut String,
) -> fetch::Post {
    let mut headers = Vec::new();
    if let Some(signer) = p.assertion_signer.as_deref() {
        let endpoint = token_endpoint(p).unwrap_or_default();
        *assertion = rp::client_assertion(
            signer,
            p.assertion_kid.as_deref(),
            &p.client_id,
            &endpoint,
            now_s(),
        )
        .unwrap_or_default();
        form.push(("client_id", p.client_id.as_str()));
        form.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
        form.push(("client_assertion", assertion.as_str()));
        return fetch::Post {
            headers,
            body: rp::form(form).into_bytes(),
        };
    }
    match (&p.client_auth, p.client_secret.as_deref()) {
        (ClientAuth::Basic, Some(secret)) => {
            headers.push(("Authorization", rp::basic_auth(&p.client_id, secret)));
        }
        (ClientAuth::Post, Some(secret)) => {
            form.push(("client_id", p.client_id.as_str()));
            form.push(("client_secret", secret));
        }
        _ => form.push(("client_id", p.client_id.as_str())),
    }
    fetch::Post {
        headers,
        body: rp::form(form).into_bytes(),
    }
}

fn exchange_result(a: &fetch::Answer) -> Result<rp::Tokens, String> {
    if a.incomplete {
        return Err("the token response could not be read whole (raise subrequest_output_buffer_size in the token location)".into());
    }
    if a.body.len() > MAX_TOKEN {
        return Err("the token response is too large".into());
    }
    let t = rp::parse_tokens(a.body);
    if a.status != 200 {
        return Err(match t {
            Err(e) => format!("the token endpoint answered {} ({e})", a.status),
            Ok(_) => format!("the token endpoint answered {}", a.status),
        });
    }
    t
}

/// The keys of the provider, for the ID token.
fn verify_id_token(request: &Request, p: &Provider, token: &str) -> Result<Verified, &'static str> {
    let snap = jwks::snapshot_now(&p.remote);
    let empty = Arc::new(gateway_core::jwt::KeySet::new());
    let Some((keys, allowed)) =
        jwks::current(&p.current, &empty, None, &p.remote, &snap, request.log())
    else {
        return Err("keys_unavailable");
    };
    decode_and_verify_signature(token.as_bytes(), &keys, allowed, MAX_TOKEN).map_err(|e| e.code())
}

fn finish_login(
    request: &mut Request,
    ctx: &mut RequestCtx,
    p: &Provider,
    result: Result<rp::Tokens, String>,
) -> ngx_int_t {
    let tokens = match result {
        Ok(t) => t,
        Err(e) => {
            gw_log!(
                NGX_LOG_ERR,
                request.log(),
                "oidc: code exchange failed: {e}"
            );
            return refuse(
                request,
                401,
                "code_exchange_failed",
                "the code could not be exchanged for tokens",
            );
        }
    };
    let Some(id_token) = tokens.id_token.clone() else {
        return refuse(
            request,
            401,
            "id_token_invalid",
            "the token endpoint sent no ID token",
        );
    };
    let pending = ctx.oidc.pending.take();
    let Some(pending) = pending else {
        return refuse(request, 400, "state_unknown", "no login under way");
    };
    let v = match verify_id_token(request, p, &id_token) {
        Ok(v) => v,
        Err(code) => {
            return refuse(
                request,
                401,
                "id_token_invalid",
                &format!("the ID token failed verification ({code})"),
            );
        }
    };
    // SAFETY: nginx keeps `ngx_cached_time` valid.
    let now = unsafe { (*nginx_sys::ngx_cached_time).sec };
    if let Err(code) =
        rp::check_id_token(&v, &p.issuer, &p.client_id, Some(&pending.nonce), now, 60)
    {
        return refuse(
            request,
            401,
            code,
            "the ID token does not belong to this login",
        );
    }
    // A new session, with a new id (never one the browser brought).
    let Some(id) = rp::random_token(32) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let now_s = now_s();
    let sess = Session {
        created: now_s,
        last_seen: now_s,
        access_exp: tokens.expires_in.map_or(0, |e| now_s + e),
        id_token,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token.unwrap_or_default(),
    };
    let key = key_of(b"s:", id.as_bytes());
    let expires = now_s + p.session_timeout;
    let stored = with_store(p, |st| {
        st.put(
            &key,
            KIND_SESSION,
            &sess.encode(),
            expires,
            (now_s + p.session_idle_timeout).min(expires),
            now_s,
        )
    })
    .unwrap_or(false);
    report_eviction(p, request.log());
    if stored {
        store_put(
            p,
            &key,
            &sess.encode(),
            expires.min(now_s + p.session_idle_timeout),
            now_s,
        );
    }
    if !stored {
        gw_log!(
            NGX_LOG_ERR,
            request.log(),
            "oidc: no room for a session in the session zone"
        );
        return nginx_sys::NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t;
    }
    gw_log!(
        NGX_LOG_INFO,
        request.log(),
        "oidc: signed in, sub \"{}\"",
        v.sub().unwrap_or_default().escape_default()
    );
    let secure = is_https(request);
    // This login's state goes; another tab's stays until its own callback.
    let rest = cookie(request, &p.state_cookie())
        .map(|c| rp::states_without(c, &ctx.oidc.state))
        .unwrap_or_default();
    let state_cookie = if rest.is_empty() {
        rp::set_cookie(&p.state_cookie(), "", secure, Some(0))
    } else {
        rp::set_cookie(&p.state_cookie(), &rest, secure, Some(PENDING_TTL))
    };
    let cookies = [
        rp::set_cookie(session_cookie(request, p), &id, secure, None),
        state_cookie,
    ];
    let target = pending.return_to.clone();
    redirect(request, &target, &cookies)
}

/// Refreshes a session's tokens in the background; a failure ends the session.
fn start_refresh(request: &Request, p: &Provider, key: [u8; 32], slot: usize) {
    let blob = with_store(p, |st| {
        let s = *st.slot(slot);
        (s.key == key).then(|| st.blob(slot))
    })
    .flatten();
    let Some(sess) = blob.as_deref().and_then(Session::decode) else {
        return;
    };
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", sess.refresh_token.as_str()),
    ];
    let mut assertion = String::new();
    let post = token_post(p, &mut form, &mut assertion);
    let pp: *const Provider = p;
    let log = request.log();
    let started = fetch::start_post(
        request,
        &p.token_request,
        post,
        Box::new(move |a: &fetch::Answer| {
            // SAFETY: providers live in the configuration pool, which outlives the worker's
            // fetches of this configuration.
            let p = unsafe { &*pp };
            refreshed(p, key, sess, exchange_result(a), a.log);
        }),
    );
    if started.is_err() {
        gw_log!(NGX_LOG_ERR, log, "oidc: cannot start a refresh");
        with_store(p, |st| {
            if st.slot(slot).key == key {
                st.slot(slot).refreshing_until = 0;
            }
        });
    }
}

fn refreshed(
    p: &Provider,
    key: [u8; 32],
    old: Session,
    result: Result<rp::Tokens, String>,
    log: *mut nginx_sys::ngx_log_t,
) {
    let now = now_s();
    let new = match result {
        Ok(t) => {
            // A new ID token must be the same person's, from the same provider.
            let id_token = match &t.id_token {
                Some(tok) => match decode_trusted(tok.as_bytes(), MAX_TOKEN) {
                    Ok(v) if v.iss() == Some(p.issuer.as_str()) && v.sub().is_some() => tok.clone(),
                    _ => old.id_token.clone(),
                },
                None => old.id_token.clone(),
            };
            Some(Session {
                created: old.created,
                last_seen: now,
                access_exp: t.expires_in.map_or(0, |e| now + e),
                id_token,
                access_token: t.access_token,
                refresh_token: t.refresh_token.unwrap_or(old.refresh_token),
            })
        }
        Err(e) => {
            gw_log!(
                NGX_LOG_INFO,
                log,
                "oidc: refresh failed, the session ends: {e}"
            );
            None
        }
    };
    with_store(p, |st| {
        let Some(i) = st.find(&key, KIND_SESSION, now) else {
            return;
        };
        match &new {
            Some(s) => {
                let (expires, idle) = {
                    let sl = *st.slot(i);
                    (sl.expires, sl.idle_until)
                };
                if !st.put(&key, KIND_SESSION, &s.encode(), expires, idle, now) {
                    st.free(i);
                }
            }
            None => st.free(i),
        }
    });
    match &new {
        Some(s) => store_put(p, &key, &s.encode(), now + p.session_idle_timeout, now),
        None => store_del(p, &key),
    }
    SESSIONS.with(|c| c.borrow_mut().remove(&key));
    jwks::wake_waiters();
}

/// Logout: the session goes (server side and cookie), then RP-initiated logout at the
/// provider. A cross-site GET (a link or image on another site) only gets a confirmation form.
fn logout(request: &mut Request, p: &Provider) -> ngx_int_t {
    let r = request.as_ref();
    let post = r.method_name.as_bytes() == b"POST";
    let site = header(request, b"sec-fetch-site");
    let same_site = matches!(site, None | Some(b"same-origin") | Some(b"none"));
    if !post && !same_site {
        let body = b"<!doctype html><form method=\"post\"><button>Sign out</button></form>\n";
        let rp_: *mut ngx_http_request_t = request.as_mut();
        // SAFETY: the live request.
        unsafe {
            let rc = super::send_body(rp_, 200, "text/html", body);
            nginx_sys::ngx_http_finalize_request(rp_, rc);
        }
        return nginx_sys::NGX_DONE as ngx_int_t;
    }
    let name = session_cookie(request, p);
    let mut id_token = None;
    if let Some(id) = cookie(request, name) {
        let key = key_of(b"s:", id);
        let now = now_s();
        id_token = with_store(p, |st| {
            let i = st.find(&key, KIND_SESSION, now)?;
            let b = st.blob(i);
            st.free(i);
            Session::decode(&b).map(|s| s.id_token)
        })
        .flatten();
        SESSIONS.with(|c| c.borrow_mut().remove(&key));
        store_del(p, &key);
    }
    let secure = is_https(request);
    let cookies = [rp::set_cookie(name, "", secure, Some(0))];
    let end_session =
        jwks::discovery(&p.remote, request.log()).and_then(|d| d.end_session_endpoint);
    let after = p.post_logout_uri.clone().unwrap_or_else(|| "/".into());
    let location = match (end_session, id_token) {
        (Some(ep), Some(hint)) => {
            let mut q = vec![
                ("id_token_hint", hint.as_str()),
                ("client_id", p.client_id.as_str()),
            ];
            if p.post_logout_uri.is_some() {
                q.push(("post_logout_redirect_uri", after.as_str()));
            }
            rp::with_query(&ep, &q)
        }
        _ => after,
    };
    gw_log!(NGX_LOG_INFO, request.log(), "oidc: signed out");
    redirect(request, &location, &cookies)
}

/// The token endpoint of the provider's discovery document (the audience of assertions).
fn token_endpoint(p: &Provider) -> Option<String> {
    let log = ngx::log::ngx_cycle_log().as_ptr();
    jwks::discovery(&p.remote, log)?.token_endpoint
}

/// `$oidc_jwks_uri`, `$oidc_token_endpoint`: where the key-request and token-request
/// locations `proxy_pass` to, from the provider's discovery document.
pub fn endpoint(request: &Request, which: usize) -> Option<String> {
    // SAFETY: `main` of a live request is live.
    let main = unsafe { Request::from_ngx_http_request(request.as_ref().main) };
    let lcf = <super::GatewayModule as ngx::http::HttpModuleLocationConf>::location_conf(main)?;
    let pp = (*lcf.oidc.as_ref()?)?;
    // SAFETY: providers live in the configuration pool.
    let p = unsafe { &*pp };
    let d = jwks::discovery(&p.remote, request.log())?;
    match which {
        0 => Some(d.jwks_uri),
        _ => d.token_endpoint,
    }
}

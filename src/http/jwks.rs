//! Remote key sets (`auth_jwt_key_request`) and discovery documents
//! (`auth_jwt_oidc_discovery`).
//!
//! A document is fetched by a detached subrequest (`fetch.rs`: the client whose request
//! triggers a fetch neither shapes it nor can end it), kept in the `gateway_jwks` shared zone
//! so one fetch serves every worker, refreshed when stale or when a token names an unknown
//! `kid` (at most once per refresh interval, single-flight across workers through a lease in
//! the zone), and kept in force while the provider fails. Each worker parses a fetched
//! document once per version, whatever the number of locations using it.
//!
//! The zone holds one entry per URI, allocated from its slab pool when the URI is first used;
//! a reload frees the entries of URIs the new configuration no longer names, and documents
//! stale beyond `auth_jwt_key_max_stale` are freed when room is needed. When there is no room
//! for an entry or a fetched document, an `[error]` names the zone, the fetch counts as failed
//! and the last good document stays in force.

use super::now_ms;
use core::ffi::c_void;
use core::ptr;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

use gateway_core::jwks::{
    load_discovery, load_response, parse_max_age, Discovery, Response, Timing,
};
use gateway_core::jwt::{AlgSet, KeySet};
use gateway_core::oidc::check_jwks_uri;
use nginx_sys::{
    ngx_add_timer, ngx_conf_t, ngx_event_t, ngx_http_core_run_phases, ngx_http_request_t,
    ngx_int_t, ngx_log_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock,
    ngx_slab_alloc, ngx_slab_alloc_locked, ngx_slab_free_locked, ngx_slab_pool_t, ngx_str_t,
    NGX_ERROR, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::Request;

use super::{fetch, guard_conf, RequestCtx};

/// `auth_jwt_key_request` settings of a location.
#[derive(Debug, Clone)]
pub struct Remote {
    pub uri: String,
    /// `auth_jwt_oidc_discovery`: the discovery document's location, fetched first.
    pub discovery: Option<String>,
    /// `auth_jwt_oidc_discovery ... allow_http`: an `http://` `jwks_uri` is accepted.
    pub allow_http: bool,
    pub timing: Timing,
    /// Status when no usable key set is available (`auth_jwt_key_unavailable`).
    pub unavailable: u16,
}

impl Remote {
    fn target(&self, kind: Kind) -> &str {
        match kind {
            Kind::Keys => &self.uri,
            Kind::Discovery => self.discovery.as_deref().unwrap_or(&self.uri),
        }
    }
}

/// The keys a location verifies with right now: its files plus the fetched set.
pub struct Current {
    pub generation: u64,
    pub keys: Arc<KeySet>,
    pub allowed: AlgSet,
}

/// Per location runtime and worker: the keys of one fetched generation as the location uses
/// them (merged with its key files, if any) and the algorithms they allow. The fetched set
/// itself is parsed once per worker (`fetched_keys`), not per location.
#[derive(Default)]
pub struct CurrentCache(pub RefCell<Option<Current>>);

impl std::fmt::Debug for CurrentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCache")
    }
}

const MAGIC: u64 = 0x6777_6a77_6b73_0002;
/// Default `auth_jwt_key_zone`.
pub const DEFAULT_ZONE_SIZE: usize = 8 * 1024 * 1024;
/// Smallest `auth_jwt_key_zone` (8 pages, as nginx's own zones).
pub const MIN_ZONE_SIZE: usize = 32 * 1024;
/// The shared zone's name (reserved: `rate_limit_zone` refuses it).
pub const ZONE_NAME: &str = "gateway_jwks";
/// Longest a fetch may hold the lease (the subrequest's own timeouts end it sooner).
const LEASE_MS: u64 = 60_000;
/// Largest key set or discovery document accepted.
const MAX_BODY: usize = 1 << 20;
/// How often a waiting request looks again at a fetch of another worker.
const POLL_MS: u64 = 20;

/// One URI's document, in the zone's slab pool; the URI's bytes follow the struct.
#[repr(C)]
struct Entry {
    next: *mut Entry,
    uri_len: usize,
    /// 0 until a document is stored; then a zone-wide unique number (`Shared::generations`).
    generation: u64,
    fresh_until: u64,
    good_until: u64,
    last_attempt: u64,
    lease_until: u64,
    fail_logged: u64,
    blob: *mut u8,
    blob_len: usize,
}

impl Entry {
    fn uri(&self) -> &[u8] {
        // SAFETY: entries are allocated with their URI right after the struct.
        unsafe {
            core::slice::from_raw_parts((self as *const Entry).add(1).cast::<u8>(), self.uri_len)
        }
    }

    /// Whether a failure should be logged now (once per refresh interval per URI).
    fn log_failure(&mut self, now: u64, refresh_ms: u64) -> bool {
        let log = self.fail_logged == 0 || now.saturating_sub(self.fail_logged) >= refresh_ms;
        if log {
            self.fail_logged = now;
        }
        log
    }
}

#[repr(C)]
struct Shared {
    magic: u64,
    /// Counter of stored documents: a generation is never reused, not even by a URI whose
    /// entry was freed and created again, so per-worker caches keyed by it are never stale.
    generations: u64,
    head: *mut Entry,
    /// When "no room for an entry" was last logged.
    no_room_logged: u64,
}

static ZONE: AtomicPtr<ngx_shm_zone_t> = AtomicPtr::new(ptr::null_mut());

/// Adds the `gateway_jwks` zone (postconfiguration, when a location uses key requests).
/// `uris` are the key and discovery URIs of the configuration (in the configuration's main
/// conf, alive as long as the cycle): a reload frees the entries of the others.
pub fn add_zone(
    cf: &mut ngx_conf_t,
    size: usize,
    uris: *const Vec<String>,
) -> Result<*mut ngx_shm_zone_t, String> {
    let mut name = ngx_str_t {
        len: ZONE_NAME.len(),
        data: ZONE_NAME.as_ptr().cast_mut(),
    };
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
        return Err("cannot add the gateway_jwks shared zone".into());
    }
    // SAFETY: `shm` was just returned by nginx.
    unsafe {
        (*shm).init = Some(init_zone);
        (*shm).data = uris.cast_mut().cast();
    }
    Ok(shm)
}

unsafe extern "C" fn init_zone(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx set the zone up as a slab pool; `data` holds our block once allocated
        // (kept across reloads, so fetched documents survive them); `(*shm).data` is the URI
        // list of the new configuration (add_zone). Old workers may still use the zone while
        // the master runs this: the entries are changed under the mutex.
        unsafe {
            let shpool = (*shm).shm.addr.cast::<ngx_slab_pool_t>();
            // A full zone is reported by our own [error] line naming the document, not by
            // nginx's [crit] "ngx_slab_alloc() failed".
            (*shpool).set_log_nomem(0);
            let s = (*shpool).data.cast::<Shared>();
            if !s.is_null() && (*s).magic == MAGIC {
                let uris = &*(*shm).data.cast::<Vec<String>>();
                ngx_shmtx_lock(&mut (*shpool).mutex);
                let dropped = drop_unconfigured(s, shpool, uris, now_ms());
                ngx_shmtx_unlock(&mut (*shpool).mutex);
                if dropped > 0 {
                    gw_log!(
                        NGX_LOG_NOTICE,
                        (*shm).shm.log,
                        "jwt: freed the entries of {dropped} URIs no longer configured in the \"{ZONE_NAME}\" zone"
                    );
                }
                return NGX_OK as ngx_int_t;
            }
            let s = ngx_slab_alloc(shpool, core::mem::size_of::<Shared>()).cast::<Shared>();
            if s.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            ptr::write_bytes(s, 0, 1);
            (*s).magic = MAGIC;
            (*shpool).data = s.cast();
        }
        NGX_OK as ngx_int_t
    })
}

/// Frees the entries whose URI `uris` does not name (unless a fetch holds their lease).
///
/// # Safety
/// The zone's mutex is held; `s` is its block.
unsafe fn drop_unconfigured(
    s: *mut Shared,
    shpool: *mut ngx_slab_pool_t,
    uris: &[String],
    now: u64,
) -> usize {
    let mut dropped = 0;
    // SAFETY: per the function's contract, the list is ours while the mutex is held.
    unsafe {
        let mut link: *mut *mut Entry = &mut (*s).head;
        while !(*link).is_null() {
            let e = *link;
            let keep = (*e).lease_until > now || uris.iter().any(|u| u.as_bytes() == (*e).uri());
            if keep {
                link = &mut (*e).next;
                continue;
            }
            *link = (*e).next;
            if !(*e).blob.is_null() {
                ngx_slab_free_locked(shpool, (*e).blob.cast());
            }
            ngx_slab_free_locked(shpool, e.cast());
            dropped += 1;
        }
    }
    dropped
}

/// Per worker: remembers this configuration's zone.
pub fn attach(shm: *mut ngx_shm_zone_t) {
    ZONE.store(shm, Ordering::Relaxed);
}

/// The zone, locked.
struct Zone {
    s: *mut Shared,
    pool: *mut ngx_slab_pool_t,
}

/// Runs `f` on the zone under its mutex; `None` when this configuration has no zone.
fn with_zone<T>(f: impl FnOnce(&mut Zone) -> T) -> Option<T> {
    let shm = ZONE.load(Ordering::Relaxed);
    if shm.is_null() {
        return None;
    }
    // SAFETY: the zone is mapped for the process's life; the block in `data` was set up by
    // init_zone; every access holds the slab pool's mutex.
    unsafe {
        let pool = (*shm).shm.addr.cast::<ngx_slab_pool_t>();
        let s = (*pool).data.cast::<Shared>();
        if s.is_null() || (*s).magic != MAGIC {
            return None;
        }
        ngx_shmtx_lock(&mut (*pool).mutex);
        let r = f(&mut Zone { s, pool });
        ngx_shmtx_unlock(&mut (*pool).mutex);
        Some(r)
    }
}

impl Zone {
    fn find(&mut self, uri: &str) -> Option<&mut Entry> {
        // SAFETY: the mutex is held (with_zone); entries are linked from the block's head.
        unsafe {
            let mut e = (*self.s).head;
            while !e.is_null() {
                if (*e).uri() == uri.as_bytes() {
                    return Some(&mut *e);
                }
                e = (*e).next;
            }
        }
        None
    }

    /// Allocates `size` bytes; when the zone is full, frees first the documents no worker
    /// may use any more (stale beyond `auth_jwt_key_max_stale`, no fetch under way).
    fn alloc(&mut self, size: usize, now: u64) -> *mut u8 {
        // SAFETY: the mutex is held.
        unsafe {
            let p = ngx_slab_alloc_locked(self.pool, size).cast::<u8>();
            if !p.is_null() {
                return p;
            }
            let mut e = (*self.s).head;
            while !e.is_null() {
                if !(*e).blob.is_null() && (*e).good_until <= now && (*e).lease_until <= now {
                    ngx_slab_free_locked(self.pool, (*e).blob.cast());
                    (*e).blob = ptr::null_mut();
                    (*e).blob_len = 0;
                }
                e = (*e).next;
            }
            ngx_slab_alloc_locked(self.pool, size).cast::<u8>()
        }
    }

    /// The entry for `uri`, created if needed; `None` when the zone has no room for it.
    fn find_or_create(&mut self, uri: &str, now: u64) -> Option<&mut Entry> {
        if self.find(uri).is_some() {
            return self.find(uri);
        }
        let size = core::mem::size_of::<Entry>() + uri.len();
        let p = self.alloc(size, now).cast::<Entry>();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` has room for the entry and its URI; the mutex is held.
        unsafe {
            ptr::write_bytes(p, 0, 1);
            (*p).uri_len = uri.len();
            ptr::copy_nonoverlapping(uri.as_ptr(), p.add(1).cast::<u8>(), uri.len());
            (*p).next = (*self.s).head;
            (*self.s).head = p;
            Some(&mut *p)
        }
    }

    /// Whether "no room for an entry" should be logged now (once per interval, zone-wide).
    fn log_no_room(&mut self, now: u64, refresh_ms: u64) -> bool {
        // SAFETY: the mutex is held.
        let last = unsafe { &mut (*self.s).no_room_logged };
        let log = *last == 0 || now.saturating_sub(*last) >= refresh_ms;
        if log {
            *last = now;
        }
        log
    }
}

/// What `gateway_status` shows of the zone: per URI, whether a document is held, until when
/// it is fresh, and whether a fetch is under way.
pub fn status() -> Vec<serde_json::Value> {
    let now = now_ms();
    with_zone(|z| {
        let mut out = Vec::new();
        // SAFETY: the mutex is held (with_zone); entries are linked from the block's head.
        unsafe {
            let mut e = (*z.s).head;
            while !e.is_null() {
                let en = &*e;
                out.push(serde_json::json!({
                    "uri": String::from_utf8_lossy(en.uri()),
                    "held": en.generation > 0 && !en.blob.is_null(),
                    "fresh": en.generation > 0 && now < en.fresh_until,
                    "usable": en.generation > 0 && now < en.good_until && !en.blob.is_null(),
                    "fetching": en.lease_until > now,
                    "bytes": en.blob_len,
                }));
                e = en.next;
            }
        }
        out
    })
    .unwrap_or_default()
}

/// What the zone says about a document right now.
#[derive(Default)]
pub struct Snapshot {
    pub generation: u64,
    pub fresh: bool,
    pub usable: bool,
    pub fetching: bool,
    pub recently_tried: bool,
}

fn snapshot_of(uri: &str, remote: &Remote, now: u64) -> Snapshot {
    with_zone(|z| {
        z.find(uri).map(|e| Snapshot {
            generation: e.generation,
            fresh: e.generation > 0 && now < e.fresh_until,
            usable: e.generation > 0 && now < e.good_until && !e.blob.is_null(),
            fetching: e.lease_until > now,
            recently_tried: now.saturating_sub(e.last_attempt) < remote.timing.refresh_ms,
        })
    })
    .flatten()
    .unwrap_or_default()
}

/// The key set's snapshot at the current time.
pub fn snapshot_now(remote: &Remote) -> Snapshot {
    snapshot_of(&remote.uri, remote, now_ms())
}

/// A copy of the stored document of `uri` if it is still the one of `generation`.
fn stored_copy(uri: &str, generation: u64) -> Option<Vec<u8>> {
    with_zone(|z| {
        let e = z.find(uri)?;
        if e.blob.is_null() || e.generation != generation {
            return None;
        }
        // SAFETY: the blob has `blob_len` bytes and the mutex is held while copying.
        Some(unsafe { core::slice::from_raw_parts(e.blob, e.blob_len) }.to_vec())
    })
    .flatten()
}

enum Lease {
    Taken,
    /// A fetch is under way or was tried less than the refresh interval ago.
    Busy,
    /// No room in the zone for the URI's entry.
    NoRoom {
        log: bool,
    },
}

/// Takes the fetch lease for `uri` unless a fetch is under way or one was tried less than the
/// refresh interval ago. Single-flight across workers.
fn try_lease(uri: &str, remote: &Remote, now: u64) -> Lease {
    let refresh = remote.timing.refresh_ms;
    with_zone(|z| {
        let Some(e) = z.find_or_create(uri, now) else {
            return Lease::NoRoom {
                log: z.log_no_room(now, refresh),
            };
        };
        if e.lease_until > now || now.saturating_sub(e.last_attempt) < refresh {
            return Lease::Busy;
        }
        e.lease_until = now + LEASE_MS;
        e.last_attempt = now;
        Lease::Taken
    })
    .unwrap_or(Lease::Busy)
}

/// What became of a fetch's outcome.
enum Stored {
    /// Stored as this generation.
    Ok(u64),
    /// A refused response was recorded.
    Refused { log: bool },
    /// A good response could not be kept: no room in the zone.
    NoRoom { log: bool },
}

/// Records a fetch's outcome and releases the lease. `log`: whether a failure should be
/// logged (once per refresh interval).
fn store(uri: &str, remote: &Remote, result: Result<(&[u8], u64), ()>, now: u64) -> Stored {
    let refresh = remote.timing.refresh_ms;
    with_zone(|z| {
        let Some(e) = z.find_or_create(uri, now) else {
            return Stored::NoRoom {
                log: z.log_no_room(now, refresh),
            };
        };
        let e: *mut Entry = e;
        // SAFETY: `e` is an entry of the locked zone; `alloc` never frees entries.
        let e = unsafe { &mut *e };
        e.lease_until = 0;
        e.last_attempt = now;
        let Ok((body, fresh_ms)) = result else {
            return Stored::Refused {
                log: e.log_failure(now, refresh),
            };
        };
        let blob = z.alloc(body.len().max(1), now);
        if blob.is_null() {
            return Stored::NoRoom {
                log: e.log_failure(now, refresh),
            };
        }
        // SAFETY: the mutex is held; blobs are slab blocks of this zone.
        unsafe {
            ptr::copy_nonoverlapping(body.as_ptr(), blob, body.len());
            if !e.blob.is_null() {
                ngx_slab_free_locked(z.pool, e.blob.cast());
            }
            (*z.s).generations += 1;
            e.generation = (*z.s).generations;
        }
        e.blob = blob;
        e.blob_len = body.len();
        e.fresh_until = now + fresh_ms;
        e.good_until = e.fresh_until + remote.timing.max_stale_ms;
        Stored::Ok(e.generation)
    })
    .unwrap_or(Stored::NoRoom { log: true })
}

thread_local! {
    /// This worker's parsed key sets, by URI: one parse per fetched generation, shared by
    /// every location naming the URI.
    static PARSED_KEYS: RefCell<HashMap<String, (u64, Arc<KeySet>)>> = RefCell::new(HashMap::new());
    /// This worker's parsed discovery documents, by URI.
    static PARSED_DOCS: RefCell<HashMap<String, (u64, Discovery)>> = RefCell::new(HashMap::new());
    /// Requests of this worker waiting for a fetch (woken when one of ours ends).
    static WAITERS: RefCell<Vec<*mut ngx_http_request_t>> = const { RefCell::new(Vec::new()) };
}

fn log_parsed(log: *mut ngx_log_t, what: &str, uri: &str, generation: u64) {
    ngx::ngx_log_debug!(
        mask: ngx::log::DebugMask::Http,
        log,
        "gateway: jwt: parsed {what} of \"{uri}\", generation {generation}"
    );
}

/// The fetched key set of `uri` at `generation`, parsed once per worker.
fn fetched_keys(log: *mut ngx_log_t, uri: &str, generation: u64) -> Option<Arc<KeySet>> {
    let hit = PARSED_KEYS.with(|m| {
        m.borrow()
            .get(uri)
            .filter(|(g, _)| *g == generation)
            .map(|(_, k)| k.clone())
    });
    if hit.is_some() {
        return hit;
    }
    let blob = stored_copy(uri, generation)?;
    let set = KeySet::load_remote(&blob).0.ok()?;
    log_parsed(log, "the key set", uri, generation);
    let set = Arc::new(set);
    PARSED_KEYS.with(|m| {
        m.borrow_mut()
            .insert(uri.to_string(), (generation, set.clone()))
    });
    Some(set)
}

/// The location's current keys (files plus the fetched set of the zone's generation).
/// `None` when no fetched set is usable and there are no files.
pub fn current(
    cache: &CurrentCache,
    static_keys: &Arc<KeySet>,
    algorithms: Option<AlgSet>,
    remote: &Remote,
    snap: &Snapshot,
    log: *mut ngx_log_t,
) -> Option<(Arc<KeySet>, AlgSet)> {
    let effective = |k: &KeySet| match algorithms {
        Some(a) => a.intersect(k.algs()),
        None => k.algs(),
    };
    if !snap.usable {
        return (!static_keys.is_empty()).then(|| (static_keys.clone(), effective(static_keys)));
    }
    if let Some(c) = cache.0.borrow().as_ref() {
        if c.generation == snap.generation {
            return Some((c.keys.clone(), c.allowed));
        }
    }
    let fetched = fetched_keys(log, &remote.uri, snap.generation)?;
    let keys = if static_keys.is_empty() {
        fetched
    } else {
        let mut merged = (**static_keys).clone();
        merged.extend((*fetched).clone());
        Arc::new(merged)
    };
    let allowed = effective(&keys);
    *cache.0.borrow_mut() = Some(Current {
        generation: snap.generation,
        keys: keys.clone(),
        allowed,
    });
    Some((keys, allowed))
}

/// The location's discovery document, parsed once per worker and generation: `None` when
/// there is none usable, or when its `jwks_uri` is not one this location may fetch (`http://`
/// without `allow_http`).
pub fn discovery(remote: &Remote, log: *mut ngx_log_t) -> Option<Discovery> {
    let uri = remote.discovery.as_deref()?;
    discovery_at(remote, uri, &snapshot_of(uri, remote, now_ms()), log)
}

/// `discovery` for a snapshot of the document's entry already taken.
fn discovery_at(
    remote: &Remote,
    uri: &str,
    snap: &Snapshot,
    log: *mut ngx_log_t,
) -> Option<Discovery> {
    if !snap.usable {
        return None;
    }
    let cached = PARSED_DOCS.with(|m| {
        m.borrow()
            .get(uri)
            .filter(|(g, _)| *g == snap.generation)
            .map(|(_, d)| d.clone())
    });
    let doc = match cached {
        Some(d) => d,
        None => {
            let blob = stored_copy(uri, snap.generation)?;
            let d = load_discovery(&json_response(&blob), MAX_BODY).ok()?;
            log_parsed(log, "the discovery document", uri, snap.generation);
            PARSED_DOCS.with(|m| {
                m.borrow_mut()
                    .insert(uri.to_string(), (snap.generation, d.clone()))
            });
            d
        }
    };
    check_jwks_uri(&doc.jwks_uri, remote.allow_http).ok()?;
    Some(doc)
}

fn json_response(body: &[u8]) -> Response<'_> {
    Response {
        status: 200,
        content_type: b"application/json",
        content_encoding: b"",
        body,
    }
}

/// What the access handler should do about the remote set before verifying.
pub enum Plan {
    /// Verify now with the current keys.
    Verify,
    /// A fetch is under way (this request's or another worker's) and is needed: wait.
    Wait,
    /// Nothing usable and nothing to wait for.
    Unavailable,
}

fn waited_too_long(ctx: &RequestCtx, now: u64) -> bool {
    ctx.jwks
        .wait_since
        .is_some_and(|t| now.saturating_sub(t) >= LEASE_MS)
}

/// Decides whether this request must fetch, wait or can verify. `force` asks for a refresh
/// (a token with an unknown `kid`).
pub fn plan(request: &Request, ctx: &mut RequestCtx, remote: &Remote, force: bool) -> Plan {
    let now = now_ms();
    // A fetch this request started: wait for its end (whatever the outcome).
    if let Some(kind) = ctx.jwks.awaiting {
        let snap = snapshot_of(remote.target(kind), remote, now);
        if snap.fetching && !waited_too_long(ctx, now) {
            return Plan::Wait;
        }
        ctx.jwks.awaiting = None;
        match kind {
            Kind::Keys => ctx.jwks.fetched = true,
            Kind::Discovery => ctx.jwks.discovered = true,
        }
    }
    // With discovery, the document comes first: it says where the keys are.
    if let Some(d) = &remote.discovery {
        let mut snap = snapshot_of(d, remote, now);
        if (!snap.usable || !snap.fresh)
            && !ctx.jwks.discovered
            && !snap.fetching
            && !snap.recently_tried
        {
            if let Some(p) = begin(request, ctx, remote, Kind::Discovery, now, snap.usable) {
                return p;
            }
            // Another worker took the lease between the snapshot and now: its fetch is
            // under way, so look again (wait for it rather than give up on a stale view).
            snap = snapshot_of(d, remote, now);
        }
        if !snap.usable {
            return if snap.fetching && !waited_too_long(ctx, now) {
                Plan::Wait
            } else {
                Plan::Unavailable
            };
        }
        // A document naming a jwks_uri this location may not fetch (kept from a reload that
        // removed allow_http, or stored by a location that allows it): nothing to fetch.
        if discovery_at(remote, d, &snap, request.log()).is_none() {
            return Plan::Unavailable;
        }
    }
    let mut snap = snapshot_of(&remote.uri, remote, now);
    let want = !snap.usable || !snap.fresh || force;
    if want && !ctx.jwks.fetched && !snap.fetching && !snap.recently_tried {
        if let Some(p) = begin(request, ctx, remote, Kind::Keys, now, snap.usable) {
            return p;
        }
        // As above: another worker's fetch started in between.
        snap = snapshot_of(&remote.uri, remote, now);
    }
    if snap.usable {
        return Plan::Verify;
    }
    if snap.fetching && !waited_too_long(ctx, now) {
        return Plan::Wait;
    }
    Plan::Unavailable
}

/// Takes the lease of `kind`'s document and starts its fetch. `None` when another worker
/// took the lease first (the caller goes on as if that fetch were under way).
fn begin(
    request: &Request,
    ctx: &mut RequestCtx,
    remote: &Remote,
    kind: Kind,
    now: u64,
    usable: bool,
) -> Option<Plan> {
    let uri = remote.target(kind);
    let fallback = if usable {
        Plan::Verify
    } else {
        Plan::Unavailable
    };
    match try_lease(uri, remote, now) {
        Lease::Busy => None,
        Lease::NoRoom { log } => {
            // No entry, so no record of attempts: counted (and logged) once per interval.
            if log {
                super::metrics::inc_jwks(false);
                gw_log!(
                    NGX_LOG_ERR,
                    request.log(),
                    "jwt: the \"{ZONE_NAME}\" zone is full, no room to keep \"{uri}\"; raise auth_jwt_key_zone (logged once per refresh interval)"
                );
            }
            Some(fallback)
        }
        Lease::Taken => match start_fetch(request, remote, kind) {
            Ok(()) => {
                ctx.jwks.awaiting = Some(kind);
                Some(Plan::Wait)
            }
            Err(()) => {
                super::metrics::inc_jwks(false);
                if let Stored::Refused { log: true } = store(uri, remote, Err(()), now) {
                    gw_log!(
                        NGX_LOG_ERR,
                        request.log(),
                        "jwt: cannot start a fetch from \"{uri}\" (out of memory)"
                    );
                }
                Some(fallback)
            }
        },
    }
}

/// What a fetch is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    Keys,
    Discovery,
}

/// Per-request state of remote keys.
#[derive(Default)]
pub struct FetchState {
    /// A key fetch this request waited for has ended (no second one for the same request).
    pub fetched: bool,
    /// A discovery fetch this request waited for has ended.
    pub discovered: bool,
    /// The fetch this request started and waits for.
    pub awaiting: Option<Kind>,
    /// When the request began waiting (for its own fetch or another worker's).
    pub wait_since: Option<u64>,
    /// The request's pool has the cleanup that removes it from the waiters.
    pub waiter_cleanup: bool,
}

fn start_fetch(request: &Request, remote: &Remote, kind: Kind) -> Result<(), ()> {
    let uri = remote.target(kind).to_string();
    let for_done = (uri.clone(), remote.clone());
    fetch::start(
        request,
        &uri,
        Box::new(move |answer| fetched(kind, &for_done.0, &for_done.1, answer)),
    )?;
    let what = if kind == Kind::Keys {
        "keys"
    } else {
        "the discovery document"
    };
    gw_log!(
        NGX_LOG_INFO,
        request.log(),
        "jwt: fetching {what} from \"{uri}\""
    );
    Ok(())
}

/// A fetch ended: checks the answer, stores it (or records the failure), wakes the waiters.
fn fetched(kind: Kind, uri: &str, remote: &Remote, a: &fetch::Answer) {
    let now = now_ms();
    let log = a.log;
    let resp = Response {
        status: a.status,
        content_type: a.content_type,
        content_encoding: a.header(b"content-encoding"),
        body: a.body,
    };
    // The parsed document, to seed this worker's cache (no second parse on first use).
    let mut parsed_keys = None;
    let mut parsed_doc = None;
    let checked = if a.incomplete {
        Err(
            "the response could not be read whole (see the error above; a body larger than \
             subrequest_output_buffer_size is one cause)"
                .to_string(),
        )
    } else {
        match kind {
            Kind::Keys => {
                let (set, skipped) = load_response(&resp, MAX_BODY);
                for key in &skipped {
                    super::metrics::inc_jwks_key_refused(key.is_symmetric());
                    gw_log!(
                        NGX_LOG_WARN,
                        log,
                        "jwt: key set from \"{uri}\": {}; that key is skipped",
                        key.reason()
                    );
                }
                set.map(|set| {
                    let what = format!("{} keys", set.len());
                    parsed_keys = Some(Arc::new(set));
                    what
                })
            }
            Kind::Discovery => load_discovery(&resp, MAX_BODY).and_then(|d| {
                check_jwks_uri(&d.jwks_uri, remote.allow_http)?;
                let what = format!("jwks_uri \"{}\"", d.jwks_uri);
                parsed_doc = Some(d);
                Ok(what)
            }),
        }
    };
    let fresh = remote
        .timing
        .fresh_for(parse_max_age(a.header(b"cache-control")));
    match checked {
        Ok(what) => match store(uri, remote, Ok((a.body, fresh)), now) {
            Stored::Ok(generation) => {
                super::metrics::inc_jwks(true);
                let label = if kind == Kind::Keys {
                    "the key set"
                } else {
                    "the discovery document"
                };
                log_parsed(log, label, uri, generation);
                if let Some(k) = parsed_keys {
                    PARSED_KEYS.with(|m| m.borrow_mut().insert(uri.to_string(), (generation, k)));
                }
                if let Some(d) = parsed_doc {
                    PARSED_DOCS.with(|m| m.borrow_mut().insert(uri.to_string(), (generation, d)));
                }
                gw_log!(
                    NGX_LOG_INFO,
                    log,
                    "jwt: fetched {what} from \"{uri}\", fresh for {}s",
                    fresh / 1000
                );
            }
            Stored::NoRoom { log: l } | Stored::Refused { log: l } => {
                super::metrics::inc_jwks(false);
                if l {
                    gw_log!(
                        NGX_LOG_ERR,
                        log,
                        "jwt: no room in the \"{ZONE_NAME}\" zone for the response from \"{uri}\" ({} bytes); the last good one stays in force; raise auth_jwt_key_zone (logged once per refresh interval)",
                        a.body.len()
                    );
                }
            }
        },
        Err(why) => {
            super::metrics::inc_jwks(false);
            if let Stored::Refused { log: true } | Stored::NoRoom { log: true } =
                store(uri, remote, Err(()), now)
            {
                gw_log!(NGX_LOG_ERR, log, "jwt: response from \"{uri}\" refused: {why}; the last good one stays in force (logged once per refresh interval)");
            }
        }
    }
    wake_waiters();
}

/// Pool cleanup of a waiting request: it is gone, forget it.
unsafe extern "C" fn forget_waiter(data: *mut c_void) {
    let r = data.cast::<ngx_http_request_t>();
    let _ = std::panic::catch_unwind(|| WAITERS.with(|w| w.borrow_mut().retain(|&x| x != r)));
}

/// Wakes this worker's waiting requests (a fetch of ours has ended), at once rather than at
/// their next poll.
pub(crate) fn wake_waiters() {
    let waiters = WAITERS.with(|w| std::mem::take(&mut *w.borrow_mut()));
    for r in waiters {
        // SAFETY: listed requests are alive (their pool cleanup unlists them) and waiting in
        // `wait`: their write event is armed with our timer.
        unsafe {
            let wev = (*(*r).connection).write;
            if (*wev).timer_set() != 0 {
                nginx_sys::ngx_del_timer(wev);
            }
            (*wev).set_delayed(0);
            nginx_sys::ngx_post_event(wev, ptr::addr_of_mut!(nginx_sys::ngx_posted_events));
        }
    }
}

/// Waits a little (a fetch is under way), then runs the phases again, in the way nginx's
/// limit_req delays a request. A fetch of this worker wakes the request when it ends; one of
/// another worker is polled.
pub fn wait(request: &mut Request, ctx: &mut RequestCtx) {
    let r: *mut ngx_http_request_t = request.as_mut();
    ctx.jwks.wait_since.get_or_insert_with(now_ms);
    if !ctx.jwks.waiter_cleanup {
        // SAFETY: the request's pool lives as long as the request.
        let cln = unsafe { nginx_sys::ngx_pool_cleanup_add((*r).pool, 0) };
        if !cln.is_null() {
            // SAFETY: a fresh cleanup entry of the request's pool.
            unsafe {
                (*cln).handler = Some(forget_waiter);
                (*cln).data = r.cast();
            }
            ctx.jwks.waiter_cleanup = true;
        }
    }
    if ctx.jwks.waiter_cleanup {
        WAITERS.with(|w| {
            let mut w = w.borrow_mut();
            if !w.contains(&r) {
                w.push(r);
            }
        });
    }
    // SAFETY: the live request's connection and write event.
    unsafe {
        (*r).read_event_handler = Some(nginx_sys::ngx_http_test_reading);
        (*r).write_event_handler = Some(wait_done);
        let wev: *mut ngx_event_t = (*(*r).connection).write;
        (*wev).set_delayed(1);
        ngx_add_timer(wev, POLL_MS as nginx_sys::ngx_msec_t);
    }
}

unsafe extern "C" fn wait_done(r: *mut ngx_http_request_t) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: nginx calls the write handler with the live request.
        unsafe {
            let wev = (*(*r).connection).write;
            if (*wev).delayed() != 0 {
                if nginx_sys::ngx_handle_write_event(wev, 0) != NGX_OK as ngx_int_t {
                    nginx_sys::ngx_http_finalize_request(r, 500);
                }
                return;
            }
            WAITERS.with(|w| w.borrow_mut().retain(|&x| x != r));
            (*r).read_event_handler = Some(nginx_sys::ngx_http_block_reading);
            (*r).write_event_handler = Some(ngx_http_core_run_phases);
            ngx_http_core_run_phases(r);
        }
    });
}

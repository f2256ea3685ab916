//! Remote key sets (`auth_jwt_key_request`): fetched with an nginx subrequest, kept in the
//! `gateway_jwks` shared zone so one fetch serves every worker, refreshed when stale or when a
//! token names an unknown `kid` (at most once per refresh interval, single-flight across
//! workers through a lease in the zone), and kept in force while the provider fails.

use super::now_ms;
use core::ffi::c_void;
use core::ptr;
use std::cell::RefCell;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

use gateway_core::jwks::{
    load_discovery, load_response, parse_max_age, Discovery, Response, Timing,
};
use gateway_core::jwt::{AlgSet, KeySet};
use nginx_sys::{
    ngx_add_timer, ngx_conf_t, ngx_event_t, ngx_http_core_run_phases, ngx_http_post_subrequest_t,
    ngx_http_request_t, ngx_http_subrequest, ngx_int_t, ngx_shared_memory_add, ngx_shm_zone_t,
    ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc, ngx_slab_alloc_locked, ngx_slab_free_locked,
    ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_HTTP_SUBREQUEST_IN_MEMORY,
    NGX_HTTP_SUBREQUEST_WAITED, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::Request;

use super::{guard_conf, RequestCtx};

/// `auth_jwt_key_request` settings of a location.
#[derive(Debug, Clone)]
pub struct Remote {
    pub uri: String,
    /// `auth_jwt_oidc_discovery`: the discovery document's location, fetched first.
    pub discovery: Option<String>,
    pub timing: Timing,
    /// Status when no usable key set is available (`auth_jwt_key_unavailable`).
    pub unavailable: u16,
}

/// The keys a location verifies with right now: its files plus the fetched set.
pub struct Current {
    pub generation: u64,
    pub keys: Arc<KeySet>,
    pub allowed: AlgSet,
}

/// Per-worker caches, one per location runtime: the merged key set and the parsed discovery
/// document, each for one generation of the zone's entry.
#[derive(Default)]
pub struct CurrentCache(
    pub RefCell<Option<Current>>,
    pub RefCell<Option<(u64, Discovery)>>,
);

impl std::fmt::Debug for CurrentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCache")
    }
}

const MAGIC: u64 = 0x6777_6a77_6b73_0001;
const ENTRIES: usize = 64;
const ZONE_SIZE: usize = 8 * 1024 * 1024;
/// The shared zone's name (reserved: `rate_limit_zone` refuses it).
pub const ZONE_NAME: &str = "gateway_jwks";
/// Longest a fetch may hold the lease (the subrequest's own timeouts end it sooner).
const LEASE_MS: u64 = 60_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    uri_hash: u64,
    generation: u64,
    fresh_until: u64,
    good_until: u64,
    last_attempt: u64,
    lease_until: u64,
    fail_logged: u64,
    blob: *mut u8,
    blob_len: usize,
}

#[repr(C)]
struct Shared {
    magic: u64,
    entries: [Entry; ENTRIES],
}

static ZONE: AtomicPtr<ngx_shm_zone_t> = AtomicPtr::new(ptr::null_mut());

fn uri_hash(uri: &str) -> u64 {
    // FNV-1a, never 0 (0 marks a free entry).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in uri.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h.max(1)
}

/// Adds the `gateway_jwks` zone (postconfiguration, when a location uses key requests).
pub fn add_zone(cf: &mut ngx_conf_t) -> Result<*mut ngx_shm_zone_t, String> {
    let mut name = ngx_str_t {
        len: ZONE_NAME.len(),
        data: ZONE_NAME.as_ptr().cast_mut(),
    };
    // SAFETY: `cf` is the configuration being parsed; the module static lives forever.
    let shm = unsafe {
        ngx_shared_memory_add(
            cf,
            &mut name,
            ZONE_SIZE,
            ptr::addr_of_mut!(crate::ngx_http_gateway_module).cast(),
        )
    };
    if shm.is_null() {
        return Err("cannot add the gateway_jwks shared zone".into());
    }
    // SAFETY: `shm` was just returned by nginx.
    unsafe { (*shm).init = Some(init_zone) };
    Ok(shm)
}

unsafe extern "C" fn init_zone(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx set the zone up as a slab pool; `data` holds our block once allocated
        // (kept across reloads, so fetched sets survive them).
        unsafe {
            let shpool = (*shm).shm.addr.cast::<ngx_slab_pool_t>();
            let s = (*shpool).data.cast::<Shared>();
            if !s.is_null() && (*s).magic == MAGIC {
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

/// Per worker: remembers this configuration's zone.
pub fn attach(shm: *mut ngx_shm_zone_t) {
    ZONE.store(shm, Ordering::Relaxed);
}

/// Runs `f` on the entry for `uri` (created if `create`), under the zone's mutex.
fn with_entry<T>(
    uri: &str,
    create: bool,
    f: impl FnOnce(&mut Entry, *mut ngx_slab_pool_t) -> T,
) -> Option<T> {
    let shm = ZONE.load(Ordering::Relaxed);
    if shm.is_null() {
        return None;
    }
    let h = uri_hash(uri);
    // SAFETY: the zone is mapped for the process's life; the block in `data` was set up by
    // init_zone; every access holds the slab pool's mutex.
    unsafe {
        let shpool = (*shm).shm.addr.cast::<ngx_slab_pool_t>();
        let s = (*shpool).data.cast::<Shared>();
        if s.is_null() {
            return None;
        }
        ngx_shmtx_lock(&mut (*shpool).mutex);
        let entries = &mut (*s).entries;
        let idx = entries.iter().position(|e| e.uri_hash == h).or_else(|| {
            if !create {
                return None;
            }
            let free = entries.iter().position(|e| e.uri_hash == 0)?;
            entries[free] = Entry {
                uri_hash: h,
                generation: 0,
                fresh_until: 0,
                good_until: 0,
                last_attempt: 0,
                lease_until: 0,
                fail_logged: 0,
                blob: ptr::null_mut(),
                blob_len: 0,
            };
            Some(free)
        });
        let r = idx.map(|i| f(&mut entries[i], shpool));
        ngx_shmtx_unlock(&mut (*shpool).mutex);
        r
    }
}

/// What the zone says about a location's remote set right now.
pub struct Snapshot {
    pub generation: u64,
    pub fresh: bool,
    pub usable: bool,
    pub fetching: bool,
    pub recently_tried: bool,
}

fn snapshot(remote: &Remote, now: u64) -> Snapshot {
    snapshot_of(&remote.uri, remote, now)
}

fn snapshot_of(uri: &str, remote: &Remote, now: u64) -> Snapshot {
    with_entry(uri, false, |e, _| Snapshot {
        generation: e.generation,
        fresh: e.generation > 0 && now < e.fresh_until,
        usable: e.generation > 0 && now < e.good_until,
        fetching: e.lease_until > now,
        recently_tried: now.saturating_sub(e.last_attempt) < remote.timing.refresh_ms,
    })
    .unwrap_or(Snapshot {
        generation: 0,
        fresh: false,
        usable: false,
        fetching: false,
        recently_tried: false,
    })
}

/// `snapshot` at the current time.
pub fn snapshot_now(remote: &Remote) -> Snapshot {
    snapshot(remote, now_ms())
}

/// Takes the fetch lease for `uri` unless a fetch is under way or one was tried less than the
/// refresh interval ago. Single-flight across workers.
fn try_lease(uri: &str, remote: &Remote, now: u64) -> bool {
    with_entry(uri, true, |e, _| {
        if e.lease_until > now || now.saturating_sub(e.last_attempt) < remote.timing.refresh_ms {
            return false;
        }
        e.lease_until = now + LEASE_MS;
        e.last_attempt = now;
        true
    })
    .unwrap_or(false)
}

/// Records a fetch's outcome; returns whether a failure should be logged (once per interval).
fn store(uri: &str, remote: &Remote, result: Result<(Vec<u8>, u64), ()>, now: u64) -> bool {
    with_entry(uri, true, |e, shpool| {
        e.lease_until = 0;
        e.last_attempt = now;
        match result {
            Ok((body, fresh_ms)) => {
                // SAFETY: the mutex is held; blobs are slab blocks of this zone.
                unsafe {
                    let blob = ngx_slab_alloc_locked(shpool, body.len()).cast::<u8>();
                    if blob.is_null() {
                        return true;
                    }
                    ptr::copy_nonoverlapping(body.as_ptr(), blob, body.len());
                    if !e.blob.is_null() {
                        ngx_slab_free_locked(shpool, e.blob.cast());
                    }
                    e.blob = blob;
                }
                e.blob_len = body.len();
                e.generation += 1;
                e.fresh_until = now + fresh_ms;
                e.good_until = e.fresh_until + remote.timing.max_stale_ms;
                false
            }
            Err(()) => {
                let log = now.saturating_sub(e.fail_logged) >= remote.timing.refresh_ms
                    || e.fail_logged == 0;
                if log {
                    e.fail_logged = now;
                }
                log
            }
        }
    })
    .unwrap_or(true)
}

/// The location's current keys (files plus the fetched set of the zone's generation), parsed
/// once per generation per worker. `None` when no fetched set is usable and there are no files.
pub fn current(
    cache: &CurrentCache,
    static_keys: &Arc<KeySet>,
    algorithms: Option<AlgSet>,
    remote: &Remote,
    snap: &Snapshot,
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
    let blob = with_entry(&remote.uri, false, |e, _| {
        if e.blob.is_null() || e.generation != snap.generation {
            return None;
        }
        // SAFETY: the blob has `blob_len` bytes and the mutex is held while copying.
        Some(unsafe { core::slice::from_raw_parts(e.blob, e.blob_len) }.to_vec())
    })??;
    let fetched = KeySet::load_remote(&blob).0.ok()?;
    let mut merged = (**static_keys).clone();
    merged.extend(fetched);
    let keys = Arc::new(merged);
    let allowed = effective(&keys);
    *cache.0.borrow_mut() = Some(Current {
        generation: snap.generation,
        keys: keys.clone(),
        allowed,
    });
    Some((keys, allowed))
}

/// What the access handler should do about the remote set before verifying.
pub enum Plan {
    /// Verify now with the current keys.
    Verify,
    /// A subrequest was started; come back when it is done.
    Fetching,
    /// Another worker or request is fetching and there is nothing usable yet: wait a little.
    Wait,
    /// Nothing usable and nothing to wait for.
    Unavailable,
}

/// Decides whether this request must fetch, wait or can verify. `force` asks for a refresh
/// (a token with an unknown `kid`).
pub fn plan(request: &mut Request, ctx: &mut RequestCtx, remote: &Remote, force: bool) -> Plan {
    if ctx.jwks.fetching {
        return Plan::Fetching;
    }
    let now = now_ms();
    // With discovery, the document comes first: it says where the keys are.
    if let Some(d) = &remote.discovery {
        let snap = snapshot_of(d, remote, now);
        if (!snap.usable || !snap.fresh)
            && !ctx.jwks.discovered
            && !snap.fetching
            && !snap.recently_tried
            && try_lease(d, remote, now)
        {
            return match start_fetch(request, ctx, remote, Kind::Discovery) {
                Ok(()) => Plan::Fetching,
                Err(()) => {
                    store(d, remote, Err(()), now);
                    if snap.usable {
                        Plan::Verify
                    } else {
                        Plan::Unavailable
                    }
                }
            };
        }
        if !snap.usable {
            return if snap.fetching && ctx.jwks.waited_ms < LEASE_MS {
                Plan::Wait
            } else {
                Plan::Unavailable
            };
        }
    }
    let snap = snapshot(remote, now);
    let want = !snap.usable || !snap.fresh || force;
    if want
        && !ctx.jwks.fetched
        && !snap.fetching
        && !snap.recently_tried
        && try_lease(&remote.uri, remote, now)
    {
        return match start_fetch(request, ctx, remote, Kind::Keys) {
            Ok(()) => Plan::Fetching,
            Err(()) => {
                store(&remote.uri, remote, Err(()), now);
                if snap.usable {
                    Plan::Verify
                } else {
                    Plan::Unavailable
                }
            }
        };
    }
    if snap.usable {
        return Plan::Verify;
    }
    if snap.fetching && ctx.jwks.waited_ms < LEASE_MS {
        return Plan::Wait;
    }
    Plan::Unavailable
}

/// The parsed discovery document of a location (once per generation per worker).
pub fn discovery(cache: &CurrentCache, remote: &Remote) -> Option<Discovery> {
    let uri = remote.discovery.as_deref()?;
    let snap = snapshot_of(uri, remote, now_ms());
    if !snap.usable {
        return None;
    }
    if let Some((g, d)) = cache.1.borrow().as_ref() {
        if *g == snap.generation {
            return Some(d.clone());
        }
    }
    let blob = with_entry(uri, false, |e, _| {
        // SAFETY: the blob has `blob_len` bytes and the mutex is held while copying.
        (!e.blob.is_null())
            .then(|| unsafe { core::slice::from_raw_parts(e.blob, e.blob_len) }.to_vec())
    })??;
    let resp = Response {
        status: 200,
        content_type: b"application/json",
        content_encoding: b"",
        body: &blob,
    };
    let d = load_discovery(&resp, 1 << 20).ok()?;
    *cache.1.borrow_mut() = Some((snap.generation, d.clone()));
    Some(d)
}

/// What a fetch is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    Keys,
    Discovery,
}

/// Per-request state of a key fetch.
#[derive(Default)]
pub struct FetchState {
    pub fetching: bool,
    pub fetched: bool,
    pub discovered: bool,
    pub kind: Kind,
    pub waited_ms: u64,
    pub remote: Option<Remote>,
}

fn start_fetch(
    request: &mut Request,
    ctx: &mut RequestCtx,
    remote: &Remote,
    kind: Kind,
) -> Result<(), ()> {
    let target = match kind {
        Kind::Keys => remote.uri.as_str(),
        Kind::Discovery => remote.discovery.as_deref().unwrap_or(&remote.uri),
    };
    let r: *mut ngx_http_request_t = request.as_mut();
    // SAFETY: `r` is the live main request; everything allocated here lives in its pool; the
    // post-subrequest data is this request's context, which outlives the subrequest.
    unsafe {
        let pool = (*r).pool;
        let uri_data = nginx_sys::ngx_pnalloc(pool, target.len()).cast::<u8>();
        let psr = nginx_sys::ngx_pcalloc(pool, core::mem::size_of::<ngx_http_post_subrequest_t>())
            .cast::<ngx_http_post_subrequest_t>();
        if uri_data.is_null() || psr.is_null() {
            return Err(());
        }
        ptr::copy_nonoverlapping(target.as_ptr(), uri_data, target.len());
        let mut uri = ngx_str_t {
            len: target.len(),
            data: uri_data,
        };
        (*psr).handler = Some(fetch_done);
        (*psr).data = (ctx as *mut RequestCtx).cast();
        let mut sr: *mut ngx_http_request_t = ptr::null_mut();
        let flags =
            (NGX_HTTP_SUBREQUEST_IN_MEMORY | NGX_HTTP_SUBREQUEST_WAITED) as nginx_sys::ngx_uint_t;
        if ngx_http_subrequest(r, &mut uri, ptr::null_mut(), &mut sr, psr, flags)
            != NGX_OK as ngx_int_t
        {
            return Err(());
        }
        // A fake, already-read body: the subrequest must not read the client's.
        let body = nginx_sys::ngx_pcalloc(
            pool,
            core::mem::size_of::<nginx_sys::ngx_http_request_body_t>(),
        );
        if !sr.is_null() && !body.is_null() {
            (*sr).request_body = body.cast();
        }
    }
    ctx.jwks.fetching = true;
    ctx.jwks.kind = kind;
    ctx.jwks.remote = Some(remote.clone());
    let what = if kind == Kind::Keys {
        "keys"
    } else {
        "the discovery document"
    };
    gw_log!(
        NGX_LOG_INFO,
        request.log(),
        "jwt: fetching {what} from \"{target}\""
    );
    Ok(())
}

fn header<'a>(sr: &'a ngx_http_request_t, name: &[u8]) -> &'a [u8] {
    // SAFETY: the subrequest's header list is valid while its post handler runs.
    for (k, v) in unsafe { ngx::http::list_iterator(&sr.headers_out.headers) } {
        if k.as_bytes().eq_ignore_ascii_case(name) {
            return v.as_bytes();
        }
    }
    b""
}

/// Post-subrequest handler: checks and stores the fetched set.
unsafe extern "C" fn fetch_done(
    sr: *mut ngx_http_request_t,
    data: *mut c_void,
    rc: ngx_int_t,
) -> ngx_int_t {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `data` is the parent's context (set in start_fetch); `sr` is the finished
        // subrequest, its output kept in memory.
        let (ctx, sr) = unsafe { (&mut *data.cast::<RequestCtx>(), &*sr) };
        if !ctx.jwks.fetching {
            return;
        }
        ctx.jwks.fetching = false;
        let kind = ctx.jwks.kind;
        match kind {
            Kind::Keys => ctx.jwks.fetched = true,
            Kind::Discovery => ctx.jwks.discovered = true,
        }
        let Some(remote) = ctx.jwks.remote.clone() else {
            return;
        };
        let uri = match kind {
            Kind::Keys => remote.uri.clone(),
            Kind::Discovery => remote.discovery.clone().unwrap_or_default(),
        };
        let now = now_ms();
        let body: &[u8] = if sr.out.is_null() || unsafe { (*sr.out).buf.is_null() } {
            b""
        } else {
            // SAFETY: the in-memory response is one buffer from pos to last.
            unsafe {
                let b = (*sr.out).buf;
                core::slice::from_raw_parts((*b).pos, (*b).last.offset_from((*b).pos) as usize)
            }
        };
        let ct = if sr.headers_out.content_type.data.is_null() {
            &b""[..]
        } else {
            // SAFETY: a non-null nginx string of the subrequest.
            unsafe {
                core::slice::from_raw_parts(
                    sr.headers_out.content_type.data,
                    sr.headers_out.content_type.len,
                )
            }
        };
        // rc is NGX_OK when the upstream answered (whatever its status); an HTTP status when
        // nginx gave up before a response (502 refused, 504 timed out); NGX_ERROR when the
        // response could not be read whole (e.g. larger than subrequest_output_buffer_size):
        // the headers then say 200 but the body is cut short.
        let failed = rc != NGX_OK as ngx_int_t;
        let status = if failed && (300..600).contains(&rc) {
            rc as usize
        } else {
            sr.headers_out.status
        };
        let resp = Response {
            status,
            content_type: ct,
            content_encoding: header(sr, b"content-encoding"),
            body,
        };
        let log = sr.connection;
        // SAFETY: the connection of the live subrequest.
        let log = unsafe { (*log).log };
        let checked = if failed && !(300..600).contains(&rc) {
            Err(
                "the response could not be read whole (see the error above; a body larger \
                 than subrequest_output_buffer_size is one cause)"
                    .to_string(),
            )
        } else {
            match kind {
                Kind::Keys => {
                    let (set, skipped) = load_response(&resp, 1 << 20);
                    for key in &skipped {
                        super::metrics::inc_jwks_key_refused(key.is_symmetric());
                        gw_log!(
                            NGX_LOG_WARN,
                            log,
                            "jwt: key set from \"{uri}\": {}; that key is skipped",
                            key.reason()
                        );
                    }
                    set.map(|set| format!("{} keys", set.len()))
                }
                Kind::Discovery => {
                    load_discovery(&resp, 1 << 20).map(|d| format!("jwks_uri \"{}\"", d.jwks_uri))
                }
            }
        };
        match checked {
            Ok(what) => {
                let fresh = remote
                    .timing
                    .fresh_for(parse_max_age(header(sr, b"cache-control")));
                store(&uri, &remote, Ok((body.to_vec(), fresh)), now);
                super::metrics::inc_jwks(true);
                gw_log!(
                    NGX_LOG_INFO,
                    log,
                    "jwt: fetched {what} from \"{uri}\", fresh for {}s",
                    fresh / 1000
                );
            }
            Err(why) => {
                super::metrics::inc_jwks(false);
                if store(&uri, &remote, Err(()), now) {
                    gw_log!(NGX_LOG_ERR, log, "jwt: response from \"{uri}\" refused: {why}; the last good one stays in force (logged once per refresh interval)");
                }
            }
        }
    });
    rc
}

/// Waits a little (another request or worker is fetching the keys), then runs the phases
/// again, in the way nginx's limit_req delays a request.
pub fn wait(request: &mut Request, ctx: &mut RequestCtx) {
    let r: *mut ngx_http_request_t = request.as_mut();
    ctx.jwks.waited_ms += 20;
    // SAFETY: the live request's connection and write event.
    unsafe {
        (*r).read_event_handler = Some(nginx_sys::ngx_http_test_reading);
        (*r).write_event_handler = Some(wait_done);
        let wev: *mut ngx_event_t = (*(*r).connection).write;
        (*wev).set_delayed(1);
        ngx_add_timer(wev, 20);
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
            (*r).read_event_handler = Some(nginx_sys::ngx_http_block_reading);
            (*r).write_event_handler = Some(ngx_http_core_run_phases);
            ngx_http_core_run_phases(r);
        }
    });
}

//! Consumers and the central policy at request time.
//!
//! **The document.** `gateway_policy` names a file or a local URI. The document in force is a
//! compiled image (`gateway_core::policy::compile`) in the `gateway_policy` shared zone, which
//! every worker reads in place: there is one parse per node, and a worker switches to a new
//! version with one atomic load (a request sees one version from its start to its end: what it
//! needs is copied into its context). A file source is compiled when the configuration loads
//! (`nginx -t` checks it) and installed by the zone's init; afterwards one worker at a time
//! (a lease in the zone) checks the source every `interval`: the file is read again, the URL
//! fetched by a detached subrequest with `If-None-Match`. Reading, hashing and compiling run on
//! a short-lived thread (plain Rust, no nginx call), so a 100,000-consumer document never
//! stalls the event loop; the worker polls the thread from a timer and installs the result.
//! A refused document (bad JSON, duplicates, unknown plan, too large) or a failed fetch is
//! logged, counted, retried with a backoff, and the last good version stays in force.
//!
//! **A request.** [`access`] identifies the consumer (API key, else bearer token, else the
//! anonymous consumer), applies the denylist, the consumer's state and the route's access
//! rules, keeps the identity in the request context (variables, plan limits, the log), and
//! gives the upstream the `X-Consumer-*` headers in place of any the client sent.

use core::ffi::c_void;
use core::ptr;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::thread::JoinHandle;

use gateway_core::policy::{self, Access, Consumer, Period, View};
use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_event_t, ngx_http_request_t, ngx_int_t, ngx_shm_zone_t,
    ngx_slab_pool_t, ngx_str_t, ngx_table_elt_t, NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::http::{HttpModuleMainConf, Request};

use super::ctx::RequestCtx;
use super::{fetch, guard_conf, guard_request, now_ms, GatewayModule};
use crate::conf::policy::{ConsumerConf, KeySource, PolicyConf, Source};
use crate::conf::{LocConf, MainConf};

/// The zone's name (reserved: `rate_limit_zone` refuses it).
pub const ZONE_NAME: &str = "gateway_policy";
const MAGIC: u64 = 0x6777_706f_6c69_6301;
/// How often a worker looks at its refresh thread, and at the zone's schedule.
const POLL_MS: u64 = 20;
const TICK_MS: u64 = 500;
/// A lease older than this is abandoned (its worker died).
const LEASE_MS: u64 = 60_000;
/// Largest entity tag kept (a longer one is not used for conditional requests).
const MAX_ETAG: usize = 256;
const MAX_ERROR: usize = 512;

/// The zone's header, at the start of its slab pool's first block.
#[repr(C)]
struct Shared {
    magic: u64,
    /// Hash of the source, to notice a reload that names another one.
    source_hash: u64,
    /// The block in force, `[len: u64][image]`, or null. Read without the lock; replaced under
    /// it. The block it replaces is freed at the next install (an interval later at least),
    /// by when no request can still be reading it: requests copy what they need at once.
    current: AtomicPtr<u8>,
    /// Bumped by each install.
    generation: AtomicU64,
    /// The block replaced last, freed at the next install.
    previous: *mut u8,
    installed_ms: u64,
    /// When the source is next checked (read without the lock as a hint).
    next_check_ms: AtomicU64,
    /// A worker checks the source until then.
    lease_until_ms: u64,
    failures: u32,
    etag_len: u32,
    etag: [u8; MAX_ETAG],
    digest: [u8; 32],
    has_digest: u32,
    /// The last document refused, not refused (nor logged) again while it stays the same.
    refused_digest: [u8; 32],
    has_refused: u32,
    /// Size, modification time and inode of the file last read: an unchanged file is not
    /// read again.
    file_stamp: Stamp,
    has_stamp: u32,
    error_len: u32,
    last_ok_ms: u64,
    last_error_ms: u64,
    error: [u8; MAX_ERROR],
    /// Documents installed, refused (invalid), and checks that failed (fetch, read, room).
    installed: u64,
    refused: u64,
    failed: u64,
}

static ZONE: AtomicPtr<ngx_shm_zone_t> = AtomicPtr::new(ptr::null_mut());

/// A file's size, modification time (ns) and inode.
pub type Stamp = [u64; 3];

/// The stamp of the file at `path` now.
pub fn file_stamp(path: &str) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mtime = (m.mtime() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(m.mtime_nsec() as u64);
    Some([m.size(), mtime, m.ino()])
}

fn hash_source(s: &Source) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Adds the `gateway_policy` zone (postconfiguration, when `gateway_policy` is set).
pub fn add_zone(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    if mcf.policy.is_none() {
        return Ok(());
    }
    mcf.slots.consumer_base = super::metrics::init_consumer_registry(&mut mcf.metrics);
    let Some(pc) = mcf.policy.as_mut() else {
        return Ok(());
    };
    let mut name = ngx::ngx_string!("gateway_policy");
    // SAFETY: `cf` is the configuration being parsed; the module static lives forever.
    let shm = unsafe {
        nginx_sys::ngx_shared_memory_add(
            cf,
            &mut name,
            pc.zone_size,
            ptr::addr_of_mut!(crate::ngx_http_gateway_module).cast(),
        )
    };
    if shm.is_null() {
        return Err("cannot add the gateway_policy shared zone".into());
    }
    // SAFETY: `shm` was just returned by nginx; `pc` lives in the configuration pool.
    unsafe {
        if !(*shm).data.is_null() {
            return Err(format!(
                "the shared memory zone \"{ZONE_NAME}\" is already used by another directive"
            ));
        }
        (*shm).init = Some(init_zone);
        (*shm).data = (pc as *mut PolicyConf).cast();
        (*shm).noreuse = 0;
    }
    pc.shm = shm;
    Ok(())
}

fn shpool_of(shm: *mut ngx_shm_zone_t) -> *mut ngx_slab_pool_t {
    // SAFETY: after initialization a zone's address is its slab pool.
    unsafe { (*shm).shm.addr.cast() }
}

/// Zone init (master, at start and at each reload): the header, and the configuration's
/// document when it comes from a file.
unsafe extern "C" fn init_zone(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    guard_conf(NGX_ERROR as ngx_int_t, || {
        // SAFETY: `data` is the PolicyConf registered in `add_zone`.
        let pc = unsafe { &*(*shm).data.cast::<PolicyConf>() };
        let shpool = shpool_of(shm);
        let log = ngx::log::ngx_cycle_log().as_ptr();
        // SAFETY: the zone's slab pool; old workers of a reused zone may be using it, so the
        // header is changed under the pool's mutex.
        unsafe {
            (*shpool).set_log_nomem(0);
            let mut s = (*shpool).data.cast::<Shared>();
            if s.is_null() || (*s).magic != MAGIC {
                s = nginx_sys::ngx_slab_alloc(shpool, core::mem::size_of::<Shared>())
                    .cast::<Shared>();
                if s.is_null() {
                    return NGX_ERROR as ngx_int_t;
                }
                ptr::write_bytes(s.cast::<u8>(), 0, core::mem::size_of::<Shared>());
                (*s).magic = MAGIC;
                (*shpool).data = s.cast();
            }
            let hash = hash_source(&pc.source);
            nginx_sys::ngx_shmtx_lock(&mut (*shpool).mutex);
            if (*s).source_hash != hash {
                // Another source: its entity tag and digest mean nothing here; check it soon.
                (*s).source_hash = hash;
                (*s).etag_len = 0;
                (*s).has_digest = 0;
                (*s).failures = 0;
                (*s).error_len = 0;
            }
            (*s).lease_until_ms = 0;
            (*s).next_check_ms.store(0, Ordering::Relaxed);
            nginx_sys::ngx_shmtx_unlock(&mut (*shpool).mutex);
            // A reload re-reads the file: what it holds now is in force from the first request.
            if let Some(initial) = &pc.initial {
                let same = (*s).has_digest != 0 && (*s).digest == initial.digest;
                if !same || (*s).current.load(Ordering::Acquire).is_null() {
                    if let Err(e) = install_at(shpool, &initial.image, initial.digest, None) {
                        gw_log!(NGX_LOG_ERR, log, "{e}");
                        return NGX_ERROR as ngx_int_t;
                    }
                }
                nginx_sys::ngx_shmtx_lock(&mut (*shpool).mutex);
                (*s).next_check_ms
                    .store(now_ms() + pc.interval_ms, Ordering::Relaxed);
                (*s).last_ok_ms = now_ms();
                if let Some(st) = initial.stamp {
                    (*s).file_stamp = st;
                    (*s).has_stamp = 1;
                }
                nginx_sys::ngx_shmtx_unlock(&mut (*shpool).mutex);
            }
        }
        NGX_OK as ngx_int_t
    })
}

/// Per worker: the zone of this configuration, and the refresh timer.
pub fn init_process(cycle: &ngx_cycle_t, mcf: &MainConf) {
    let Some(pc) = mcf.policy.as_ref() else {
        return;
    };
    ZONE.store(pc.shm, Ordering::Release);
    let w = Box::new(Worker {
        // SAFETY: a zeroed event is nginx's "unset" state.
        timer: unsafe { core::mem::zeroed() },
        source: pc.source.clone(),
        interval_ms: pc.interval_ms,
        max_size: pc.max_size,
        job: None,
    });
    let wp = Box::into_raw(w);
    // SAFETY: the worker state lives until `exit_process`; the cycle's log lives as long.
    unsafe {
        let ev = &mut (*wp).timer;
        ev.handler = Some(timer_handler);
        ev.log = cycle.log;
        ev.data = wp.cast();
        // A worker shutting down gracefully does not wait for this timer.
        ev.set_cancelable(1);
        nginx_sys::ngx_add_timer(ev, TICK_MS as nginx_sys::ngx_msec_t);
    }
    WORKER.with(|x| *x.borrow_mut() = wp);
}

/// Per worker at exit: the timer goes (a running thread is left to finish on its own).
pub fn exit_process() {
    let wp = WORKER.with(|x| core::mem::replace(&mut *x.borrow_mut(), ptr::null_mut()));
    if wp.is_null() {
        return;
    }
    // SAFETY: the state leaked by `init_process`, no longer reachable from WORKER.
    unsafe {
        if (*wp).timer.timer_set() != 0 {
            nginx_sys::ngx_del_timer(&mut (*wp).timer);
        }
        drop(Box::from_raw(wp));
    }
}

/// Runs `f` on the zone's header under its mutex (`None` before the zone is attached).
fn with_shared<T>(f: impl FnOnce(&mut Shared) -> T) -> Option<T> {
    let shm = ZONE.load(Ordering::Acquire);
    if shm.is_null() {
        return None;
    }
    let shpool = shpool_of(shm);
    // SAFETY: the header block was set up by `init_zone`; the mutex serializes its writers.
    unsafe {
        let s = (*shpool).data.cast::<Shared>();
        if s.is_null() {
            return None;
        }
        nginx_sys::ngx_shmtx_lock(&mut (*shpool).mutex);
        let r = f(&mut *s);
        nginx_sys::ngx_shmtx_unlock(&mut (*shpool).mutex);
        Some(r)
    }
}

/// Whether a document is in force (one atomic load).
fn loaded() -> bool {
    let shm = ZONE.load(Ordering::Acquire);
    if shm.is_null() {
        return false;
    }
    // SAFETY: as in `with_view`.
    unsafe {
        let s = (*shpool_of(shm)).data.cast::<Shared>();
        !s.is_null() && !(*s).current.load(Ordering::Acquire).is_null()
    }
}

/// The document in force and its generation, read with one atomic load and valid for the
/// current handler call only (see [`Shared::current`]). `None` when none is loaded.
pub fn with_view<T>(f: impl FnOnce(&View<'_>, u64) -> T) -> Option<T> {
    let shm = ZONE.load(Ordering::Acquire);
    if shm.is_null() {
        return None;
    }
    // SAFETY: as in `with_shared`; a block is `[len: u64][image]`, written completely before
    // it was published with release ordering.
    unsafe {
        let s = (*shpool_of(shm)).data.cast::<Shared>();
        if s.is_null() {
            return None;
        }
        let gen = (*s).generation.load(Ordering::Acquire);
        let block = (*s).current.load(Ordering::Acquire);
        if block.is_null() {
            return None;
        }
        let len = ptr::read_unaligned(block.cast::<u64>()) as usize;
        let image = core::slice::from_raw_parts(block.add(8), len);
        let view = View::new(image)?;
        Some(f(&view, gen))
    }
}

/// Installs `image`: frees the block replaced last time, copies the new one into a fresh
/// block, publishes it. The copy happens outside the lock: readers never wait for it.
///
/// # Safety
/// `shpool` is the zone's initialized slab pool.
unsafe fn install_at(
    shpool: *mut ngx_slab_pool_t,
    image: &[u8],
    digest: [u8; 32],
    etag: Option<&[u8]>,
) -> Result<u64, String> {
    // SAFETY: per the function's contract.
    unsafe {
        let s = (*shpool).data.cast::<Shared>();
        nginx_sys::ngx_shmtx_lock(&mut (*shpool).mutex);
        let old = core::mem::replace(&mut (*s).previous, ptr::null_mut());
        if !old.is_null() {
            nginx_sys::ngx_slab_free_locked(shpool, old.cast());
        }
        nginx_sys::ngx_shmtx_unlock(&mut (*shpool).mutex);
        let block = nginx_sys::ngx_slab_alloc(shpool, 8 + image.len()).cast::<u8>();
        if block.is_null() {
            return Err(format!(
                "no room in the \"{ZONE_NAME}\" zone for a policy of {} bytes; raise gateway_policy zone_size=",
                image.len()
            ));
        }
        ptr::write_unaligned(block.cast::<u64>(), image.len() as u64);
        ptr::copy_nonoverlapping(image.as_ptr(), block.add(8), image.len());
        nginx_sys::ngx_shmtx_lock(&mut (*shpool).mutex);
        (*s).previous = (*s).current.swap(block, Ordering::AcqRel);
        let gen = (*s).generation.fetch_add(1, Ordering::AcqRel) + 1;
        (*s).installed_ms = now_ms();
        (*s).digest = digest;
        (*s).has_digest = 1;
        match etag {
            Some(t) if t.len() <= MAX_ETAG => {
                (&mut (*s).etag)[..t.len()].copy_from_slice(t);
                (*s).etag_len = t.len() as u32;
            }
            _ => (*s).etag_len = 0,
        }
        (*s).installed += 1;
        nginx_sys::ngx_shmtx_unlock(&mut (*shpool).mutex);
        Ok(gen)
    }
}

// ---------------------------------------------------------------------------------------
// Refresh: one worker at a time checks the source; a thread reads and compiles.

/// What a check of the source found.
enum Outcome {
    Unchanged,
    Compiled {
        image: Vec<u8>,
        summary: policy::Summary,
        digest: [u8; 32],
        etag: Option<Vec<u8>>,
    },
    /// An invalid document, and its digest when known.
    Refused(String, Option<[u8; 32]>),
    /// The same invalid document as last time (already logged and counted).
    StillRefused,
    /// The same file as at the last check (not read).
    StillSame,
    Failed(String),
}

struct Worker {
    timer: ngx_event_t,
    source: Source,
    interval_ms: u64,
    max_size: usize,
    job: Option<JoinHandle<Checked>>,
}

thread_local! {
    static WORKER: RefCell<*mut Worker> = const { RefCell::new(ptr::null_mut()) };
}

fn with_worker<T>(f: impl FnOnce(&mut Worker) -> T) -> Option<T> {
    let wp = WORKER.with(|x| *x.borrow());
    if wp.is_null() {
        return None;
    }
    // SAFETY: the worker state lives from `init_process` to `exit_process`, used only by
    // the worker's own thread.
    Some(f(unsafe { &mut *wp }))
}

/// When the source is next due for a check (an atomic read, no lock).
fn next_check_ms() -> Option<u64> {
    let shm = ZONE.load(Ordering::Acquire);
    if shm.is_null() {
        return None;
    }
    // SAFETY: the header block set up by `init_zone`; the field is atomic.
    unsafe {
        let s = (*shpool_of(shm)).data.cast::<Shared>();
        (!s.is_null()).then(|| (*s).next_check_ms.load(Ordering::Relaxed))
    }
}

/// Takes the lease when the source is due for a check.
fn try_lease(now: u64, interval: u64) -> bool {
    with_shared(|s| {
        if now < s.next_check_ms.load(Ordering::Relaxed) || now < s.lease_until_ms {
            return false;
        }
        s.lease_until_ms = now + LEASE_MS;
        s.next_check_ms.store(now + interval, Ordering::Relaxed);
        true
    })
    .unwrap_or(false)
}

/// Whether a check is under way (by any worker).
fn checking(now: u64) -> bool {
    with_shared(|s| now < s.lease_until_ms).unwrap_or(false)
}

/// Runs `work` on a thread that blocks every signal (nginx's signals stay with the event
/// loop's thread).
fn spawn(work: impl FnOnce() -> Checked + Send + 'static) -> Option<JoinHandle<Checked>> {
    // SAFETY: plain libc calls on local signal sets; the old mask is restored right after.
    unsafe {
        let mut all: nginx_sys::sigset_t = core::mem::zeroed();
        let mut old: nginx_sys::sigset_t = core::mem::zeroed();
        nginx_sys::sigfillset(&mut all);
        nginx_sys::pthread_sigmask(nginx_sys::SIG_BLOCK as i32, &all, &mut old);
        let h = std::thread::Builder::new()
            .name("gateway-policy".into())
            .spawn(work)
            .ok();
        nginx_sys::pthread_sigmask(nginx_sys::SIG_SETMASK as i32, &old, ptr::null_mut());
        h
    }
}

/// What a check found, and the stamp of the file it read (file source).
type Checked = (Outcome, Option<Stamp>);

/// The digests of the document in force and of the last one refused, and the stamp of the
/// file last read.
#[derive(Clone, Copy)]
struct Known {
    in_force: Option<[u8; 32]>,
    refused: Option<[u8; 32]>,
    stamp: Option<Stamp>,
}

/// The thread's work on a document: unchanged, compiled, or refused.
fn compile(doc: &[u8], known: Known, etag: Option<Vec<u8>>) -> Outcome {
    let digest = policy::key_digest(doc);
    if known.in_force == Some(digest) {
        return Outcome::Unchanged;
    }
    if known.refused == Some(digest) {
        return Outcome::StillRefused;
    }
    match policy::compile(doc) {
        Ok((image, summary)) => Outcome::Compiled {
            image,
            summary,
            digest,
            etag,
        },
        Err(e) => Outcome::Refused(format!("{}: {e}", e.code), Some(digest)),
    }
}

fn known_digests() -> Known {
    with_shared(|s| Known {
        in_force: (s.has_digest != 0).then_some(s.digest),
        refused: (s.has_refused != 0).then_some(s.refused_digest),
        stamp: (s.has_stamp != 0).then_some(s.file_stamp),
    })
    .unwrap_or(Known {
        in_force: None,
        refused: None,
        stamp: None,
    })
}

unsafe extern "C" fn timer_handler(ev: *mut ngx_event_t) {
    let _ = std::panic::catch_unwind(|| {
        let log = {
            // SAFETY: nginx passes our timer event.
            unsafe { (*ev).log }
        };
        let next = with_worker(|w| tick(w, log)).unwrap_or(TICK_MS);
        // SAFETY: the timer event lives in the worker state; nginx is not shutting it down
        // (exit_process deletes it).
        unsafe {
            if nginx_sys::ngx_exiting == 0 && nginx_sys::ngx_terminate == 0 {
                nginx_sys::ngx_add_timer(ev, next as nginx_sys::ngx_msec_t);
            }
        }
    });
}

/// One timer tick: collects a finished thread, starts a file check when due. Returns when to
/// tick next.
fn tick(w: &mut Worker, log: *mut nginx_sys::ngx_log_t) -> u64 {
    let now = now_ms();
    if w.job.as_ref().is_some_and(|h| h.is_finished()) {
        let checked = w.job.take().and_then(|h| h.join().ok());
        let checked = checked.unwrap_or_else(|| (Outcome::Failed("the check failed".into()), None));
        finish(&w.source, w.interval_ms, checked, log, now);
    }
    if w.job.is_none() {
        if let Source::File(path) = &w.source {
            if try_lease(now, w.interval_ms) {
                let (path, max, known) = (path.clone(), w.max_size, known_digests());
                w.job = spawn(move || {
                    // An unchanged file (size, time, inode) is not read again.
                    let stamp = file_stamp(&path);
                    if stamp.is_some() && stamp == known.stamp {
                        return (Outcome::StillSame, None);
                    }
                    let outcome = match crate::conf::policy::read_limited(&path, max) {
                        Ok(doc) => compile(&doc, known, None),
                        Err(e) if e.contains("too_large") => Outcome::Refused(e, None),
                        Err(e) => return (Outcome::Failed(e), None),
                    };
                    (outcome, stamp)
                });
                if w.job.is_none() {
                    let failed = Outcome::Failed("cannot start a thread".into());
                    finish(&w.source, w.interval_ms, (failed, None), log, now);
                }
            }
        }
    }
    if w.job.is_some() {
        POLL_MS
    } else {
        TICK_MS
    }
}

/// Records the end of a check: installs a compiled document, keeps the last good one
/// otherwise, releases the lease, wakes the requests waiting for a first document.
fn finish(
    source: &Source,
    interval: u64,
    (outcome, stamp): Checked,
    log: *mut nginx_sys::ngx_log_t,
    now: u64,
) {
    let what = source.describe();
    let mut refused_digest = None;
    // The same invalid document (or file) as at the last check: logged and counted then.
    let still_refused = matches!(outcome, Outcome::StillRefused | Outcome::StillSame)
        && with_shared(|s| s.failures > 0).unwrap_or(false);
    let error = match outcome {
        Outcome::Unchanged | Outcome::StillRefused | Outcome::StillSame => None,
        Outcome::Compiled {
            image,
            summary,
            digest,
            etag,
        } => {
            let shm = ZONE.load(Ordering::Acquire);
            // SAFETY: the attached zone's initialized slab pool.
            match unsafe { install_at(shpool_of(shm), &image, digest, etag.as_deref()) } {
                Ok(_) => {
                    gw_log!(
                        NGX_LOG_NOTICE,
                        log,
                        "policy version \"{}\" from {what} in force: {} consumers, {} api keys, {} plans, {} rules",
                        summary.version,
                        summary.consumers,
                        summary.api_keys,
                        summary.plans,
                        summary.rules
                    );
                    None
                }
                Err(e) => Some((false, e)),
            }
        }
        Outcome::Refused(e, d) => {
            refused_digest = d;
            Some((true, format!("document refused: {e}")))
        }
        Outcome::Failed(e) => Some((false, e)),
    };
    let in_force = with_view(|v, _| String::from_utf8_lossy(v.version()).into_owned());
    with_shared(|s| {
        s.lease_until_ms = 0;
        if let Some(d) = refused_digest {
            s.refused_digest = d;
            s.has_refused = 1;
        }
        if let Some(st) = stamp {
            s.file_stamp = st;
            s.has_stamp = 1;
        }
        match &error {
            None if still_refused => {}
            None => {
                s.failures = 0;
                s.last_ok_ms = now;
            }
            Some((refused, e)) => {
                if *refused {
                    s.refused += 1;
                } else {
                    s.failed += 1;
                }
                s.failures = s.failures.saturating_add(1);
                let backoff = 1000u64 << (s.failures - 1).min(6);
                s.next_check_ms
                    .store(now + backoff.min(interval), Ordering::Relaxed);
                let n = e.len().min(MAX_ERROR);
                s.error[..n].copy_from_slice(&e.as_bytes()[..n]);
                s.error_len = n as u32;
                s.last_error_ms = now;
            }
        }
    });
    if let Some((_, e)) = error {
        let keeps = match in_force {
            Some(v) => format!("version \"{v}\" stays in force"),
            None => "no policy is in force yet".to_string(),
        };
        gw_log!(NGX_LOG_ERR, log, "policy from {what}: {e}; {keeps}");
    }
    super::jwks::wake_waiters();
}

/// URL source: starts a fetch when the document is due (one worker at a time), from the
/// request at hand (its server block resolves the URI; nothing else of it is used).
fn maybe_fetch(request: &Request, pc: &PolicyConf, now: u64) {
    let Source::Url(uri) = &pc.source else {
        return;
    };
    // A quick look first, without the lock: most requests find the document fresh.
    let due = next_check_ms().is_some_and(|t| now >= t);
    if !due || with_worker(|w| w.job.is_some()).unwrap_or(true) {
        return;
    }
    if !try_lease(now, pc.interval_ms) {
        return;
    }
    let etag = with_shared(|s| s.etag[..s.etag_len as usize].to_vec()).filter(|t| !t.is_empty());
    let (uri2, max, interval) = (uri.clone(), pc.max_size, pc.interval_ms);
    let source = pc.source.clone();
    let started = fetch::start_conditional(
        request,
        uri,
        etag,
        Box::new(move |a: &fetch::Answer| fetched(&source, &uri2, max, interval, a)),
    );
    if started.is_err() {
        finish(
            &pc.source,
            pc.interval_ms,
            (
                Outcome::Failed("cannot start a fetch (out of memory)".into()),
                None,
            ),
            request.log(),
            now,
        );
    } else {
        gw_log!(NGX_LOG_INFO, request.log(), "policy: fetching \"{uri}\"");
    }
}

/// The control plane answered: 304 keeps the document, 200 goes to a compile thread.
fn fetched(source: &Source, uri: &str, max: usize, interval: u64, a: &fetch::Answer) {
    let now = now_ms();
    let outcome = if a.status == 304 {
        Some(Outcome::Unchanged)
    } else if a.status != 200 {
        Some(Outcome::Failed(format!("\"{uri}\" answered {}", a.status)))
    } else if a.incomplete {
        Some(Outcome::Failed(format!(
            "the response from \"{uri}\" could not be read whole (raise subrequest_output_buffer_size in that location)"
        )))
    } else if a.body.len() > max {
        Some(Outcome::Refused(
            format!(
                "too_large: {} bytes, larger than max_size={max}",
                a.body.len()
            ),
            None,
        ))
    } else {
        let etag = a.header(b"etag");
        let etag = (!etag.is_empty()
            && etag.len() <= MAX_ETAG
            && gateway_core::header::first_unsafe_byte(etag).is_none())
        .then(|| etag.to_vec());
        let (doc, known) = (a.body.to_vec(), known_digests());
        let job = spawn(move || (compile(&doc, known, etag), None));
        match job {
            Some(h) => {
                with_worker(|w| w.job = Some(h));
                None
            }
            None => Some(Outcome::Failed("cannot start a thread".into())),
        }
    };
    if let Some(o) = outcome {
        finish(source, interval, (o, None), a.log, now);
    }
}

// ---------------------------------------------------------------------------------------
// Identification.

/// How the consumer of a request was identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    Jwt,
    Anonymous,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::ApiKey => "api_key",
            Credential::Jwt => "jwt",
            Credential::Anonymous => "anonymous",
        }
    }
}

/// The request's consumer, copied out of the document in force when it was identified (a
/// request may outlive that version). Few allocations: the groups are kept joined, as the
/// header and the variable show them, and the version is shared per worker.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Consumer id; for an unregistered token, its `sub`.
    pub id: String,
    /// `None`: the same as the id.
    username: Option<String>,
    /// The consumer's groups, then those of the token's group claims, joined by ", " (group
    /// names hold neither commas nor spaces).
    groups: String,
    pub plan: Option<String>,
    limits: [Option<u64>; 4],
    pub credential: Credential,
    /// A consumer of the document (not an unregistered token, not a bare anonymous id).
    pub registered: bool,
    /// The API key's `name` in the document, for `X-Credential-Identifier`.
    pub key_name: Option<String>,
    /// The policy version that identified it.
    pub version: Rc<str>,
}

thread_local! {
    /// The version text of the last generation seen by this worker.
    static VERSION: RefCell<(u64, Option<Rc<str>>)> = const { RefCell::new((0, None)) };
}

/// The version of `view` (generation `gen`) as a shared string, made once per generation.
fn version_of(view: &View<'_>, gen: u64) -> Rc<str> {
    VERSION.with(|c| {
        let mut c = c.borrow_mut();
        match &c.1 {
            Some(v) if c.0 == gen => v.clone(),
            _ => {
                let v: Rc<str> = String::from_utf8_lossy(view.version()).into();
                *c = (gen, Some(v.clone()));
                v
            }
        }
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Identity {
    /// The limit of `period` in the consumer's plan.
    pub fn plan_limit(&self, period: Period) -> Option<u64> {
        self.limits[period as usize]
    }

    pub fn username(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.id)
    }

    /// `$gateway_consumer_groups` / `X-Consumer-Groups`: the groups joined by ", ".
    pub fn groups_joined(&self) -> &str {
        &self.groups
    }

    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.split(", ").filter(|g| !g.is_empty())
    }

    fn add_group(&mut self, g: &str) {
        if self.groups().any(|x| x == g) {
            return;
        }
        if !self.groups.is_empty() {
            self.groups.push_str(", ");
        }
        self.groups.push_str(g);
    }

    fn of(c: &Consumer<'_>, credential: Credential, version: Rc<str>) -> Identity {
        let plan = c.plan();
        let mut limits = [None; 4];
        if let Some(p) = &plan {
            for period in Period::ALL {
                limits[period as usize] = p.limit(period);
            }
        }
        let mut groups = Vec::with_capacity(64);
        for g in c.groups() {
            if !groups.is_empty() {
                groups.extend_from_slice(b", ");
            }
            groups.extend_from_slice(g);
        }
        Identity {
            id: text(c.id()),
            username: (c.username() != c.id()).then(|| text(c.username())),
            groups: String::from_utf8(groups).unwrap_or_default(),
            plan: plan.map(|p| text(p.name())),
            limits,
            credential,
            registered: true,
            key_name: None,
            version,
        }
    }

    fn bare(id: &str, credential: Credential, version: Rc<str>) -> Identity {
        Identity {
            id: id.to_string(),
            username: None,
            groups: String::new(),
            plan: None,
            limits: [None; 4],
            credential,
            registered: false,
            key_name: None,
            version,
        }
    }
}

/// Per-request state of the consumer layer.
#[derive(Default)]
pub struct ConsumerState {
    /// The upstream headers were set (once per request).
    pub headers_done: bool,
    /// The request waits for the first document of a URL source.
    pub waited: bool,
    /// The reason code of a refusal, for the log.
    pub refused: Option<&'static str>,
}

/// A refusal: status, reason code, detail for the problem body.
struct Refusal {
    status: u16,
    code: &'static str,
    detail: &'static str,
}

const fn refuse(status: u16, code: &'static str, detail: &'static str) -> Refusal {
    Refusal {
        status,
        code,
        detail,
    }
}

/// What the access phase does with the request.
enum Step {
    Grant,
    Refuse(Refusal),
    /// An nginx code to return as is (auth_jwt's 401/403 with its challenge, NGX_AGAIN...).
    Return(ngx_int_t),
}

/// The access phase for a location where consumers are identified (see the module doc).
pub fn access(request: &mut Request, ctx: &mut RequestCtx, lcf: &LocConf) -> ngx_int_t {
    let Some(mcf) = <GatewayModule as HttpModuleMainConf>::main_conf(request) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let Some(pc) = mcf.policy.as_ref() else {
        return nginx_sys::NGX_DECLINED as ngx_int_t;
    };
    let now = now_ms();
    maybe_fetch(request, pc, now);
    let step = if ctx.consumer.is_some() {
        Step::Grant
    } else {
        identify(request, ctx, lcf, pc, now)
    };
    let step = match step {
        Step::Grant => acl(request, ctx, &lcf.consumer),
        other => other,
    };
    match step {
        Step::Return(rc) => rc,
        Step::Refuse(r) => {
            // A 401 names the scheme to use (RFC 9110): here an API key.
            if r.status == 401 && super::set_www_authenticate(request, b"ApiKey").is_none() {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
            ctx.policy.refused = Some(r.code);
            super::metrics::inc_consumer(r.code);
            gw_log!(
                NGX_LOG_INFO,
                request.log(),
                "consumer refused: {} ({}), status {}",
                r.detail,
                r.code,
                r.status
            );
            problem(request, r)
        }
        Step::Grant => {
            if !ctx.policy.headers_done {
                if let Some(id) = &ctx.consumer {
                    super::metrics::inc_consumer(id.credential.as_str());
                }
            }
            if identity_headers_once(request, ctx, &lcf.consumer).is_none() {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
            NGX_OK as ngx_int_t
        }
    }
}

/// The API key of the request: the first configured source present.
fn api_key<'r>(request: &'r Request, cc: &ConsumerConf) -> Option<&'r [u8]> {
    let conf = cc.api_key()?;
    conf.sources.iter().find_map(|src| match src {
        KeySource::Header(n) => request
            .headers_in_iterator()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(n.as_bytes()))
            .map(|(_, v)| v.as_bytes())
            .filter(|v| !v.is_empty()),
        KeySource::Query(n) => query_arg(request, n),
        KeySource::Cookie(n) => request
            .headers_in_iterator()
            .filter(|(k, _)| k.as_bytes().eq_ignore_ascii_case(b"cookie"))
            .find_map(|(_, v)| gateway_core::oidc::rp::cookie(v.as_bytes(), n.as_bytes())),
    })
}

/// The query argument `name` as nginx's `$arg_NAME` sees it (raw, name case-insensitive).
fn query_arg<'r>(request: &'r Request, name: &str) -> Option<&'r [u8]> {
    let r: *const ngx_http_request_t = request.as_ref();
    let mut value = ngx_str_t {
        len: 0,
        data: ptr::null_mut(),
    };
    // SAFETY: the live request; nginx points `value` into the request's arguments.
    let rc = unsafe {
        nginx_sys::ngx_http_arg(
            r.cast_mut(),
            name.as_ptr().cast_mut(),
            name.len(),
            &mut value,
        )
    };
    // SAFETY: on NGX_OK `value` points at `len` bytes of the request's arguments.
    (rc == NGX_OK as ngx_int_t && value.len > 0)
        .then(|| unsafe { core::slice::from_raw_parts(value.data, value.len) })
}

fn identify(
    request: &mut Request,
    ctx: &mut RequestCtx,
    lcf: &LocConf,
    pc: &PolicyConf,
    now: u64,
) -> Step {
    let cc = &lcf.consumer;
    if !loaded() {
        // No document yet (a URL source's first fetch): wait for it, as for a key set.
        if matches!(pc.source, Source::Url(_)) && checking(now) && !ctx.policy.waited {
            let since = *ctx.jwks.wait_since.get_or_insert(now);
            if now.saturating_sub(since) < LEASE_MS {
                super::jwks::wait(request, ctx);
                return Step::Return(nginx_sys::NGX_AGAIN as ngx_int_t);
            }
            ctx.policy.waited = true;
        }
        return Step::Refuse(refuse(
            503,
            "policy_unavailable",
            "no policy document is in force yet",
        ));
    }
    // 1. An API key.
    if let Some(key) = api_key(request, cc) {
        let digest = policy::key_digest(key);
        let found = with_view(|v, gen| {
            if v.key_denied(&digest) {
                return Err(refuse(401, "key_revoked", "the API key is revoked"));
            }
            match v.by_key_digest(&digest) {
                Some(c) => {
                    let mut id = Identity::of(&c, Credential::ApiKey, version_of(v, gen));
                    id.key_name = v.key_name(&digest).map(text);
                    consumer_checks(v, &c).map(|()| id)
                }
                None => Err(refuse(401, "key_unknown", "the API key is unknown")),
            }
        });
        return settle(ctx, found);
    }
    // 2. A browser session (auth_oidc): its ID token, verified at sign-in.
    let session = ctx
        .auth
        .as_ref()
        .filter(|a| a.runtime.is_null())
        .and_then(|a| a.valid())
        .map(|v| v as *const gateway_core::jwt::Verified);
    if let Some(v) = session {
        // SAFETY: the outcome stays in the request context while it is used here.
        let token = unsafe { &*v };
        let found = with_view(|v, gen| by_token(v, gen, token, cc));
        return settle(ctx, found);
    }
    // 3. A bearer token (auth_jwt of this location), checked by auth_jwt itself.
    if let Some(rt) = &lcf.jwt.runtime {
        let rt = rt.clone();
        let has_token = super::jwt::has_token(request, &rt);
        if has_token || cc.anonymous().is_none() {
            let rc = super::jwt::access(request, ctx, &rt);
            if rc != NGX_OK as ngx_int_t {
                return Step::Return(rc);
            }
            let Some(v) = ctx
                .auth
                .as_ref()
                .and_then(|a| a.valid())
                .map(|v| v as *const _)
            else {
                return Step::Return(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
            };
            // SAFETY: the verified token is kept by the request context's outcome, which is
            // not touched while `token` is used below.
            let token: &gateway_core::jwt::Verified = unsafe { &*v };
            let found = with_view(|v, gen| by_token(v, gen, token, cc));
            return settle(ctx, found);
        }
    }
    // 4. No credential: the anonymous consumer, or 401.
    match cc.anonymous() {
        Some(anon) => {
            let id = with_view(|v, gen| match v.consumer(anon.as_bytes()) {
                Some(c) => {
                    let mut id = Identity::of(&c, Credential::Anonymous, version_of(v, gen));
                    id.registered = false;
                    Ok(id)
                }
                None => Ok(Identity::bare(
                    anon,
                    Credential::Anonymous,
                    version_of(v, gen),
                )),
            });
            settle(ctx, id)
        }
        None => Step::Refuse(refuse(
            401,
            "credential_missing",
            "the request has no credential",
        )),
    }
}

/// The consumer of a valid token: denylist, binding, unregistered.
fn by_token(
    v: &View<'_>,
    gen: u64,
    token: &gateway_core::jwt::Verified,
    cc: &ConsumerConf,
) -> Result<Identity, Refusal> {
    let claim_str = |name: &[u8]| -> Option<&[u8]> {
        let name = core::str::from_utf8(name).ok()?;
        token
            .claim(&[name])
            .and_then(|c| c.as_str())
            .map(|s| s.as_bytes())
    };
    if let Some(jti) = claim_str(b"jti") {
        if v.jti_denied(jti) {
            return Err(refuse(401, "token_revoked", "the token is revoked (jti)"));
        }
    }
    let sub = token.sub().unwrap_or_default();
    if !sub.is_empty() && v.sub_denied(sub.as_bytes()) {
        return Err(refuse(
            401,
            "token_revoked",
            "the token's subject is revoked (sub)",
        ));
    }
    let mut id = match v.by_jwt(&claim_str) {
        Some(c) => {
            let id = Identity::of(&c, Credential::Jwt, version_of(v, gen));
            consumer_checks(v, &c)?;
            id
        }
        None if cc.unregistered_allow() && !sub.is_empty() => {
            Identity::bare(sub, Credential::Jwt, version_of(v, gen))
        }
        None => {
            return Err(refuse(
                403,
                "unregistered",
                "the token is valid but belongs to no registered consumer",
            ))
        }
    };
    for path in cc.groups_claims.iter().flatten() {
        if let Some(value) = token.claim_path(path) {
            for g in claim_groups(value) {
                id.add_group(&g);
            }
        }
    }
    Ok(id)
}

/// Group names in a claim: an array of strings, or a space-separated string (`scope`).
fn claim_groups(value: &serde_json::Value) -> Vec<String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
    };
    match value {
        serde_json::Value::String(s) => s.split(' ').filter(|g| ok(g)).map(String::from).collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .filter(|g| ok(g))
            .take(64)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// A registered consumer may be disabled or on the denylist.
fn consumer_checks(v: &View<'_>, c: &Consumer<'_>) -> Result<(), Refusal> {
    if c.disabled() {
        return Err(refuse(403, "consumer_disabled", "the consumer is disabled"));
    }
    if v.consumer_denied(c.id()) {
        return Err(refuse(
            403,
            "consumer_denied",
            "the consumer is on the denylist",
        ));
    }
    Ok(())
}

fn settle(ctx: &mut RequestCtx, found: Option<Result<Identity, Refusal>>) -> Step {
    match found {
        Some(Ok(id)) => {
            ctx.consumer = Some(id);
            Step::Grant
        }
        Some(Err(r)) => Step::Refuse(r),
        None => Step::Refuse(refuse(
            503,
            "policy_unavailable",
            "no policy document is in force",
        )),
    }
}

/// The route's access rules (`auth_consumer_acl on`), decided with the document in force.
fn acl(request: &Request, ctx: &RequestCtx, cc: &ConsumerConf) -> Step {
    if !cc.acl() {
        return Step::Grant;
    }
    let Some(id) = ctx.consumer.as_ref() else {
        return Step::Grant;
    };
    let route = cc.route.as_deref().unwrap_or_default();
    let method = request.as_ref().method_name.as_bytes();
    // Up to 32 groups on the stack (a consumer's and its token's are bounded, 64 each).
    let mut stack: [&[u8]; 32] = [b""; 32];
    let mut n = 0;
    let mut more = Vec::new();
    for g in id.groups() {
        if n < stack.len() {
            stack[n] = g.as_bytes();
            n += 1;
        } else {
            more.push(g.as_bytes());
        }
    }
    let groups: std::borrow::Cow<'_, [&[u8]]> = if more.is_empty() {
        std::borrow::Cow::Borrowed(&stack[..n])
    } else {
        let mut all = stack[..n].to_vec();
        all.extend(more);
        std::borrow::Cow::Owned(all)
    };
    let identified = id.credential != Credential::Anonymous;
    match with_view(|v, _| v.access(route.as_bytes(), method, &groups, identified)) {
        Some(Access::Allowed) => Step::Grant,
        Some(Access::Forbidden) => Step::Refuse(refuse(
            403,
            "group_forbidden",
            "no access rule of the route admits the consumer's groups and method",
        )),
        Some(Access::UnknownRoute) => Step::Refuse(refuse(
            403,
            "route_unknown",
            "the policy has no access rule for the route",
        )),
        None => Step::Refuse(refuse(
            503,
            "policy_unavailable",
            "no policy document is in force",
        )),
    }
}

/// Answers a refusal with an RFC 9457 problem (or the location's `error_page`).
fn problem(request: &mut Request, r: Refusal) -> ngx_int_t {
    let status = r.status as ngx_int_t;
    if super::has_error_page(request, status) {
        return status;
    }
    let title: &[u8] = match r.status {
        401 => b"Unauthorized",
        403 => b"Forbidden",
        _ => b"Service Unavailable",
    };
    let mut p = gateway_core::log::Record::new();
    p.str("type", b"about:blank");
    p.str("title", title);
    p.int("status", status as i64);
    p.str("detail", r.detail.as_bytes());
    p.str("reason", r.code.as_bytes());
    let mut body = Vec::with_capacity(200);
    p.write_line(&mut body);
    let rp: *mut ngx_http_request_t = request.as_mut();
    // SAFETY: `rp` is the live request.
    let rc = unsafe { super::send_body(rp, status, "application/problem+json", &body) };
    // SAFETY: the response is complete: finalize and return NGX_DONE (the phase checker must
    // not touch the request again).
    unsafe { nginx_sys::ngx_http_finalize_request(rp, rc) };
    nginx_sys::NGX_DONE as ngx_int_t
}

// ---------------------------------------------------------------------------------------
// What goes upstream.

/// The lower-case form of an identity header name (what nginx keeps in `lowcase_key`).
fn lowercase_name(name: &str) -> &'static str {
    match name {
        "X-Consumer-ID" => "x-consumer-id",
        "X-Consumer-Username" => "x-consumer-username",
        "X-Consumer-Groups" => "x-consumer-groups",
        "X-Anonymous-Consumer" => "x-anonymous-consumer",
        _ => "x-credential-identifier",
    }
}

/// Headers the gateway sets for the upstream; a client's copies never pass.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "X-Consumer-ID",
    "X-Consumer-Username",
    "X-Consumer-Groups",
    "X-Anonymous-Consumer",
    "X-Credential-Identifier",
];

/// Sets the upstream identity headers once per request (access phase, or the precontent phase
/// when another module granted access first): the client's copies always go.
pub fn identity_headers_once(
    request: &mut Request,
    ctx: &mut RequestCtx,
    cc: &ConsumerConf,
) -> Option<()> {
    if ctx.policy.headers_done {
        return Some(());
    }
    ctx.policy.headers_done = true;
    upstream_headers(request, ctx, cc)
}

/// Rebuilds the request's header list without the client's identity headers (and without the
/// API key when `hide_credentials`), then adds the identity; strips the key from the query
/// string or the cookie as well. nginx's pointers to known headers (`host`, ...) keep pointing
/// at the old elements, which stay in the pool unchanged; modules that send headers upstream
/// read the list.
fn upstream_headers(request: &mut Request, ctx: &RequestCtx, cc: &ConsumerConf) -> Option<()> {
    let hide = cc.api_key().filter(|a| {
        a.hide
            && ctx
                .consumer
                .as_ref()
                .is_some_and(|c| c.credential == Credential::ApiKey)
    });
    let r: *mut ngx_http_request_t = request.as_mut();
    // Whether the element goes (Some(None)), is rewritten (Some(Some(value))), or stays.
    let change = |h: &ngx_table_elt_t| -> Option<Option<Vec<u8>>> {
        let name = h.key.as_bytes();
        if IDENTITY_HEADERS
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            return Some(None);
        }
        for src in hide.map(|a| a.sources.as_slice()).unwrap_or_default() {
            match src {
                KeySource::Header(n) if name.eq_ignore_ascii_case(n.as_bytes()) => {
                    return Some(None)
                }
                KeySource::Cookie(n) if name.eq_ignore_ascii_case(b"cookie") => {
                    let value = h.value.as_bytes();
                    if gateway_core::oidc::rp::cookie(value, n.as_bytes()).is_some() {
                        let kept = without_cookie(value, n.as_bytes());
                        return Some((!kept.is_empty()).then_some(kept));
                    }
                }
                _ => {}
            }
        }
        None
    };
    // SAFETY: the live request; a new list and its elements live in the request pool.
    unsafe {
        let pool = (*r).pool;
        // Most requests send nothing to take away: the identity is added to the list as is.
        if any_header(&(*r).headers_in.headers, |h| change(h).is_some()) {
            // The list is made again in place (its `last` points into the struct itself).
            let old = collect_headers(&(*r).headers_in.headers);
            let list = &mut (*r).headers_in.headers;
            let elt = core::mem::size_of::<ngx_table_elt_t>();
            if nginx_sys::ngx_list_init(list, pool, old.len() + IDENTITY_HEADERS.len(), elt)
                != NGX_OK as ngx_int_t
            {
                return None;
            }
            for mut h in old {
                match change(&h) {
                    Some(None) => continue,
                    Some(Some(value)) => h.value = pool_str(pool, &value)?,
                    None => {}
                }
                let p = nginx_sys::ngx_list_push(list).cast::<ngx_table_elt_t>();
                if p.is_null() {
                    return None;
                }
                *p = h;
            }
        }
        let list = &mut (*r).headers_in.headers;
        if let Some(id) = &ctx.consumer {
            let groups = id.groups_joined();
            // The names are static, the values point into the identity, which lives in the
            // request context as long as the request: nothing is copied.
            let mut add = |k: &'static str, v: &[u8]| -> Option<()> {
                if gateway_core::header::first_unsafe_byte(v).is_some() {
                    return Some(());
                }
                let p = nginx_sys::ngx_list_push(list).cast::<ngx_table_elt_t>();
                if p.is_null() {
                    return None;
                }
                ptr::write_bytes(p, 0, 1);
                let lower = lowercase_name(k);
                (*p).key = ngx_str_t {
                    len: k.len(),
                    data: k.as_ptr().cast_mut(),
                };
                (*p).value = ngx_str_t {
                    len: v.len(),
                    data: v.as_ptr().cast_mut(),
                };
                (*p).lowcase_key = lower.as_ptr().cast_mut();
                (*p).hash = nginx_sys::ngx_hash_key(lower.as_ptr().cast_mut(), lower.len());
                Some(())
            };
            if id.credential == Credential::Anonymous {
                add("X-Anonymous-Consumer", b"true")?;
            }
            add("X-Consumer-ID", id.id.as_bytes())?;
            add("X-Consumer-Username", id.username().as_bytes())?;
            if !groups.is_empty() {
                add("X-Consumer-Groups", groups.as_bytes())?;
            }
            if let Some(k) = &id.key_name {
                add("X-Credential-Identifier", k.as_bytes())?;
            }
        }
        if let Some(a) = hide {
            for src in &a.sources {
                if let KeySource::Query(n) = src {
                    let args = (*r).args.as_bytes();
                    let kept = gateway_core::log::credentials::without_arg(args, n.as_bytes());
                    if kept.len() != args.len() {
                        (*r).args = pool_str(pool, &kept)?;
                        // proxy_pass without a URI sends the URI as received unless told not to.
                        (*r).set_valid_unparsed_uri(0);
                    }
                }
            }
        }
    }
    Some(())
}

/// Whether an element of an nginx list of headers satisfies `f`.
///
/// # Safety
/// `list` is a live list of `ngx_table_elt_t`.
unsafe fn any_header(list: &nginx_sys::ngx_list_t, f: impl Fn(&ngx_table_elt_t) -> bool) -> bool {
    let mut part: *const nginx_sys::ngx_list_part_t = &list.part;
    // SAFETY: per the function's contract.
    unsafe {
        while !part.is_null() {
            let elts = (*part).elts.cast::<ngx_table_elt_t>();
            for i in 0..(*part).nelts {
                if f(&*elts.add(i)) {
                    return true;
                }
            }
            part = (*part).next;
        }
    }
    false
}

/// The elements of an nginx list of headers, copied.
///
/// # Safety
/// `list` is a live list of `ngx_table_elt_t`.
unsafe fn collect_headers(list: &nginx_sys::ngx_list_t) -> Vec<ngx_table_elt_t> {
    let mut out = Vec::new();
    let mut part: *const nginx_sys::ngx_list_part_t = &list.part;
    // SAFETY: per the function's contract.
    unsafe {
        while !part.is_null() {
            let elts = (*part).elts.cast::<ngx_table_elt_t>();
            for i in 0..(*part).nelts {
                out.push(*elts.add(i));
            }
            part = (*part).next;
        }
    }
    out
}

/// A `Cookie` header value without cookie `name`.
fn without_cookie(header: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for pair in header.split(|&b| b == b';') {
        let t = pair.trim_ascii();
        if t.is_empty() {
            continue;
        }
        let n = t.split(|&b| b == b'=').next().unwrap_or_default();
        if n == name {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(t);
    }
    out
}

fn pool_str(pool: *mut nginx_sys::ngx_pool_t, s: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: `pool` is the live request pool.
    let data = unsafe { nginx_sys::ngx_pnalloc(pool, s.len().max(1)) }.cast::<u8>();
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` has room for `s`.
    unsafe { ptr::copy_nonoverlapping(s.as_ptr(), data, s.len()) };
    Some(ngx_str_t { len: s.len(), data })
}

// ---------------------------------------------------------------------------------------
// Status and metrics.

/// The policy's state for `gateway_status` and the metrics.
pub struct State {
    pub source: String,
    pub version: Option<String>,
    pub generation: u64,
    pub summary: Option<policy::Summary>,
    pub installed_ms: u64,
    pub last_ok_ms: u64,
    pub last_error_ms: u64,
    pub last_error: String,
    pub installed: u64,
    pub refused: u64,
    pub failed: u64,
}

/// The version in force (`$gateway_policy_version`, the record's `policy.version`).
pub fn version_in_force(_pc: &PolicyConf) -> Option<String> {
    with_view(|v, _| String::from_utf8_lossy(v.version()).into_owned())
}

pub fn state(pc: &PolicyConf) -> State {
    let (version, generation, summary) = with_view(|v, g| {
        (
            Some(String::from_utf8_lossy(v.version()).into_owned()),
            g,
            Some(v.summary()),
        )
    })
    .unwrap_or((None, 0, None));
    let mut st = State {
        source: pc.source.describe(),
        version,
        generation,
        summary,
        installed_ms: 0,
        last_ok_ms: 0,
        last_error_ms: 0,
        last_error: String::new(),
        installed: 0,
        refused: 0,
        failed: 0,
    };
    with_shared(|s| {
        st.installed_ms = s.installed_ms;
        st.last_ok_ms = s.last_ok_ms;
        st.last_error_ms = s.last_error_ms;
        st.last_error = String::from_utf8_lossy(&s.error[..s.error_len as usize]).into_owned();
        st.installed = s.installed;
        st.refused = s.refused;
        st.failed = s.failed;
    });
    st
}

/// Content handler of `gateway_status`: JSON for operators (read-only).
pub unsafe extern "C" fn status_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard_request(r, || {
        // SAFETY: nginx calls content handlers with a live request.
        let request = unsafe { Request::from_ngx_http_request(r) };
        let Some(mcf) = <GatewayModule as HttpModuleMainConf>::main_conf(request) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        if let Some(pc) = mcf.policy.as_ref() {
            maybe_fetch(request, pc, now_ms());
        }
        let body = render_status(mcf);
        // SAFETY: `r` is live; the body is copied into its pool.
        unsafe { super::send_body(r, 200, "application/json", body.as_bytes()) }
    })
}

/// Whether the location identifies consumers (the access handler calls [`access`]).
pub fn wanted(lcf: &LocConf) -> bool {
    lcf.consumer.active() || lcf.consumer.acl()
}

/// The `gateway_status` document.
fn render_status(mcf: &MainConf) -> String {
    use serde_json::{json, Map, Value};
    let secs = |ms: u64| {
        if ms == 0 {
            Value::Null
        } else {
            json!(ms / 1000)
        }
    };
    let mut doc = Map::new();
    doc.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    doc.insert("time".into(), json!(now_ms() / 1000));
    if let Some(pc) = mcf.policy.as_ref() {
        let st = state(pc);
        let mut p = Map::new();
        p.insert("source".into(), json!(st.source));
        p.insert("version".into(), json!(st.version));
        p.insert("generation".into(), json!(st.generation));
        p.insert("installed_at".into(), secs(st.installed_ms));
        p.insert("last_check_ok_at".into(), secs(st.last_ok_ms));
        p.insert("last_error_at".into(), secs(st.last_error_ms));
        p.insert(
            "last_error".into(),
            if st.last_error.is_empty() {
                Value::Null
            } else {
                json!(st.last_error)
            },
        );
        p.insert(
            "loads".into(),
            json!({"installed": st.installed, "refused": st.refused, "failed": st.failed}),
        );
        if let Some(s) = st.summary {
            p.insert("consumers".into(), json!(s.consumers));
            p.insert("api_keys".into(), json!(s.api_keys));
            p.insert("plans".into(), json!(s.plans));
            p.insert("rules".into(), json!(s.rules));
            p.insert("denied".into(), json!(s.denied));
        }
        doc.insert("policy".into(), Value::Object(p));
    }
    let mut zones = Map::new();
    for z in &mcf.zones {
        // SAFETY: zones live in the configuration pool.
        let z = unsafe { &**z };
        let mut m = Map::new();
        if let Some(s) = z.stats() {
            m.insert("keys".into(), json!(s.used));
            m.insert("capacity".into(), json!(s.capacity));
            m.insert("evictions".into(), json!(s.evictions));
        }
        if let Some(down) = z.sync_down() {
            m.insert("sync".into(), json!(if down { "down" } else { "up" }));
        }
        zones.insert(z.name.clone(), Value::Object(m));
    }
    doc.insert("rate_limit_zones".into(), Value::Object(zones));
    doc.insert("key_sets".into(), json!(super::jwks::status()));
    let mut out = serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default();
    out.push('\n');
    out
}

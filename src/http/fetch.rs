//! Detached fetches: an nginx subrequest the module runs on behalf of no client.
//!
//! A key set or discovery document must not depend on the client whose request happened to
//! need it: not on its headers (a `Range` or `If-None-Match` would turn the provider's answer
//! into 206 or 304, an `Accept-Encoding` into gzip, and its `Authorization` or cookies would
//! reach the provider), and not on its connection (a client that disconnects would abort the
//! fetch and count as the provider's failure). So the fetch is a subrequest of a main request
//! the module makes itself, as nginx's HTTP/2 code makes one per stream: its own pool, a
//! connection with no socket, a fixed list of request headers (`Accept`, `User-Agent`), no
//! body, and of the client only the server block whose locations it runs in. It ends when the
//! provider answers or the key location's own `proxy_*_timeout`s end it; the client that
//! triggered it merely waits for the result, and may leave at any time.
//!
//! nginx finalizes the subrequest as usual; the post-subrequest handler hands the response to
//! the caller's callback, then wakes the main request, which tears everything down from a
//! posted event (never from inside nginx's own loops over the connection).

use core::ffi::c_void;
use core::ptr;
use std::cell::RefCell;

use nginx_sys::{
    ngx_connection_t, ngx_create_pool, ngx_destroy_pool, ngx_event_t, ngx_http_log_ctx_t,
    ngx_http_post_subrequest_t, ngx_http_request_t, ngx_http_subrequest, ngx_int_t, ngx_list_t,
    ngx_log_t, ngx_pool_t, ngx_str_t, ngx_table_elt_t, NGX_AGAIN, NGX_HTTP_SUBREQUEST_IN_MEMORY,
    NGX_HTTP_SUBREQUEST_WAITED, NGX_OK,
};
use ngx::http::Request;

/// What the provider answered, as the post-subrequest handler sees it.
pub struct Answer<'a> {
    /// The subrequest's status: the upstream's, or the one nginx gave up with (502 refused,
    /// 504 timed out...).
    pub status: usize,
    /// The response could not be read whole (e.g. larger than
    /// `subrequest_output_buffer_size`): the body is cut short or empty.
    pub incomplete: bool,
    pub content_type: &'a [u8],
    pub headers: &'a ngx_list_t,
    pub body: &'a [u8],
    /// The fetch's own log (lines say `gateway fetch: "/uri"`).
    pub log: *mut ngx_log_t,
}

impl Answer<'_> {
    /// A response header (the first of that name), or empty.
    pub fn header(&self, name: &[u8]) -> &[u8] {
        // SAFETY: the subrequest's header list is valid while the answer is looked at.
        for (k, v) in unsafe { ngx::http::list_iterator(self.headers) } {
            if k.as_bytes().eq_ignore_ascii_case(name) {
                return v.as_bytes();
            }
        }
        b""
    }
}

/// Called once with the provider's answer.
pub type OnDone = Box<dyn FnOnce(&Answer)>;

/// A POST fetch: headers besides the fixed ones (e.g. `Authorization: Basic`), and the body,
/// sent as `application/x-www-form-urlencoded`.
pub struct Post {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Everything one fetch owns. Boxed: nginx holds pointers into it until it is freed.
struct Job {
    conn: ngx_connection_t,
    rev: ngx_event_t,
    wev: ngx_event_t,
    log: ngx_log_t,
    log_ctx: ngx_http_log_ctx_t,
    /// Runs the fake connection's posted requests (the start, and the wake-up at the end).
    kick: ngx_event_t,
    /// Frees the job, after nginx is done with its connection.
    free: ngx_event_t,
    pool: *mut ngx_pool_t,
    main: *mut ngx_http_request_t,
    uri: String,
    /// `If-None-Match` to send (the entity tag of the document held).
    if_none_match: Option<Vec<u8>>,
    /// A POST: its extra headers and form body (the token endpoint of `oidc_provider`).
    post: Option<Post>,
    on_done: Option<OnDone>,
    finished: bool,
}

thread_local! {
    /// The fetches of this worker that have not been freed yet.
    static JOBS: RefCell<Vec<*mut Job>> = const { RefCell::new(Vec::new()) };
}

/// Headers every fetch sends; nothing of the client's request is ever added.
const HEADERS: [(&str, &str); 2] = [
    ("Accept", "application/json, application/jwk-set+json"),
    ("User-Agent", "ngx-gateway"),
];

unsafe extern "C" fn noop_event(_ev: *mut ngx_event_t) {}

/// The fake connection's log line context: `while <action>, gateway fetch: "<uri>"` and the
/// upstream, where nginx would print the client and its request.
unsafe extern "C" fn log_handler(log: *mut ngx_log_t, buf: *mut u8, len: usize) -> *mut u8 {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: nginx passes the log this handler is set on (its `data` is the job's
        // log context) and a buffer of `len` writable bytes.
        unsafe {
            let mut text = Vec::with_capacity(128);
            if !(*log).action.is_null() {
                text.extend_from_slice(b" while ");
                text.extend_from_slice(core::ffi::CStr::from_ptr((*log).action).to_bytes());
            }
            let ctx = (*log).data.cast::<ngx_http_log_ctx_t>();
            // The fetch as configured (the main request keeps the URI), and the upstream of
            // the subrequest running now, if any.
            let (main, r) = if ctx.is_null() {
                (ptr::null_mut(), ptr::null_mut())
            } else {
                ((*ctx).request, (*ctx).current_request)
            };
            if !main.is_null() {
                text.extend_from_slice(b", gateway fetch: \"");
                text.extend_from_slice((*main).uri.as_bytes());
                text.push(b'"');
            }
            if !r.is_null() {
                let u = (*r).upstream;
                if !u.is_null() && !(*u).peer.name.is_null() {
                    text.extend_from_slice(b", upstream: \"");
                    text.extend_from_slice((*u).schema.as_bytes());
                    text.extend_from_slice((*(*u).peer.name).as_bytes());
                    text.extend_from_slice((*u).uri.as_bytes());
                    text.push(b'"');
                }
            }
            let n = text.len().min(len);
            ptr::copy_nonoverlapping(text.as_ptr(), buf, n);
            n
        }
    });
    // SAFETY: `n` bytes at most `len` were written.
    unsafe { buf.add(r.unwrap_or(0)) }
}

fn pool_str(pool: *mut ngx_pool_t, s: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: `pool` is the job's live pool.
    let data = unsafe { nginx_sys::ngx_pnalloc(pool, s.len().max(1)) }.cast::<u8>();
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` has room for `s`.
    unsafe { ptr::copy_nonoverlapping(s.as_ptr(), data, s.len()) };
    Some(ngx_str_t { len: s.len(), data })
}

/// Starts a detached in-memory subrequest to `uri` (a local URI of the triggering request's
/// server block); `on_done` gets the answer. The request is sent from a posted event, once
/// the caller's handler has returned. `Err` when nothing could be started (out of memory).
pub fn start(trigger: &Request, uri: &str, on_done: OnDone) -> Result<(), ()> {
    start_job(trigger, uri, None, None, on_done)
}

/// A POST fetch (see [`Post`]); the answer goes to `on_done` as for [`start`].
pub fn start_post(trigger: &Request, uri: &str, post: Post, on_done: OnDone) -> Result<(), ()> {
    start_job(trigger, uri, None, Some(post), on_done)
}

/// [`start`], with an `If-None-Match` header: a conditional request for a document of which
/// the caller holds the version with that entity tag (the answer is then 304, with no body).
pub fn start_conditional(
    trigger: &Request,
    uri: &str,
    if_none_match: Option<Vec<u8>>,
    on_done: OnDone,
) -> Result<(), ()> {
    start_job(trigger, uri, if_none_match, None, on_done)
}

fn start_job(
    trigger: &Request,
    uri: &str,
    if_none_match: Option<Vec<u8>>,
    post: Option<Post>,
    on_done: OnDone,
) -> Result<(), ()> {
    let tr: *const ngx_http_request_t = trigger.as_ref();
    // SAFETY: zeroed nginx structs are their "empty" state; the job is boxed so that the
    // pointers nginx keeps into it stay valid until `free_job`.
    let job = Box::new(unsafe {
        Job {
            conn: core::mem::zeroed(),
            rev: core::mem::zeroed(),
            wev: core::mem::zeroed(),
            log: core::mem::zeroed(),
            log_ctx: core::mem::zeroed(),
            kick: core::mem::zeroed(),
            free: core::mem::zeroed(),
            pool: ptr::null_mut(),
            main: ptr::null_mut(),
            uri: uri.to_string(),
            if_none_match,
            post,
            on_done: Some(on_done),
            finished: false,
        }
    });
    let jp = Box::into_raw(job);
    // SAFETY: `jp` is the job just leaked; `tr` is the live triggering request.
    match unsafe { set_up(jp, tr) } {
        Ok(()) => {
            JOBS.with(|j| j.borrow_mut().push(jp));
            // SAFETY: the kick event lives in the job until `free_job`.
            unsafe {
                nginx_sys::ngx_post_event(
                    ptr::addr_of_mut!((*jp).kick),
                    ptr::addr_of_mut!(nginx_sys::ngx_posted_events),
                )
            };
            Ok(())
        }
        Err(()) => {
            // SAFETY: nothing of nginx refers to the job yet (no subrequest was created).
            unsafe {
                if !(*jp).pool.is_null() {
                    ngx_destroy_pool((*jp).pool);
                }
                drop(Box::from_raw(jp));
            }
            Err(())
        }
    }
}

/// Builds the connection, the main request and the subrequest of a new job.
///
/// # Safety
/// `jp` is a freshly leaked job; `tr` a live request.
unsafe fn set_up(jp: *mut Job, tr: *const ngx_http_request_t) -> Result<(), ()> {
    // SAFETY: per the function's contract; every allocation is checked.
    unsafe {
        let j = &mut *jp;
        let tc = (*tr).connection;
        let c: *mut ngx_connection_t = &mut j.conn;

        // The log: where the triggering request logs, with this job's context.
        j.log = *(*tc).log;
        j.log.action = ptr::null_mut();
        j.log.handler = Some(log_handler);
        j.log.data = ptr::addr_of_mut!(j.log_ctx).cast();
        let counter = nginx_sys::ngx_connection_counter.cast::<core::sync::atomic::AtomicUsize>();
        (*c).number = if counter.is_null() {
            0
        } else {
            (*counter).fetch_add(1, core::sync::atomic::Ordering::SeqCst) as _
        };
        j.log.connection = (*c).number;
        let log: *mut ngx_log_t = &mut j.log;

        let pool = ngx_create_pool(4096, log);
        if pool.is_null() {
            return Err(());
        }
        j.pool = pool;

        // A connection with no socket. Its events never fire; marking them active keeps
        // nginx from adding them to epoll, and the write side ready lets the upstream's
        // output reach the in-memory buffer.
        (*c).fd = -1;
        (*c).log = log;
        (*c).pool = pool;
        (*c).read = &mut j.rev;
        (*c).write = &mut j.wev;
        for (ev, write) in [(&mut j.rev, false), (&mut j.wev, true)] {
            ev.data = c.cast();
            ev.log = log;
            ev.handler = Some(noop_event);
            ev.set_active(1);
            if write {
                ev.set_write(1);
                ev.set_ready(1);
            }
        }
        (*c).set_log_error(nginx_sys::ngx_connection_log_error_e_NGX_ERROR_INFO);
        (*c).set_tcp_nodelay(nginx_sys::ngx_connection_tcp_nodelay_e_NGX_TCP_NODELAY_DISABLED);
        (*c).set_tcp_nopush(nginx_sys::ngx_connection_tcp_nopush_e_NGX_TCP_NOPUSH_DISABLED);
        (*c).start_time = nginx_sys::ngx_current_msec;
        (*c).requests = 1;
        (*c).listening = (*tc).listening;
        // The gateway is the client of its own fetch: its own address on both ends, so
        // $remote_addr in the key location names this server, not the triggering client.
        if nginx_sys::ngx_connection_local_sockaddr(tc, ptr::null_mut(), 0) != NGX_OK as ngx_int_t
            || (*tc).local_sockaddr.is_null()
        {
            return Err(());
        }
        let len = (*tc).local_socklen as usize;
        let sa = nginx_sys::ngx_pnalloc(pool, len).cast::<u8>();
        let text = nginx_sys::ngx_pnalloc(pool, 128).cast::<u8>();
        if sa.is_null() || text.is_null() {
            return Err(());
        }
        ptr::copy_nonoverlapping((*tc).local_sockaddr.cast::<u8>(), sa, len);
        (*c).sockaddr = sa.cast();
        (*c).socklen = (*tc).local_socklen;
        (*c).local_sockaddr = sa.cast();
        (*c).local_socklen = (*tc).local_socklen;
        (*c).addr_text = ngx_str_t {
            len: nginx_sys::ngx_sock_ntop(sa.cast(), (*c).socklen, text, 128, 0),
            data: text,
        };

        // The main request: the triggering request's server block, nothing else of it.
        let r = nginx_sys::ngx_pcalloc(pool, core::mem::size_of::<ngx_http_request_t>())
            .cast::<ngx_http_request_t>();
        if r.is_null() {
            return Err(());
        }
        j.main = r;
        j.log_ctx.connection = c;
        j.log_ctx.request = r;
        j.log_ctx.current_request = r;
        (*c).data = r.cast();
        (*r).signature = nginx_sys::NGX_HTTP_MODULE;
        (*r).connection = c;
        (*r).pool = pool;
        (*r).main = r;
        (*r).set_count(1);
        (*r).main_conf = (*tr).main_conf;
        (*r).srv_conf = (*tr).srv_conf;
        (*r).loc_conf = (*tr).loc_conf;
        (*r).ctx = nginx_sys::ngx_pcalloc(
            pool,
            core::mem::size_of::<*mut c_void>() * nginx_sys::ngx_http_max_module,
        )
        .cast();
        let cmcf = (*(*tr)
            .main_conf
            .add(nginx_sys::ngx_http_core_module.ctx_index))
        .cast::<nginx_sys::ngx_http_core_main_conf_t>();
        (*r).variables = nginx_sys::ngx_pcalloc(
            pool,
            (*cmcf).variables.nelts * core::mem::size_of::<nginx_sys::ngx_http_variable_value_t>(),
        )
        .cast();
        let hc = nginx_sys::ngx_pcalloc(
            pool,
            core::mem::size_of::<nginx_sys::ngx_http_connection_t>(),
        )
        .cast::<nginx_sys::ngx_http_connection_t>();
        (*r).request_body = nginx_sys::ngx_pcalloc(
            pool,
            core::mem::size_of::<nginx_sys::ngx_http_request_body_t>(),
        )
        .cast();
        if (*r).ctx.is_null()
            || (*r).variables.is_null()
            || hc.is_null()
            || (*r).request_body.is_null()
        {
            return Err(());
        }
        let thc = (*tr).http_connection;
        if !thc.is_null() {
            (*hc).conf_ctx = (*thc).conf_ctx;
            (*hc).addr_conf = (*thc).addr_conf;
        }
        (*r).http_connection = hc;

        let elt = core::mem::size_of::<ngx_table_elt_t>();
        if nginx_sys::ngx_list_init(&mut (*r).headers_in.headers, pool, HEADERS.len() + 4, elt)
            != NGX_OK as ngx_int_t
            || nginx_sys::ngx_list_init(&mut (*r).headers_out.headers, pool, 1, elt)
                != NGX_OK as ngx_int_t
            || nginx_sys::ngx_list_init(&mut (*r).headers_out.trailers, pool, 1, elt)
                != NGX_OK as ngx_int_t
        {
            return Err(());
        }
        for (k, v) in HEADERS {
            let h =
                nginx_sys::ngx_list_push(&mut (*r).headers_in.headers).cast::<ngx_table_elt_t>();
            if h.is_null() {
                return Err(());
            }
            ptr::write_bytes(h, 0, 1);
            nginx_sys::add_to_ngx_table(h, pool, k, v).ok_or(())?;
        }
        if let Some(tag) = j.if_none_match.as_deref() {
            // The tag as the control plane sent it (the caller checked it is header-safe).
            let h =
                nginx_sys::ngx_list_push(&mut (*r).headers_in.headers).cast::<ngx_table_elt_t>();
            if h.is_null() {
                return Err(());
            }
            ptr::write_bytes(h, 0, 1);
            nginx_sys::add_to_ngx_table(h, pool, "If-None-Match", tag).ok_or(())?;
        }
        if let Some(post) = j.post.as_ref() {
            // Content-Length comes from the subrequest's content_length_n (set below).
            let fixed = [("Content-Type", "application/x-www-form-urlencoded")];
            for (k, v) in fixed
                .iter()
                .map(|(k, v)| (*k, *v))
                .chain(post.headers.iter().map(|(k, v)| (*k, v.as_str())))
            {
                let h = nginx_sys::ngx_list_push(&mut (*r).headers_in.headers)
                    .cast::<ngx_table_elt_t>();
                if h.is_null() {
                    return Err(());
                }
                ptr::write_bytes(h, 0, 1);
                nginx_sys::add_to_ngx_table(h, pool, k, v).ok_or(())?;
            }
        }
        (*r).headers_in.content_length_n = -1;
        (*r).headers_in.keep_alive_n = -1;
        (*r).headers_out.content_length_n = -1;
        (*r).headers_out.last_modified_time = -1;

        let uri = pool_str(pool, j.uri.as_bytes()).ok_or(())?;
        (*r).uri = uri;
        (*r).unparsed_uri = uri;
        (*r).request_line =
            pool_str(pool, format!("GET {} HTTP/1.1", j.uri).as_bytes()).ok_or(())?;
        (*r).method = nginx_sys::NGX_HTTP_GET as _;
        (*r).method_name = ngx_str_t {
            len: 3,
            data: b"GET".as_ptr().cast_mut(),
        };
        (*r).http_version = nginx_sys::NGX_HTTP_VERSION_11 as _;
        (*r).http_protocol = ngx_str_t {
            len: 8,
            data: b"HTTP/1.1".as_ptr().cast_mut(),
        };
        (*r).set_subrequests(nginx_sys::NGX_HTTP_MAX_SUBREQUESTS + 1);
        (*r).set_uri_changes(nginx_sys::NGX_HTTP_MAX_URI_CHANGES + 1);
        (*r).set_http_state(nginx_sys::ngx_http_state_e_NGX_HTTP_PROCESS_REQUEST_STATE);
        // Never logged: it has no response of its own (the subrequest may be, with
        // log_subrequest).
        (*r).set_logged(1);
        let tp = nginx_sys::ngx_timeofday();
        (*r).start_sec = tp.sec;
        (*r).start_msec = tp.msec;
        (*r).read_event_handler = Some(nginx_sys::ngx_http_block_reading);
        (*r).write_event_handler = Some(main_done);

        for (ev, handler) in [(&mut j.kick, kick as _), (&mut j.free, free_job as _)] {
            ev.data = jp.cast();
            ev.log = (*nginx_sys::ngx_cycle).log;
            ev.handler = Some(handler);
        }

        let psr = nginx_sys::ngx_pcalloc(pool, core::mem::size_of::<ngx_http_post_subrequest_t>())
            .cast::<ngx_http_post_subrequest_t>();
        if psr.is_null() {
            return Err(());
        }
        (*psr).handler = Some(subrequest_done);
        (*psr).data = jp.cast();
        let mut sr: *mut ngx_http_request_t = ptr::null_mut();
        let mut target = uri;
        let flags =
            (NGX_HTTP_SUBREQUEST_IN_MEMORY | NGX_HTTP_SUBREQUEST_WAITED) as nginx_sys::ngx_uint_t;
        if ngx_http_subrequest(r, &mut target, ptr::null_mut(), &mut sr, psr, flags)
            != NGX_OK as ngx_int_t
        {
            return Err(());
        }
        if let Some(post) = j.post.as_ref() {
            // nginx makes every subrequest a GET without a body: this one is a POST whose
            // body the upstream module sends as it would a client's read body.
            let body = pool_str(pool, &post.body).ok_or(())?;
            let b = nginx_sys::ngx_pcalloc(pool, core::mem::size_of::<nginx_sys::ngx_buf_t>())
                .cast::<nginx_sys::ngx_buf_t>();
            let cl = nginx_sys::ngx_alloc_chain_link(pool);
            let rb = nginx_sys::ngx_pcalloc(
                pool,
                core::mem::size_of::<nginx_sys::ngx_http_request_body_t>(),
            )
            .cast::<nginx_sys::ngx_http_request_body_t>();
            if b.is_null() || cl.is_null() || rb.is_null() {
                return Err(());
            }
            (*b).start = body.data;
            (*b).pos = body.data;
            (*b).last = body.data.add(body.len);
            (*b).end = (*b).last;
            (*b).set_memory(1);
            (*b).set_last_buf(1);
            (*cl).buf = b;
            (*cl).next = ptr::null_mut();
            (*rb).bufs = cl;
            (*sr).request_body = rb;
            (*sr).headers_in.content_length_n = post.body.len() as _;
            (*sr).method = nginx_sys::NGX_HTTP_POST as _;
            (*sr).method_name = ngx_str_t {
                len: 4,
                data: b"POST".as_ptr().cast_mut(),
            };
        }
        Ok(())
    }
}

/// Posted event: runs the fake connection's posted requests (the subrequest at the start, the
/// main request once the subrequest is done).
unsafe extern "C" fn kick(ev: *mut ngx_event_t) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `data` is the job, alive until `free_job` (which unposts this event).
        unsafe {
            let j = (*ev).data.cast::<Job>();
            if (*j).conn.destroyed() == 0 {
                nginx_sys::ngx_http_run_posted_requests(ptr::addr_of_mut!((*j).conn));
            }
        }
    });
}

/// Post-subrequest handler: hands the answer over, then lets nginx finish the subrequest
/// normally (also when it failed: the failure is the provider's, and only concerns this
/// job's connection, which nginx must not tear down itself).
unsafe extern "C" fn subrequest_done(
    sr: *mut ngx_http_request_t,
    data: *mut c_void,
    rc: ngx_int_t,
) -> ngx_int_t {
    // SAFETY: nginx calls the handler with the live subrequest.
    let pending = unsafe { (*sr).buffered() != 0 || !(*sr).postponed.is_null() };
    if rc == NGX_AGAIN as ngx_int_t && pending {
        // Output still buffered: nginx finalizes the subrequest again once it is written.
        return rc;
    }
    let j = data.cast::<Job>();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `j` is the job (set in `set_up`), reached through the raw pointer only (its
        // connection and log are nginx's too); `sr` is its finished subrequest, the output
        // kept in memory.
        unsafe {
            if (*j).finished {
                return;
            }
            (*j).finished = true;
            // nginx left its last action ("sending to client") on the log: lines logged
            // from here are about the answer.
            (*j).log.action = ptr::null_mut();
            let sr = &*sr;
            // rc is NGX_OK when the upstream answered (whatever its status); an HTTP status
            // when nginx gave up before a response (502 refused, 504 timed out); NGX_ERROR,
            // or an error on the connection, when the response could not be read whole (e.g.
            // larger than subrequest_output_buffer_size).
            let incomplete =
                (*j).conn.error() != 0 || (rc != NGX_OK as ngx_int_t && !(300..600).contains(&rc));
            let status = if (300..600).contains(&rc) {
                rc as usize
            } else {
                sr.headers_out.status
            };
            let body: &[u8] = if sr.out.is_null() || (*sr.out).buf.is_null() {
                b""
            } else {
                // The in-memory response is one buffer from pos to last.
                let b = (*sr.out).buf;
                core::slice::from_raw_parts((*b).pos, (*b).last.offset_from((*b).pos) as usize)
            };
            let content_type = if sr.headers_out.content_type.data.is_null() {
                &b""[..]
            } else {
                sr.headers_out.content_type.as_bytes()
            };
            let answer = Answer {
                status,
                incomplete,
                content_type,
                headers: &sr.headers_out.headers,
                body,
                log: ptr::addr_of_mut!((*j).log),
            };
            if let Some(f) = (*j).on_done.take() {
                f(&answer);
            }
        }
    }));
    // SAFETY: the job outlives its subrequest; the kick event is unposted by `free_job`.
    unsafe {
        (*j).conn.set_error(0);
        nginx_sys::ngx_post_event(
            ptr::addr_of_mut!((*j).kick),
            ptr::addr_of_mut!(nginx_sys::ngx_posted_events),
        );
    }
    NGX_OK as ngx_int_t
}

/// The main request's write handler: nginx posts it when the subrequest is done.
unsafe extern "C" fn main_done(r: *mut ngx_http_request_t) {
    let _ = std::panic::catch_unwind(|| {
        let Some(j) = JOBS.with(|jobs| {
            jobs.borrow()
                .iter()
                .copied()
                // SAFETY: listed jobs are alive.
                .find(|&j| unsafe { (*j).main } == r)
        }) else {
            return;
        };
        // SAFETY: a listed job; the free event lives in it.
        unsafe {
            if !(*j).finished || (*j).conn.destroyed() != 0 {
                return;
            }
            // nginx's loop over posted requests checks this flag before touching the
            // connection again; the memory goes from the posted event.
            (*j).conn.set_destroyed(1);
            nginx_sys::ngx_post_event(
                ptr::addr_of_mut!((*j).free),
                ptr::addr_of_mut!(nginx_sys::ngx_posted_events),
            );
        }
    });
}

/// Posted event: frees a finished job.
unsafe extern "C" fn free_job(ev: *mut ngx_event_t) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `data` is the job, leaked by `start`, freed only here.
        unsafe {
            let jp = (*ev).data.cast::<Job>();
            JOBS.with(|jobs| jobs.borrow_mut().retain(|&j| j != jp));
            let j = &mut *jp;
            for e in [&mut j.rev, &mut j.wev, &mut j.kick] {
                if e.timer_set() != 0 {
                    nginx_sys::ngx_del_timer(e);
                }
                if e.posted() != 0 {
                    nginx_sys::ngx_delete_posted_event(e);
                }
            }
            ngx_destroy_pool(j.pool);
            drop(Box::from_raw(jp));
        }
    });
}

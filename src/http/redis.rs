//! Redis connections driven by nginx's event loop.
//!
//! [`Link`] is the transport shared by the rate-limit sync (`sync.rs`) and the request-time
//! client below: one non-blocking connection (plain, or TLS through nginx's OpenSSL with the
//! certificate and name checked), an output buffer written as the socket allows, an input
//! buffer filled as replies arrive. Its owner keeps the protocol (what was sent, what each
//! reply means) and its events' handlers.
//!
//! [`Client`] is a small client for request-time commands (the shared session store of
//! `oidc_provider ... session_store redis://`): one connection per worker and store, commands
//! pipelined in order, each with its own callback. A failure (connect, TLS, write, read, a
//! protocol error, no answer within the timeout) closes the connection and answers every
//! waiting command with an error; the next command reconnects. The caller decides what an
//! error means (the session store falls back to the node's own zone).

use core::ffi::c_void;
use core::ptr;
use std::collections::VecDeque;

use gateway_core::ratelimit::sync::RedisUrl;
use gateway_core::resp::{self, Reply};
use nginx_sys::{
    ngx_close_connection, ngx_connection_t, ngx_event_connect_peer, ngx_event_get_peer,
    ngx_event_handler_pt, ngx_event_t, ngx_handle_read_event, ngx_handle_write_event, ngx_int_t,
    ngx_log_t, ngx_peer_connection_t, ngx_str_t, NGX_AGAIN, NGX_LOG_ERR, NGX_OK,
};

use crate::conf::ratelimit::SyncTls;

/// What [`Link::recv`] got.
pub enum Recv {
    /// Bytes were appended to `inbuf`.
    Data,
    /// Nothing more for now.
    Again,
    /// The server closed the connection (or it broke).
    Closed,
}

/// One connection to a Redis server. See the module's documentation.
pub struct Link {
    pub conn: *mut ngx_connection_t,
    /// The TCP connection is being established.
    pub connecting: bool,
    /// The TLS handshake is under way.
    pub handshaking: bool,
    pub out: Vec<u8>,
    pub sent: usize,
    pub inbuf: Vec<u8>,
    read_handler: ngx_event_handler_pt,
    write_handler: ngx_event_handler_pt,
}

impl Link {
    pub const fn new() -> Link {
        Link {
            conn: ptr::null_mut(),
            connecting: false,
            handshaking: false,
            out: Vec::new(),
            sent: 0,
            inbuf: Vec::new(),
            read_handler: None,
            write_handler: None,
        }
    }

    /// Opens a connection to `sockaddr` (which, with `name`, must outlive it). The events get
    /// `data` (the owner, which must not move while the connection is open) and the handlers.
    /// `idle`: nginx closes it when the worker shuts down instead of waiting for it.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        sockaddr: *mut nginx_sys::sockaddr,
        socklen: nginx_sys::socklen_t,
        name: *mut ngx_str_t,
        log: *mut ngx_log_t,
        tls: bool,
        idle: bool,
        data: *mut c_void,
        read_handler: ngx_event_handler_pt,
        write_handler: ngx_event_handler_pt,
    ) -> Result<(), String> {
        // SAFETY: a zeroed peer connection is nginx's initial state; the caller guarantees the
        // address and the owner outlive the connection.
        unsafe {
            let mut pc: ngx_peer_connection_t = core::mem::zeroed();
            pc.sockaddr = sockaddr;
            pc.socklen = socklen;
            pc.name = name;
            pc.get = Some(ngx_event_get_peer);
            pc.log = log;
            pc.set_log_error(nginx_sys::ngx_connection_log_error_e_NGX_ERROR_ERR as _);
            let rc = ngx_event_connect_peer(&mut pc);
            if rc != NGX_OK as ngx_int_t && rc != NGX_AGAIN as ngx_int_t {
                if !pc.connection.is_null() {
                    ngx_close_connection(pc.connection);
                }
                return Err("cannot connect".into());
            }
            let c = pc.connection;
            if tls {
                // The TLS state (ngx_ssl_create_connection) is allocated in the connection's
                // pool, destroyed in `close`.
                (*c).pool = nginx_sys::ngx_create_pool(4096, log);
                if (*c).pool.is_null() {
                    ngx_close_connection(c);
                    return Err("out of memory".into());
                }
            }
            self.connecting = rc == NGX_AGAIN as ngx_int_t;
            (*c).data = data;
            (*c).log = log;
            if idle {
                (*c).set_idle(1);
            }
            (*(*c).read).handler = read_handler;
            (*(*c).write).handler = write_handler;
            self.conn = c;
        }
        self.read_handler = read_handler;
        self.write_handler = write_handler;
        self.handshaking = false;
        self.out.clear();
        self.sent = 0;
        self.inbuf.clear();
        Ok(())
    }

    /// Whether the owner may send: the connection is established and, with `tls`, the
    /// handshake has completed (it is started here when it has not; `handshake_handler` gets the
    /// connection when it ends, and the owner then calls [`Link::tls_done`]).
    pub fn ready(
        &mut self,
        tls: Option<&SyncTls>,
        handshake_handler: nginx_sys::ngx_connection_handler_pt,
    ) -> Result<bool, String> {
        let c = self.conn;
        if c.is_null() || self.connecting || self.handshaking {
            return Ok(false);
        }
        let Some(tls) = tls else {
            return Ok(true);
        };
        // SAFETY: `c` is our open connection.
        if unsafe { !(*c).ssl.is_null() } {
            return Ok(true);
        }
        // As nginx's upstream module does for `proxy_ssl`: a client TLS connection on the
        // configuration's context, SNI, then `ngx_ssl_handshake`.
        // SAFETY: `c` is our open connection with its own pool; `tls.ssl` is the
        // configuration's context; the name is NUL-terminated and outlives the connection.
        let rc = unsafe {
            if nginx_sys::ngx_ssl_create_connection(tls.ssl, c, nginx_sys::NGX_SSL_CLIENT as usize)
                != NGX_OK as ngx_int_t
            {
                return Err("cannot create the TLS connection".into());
            }
            let is_ip = tls
                .name
                .to_str()
                .is_ok_and(|n| n.parse::<std::net::IpAddr>().is_ok());
            if !is_ip {
                // SSL_set_tlsext_host_name (a macro in OpenSSL's headers).
                nginx_sys::SSL_ctrl(
                    (*(*c).ssl).connection,
                    nginx_sys::SSL_CTRL_SET_TLSEXT_HOSTNAME as _,
                    nginx_sys::TLSEXT_NAMETYPE_host_name as _,
                    tls.name.as_ptr().cast_mut().cast(),
                );
            }
            nginx_sys::ngx_ssl_handshake(c)
        };
        if rc == NGX_AGAIN as ngx_int_t {
            self.handshaking = true;
            // SAFETY: as above; nginx calls the handler when the handshake ends or times out.
            unsafe { (*(*c).ssl).handler = handshake_handler };
            return Ok(false);
        }
        self.tls_done(tls)?;
        Ok(true)
    }

    /// Sends what `out` holds once the connection (and its TLS) is up ([`Link::ready`],
    /// [`Link::flush`]).
    pub fn send(
        &mut self,
        tls: Option<&SyncTls>,
        handshake_handler: nginx_sys::ngx_connection_handler_pt,
    ) -> Result<(), String> {
        if self.ready(tls, handshake_handler)? {
            self.flush()?;
        }
        Ok(())
    }

    /// The handshake has ended: checks the certificate and the name.
    pub fn tls_done(&mut self, tls: &SyncTls) -> Result<(), String> {
        self.handshaking = false;
        let c = self.conn;
        if c.is_null() {
            return Err("connection closed".into());
        }
        // SAFETY: `c` is our open connection and has its TLS state.
        unsafe {
            if (*(*c).ssl).handshaked() == 0 {
                return Err(
                    if (*(*c).read).timedout() != 0 || (*(*c).write).timedout() != 0 {
                        "TLS handshake timed out".into()
                    } else {
                        "TLS handshake failed".into()
                    },
                );
            }
            if tls.verify {
                let conn = (*(*c).ssl).connection;
                let rc = nginx_sys::SSL_get_verify_result(conn);
                if rc != nginx_sys::X509_V_OK as core::ffi::c_long {
                    let msg =
                        core::ffi::CStr::from_ptr(nginx_sys::X509_verify_cert_error_string(rc))
                            .to_string_lossy()
                            .into_owned();
                    return Err(format!("TLS certificate verify error: ({rc}:{msg})"));
                }
                if !name_matches(c, &tls.name) {
                    return Err(format!(
                        "TLS certificate does not match \"{}\" ({})",
                        tls.name.to_string_lossy(),
                        tls.name_param
                    ));
                }
            }
            (*(*c).read).handler = self.read_handler;
            (*(*c).write).handler = self.write_handler;
        }
        Ok(())
    }

    /// Sends what `out` holds, as far as the socket takes it (the write event is armed for the
    /// rest); `out` is emptied once all of it is sent.
    pub fn flush(&mut self) -> Result<(), &'static str> {
        let c = self.conn;
        if c.is_null() || self.connecting || self.handshaking {
            return Ok(());
        }
        while self.sent < self.out.len() {
            let rest = &self.out[self.sent..];
            // SAFETY: `c` is our open connection; `send` is set by nginx for every connection.
            let n = unsafe {
                match (*c).send {
                    Some(send) => send(c, rest.as_ptr().cast_mut(), rest.len()),
                    None => nginx_sys::NGX_ERROR as isize,
                }
            };
            if n == NGX_AGAIN as isize {
                // SAFETY: `c` is open.
                if unsafe { ngx_handle_write_event((*c).write, 0) } != NGX_OK as ngx_int_t {
                    return Err("cannot wait for the connection");
                }
                return Ok(());
            }
            if n <= 0 {
                return Err("cannot send (connection refused or reset)");
            }
            self.sent += n as usize;
        }
        self.out.clear();
        self.sent = 0;
        Ok(())
    }

    /// Reads one chunk into `inbuf`.
    pub fn recv(&mut self) -> Recv {
        let c = self.conn;
        if c.is_null() {
            return Recv::Closed;
        }
        let mut buf = [0u8; 16 * 1024];
        // SAFETY: `c` is our open connection; `recv` is set by nginx for every connection.
        let n = unsafe {
            match (*c).recv {
                Some(recv) => recv(c, buf.as_mut_ptr(), buf.len()),
                None => nginx_sys::NGX_ERROR as isize,
            }
        };
        if n == NGX_AGAIN as isize {
            Recv::Again
        } else if n <= 0 {
            Recv::Closed
        } else {
            self.inbuf.extend_from_slice(&buf[..n as usize]);
            Recv::Data
        }
    }

    /// Waits for more to read (after [`Recv::Again`]).
    pub fn wait_read(&mut self) -> Result<(), &'static str> {
        let c = self.conn;
        // SAFETY: `c` is open when not null.
        if !c.is_null() && unsafe { ngx_handle_read_event((*c).read, 0) } != NGX_OK as ngx_int_t {
            return Err("cannot wait for the connection");
        }
        Ok(())
    }

    /// Arms the reply timeout on the read event, unless it is armed.
    pub fn arm_timeout(&mut self, ms: u64) {
        let c = self.conn;
        if c.is_null() {
            return;
        }
        // SAFETY: `c` is our open connection; its read event carries the reply timeout.
        unsafe {
            let rev = (*c).read;
            if (*rev).timer_set() == 0 {
                nginx_sys::ngx_add_timer(rev, ms as nginx_sys::ngx_msec_t);
            }
        }
    }

    /// Removes the reply timeout.
    pub fn disarm_timeout(&mut self) {
        let c = self.conn;
        if c.is_null() {
            return;
        }
        // SAFETY: `c` is our open connection.
        unsafe {
            let rev = (*c).read;
            if (*rev).timer_set() != 0 {
                nginx_sys::ngx_del_timer(rev);
            }
        }
    }

    /// Closes the connection, if any, and forgets what was buffered.
    pub fn close(&mut self) {
        if !self.conn.is_null() {
            let c = self.conn;
            // SAFETY: `conn` is our open connection; as nginx's upstream module does, the TLS
            // state is dropped without waiting for the peer's close_notify; nginx deletes the
            // timers and events; the pool (TLS connections only) is ours.
            unsafe {
                if !(*c).ssl.is_null() {
                    (*(*c).ssl).set_no_wait_shutdown(1);
                    nginx_sys::ngx_ssl_shutdown(c);
                }
                let pool = (*c).pool;
                ngx_close_connection(c);
                if !pool.is_null() {
                    nginx_sys::ngx_destroy_pool(pool);
                }
            }
            self.conn = ptr::null_mut();
        }
        self.connecting = false;
        self.handshaking = false;
        self.out.clear();
        self.sent = 0;
        self.inbuf.clear();
    }
}

/// `AUTH` with the URL's credentials, if any; the number of replies to expect (0 or 1).
pub fn encode_auth(out: &mut Vec<u8>, url: &RedisUrl) -> usize {
    let Some(pw) = &url.password else {
        return 0;
    };
    match &url.user {
        Some(u) => resp::encode(out, &[b"AUTH", u.as_bytes(), pw.as_bytes()]),
        None => resp::encode(out, &[b"AUTH", pw.as_bytes()]),
    }
    1
}

/// `SELECT` of the URL's database unless it is 0; the number of replies to expect (0 or 1).
pub fn encode_select(out: &mut Vec<u8>, url: &RedisUrl) -> usize {
    if url.db == 0 {
        return 0;
    }
    let db = resp::Digits::new(u64::from(url.db));
    resp::encode(out, &[b"SELECT", db.as_bytes()]);
    1
}

/// Whether the server's certificate names `name`: an IP address against the certificate's IP
/// addresses (X509_check_ip_asc), a host name as nginx checks `proxy_ssl_name`.
fn name_matches(c: *mut ngx_connection_t, name: &std::ffi::CStr) -> bool {
    let is_ip = name
        .to_str()
        .is_ok_and(|n| n.parse::<std::net::IpAddr>().is_ok());
    // SAFETY: `c` has completed its TLS handshake; the peer certificate reference taken by
    // SSL_get1_peer_certificate is released with X509_free; `name` is NUL-terminated.
    unsafe {
        if is_ip {
            let cert = nginx_sys::SSL_get1_peer_certificate((*(*c).ssl).connection);
            if cert.is_null() {
                return false;
            }
            let ok = nginx_sys::X509_check_ip_asc(cert, name.as_ptr(), 0) == 1;
            nginx_sys::X509_free(cert);
            ok
        } else {
            let mut n = nginx_sys::ngx_str_t {
                len: name.to_bytes().len(),
                data: name.as_ptr().cast_mut().cast(),
            };
            nginx_sys::ngx_ssl_check_host(c, &mut n) == NGX_OK as ngx_int_t
        }
    }
}

use super::now_ms;

/// What a command's callback gets.
pub type Callback = Box<dyn FnOnce(Result<Reply, String>)>;

/// Where the server is (resolved when the configuration was read).
#[derive(Debug)]
pub struct Target {
    pub url: RedisUrl,
    pub sockaddr: *mut nginx_sys::sockaddr,
    pub socklen: nginx_sys::socklen_t,
    pub name: *mut ngx_str_t,
    pub timeout_ms: u64,
    /// `rediss://`: the TLS settings.
    pub tls: Option<SyncTls>,
}

/// One connection and its queue. Boxed: nginx's events point at it.
pub struct Client {
    target: *const Target,
    /// What the log lines name (e.g. `oidc_provider "idp"`).
    what: String,
    link: Link,
    /// One entry per reply expected; `None` for the handshake's.
    waiting: VecDeque<Option<Callback>>,
    last_log_ms: u64,
}

impl Client {
    pub fn new(target: *const Target, what: String) -> Box<Client> {
        Box::new(Client {
            target,
            what,
            link: Link::new(),
            waiting: VecDeque::new(),
            last_log_ms: 0,
        })
    }

    fn target(&self) -> &'static Target {
        // SAFETY: targets live in the configuration pool, longer than the worker's clients.
        unsafe { &*self.target }
    }

    /// Sends a command; `cb` gets its reply (or the error that ended the connection).
    pub fn command(&mut self, args: &[&[u8]], cb: Option<Callback>) {
        if self.link.conn.is_null() {
            if let Err(e) = self.connect() {
                self.fail(&e);
                if let Some(cb) = cb {
                    cb(Err(e));
                }
                return;
            }
        }
        resp::encode(&mut self.link.out, args);
        self.waiting.push_back(cb);
        self.send();
        self.link.arm_timeout(self.target().timeout_ms);
    }

    fn connect(&mut self) -> Result<(), String> {
        let log = ngx::log::ngx_cycle_log().as_ptr();
        let t = self.target();
        let data = (self as *mut Client).cast();
        self.link.open(
            t.sockaddr,
            t.socklen,
            t.name,
            log,
            t.tls.is_some(),
            true,
            data,
            Some(read_handler),
            Some(write_handler),
        )?;
        let replies =
            encode_auth(&mut self.link.out, &t.url) + encode_select(&mut self.link.out, &t.url);
        for _ in 0..replies {
            self.waiting.push_back(None);
        }
        Ok(())
    }

    /// Writes what is queued once the connection (and its TLS) is up.
    fn send(&mut self) {
        let tls = self.target().tls.as_ref();
        if let Err(e) = self.link.send(tls, Some(tls_handshake_handler)) {
            self.fail(&e);
        }
    }

    fn read(&mut self) {
        loop {
            match self.link.recv() {
                Recv::Again => break,
                Recv::Closed => {
                    if self.waiting.is_empty() {
                        self.close(); // an idle connection the server closed: reconnect later
                    } else {
                        self.fail("connection closed by the server");
                    }
                    return;
                }
                Recv::Data => {
                    if let Err(e) = self.parse() {
                        self.fail(&e);
                        return;
                    }
                }
            }
        }
        if self.waiting.is_empty() {
            self.link.disarm_timeout();
        }
        if let Err(e) = self.link.wait_read() {
            self.fail(e);
        }
    }

    fn parse(&mut self) -> Result<(), String> {
        let mut at = 0;
        while !self.waiting.is_empty() {
            let Some((reply, used)) =
                resp::parse(&self.link.inbuf[at..]).map_err(|e| e.to_string())?
            else {
                break;
            };
            at += used;
            match self.waiting.pop_front().flatten() {
                Some(cb) => cb(Ok(reply)),
                None => {
                    if let Reply::Error(m) = reply {
                        return Err(format!("server error: {}", String::from_utf8_lossy(&m)));
                    }
                }
            }
        }
        self.link.inbuf.drain(..at);
        if self.waiting.is_empty() && !self.link.inbuf.is_empty() {
            return Err("unexpected data from the server".into());
        }
        Ok(())
    }

    fn close(&mut self) {
        self.link.close();
    }

    fn fail(&mut self, why: &str) {
        self.close();
        let now = now_ms();
        if now.saturating_sub(self.last_log_ms) >= 10_000 {
            self.last_log_ms = now;
            let log = ngx::log::ngx_cycle_log().as_ptr();
            gw_log!(
                NGX_LOG_ERR,
                log,
                "{}: redis {} failed: {why} (logged at most every 10 s)",
                self.what,
                self.target().url.addr
            );
        }
        let waiting = std::mem::take(&mut self.waiting);
        for cb in waiting.into_iter().flatten() {
            cb(Err(why.to_string()));
        }
    }
}

fn client_of(ev: *mut ngx_event_t) -> *mut Client {
    // SAFETY: our connection events carry the connection, whose data is the client.
    unsafe { (*(*ev).data.cast::<ngx_connection_t>()).data.cast() }
}

unsafe extern "C" fn read_handler(ev: *mut ngx_event_t) {
    super::guard_conf((), || {
        // SAFETY: the event of our connection; the client outlives its connection.
        let cl = unsafe { &mut *client_of(ev) };
        // SAFETY: as above.
        let (timedout, closing) = unsafe {
            let c = (*ev).data.cast::<ngx_connection_t>();
            ((*ev).timedout() != 0, (*c).close() != 0)
        };
        if closing {
            cl.fail("the worker is shutting down");
        } else if timedout {
            cl.fail("no answer in time");
        } else {
            cl.read();
        }
    })
}

unsafe extern "C" fn write_handler(ev: *mut ngx_event_t) {
    super::guard_conf((), || {
        // SAFETY: as in `read_handler`.
        let cl = unsafe { &mut *client_of(ev) };
        // SAFETY: the event is live.
        if unsafe { (*ev).timedout() } != 0 {
            cl.fail("no answer in time");
            return;
        }
        cl.link.connecting = false;
        cl.send();
    })
}

unsafe extern "C" fn tls_handshake_handler(c: *mut ngx_connection_t) {
    super::guard_conf((), || {
        // SAFETY: our connection's data is its client.
        let cl = unsafe { &mut *(*c).data.cast::<Client>() };
        let Some(tls) = cl.target().tls.as_ref() else {
            return;
        };
        match cl.link.tls_done(tls) {
            Ok(()) => cl.send(),
            Err(e) => cl.fail(&e),
        }
    })
}

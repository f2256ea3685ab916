//! A small Redis client for request-time commands (the shared session store of
//! `oidc_provider ... session_store redis://`): one non-blocking connection per worker and
//! store, driven by nginx's event loop, commands pipelined in order, each with its own
//! callback. A failure (connect, write, read, a protocol error, no answer within the timeout)
//! closes the connection and answers every waiting command with an error; the next command
//! reconnects. The caller decides what an error means (the session store falls back to the
//! node's own zone).

use core::ptr;
use std::collections::VecDeque;

use gateway_core::ratelimit::sync::RedisUrl;
use gateway_core::resp::{self, Reply};
use nginx_sys::{
    ngx_close_connection, ngx_connection_t, ngx_event_connect_peer, ngx_event_get_peer,
    ngx_event_t, ngx_handle_read_event, ngx_handle_write_event, ngx_int_t, ngx_peer_connection_t,
    ngx_str_t, NGX_AGAIN, NGX_LOG_ERR, NGX_OK,
};

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
}

/// One connection and its queue. Boxed: nginx's events point at it.
pub struct Client {
    target: *const Target,
    /// What the log lines name (e.g. `oidc_provider "idp"`).
    what: String,
    conn: *mut ngx_connection_t,
    connecting: bool,
    out: Vec<u8>,
    sent: usize,
    inbuf: Vec<u8>,
    /// One entry per reply expected; `None` for the handshake's.
    waiting: VecDeque<Option<Callback>>,
    last_log_ms: u64,
}

impl Client {
    pub fn new(target: *const Target, what: String) -> Box<Client> {
        Box::new(Client {
            target,
            what,
            conn: ptr::null_mut(),
            connecting: false,
            out: Vec::new(),
            sent: 0,
            inbuf: Vec::new(),
            waiting: VecDeque::new(),
            last_log_ms: 0,
        })
    }

    fn target(&self) -> &Target {
        // SAFETY: targets live in the configuration pool, longer than the worker's clients.
        unsafe { &*self.target }
    }

    /// Sends a command; `cb` gets its reply (or the error that ended the connection).
    pub fn command(&mut self, args: &[&[u8]], cb: Option<Callback>) {
        if self.conn.is_null() {
            if let Err(e) = self.connect() {
                self.fail(&e);
                if let Some(cb) = cb {
                    cb(Err(e));
                }
                return;
            }
        }
        resp::encode(&mut self.out, args);
        self.waiting.push_back(cb);
        self.write();
        self.arm_timeout();
    }

    fn arm_timeout(&mut self) {
        let c = self.conn;
        if c.is_null() || self.waiting.is_empty() {
            return;
        }
        // SAFETY: `c` is our open connection; its read event carries the reply timeout.
        unsafe {
            let rev = (*c).read;
            if (*rev).timer_set() == 0 {
                nginx_sys::ngx_add_timer(rev, self.target().timeout_ms as nginx_sys::ngx_msec_t);
            }
        }
    }

    fn connect(&mut self) -> Result<(), String> {
        let log = ngx::log::ngx_cycle_log().as_ptr();
        let (sockaddr, socklen, name) = {
            let t = self.target();
            (t.sockaddr, t.socklen, t.name)
        };
        // SAFETY: a zeroed peer connection is nginx's initial state; the address lives in
        // the configuration pool; the connection's handlers get this boxed client as data.
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
            self.connecting = rc == NGX_AGAIN as ngx_int_t;
            (*c).data = (self as *mut Client).cast();
            (*c).log = log;
            // Idle for nginx: a worker shutting down closes it instead of waiting for it.
            (*c).set_idle(1);
            (*(*c).read).handler = Some(read_handler);
            (*(*c).write).handler = Some(write_handler);
            self.conn = c;
        }
        self.out.clear();
        self.sent = 0;
        self.inbuf.clear();
        let url = self.target().url.clone();
        if let Some(pw) = &url.password {
            match &url.user {
                Some(u) => resp::encode(&mut self.out, &[b"AUTH", u.as_bytes(), pw.as_bytes()]),
                None => resp::encode(&mut self.out, &[b"AUTH", pw.as_bytes()]),
            }
            self.waiting.push_back(None);
        }
        if url.db != 0 {
            let db = url.db.to_string();
            resp::encode(&mut self.out, &[b"SELECT", db.as_bytes()]);
            self.waiting.push_back(None);
        }
        Ok(())
    }

    fn write(&mut self) {
        let c = self.conn;
        if c.is_null() || self.connecting {
            return;
        }
        while self.sent < self.out.len() {
            let rest = &self.out[self.sent..];
            // SAFETY: `c` is our open connection; nginx sets `send` for every connection.
            let n = unsafe {
                match (*c).send {
                    Some(send) => send(c, rest.as_ptr().cast_mut(), rest.len()),
                    None => nginx_sys::NGX_ERROR as isize,
                }
            };
            if n == NGX_AGAIN as isize {
                // SAFETY: `c` is open.
                if unsafe { ngx_handle_write_event((*c).write, 0) } != NGX_OK as ngx_int_t {
                    self.fail("cannot wait for the connection");
                }
                return;
            }
            if n <= 0 {
                self.fail("cannot send (connection refused or reset)");
                return;
            }
            self.sent += n as usize;
        }
        self.out.clear();
        self.sent = 0;
    }

    fn read(&mut self) {
        let c = self.conn;
        if c.is_null() {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            // SAFETY: `c` is our open connection; nginx sets `recv` for every connection.
            let n = unsafe {
                match (*c).recv {
                    Some(recv) => recv(c, buf.as_mut_ptr(), buf.len()),
                    None => nginx_sys::NGX_ERROR as isize,
                }
            };
            if n == NGX_AGAIN as isize {
                break;
            }
            if n <= 0 {
                if self.waiting.is_empty() {
                    self.close(); // an idle connection the server closed: reconnect later
                } else {
                    self.fail("connection closed by the server");
                }
                return;
            }
            self.inbuf.extend_from_slice(&buf[..n as usize]);
            if let Err(e) = self.parse() {
                self.fail(&e);
                return;
            }
        }
        // SAFETY: `c` is open.
        unsafe {
            let rev = (*c).read;
            if self.waiting.is_empty() && (*rev).timer_set() != 0 {
                nginx_sys::ngx_del_timer(rev);
            }
            if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
                self.fail("cannot wait for the connection");
            }
        }
    }

    fn parse(&mut self) -> Result<(), String> {
        let mut at = 0;
        while !self.waiting.is_empty() {
            let Some((reply, used)) = resp::parse(&self.inbuf[at..]).map_err(|e| e.to_string())?
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
        self.inbuf.drain(..at);
        if self.waiting.is_empty() && !self.inbuf.is_empty() {
            return Err("unexpected data from the server".into());
        }
        Ok(())
    }

    fn close(&mut self) {
        if !self.conn.is_null() {
            // SAFETY: `conn` is our open connection; nginx removes its timers and events.
            unsafe { ngx_close_connection(self.conn) };
            self.conn = ptr::null_mut();
        }
        self.connecting = false;
        self.out.clear();
        self.sent = 0;
        self.inbuf.clear();
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
    let _ = std::panic::catch_unwind(|| {
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
    });
}

unsafe extern "C" fn write_handler(ev: *mut ngx_event_t) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as in `read_handler`.
        let cl = unsafe { &mut *client_of(ev) };
        cl.connecting = false;
        cl.write();
    });
}

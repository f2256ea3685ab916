//! The nginx under test: locating the binary, writing the server root and nginx.conf,
//! starting nginx in the foreground and stopping it.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The nginx binary: `TEST_NGINX_BINARY`, else `$DEP_NGINX_BUILD_DIR/nginx` captured when the
/// runner was compiled (the crate's build.rs exports it), else `nginx` from PATH.
pub fn binary() -> PathBuf {
    if let Some(b) = std::env::var_os("TEST_NGINX_BINARY").filter(|b| !b.is_empty()) {
        return absolute(Path::new(&b));
    }
    if let Some(dir) = option_env!("DEP_NGINX_BUILD_DIR") {
        let p = Path::new(dir).join("nginx");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nginx")
}

/// Makes a relative path (containing a `/`) absolute against the current directory.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() || p.components().count() == 1 {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Facts about the nginx binary, found once.
pub struct Info {
    pub binary: PathBuf,
    /// e.g. (1, 22, 1)
    pub version: (u32, u32, u32),
    /// Output of `nginx -V`.
    pub configure: String,
}

/// Runs `nginx -V` once; an error message if the binary cannot run.
pub fn info() -> Result<&'static Info, String> {
    static INFO: OnceLock<Result<Info, String>> = OnceLock::new();
    INFO.get_or_init(|| {
        let binary = binary();
        let out = Command::new(&binary).arg("-V").output().map_err(|e| {
            format!(
                "cannot run the nginx binary {}: {e} (set TEST_NGINX_BINARY)",
                binary.display()
            )
        })?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let version = text
            .split("nginx/")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(parse_version)
            .ok_or_else(|| {
                format!(
                    "cannot find the version in `{} -V` output: {text}",
                    binary.display()
                )
            })?;
        Ok(Info {
            binary,
            version,
            configure: text,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    ))
}

/// A free TCP port on 127.0.0.1 not handed out before by this process.
pub fn free_port() -> Result<u16, String> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(Default::default);
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let mut used = used.lock().unwrap_or_else(|e| e.into_inner());
        if used.insert(port) {
            return Ok(port);
        }
    }
    Err("cannot find a free port".to_string())
}

/// Everything that goes into one nginx.conf.
pub struct ConfParams<'a> {
    pub port: u16,
    pub servroot: &'a Path,
    pub workers: u32,
    pub master: bool,
    pub log_level: &'a str,
    pub worker_connections: u32,
    pub no_root_location: bool,
    pub env_to_nginx: &'a [String],
    pub main_config: &'a str,
    pub post_main_config: &'a str,
    pub http_config: &'a str,
    pub config: &'a str,
}

/// Writes nginx.conf following Test::Nginx's template, with `daemon off` (nginx is our child)
/// and modules from `TEST_NGINX_LOAD_MODULES` loaded first.
pub fn write_conf(p: &ConfParams, info: &Info) -> Result<String, String> {
    let mut c = String::new();
    if let Ok(mods) = std::env::var("TEST_NGINX_LOAD_MODULES") {
        for m in mods.split_whitespace() {
            c.push_str(&format!(
                "load_module {};\n",
                absolute(Path::new(m)).display()
            ));
        }
    }
    c.push_str(&format!(
        "worker_processes  {};\ndaemon off;\nmaster_process {};\nerror_log logs/error.log {};\npid       logs/nginx.pid;\n",
        p.workers,
        if p.master { "on" } else { "off" },
        p.log_level
    ));
    for v in p.env_to_nginx {
        c.push_str(&format!(
            "env {};\n",
            if v.contains(char::is_whitespace) {
                format!("'{v}'")
            } else {
                v.clone()
            }
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        c.push_str("user root;\n");
    }
    let root = p.servroot.display();
    let mut temp_paths = String::new();
    for (kind, directive) in [
        ("client_body", "client_body_temp_path"),
        ("proxy", "proxy_temp_path"),
        ("fastcgi", "fastcgi_temp_path"),
        ("scgi", "scgi_temp_path"),
        ("uwsgi", "uwsgi_temp_path"),
    ] {
        let module_off = info
            .configure
            .contains(&format!("--without-http_{kind}_module"));
        if !module_off && !p.http_config.contains(directive) {
            temp_paths.push_str(&format!("\n    {directive} {root}/{kind}_temp;"));
        }
    }
    c.push_str(&format!(
        r#"
{main_config}

http {{
    access_log logs/access.log;{temp_paths}

    default_type text/plain;
    keepalive_timeout  68;

{http_config}
    server {{
        listen          {port};
        server_name     localhost;
        client_max_body_size 30M;

        # Begin test case config...
{config}
        # End test case config.
"#,
        main_config = p.main_config,
        http_config = p.http_config,
        config = p.config,
        port = p.port,
    ));
    if !p.no_root_location {
        c.push_str("\n        location / {\n            root html;\n            index index.html index.htm;\n        }\n");
    }
    c.push_str(&format!(
        "    }}\n}}\n\n{}\n\nevents {{\n    accept_mutex off;\n    worker_connections  {};\n}}\n",
        p.post_main_config, p.worker_connections
    ));
    fs::write(p.servroot.join("conf/nginx.conf"), &c)
        .map_err(|e| format!("cannot write nginx.conf: {e}"))?;
    Ok(c)
}

/// Recreates an empty server root with conf/, html/ and logs/.
pub fn setup_servroot(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    for sub in ["conf", "html", "logs"] {
        fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("cannot create {}/{sub}: {e}", dir.display()))?;
    }
    Ok(())
}

/// A running (or exited) nginx; killed with its workers when dropped.
pub struct Nginx {
    child: Child,
    pub servroot: PathBuf,
    exited: Option<std::process::ExitStatus>,
}

/// How starting nginx ended.
pub enum Start {
    Running(Nginx),
    /// nginx exited by itself: its exit status and what it printed.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        output: String,
    },
    /// The port was taken after all: try another one.
    AddressInUse,
}

impl Nginx {
    /// Starts nginx on `servroot` and waits until it has written its pid file (which it does
    /// after opening its listening sockets), or exited.
    pub fn start(info: &Info, servroot: &Path, startup_timeout: Duration) -> Result<Start, String> {
        let stderr =
            fs::File::create(servroot.join("logs/stderr.log")).map_err(|e| e.to_string())?;
        let stdout = stderr.try_clone().map_err(|e| e.to_string())?;
        let mut prefix = servroot.as_os_str().to_owned();
        prefix.push("/");
        // Project extension: TEST_NGINX_USE_VALGRIND=1 runs nginx under valgrind memcheck.
        let mut cmd = if crate::valgrind::enabled() {
            let wrapper = crate::valgrind::wrapper(servroot);
            let mut c = Command::new(&wrapper[0]);
            c.args(&wrapper[1..]).arg(&info.binary);
            c
        } else {
            let mut c = Command::new(&info.binary);
            // glibc fills freed memory with this byte (and fresh memory with its complement):
            // a read of memory nginx already freed (say, a previous configuration cycle's) then
            // sees garbage at once and tends to crash the block, instead of reading stale but
            // plausible values for a while.
            c.env("MALLOC_PERTURB_", "165");
            c
        };
        // SAFETY: prctl is async-signal-safe. If the runner dies (even by SIGKILL), nginx gets
        // SIGTERM and stops its workers instead of lingering on its port.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg("conf/nginx.conf")
            // Errors before the configured error_log is open go here, not to the compiled-in
            // path (e.g. /var/log/nginx/error.log).
            .arg("-e")
            .arg(servroot.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", info.binary.display()))?;
        let mut nginx = Nginx {
            child,
            servroot: servroot.to_path_buf(),
            exited: None,
        };
        let deadline = Instant::now() + startup_timeout;
        let pid_file = servroot.join("logs/nginx.pid");
        let pid = nginx.child.id().to_string();
        loop {
            if let Some(status) = nginx.child.try_wait().map_err(|e| e.to_string())? {
                nginx.exited = Some(status);
                let output = nginx.output();
                if output.contains("Address already in use") {
                    return Ok(Start::AddressInUse);
                }
                use std::os::unix::process::ExitStatusExt;
                return Ok(Start::Exited {
                    code: status.code(),
                    signal: status.signal(),
                    output,
                });
            }
            if fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == pid) {
                return Ok(Start::Running(nginx));
            }
            if nginx.output().contains("Address already in use") {
                // nginx would retry bind() for a few seconds first; don't wait for that.
                nginx.kill();
                return Ok(Start::AddressInUse);
            }
            if Instant::now() > deadline {
                let output = nginx.output();
                nginx.kill();
                return Err(format!(
                    "nginx did not start within {:.0}s (no pid file)\n{output}",
                    startup_timeout.as_secs_f64()
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// stderr output plus error.log, for messages.
    pub fn output(&self) -> String {
        let stderr = fs::read_to_string(self.servroot.join("logs/stderr.log")).unwrap_or_default();
        let log = fs::read_to_string(self.servroot.join("logs/error.log")).unwrap_or_default();
        stderr + &log
    }

    /// Whether nginx (the master) is still running.
    pub fn running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.exited = Some(st);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Graceful stop: SIGQUIT, then wait up to `grace`. On timeout, kills nginx and its
    /// workers and returns an error.
    pub fn stop(&mut self, grace: Duration) -> Result<std::process::ExitStatus, String> {
        if let Some(st) = self.exited {
            return Ok(st);
        }
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid(), libc::SIGQUIT) };
        let deadline = Instant::now() + grace;
        loop {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                self.exited = Some(st);
                return Ok(st);
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "nginx did not exit within {:.0}s after SIGQUIT; stopped it with SIGTERM/SIGKILL",
                    grace.as_secs_f64()
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Project extension (`--- reload_after_request`): `nginx -s reload`. Sends SIGHUP to the
    /// master and waits until every worker it had before is gone and at least `workers` new
    /// ones run, so the next request is served by the new configuration. Fails early when
    /// the master logs `[emerg]` (the new configuration was refused) or exits.
    pub fn reload(&mut self, workers: usize, timeout: Duration) -> Result<(), String> {
        let log = self.servroot.join("logs/error.log");
        let log_len = fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
        let deadline = Instant::now() + timeout;
        // Every worker of the running configuration: on a loaded machine the master may still
        // be forking the last one when the first has already answered a request, and a worker
        // missing from `old` would later pass for a new one.
        let mut old = children(self.pid());
        while old.len() < workers && Instant::now() < deadline && self.running() {
            sleep(Duration::from_millis(10));
            old = children(self.pid());
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), libc::SIGHUP) };
        loop {
            if !self.running() {
                return Err("nginx exited during the reload".to_string());
            }
            let new_log = fs::read(&log).unwrap_or_default();
            let new_log = String::from_utf8_lossy(new_log.get(log_len..).unwrap_or_default());
            if let Some(l) = new_log.lines().find(|l| l.contains("[emerg]")) {
                return Err(format!("the reload was refused:\n    {l}"));
            }
            let now = children(self.pid());
            if now.len() >= workers && now.iter().all(|p| !old.contains(p)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the reload did not complete within {:.0}s: workers before {old:?}, now {now:?}",
                    timeout.as_secs_f64()
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Ends nginx without waiting for requests: SIGTERM (the master stops its workers, also
    /// ones it is still forking), then SIGKILL to nginx and every descendant if it lingers.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
                return;
            }
            sleep(Duration::from_millis(10));
        }
        let pids = descendants(self.pid());
        // SAFETY: signalling our child and its descendants.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        for p in pids {
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        self.exited = self.child.wait().ok();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Live (not zombie) child processes of `pid`, from /proc.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) {
                let mut rest = stat
                    .rsplit_once(')')
                    .map(|(_, r)| r.split_whitespace())
                    .into_iter()
                    .flatten();
                let state = rest.next();
                let ppid = rest.next().and_then(|s| s.parse::<i32>().ok());
                if ppid == Some(pid) && state != Some("Z") {
                    out.push(p);
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// Pids of all descendants of `pid`, from /proc.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces.
            if let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(ppid) = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|s| s.parse::<i32>().ok())
                {
                    parents.push((p, ppid));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

//! Running one block: server root, nginx.conf, nginx, requests, checks, report.

use crate::concurrent;
use crate::data;
use crate::http::{self, Response};
use crate::nginx::{self, ConfParams, Info, Nginx, Start};
use crate::parse::{Block, TestFile};
use crate::perl::{PerlRegex, Value};
use crate::valgrind;
use regex::bytes::Regex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

/// Sections the runner understands. Any other section fails the block, so that a typo such as
/// `--- response_bdy` cannot make a check silently disappear.
const KNOWN_SECTIONS: &[&str] = &[
    "main_config",
    "post_main_config",
    "http_config",
    "config",
    "user_files",
    "request",
    "raw_request",
    "more_headers",
    "error_code",
    "error_code_like",
    "response_body",
    "response_body_like",
    "response_body_unlike",
    "response_headers",
    "response_headers_like",
    "raw_response_headers_like",
    "raw_response_headers_unlike",
    "error_log",
    "no_error_log",
    "shutdown_error_log",
    "no_shutdown_error_log",
    "access_log",
    "no_access_log",
    "log_level",
    "wait",
    "must_die",
    "timeout",
    "skip_nginx",
    "skip_nginx2",
    "ONLY",
    "SKIP",
    "LAST",
    "grep_error_log",
    "grep_error_log_out",
    "no_check_leak",
    // Runner extension for tests/selftest: substrings the failure message must contain.
    "selftest_failure",
    // The project extensions of PROJECT_SECTIONS (below) are known too.
    // Project extension (t/README.md, "Memcheck"): skip the block under valgrind, with why.
    "no_valgrind",
    // Project extension: the block is for this runner only; prove skips it (t/lib/ProjectOnly.pm).
    "project_only",
];

/// Sections only this runner knows that change what a block checks (see t/README.md, "Project
/// extensions"): a block using one must say `--- project_only: <why>`, so that prove (which
/// ignores unknown sections) skips it instead of passing it with these checks silently
/// dropped. t/lib/ProjectOnly.pm has the same list.
pub const PROJECT_SECTIONS: &[&str] = &[
    // A concurrent phase and reloads.
    "concurrent_request",
    "concurrent_requests",
    "concurrency",
    "status_counts",
    "distinct_header_values",
    "reload_after_request",
    "reload_http_config",
    "reload_config",
    // Logs and metrics as data, actions between requests.
    "json_log_file",
    "json_log_lines",
    "json_log_match",
    "no_json_log",
    "after_request",
    "prometheus",
];

/// Pairs of sections of which Test::Nginx::Socket checks only the first when both are given.
const EXCLUSIVE: &[(&str, &str)] = &[
    ("response_body", "response_body_like"),
    ("response_body", "response_body_unlike"),
    ("response_body_like", "response_body_unlike"),
    ("response_headers", "response_headers_like"),
];

/// How long nginx may take to start (or reload), and to exit after SIGQUIT; longer under
/// valgrind.
fn startup_timeout() -> Duration {
    Duration::from_secs_f64(10.0 * valgrind::slowdown())
}
fn shutdown_grace() -> Duration {
    Duration::from_secs_f64(5.0 * valgrind::slowdown())
}

/// Where and how to run a block.
pub struct Job<'a> {
    pub file: &'a TestFile,
    pub display: &'a str,
    pub block: &'a Block,
    pub servroot: PathBuf,
}

/// The `skip_nginx`/`skip_nginx2` condition: Some(reason) when the block must be skipped.
pub fn skip_reason(block: &Block) -> Result<Option<String>, String> {
    if valgrind::enabled() {
        if let Some(s) = block.get("no_valgrind") {
            let why = s.text.trim();
            return Ok(Some(format!(
                "no_valgrind: {}",
                if why.is_empty() {
                    "(no reason given)"
                } else {
                    why
                }
            )));
        }
    }
    let spec = match (block.get("skip_nginx"), block.get("skip_nginx2")) {
        (Some(s), _) | (None, Some(s)) => s.text.trim().to_string(),
        (None, None) => return Ok(None),
    };
    let info = nginx::info()?;
    let bad = || format!("invalid --- skip_nginx spec {spec:?} (want e.g. '3: < 1.23.0')");
    let cond = spec.split_once(':').ok_or_else(bad)?.1.trim();
    let test = |c: &str| -> Result<bool, String> {
        let c = c.trim();
        let op_len = c.find(|ch: char| ch.is_ascii_digit()).ok_or_else(bad)?;
        let v = nginx::parse_version(&c[op_len..]).ok_or_else(bad)?;
        Ok(match c[..op_len].trim() {
            "<" => info.version < v,
            "<=" => info.version <= v,
            ">" => info.version > v,
            ">=" => info.version >= v,
            _ => return Err(bad()),
        })
    };
    let skip = if let Some((a, b)) = cond.split_once(" and ") {
        test(a)? && test(b)?
    } else if let Some((a, b)) = cond.split_once(" or ") {
        test(a)? || test(b)?
    } else {
        test(cond)?
    };
    let (a, b, c) = info.version;
    Ok(skip.then(|| format!("skip_nginx: nginx {a}.{b}.{c} matches '{cond}'")))
}

/// What Test::Nginx::Socket would do differently with this block, found before running it.
fn check_structure(job: &Job) -> Result<(), String> {
    let b = job.block;
    let used: Vec<&str> = PROJECT_SECTIONS
        .iter()
        .copied()
        .filter(|s| b.has(s))
        .collect();
    match b.get("project_only") {
        None if !used.is_empty() => {
            return Err(format!(
                "the block uses the project runner's section(s) {}, which prove ignores: add \
                 '--- project_only: <why>' so that prove skips the block (t/README.md, \
                 \"Project-only blocks\")",
                used.join(", ")
            ))
        }
        None => {}
        Some(s) => {
            if s.text.trim().is_empty() {
                return Err("--- project_only needs a reason: '--- project_only: <why>'".into());
            }
            if !job.file.preamble.project_only_hook {
                return Err(
                    "--- project_only: the file's preamble must load the hook that makes \
                     prove skip such blocks: \"use lib 't/lib'; use ProjectOnly;\""
                        .into(),
                );
            }
        }
    }
    if !b.has("config") {
        return Err(
            "the block has no --- config section: Test::Nginx would not start nginx for \
             it but send its requests to the previous block's nginx (ignoring this block's \
             http_config, main_config and user_files); add '--- config' (it may be empty)"
                .into(),
        );
    }
    for (a, c) in EXCLUSIVE {
        if b.has(a) && b.has(c) {
            return Err(format!(
                "--- {a} and --- {c} in one block: Test::Nginx checks only --- {a}; put the \
                 second check in another form (an anchored pattern, another block, ...)"
            ));
        }
    }
    if b.has("must_die") {
        for s in [
            "shutdown_error_log",
            "no_shutdown_error_log",
            "access_log",
            "no_access_log",
        ] {
            if b.has(s) {
                return Err(format!(
                    "--- {s} with --- must_die: Test::Nginx never checks it for a block whose \
                     nginx refuses to start"
                ));
            }
        }
    }
    if b.has("grep_error_log") != b.has("grep_error_log_out") {
        return Err("--- grep_error_log and --- grep_error_log_out go together".into());
    }
    Ok(())
}

/// Runs a block; Err carries the full failure report.
pub fn run(job: &Job) -> Result<(), String> {
    let b = job.block;
    let here = format!("{} line {}", job.display, b.line);
    if let Some(e) = &b.error {
        return Err(format!("{e}\n  at {here}"));
    }
    for s in &b.sections {
        let name = s.name.as_str();
        if !KNOWN_SECTIONS.contains(&name) && !PROJECT_SECTIONS.contains(&name) {
            return Err(format!(
                "unsupported section '--- {}' (see t/README.md for the supported ones)\n  at {here}",
                s.name
            ));
        }
    }
    check_structure(job).map_err(|e| format!("{e}\n  at {here}"))?;
    let info = nginx::info()?;
    // Retry with another port if nginx finds ours taken.
    for _ in 0..5 {
        let port = nginx::free_port()?;
        let mut run = BlockRun::new(job, info, port).map_err(|e| format!("{e}\n  at {here}"))?;
        match run.execute() {
            Ok(Outcome::Retry) => continue,
            Ok(Outcome::Done) if run.failures.is_empty() => return Ok(()),
            Ok(Outcome::Done) => return Err(run.report(&here)),
            Err(e) => {
                run.failures.push(e);
                return Err(run.report(&here));
            }
        }
    }
    Err(format!(
        "nginx kept failing with 'Address already in use'\n  at {here}"
    ))
}

enum Outcome {
    Done,
    Retry,
}

/// A request to send; HEAD responses have no body.
struct Request {
    bytes: Vec<u8>,
    head: bool,
}

impl Request {
    fn new(bytes: Vec<u8>) -> Self {
        let head = bytes.starts_with(b"HEAD ");
        Request { bytes, head }
    }
}

/// One request and what came back, for the report.
struct Exchange {
    request: Vec<u8>,
    response: Option<Response>,
}

/// State of one attempt at running a block.
struct BlockRun<'a> {
    job: &'a Job<'a>,
    info: &'static Info,
    port: u16,
    vars: Vars,
    failures: Vec<String>,
    exchanges: Vec<Exchange>,
    nginx_output: Option<String>,
    /// The configuration sections as started, for a reload.
    conf: ConfTexts,
    /// Where the next error.log check starts (Test::Nginx checks the lines logged since the
    /// previous check).
    log_pos: usize,
}

/// The parts of nginx.conf that come from the block.
#[derive(Default, Clone)]
struct ConfTexts {
    log_level: String,
    main_config: String,
    post_main_config: String,
    http_config: String,
    config: String,
}

impl<'a> BlockRun<'a> {
    fn new(job: &'a Job<'a>, info: &'static Info, port: u16) -> Result<Self, String> {
        let servroot = &job.servroot;
        nginx::setup_servroot(servroot)?;
        let mut vars = Vars::default();
        vars.fixed.extend(job.file.preamble.env.clone());
        vars.fixed
            .insert("TEST_NGINX_SERVER_PORT".into(), port.to_string());
        vars.fixed.insert(
            "TEST_NGINX_SERVER_ROOT".into(),
            servroot.display().to_string(),
        );
        Ok(BlockRun {
            job,
            info,
            port,
            vars,
            failures: Vec::new(),
            exchanges: Vec::new(),
            nginx_output: None,
            conf: ConfTexts::default(),
            log_pos: 0,
        })
    }

    fn block(&self) -> &'a Block {
        self.job.block
    }

    /// A section's value after its filters, or None when the block lacks it. `$ENV{NAME}` in
    /// an `eval` reads what Perl's %ENV would hold under prove (no `TEST_NGINX_RAND_PORT_*`).
    fn value(&self, name: &str) -> Result<Option<Value>, String> {
        let env = |n: &str| self.vars.env(n);
        self.block()
            .get(name)
            .map(|s| s.value_with(Some(&env)))
            .transpose()
    }

    /// A section that must be a string, with `$TEST_NGINX_*` interpolated (as Test::Nginx
    /// does in the configuration sections; also used for the project's own sections).
    fn text(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.value(name)? {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(self.vars.expand(&String::from_utf8_lossy(&s))?)),
            Some(other) => Err(format!("--- {name} must be a string, got {other}")),
        }
    }

    /// A string section Test::Nginx reads as it is: no `$TEST_NGINX_*` interpolation (and a
    /// `$TEST_NGINX_` in it is refused, since it would go out literally).
    fn plain_text(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.value(name)? {
            None => Ok(None),
            Some(Value::Str(s)) => {
                no_env(name, &s)?;
                Ok(Some(String::from_utf8_lossy(&s).into_owned()))
            }
            Some(other) => Err(format!("--- {name} must be a string, got {other}")),
        }
    }

    fn seconds(&mut self, name: &str) -> Result<Option<f64>, String> {
        match self.plain_text(name)? {
            None => Ok(None),
            Some(t) => parse_seconds(&t)
                .map(Some)
                .ok_or_else(|| format!("--- {name}: {t:?} is not a number of seconds")),
        }
    }

    fn execute(&mut self) -> Result<Outcome, String> {
        let job = self.job;
        let pre = &job.file.preamble;
        let log_level = self.plain_text("log_level")?.map(|l| l.trim().to_string());
        self.conf = ConfTexts {
            log_level: log_level.unwrap_or_else(|| pre.log_level.clone()),
            main_config: self.text("main_config")?.unwrap_or_default(),
            post_main_config: self.text("post_main_config")?.unwrap_or_default(),
            http_config: self.text("http_config")?.unwrap_or_default(),
            config: self.text("config")?.unwrap_or_default(),
        };
        self.write_user_files()?;
        self.write_conf(&self.conf.clone())?;

        let must_die = self.plain_text("must_die")?;
        let mut nginx = match Nginx::start(self.info, &job.servroot, startup_timeout())? {
            Start::AddressInUse => return Ok(Outcome::Retry),
            Start::Exited {
                code,
                signal,
                output,
            } => {
                self.nginx_output = Some(output.clone());
                let Some(must_die) = must_die else {
                    return Err(format!(
                        "nginx failed to start ({})",
                        exit_text(code, signal)
                    ));
                };
                if let Some(sig) = signal {
                    self.failures.push(format!(
                        "nginx was killed by signal {sig} instead of refusing the config"
                    ));
                } else if let Ok(want) = must_die.trim().parse::<i32>() {
                    if code != Some(want) {
                        self.failures.push(format!(
                            "must_die: nginx should exit with code {want}, got {}",
                            exit_text(code, signal)
                        ));
                    }
                } else if code == Some(0) {
                    self.failures
                        .push("must_die: nginx exited with code 0".to_string());
                }
                // As Test::Nginx: the log sections are checked against error.log only (where
                // nginx writes `[emerg] PID#0: message`; its stderr, `nginx: [emerg] message`,
                // is not read).
                let lines = read_lines(&self.job.servroot.join("logs/error.log"));
                let f = self.log_failures(&lines, None, "")?;
                self.failures.extend(f.into_iter().map(|(_, m)| m));
                self.check_unexpected(&lines, true)?;
                self.check_valgrind();
                return Ok(Outcome::Done);
            }
            Start::Running(n) => n,
        };
        if must_die.is_some() {
            let _ = nginx.stop(shutdown_grace());
            self.nginx_output = Some(nginx.output());
            self.failures.push(
                "must_die: nginx started, but the block expects it to refuse the configuration"
                    .to_string(),
            );
            return Ok(Outcome::Done);
        }

        self.run_requests(&mut nginx)?;

        let was_running = nginx.running();
        let stop = nginx.stop(shutdown_grace());
        self.nginx_output = Some(nginx.output());
        drop(nginx);
        if !was_running {
            self.failures
                .push("nginx exited before the requests were done".to_string());
        } else {
            match stop {
                Err(e) => self.failures.push(e),
                Ok(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    if !st.success() {
                        self.failures.push(format!(
                            "nginx exited abnormally on SIGQUIT ({})",
                            exit_text(st.code(), st.signal())
                        ));
                    }
                }
            }
        }
        let path = self.job.servroot.join("logs/error.log");
        let lines = read_lines(&path);
        self.check_unexpected(&lines, false)?;
        // shutdown_error_log: the lines since the last check, through nginx's exit (Test::Nginx
        // reads them when it stops this nginx, at the start of the next block).
        let (shutdown, _) = self.error_log_since_check(&path);
        self.check_patterns(
            &shutdown,
            &["shutdown_error_log"],
            &["no_shutdown_error_log"],
            "error.log",
            " (lines logged after the last check, through nginx's exit)",
        )?;
        self.check_json_log()?;
        self.check_prometheus()?;
        self.check_valgrind();
        Ok(Outcome::Done)
    }

    /// Under valgrind: every error valgrind reported in any nginx process fails the block.
    fn check_valgrind(&mut self) {
        if !valgrind::enabled() {
            return;
        }
        let r = valgrind::read(&self.job.servroot);
        if r.files == 0 {
            self.failures
                .push("valgrind: no logs/valgrind-*.log was written".to_string());
            return;
        }
        if r.errors == 0 && r.records.is_empty() {
            return;
        }
        let in_module = r.records.iter().filter(|x| valgrind::in_module(x)).count();
        let mut msg = format!(
            "valgrind: {} error(s) (ERROR SUMMARY total), {} report(s), {in_module} with a frame in the module:",
            r.errors,
            r.records.len()
        );
        for rec in &r.records {
            msg.push('\n');
            msg.push_str(&indent(rec));
        }
        self.failures.push(msg);
    }

    /// Writes nginx.conf from `texts`.
    fn write_conf(&self, texts: &ConfTexts) -> Result<(), String> {
        let pre = &self.job.file.preamble;
        nginx::write_conf(
            &ConfParams {
                port: self.port,
                servroot: &self.job.servroot,
                workers: pre.workers,
                master: pre.master,
                log_level: &texts.log_level,
                worker_connections: pre.worker_connections,
                no_root_location: pre.no_root_location,
                env_to_nginx: &pre.env_to_nginx,
                main_config: &texts.main_config,
                post_main_config: &texts.post_main_config,
                http_config: &texts.http_config,
                config: &texts.config,
            },
            self.info,
        )?;
        Ok(())
    }

    /// `--- user_files`: `>>> name [touch -t date]` lines, each followed by the file's content,
    /// written under the html dir (absolute names as they are). With `eval`, an array of
    /// `[name, content]` pairs.
    fn write_user_files(&mut self) -> Result<(), String> {
        let mut files: Vec<(String, Vec<u8>, Option<String>)> = Vec::new();
        match self.value("user_files")? {
            None => return Ok(()),
            Some(Value::Str(s)) => {
                let text = String::from_utf8_lossy(&s).into_owned();
                for line in text.split_inclusive('\n') {
                    if let Some(p) = line.find(">>> ") {
                        let mut words = line[p + 4..].split_whitespace();
                        if let Some(name) = words.next() {
                            let date = words.collect::<Vec<_>>().join(" ");
                            files.push((
                                name.to_string(),
                                Vec::new(),
                                (!date.is_empty()).then_some(date),
                            ));
                            continue;
                        }
                    }
                    match files.last_mut() {
                        Some(f) => f.1.extend_from_slice(line.as_bytes()),
                        None => {
                            return Err(
                                "--- user_files must start with a '>>> name' line".to_string()
                            )
                        }
                    }
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Array(pair) => match pair.as_slice() {
                            [Value::Str(n), Value::Str(b), rest @ ..] => {
                                let date = match rest.first() {
                                    Some(Value::Str(d)) => {
                                        Some(String::from_utf8_lossy(d).into_owned())
                                    }
                                    _ => None,
                                };
                                files.push((
                                    String::from_utf8_lossy(n).into_owned(),
                                    b.clone(),
                                    date,
                                ));
                            }
                            _ => {
                                return Err(
                                    "--- user_files eval: want [[name, content], ...]".to_string()
                                )
                            }
                        },
                        _ => {
                            return Err(
                                "--- user_files eval: want [[name, content], ...]".to_string()
                            )
                        }
                    }
                }
            }
            Some(other) => return Err(format!("--- user_files: unsupported value {other}")),
        }
        let html = self.job.servroot.join("html");
        for (name, body, date) in files {
            // Test::Nginx interpolates the contents, not the names.
            no_env("user_files", name.as_bytes())?;
            let path = if name.starts_with('/') {
                PathBuf::from(&name)
            } else {
                html.join(&name)
            };
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let body = self.vars.expand_bytes(&body)?;
            fs::write(&path, body).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            if let Some(date) = date {
                let ok = std::process::Command::new("touch")
                    .env("TZ", "GMT")
                    .arg("-t")
                    .arg(&date)
                    .arg(&path)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err(format!("touch -t {date} {} failed", path.display()));
                }
            }
        }
        Ok(())
    }

    /// Builds the requests, and tells whether expectations must be arrays (one per request).
    fn requests(&mut self) -> Result<(Vec<Request>, bool), String> {
        if let Some(raw) = self.value("raw_request")? {
            let bytes = match raw {
                Value::Str(s) => s,
                Value::Array(parts) => {
                    let mut all = Vec::new();
                    for p in parts {
                        match p {
                            Value::Str(s) => all.extend(s),
                            other => {
                                return Err(format!("--- raw_request: unsupported packet {other}"))
                            }
                        }
                    }
                    all
                }
                other => return Err(format!("--- raw_request: unsupported value {other}")),
            };
            no_env("raw_request", &bytes)?;
            return Ok((vec![Request::new(bytes)], false));
        }
        let Some(req) = self.value("request")? else {
            return Err("the block has no --- request or --- raw_request section".to_string());
        };
        let more = self.value("more_headers")?;
        let (reqs, need_array) = match req {
            Value::Str(s) => (vec![s], false),
            Value::Array(items) => {
                let mut v = Vec::new();
                for it in items {
                    match it {
                        Value::Str(s) => v.push(s),
                        // A request given as packets: sent in one go (no delays between them).
                        Value::Array(packets) => {
                            let mut all = Vec::new();
                            for p in packets {
                                match p {
                                    Value::Str(s) => all.extend(s),
                                    other => {
                                        return Err(format!(
                                            "--- request eval: unsupported packet {other}"
                                        ))
                                    }
                                }
                            }
                            v.push(all);
                        }
                        other => {
                            return Err(format!("--- request eval: unsupported request {other}"))
                        }
                    }
                }
                // Test::Nginx wants arrays of expected values only for several requests.
                let several = v.len() > 1;
                (v, several)
            }
            other => return Err(format!("--- request: unsupported value {other}")),
        };
        let mut out = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            // Bytes, not text: a header may carry invalid UTF-8 on purpose.
            let headers = match &more {
                None => Vec::new(),
                Some(Value::Str(s)) => s.clone(),
                Some(Value::Array(a)) => match a.get(i) {
                    Some(Value::Str(s)) => s.clone(),
                    _ => {
                        return Err(format!(
                            "--- more_headers lacks data for request #{}",
                            i + 1
                        ))
                    }
                },
                Some(other) => return Err(format!("--- more_headers: unsupported value {other}")),
            };
            no_env("more_headers", &headers)?;
            no_env("request", r)?;
            out.push(Request::new(http::build_request(r, &headers)?));
        }
        Ok((out, need_array))
    }

    /// The per-request timeout (scaled under valgrind).
    fn timeout(&mut self) -> Result<f64, String> {
        Ok(valgrind::slowdown()
            * match self.seconds("timeout")? {
                Some(t) => t,
                None => self
                    .job
                    .file
                    .preamble
                    .timeout
                    .or_else(|| {
                        std::env::var("TEST_NGINX_TIMEOUT")
                            .ok()
                            .and_then(|t| parse_seconds(&t))
                    })
                    .unwrap_or(3.0),
            })
    }

    fn run_requests(&mut self, nginx: &mut Nginx) -> Result<(), String> {
        let concurrent = self.block().has("concurrent_requests");
        if concurrent {
            self.run_concurrent()?;
        } else {
            for s in [
                "concurrent_request",
                "concurrency",
                "status_counts",
                "distinct_header_values",
            ] {
                if self.block().has(s) {
                    return Err(format!("--- {s} needs --- concurrent_requests"));
                }
            }
        }
        let reload_after = match self.text("reload_after_request")? {
            None => None,
            Some(t) => Some(t.trim().parse::<usize>().map_err(|_| {
                format!("--- reload_after_request: {t:?} is not a number of requests")
            })?),
        };
        if reload_after.is_none()
            && (self.block().has("reload_config") || self.block().has("reload_http_config"))
        {
            return Err(
                "--- reload_config/reload_http_config need --- reload_after_request".into(),
            );
        }
        let sequential = self.block().has("request") || self.block().has("raw_request");
        if concurrent && !sequential {
            if reload_after.is_some() {
                return Err("--- reload_after_request needs a --- request".into());
            }
            return self.check_logs_now(" (after the concurrent phase)");
        }
        let (reqs, need_array) = self.requests()?;
        let timeout = self.timeout()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let n = reqs.len();
        if let Some(k) = reload_after {
            if k > n {
                return Err(format!(
                    "--- reload_after_request: {k}, but the block sends {n} request(s)"
                ));
            }
            if k == 0 {
                self.reload(nginx)?;
            }
        }
        for (i, Request { bytes, head }) in reqs.into_iter().enumerate() {
            let label = if n > 1 {
                format!(" (request #{})", i + 1)
            } else {
                String::new()
            };
            let resp = http::send(
                addr,
                &bytes,
                Duration::from_secs_f64(timeout.max(0.001)),
                head,
            );
            match resp {
                Ok(resp) => {
                    for p in &resp.problems {
                        self.failures.push(format!("{p}{label}"));
                    }
                    self.exchanges.push(Exchange {
                        request: bytes,
                        response: Some(resp),
                    });
                    let idx = self.exchanges.len() - 1;
                    self.check_response(idx, i, need_array, &label)?;
                }
                Err(e) => {
                    self.exchanges.push(Exchange {
                        request: bytes,
                        response: None,
                    });
                    self.failures.push(format!("{e}{label}"));
                }
            }
            self.after_request(i + 1, nginx)?;
            // As Test::Nginx: `--- wait` seconds, then the log checks, after each request.
            if let Some(w) = self.seconds("wait")? {
                sleep(Duration::from_secs_f64(w.max(0.0)));
            }
            let when = if n == 1 {
                String::new()
            } else if self.job.file.preamble.accum_error_log {
                format!(" (error.log up to request #{})", i + 1)
            } else {
                format!(" (lines logged for request #{})", i + 1)
            };
            self.check_logs_now(&when)?;
            if !nginx.running() {
                break;
            }
            if reload_after == Some(i + 1) {
                self.reload(nginx)?;
            }
        }
        Ok(())
    }

    /// Project extension: `nginx -s reload` between two requests, with `--- reload_config` /
    /// `--- reload_http_config` replacing those sections if given.
    fn reload(&mut self, nginx: &mut Nginx) -> Result<(), String> {
        if !self.job.file.preamble.master {
            return Err("--- reload_after_request needs the master process (master_on())".into());
        }
        let mut texts = self.conf.clone();
        if let Some(c) = self.text("reload_http_config")? {
            texts.http_config = c;
        }
        if let Some(c) = self.text("reload_config")? {
            texts.config = c;
        }
        self.write_conf(&texts)?;
        nginx.reload(self.job.file.preamble.workers as usize, startup_timeout())
    }

    /// Project extension: the concurrent phase (see `concurrent.rs` and t/README.md).
    fn run_concurrent(&mut self) -> Result<(), String> {
        let count = |this: &mut Self, name: &str| -> Result<Option<usize>, String> {
            match this.text(name)? {
                None => Ok(None),
                Some(t) => t
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .map(Some)
                    .ok_or_else(|| format!("--- {name}: {t:?} is not a positive number")),
            }
        };
        let n = count(self, "concurrent_requests")?.unwrap_or(0);
        let c = count(self, "concurrency")?.unwrap_or(10);
        let Some(template) = self.text("concurrent_request")? else {
            return Err("--- concurrent_requests needs a --- concurrent_request template".into());
        };
        let Some(want) = self.text("status_counts")? else {
            return Err("--- concurrent_requests needs --- status_counts".into());
        };
        let want = concurrent::parse_status_counts(&want)?;
        let distinct = match self.text("distinct_header_values")? {
            Some(t) => concurrent::parse_distinct(&t)?,
            None => Vec::new(),
        };
        let headers = match self.value("more_headers")? {
            Some(Value::Str(s)) => {
                no_env("more_headers", &s)?;
                String::from_utf8_lossy(&s).into_owned()
            }
            _ => String::new(),
        };
        let mut jobs = Vec::with_capacity(n);
        for i in 0..n {
            let idx = i.to_string();
            let bytes = http::build_request(
                template.replace("{i}", &idx).as_bytes(),
                headers.replace("{i}", &idx).as_bytes(),
            )?;
            let head = bytes.starts_with(b"HEAD ");
            jobs.push(concurrent::Job { bytes, head });
        }
        let timeout = Duration::from_secs_f64(self.timeout()?.max(0.001));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let results = concurrent::send_all(addr, &jobs, c, timeout);
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        for r in &results {
            *got.entry(concurrent::status_key(r)).or_default() += 1;
        }
        let mut failed = false;
        if let Some(f) = concurrent::check_status_counts(&want, &got) {
            self.failures.push(f);
            failed = true;
        }
        for f in concurrent::check_distinct(&distinct, &results) {
            self.failures.push(f);
            failed = true;
        }
        if failed {
            // The report shows one exchange per status seen, not all N.
            let mut seen = std::collections::BTreeSet::new();
            for (job, r) in jobs.into_iter().zip(results) {
                if !seen.insert(concurrent::status_key(&r)) {
                    continue;
                }
                match r {
                    Ok(resp) => {
                        for p in &resp.problems {
                            self.failures.push(format!("concurrent request: {p}"));
                        }
                        self.exchanges.push(Exchange {
                            request: job.bytes,
                            response: Some(resp),
                        });
                    }
                    Err(e) => {
                        self.failures.push(format!("concurrent request: {e}"));
                        self.exchanges.push(Exchange {
                            request: job.bytes,
                            response: None,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// `--- after_request`: the actions listed for request `n` (1-based), run after its
    /// response was checked.
    fn after_request(&mut self, n: usize, nginx: &mut Nginx) -> Result<(), String> {
        let Some(text) = self.text("after_request")? else {
            return Ok(());
        };
        let root = self.job.servroot.clone();
        for (at, action) in data::parse_actions(&text)? {
            if at != n {
                continue;
            }
            match action {
                data::Action::Rename(from, to) => fs::rename(root.join(&from), root.join(&to))
                    .map_err(|e| format!("after_request {n}: rename {from} {to}: {e}"))?,
                data::Action::Signal(sig, _) => {
                    // SAFETY: signals our own child, the nginx master.
                    unsafe { libc::kill(nginx.pid(), sig) };
                }
                data::Action::Sleep(s) => sleep(Duration::from_secs_f64(s.max(0.0))),
                data::Action::JsonLines(f, want) => {
                    // A record written by a timer (flush=), a reopen or a worker's exit comes
                    // some time after the request: wait for `want` (as long as a loaded
                    // machine may need; no longer than that once it is reached).
                    let files = std::slice::from_ref(&f);
                    let deadline = std::time::Instant::now()
                        + Duration::from_secs_f64(3.0 * valgrind::slowdown());
                    while std::time::Instant::now() < deadline
                        && data::read_json_lines(&root, files).is_ok_and(|l| l.len() < want)
                    {
                        sleep(Duration::from_millis(10));
                    }
                    match data::read_json_lines(&root, files) {
                        Ok(lines) if lines.len() == want => {}
                        Ok(lines) => self.failures.push(format!(
                            "after_request {n}: json_lines {f} {want}: the file has {} lines",
                            lines.len()
                        )),
                        Err(p) => self.failures.push(format!(
                            "after_request {n}: json_lines {f} {want}:\n    {}",
                            p.join("\n    ")
                        )),
                    }
                }
            }
        }
        Ok(())
    }

    /// `--- json_log_file` (files relative to the server root, read in order as one log):
    /// after nginx stopped, every line of every file must be a JSON object; then
    /// `json_log_lines`, `json_log_match` and `no_json_log` are checked.
    fn check_json_log(&mut self) -> Result<(), String> {
        let Some(files) = self.text("json_log_file")? else {
            for s in ["json_log_lines", "json_log_match", "no_json_log"] {
                if self.block().has(s) {
                    return Err(format!("--- {s} needs --- json_log_file"));
                }
            }
            return Ok(());
        };
        let files: Vec<String> = files.split_whitespace().map(str::to_string).collect();
        let root = self.job.servroot.clone();
        let lines = match data::read_json_lines(&root, &files) {
            Ok(l) => l,
            Err(problems) => {
                self.failures
                    .push(format!("--- json_log_file: {}", problems.join("\n    ")));
                return Ok(());
            }
        };
        if let Some(n) = self.text("json_log_lines")? {
            let want: usize = n
                .trim()
                .parse()
                .map_err(|_| format!("--- json_log_lines: {n:?} is not a number"))?;
            if lines.len() != want {
                self.failures.push(format!(
                    "--- json_log_lines: {} has {} lines, want {want}:\n{}",
                    files.join(" + "),
                    lines.len(),
                    lines
                        .iter()
                        .map(|l| format!("    {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        if let Some(spec) = self.text("json_log_match")? {
            for line in spec.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let f = data::check_match(&lines, line)?;
                self.failures.extend(f);
            }
        }
        if self.block().has("no_json_log") {
            let mut raw = Vec::new();
            for f in &files {
                raw.extend(read_lines(&root.join(f)));
            }
            self.check_patterns(&raw, &[], &["no_json_log"], &files.join(" + "), "")?;
        }
        Ok(())
    }

    /// `--- prometheus`: the body of the last response must parse as Prometheus text, and the
    /// listed samples must have the listed values.
    fn check_prometheus(&mut self) -> Result<(), String> {
        let Some(spec) = self.text("prometheus")? else {
            return Ok(());
        };
        let Some(body) = self
            .exchanges
            .last()
            .and_then(|e| e.response.as_ref())
            .map(|r| r.body.clone())
        else {
            self.failures
                .push("--- prometheus: the last request got no response".to_string());
            return Ok(());
        };
        match data::parse_prometheus(&body) {
            Ok((samples, types)) => {
                let f = data::check_prometheus(&samples, &types, &spec)?;
                self.failures.extend(f);
            }
            Err(e) => self.failures.push(e),
        }
        Ok(())
    }

    /// The expectation of section `name` for request `i` (arrays are indexed per request).
    fn expected(
        &mut self,
        name: &str,
        i: usize,
        need_array: bool,
    ) -> Result<Option<Value>, String> {
        let Some(v) = self.value(name)? else {
            return Ok(None);
        };
        let v = match v {
            Value::Array(mut items) => {
                if i >= items.len() {
                    return Err(format!("--- {name} has no value for request #{}", i + 1));
                }
                items.swap_remove(i)
            }
            other if need_array => {
                return Err(format!(
                "--- {name}: the block sends several requests, so the expected values must be an \
                     array (use '--- {name} eval' with [...]); got {other}"
            ))
            }
            other => other,
        };
        // What Test::Nginx interpolates: `$ServerPort` (and `$ServerPortForClient`) in
        // response_body, response_body_like/unlike and response_headers; `$TEST_NGINX_*` only
        // in a string response_body.
        let port = matches!(
            name,
            "response_body" | "response_body_like" | "response_body_unlike" | "response_headers"
        );
        Ok(Some(match v {
            Value::Str(s) if name == "response_body" => {
                let s = self.vars.server_port(&s)?;
                Value::Str(self.vars.expand_bytes(&s)?)
            }
            Value::Str(s) => {
                no_env(name, &s)?;
                Value::Str(if port { self.vars.server_port(&s)? } else { s })
            }
            Value::Regex(r) => {
                no_env(name, r.source.as_bytes())?;
                if port && name != "response_body" {
                    let source = self.vars.server_port(r.source.as_bytes())?;
                    Value::Regex(PerlRegex::new(
                        String::from_utf8_lossy(&source).into_owned(),
                        r.flags,
                    ))
                } else {
                    Value::Regex(r)
                }
            }
            other => other,
        }))
    }

    fn check_response(
        &mut self,
        idx: usize,
        i: usize,
        need_array: bool,
        label: &str,
    ) -> Result<(), String> {
        let Some(resp) = self.exchanges[idx].response.take() else {
            return Ok(());
        };
        let result = self.check_response_inner(&resp, i, need_array, label);
        self.exchanges[idx].response = Some(resp);
        result
    }

    fn check_response_inner(
        &mut self,
        resp: &Response,
        i: usize,
        need_array: bool,
        label: &str,
    ) -> Result<(), String> {
        let got_code = resp.status.map(|s| s.to_string()).unwrap_or_default();
        // Status: --- error_code_like, --- error_code, else 200 (as Test::Nginx).
        if let Some(want) = self.expected("error_code_like", i, need_array)? {
            let re = regex_of(&want, "sm")?;
            if !re.is_match(got_code.as_bytes()) {
                self.failures.push(format!(
                    "status code{label}: got {got_code:?}, want one like {want}"
                ));
            }
        } else {
            let want = match self.expected("error_code", i, need_array)? {
                Some(Value::Str(s)) => String::from_utf8_lossy(&s).trim().to_string(),
                Some(other) => return Err(format!("--- error_code: unsupported value {other}")),
                None => "200".to_string(),
            };
            if got_code != want {
                self.failures.push(format!(
                    "status code{label}: got {got_code:?}, want {want:?}"
                ));
            }
        }

        if let Some(want) = self.expected("response_headers", i, need_array)? {
            let want = string_of("response_headers", want)?;
            for (name, val) in parse_header_spec(&want) {
                match val {
                    None => {
                        if resp.header(&name).is_some() {
                            self.failures.push(format!(
                                "response header{label} '{name}' should be absent, but is {:?}",
                                resp.header(&name).unwrap_or_default()
                            ));
                        }
                    }
                    Some(v) => {
                        let got = resp.header(&name).unwrap_or_default();
                        if got != v {
                            self.failures.push(format!(
                                "response header{label} '{name}': got {got:?}, want {v:?}{}",
                                if resp.header(&name).is_none() {
                                    " (header absent)"
                                } else {
                                    ""
                                }
                            ));
                        }
                    }
                }
            }
        }
        if let Some(want) = self.expected("response_headers_like", i, need_array)? {
            let want = string_of("response_headers_like", want)?;
            for (name, val) in parse_header_spec(&want) {
                let got = resp.header(&name);
                match val {
                    // As Test::Nginx (`qr/^$/`): absent or empty.
                    None => {
                        if let Some(g) = got.filter(|g| !g.is_empty()) {
                            self.failures.push(format!(
                                "response header{label} '{name}' should be absent (or empty), but is {g:?}"
                            ));
                        }
                    }
                    Some(v) => {
                        let re = PerlRegex::new(format!("^{v}$"), "").compile()?;
                        let g = got.unwrap_or_default();
                        if !re.is_match(g.as_bytes()) {
                            self.failures.push(format!(
                                "response header{label} '{name}': got {g:?}, want a match for /^{v}$/"
                            ));
                        }
                    }
                }
            }
        }
        for (section, negate) in [
            ("raw_response_headers_like", false),
            ("raw_response_headers_unlike", true),
        ] {
            if let Some(want) = self.expected(section, i, need_array)? {
                let re = regex_of(&want, "s")?;
                if re.is_match(resp.raw_headers.as_bytes()) == negate {
                    self.failures.push(format!(
                        "raw response headers{label} {} {want}:\n{}",
                        if negate { "match" } else { "do not match" },
                        indent(&resp.raw_headers)
                    ));
                }
            }
        }

        if let Some(want) = self.expected("response_body", i, need_array)? {
            match want {
                Value::Str(w) => {
                    if resp.body != w {
                        self.failures.push(format!(
                            "response body{label} differs:\n{}",
                            diff(&w, &resp.body)
                        ));
                    }
                }
                Value::Regex(r) => {
                    if !r.compile()?.is_match(&resp.body) {
                        self.failures.push(format!(
                            "response body{label} does not match {r}:\n{}",
                            indent(&show(&resp.body))
                        ));
                    }
                }
                other => return Err(format!("--- response_body: unsupported value {other}")),
            }
        } else {
            for (section, negate) in [
                ("response_body_like", false),
                ("response_body_unlike", true),
            ] {
                if let Some(want) = self.expected(section, i, need_array)? {
                    let re = regex_of(&want, "s")?;
                    if re.is_match(&resp.body) == negate {
                        self.failures.push(format!(
                            "response body{label} {} {}:\n{}",
                            if negate { "matches" } else { "does not match" },
                            pattern_text(&want, "s"),
                            indent(&show(&resp.body))
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// `error_log`-like sections must each match a line; `no_error_log`-like ones none.
    /// Returns the failures, each marked whether it is a missing line (`true`) or a line that
    /// should not be there.
    fn pattern_failures(
        &mut self,
        lines: &[String],
        positive: &[&str],
        negative: &[&str],
        what: &str,
        when: &str,
    ) -> Result<Vec<(bool, String)>, String> {
        let mut out = Vec::new();
        for section in positive {
            for pat in self.patterns(section)? {
                if !lines.iter().any(|l| pat.matches(l)) {
                    out.push((
                        true,
                        format!(
                            "--- {section}: {} should match a line in {what}{when}",
                            pat.text()
                        ),
                    ));
                }
            }
        }
        for section in negative {
            for pat in self.patterns(section)? {
                if let Some(l) = lines.iter().find(|l| pat.matches(l)) {
                    out.push((
                        false,
                        format!(
                            "--- {section}: {} should not match any line in {what}{when}, but matches:\n    {l}",
                            pat.text()
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// `pattern_failures`, recorded as the block's failures.
    fn check_patterns(
        &mut self,
        lines: &[String],
        positive: &[&str],
        negative: &[&str],
        what: &str,
        when: &str,
    ) -> Result<(), String> {
        let f = self.pattern_failures(lines, positive, negative, what, when)?;
        self.failures.extend(f.into_iter().map(|(_, m)| m));
        Ok(())
    }

    /// Test::Nginx's log checks on `errlog` (the error.log lines of this check) and, when
    /// given, `acclog` (all of access.log): `error_log`, `no_error_log`, `grep_error_log`,
    /// `access_log`, `no_access_log`. `when` ends the messages (which request).
    fn log_failures(
        &mut self,
        errlog: &[String],
        acclog: Option<&[String]>,
        when: &str,
    ) -> Result<Vec<(bool, String)>, String> {
        let mut out =
            self.pattern_failures(errlog, &["error_log"], &["no_error_log"], "error.log", when)?;
        if let Some(m) = self.grep_error_log_failure(errlog, when)? {
            out.push((true, m));
        }
        if let Some(acc) = acclog {
            out.extend(self.pattern_failures(
                acc,
                &["access_log"],
                &["no_access_log"],
                "access.log",
                when,
            )?);
        }
        Ok(out)
    }

    /// The error.log lines since the last check (all of them with `check_accum_error_log()`),
    /// and the file's length.
    fn error_log_since_check(&self, path: &Path) -> (Vec<String>, usize) {
        let bytes = fs::read(path).unwrap_or_default();
        let from = if self.job.file.preamble.accum_error_log {
            0
        } else {
            self.log_pos.min(bytes.len())
        };
        let lines = String::from_utf8_lossy(&bytes[from..])
            .lines()
            .map(str::to_string)
            .collect();
        (lines, bytes.len())
    }

    /// Test::Nginx's log check after a request (`when` says which): it sleeps
    /// 3 * TEST_NGINX_SLEEP (0.015 s) for lines logged in the log phase, then checks the
    /// error.log lines logged since the previous check and the whole access.log. An expected
    /// line or grep_error_log_out that is not there yet is waited for up to 0.5 s more
    /// (no request is in flight meanwhile, so only this request's late lines can come).
    fn check_logs_now(&mut self, when: &str) -> Result<(), String> {
        let b = self.block();
        let errlog = ["error_log", "no_error_log", "grep_error_log"]
            .iter()
            .any(|s| b.has(s));
        let acclog = ["access_log", "no_access_log"].iter().any(|s| b.has(s));
        let path = self.job.servroot.join("logs/error.log");
        if !errlog && !acclog {
            self.log_pos = fs::metadata(&path).map_or(0, |m| m.len() as usize);
            return Ok(());
        }
        let nap = std::env::var("TEST_NGINX_SLEEP")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.015);
        sleep(Duration::from_secs_f64(3.0 * nap * valgrind::slowdown()));
        let deadline =
            std::time::Instant::now() + Duration::from_secs_f64(0.5 * valgrind::slowdown());
        loop {
            let (lines, end) = self.error_log_since_check(&path);
            let acc = acclog.then(|| read_lines(&self.job.servroot.join("logs/access.log")));
            let failures = self.log_failures(&lines, acc.as_deref(), when)?;
            let waiting = failures.iter().any(|(missing, _)| *missing);
            if !waiting || std::time::Instant::now() > deadline {
                self.log_pos = end;
                self.failures.extend(failures.into_iter().map(|(_, m)| m));
                return Ok(());
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// `--- grep_error_log` (a substring or qr//): the matched parts of the lines, one per
    /// line, must equal `--- grep_error_log_out` (or match it, if that is a qr//). As in
    /// Test::Nginx, an array gives the value of the first round (repeat_each is 1).
    fn grep_error_log_failure(
        &mut self,
        lines: &[String],
        when: &str,
    ) -> Result<Option<String>, String> {
        let (Some(pat), Some(want)) = (
            self.value("grep_error_log")?,
            self.value("grep_error_log_out")?,
        ) else {
            return Ok(None);
        };
        let first = |v: Value| match v {
            Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
            other => other,
        };
        let pat = match first(pat) {
            Value::Str(s) => {
                no_env("grep_error_log", &s)?;
                Pattern::Sub(String::from_utf8_lossy(&s).into_owned())
            }
            Value::Regex(r) => {
                no_env("grep_error_log", r.source.as_bytes())?;
                Pattern::Re(r.compile()?, r.to_string())
            }
            other => return Err(format!("--- grep_error_log: unsupported pattern {other}")),
        };
        let mut got = String::new();
        for line in lines {
            let matched = match &pat {
                Pattern::Sub(s) => line.contains(s.as_str()).then(|| s.clone()),
                Pattern::Re(r, _) => r
                    .find(line.as_bytes())
                    .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned()),
            };
            if let Some(m) = matched.filter(|m| !m.contains('\n')) {
                got.push_str(&m);
                got.push('\n');
            }
        }
        Ok(match first(want) {
            Value::Str(w) => {
                let w = self.vars.expand_bytes(&w)?;
                (got.as_bytes() != w.as_slice()).then(|| {
                    format!(
                        "--- grep_error_log_out: the lines matching {}{when} differ:\n{}",
                        pat.text(),
                        diff(&w, got.as_bytes())
                    )
                })
            }
            Value::Regex(r) => {
                // Test::Nginx would turn a qr// holding $TEST_NGINX_ into a plain string.
                no_env("grep_error_log_out", r.source.as_bytes())?;
                (!r.compile()?.is_match(got.as_bytes())).then(|| {
                    format!(
                        "--- grep_error_log_out: the lines matching {}{when} do not match {r}:\n{}",
                        pat.text(),
                        indent(&show(got.as_bytes()))
                    )
                })
            }
            other => return Err(format!("--- grep_error_log_out: unsupported value {other}")),
        })
    }

    /// Patterns of an error_log-like section: lines (substrings), qr// or an array of those.
    /// As Test::Nginx, without `$TEST_NGINX_*` interpolation (the project's `no_json_log`
    /// has it).
    fn patterns(&mut self, section: &str) -> Result<Vec<Pattern>, String> {
        let expand = PROJECT_SECTIONS.contains(&section);
        let Some(v) = self.value(section)? else {
            return Ok(Vec::new());
        };
        let items = match v {
            Value::Array(a) => a,
            Value::Str(s) => {
                let s = String::from_utf8_lossy(&s).into_owned();
                s.strip_suffix('\n')
                    .unwrap_or(&s)
                    .split('\n')
                    .filter(|l| !l.is_empty())
                    .map(Value::text)
                    .collect()
            }
            other => vec![other],
        };
        let mut out = Vec::new();
        for it in items {
            out.push(match it {
                Value::Str(s) if expand => {
                    Pattern::Sub(self.vars.expand(&String::from_utf8_lossy(&s))?)
                }
                Value::Str(s) => {
                    no_env(section, &s)?;
                    Pattern::Sub(String::from_utf8_lossy(&s).into_owned())
                }
                Value::Regex(r) => {
                    let source = if expand {
                        self.vars.expand(&r.source)?
                    } else {
                        no_env(section, r.source.as_bytes())?;
                        r.source
                    };
                    let r = PerlRegex::new(source, r.flags);
                    Pattern::Re(r.compile()?, r.to_string())
                }
                other => return Err(format!("--- {section}: unsupported pattern {other}")),
            });
        }
        Ok(out)
    }

    /// Fails on `[alert]`, `[crit]`, `[emerg]` lines and crashed workers, unless the block's
    /// log sections mention them (then they are checked there).
    fn check_unexpected(&mut self, lines: &[String], must_die: bool) -> Result<(), String> {
        // As Test::Nginx: a marker is exempt when a log pattern mentions it ("[alert" in a
        // string pattern, "alert" in a regex).
        let mut mentioned_text = String::new();
        let mut mentioned_re = String::new();
        for s in [
            "error_log",
            "no_error_log",
            "shutdown_error_log",
            "no_shutdown_error_log",
        ] {
            for p in self.patterns(s)? {
                match p {
                    Pattern::Sub(t) => mentioned_text.push_str(&t),
                    Pattern::Re(_, src) => mentioned_re.push_str(&src),
                }
                mentioned_text.push('\n');
                mentioned_re.push('\n');
            }
        }
        let markers = [
            ("[alert]", "[alert", "alert"),
            ("[crit]", "[crit", "crit"),
            ("[emerg]", "[emerg", "emerg"),
            ("exited on signal", "exited on signal", "signal"),
        ];
        for line in lines {
            for (marker, in_text, in_re) in markers {
                let expected = mentioned_text.contains(in_text)
                    || mentioned_re.contains(in_re)
                    || (must_die && in_re == "emerg");
                if line.contains(marker) && !expected {
                    self.failures.push(format!(
                        "unexpected {marker} in the error log (list it under --- error_log if expected):\n    {line}"
                    ));
                    break;
                }
            }
        }
        Ok(())
    }

    /// The failure report: what failed, then the requests, responses and error.log tail.
    fn report(&self, here: &str) -> String {
        let mut r = String::new();
        for f in &self.failures {
            let _ = writeln!(r, "{f}");
        }
        let _ = writeln!(r, "  at {here}");
        for (i, ex) in self.exchanges.iter().enumerate() {
            let n = if self.exchanges.len() > 1 {
                format!(" #{}", i + 1)
            } else {
                String::new()
            };
            let _ = writeln!(r, "request{n}:\n{}", indent(&show(&ex.request)));
            if let Some(resp) = &ex.response {
                let head_len = match resp.raw_headers.len() {
                    0 => resp.raw.len(),
                    n => n,
                };
                let _ = writeln!(
                    r,
                    "response{n} headers:\n{}",
                    indent(&show(&resp.raw[..head_len.min(resp.raw.len())]))
                );
                const MAX_BODY: usize = 2000;
                let body = &resp.body[..resp.body.len().min(MAX_BODY)];
                let _ = writeln!(
                    r,
                    "response{n} body{}:\n{}",
                    if resp.body.len() > MAX_BODY {
                        format!(" (first {MAX_BODY} of {} bytes)", resp.body.len())
                    } else {
                        String::new()
                    },
                    indent(&show(body))
                );
            }
        }
        let output = self.nginx_output.clone().unwrap_or_else(|| {
            let root = &self.job.servroot;
            fs::read_to_string(root.join("logs/stderr.log")).unwrap_or_default()
                + &fs::read_to_string(root.join("logs/error.log")).unwrap_or_default()
        });
        let lines = without_debug(&output);
        const TAIL: usize = 40;
        let _ = writeln!(
            r,
            "nginx stderr + error.log{} (debug lines left out):",
            if lines.len() > TAIL {
                format!(", last {TAIL} lines")
            } else {
                String::new()
            }
        );
        for l in &lines[lines.len().saturating_sub(TAIL)..] {
            let _ = writeln!(r, "    {l}");
        }
        let _ = write!(
            r,
            "server root (nginx.conf, logs): {}",
            self.job.servroot.display()
        );
        r
    }
}

/// Log lines without `[debug]` entries (and their continuation lines, such as header dumps).
fn without_debug(log: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_debug = false;
    for line in log.lines() {
        // Entries start with "YYYY/MM/DD HH:MM:SS [level]".
        let b = line.as_bytes();
        let is_entry =
            b.len() > 20 && b[4] == b'/' && b[7] == b'/' && b[13] == b':' && b[20] == b'[';
        if is_entry {
            in_debug = line[20..].starts_with("[debug]");
        }
        if !in_debug {
            out.push(line);
        }
    }
    out
}

/// A log pattern: a substring or a regex.
enum Pattern {
    Sub(String),
    Re(Regex, String),
}

impl Pattern {
    fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Sub(s) => line.contains(s.as_str()),
            Pattern::Re(r, _) => r.is_match(line.as_bytes()),
        }
    }

    fn text(&self) -> String {
        match self {
            Pattern::Sub(s) => format!("{s:?}"),
            Pattern::Re(_, src) => src.clone(),
        }
    }
}

/// `$TEST_NGINX_*` interpolation.
#[derive(Default)]
struct Vars {
    fixed: BTreeMap<String, String>,
}

impl Vars {
    fn lookup(&mut self, name: &str) -> Result<String, String> {
        if let Some(v) = self.fixed.get(name) {
            return Ok(v.clone());
        }
        if name.starts_with("TEST_NGINX_RAND_PORT_") {
            let p = nginx::free_port()?.to_string();
            self.fixed.insert(name.to_string(), p.clone());
            return Ok(p);
        }
        std::env::var(name).map_err(|_| format!("No environment {name} defined (used as ${name})"))
    }

    fn expand_bytes(&mut self, text: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            if text[i..].starts_with(b"$TEST_NGINX_") {
                let start = i + 1;
                let mut end = start + "TEST_NGINX_".len();
                while end < text.len()
                    && (text[end].is_ascii_uppercase()
                        || text[end].is_ascii_digit()
                        || text[end] == b'_')
                {
                    end += 1;
                }
                let name = String::from_utf8_lossy(&text[start..end]).into_owned();
                out.extend_from_slice(self.lookup(&name)?.as_bytes());
                i = end;
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        Ok(out)
    }

    fn expand(&mut self, text: &str) -> Result<String, String> {
        Ok(String::from_utf8_lossy(&self.expand_bytes(text.as_bytes())?).into_owned())
    }

    /// Test::Nginx's `$ServerPort` and `$ServerPortForClient` (in some expected values).
    fn server_port(&mut self, text: &[u8]) -> Result<Vec<u8>, String> {
        let port = self.lookup("TEST_NGINX_SERVER_PORT")?;
        let re = Regex::new(r"\$ServerPort(?:ForClient)?\b").map_err(|e| e.to_string())?;
        Ok(re.replace_all(text, port.as_bytes()).into_owned())
    }

    /// `$ENV{NAME}` in an `eval` section, as Perl's %ENV holds it under prove: the preamble's
    /// assignments, the server port and root, the environment (no `TEST_NGINX_RAND_PORT_*`,
    /// which Test::Nginx only interpolates in sections).
    fn env(&self, name: &str) -> Result<String, String> {
        if let Some(v) = self
            .fixed
            .get(name)
            .filter(|_| !name.starts_with("TEST_NGINX_RAND_PORT_"))
        {
            return Ok(v.clone());
        }
        std::env::var(name)
            .map_err(|_| format!("$ENV{{{name}}} is not defined (under prove neither)"))
    }
}

/// Sections Test::Nginx does not interpolate would send or compare a `$TEST_NGINX_` literally:
/// refused, with where it works.
fn no_env(section: &str, text: &[u8]) -> Result<(), String> {
    let Some(p) = text.windows(12).position(|w| w == b"$TEST_NGINX_") else {
        return Ok(());
    };
    let name: String = text[p + 1..]
        .iter()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || **c == b'_')
        .map(|&c| c as char)
        .collect();
    Err(format!(
        "--- {section}: Test::Nginx does not interpolate ${name} here (only in the config \
         sections, user_files contents, a string response_body and grep_error_log_out); in an \
         eval section, $ENV{{{name}}} works with both runners"
    ))
}

/// `Name: value` lines; `!Name` means "absent" (value None).
fn parse_header_spec(spec: &str) -> Vec<(String, Option<String>)> {
    spec.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.strip_prefix('!') {
            Some(name) => (name.trim().to_string(), None),
            None => match l.split_once(':') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (l.to_string(), Some(String::new())),
            },
        })
        .collect()
}

fn string_of(section: &str, v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(String::from_utf8_lossy(&s).into_owned()),
        other => Err(format!("--- {section}: expected a string, got {other}")),
    }
}

/// A regex from a section value: a string is a pattern compiled with `flags` (as Test::Nginx's
/// `qr/$pat/s`); a qr// keeps its own flags.
fn regex_of(v: &Value, flags: &str) -> Result<Regex, String> {
    match v {
        Value::Str(s) => PerlRegex::new(String::from_utf8_lossy(s), flags).compile(),
        Value::Regex(r) => r.compile(),
        other => Err(format!("expected a pattern, got {other}")),
    }
}

fn pattern_text(v: &Value, flags: &str) -> String {
    match v {
        Value::Str(s) => format!("/{}/{flags}", show(s)),
        other => other.to_string(),
    }
}

fn parse_seconds(t: &str) -> Option<f64> {
    let t = t.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.trim().parse::<f64>().ok().map(|v| v / 1000.0);
    }
    t.strip_suffix('s').unwrap_or(t).trim().parse().ok()
}

fn exit_text(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit status".to_string(),
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    fs::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes as text with invisible characters escaped; newlines kept (shown as `\n` + newline).
fn show(b: &[u8]) -> String {
    let mut out = String::new();
    for ch in String::from_utf8_lossy(b).chars() {
        match ch {
            '\n' => out.push_str("\\n\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn indent(s: &str) -> String {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line diff of expected vs got (`-` expected only, `+` got only), escapes shown.
pub fn diff(want: &[u8], got: &[u8]) -> String {
    let a: Vec<String> = show(want).lines().map(str::to_string).collect();
    let b: Vec<String> = show(got).lines().map(str::to_string).collect();
    let mut out = String::new();
    if a.len() * b.len() > 4_000_000 {
        let _ = write!(
            out,
            "    (too long to diff: want {} bytes, got {} bytes)",
            want.len(),
            got.len()
        );
        return out;
    }
    // LCS table from the end.
    let mut t = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            t[i][j] = if a[i] == b[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "      {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || t[i + 1][j] >= t[i][j + 1]) {
            let _ = writeln!(out, "    - {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", b[j]);
            j += 1;
        }
    }
    if want.is_empty() {
        out.push_str("    (want an empty body)\n");
    }
    if got.is_empty() {
        out.push_str("    (got an empty body)\n");
    }
    let _ = write!(
        out,
        "    (- want, + got; want {} bytes, got {} bytes)",
        want.len(),
        got.len()
    );
    out
}

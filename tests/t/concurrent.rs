//! Project extension (not in Test::Nginx): a concurrent client and its checks.
//!
//! `--- concurrent_request` (a template, `{i}` = the request's index 0..N-1) is sent
//! `--- concurrent_requests: N` times over `--- concurrency: C` parallel connections (std
//! threads, each sending one request per connection with the runner's own client), then
//! `--- status_counts` checks the exact number of responses per status and
//! `--- distinct_header_values` how many different values a header took (e.g. `X-Pid >= 2`: both
//! workers answered). See t/README.md, "Project extensions".

use crate::http::{self, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One request of the concurrent phase: its bytes and whether it is a HEAD request.
pub struct Job {
    pub bytes: Vec<u8>,
    pub head: bool,
}

/// Sends every job, `concurrency` at a time; results in job order.
pub fn send_all(
    addr: SocketAddr,
    jobs: &[Job],
    concurrency: usize,
    timeout: Duration,
) -> Vec<Result<Response, String>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Response, String>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..concurrency.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = http::send(addr, &job.bytes, timeout, job.head);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not sent".to_string())))
        .collect()
}

/// The status of a result as counted by `--- status_counts`: the code, or `none` when no valid
/// response came back (connection refused, timeout, truncated response).
pub fn status_key(r: &Result<Response, String>) -> String {
    match r {
        Ok(resp) if resp.problems.is_empty() => resp
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "none".into()),
        _ => "none".to_string(),
    }
}

/// `--- status_counts`: `code: count` lines (`#` lines and blank lines skipped).
pub fn parse_status_counts(text: &str) -> Result<BTreeMap<String, usize>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("--- status_counts: bad line {line:?} (want e.g. '200: 100')");
        let (code, n) = line.split_once(':').ok_or_else(bad)?;
        let code = code.trim();
        if code != "none" && !(code.len() == 3 && code.bytes().all(|c| c.is_ascii_digit())) {
            return Err(bad());
        }
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if out.insert(code.to_string(), n).is_some() {
            return Err(format!("--- status_counts: status {code} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("--- status_counts is empty".to_string());
    }
    Ok(out)
}

/// Compares the statuses seen with the expected counts (statuses not listed must not occur).
/// Returns a failure message, or None.
pub fn check_status_counts(
    want: &BTreeMap<String, usize>,
    got: &BTreeMap<String, usize>,
) -> Option<String> {
    if want.iter().filter(|(_, &n)| n > 0).eq(got.iter()) {
        return None;
    }
    let show = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "--- status_counts: got {{{}}}, want {{{}}}",
        show(got),
        show(want)
    ))
}

/// How a count of distinct values is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ge,
    Le,
}

impl Cmp {
    fn holds(self, got: usize, want: usize) -> bool {
        match self {
            Cmp::Eq => got == want,
            Cmp::Ge => got >= want,
            Cmp::Le => got <= want,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ge => ">=",
            Cmp::Le => "<=",
        }
    }
}

/// `--- distinct_header_values`: `Header-Name >= N` (also `==`, `=`, `<=`) lines.
pub fn parse_distinct(text: &str) -> Result<Vec<(String, Cmp, usize)>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad =
            || format!("--- distinct_header_values: bad line {line:?} (want e.g. 'X-Pid >= 2')");
        let (name, cmp, rest) = [
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            ("==", Cmp::Eq),
            ("=", Cmp::Eq),
        ]
        .iter()
        .find_map(|(op, cmp)| line.split_once(op).map(|(a, b)| (a, *cmp, b)))
        .ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad());
        }
        let n: usize = rest.trim().parse().map_err(|_| bad())?;
        out.push((name.to_string(), cmp, n));
    }
    Ok(out)
}

/// Checks the number of distinct values of each header among the responses (an absent header
/// counts as no value). Returns failure messages.
pub fn check_distinct(
    specs: &[(String, Cmp, usize)],
    results: &[Result<Response, String>],
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, cmp, want) in specs {
        let values: BTreeSet<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok()?.header(name))
            .collect();
        if !cmp.holds(values.len(), *want) {
            let shown: Vec<&str> = values.iter().take(10).map(String::as_str).collect();
            out.push(format!(
                "--- distinct_header_values: header '{name}' took {} distinct value(s) {shown:?}, want {} {want}",
                values.len(),
                cmp.text()
            ));
        }
    }
    out
}

pub fn unit_tests() -> Vec<(&'static str, fn())> {
    vec![
        ("concurrent status_counts", test_status_counts),
        ("concurrent distinct_header_values", test_distinct),
    ]
}

fn test_status_counts() {
    let want = parse_status_counts("200: 100\n# c\n429: 300\n503: 0\n").unwrap();
    let mut got = BTreeMap::new();
    got.insert("200".to_string(), 100);
    got.insert("429".to_string(), 300);
    assert_eq!(check_status_counts(&want, &got), None);
    got.insert("500".to_string(), 1);
    let msg = check_status_counts(&want, &got).unwrap();
    assert!(msg.contains("got {200: 100, 429: 300, 500: 1}"), "{msg}");
    got.remove("500");
    got.insert("200".to_string(), 101);
    assert!(check_status_counts(&want, &got).is_some());
    assert!(parse_status_counts("200 100").is_err());
    assert!(parse_status_counts("2000: 1").is_err());
    assert!(parse_status_counts("200: 1\n200: 2").is_err());
    assert!(parse_status_counts("").is_err());
    assert!(parse_status_counts("none: 0").is_ok());
}

fn test_distinct() {
    let specs = parse_distinct("X-Pid >= 2\nX-A == 1\nX-B=0\nX-C <= 3").unwrap();
    assert_eq!(
        specs,
        vec![
            ("X-Pid".to_string(), Cmp::Ge, 2),
            ("X-A".to_string(), Cmp::Eq, 1),
            ("X-B".to_string(), Cmp::Eq, 0),
            ("X-C".to_string(), Cmp::Le, 3),
        ]
    );
    assert!(parse_distinct("X-Pid 2").is_err());
    assert!(parse_distinct("X Pid >= 2").is_err());
    let resp = |pid: &str| {
        Ok(http::parse_response(
            format!("HTTP/1.1 200 OK\r\nX-Pid: {pid}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
            false,
        ))
    };
    let results = vec![resp("1"), resp("1"), resp("2")];
    assert!(check_distinct(&specs[..1], &results).is_empty());
    let results = vec![resp("1"), resp("1")];
    let f = check_distinct(&specs[..1], &results);
    assert!(
        f[0].contains("took 1 distinct value(s) [\"1\"], want >= 2"),
        "{f:?}"
    );
}

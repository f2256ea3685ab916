//! Runner extensions that check logs and metrics as data, not as text: JSON-lines log files
//! (`json_log_*` sections), actions between requests (`after_request`), and Prometheus text
//! exposition (`prometheus`). See t/README.md, "Project extensions".

use crate::perl::PerlRegex;
use serde_json::Value as Json;
use std::fs;
use std::path::Path;

/// The lines of the JSON-lines files, each parsed; Err lists every problem (unreadable file,
/// a line that is not a JSON object).
pub fn read_json_lines(root: &Path, files: &[String]) -> Result<Vec<Json>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        let bytes = match fs::read(root.join(f)) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("cannot read {f}: {e}"));
                continue;
            }
        };
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            problems.push(format!("{f} does not end with a newline (a partial line)"));
        }
        for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            match serde_json::from_slice::<Json>(line) {
                Ok(v @ Json::Object(_)) => out.push(v),
                Ok(other) => {
                    problems.push(format!("{f} line {}: not a JSON object: {other}", i + 1))
                }
                Err(e) => problems.push(format!(
                    "{f} line {}: not valid JSON ({e}): {}",
                    i + 1,
                    String::from_utf8_lossy(line).escape_debug()
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The value at a dotted path (`auth.result`); `.` is the whole record.
fn at<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    if path == "." {
        return Some(v);
    }
    path.split('.').try_fold(v, |v, k| v.as_object()?.get(k))
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// One `json_log_match` line: `LINE PATH OP [ARG]`, LINE being `*` (every line), `any` (at
/// least one line) or a 1-based line number across the files. Returns the failures (empty when it holds).
pub fn check_match(lines: &[Json], spec: &str) -> Result<Vec<String>, String> {
    let bad = || {
        format!(
            "json_log_match: cannot parse {spec:?}: want 'LINE PATH == JSON', '!= JSON', \
             '=~ REGEX', 'absent', 'present' or 'is TYPE' (LINE: 1-based, * or any)"
        )
    };
    let mut words = spec.splitn(3, char::is_whitespace);
    let (Some(which), Some(path), Some(rest)) = (words.next(), words.next(), words.next()) else {
        return Err(bad());
    };
    let rest = rest.trim_start();
    let (op, arg) = match rest.split_once(char::is_whitespace) {
        Some((op, arg)) => (op, arg.trim()),
        None => (rest, ""),
    };
    let any = which == "any";
    let indexes: Vec<usize> = if which == "*" || any {
        (0..lines.len()).collect()
    } else {
        let n: usize = which.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        if n > lines.len() {
            return Ok(vec![format!(
                "json_log_match {spec:?}: there is no line {n} (the log has {} lines)",
                lines.len()
            )]);
        }
        vec![n - 1]
    };
    enum Op {
        Eq(Json),
        Ne(Json),
        Re(regex::bytes::Regex),
        Absent,
        Present,
        Is(String),
    }
    let op = match op {
        "==" | "!=" => {
            let v: Json = serde_json::from_str(arg).map_err(|e| {
                format!("json_log_match {spec:?}: the value is not JSON ({e}); strings need quotes")
            })?;
            if op == "==" {
                Op::Eq(v)
            } else {
                Op::Ne(v)
            }
        }
        "=~" => Op::Re(PerlRegex::new(arg, "").compile()?),
        "absent" if arg.is_empty() => Op::Absent,
        "present" if arg.is_empty() => Op::Present,
        "is" if !arg.is_empty() => Op::Is(arg.to_string()),
        _ => return Err(bad()),
    };
    let mut failures = Vec::new();
    let n_lines = indexes.len();
    for i in indexes {
        let got = at(&lines[i], path);
        let ok = match (&op, got) {
            (Op::Absent, g) => g.is_none(),
            (Op::Present, g) => g.is_some(),
            (_, None) => false,
            (Op::Eq(w), Some(g)) => g == w,
            (Op::Ne(w), Some(g)) => g != w,
            (Op::Re(r), Some(Json::String(s))) => r.is_match(s.as_bytes()),
            (Op::Re(r), Some(g)) => r.is_match(g.to_string().as_bytes()),
            (Op::Is(t), Some(g)) => type_name(g) == t,
        };
        if any {
            if ok {
                return Ok(Vec::new());
            }
            continue;
        }
        if !ok {
            failures.push(format!(
                "json_log_match {spec:?} fails on line {}: {path} is {}\n    line {}: {}",
                i + 1,
                got.map_or("absent".to_string(), |g| format!("{} {g}", type_name(g))),
                i + 1,
                lines[i]
            ));
        }
    }
    if any {
        failures.push(format!(
            "json_log_match {spec:?}: no line matches (of {n_lines})"
        ));
    }
    Ok(failures)
}

/// One step of `after_request`: `N ACTION ARGS`.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// `rename FROM TO` (paths relative to the server root).
    Rename(String, String),
    /// `signal NAME` to the nginx master (HUP, USR1, ...).
    Signal(i32, String),
    /// `sleep SECONDS`.
    Sleep(f64),
    /// `json_lines FILE N`: the file has exactly N lines now, each a JSON object.
    JsonLines(String, usize),
}

/// `after_request` lines: `(request number, action)`.
pub fn parse_actions(text: &str) -> Result<Vec<(usize, Action)>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let bad = || {
            format!(
                "after_request: cannot parse {line:?}: want 'N rename FROM TO', 'N signal HUP|USR1|...', \
                 'N sleep SECONDS' or 'N json_lines FILE COUNT' (N: 1-based request number)"
            )
        };
        let n: usize = w[0].parse().map_err(|_| bad())?;
        let action = match w[1..] {
            ["rename", from, to] => Action::Rename(from.into(), to.into()),
            ["signal", name] => {
                let sig = match name.trim_start_matches("SIG") {
                    "HUP" => libc::SIGHUP,
                    "USR1" => libc::SIGUSR1,
                    "USR2" => libc::SIGUSR2,
                    "WINCH" => libc::SIGWINCH,
                    "TERM" => libc::SIGTERM,
                    "QUIT" => libc::SIGQUIT,
                    _ => return Err(bad()),
                };
                Action::Signal(sig, name.to_string())
            }
            ["sleep", s] => Action::Sleep(s.parse().map_err(|_| bad())?),
            ["json_lines", f, c] => Action::JsonLines(f.into(), c.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        if n == 0 {
            return Err(bad());
        }
        out.push((n, action));
    }
    Ok(out)
}

/// A metric family's name and type, as the parser reports them.
pub type FamilyType = (String, String);

/// A sample of a Prometheus exposition.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses a Prometheus text exposition with the reference client library's parser
/// (`prometheus_client.parser`, Debian package python3-prometheus-client); returns the
/// samples and the `(family, type)` pairs.
pub fn parse_prometheus(body: &[u8]) -> Result<(Vec<Sample>, Vec<FamilyType>), String> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
fams = []
for f in text_string_to_metric_families(sys.stdin.read()):
    fams.append({"name": f.name, "type": f.type,
                 "samples": [{"name": s.name, "labels": sorted(s.labels.items()), "value": s.value}
                             for s in f.samples]})
print(json.dumps(fams))
"#;
    let python = std::env::var("TEST_NGINX_PYTHON").unwrap_or_else(|_| {
        if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".into()
        } else {
            "python3".into()
        }
    });
    use std::io::Write;
    let mut child = std::process::Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("prometheus: cannot run {python}: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(body)
        .map_err(|e| format!("prometheus: writing to {python}: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("prometheus: {python}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        return Err(format!(
            "prometheus: {python} lacks prometheus_client (apt-get install python3-prometheus-client, \
             or set TEST_NGINX_PYTHON)"
        ));
    }
    if !out.status.success() {
        return Err(format!(
            "prometheus: the body does not parse as Prometheus text format:\n    {}",
            stderr.trim().lines().last().unwrap_or_default()
        ));
    }
    let fams: Json = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    let mut types = Vec::new();
    for f in fams.as_array().into_iter().flatten() {
        types.push((
            f["name"].as_str().unwrap_or_default().to_string(),
            f["type"].as_str().unwrap_or_default().to_string(),
        ));
        for s in f["samples"].as_array().into_iter().flatten() {
            samples.push(Sample {
                name: s["name"].as_str().unwrap_or_default().to_string(),
                labels: s["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or_default().to_string(),
                            p[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                value: s["value"].as_f64().unwrap_or(f64::NAN),
            });
        }
    }
    Ok((samples, types))
}

/// `name{k="v",...}` (labels optional) as (name, sorted labels).
pub fn parse_series(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let bad =
        || format!("prometheus: cannot parse the series {s:?} (want name{{label=\"value\",...}})");
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => return Ok((s.to_string(), Vec::new())),
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let mut k = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == '}' {
                break;
            }
            k.push(c);
            chars.next();
        }
        match chars.next() {
            Some('}') if k.trim().is_empty() => break,
            Some('=') => {}
            _ => return Err(bad()),
        }
        if chars.next() != Some('"') {
            return Err(bad());
        }
        let mut v = String::new();
        loop {
            match chars.next().ok_or_else(bad)? {
                '"' => break,
                '\\' => match chars.next().ok_or_else(bad)? {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                c => v.push(c),
            }
        }
        labels.push((k.trim().to_string(), v));
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            _ => return Err(bad()),
        }
    }
    if chars.next().is_some() {
        return Err(bad());
    }
    labels.sort();
    Ok((name.to_string(), labels))
}

/// Checks a `prometheus` section against parsed samples. Lines:
/// `SERIES VALUE` (exactly one sample with exactly these labels, of this value; VALUE may be
/// a range `A..B`), `SERIES absent`, `sum NAME VALUE` (the sum over all samples named NAME),
/// `type FAMILY TYPE`, `label_values !~ REGEX` (no label value matches).
pub fn check_prometheus(
    samples: &[Sample],
    types: &[FamilyType],
    spec: &str,
) -> Result<Vec<String>, String> {
    let mut failures = Vec::new();
    for s in samples {
        let dups = samples
            .iter()
            .filter(|o| o.name == s.name && o.labels == s.labels)
            .count();
        if dups > 1 {
            let msg = format!(
                "prometheus: the series {} {:?} appears {dups} times",
                s.name, s.labels
            );
            if !failures.contains(&msg) {
                failures.push(msg);
            }
        }
    }
    for line in spec.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("type ") {
            let mut w = rest.split_whitespace();
            let (Some(fam), Some(t), None) = (w.next(), w.next(), w.next()) else {
                return Err(format!(
                    "prometheus: cannot parse {line:?} (want 'type FAMILY TYPE')"
                ));
            };
            // The client library names counter families without their `_total` suffix.
            let got = types
                .iter()
                .find(|(n, _)| n == fam || Some(n.as_str()) == fam.strip_suffix("_total"))
                .map(|(_, t)| t.as_str());
            if got != Some(t) {
                failures.push(format!("prometheus {line:?}: the family's type is {got:?}"));
            }
            continue;
        }
        if let Some(re) = line.strip_prefix("label_values !~ ") {
            let re = PerlRegex::new(re.trim(), "").compile()?;
            for s in samples {
                for (k, v) in &s.labels {
                    if re.is_match(v.as_bytes()) {
                        failures.push(format!(
                            "prometheus {line:?}: {}{{{k}={v:?}}} has a label value that matches",
                            s.name
                        ));
                    }
                }
            }
            continue;
        }
        let (series, want) = line
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| format!("prometheus: cannot parse {line:?} (want 'SERIES VALUE')"))?;
        let series = series.trim();
        if want == "absent" {
            let (name, labels) = parse_series(series)?;
            if samples.iter().any(|s| s.name == name && s.labels == labels) {
                failures.push(format!("prometheus {line:?}: the series is present"));
            }
            continue;
        }
        // VALUE is a number or an inclusive range `A..B` (for counts that depend on which
        // worker took a request).
        let (lo, hi) = match want.split_once("..") {
            Some((a, b)) => (a.parse::<f64>(), b.parse::<f64>()),
            None => (want.parse(), want.parse()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            return Err(format!(
                "prometheus: {line:?}: the value is not a number or a range A..B"
            ));
        };
        if let Some(name) = series.strip_prefix("sum ") {
            let name = name.trim();
            let total: f64 = samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| s.value)
                .sum();
            if !(lo..=hi).contains(&total) {
                failures.push(format!("prometheus {line:?}: the sum is {total}"));
            }
            continue;
        }
        let (name, labels) = parse_series(series)?;
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == name && s.labels == labels)
            .collect();
        match found.as_slice() {
            [s] if (lo..=hi).contains(&s.value) => {}
            [s] => failures.push(format!("prometheus {line:?}: the value is {}", s.value)),
            _ => {
                let similar: Vec<String> = samples
                    .iter()
                    .filter(|s| s.name == name)
                    .map(|s| format!("{:?} {}", s.labels, s.value))
                    .collect();
                failures.push(format!(
                    "prometheus {line:?}: no such series; samples of {name}: {}",
                    if similar.is_empty() {
                        "none".to_string()
                    } else {
                        similar.join("; ")
                    }
                ));
            }
        }
    }
    Ok(failures)
}

pub fn unit_tests() -> Vec<(&'static str, fn())> {
    vec![
        ("data: json_log_match operators", || {
            let lines: Vec<Json> = vec![
                serde_json::json!({"status": 200, "auth": {"result": "valid"}, "p": "/a"}),
                serde_json::json!({"status": 401}),
            ];
            let ok = |s: &str| check_match(&lines, s).unwrap().is_empty();
            assert!(ok("1 status == 200"));
            assert!(!ok("1 status == \"200\""));
            assert!(ok("1 auth.result == \"valid\""));
            assert!(ok("* status is number"));
            assert!(ok("2 auth absent"));
            assert!(!ok("* auth present"));
            assert!(ok("any auth present"));
            assert!(!ok("any status == 500"));
            assert!(ok("1 p =~ ^/a$"));
            assert!(ok("2 status != 200"));
            assert!(!ok("3 status == 200"));
            assert!(check_match(&lines, "1 status ==").is_err());
            assert!(check_match(&lines, "0 status absent").is_err());
        }),
        ("data: after_request actions", || {
            let a = parse_actions(
                "1 rename logs/a logs/b\n# c\n2 signal USR1\n2 sleep 0.5\n3 json_lines logs/a 2",
            )
            .unwrap();
            assert_eq!(a.len(), 4);
            assert_eq!(a[3], (3, Action::JsonLines("logs/a".into(), 2)));
            assert!(parse_actions("1 signal FOO").is_err());
            assert!(parse_actions("x sleep 1").is_err());
        }),
        ("data: prometheus series", || {
            let (n, l) = parse_series(r#"m_total{b="x\"y",a=""}"#).unwrap();
            assert_eq!(n, "m_total");
            assert_eq!(
                l,
                vec![("a".into(), "".into()), ("b".into(), "x\"y".into())]
            );
            assert_eq!(parse_series("m").unwrap().1, vec![]);
            assert!(parse_series("m{a=b}").is_err());
        }),
    ]
}

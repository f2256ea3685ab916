//! Project extension: running nginx under valgrind memcheck (`TEST_NGINX_USE_VALGRIND=1`, the
//! variable Test::Nginx uses for the same purpose), and reading valgrind's reports after a
//! block (see t/README.md, "Memcheck").
//!
//! nginx runs as `valgrind --tool=memcheck ... nginx -p ...`; with the master process on,
//! valgrind follows `fork()` without `exec()`, so the master and every worker are checked, each
//! writing `logs/valgrind-<pid>.log`. After the block, every report in those files that
//! valgrind counted as an error (invalid reads and writes, uses of uninitialised values, bad
//! frees, overlapping copies, and `definitely lost` blocks when the process exited) fails the
//! block, whether its stack is in the module or in nginx: memory corrupted by the module can
//! well be noticed by nginx's code. nginx's own one-shot allocations that are never freed are
//! suppressed in `t/valgrind.supp`, each with the reason.

use std::fs;
use std::path::{Path, PathBuf};

/// Whether nginx runs under valgrind (`TEST_NGINX_USE_VALGRIND` set, not empty and not `0`).
pub fn enabled() -> bool {
    std::env::var("TEST_NGINX_USE_VALGRIND").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// How much slower everything is: timeouts (startup, shutdown, reload, requests, log waits)
/// are multiplied by this. `TEST_NGINX_VALGRIND_SLOWDOWN` overrides the default of 10.
pub fn slowdown() -> f64 {
    if !enabled() {
        return 1.0;
    }
    std::env::var("TEST_NGINX_VALGRIND_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s >= 1.0)
        .unwrap_or(10.0)
}

/// The suppressions file: `TEST_NGINX_VALGRIND_SUPP`, else `t/valgrind.supp` of the package.
fn suppressions() -> PathBuf {
    if let Some(p) = std::env::var_os("TEST_NGINX_VALGRIND_SUPP").filter(|p| !p.is_empty()) {
        return crate::nginx::absolute(Path::new(&p));
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.join("t/valgrind.supp")
}

/// The command line that precedes nginx's: valgrind and its options. Extra options may be
/// given in `TEST_NGINX_VALGRIND_OPTS` (space-separated).
pub fn wrapper(servroot: &Path) -> Vec<String> {
    let mut v = vec![
        "valgrind".to_string(),
        "--tool=memcheck".into(),
        // nginx does not exec (except for a binary upgrade), but follow it if it does.
        "--trace-children=yes".into(),
        // The workers are forks of the master: check them too, each in its own log file.
        "--child-silent-after-fork=no".into(),
        format!("--log-file={}/logs/valgrind-%p.log", servroot.display()),
        format!("--suppressions={}", suppressions().display()),
        "--leak-check=full".into(),
        "--show-leak-kinds=definite".into(),
        "--errors-for-leak-kinds=definite".into(),
        "--track-origins=yes".into(),
        "--num-callers=40".into(),
        // A ready-made suppression after each report, should one turn out to be nginx's own.
        "--gen-suppressions=all".into(),
    ];
    if let Ok(extra) = std::env::var("TEST_NGINX_VALGRIND_OPTS") {
        v.extend(extra.split_whitespace().map(String::from));
    }
    v
}

/// What the valgrind logs of one server root say.
#[derive(Debug, Default)]
pub struct Report {
    /// Sum of the `ERROR SUMMARY: N errors` of every process that reached its end.
    pub errors: usize,
    /// The error reports (with their stacks), each prefixed by its log file.
    pub records: Vec<String>,
    /// Log files read.
    pub files: usize,
}

/// Reads every `logs/valgrind-*.log` under `servroot`.
pub fn read(servroot: &Path) -> Report {
    let mut report = Report::default();
    let Ok(dir) = fs::read_dir(servroot.join("logs")) else {
        return report;
    };
    let mut files: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("valgrind-") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    for f in files {
        report.files += 1;
        let text = String::from_utf8_lossy(&fs::read(&f).unwrap_or_default()).into_owned();
        let (errors, records) = parse(&text);
        report.errors += errors;
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        report
            .records
            .extend(records.into_iter().map(|r| format!("{name}:\n{r}")));
    }
    report
}

/// One log: the `ERROR SUMMARY` count and the error reports. A report is a paragraph of
/// `==PID==` lines that has a stack (`at 0x...`), together with the suppression valgrind
/// generated for it; the program's own lines (`Memcheck, a memory error detector`, the
/// command, heap and leak summaries) are left out.
pub fn parse(text: &str) -> (usize, Vec<String>) {
    let mut errors = 0;
    let mut records = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut in_supp = false;
    let flush = |current: &mut Vec<&str>, records: &mut Vec<String>| {
        let is_error = current.iter().any(|l| l.contains("   at 0x"))
            && !current
                .iter()
                .any(|l| l.contains("still reachable") || l.contains("possibly lost"));
        if is_error {
            records.push(current.join("\n"));
        }
        current.clear();
    };
    for line in text.lines() {
        if in_supp {
            current.push(line);
            if line.starts_with('}') {
                in_supp = false;
                flush(&mut current, &mut records);
            }
            continue;
        }
        if line.starts_with('{') {
            in_supp = true;
            current.push(line);
            continue;
        }
        let Some(body) = strip_pid(line) else {
            continue;
        };
        if let Some(rest) = body.trim().strip_prefix("ERROR SUMMARY: ") {
            errors += rest
                .split_whitespace()
                .next()
                .and_then(|n| n.replace(',', "").parse::<usize>().ok())
                .unwrap_or(0);
            continue;
        }
        if body.trim().is_empty() {
            // A report is followed by its suppression (if generated), which flushes it.
            if !current.iter().any(|l| l.contains("   at 0x")) {
                current.clear();
            }
            continue;
        }
        if !body.starts_with(' ') && current.iter().any(|l| l.contains("   at 0x")) {
            flush(&mut current, &mut records);
        }
        current.push(line);
    }
    flush(&mut current, &mut records);
    (errors, records)
}

/// `==123== text` -> ` text`; None for lines without the prefix.
fn strip_pid(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("==")?;
    let end = rest.find("==")?;
    rest[..end]
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| &rest[end + 2..])
}

/// Whether a report's stack has a frame in the module (its `.so`, or a Rust symbol of its
/// crates), for the summary line.
pub fn in_module(record: &str) -> bool {
    record.lines().any(|l| {
        (l.contains("   at 0x") || l.contains("   by 0x"))
            && (l.contains("ngx_http_gateway_module")
                || l.contains("gateway_core::")
                || l.contains("ngx_gateway::"))
    })
}

pub fn unit_tests() -> Vec<(&'static str, fn())> {
    vec![
        ("valgrind: a log with an invalid read and a leak", || {
            let log = "\
==10== Memcheck, a memory error detector
==10== Command: nginx -p /x/
==10== 
==10== Invalid read of size 4
==10==    at 0x1234: gateway_core::f (in /t/libngx_http_gateway_module.so)
==10==    by 0x5678: main (nginx.c:1)
==10==  Address 0x0 is not stack'd, malloc'd or (recently) free'd
==10== 
{
   <insert_a_suppression_name_here>
   Memcheck:Addr4
   fun:f
}
==10== 
==10== HEAP SUMMARY:
==10==     in use at exit: 10 bytes in 1 blocks
==10== 
==10== 16 bytes in 1 blocks are definitely lost in loss record 1 of 1
==10==    at 0x1: malloc (vgpreload)
==10==    by 0x2: ngx_alloc (ngx_alloc.c:22)
==10== 
{
   <insert_a_suppression_name_here>
   Memcheck:Leak
}
==10== LEAK SUMMARY:
==10==    definitely lost: 16 bytes in 1 blocks
==10== 
==10== ERROR SUMMARY: 2 errors from 2 contexts (suppressed: 3 from 3)
";
            let (n, recs) = parse(log);
            assert_eq!(n, 2);
            assert_eq!(recs.len(), 2, "{recs:#?}");
            assert!(recs[0].contains("Invalid read") && recs[0].contains("Memcheck:Addr4"));
            assert!(in_module(&recs[0]));
            assert!(recs[1].contains("definitely lost"));
            assert!(!in_module(&recs[1]));
        }),
        ("valgrind: a clean log", || {
            let log = "==7== Memcheck\n==7== \n==7== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 12 from 5)\n";
            let (n, recs) = parse(log);
            assert_eq!((n, recs.len()), (0, 0));
        }),
        ("valgrind: the pid prefix", || {
            assert_eq!(strip_pid("==12== x"), Some(" x"));
            assert_eq!(strip_pid("== x"), None);
            assert_eq!(strip_pid("{"), None);
        }),
    ]
}

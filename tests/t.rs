//! Test::Nginx-style runner for the `.t` files under `t/` (see t/README.md).
//!
//! Every `=== TEST` block of every file is one test: it gets its own server root and port, a
//! freshly started nginx (the binary from `TEST_NGINX_BINARY`), its requests, and checks of the
//! responses and of error.log. Blocks in `tests/selftest/*.t` are expected to fail: they prove
//! that the runner catches wrong statuses, bodies, headers, log lines and so on.
//!
//!     cargo test --release --test t                     # everything
//!     cargo test --release --test t -- 010-gateway      # blocks whose name contains that
//!     TEST_FILES='t/01*.t' cargo test --release --test t

#[path = "t/block.rs"]
mod block;
#[path = "t/concurrent.rs"]
mod concurrent;
#[path = "t/data.rs"]
mod data;
#[path = "t/http.rs"]
mod http;
#[path = "t/nginx.rs"]
mod nginx;
#[path = "t/parse.rs"]
mod parse;
#[path = "t/perl.rs"]
mod perl;
#[path = "t/valgrind.rs"]
mod valgrind;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn main() {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() && std::env::var_os("RUST_TEST_THREADS").is_none() {
        // Each block runs an nginx with its workers: two at a time suits small machines.
        args.test_threads = Some(2);
    }
    let manifest = manifest_dir();
    let mut trials = Vec::new();
    for (name, f) in perl::unit_tests()
        .into_iter()
        .chain(parse::unit_tests())
        .chain(http::unit_tests())
        .chain(concurrent::unit_tests())
        .chain(data::unit_tests())
        .chain(valgrind::unit_tests())
    {
        trials.push(Trial::test(format!("runner-unit :: {name}"), move || {
            f();
            Ok(())
        }));
    }
    let servroot_base = target_dir(&manifest).join("t-servroot");
    match test_files(&manifest) {
        Ok(files) => {
            for path in files {
                trials.extend(file_trials(&manifest, &path, &servroot_base, !args.list));
            }
        }
        Err(e) => trials.push(Trial::test("TEST_FILES", move || Err(e.into()))),
    }
    libtest_mimic::run(&args, trials).exit();
}

/// The package directory: `t/` and `tests/selftest/` live there.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Cargo's target directory, found from this executable (`<target>/<profile>/deps/t-*`).
fn target_dir(manifest: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return nginx::absolute(Path::new(&dir));
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| manifest.join("target"))
}

/// The `.t` files to run: `TEST_FILES` (space-separated paths, directories or globs), else
/// every `.t` under `t/` and `tests/selftest/`.
fn test_files(manifest: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    match std::env::var("TEST_FILES")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(list) => {
            for pat in list.split_whitespace() {
                let base = if Path::new(pat).is_absolute() {
                    PathBuf::from("/")
                } else {
                    manifest.to_path_buf()
                };
                let found = glob(&base, pat);
                if found.is_empty() {
                    return Err(format!(
                        "TEST_FILES: nothing matches {pat:?} (relative to {})",
                        manifest.display()
                    ));
                }
                for f in found {
                    if f.is_dir() {
                        collect_t(&f, &mut files);
                    } else {
                        files.push(f);
                    }
                }
            }
        }
        None => {
            collect_t(&manifest.join("t"), &mut files);
            collect_t(&manifest.join("tests/selftest"), &mut files);
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

/// All `*.t` files under `dir`, recursively, sorted.
fn collect_t(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_t(&p, out);
        } else if p.extension().is_some_and(|e| e == "t") {
            out.push(p);
        }
    }
}

/// Expands a glob with `*`, `?` and `**` (any depth) relative to `base`.
fn glob(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![base.to_path_buf()];
    for comp in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for dir in &current {
            if comp == "**" {
                let mut stack = vec![dir.clone()];
                while let Some(d) = stack.pop() {
                    next.push(d.clone());
                    if let Ok(rd) = std::fs::read_dir(&d) {
                        stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                    }
                }
            } else if comp.contains(['*', '?']) {
                if let Ok(rd) = std::fs::read_dir(dir) {
                    for e in rd.flatten() {
                        if wildcard(comp.as_bytes(), e.file_name().to_string_lossy().as_bytes()) {
                            next.push(e.path());
                        }
                    }
                }
            } else {
                let p = dir.join(comp);
                if p.exists() {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    current.sort();
    current.dedup();
    current
}

fn wildcard(pat: &[u8], name: &[u8]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pat[1..], name) || (!name.is_empty() && wildcard(pat, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pat[1..], &name[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&pat[1..], &name[1..]),
        _ => false,
    }
}

/// The trials of one file.
fn file_trials(manifest: &Path, path: &Path, servroot_base: &Path, verbose: bool) -> Vec<Trial> {
    let rel = path
        .strip_prefix(manifest)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let (display, selftest) = match rel.strip_prefix("tests/") {
        Some(r) if r.starts_with("selftest/") => (r.to_string(), true),
        _ => (rel.clone(), false),
    };
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            let msg = format!("cannot read {}: {e}", path.display());
            return vec![Trial::test(display, move || Err(msg.into()))];
        }
    };
    let mut file = parse::parse_file(&text);
    if verbose {
        for w in &file.warnings {
            eprintln!("warning: {display}: {w}");
        }
    }
    // Test::Base: ONLY keeps just that block; LAST drops the blocks after it.
    if let Some(only) = file.blocks.iter().position(|b| b.has("ONLY")) {
        if verbose {
            eprintln!(
                "warning: {display}: --- ONLY found: running only {:?}",
                file.blocks[only].name
            );
        }
        file.blocks = vec![file.blocks.swap_remove(only)];
    } else if let Some(last) = file.blocks.iter().position(|b| b.has("LAST")) {
        file.blocks.truncate(last + 1);
    }
    let file = Arc::new(file);
    let dir_name: String = display
        .trim_end_matches(".t")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (0..file.blocks.len())
        .map(|i| {
            let file = Arc::clone(&file);
            let b = &file.blocks[i];
            let name = format!("{display} :: {}", b.name);
            let skip = b.has("SKIP");
            let servroot = servroot_base.join(format!("{dir_name}-{}", b.index));
            let display = display.clone();
            Trial::ignorable_test(name, move || {
                let block = &file.blocks[i];
                if let Some(reason) = block::skip_reason(block)? {
                    return Ok(Completion::ignored_with(reason));
                }
                let job = block::Job {
                    file: &file,
                    display: &display,
                    block,
                    servroot,
                };
                let result = block::run(&job);
                if selftest {
                    selftest_verdict(block, result)?;
                } else {
                    result?;
                }
                Ok(Completion::Completed)
            })
            .with_ignored_flag(skip)
        })
        .collect()
}

/// A selftest block passes when it fails, for the reasons listed in `--- selftest_failure`
/// (substrings of the failure report, one per line).
fn selftest_verdict(block: &parse::Block, result: Result<(), String>) -> Result<(), Failed> {
    let report = match result {
        Ok(()) => {
            return Err("selftest: this block passed, but the runner should have failed it".into())
        }
        Err(r) => r,
    };
    let wanted = block
        .get("selftest_failure")
        .map(|s| s.text.clone())
        .unwrap_or_default();
    let wanted: Vec<&str> = wanted
        .lines()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if wanted.is_empty() {
        return Err(format!(
            "selftest: the block needs a --- selftest_failure section saying why it must fail; it failed with:\n{report}"
        )
        .into());
    }
    for w in wanted {
        if !report.contains(w) {
            return Err(format!(
                "selftest: the block failed, but not for the expected reason ({w:?} is missing):\n{report}"
            )
            .into());
        }
    }
    Ok(())
}

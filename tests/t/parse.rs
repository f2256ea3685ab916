//! Parsing of `.t` files: the Perl preamble before `__DATA__` and the Test::Base blocks after it.
//!
//! Block and section syntax follows Test::Base as used by Test::Nginx:
//! - a block starts at a line beginning with `===`; the rest of that line is its name;
//! - a section starts at a line `--- name [filters]`, or `--- name [filters]: value` (inline);
//! - every value goes through Test::Base's default filters `norm` (CRLF/CR to LF) and `trim`
//!   (leading blank lines and whitespace after the last newline removed, so a multi-line value
//!   keeps its final "\n" while an inline value has none), then the section's own filters
//!   (`eval`, `chomp`, ...) in order, when the block runs.

use crate::perl::{self, Value};
use std::collections::BTreeMap;

/// Settings from the preamble (`workers(2);`, `log_level('info');`, ...).
#[derive(Clone, Debug)]
pub struct Preamble {
    pub workers: u32,
    pub master: bool,
    pub log_level: String,
    pub no_root_location: bool,
    pub worker_connections: u32,
    /// Default per-request timeout in seconds (`timeout(5);`).
    pub timeout: Option<f64>,
    /// `env_to_nginx('FOO', 'BAR=1')`: `env` directives in the main context.
    pub env_to_nginx: Vec<String>,
    /// `$ENV{TEST_NGINX_X} ||= ...;` assignments, used when interpolating `$TEST_NGINX_X`.
    pub env: BTreeMap<String, String>,
    /// `check_accum_error_log()`: every log check reads error.log from its start.
    pub accum_error_log: bool,
    /// `use ProjectOnly;` (after `use lib 't/lib';`): under prove, blocks with
    /// `--- project_only` are skipped (t/lib/ProjectOnly.pm).
    pub project_only_hook: bool,
    /// `use lib 't/lib';` came before (where prove finds ProjectOnly.pm).
    t_lib: bool,
}

impl Default for Preamble {
    fn default() -> Self {
        Preamble {
            workers: 1,
            // Test::Nginx: `master_process off` unless TEST_NGINX_MASTER_PROCESS says otherwise.
            master: std::env::var("TEST_NGINX_MASTER_PROCESS")
                .is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("off"))),
            log_level: std::env::var("TEST_NGINX_LOG_LEVEL").unwrap_or_else(|_| "debug".into()),
            no_root_location: false,
            worker_connections: 1024,
            timeout: None,
            env_to_nginx: Vec::new(),
            env: BTreeMap::new(),
            accum_error_log: std::env::var("TEST_NGINX_CHECK_ACCUM_ERR_LOG")
                .is_ok_and(|v| !v.is_empty() && v != "0"),
            project_only_hook: false,
            t_lib: false,
        }
    }
}

/// One section of a block after the default filters, with its own filters still to apply.
#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub filters: Vec<String>,
    pub text: String,
}

impl Section {
    /// Applies the section's filters (`eval`, `chomp`, `chop`, `trim`, `norm`) in order.
    pub fn value(&self) -> Result<Value, String> {
        self.value_with(None)
    }

    /// `value`, with `$ENV{NAME}` in `eval` read through `env`.
    pub fn value_with(&self, env: Option<perl::EnvLookup>) -> Result<Value, String> {
        let mut v = Value::text(&self.text);
        for f in &self.filters {
            v = match (f.as_str(), v) {
                ("eval", Value::Str(s)) => perl::eval_with(&String::from_utf8_lossy(&s), env)
                    .map_err(|e| format!("--- {} eval: {e}", self.name))?,
                ("chomp", Value::Str(mut s)) => {
                    if s.last() == Some(&b'\n') {
                        s.pop();
                    }
                    Value::Str(s)
                }
                ("chop", Value::Str(mut s)) => {
                    s.pop();
                    Value::Str(s)
                }
                ("trim", Value::Str(s)) => Value::text(&trim(&String::from_utf8_lossy(&s))),
                ("norm", Value::Str(s)) => Value::text(&norm(&String::from_utf8_lossy(&s))),
                ("eval" | "chomp" | "chop" | "trim" | "norm", other) => {
                    return Err(format!(
                        "--- {}: filter '{f}' cannot apply to the non-string value {other}",
                        self.name
                    ))
                }
                (other, _) => {
                    return Err(format!(
                        "--- {}: filter '{other}' is not supported by the runner (eval, chomp, chop, trim, norm are)",
                        self.name
                    ))
                }
            };
        }
        Ok(v)
    }
}

/// One `=== TEST n: name` block.
#[derive(Clone, Debug)]
pub struct Block {
    pub name: String,
    /// 1-based position of the block in its file.
    pub index: usize,
    /// 1-based line of the `===` line.
    pub line: usize,
    pub sections: Vec<Section>,
    /// A problem found while parsing; the block fails with it when run.
    pub error: Option<String>,
}

impl Block {
    /// The section of that name (the last one if repeated, as in Test::Base).
    pub fn get(&self, name: &str) -> Option<&Section> {
        self.sections.iter().rev().find(|s| s.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// A parsed `.t` file.
#[derive(Clone, Debug)]
pub struct TestFile {
    pub preamble: Preamble,
    pub blocks: Vec<Block>,
    pub warnings: Vec<String>,
}

/// Parses a whole `.t` file.
pub fn parse_file(text: &str) -> TestFile {
    let mut warnings = Vec::new();
    let (pre, data, data_line) = match find_data_marker(text) {
        Some((pre_end, data_start, line)) => (&text[..pre_end], &text[data_start..], line),
        None => {
            warnings.push("no __DATA__ line: no test blocks".to_string());
            (text, "", 0)
        }
    };
    let preamble = parse_preamble(pre, &mut warnings);
    let blocks = parse_blocks(data, data_line);
    TestFile {
        preamble,
        blocks,
        warnings,
    }
}

/// Finds the `__DATA__` (or `__END__`) line: returns the preamble end, the data start and
/// the 1-based line number of the first data line.
fn find_data_marker(text: &str) -> Option<(usize, usize, usize)> {
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let t = line.trim_end();
        if t == "__DATA__" || t == "__END__" {
            return Some((offset, offset + line.len(), n + 2));
        }
        offset += line.len();
    }
    None
}

/// Test::Base `norm`: CRLF and lone CR become LF.
pub fn norm(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Test::Base `trim`: drops leading blank lines and all whitespace after the last newline.
pub fn trim(s: &str) -> String {
    let mut start = 0;
    // \A([ \t]*\n)+
    loop {
        let rest = &s[start..];
        let blank = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        if rest[blank..].starts_with('\n') {
            start += blank + 1;
        } else {
            break;
        }
    }
    let s = &s[start..];
    // (?<=\n)\s*\z : cut after the first newline from which only whitespace remains.
    let trimmed_len = s.trim_end().len();
    match s[trimmed_len..].find('\n') {
        Some(p) => s[..trimmed_len + p + 1].to_string(),
        None => s.to_string(),
    }
}

fn parse_blocks(data: &str, first_line: usize) -> Vec<Block> {
    // Split into hunks at lines starting with "===".
    let mut hunks: Vec<(usize, Vec<&str>)> = Vec::new();
    for (n, line) in data.split_inclusive('\n').enumerate() {
        if line.starts_with("===") {
            hunks.push((first_line + n, vec![line]));
        } else if let Some((_, lines)) = hunks.last_mut() {
            lines.push(line);
        }
    }
    hunks
        .into_iter()
        .enumerate()
        .map(|(i, (line, lines))| parse_block(i + 1, line, &lines))
        .collect()
}

fn parse_block(index: usize, line: usize, lines: &[&str]) -> Block {
    let name = lines[0].trim_start_matches('=').trim().to_string();
    let mut block = Block {
        name: if name.is_empty() {
            format!("block {index}")
        } else {
            name
        },
        index,
        line,
        sections: Vec::new(),
        error: None,
    };
    // (name, filter/inline text, body lines)
    let mut raw: Vec<(String, String, String)> = Vec::new();
    for l in &lines[1..] {
        if let Some((name, rest)) = section_header(l) {
            raw.push((name, rest, String::new()));
        } else if let Some(last) = raw.last_mut() {
            last.2.push_str(l);
        }
    }
    for (name, rest, body) in raw {
        let (filters, text) = if let Some(colon) = inline_colon(&rest) {
            if body.trim().is_empty() {
                let value = rest[colon..].trim_start_matches(':').trim().to_string();
                (rest[..colon].trim().to_string(), value)
            } else {
                block.error = Some(format!(
                    "extra lines are not allowed after the inline section '--- {name}: ...'"
                ));
                (rest[..colon].trim().to_string(), String::new())
            }
        } else {
            (rest.trim().to_string(), body)
        };
        if block.sections.iter().any(|s| s.name == name) && block.error.is_none() {
            // Test::Base keeps the last one; a repeated section is almost always a mistake.
            block.error = Some(format!("section '--- {name}' appears twice in the block"));
        }
        block.sections.push(Section {
            name,
            filters: filters.split_whitespace().map(str::to_string).collect(),
            text: trim(&norm(&text)),
        });
    }
    block
}

/// `^--- +\(?(\w+)\)? *(.*)$`: returns the section name and the rest of the line.
fn section_header(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("--- ")?.trim_start_matches(' ');
    let rest = rest.strip_prefix('(').unwrap_or(rest);
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let name = rest[..end].to_string();
    let after = &rest[end..];
    let after = after.strip_prefix(')').unwrap_or(after);
    Some((
        name,
        after
            .trim_end_matches(['\n', '\r'])
            .trim_start()
            .to_string(),
    ))
}

/// Position of the `:` that starts an inline value: a colon followed by whitespace or the end.
fn inline_colon(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b':' && bytes.get(i + 1).map_or(true, |c| c.is_ascii_whitespace()))
        .map(|i| {
            // `\s*:` — the filters end before any whitespace preceding the colon.
            rest[..i].trim_end().len()
        })
}

/// Splits the preamble into Perl statements and applies the ones the runner understands.
fn parse_preamble(text: &str, warnings: &mut Vec<String>) -> Preamble {
    let mut p = Preamble::default();
    for stmt in statements(text) {
        if let Err(e) = apply_statement(&mut p, &stmt) {
            warnings.push(e);
        }
    }
    p
}

fn apply_statement(p: &mut Preamble, stmt: &str) -> Result<(), String> {
    let ignore = [
        "use ",
        "no ",
        "our ",
        "my ",
        "plan ",
        "run_tests",
        "BEGIN",
        "require ",
    ];
    if stmt.starts_with("plan skip_all") {
        return Err(format!(
            "ignoring '{stmt}': the runner does not skip whole files"
        ));
    }
    if stmt.starts_with("use lib ") && stmt.contains("t/lib") {
        p.t_lib = true;
        return Ok(());
    }
    if stmt == "use ProjectOnly" {
        if !p.t_lib {
            return Err(
                "'use ProjectOnly;' needs \"use lib 't/lib';\" before it (prove would not find it)"
                    .to_string(),
            );
        }
        p.project_only_hook = true;
        return Ok(());
    }
    if ignore.iter().any(|i| stmt.starts_with(i)) || stmt == "1" {
        return Ok(());
    }
    // $ENV{NAME} ||= expr / //= expr / = expr
    if let Some(rest) = stmt.strip_prefix("$ENV{") {
        let close = rest
            .find('}')
            .ok_or_else(|| format!("ignoring preamble statement '{stmt}'"))?;
        let name = rest[..close].trim().trim_matches(['\'', '"']).to_string();
        let rest = rest[close + 1..].trim_start();
        let (only_if_unset, expr) = if let Some(e) = rest.strip_prefix("||=") {
            (true, e)
        } else if let Some(e) = rest.strip_prefix("//=") {
            (true, e)
        } else if let Some(e) = rest.strip_prefix('=') {
            (false, e)
        } else {
            return Err(format!("ignoring preamble statement '{stmt}'"));
        };
        let value = match perl::eval(expr) {
            Ok(Value::Str(s)) => String::from_utf8_lossy(&s).into_owned(),
            _ => {
                return Err(format!(
                    "ignoring preamble statement '{stmt}': unsupported value"
                ))
            }
        };
        let current = std::env::var(&name).ok().filter(|v| !v.is_empty());
        if !(only_if_unset && current.is_some()) {
            p.env.insert(name, value);
        }
        return Ok(());
    }
    // name(args) or name args
    let name_end = stmt
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(stmt.len());
    let name = &stmt[..name_end];
    let mut args_src = stmt[name_end..].trim();
    if args_src.starts_with('(') && args_src.ends_with(')') {
        args_src = &args_src[1..args_src.len() - 1];
    }
    let args = if args_src.trim().is_empty() {
        Vec::new()
    } else {
        match perl::eval(&format!("[{args_src}]")) {
            Ok(Value::Array(a)) => a,
            _ => {
                return Err(format!(
                    "ignoring preamble statement '{stmt}': unsupported arguments"
                ))
            }
        }
    };
    let arg_str = |i: usize| match args.get(i) {
        Some(Value::Str(s)) => Ok(String::from_utf8_lossy(s).into_owned()),
        _ => Err(format!("ignoring '{stmt}': expected an argument")),
    };
    let arg_num = |i: usize| {
        arg_str(i)?
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("ignoring '{stmt}': expected a number"))
    };
    match name {
        "workers" => p.workers = arg_num(0)?.max(1.0) as u32,
        "worker_connections" => p.worker_connections = arg_num(0)? as u32,
        "master_on" => p.master = true,
        "master_off" => p.master = false,
        "master_process_enabled" => {
            let v = arg_str(0)?;
            p.master = !(v == "0" || v.eq_ignore_ascii_case("off") || v.is_empty());
        }
        "log_level" => p.log_level = arg_str(0)?,
        "no_root_location" => p.no_root_location = true,
        "timeout" => p.timeout = Some(arg_num(0)?),
        "env_to_nginx" => {
            for i in 0..args.len() {
                p.env_to_nginx.push(arg_str(i)?);
            }
        }
        // Accepted; repeat_each is treated as 1, order is always the file's order.
        "check_accum_error_log" => p.accum_error_log = true,
        "repeat_each" | "no_shuffle" | "no_long_string" | "no_diff" | "run_tests" => {}
        _ => return Err(format!("ignoring unsupported preamble statement '{stmt}'")),
    }
    Ok(())
}

/// Splits Perl source into top-level statements at `;`, skipping comments, strings,
/// bracketed groups, POD and heredoc bodies.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('=') && !line.starts_with("==") {
            // POD: skip through =cut
            for l in lines.by_ref() {
                if l.starts_with("=cut") {
                    break;
                }
            }
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i];
            if let Some(q) = quote {
                cur.push(c);
                if c == '\\' && i + 1 < chars.len() {
                    cur.push(chars[i + 1]);
                    i += 1;
                } else if c == q {
                    quote = None;
                }
                i += 1;
                continue;
            }
            match c {
                '#' => break,
                '\'' | '"' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    cur.push(c);
                }
                ')' | ']' | '}' => {
                    depth -= 1;
                    cur.push(c);
                }
                '<' if chars.get(i + 1) == Some(&'<') => {
                    // heredoc: <<"EOT", <<'EOT', <<EOT, <<~EOT
                    let mut j = i + 2;
                    let indented = chars.get(j) == Some(&'~');
                    if indented {
                        j += 1;
                    }
                    let q = chars.get(j).copied().filter(|c| *c == '"' || *c == '\'');
                    if q.is_some() {
                        j += 1;
                    }
                    let start = j;
                    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                        j += 1;
                    }
                    if j > start {
                        heredocs.push((chars[start..j].iter().collect(), indented));
                        if q.is_some() {
                            j += 1;
                        }
                        cur.push_str("<<HEREDOC");
                        i = j;
                        continue;
                    }
                    cur.push(c);
                }
                ';' if depth <= 0 => {
                    let s = cur.trim().to_string();
                    if !s.is_empty() {
                        out.push(s);
                    }
                    cur.clear();
                    depth = 0;
                }
                _ => cur.push(c),
            }
            i += 1;
        }
        cur.push('\n');
        // Skip heredoc bodies that started on this line.
        for (tag, indented) in heredocs.drain(..) {
            for l in lines.by_ref() {
                let l = if indented { l.trim() } else { l };
                if l == tag {
                    break;
                }
            }
        }
    }
    let s = cur.trim().to_string();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

pub fn unit_tests() -> Vec<(&'static str, fn())> {
    vec![
        ("parse trim", test_trim),
        ("parse blocks", test_blocks),
        ("parse preamble", test_preamble),
    ]
}

fn test_trim() {
    assert_eq!(trim("\n\nhello\n\n\n"), "hello\n");
    assert_eq!(trim("  \nhello  \n  "), "hello  \n");
    assert_eq!(trim("hello"), "hello");
    assert_eq!(trim("a\n\nb\n"), "a\n\nb\n");
    assert_eq!(trim("\n"), "");
    assert_eq!(trim(""), "");
}

fn test_blocks() {
    let f = parse_file(
        "use Test::Nginx::Socket;\n__DATA__\n\n=== TEST 1: one\n--- config\n    location /t {}\n\n\
         --- request\nGET /t\n--- error_code: 404\n--- response_body chomp\nhi\n\n\n\
         === TEST 2: two\n--- request eval\n\"GET /\" . \"x\"\n--- response_body\n--- ONLY\n",
    );
    assert_eq!(f.blocks.len(), 2);
    let b = &f.blocks[0];
    assert_eq!(b.name, "TEST 1: one");
    assert_eq!(b.line, 4);
    assert_eq!(b.get("config").unwrap().text, "    location /t {}\n");
    assert_eq!(b.get("request").unwrap().text, "GET /t\n");
    assert_eq!(b.get("error_code").unwrap().text, "404");
    assert_eq!(
        b.get("response_body").unwrap().value().unwrap(),
        Value::text("hi")
    );
    let b = &f.blocks[1];
    assert_eq!(
        b.get("request").unwrap().value().unwrap(),
        Value::text("GET /x")
    );
    assert_eq!(b.get("response_body").unwrap().text, "");
    assert!(b.has("ONLY"));
}

fn test_preamble() {
    let f = parse_file(
        "use Test::Nginx::Socket 'no_plan';\nworkers(2);\nmaster_on();\nlog_level('info');\n\
         repeat_each(2);\nplan tests => repeat_each() * (blocks() * 3);\n\
         $ENV{TEST_NGINX_RUNNER_UNIT_X} ||= 'abc';\nuse Cwd qw(cwd);\n\
         $ENV{TEST_NGINX_RUNNER_UNIT_DIR} ||= cwd() . '/t/keys';\nour $Conf = <<'_EOC_';\nfoo;\n_EOC_\n\
         frobnicate(1);\nno_root_location();\nuse lib 't/lib';\nuse ProjectOnly;\n\
         check_accum_error_log();\nrun_tests();\n__DATA__\n",
    );
    assert!(f.preamble.project_only_hook);
    assert!(f.preamble.accum_error_log);
    assert_eq!(f.preamble.workers, 2);
    assert!(f.preamble.master);
    assert_eq!(f.preamble.log_level, "info");
    assert!(f.preamble.no_root_location);
    assert_eq!(
        f.preamble
            .env
            .get("TEST_NGINX_RUNNER_UNIT_X")
            .map(String::as_str),
        Some("abc")
    );
    let cwd = std::env::current_dir().unwrap().display().to_string();
    assert_eq!(
        f.preamble.env.get("TEST_NGINX_RUNNER_UNIT_DIR"),
        Some(&format!("{cwd}/t/keys"))
    );
    assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
    assert!(f.warnings[0].contains("frobnicate"));
    // Without `use lib 't/lib'` prove would not find the hook: not loaded, with a warning.
    let f = parse_file("use ProjectOnly;\nrun_tests();\n__DATA__\n");
    assert!(!f.preamble.project_only_hook);
    assert!(f.warnings[0].contains("use lib"), "{:?}", f.warnings);
}

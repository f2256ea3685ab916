//! The small subset of Perl that `.t` files use in `--- name eval` sections and preamble
//! assignments, plus the translation of Perl regexes to the `regex` crate's syntax.
//!
//! Supported expressions: double-quoted strings (escapes `\n \r \t \0 \e \a \f \\ \" \$ \@`,
//! `\xHH`, `\x{HHHH}`, octal `\NNN`), single-quoted strings, `q{}`/`qq{}` with any delimiter,
//! integers, `.` concatenation, `x N` repetition (of strings and of parenthesised lists),
//! `[ ... ]` arrays (nested), `( ... )` grouping, `qr/.../flags` regexes, `#` comments, and
//! `$ENV{NAME}` (a term, or interpolated in a double-quoted string) when the caller gives an
//! environment (see `eval_with`). Anything else (other variables, function calls, heredocs, ...)
//! is an error with a clear message. A code point above 0xFF (`"\x{100}"`) is refused too: Perl
//! makes a wide-character string of it, which Test::Nginx can neither send nor compare with the
//! bytes nginx sends back.

use regex::bytes::{Regex, RegexBuilder};
use std::fmt;

/// A value produced by a Perl expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string (a Perl byte string: `\xHH` and `\x{HH}` are single bytes).
    Str(Vec<u8>),
    /// A compiled-later regex: Perl source and flags (`qr/src/flags`).
    Regex(PerlRegex),
    /// An array reference `[ ... ]`.
    Array(Vec<Value>),
}

impl Value {
    pub fn text(s: &str) -> Value {
        Value::Str(s.as_bytes().to_vec())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{}", String::from_utf8_lossy(s)),
            Value::Regex(r) => write!(f, "{r}"),
            Value::Array(items) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    match v {
                        Value::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s))?,
                        other => write!(f, "{other}")?,
                    }
                }
                write!(f, "]")
            }
        }
    }
}

/// A Perl regex: source text and flags as written in `qr/source/flags`.
#[derive(Clone, Debug, PartialEq)]
pub struct PerlRegex {
    pub source: String,
    pub flags: String,
}

impl fmt::Display for PerlRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "qr/{}/{}", self.source, self.flags)
    }
}

impl PerlRegex {
    pub fn new(source: impl Into<String>, flags: impl Into<String>) -> Self {
        PerlRegex {
            source: source.into(),
            flags: flags.into(),
        }
    }

    /// Compiles the regex with the `regex` crate after translating Perl-only syntax.
    pub fn compile(&self) -> Result<Regex, String> {
        let translated = translate_regex(&self.source, &self.flags)?;
        RegexBuilder::new(&translated)
            .size_limit(50 << 20)
            .build()
            .map_err(|e| format!("regex {self} is not supported by the runner's regex engine: {e}"))
    }
}

/// Evaluates a Perl expression. A top-level comma list yields its first element, like a
/// Test::Base section accessor in scalar context does.
pub fn eval(src: &str) -> Result<Value, String> {
    eval_with(src, None)
}

/// How `$ENV{NAME}` is looked up: the value, or why there is none.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Like `eval`, with `$ENV{NAME}` read through `env` (without one, `$ENV{...}` is refused).
pub fn eval_with(src: &str, env: Option<EnvLookup>) -> Result<Value, String> {
    let mut p = Parser {
        s: src.as_bytes(),
        i: 0,
        env,
    };
    let mut list = p.list()?;
    p.skip_ws();
    if p.i < p.s.len() {
        return Err(p.error("unexpected input"));
    }
    match list.len() {
        0 => Err("empty Perl expression".to_string()),
        _ => Ok(list.swap_remove(0)),
    }
}

/// An intermediate value: parenthesised lists stay lists until they are flattened.
enum Item {
    One(Value),
    List(Vec<Value>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    env: Option<EnvLookup<'a>>,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        let end = (self.i + 40).min(self.s.len());
        let start = self.i.min(end);
        format!(
            "unsupported Perl in eval section ({what}) at: {:?}; the runner understands only strings, \
             integers, '.', 'x N', [arrays] and qr// regexes",
            String::from_utf8_lossy(&self.s[start..end])
        )
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips whitespace and `#` comments.
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else if c == b'#' {
                while let Some(c) = self.peek() {
                    self.i += 1;
                    if c == b'\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    /// `expr (, expr)* ,?` flattened into values.
    fn list(&mut self) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None | Some(b']') | Some(b')') => return Ok(out),
                _ => {}
            }
            match self.expr()? {
                Item::One(v) => out.push(v),
                Item::List(vs) => out.extend(vs),
            }
            self.skip_ws();
            if self.peek() == Some(b',') || self.s[self.i..].starts_with(b"=>") {
                self.i += if self.peek() == Some(b',') { 1 } else { 2 };
            } else {
                return Ok(out);
            }
        }
    }

    /// `repeat ('.' repeat)*`
    fn expr(&mut self) -> Result<Item, String> {
        let mut left = self.repeat()?;
        loop {
            self.skip_ws();
            if self.peek() == Some(b'.') && !self.s[self.i..].starts_with(b"..") {
                self.i += 1;
                let right = self.repeat()?;
                let mut l = scalar(left, "'.'")?;
                l.extend(scalar(right, "'.'")?);
                left = Item::One(Value::Str(l));
            } else {
                return Ok(left);
            }
        }
    }

    /// `primary ('x' INT)*`
    fn repeat(&mut self) -> Result<Item, String> {
        let mut item = self.primary()?;
        loop {
            self.skip_ws();
            let rest = &self.s[self.i..];
            let is_x = rest.first() == Some(&b'x')
                && rest
                    .get(1)
                    .map_or(true, |c| c.is_ascii_whitespace() || c.is_ascii_digit());
            if !is_x {
                return Ok(item);
            }
            self.i += 1;
            self.skip_ws();
            let n = self.integer()?;
            let n = usize::try_from(n).map_err(|_| self.error("bad repetition count"))?;
            item = match item {
                Item::List(vs) => {
                    Item::List(vs.iter().cloned().cycle().take(vs.len() * n).collect())
                }
                one => Item::One(Value::Str(scalar(one, "'x'")?.repeat(n))),
            };
        }
    }

    /// `$ENV{NAME}` (NAME bare or quoted) starting at `at`: its value and the source length.
    fn env_var(&self, at: usize) -> Result<(Vec<u8>, usize), String> {
        let rest = &self.s[at..];
        let close = rest
            .iter()
            .position(|&c| c == b'}')
            .ok_or_else(|| self.error("unterminated $ENV{"))?;
        let name = String::from_utf8_lossy(&rest[5..close])
            .trim()
            .trim_matches(['\'', '"'])
            .to_string();
        let Some(env) = self.env else {
            return Err(self.error("$ENV{...} is not available here"));
        };
        Ok((env(&name)?.into_bytes(), close + 1))
    }

    fn integer(&mut self) -> Result<i64, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'_') {
            self.i += 1;
        }
        let text: String = String::from_utf8_lossy(&self.s[start..self.i]).replace('_', "");
        text.parse().map_err(|_| {
            self.i = start;
            self.error("expected an integer")
        })
    }

    fn primary(&mut self) -> Result<Item, String> {
        self.skip_ws();
        let c = self
            .peek()
            .ok_or_else(|| self.error("unexpected end of expression"))?;
        match c {
            b'"' => {
                self.i += 1;
                Ok(Item::One(Value::Str(self.double_quoted(b'"')?)))
            }
            b'\'' => {
                self.i += 1;
                Ok(Item::One(Value::Str(self.single_quoted(b'\'')?)))
            }
            b'[' => {
                self.i += 1;
                let items = self.list()?;
                self.skip_ws();
                if self.peek() != Some(b']') {
                    return Err(self.error("expected ']'"));
                }
                self.i += 1;
                Ok(Item::One(Value::Array(items)))
            }
            b'(' => {
                self.i += 1;
                let mut items = self.list()?;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    return Err(self.error("expected ')'"));
                }
                self.i += 1;
                if items.len() == 1 {
                    // `("a" . "b")` is a plain value; `("a") x 3` is handled as a list anyway,
                    // so look ahead for `x`.
                    let save = self.i;
                    self.skip_ws();
                    let list_repeat = self.peek() == Some(b'x');
                    self.i = save;
                    if !list_repeat {
                        return Ok(Item::One(items.swap_remove(0)));
                    }
                }
                Ok(Item::List(items))
            }
            b'0'..=b'9' | b'-' => Ok(Item::One(Value::Str(
                self.integer()?.to_string().into_bytes(),
            ))),
            b'q' => self.quote_like(),
            b'$' if self.s[self.i..].starts_with(b"$ENV{") => {
                let (value, len) = self.env_var(self.i)?;
                self.i += len;
                Ok(Item::One(Value::Str(value)))
            }
            // `cwd()` of Perl's Cwd module (the preamble's `use Cwd;` is accepted and ignored):
            // the current directory, which is the package root under `cargo test` and `prove`.
            b'c' if self.s[self.i..].starts_with(b"cwd()") => {
                self.i += 5;
                let dir = std::env::current_dir()
                    .map_err(|e| format!("cwd(): {e}"))?
                    .display()
                    .to_string();
                Ok(Item::One(Value::Str(dir.into_bytes())))
            }
            _ => Err(self.error("unexpected token")),
        }
    }

    /// `q//`, `qq//`, `qr//flags`, `qw//` with any delimiter.
    fn quote_like(&mut self) -> Result<Item, String> {
        let rest = &self.s[self.i..];
        let (op, len) = if rest.starts_with(b"qq") {
            ("qq", 2)
        } else if rest.starts_with(b"qr") {
            ("qr", 2)
        } else if rest.starts_with(b"qw") {
            ("qw", 2)
        } else {
            ("q", 1)
        };
        self.i += len;
        self.skip_ws();
        let open = self
            .peek()
            .ok_or_else(|| self.error("expected a quote delimiter"))?;
        if open.is_ascii_alphanumeric() || open == b'_' || open == b',' {
            return Err(self.error("expected a quote delimiter"));
        }
        let close = match open {
            b'(' => b')',
            b'[' => b']',
            b'{' => b'}',
            b'<' => b'>',
            other => other,
        };
        self.i += 1;
        match op {
            "qq" => Ok(Item::One(Value::Str(self.double_quoted_pair(open, close)?))),
            "q" => Ok(Item::One(Value::Str(self.single_quoted_pair(open, close)?))),
            "qw" => {
                let body = self.single_quoted_pair(open, close)?;
                let words = String::from_utf8_lossy(&body)
                    .split_whitespace()
                    .map(Value::text)
                    .collect();
                Ok(Item::List(words))
            }
            _ => {
                let body = self.raw_delimited(open, close)?;
                let mut flags = String::new();
                while let Some(c) = self.peek().filter(u8::is_ascii_alphabetic) {
                    flags.push(c as char);
                    self.i += 1;
                }
                let source =
                    String::from_utf8(body).map_err(|_| self.error("regex is not UTF-8"))?;
                Ok(Item::One(Value::Regex(PerlRegex::new(source, flags))))
            }
        }
    }

    /// Reads up to the matching `close` (nesting bracket pairs), keeping backslashes except
    /// before the delimiters themselves.
    fn raw_delimited(&mut self, open: u8, close: u8) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        loop {
            let c = self
                .peek()
                .ok_or_else(|| self.error("unterminated quote"))?;
            self.i += 1;
            if c == b'\\' {
                let n = self
                    .peek()
                    .ok_or_else(|| self.error("unterminated quote"))?;
                self.i += 1;
                if n != open && n != close {
                    out.push(b'\\');
                }
                out.push(n);
            } else if c == close && depth == 0 {
                return Ok(out);
            } else {
                if open != close {
                    if c == open {
                        depth += 1;
                    } else if c == close {
                        depth -= 1;
                    }
                }
                out.push(c);
            }
        }
    }

    fn single_quoted(&mut self, q: u8) -> Result<Vec<u8>, String> {
        self.single_quoted_pair(q, q)
    }

    /// Single-quote rules: only `\\` and `\<delimiter>` are escapes.
    fn single_quoted_pair(&mut self, open: u8, close: u8) -> Result<Vec<u8>, String> {
        let raw = self.raw_delimited(open, close)?;
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && raw.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else {
                out.push(raw[i]);
                i += 1;
            }
        }
        Ok(out)
    }

    fn double_quoted(&mut self, q: u8) -> Result<Vec<u8>, String> {
        self.double_quoted_pair(q, q)
    }

    /// Double-quote rules: backslash escapes; `$ENV{NAME}` is interpolated (with an
    /// environment), any other `$name` / `@name` interpolation is refused.
    fn double_quoted_pair(&mut self, open: u8, close: u8) -> Result<Vec<u8>, String> {
        let start = self.i;
        let raw = self.raw_delimited(open, close)?;
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let c = raw[i];
            i += 1;
            if c == b'$' && raw[i..].starts_with(b"ENV{") {
                let inner = Parser {
                    s: &raw,
                    i: 0,
                    env: self.env,
                };
                let (value, len) = inner.env_var(i - 1).inspect_err(|_| self.i = start)?;
                out.extend(value);
                i += len - 1;
                continue;
            }
            if (c == b'$' || c == b'@')
                && raw.get(i).is_some_and(|n| {
                    n.is_ascii_alphabetic() || *n == b'_' || *n == b'{' || *n == b':'
                })
            {
                self.i = start;
                return Err(self.error(&format!(
                    "Perl variable interpolation of '{}...' in a double-quoted string; escape it as \\{}",
                    c as char, c as char
                )));
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(&e) = raw.get(i) else {
                out.push(b'\\');
                break;
            };
            i += 1;
            match e {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'e' => out.push(0x1b),
                b'a' => out.push(0x07),
                b'f' => out.push(0x0c),
                b'0'..=b'7' => {
                    let mut v: u32 = (e - b'0') as u32;
                    let mut n = 1;
                    while n < 3 && raw.get(i).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                        v = v * 8 + (raw[i] - b'0') as u32;
                        i += 1;
                        n += 1;
                    }
                    self.push_code_point(&mut out, v, start)?;
                }
                b'x' => {
                    let v = if raw.get(i) == Some(&b'{') {
                        let end = raw[i..]
                            .iter()
                            .position(|&b| b == b'}')
                            .ok_or_else(|| self.error("unterminated \\x{...}"))?;
                        let hex = String::from_utf8_lossy(&raw[i + 1..i + end])
                            .trim()
                            .to_string();
                        i += end + 1;
                        u32::from_str_radix(&hex, 16)
                            .map_err(|_| self.error("bad \\x{...} escape"))?
                    } else {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 2 && raw.get(i).is_some_and(u8::is_ascii_hexdigit) {
                            v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                            i += 1;
                            n += 1;
                        }
                        v
                    };
                    self.push_code_point(&mut out, v, start)?;
                }
                other => out.push(other),
            }
        }
        Ok(out)
    }
}

impl Parser<'_> {
    /// A code point below 256 is a raw byte (as in a Perl byte string); a larger one would make
    /// a wide-character string, which Test::Nginx cannot send (it bails out of the file) nor
    /// compare with the response's bytes: refused, with the UTF-8 bytes to write instead.
    fn push_code_point(&mut self, out: &mut Vec<u8>, v: u32, start: usize) -> Result<(), String> {
        if v < 256 {
            out.push(v as u8);
            return Ok(());
        }
        let ch = char::from_u32(v).unwrap_or('\u{fffd}');
        let mut buf = [0u8; 4];
        let bytes: String = ch
            .encode_utf8(&mut buf)
            .bytes()
            .map(|b| format!("\\x{b:02x}"))
            .collect();
        self.i = start;
        Err(self.error(&format!(
            "the code point U+{v:04X} makes a Perl wide-character string, which Test::Nginx \
             cannot send or compare with bytes; write its UTF-8 bytes \"{bytes}\""
        )))
    }
}

fn scalar(item: Item, op: &str) -> Result<Vec<u8>, String> {
    match item {
        Item::One(Value::Str(s)) => Ok(s),
        // `("a") x 3` in scalar context is "aaa".
        Item::List(vs) if vs.iter().all(|v| matches!(v, Value::Str(_))) => Ok(vs
            .into_iter()
            .flat_map(|v| match v {
                Value::Str(s) => s,
                _ => Vec::new(),
            })
            .collect()),
        _ => Err(format!(
            "operator {op} applies to strings only in the runner's Perl subset"
        )),
    }
}

/// Translates a Perl regex to `regex` crate syntax:
/// flags `i s m x` become an inline group (`g`, `o` are ignored); `\Q...\E` is quoted;
/// `$` (without `m`) becomes `\n?\z` as Perl's `$` also matches before a final newline;
/// `\Z` becomes `\n?\z`; `\h`/`\H` become `[ \t]`/`[^ \t]`; `{` and `}` that are not part of a
/// quantifier are escaped (Perl treats them as literals); `[` inside a class is escaped.
pub fn translate_regex(src: &str, flags: &str) -> Result<String, String> {
    let mut inline = String::new();
    for f in flags.chars() {
        match f {
            'i' | 's' | 'm' | 'x' => inline.push(f),
            'g' | 'o' => {}
            other => {
                return Err(format!(
                    "regex flag '{other}' in qr/{src}/{flags} is not supported"
                ))
            }
        }
    }
    let multi_line = inline.contains('m');
    let mut out = String::new();
    if !inline.is_empty() {
        out.push_str(&format!("(?{inline})"));
    }
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c == '\\' {
            let Some(&e) = chars.get(i) else {
                return Err(format!("regex /{src}/ ends with a backslash"));
            };
            i += 1;
            match e {
                'Q' => {
                    let rest: String = chars[i..].iter().collect();
                    let (quoted, after) = match rest.find("\\E") {
                        Some(p) => (rest[..p].to_string(), p + 2),
                        None => (rest.clone(), rest.len()),
                    };
                    out.push_str(&regex::escape(&quoted));
                    i += rest[..after].chars().count();
                }
                'E' => {}
                'Z' if !in_class => out.push_str(r"(?:\n?\z)"),
                'h' => out.push_str(if in_class { r" \t" } else { r"[ \t]" }),
                'H' if !in_class => out.push_str(r"[^ \t]"),
                _ => {
                    out.push('\\');
                    out.push(e);
                }
            }
            continue;
        }
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    out.push(']');
                }
                // POSIX class such as [:alpha:]: copied as it is.
                '[' if chars.get(i) == Some(&':') => {
                    let rest: String = chars[i..].iter().collect();
                    match rest.find(":]") {
                        Some(end) => {
                            out.push('[');
                            out.push_str(&rest[..end + 2]);
                            i += rest[..end + 2].chars().count();
                        }
                        None => out.push_str("\\["),
                    }
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                // A leading `^` and a leading `]` belong to the class.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
            }
            '$' if !multi_line => out.push_str(r"(?:\n?\z)"),
            '{' => {
                let rest: String = chars[i..].iter().collect();
                let quantifier = rest.find('}').filter(|&end| {
                    let inner = &rest[..end];
                    let mut parts = inner.splitn(2, ',');
                    let a = parts.next().unwrap_or("");
                    let b = parts.next();
                    !a.is_empty()
                        && a.chars().all(|d| d.is_ascii_digit())
                        && b.map_or(true, |b| b.chars().all(|d| d.is_ascii_digit()))
                        && !out.is_empty()
                });
                match quantifier {
                    Some(end) => {
                        out.push('{');
                        out.push_str(&rest[..=end]);
                        i += end + 1;
                    }
                    None => out.push_str(r"\{"),
                }
            }
            '}' => out.push_str(r"\}"),
            _ => out.push(c),
        }
    }
    Ok(out)
}

// Unit tests of this module; run as trials named `runner-unit :: perl ...` (a harness = false
// test target does not compile `#[test]` functions).
pub fn unit_tests() -> Vec<(&'static str, fn())> {
    vec![
        ("perl strings", strings),
        ("perl arrays", arrays),
        ("perl regexes", regexes),
    ]
}

fn s(v: &str) -> Value {
    Value::text(v)
}

fn strings() {
    assert_eq!(eval(r#""a\r\nb""#).unwrap(), s("a\r\nb"));
    assert_eq!(eval(r#"'a\nb\\c\'d'"#).unwrap(), s("a\\nb\\c'd"));
    assert_eq!(eval(r#""\x41\x{42}\$x""#).unwrap(), s("AB$x"));
    assert_eq!(eval(r#""\xff""#).unwrap(), Value::Str(vec![0xff]));
    assert_eq!(eval(r#""a" x 3 . "b""#).unwrap(), s("aaab"));
    // Perl list context: a repeated list yields its first element as a section value...
    assert_eq!(eval(r#"("ab" . "c") x 2"#).unwrap(), s("abc"));
    // ...but is string repetition as an operand of '.'.
    assert_eq!(eval(r#""x" . ("ab") x 2"#).unwrap(), s("xabab"));
    assert!(eval(r#""$foo""#).is_err());
    assert!(eval(r#""\x{10FFFF}""#).is_err());
    assert!(eval(r#""\x{e9}""#).unwrap() == Value::Str(vec![0xe9]));
    let env = |n: &str| match n {
        "TEST_NGINX_A" => Ok("va".to_string()),
        other => Err(format!("No environment {other} defined")),
    };
    assert_eq!(
        eval_with(
            r#"["x $ENV{TEST_NGINX_A} y", $ENV{'TEST_NGINX_A'} . "!"]"#,
            Some(&env)
        )
        .unwrap(),
        Value::Array(vec![s("x va y"), s("va!")])
    );
    assert!(eval_with(r#""$ENV{TEST_NGINX_B}""#, Some(&env)).is_err());
    assert!(eval(r#""$ENV{TEST_NGINX_A}""#).is_err());
    assert!(eval("foo()").is_err());
    let cwd = std::env::current_dir().unwrap().display().to_string();
    assert_eq!(
        eval("cwd() . '/t/keys'").unwrap(),
        s(&format!("{cwd}/t/keys"))
    );
}

fn arrays() {
    assert_eq!(
        eval(r#"[200, 404]"#).unwrap(),
        Value::Array(vec![s("200"), s("404")])
    );
    assert_eq!(
        eval(r#"[("GET /a") x 2, "GET /b",]"#).unwrap(),
        Value::Array(vec![s("GET /a"), s("GET /a"), s("GET /b")])
    );
    assert_eq!(
        eval("[qr/a.b/s, 'x'] # comment").unwrap(),
        Value::Array(vec![Value::Regex(PerlRegex::new("a.b", "s")), s("x")])
    );
    assert_eq!(
        eval(r"qr{a\}b}i").unwrap(),
        Value::Regex(PerlRegex::new("a}b", "i"))
    );
}

fn regexes() {
    let m = |src: &str, flags: &str, hay: &str| {
        PerlRegex::new(src, flags)
            .compile()
            .unwrap()
            .is_match(hay.as_bytes())
    };
    assert!(m(r"^hello$", "", "hello\n"));
    assert!(!m(r"^hello$", "", "hello\nx"));
    assert!(m(r"^b$", "m", "a\nb\nc"));
    assert!(m(r#"{"a":1}"#, "", r#"x{"a":1}"#));
    assert!(m(r"a{2}", "", "aa"));
    assert!(m(r"\Qa.b\E+", "", "a.bb"));
    assert!(!m(r"\Qa.b\E", "", "axb"));
    assert!(m(r"[[]x", "", "[x"));
    assert!(m(r"^[[:alpha:]_]+\d$", "", "ab_c1"));
    assert!(m(r"a\$b", "", "a$b"));
    assert!(m(r"^a\Z", "", "a\n"));
    assert!(m(r"a\hb", "", "a\tb"));
    assert!(m(r"HELLO", "i", "hello"));
    assert!(PerlRegex::new(r"(?=a)", "").compile().is_err());
}

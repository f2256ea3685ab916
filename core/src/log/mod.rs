//! JSON request records: always valid JSON and valid UTF-8, whatever bytes come in.
//!
//! Strings are escaped per RFC 8259: `"` and `\` are backslash-escaped, control characters
//! (U+0000..U+001F and U+007F) become `\u00XX`, and bytes that are not valid UTF-8 are
//! replaced by U+FFFD (the replacement character), one per maximal invalid sequence, as
//! `String::from_utf8_lossy` does. Non-ASCII valid UTF-8 passes through unchanged.
//!
//! A record is a small tree, so fields with dotted names (`auth.result`, `app.tenant`) become
//! nested objects and later fields can extend an object an earlier field created.

pub mod credentials;

use std::borrow::Cow;

/// A value in a record. Values borrow from the request and the configuration where they can,
/// so building a record costs few allocations.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A string (raw bytes; escaped when written).
    Str(Cow<'a, [u8]>),
    /// A number, already checked to be a valid JSON number.
    Num(Cow<'a, [u8]>),
    /// An integer.
    Int(i64),
    /// Milliseconds, written as seconds with three decimals (`0.012`).
    Millis(i64),
    /// A nested object.
    Obj(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// An ordered JSON object under construction.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Record<'a> {
    fields: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Record<'a> {
    /// An empty record.
    pub fn new() -> Self {
        Self {
            fields: Vec::with_capacity(24),
        }
    }

    /// Sets `name` (dotted for nesting) to `value`, replacing an earlier value of that name.
    /// A path through an existing non-object value replaces that value by an object.
    pub fn set(&mut self, name: &'a str, value: Value<'a>) {
        if !name.contains('.') {
            match self.fields.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1 = value,
                None => self.fields.push((Cow::Borrowed(name), value)),
            }
            return;
        }
        let mut obj = &mut self.fields;
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                match obj.iter_mut().find(|(k, _)| k == part) {
                    Some(slot) => slot.1 = value,
                    None => obj.push((Cow::Borrowed(part), value)),
                }
                return;
            }
            let idx = match obj.iter().position(|(k, _)| k == part) {
                Some(i) => {
                    if !matches!(obj[i].1, Value::Obj(_)) {
                        obj[i].1 = Value::Obj(Vec::new());
                    }
                    i
                }
                None => {
                    obj.push((Cow::Borrowed(part), Value::Obj(Vec::new())));
                    obj.len() - 1
                }
            };
            obj = match &mut obj[idx].1 {
                Value::Obj(o) => o,
                _ => return, // unreachable: made an object just above
            };
        }
    }

    /// Appends a field without looking for an earlier one of the same name: for fields the
    /// caller knows to be new (a record's default fields), so building one costs no search.
    pub fn push(&mut self, name: &'a str, value: Value<'a>) {
        self.fields.push((Cow::Borrowed(name), value));
    }

    /// `push` of a string, left out when empty.
    pub fn push_str(&mut self, name: &'a str, value: &'a [u8]) {
        if !value.is_empty() {
            self.push(name, Value::Str(Cow::Borrowed(value)));
        }
    }

    /// `push` of a number-in-nature value (see [`Record::auto`]).
    pub fn push_auto(&mut self, name: &'a str, value: &'a [u8]) {
        if value.is_empty() || value == b"-" {
            return;
        }
        if is_json_number(value) {
            self.push(name, Value::Num(Cow::Borrowed(value)));
        } else {
            self.push(name, Value::Str(Cow::Borrowed(value)));
        }
    }

    /// This record as a nested object value.
    pub fn into_value(self) -> Value<'a> {
        Value::Obj(self.fields)
    }

    /// Sets a string field (omitted when `value` is empty: fields that do not apply are left
    /// out, not written as empty strings).
    pub fn str(&mut self, name: &'a str, value: &'a [u8]) {
        if !value.is_empty() {
            self.set(name, Value::Str(Cow::Borrowed(value)));
        }
    }

    /// Sets a string field from an owned value (omitted when empty).
    pub fn string(&mut self, name: &'a str, value: Vec<u8>) {
        if !value.is_empty() {
            self.set(name, Value::Str(Cow::Owned(value)));
        }
    }

    /// Sets an integer field.
    pub fn int(&mut self, name: &'a str, value: i64) {
        self.set(name, Value::Int(value));
    }

    /// Sets a duration in milliseconds, written in seconds (`1.250`).
    pub fn millis(&mut self, name: &'a str, ms: i64) {
        self.set(name, Value::Millis(ms));
    }

    /// Sets a field that is a number in nature: a JSON number when `value` is one, otherwise a
    /// string (e.g. `upstream_response_time` of `0.004, 0.010` after a retry). Omitted when
    /// empty or `-` (nginx's "no value").
    pub fn auto(&mut self, name: &'a str, value: &'a [u8]) {
        if value.is_empty() || value == b"-" {
            return;
        }
        if is_json_number(value) {
            self.set(name, Value::Num(Cow::Borrowed(value)));
        } else {
            self.set(name, Value::Str(Cow::Borrowed(value)));
        }
    }

    /// Removes a top-level field or a dotted path; returns whether something was removed.
    pub fn remove(&mut self, name: &str) -> bool {
        fn rm(obj: &mut Vec<(Cow<'_, str>, Value<'_>)>, parts: &[&str]) -> bool {
            let Some((first, rest)) = parts.split_first() else {
                return false;
            };
            let Some(i) = obj.iter().position(|(k, _)| k == first) else {
                return false;
            };
            if rest.is_empty() {
                obj.remove(i);
                return true;
            }
            match &mut obj[i].1 {
                Value::Obj(o) => rm(o, rest),
                _ => false,
            }
        }
        let parts: Vec<&str> = name.split('.').collect();
        rm(&mut self.fields, &parts)
    }

    /// Writes the record as one line of JSON (with the trailing newline) into `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        write_obj(&self.fields, out);
        out.push(b'\n');
    }

    /// Appends the record as JSON text (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_obj(&self.fields, out);
    }

    /// The record as JSON text (no newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        write_obj(&self.fields, &mut out);
        out
    }
}

fn write_int(v: i64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_obj(fields: &[(Cow<'_, str>, Value<'_>)], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (k, v) in fields {
        if let Value::Obj(o) = v {
            if o.is_empty() {
                continue;
            }
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(k.as_bytes(), out);
        out.push(b':');
        match v {
            Value::Str(s) => write_str(s, out),
            Value::Num(n) => out.extend_from_slice(n),
            Value::Int(i) => write_int(*i, out),
            Value::Millis(ms) => {
                let ms = (*ms).max(0);
                write_int(ms / 1000, out);
                let frac = ms % 1000;
                out.extend_from_slice(&[
                    b'.',
                    b'0' + (frac / 100) as u8,
                    b'0' + (frac / 10 % 10) as u8,
                    b'0' + (frac % 10) as u8,
                ]);
            }
            Value::Obj(o) => write_obj(o, out),
        }
    }
    out.push(b'}');
}

/// Bytes that can be copied into a JSON string as they are: printable ASCII but `"`, `\`.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x20;
    while i < 0x7f {
        t[i] = i != b'"' as usize && i != b'\\' as usize;
        i += 1;
    }
    t
};

#[inline]
fn plain(b: u8) -> bool {
    PLAIN[b as usize]
}

/// Writes `s` as a JSON string: escaped, and valid UTF-8 (invalid sequences become U+FFFD).
pub fn write_str(s: &[u8], out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut rest = s;
    while !rest.is_empty() {
        // The common case: a run of printable ASCII, copied at once.
        let run = rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        rest = &rest[run..];
        let Some(&b) = rest.first() else {
            break;
        };
        if b < 0x80 {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
            }
            rest = &rest[1..];
            continue;
        }
        // Non-ASCII: copy the valid UTF-8 prefix of the non-ASCII run, replace what is not.
        let end = rest.iter().position(|&b| b < 0x80).unwrap_or(rest.len());
        for chunk in rest[..end].utf8_chunks() {
            out.extend_from_slice(chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{fffd}".as_bytes());
            }
        }
        rest = &rest[end..];
    }
    out.push(b'"');
}

/// Whether `s` is a number by RFC 8259's grammar (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`)
/// whose magnitude a double can hold.
///
/// RFC 8259 section 6 leaves numbers beyond IEEE 754 binary64 to the implementation, and most
/// readers (serde_json, Go's encoding/json, jq) refuse `1e999` or a 400-digit integer, which
/// would make the whole log line unreadable. Such values (from a request variable, say) are
/// written as strings instead. Tiny values such as `1e-999` are fine: they read as 0.
pub fn is_json_number(s: &[u8]) -> bool {
    json_number_grammar(s)
        && std::str::from_utf8(s)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
}

fn json_number_grammar(s: &[u8]) -> bool {
    let mut i = 0;
    let n = s.len();
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < n && s[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if i < n && s[i] == b'-' {
        i += 1;
    }
    if i < n && s[i] == b'0' {
        i += 1;
    } else if !digits(&mut i) {
        return false;
    }
    if i < n && s[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < n && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        if i < n && (s[i] == b'+' || s[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == n && n > 0
}

/// RFC 3339 UTC timestamp with milliseconds (`2026-11-26T04:05:12.345Z`) for Unix time
/// `secs` + `msec`.
pub fn rfc3339_ms(secs: i64, msec: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        y,
        m,
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        msec.min(999)
    )
}

/// Formats RFC 3339 timestamps, formatting the date and time part once per second.
#[derive(Debug, Default)]
pub struct Rfc3339Cache {
    sec: Option<i64>,
    text: [u8; 24],
}

impl Rfc3339Cache {
    /// `2026-11-26T04:05:12.345Z` for `secs` + `msec`.
    pub fn format(&mut self, secs: i64, msec: u32) -> &[u8; 24] {
        if self.sec != Some(secs) {
            let full = rfc3339_ms(secs, 0);
            if full.len() == 24 {
                self.text.copy_from_slice(full.as_bytes());
                self.sec = Some(secs);
            } else {
                // Years beyond 9999 do not fit the fixed width; never cached.
                self.sec = None;
            }
        }
        let m = msec.min(999);
        self.text[20] = b'0' + (m / 100) as u8;
        self.text[21] = b'0' + (m / 10 % 10) as u8;
        self.text[22] = b'0' + (m % 10) as u8;
        &self.text
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Trace context from a W3C `traceparent` header (`00-<32 hex trace id>-<16 hex span id>-<2
/// hex flags>`): `(trace_id, span_id)`, or `None` when the header is invalid
/// ([`crate::trace::parse`]).
pub fn parse_traceparent(v: &[u8]) -> Option<([u8; 32], [u8; 16])> {
    crate::trace::parse(v).map(|p| (p.trace_id, p.span_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_millis() {
        let mut r = Record::new();
        r.int("a", 0);
        r.int("b", -42);
        r.int("c", i64::MIN);
        r.millis("d", 1250);
        r.millis("e", 7);
        assert_eq!(
            r.to_json(),
            br#"{"a":0,"b":-42,"c":-9223372036854775808,"d":1.250,"e":0.007}"#
        );
    }

    fn json(r: &Record) -> serde_json::Value {
        serde_json::from_slice(&r.to_json()).expect("valid JSON")
    }

    #[test]
    fn escapes_everything_hostile() {
        let mut r = Record::new();
        let nasty: Vec<u8> = (0u8..=255).collect();
        r.str("all", &nasty);
        r.str("quote", b"a\"b\\c\n\r\t\x00\x7f");
        r.str("bad_utf8", b"\xff\xfe ok \xc3\x28 \xe2\x82");
        let v = json(&r);
        assert_eq!(v["quote"], "a\"b\\c\n\r\t\u{0}\u{7f}");
        assert_eq!(v["bad_utf8"], "\u{fffd}\u{fffd} ok \u{fffd}( \u{fffd}");
        assert!(v["all"].as_str().is_some());
    }

    #[test]
    fn random_bytes_always_parse() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut r = Record::new();
            let len = (x % 64) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            r.str("k", &bytes);
            r.auto("n", &bytes);
            let name = String::from_utf8_lossy(&bytes).into_owned();
            r.set(&name, Value::Str(Cow::Owned(bytes.clone())));
            let line = r.to_json();
            assert!(
                serde_json::from_slice::<serde_json::Value>(&line).is_ok(),
                "{line:?}"
            );
        }
    }

    #[test]
    fn dotted_names_nest_and_merge() {
        let mut r = Record::new();
        r.str("auth.result", b"valid");
        r.str("auth.kid", b"k1");
        r.str("app.tenant.id", b"t1");
        r.int("status", 200);
        let v = json(&r);
        assert_eq!(v["auth"]["result"], "valid");
        assert_eq!(v["auth"]["kid"], "k1");
        assert_eq!(v["app"]["tenant"]["id"], "t1");
        assert_eq!(v["status"], 200);
        assert!(r.remove("auth.kid"));
        assert!(json(&r)["auth"].get("kid").is_none());
    }

    #[test]
    fn empty_fields_and_objects_are_omitted() {
        let mut r = Record::new();
        r.str("a", b"");
        r.auto("b", b"-");
        r.set("c", Value::Obj(vec![]));
        r.millis("d", -1);
        assert_eq!(r.to_json(), b"{\"d\":0.000}");
        r.remove("d");
        assert_eq!(r.to_json(), b"{}");
    }

    #[test]
    fn numbers_in_nature() {
        for ok in ["0", "-1", "0.005", "1e10", "2.5E-3", "123"] {
            assert!(is_json_number(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "0.004, 0.010",
            "1e",
            "NaN",
            "+1",
            "1 ",
        ] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
        let mut r = Record::new();
        r.auto("t", b"0.004, 0.010");
        r.auto("u", b"0.004");
        assert_eq!(r.to_json(), br#"{"t":"0.004, 0.010","u":0.004}"#);
    }

    /// Found by the log_encoder fuzz target: `auto` wrote `-0.5e357` as a number, and a line
    /// holding a number beyond a double's range is refused by serde_json (and most readers).
    #[test]
    fn numbers_beyond_a_double_are_strings() {
        let huge_int = "9".repeat(400);
        for big in ["-0.5e357", "1e999", "1E+309", huge_int.as_str()] {
            assert!(!is_json_number(big.as_bytes()), "{big}");
            let mut r = Record::new();
            r.auto("n", big.as_bytes());
            assert_eq!(json(&r)["n"], big, "{big}");
        }
        for fine in [
            "1e308",
            "-1.7976931348623157e308",
            "1e-999",
            "12345678901234567890123",
        ] {
            assert!(is_json_number(fine.as_bytes()), "{fine}");
            let mut r = Record::new();
            r.auto("n", fine.as_bytes());
            assert!(json(&r)["n"].is_number(), "{fine}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339_ms(1_795_665_912, 345), "2026-11-26T04:05:12.345Z");
    }

    #[test]
    fn cached_timestamps() {
        let mut c = Rfc3339Cache::default();
        assert_eq!(c.format(1_795_665_912, 345), b"2026-11-26T04:05:12.345Z");
        assert_eq!(c.format(1_795_665_912, 7), b"2026-11-26T04:05:12.007Z");
        assert_eq!(c.format(1_795_665_913, 999), b"2026-11-26T04:05:13.999Z");
    }

    #[test]
    fn traceparent() {
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, s) = parse_traceparent(tp).expect("valid");
        assert_eq!(&t, b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&s, b"00f067aa0ba902b7");
        assert!(
            parse_traceparent(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent(b"garbage").is_none());
    }
}

//! JSON log records: a sequence of `str`/`auto`/`int`/`set`/`remove` calls with arbitrary
//! names and values; the record must always serialize to valid UTF-8 that `serde_json` parses
//! as an object, and the last value written must read back.
#![no_main]

use gateway_core::log::{is_json_number, parse_traceparent, rfc3339_ms, write_str, Record, Value};
use libfuzzer_sys::fuzz_target;
use serde_json::Value as J;

/// Longest field name used: a dotted name nests one level per dot, and `serde_json` stops at
/// 128 levels. Field names come from the configuration, never from requests.
const MAX_NAME: usize = 120;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    /// A length byte then that many bytes (255: the rest of the input).
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let n = self.byte()?;
        let n = if n == 255 {
            self.0.len()
        } else {
            (n as usize).min(self.0.len())
        };
        let (c, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(c)
    }
    fn name(&mut self) -> Option<String> {
        let c = self.chunk()?;
        Some(String::from_utf8_lossy(&c[..c.len().min(MAX_NAME)]).into_owned())
    }
    fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte()?;
        }
        Some(u64::from_le_bytes(b))
    }
}

/// What the last write should read back as.
enum Expect {
    Str(String),
    Num(Vec<u8>),
    Int(i64),
}

fn lookup<'a>(v: &'a J, name: &str) -> Option<&'a J> {
    name.split('.')
        .try_fold(v, |v, part| v.as_object()?.get(part))
}

fn check_number(s: &[u8]) {
    let ours = is_json_number(s);
    let theirs = serde_json::from_slice::<J>(s);
    let plain = !s.is_empty() && !s.iter().any(|c| c.is_ascii_whitespace());
    if plain {
        if let Ok(J::Number(_)) = theirs {
            assert!(
                ours,
                "serde_json reads a number that is_json_number refuses"
            );
        }
    }
    if ours {
        assert!(
            matches!(theirs, Ok(J::Number(_))),
            "is_json_number accepts what serde_json does not read as a number: {:?} ({:?})",
            String::from_utf8_lossy(s),
            theirs.err().map(|e| e.to_string())
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut rec = Record::new();
    let mut last: Option<(String, Expect)> = None;
    while let Some(op) = input.byte() {
        let Some(name) = input.name() else { break };
        match op % 8 {
            0 => {
                let v = input.chunk().unwrap_or_default();
                rec.str(&name, v);
                last = (!v.is_empty())
                    .then(|| (name, Expect::Str(String::from_utf8_lossy(v).into_owned())));
            }
            1 => {
                let v = input.chunk().unwrap_or_default();
                rec.auto(&name, v);
                last = if v.is_empty() || v == b"-" {
                    None
                } else if is_json_number(v) {
                    Some((name, Expect::Num(v.to_vec())))
                } else {
                    Some((name, Expect::Str(String::from_utf8_lossy(v).into_owned())))
                };
            }
            2 => {
                let n = input.u64().unwrap_or(0) as i64;
                rec.int(&name, n);
                last = Some((name, Expect::Int(n)));
            }
            3 => {
                let v = input.chunk().unwrap_or_default();
                rec.set(&name, Value::Str(v.to_vec()));
                last = Some((name, Expect::Str(String::from_utf8_lossy(v).into_owned())));
            }
            4 => {
                // A nested object built by hand (possibly empty). Names are unique, as the
                // glue's objects are: `set` only ever creates one member per name.
                let n = input.byte().unwrap_or(0) % 4;
                let mut fields: Vec<(String, Value)> = Vec::new();
                for _ in 0..n {
                    let k = input.name().unwrap_or_default();
                    let v = input.chunk().unwrap_or_default();
                    if !fields.iter().any(|(f, _)| *f == k) {
                        fields.push((k, Value::Str(v.to_vec())));
                    }
                }
                rec.set(&name, Value::Obj(fields));
                last = None;
            }
            5 => {
                let had = rec.remove(&name);
                let json: J = serde_json::from_slice(&rec.to_json()).expect("valid JSON");
                if had && !name.contains('.') {
                    assert!(json.get(&name).is_none(), "removed field still there");
                }
                last = None;
            }
            6 => check_number(input.chunk().unwrap_or_default()),
            _ => {
                let secs = input.u64().unwrap_or(0) as i64;
                let ms = input.u64().unwrap_or(0) as u32;
                let t = rfc3339_ms(secs, ms);
                if (0..=253_402_300_799).contains(&secs) {
                    assert_eq!(t.len(), 24, "{t}");
                    assert!(t.ends_with('Z'));
                }
                let mut out = Vec::new();
                write_str(name.as_bytes(), &mut out);
                let back: String = serde_json::from_slice(&out).expect("write_str is a string");
                assert_eq!(back, name);
                let _ = parse_traceparent(name.as_bytes());
            }
        }
    }

    let out = rec.to_json();
    let text = std::str::from_utf8(&out).expect("record is UTF-8");
    let json: J =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"));
    assert!(json.is_object(), "record is not an object");
    let mut line = Vec::new();
    rec.write_line(&mut line);
    assert_eq!(line.strip_suffix(b"\n"), Some(&out[..]));

    if let Some((name, want)) = last {
        let got = lookup(&json, &name).unwrap_or_else(|| panic!("{name:?} missing in {text}"));
        match want {
            Expect::Str(s) if s.is_empty() => {}
            Expect::Str(s) => assert_eq!(got.as_str(), Some(s.as_str()), "{name:?}"),
            Expect::Int(n) => assert_eq!(got.as_i64(), Some(n), "{name:?}"),
            Expect::Num(raw) => {
                let n: J = serde_json::from_slice(&raw).expect("number parses");
                assert_eq!(got, &n, "{name:?}");
            }
        }
    }
});

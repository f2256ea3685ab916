//! Strict JSON parsing for JOSE headers, claim sets and key files.
//!
//! `serde_json` keeps the last of duplicate member names; RFC 7515 section 5.2 and RFC 8725
//! want such input refused (two parsers could otherwise disagree about `alg` or `sub`). This
//! visitor builds a `serde_json::Value` and fails on a duplicate name at any depth, and on
//! nesting deeper than [`MAX_JSON_DEPTH`].

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

/// Maximum nesting of arrays/objects (the top-level object is depth 1).
pub const MAX_JSON_DEPTH: u32 = 32;

const DUPLICATE: &str = "duplicate member name";
const TOO_DEEP: &str = "nested too deeply";

/// Why strict JSON parsing failed; carries no input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not valid UTF-8.
    Utf8,
    /// Valid JSON, but the top-level value is not an object.
    NotObject,
    /// A member name appears twice in one object.
    Duplicate { line: usize, column: usize },
    /// Nesting deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// Syntax error, premature end or out-of-range number.
    Syntax { line: usize, column: usize },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Utf8 => f.write_str("invalid UTF-8"),
            JsonError::NotObject => f.write_str("not a JSON object"),
            JsonError::Duplicate { line, column } => {
                write!(f, "duplicate member name at line {line} column {column}")
            }
            JsonError::TooDeep => write!(f, "JSON nested deeper than {MAX_JSON_DEPTH} levels"),
            JsonError::Syntax { line, column } => {
                write!(f, "invalid JSON at line {line} column {column}")
            }
        }
    }
}

impl JsonError {
    /// A fixed description for token errors (no position: tokens are one line anyway).
    pub(crate) fn short(&self) -> &'static str {
        match self {
            JsonError::Utf8 => "invalid UTF-8",
            JsonError::NotObject => "not a JSON object",
            JsonError::Duplicate { .. } => "duplicate member name",
            JsonError::TooDeep => "JSON nested too deeply",
            JsonError::Syntax { .. } => "invalid JSON",
        }
    }
}

/// Parses `bytes` (which must be UTF-8) as a JSON object with the strict rules above.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Utf8)?;
    parse_object_str(text)
}

/// As [`parse_object`], for text already known to be UTF-8.
pub(crate) fn parse_object_str(text: &str) -> Result<Map<String, Value>, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictSeed { depth: 0 }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(classify)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotObject),
    }
}

fn classify(e: serde_json::Error) -> JsonError {
    let (line, column) = (e.line(), e.column());
    // Our own custom errors are recognisable by their fixed text; serde_json appends the
    // position, so compare the prefix.
    let msg = e.to_string();
    if msg.starts_with(NOT_OBJECT) {
        JsonError::NotObject
    } else if msg.starts_with(DUPLICATE) {
        JsonError::Duplicate { line, column }
    } else if msg.starts_with(TOO_DEEP) || msg.starts_with("recursion limit exceeded") {
        JsonError::TooDeep
    } else {
        JsonError::Syntax { line, column }
    }
}

struct StrictSeed {
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor { depth: self.depth })
    }
}

struct StrictVisitor {
    depth: u32,
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_JSON_DEPTH {
            return Err(A::Error::custom(TOO_DEEP));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed { depth })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_JSON_DEPTH {
            return Err(A::Error::custom(TOO_DEEP));
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(DUPLICATE));
            }
            let value = map.next_value_seed(StrictSeed { depth })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

// ---------------------------------------------------------------------------------------
// Validation without building: the request path of token verification.

/// A top-level member's value, as [`scan_object`] hands it back for the names asked for.
#[derive(Debug, PartialEq)]
pub(crate) enum Top<'de> {
    /// A string (borrowed from the input when it has no escape).
    Str(Cow<'de, str>),
    /// A non-negative integer that fits in `u64`.
    U64(u64),
    /// A negative integer that fits in `i64`.
    I64(i64),
    /// Any other number (fraction, exponent, or an integer beyond 64 bits), as serde_json reads it.
    F64(f64),
    /// An array whose elements are all strings.
    Strings(Vec<Cow<'de, str>>),
    /// Anything else (object, other array, `true`, `false`, `null`).
    Other,
}

/// Checks `text` with exactly the rules of [`parse_object_str`] (serde_json's grammar, the
/// top level an object, no duplicate member name at any depth, at most [`MAX_JSON_DEPTH`]
/// levels) without building it: nothing is allocated for objects of up to 16 members and
/// strings without escapes. For each top-level member named in `names`, its value lands in the
/// same index of the returned array (`None` when absent).
pub(crate) fn scan_object<'de, const N: usize>(
    text: &'de str,
    names: &[&str; N],
) -> Result<[Option<Top<'de>>; N], JsonError> {
    let mut out: [Option<Top<'de>>; N] = std::array::from_fn(|_| None);
    let mut de = serde_json::Deserializer::from_str(text);
    TopSeed {
        names,
        out: &mut out,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(classify)?;
    Ok(out)
}

const NOT_OBJECT: &str = "top level is not an object";

/// Member names seen so far in one object: inline for the first 16, then a hash set (so a
/// hostile object with thousands of members costs linear time).
struct Names<'de> {
    inline: [Cow<'de, str>; 16],
    /// [`tag`] of each inline name: most comparisons end at one integer compare.
    tags: [u64; 16],
    len: usize,
    spill: Option<std::collections::HashSet<Cow<'de, str>>>,
}

/// A name's length and first 8 bytes in one integer: names with different tags differ.
fn tag(name: &str) -> u64 {
    let b = name.as_bytes();
    let mut head = [0u8; 8];
    let n = b.len().min(8);
    head[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(head) ^ ((b.len() as u64) << 56)
}

impl<'de> Names<'de> {
    fn new() -> Self {
        Names {
            inline: std::array::from_fn(|_| Cow::Borrowed("")),
            tags: [0; 16],
            len: 0,
            spill: None,
        }
    }

    /// Records `name` (whose [`tag`] is `t`); false if it was already there.
    fn insert(&mut self, name: Cow<'de, str>, t: u64) -> bool {
        if let Some(set) = self.spill.as_mut() {
            return set.insert(name);
        }
        let seen = &self.tags[..self.len];
        if seen
            .iter()
            .zip(&self.inline)
            .any(|(st, sn)| *st == t && *sn == name)
        {
            return false;
        }
        if self.len < self.inline.len() {
            self.inline[self.len] = name;
            self.tags[self.len] = t;
            self.len += 1;
        } else {
            let mut set: std::collections::HashSet<Cow<'de, str>> =
                self.inline.iter_mut().map(std::mem::take).collect();
            set.insert(name);
            self.spill = Some(set);
        }
        true
    }
}

/// A member name, borrowed from the input when it has no escape.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Validates an object's members after `{`, handing each (name, its [`tag`]) to `member`,
/// which reads the value.
fn members<'de, A: MapAccess<'de>>(
    map: &mut A,
    mut member: impl FnMut(&mut A, &str, u64) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut names = Names::new();
    while let Some(key) = map.next_key_seed(KeySeed)? {
        let t = tag(&key);
        // A copy for the callback (free for a borrowed name; an escaped one is rare).
        let name_for_value: Cow<'de, str> = key.clone();
        if !names.insert(key, t) {
            return Err(A::Error::custom(DUPLICATE));
        }
        member(map, &name_for_value, t)?;
    }
    Ok(())
}

/// A value checked and dropped.
#[derive(Clone, Copy)]
struct Skip {
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        finite(v)
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = deeper::<A::Error>(self.depth)?;
        while seq.next_element_seed(Skip { depth })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = deeper::<A::Error>(self.depth)?;
        members(&mut map, |m, _, _| m.next_value_seed(Skip { depth }))
    }
}

fn deeper<E: serde::de::Error>(depth: u32) -> Result<u32, E> {
    if depth >= MAX_JSON_DEPTH {
        return Err(E::custom(TOO_DEEP));
    }
    Ok(depth + 1)
}

fn finite<E: serde::de::Error>(v: f64) -> Result<(), E> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(E::custom("non-finite number"))
    }
}

/// A top-level member's value, kept as a [`Top`].
struct Capture;

impl<'de> DeserializeSeed<'de> for Capture {
    type Value = Top<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Capture {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Top<'de>, E> {
        Ok(Top::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Top<'de>, E> {
        Ok(Top::U64(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Top<'de>, E> {
        finite(v).map(|()| Top::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Top<'de>, E> {
        Ok(Top::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Top<'de>, E> {
        Ok(Top::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Top<'de>, E> {
        Ok(Top::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
        // Inside the top-level object: depth 2.
        let mut strings = Some(Vec::new());
        while let Some(v) = seq.next_element_seed(Element)? {
            match (v, strings.as_mut()) {
                (Some(s), Some(list)) => list.push(s),
                _ => strings = None,
            }
        }
        Ok(strings.map_or(Top::Other, Top::Strings))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top<'de>, A::Error> {
        Skip { depth: 1 }.visit_map(map).map(|()| Top::Other)
    }
}

/// An element of a captured top-level array: its string, or `None` for any other value.
struct Element;

impl<'de> DeserializeSeed<'de> for Element {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        finite(v).map(|()| None)
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip { depth: 2 }.visit_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip { depth: 2 }.visit_map(map).map(|()| None)
    }
}

/// The top-level object: validated, with the named members captured.
struct TopSeed<'o, 'de, const N: usize> {
    names: &'o [&'o str; N],
    out: &'o mut [Option<Top<'de>>; N],
}

impl<'o, 'de, const N: usize> DeserializeSeed<'de> for TopSeed<'o, 'de, N> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'o, 'de, const N: usize> Visitor<'de> for TopSeed<'o, 'de, N> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(A::Error::custom(NOT_OBJECT))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let TopSeed { names, out } = self;
        let tags: [u64; N] = std::array::from_fn(|i| tag(names[i]));
        let find = |name: &str, t: u64| (0..N).find(|&i| tags[i] == t && names[i] == name);
        members(&mut map, |m, name, t| match find(name, t) {
            Some(i) => {
                out[i] = Some(m.next_value_seed(Capture)?);
                Ok(())
            }
            None => m.next_value_seed(Skip { depth: 1 }),
        })
    }
}

/// Whether [`scan_object`] and [`parse_object`] agree on `bytes`: both accept or both refuse,
/// and the members the token code reads directly hold the same values. For the unit tests and
/// the fuzz target `json_scan` (the request path relies on this).
pub(crate) fn validators_agree(bytes: &[u8]) -> bool {
    let full = parse_object(bytes);
    let scan = std::str::from_utf8(bytes)
        .map_err(|_| JsonError::Utf8)
        .and_then(|t| scan_object(t, &["a", "sub", "aud", "exp", "\u{e9}"]));
    match (full, scan) {
        (Ok(map), Ok(tops)) => ["a", "sub", "aud", "exp", "\u{e9}"]
            .iter()
            .zip(tops)
            .all(|(name, top)| same(map.get(*name), top)),
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

fn same(v: Option<&Value>, top: Option<Top<'_>>) -> bool {
    match (v, top) {
        (None, None) => true,
        (Some(Value::String(a)), Some(Top::Str(b))) => *a == b,
        (Some(Value::Number(n)), Some(Top::U64(u))) => n.as_u64() == Some(u),
        (Some(Value::Number(n)), Some(Top::I64(i))) => n.as_i64() == Some(i),
        (Some(Value::Number(n)), Some(Top::F64(f))) => {
            n.as_f64() == Some(f) && n.as_u64().is_none() && n.as_i64().is_none()
        }
        (Some(Value::Array(a)), Some(Top::Strings(b))) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_str() == Some(&*y))
        }
        (Some(Value::Array(a)), Some(Top::Other)) => !a.iter().all(Value::is_string),
        (Some(Value::Object(_) | Value::Bool(_) | Value::Null), Some(Top::Other)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let m = parse_object(br#" {"a":1,"b":[1,2,{"c":null}],"d":{"e":"\u00e9"}} "#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["d"]["e"], "é");
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert!(matches!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(JsonError::Duplicate { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"x":{"a":1,"b":{"c":1,"c":1}}}"#),
            Err(JsonError::Duplicate { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"x":[{"a":1,"a":1}]}"#),
            Err(JsonError::Duplicate { .. })
        ));
        // Escaped spelling of the same name is still the same name.
        assert!(matches!(
            parse_object(br#"{"alg":"HS256","\u0061lg":"none"}"#),
            Err(JsonError::Duplicate { .. })
        ));
    }

    #[test]
    fn refuses_non_objects_and_bad_text() {
        assert_eq!(parse_object(b"[]"), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"\"x\""), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"null"), Err(JsonError::NotObject));
        assert!(matches!(parse_object(b"{"), Err(JsonError::Syntax { .. })));
        assert!(matches!(
            parse_object(b"{} {}"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(b"{\"a\":1,}"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(b"\xef\xbb\xbf{}"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(b"{\"a\":1e999}"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(b"{\"a\":NaN}"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":"\ud800"}"#),
            Err(JsonError::Syntax { .. })
        ));
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}"), Err(JsonError::Utf8));
    }

    #[test]
    fn depth_limit() {
        let ok = format!(
            "{}{}",
            "{\"a\":".repeat(31),
            "1".to_owned() + &"}".repeat(31)
        );
        assert!(parse_object(ok.as_bytes()).is_ok());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonError::TooDeep));
        let very_deep = format!("{{\"a\":{}", "[".repeat(100_000));
        assert_eq!(parse_object(very_deep.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn error_text_never_echoes_input() {
        let e = parse_object(br#"{"secret-name":1,"secret-name":2}"#).unwrap_err();
        assert!(!e.to_string().contains("secret"));
        let e = parse_object(br#"{"a":tru-secret}"#).unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn scan_agrees_with_the_strict_parser() {
        let cases: &[&[u8]] = &[
            br#"{}"#,
            br#" {"a":1} "#,
            br#"{"a":1,"a":2}"#,
            br#"{"a":1,"\u0061":2}"#,
            br#"{"x":{"b":1,"b":2}}"#,
            br#"{"x":[{"b":1,"b":2}]}"#,
            br#"{"sub":"al\"ice","aud":["x","y"],"exp":1e3}"#,
            br#"{"aud":["x",1]}"#,
            br#"{"aud":[]}"#,
            br#"{"aud":[["x"]]}"#,
            br#"{"exp":18446744073709551616}"#,
            br#"{"exp":-1}"#,
            br#"{"exp":-0}"#,
            br#"{"exp":1.5e308}"#,
            br#"{"exp":1e999}"#,
            br#"{"exp":01}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\ud83d\ude00"}"#,
            br#"{"a":"\udc00"}"#,
            "{\"a\":\"\u{1}\"}".as_bytes(),
            b"{\"a\":\"\x7f\"}",
            b"{\"a\":\"\xff\"}",
            b"\xef\xbb\xbf{}",
            br#"[]"#,
            br#""x""#,
            br#"1"#,
            br#"{"a":1,}"#,
            br#"{"a":1}x"#,
            br#"{"a":1} {}"#,
            br#"{"a" :1 , "b" : [ 1 , 2 ] }"#,
            br#"{"a":tru}"#,
            br#"{"a":nul}"#,
            "{\"é\":\"\\u00e9\",\"\\u00e9\":1}".as_bytes(),
            br#"{"a":{"a":{"a":{}}}}"#,
        ];
        for c in cases {
            assert!(validators_agree(c), "{}", String::from_utf8_lossy(c));
        }
        // Depth at the limit and one past it, in objects and arrays.
        for n in [30usize, 31, 32, 33] {
            let objs = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
            assert!(validators_agree(objs.as_bytes()), "objects {n}");
            let arrs = format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
            assert!(validators_agree(arrs.as_bytes()), "arrays {n}");
            let aud = format!("{{\"aud\":{}\"x\"{}}}", "[".repeat(n), "]".repeat(n));
            assert!(validators_agree(aud.as_bytes()), "aud arrays {n}");
        }
        // Many members: the inline list spills into a set; a duplicate far apart is found.
        let mut many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        many.insert(0, '{');
        let dup = format!("{many}\"k3\":0}}");
        let ok = format!("{many}\"z\":0}}");
        assert!(validators_agree(dup.as_bytes()) && parse_object(dup.as_bytes()).is_err());
        assert!(validators_agree(ok.as_bytes()) && parse_object(ok.as_bytes()).is_ok());
        let esc_dup = format!("{many}\"\\u006b3\":0}}");
        assert!(validators_agree(esc_dup.as_bytes()) && parse_object(esc_dup.as_bytes()).is_err());
    }

    #[test]
    fn scan_agrees_on_mutated_documents() {
        // Deterministic mutations (byte flips, insertions, deletions) of a realistic claim set.
        let base = br#"{"sub":"user-1","iss":"https://idp/","aud":["api","x\u0041"],"exp":4102444800,"nbf":1.5,"realm_access":{"roles":["a","b"]},"n":null,"t":true,"e":"\u00e9\n"}"#;
        let alphabet = b"{}[]\",:\\u0123456789abcdeE+-.tfn \t\n\xc3\xa9\x00";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut doc = base.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (doc.len() + 1);
                let b = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < doc.len() => doc[at] = b,
                    1 => doc.insert(at, b),
                    _ if at < doc.len() => {
                        doc.remove(at);
                    }
                    _ => {}
                }
            }
            assert!(validators_agree(&doc), "{}", String::from_utf8_lossy(&doc));
        }
    }
}

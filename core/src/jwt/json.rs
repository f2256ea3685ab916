//! Strict JSON parsing for JOSE headers, claim sets and key files.
//!
//! `serde_json` keeps the last of duplicate member names; RFC 7515 section 5.2 and RFC 8725
//! want such input refused (two parsers could otherwise disagree about `alg` or `sub`). This
//! visitor builds a `serde_json::Value` and fails on a duplicate name at any depth, and on
//! nesting deeper than [`MAX_JSON_DEPTH`].

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
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
    if msg.starts_with(DUPLICATE) {
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
}

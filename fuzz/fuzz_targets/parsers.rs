//! Directive value parsers, the bearer scheme, `traceparent` and claim rules.
//!
//! The input is split at `\n`; every part goes through every parser, and the first parts also
//! make a claim rule (`path`, `op`, values...) checked against a few fixed verified tokens.
//! Round trips are checked where a value has a canonical text form.
#![no_main]

use gateway_core::bearer::bearer_token;
use gateway_core::jwt::sign::{encode_token, Signer};
use gateway_core::jwt::{verify, Alg, ClaimOp, ClaimRule, KeySet, Policy, Verified};
use gateway_core::log::parse_traceparent;
use gateway_core::parse::{
    parse_duration_ms, parse_number, parse_on_off, parse_rate, parse_size, parse_zone,
    split_key_value, ParseError, Rate, MAX_ZONE_NAME,
};
use gateway_core::ratelimit::algo::Algorithm;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Verified tokens whose claims cover every JSON type, for `ClaimRule::check`.
fn tokens() -> &'static [Verified] {
    static T: OnceLock<Vec<Verified>> = OnceLock::new();
    T.get_or_init(|| {
        let jwk = include_bytes!("../../t/keys/hs256.jwk");
        let keys = KeySet::load(jwk).expect("hs256.jwk");
        let signer = Signer::from_file_bytes(Alg::HS256, jwk).expect("signer");
        let payloads = [
            r#"{"sub":"alice","n":2,"f":1.5,"big":12345678901234567890,"neg":-3,"t":true,
               "nul":null,"scope":["read","write",1,false],"realm_access":{"roles":["admin"]},
               "a.b":"dotted","a":{"b":"nested"},"x\\y":"bs","e":"","u":"\u00e9"}"#,
            r#"{"sub":"bob","n":-1e3,"f":"1.5","scope":"read write","t":"true","nul":"",
               "big":1e300,"realm_access":{"roles":"admin"},"a":{"b":{"c":[1,[2]]}}}"#,
            r#"{}"#,
        ];
        payloads
            .iter()
            .map(|p| {
                let t = encode_token(br#"{"alg":"HS256"}"#, p.as_bytes(), &signer).expect("sign");
                verify(t.as_bytes(), &keys, &Policy::default(), 0).expect("verify")
            })
            .collect()
    })
}

fn check_err(e: &ParseError) {
    // The quoted value is cut at 64 input bytes (each may become a 3-byte U+FFFD) plus "...".
    assert!(e.value.len() <= 64 * 3 + 3, "quoted value too long");
    let msg = e.to_string();
    assert!(msg.starts_with("invalid "));
}

fn parsers(s: &[u8]) {
    match parse_size(s) {
        Ok(n) => {
            assert!(n as u64 <= isize::MAX as u64);
            assert_eq!(parse_size(&n.to_string()), Ok(n), "size round trip");
            if let Some(b'k' | b'K' | b'm' | b'M' | b'g' | b'G') = s.last() {
                assert_eq!(n % 1024, 0);
            }
        }
        Err(e) => check_err(&e),
    }
    match parse_duration_ms(s) {
        Ok(ms) => {
            assert!(ms <= i64::MAX as u64);
            assert_eq!(
                parse_duration_ms(&format!("{ms}ms")),
                Ok(ms),
                "time round trip"
            );
            if ms % 1000 == 0 {
                assert_eq!(parse_duration_ms(&(ms / 1000).to_string()), Ok(ms));
            }
        }
        Err(e) => check_err(&e),
    }
    match parse_rate(s) {
        Ok(r) => {
            assert!((1..=Rate::MAX_COUNT).contains(&r.count));
            assert!([1_000, 60_000, 3_600_000, 86_400_000].contains(&r.period_ms));
            assert_eq!(parse_rate(&r.to_string()), Ok(r), "rate round trip");
        }
        Err(e) => check_err(&e),
    }
    match parse_number(s) {
        Ok(n) => {
            assert!(s.iter().all(u8::is_ascii_digit));
            assert_eq!(parse_number(&n.to_string()), Ok(n));
        }
        Err(e) => check_err(&e),
    }
    match parse_on_off(s) {
        Ok(on) => assert!(s.eq_ignore_ascii_case(if on { b"on" } else { b"off" })),
        Err(e) => check_err(&e),
    }
    match split_key_value(s) {
        Ok((k, v)) => {
            assert!(!k.is_empty() && !v.is_empty());
            assert!(!k.contains(&b'='));
            assert_eq!([k, b"=", v].concat(), s);
        }
        Err(e) => check_err(&e),
    }
    for require_size in [false, true] {
        match parse_zone(s, require_size) {
            Ok((name, size)) => {
                assert!(!name.is_empty() && name.len() <= MAX_ZONE_NAME);
                assert!(name
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')));
                assert_eq!(size.is_some(), require_size);
                let text = match size {
                    Some(sz) => [name, b":", sz.to_string().as_bytes()].concat(),
                    None => name.to_vec(),
                };
                assert_eq!(parse_zone(&text, require_size), Ok((name, size)));
            }
            Err(e) => check_err(&e),
        }
    }
    if let Some(t) = bearer_token(s) {
        assert!(!t.is_empty());
        assert_eq!(t, t.trim_ascii());
        let off = t.as_ptr() as usize - s.as_ptr() as usize;
        assert!(off + t.len() <= s.len(), "token not inside the header");
    }
    if let Some((trace, span)) = parse_traceparent(s) {
        assert_eq!((trace.len(), span.len()), (32, 16));
        for id in [&trace[..], &span[..]] {
            assert!(id.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            assert!(id.iter().any(|&c| c != b'0'));
        }
    }
    if let Some(a) = Algorithm::parse(s) {
        assert_eq!(a.as_str().as_bytes(), s);
    }
}

fn claim_rule(path: &str, op: &str, values: &[&str]) {
    let Ok(rule) = ClaimRule::parse(path, op, values) else {
        return;
    };
    assert_eq!(rule.to_string(), format!("{path} {op}"));
    assert!(!rule.path().is_empty());
    assert!(rule.path().iter().all(|s| !s.is_empty()));
    // The complementary operator, when there is one.
    let other = match rule.op() {
        ClaimOp::Eq => Some("ne"),
        ClaimOp::Ne => Some("eq"),
        ClaimOp::Gt => Some("lt"),
        ClaimOp::Lt => Some("gt"),
        _ => None,
    };
    let other = other.map(|o| ClaimRule::parse(path, o, values).expect("complement parses"));
    for v in tokens() {
        let holds = rule.check(v);
        let Some(other) = &other else { continue };
        let other_holds = other.check(v);
        assert!(!(holds && other_holds), "{rule} and {other} both hold");
        if matches!(rule.op(), ClaimOp::Eq | ClaimOp::Ne) {
            let scalar = matches!(
                v.claim_path(rule.path()),
                Some(serde_json::Value::String(_) | serde_json::Value::Number(_))
                    | Some(serde_json::Value::Bool(_))
            );
            assert_eq!(holds || other_holds, scalar, "{rule} on a scalar decides");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.split(|&b| b == b'\n').take(16).collect();
    for p in &parts {
        parsers(p);
    }
    parsers(data);
    let strs: Vec<String> = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if let [path, op, values @ ..] = strs.as_slice() {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        claim_rule(path, op, &values);
    }
});

//! Tokens against a key set holding every key type (RSA, EC P-256/P-384/P-521, Ed25519, Ed448,
//! HMAC, and a PEM key without `kid`): both verification libraries' paths.
//!
//! Two modes, chosen by the first byte:
//! * `0x00`/`0x01` then `HEADER 0x00 PAYLOAD`: the header and payload bytes are signed with the
//!   HS256 (`0x00`) or Ed25519 (`0x01`) test key, so that the code after the signature check
//!   (payload JSON, claim types, claim rules) is reached with arbitrary JSON;
//! * anything else: the whole input is the token.
//!
//! Never panics; a verified token's payload is a JSON object equal to what `payload()` holds,
//! its time claims are in range, and every error code is one of the documented ones.
#![no_main]

use gateway_core::jwt::sign::{encode_token, Signer};
use gateway_core::jwt::{
    check_claims, decode_and_verify_signature, var_string, verify, Alg, ClaimRule, JwtError,
    KeySet, Policy, TokenCache, MAX_NUMERIC_DATE,
};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex, OnceLock};

const NOW: i64 = 1_700_000_000;

const CODES: [&str; 13] = [
    "missing",
    "too_large",
    "malformed",
    "alg_not_allowed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_audience",
    "bad_type",
    "claim_mismatch",
    "key_unavailable",
];

struct Fixture {
    keys: KeySet,
    permissive: Policy,
    strict: Policy,
    hs256: Signer,
    ed25519: Signer,
    cache: Mutex<TokenCache>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut keys = KeySet::load(include_bytes!("../../t/keys/jwks.json")).expect("jwks.json");
        keys.extend(KeySet::load(include_bytes!("../../t/keys/hmac.jwks")).expect("hmac.jwks"));
        keys.extend(
            KeySet::load(include_bytes!("../../t/keys/ec256-other.pub.pem"))
                .expect("ec256-other.pub.pem"),
        );
        // ES512 and Ed448: verified by OpenSSL (like RSA), the others by ring.
        keys.extend(KeySet::load(include_bytes!("../../t/keys/ec521.jwk")).expect("ec521.jwk"));
        keys.extend(KeySet::load(include_bytes!("../../t/keys/ed448.jwk")).expect("ed448.jwk"));
        let permissive = Policy {
            leeway: u32::MAX,
            ..Policy::default()
        };
        let rules = [
            ("sub", "eq", &["alice"][..]),
            ("scope", "any", &["read", "write"][..]),
            ("realm_access.roles", "all", &["admin"][..]),
            ("n", "gt", &["1.5"][..]),
            ("n", "lt", &["-1e3"][..]),
            ("https://example\\.com/x", "in", &["a", "1", "true"][..]),
            ("plan", "ne", &["free"][..]),
        ];
        let strict = Policy {
            issuers: vec!["https://issuer.example".into()],
            audiences: vec!["api".into()],
            typ: Some("at+jwt".into()),
            leeway: 30,
            require_exp: true,
            claim_rules: rules
                .iter()
                .map(|(p, o, v)| ClaimRule::parse(p, o, v).expect("rule"))
                .collect(),
            ..Policy::default()
        };
        let hs256 = Signer::from_file_bytes(Alg::HS256, include_bytes!("../../t/keys/hs256.jwk"))
            .expect("hs256.jwk");
        let ed25519 =
            Signer::from_file_bytes(Alg::EdDSA, include_bytes!("../../t/keys/ed25519.key.pem"))
                .expect("ed25519.key.pem");
        Fixture {
            keys,
            permissive,
            strict,
            hs256,
            ed25519,
            cache: Mutex::new(TokenCache::with_seed(64, [7; 16])),
        }
    })
}

fn check_error(e: &JwtError, token: &[u8]) {
    assert!(
        CODES.contains(&e.code()),
        "undocumented code {:?}",
        e.code()
    );
    // Messages never echo the token (it is a credential). Checked for token-like inputs only
    // (base64url segments and dots): any text could spell out a piece of a fixed message.
    let msg = e.to_string();
    let token_like = token
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if token.len() >= 16 && token_like && token.contains(&b'.') {
        let t = std::str::from_utf8(token).expect("ASCII");
        assert!(!msg.contains(t), "error message contains the token: {msg}");
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // In signing mode: the signer's algorithm and kid, for the "must not be bad_signature" check.
    let mut signed_as: Option<(Alg, &str, Option<String>)> = None;
    let token: Vec<u8> = match data.split_first() {
        Some((&mode @ (0 | 1), rest)) => {
            let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let header = &rest[..cut];
            let payload = rest.get(cut + 1..).unwrap_or_default();
            let (signer, kid) = if mode == 0 {
                (&f.hs256, "hs256")
            } else {
                (&f.ed25519, "ed25519")
            };
            let token = encode_token(header, payload, signer).expect("signing");
            // What a lenient reading of the header says; only used to decide whether the
            // signature must have verified.
            if let Ok(serde_json::Value::Object(h)) = serde_json::from_slice(header) {
                if h.get("alg").and_then(|a| a.as_str()) == Some(signer.alg().name()) {
                    let tkid = match h.get("kid") {
                        None => Some(None),
                        Some(serde_json::Value::String(k)) => Some(Some(k.clone())),
                        Some(_) => None,
                    };
                    if let Some(tkid) = tkid {
                        signed_as = Some((signer.alg(), kid, tkid));
                    }
                }
            }
            token.into_bytes()
        }
        _ => data.to_vec(),
    };

    let result = verify(&token, &f.keys, &f.permissive, NOW);
    match &result {
        Err(e) => {
            check_error(e, &token);
            if let Some((_, kid, tkid)) = &signed_as {
                if tkid.is_none() || tkid.as_deref() == Some(*kid) {
                    assert_ne!(
                        e.code(),
                        "bad_signature",
                        "a token signed with a configured key failed its signature check"
                    );
                }
            }
        }
        Ok(v) => {
            assert_eq!(v.token_len(), token.len());
            assert!(token.len() <= f.permissive.max_token_size);
            assert!(f.permissive.effective_algs(&f.keys).contains(v.alg()));
            let parsed: serde_json::Value =
                serde_json::from_str(v.payload_json()).expect("payload_json parses");
            assert_eq!(parsed, serde_json::Value::Object(v.payload().clone()));
            for t in [v.exp(), v.nbf(), v.iat()].into_iter().flatten() {
                assert!((0..=MAX_NUMERIC_DATE).contains(&t), "time claim {t}");
            }
            assert_eq!(v.sub().is_some(), v.payload().contains_key("sub"));
            for (_, value) in v.payload().iter().chain(v.header_map().iter()) {
                let _ = var_string(value);
            }
            let _ = v.audiences().count();
            // The same token through the two-step path used by the glue, and the strict policy.
            let v2 = decode_and_verify_signature(
                &token,
                &f.keys,
                f.permissive.effective_algs(&f.keys),
                f.permissive.max_token_size,
            )
            .expect("decode_and_verify_signature agrees with verify");
            assert!(check_claims(&v2, &f.permissive, NOW).is_ok());
            if let Err(e) = check_claims(&v2, &f.strict, NOW) {
                check_error(&e, &token);
            }
            let mut cache = f.cache.lock().unwrap_or_else(|p| p.into_inner());
            let id = f.keys.id();
            cache.insert(id, &token, Arc::new(v2), NOW);
            let _ = cache.get(id, &token, NOW);
        }
    }
});

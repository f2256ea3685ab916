//! End-to-end tests of the JWT core: every algorithm, and one test (or more) per item of
//! `SECURITY-CASES.md` that applies to the pure core (items 11 and 12 are about request
//! headers and live in the glue; bearer parsing is `crate::bearer`). 13 and 14 have their
//! core parts here (key-set content, error texts).

#![allow(clippy::field_reassign_with_default)]

use super::sign::{b64url, encode_token, encode_with_signature, signing_input, Signer};
use super::*;
use ring::rand::SystemRandom;
use ring::signature::{self as rsig, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use std::sync::Arc;

const RSA_KEY: &str = include_str!("testdata/rsa2048.key.pem");
const RSA_PUB: &str = include_str!("testdata/rsa2048.pub.pem");
const RSA_PKCS1: &str = include_str!("testdata/rsa2048.pkcs1.pem");
const RSA1024_PUB: &str = include_str!("testdata/rsa1024.pub.pem");
const EC256_KEY: &str = include_str!("testdata/ec256.key.pem");
const EC256_PUB: &str = include_str!("testdata/ec256.pub.pem");
const EC384_KEY: &str = include_str!("testdata/ec384.key.pem");
const EC384_PUB: &str = include_str!("testdata/ec384.pub.pem");
const EC521_KEY: &str = include_str!("testdata/ec521.key.pem");
const EC521_PUB: &str = include_str!("testdata/ec521.pub.pem");
const ED448_KEY: &str = include_str!("testdata/ed448.key.pem");
const ED448_PUB: &str = include_str!("testdata/ed448.pub.pem");
const ED_KEY: &str = include_str!("testdata/ed25519.key.pem");
const ED_PUB: &str = include_str!("testdata/ed25519.pub.pem");

const NOW: i64 = 1_700_000_000;
const SECRET64: &[u8; 64] = b"0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789ABCDEF";

fn signer(alg: Alg) -> Signer {
    let pem = match alg {
        Alg::ES256 => EC256_KEY,
        Alg::ES384 => EC384_KEY,
        Alg::ES512 => EC521_KEY,
        Alg::EdDSA => ED_KEY,
        a if a.is_hmac() => return Signer::hmac(alg, SECRET64).unwrap(),
        _ => RSA_KEY,
    };
    Signer::from_file_bytes(alg, pem.as_bytes()).unwrap()
}

fn public_pem(alg: Alg) -> &'static str {
    match alg {
        Alg::ES256 => EC256_PUB,
        Alg::ES384 => EC384_PUB,
        Alg::ES512 => EC521_PUB,
        Alg::EdDSA => ED_PUB,
        _ => RSA_PUB,
    }
}

/// A public JWK (with `kid`) from a PEM public key.
fn jwk(pem: &str, kid: &str) -> Value {
    let ks = KeySet::load(pem.as_bytes()).unwrap();
    let mut m = ks.keys()[0].to_public_jwk().unwrap();
    m.insert("kid".into(), kid.into());
    Value::Object(m)
}

fn oct(secret: &[u8], kid: Option<&str>, alg: Option<&str>) -> Value {
    let mut v = json!({"kty": "oct", "k": b64url(secret)});
    if let Some(k) = kid {
        v["kid"] = k.into();
    }
    if let Some(a) = alg {
        v["alg"] = a.into();
    }
    v
}

fn jwks(keys: Vec<Value>) -> KeySet {
    KeySet::load(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

/// One key of every type, with kids "rsa", "ec256", "ec384", "ec521", "ed", "hmac".
fn all_keys() -> KeySet {
    jwks(vec![
        jwk(RSA_PUB, "rsa"),
        jwk(EC256_PUB, "ec256"),
        jwk(EC384_PUB, "ec384"),
        jwk(EC521_PUB, "ec521"),
        jwk(ED_PUB, "ed"),
        oct(SECRET64, Some("hmac"), None),
    ])
}

fn kid_for(alg: Alg) -> &'static str {
    match alg {
        Alg::ES256 => "ec256",
        Alg::ES384 => "ec384",
        Alg::ES512 => "ec521",
        Alg::EdDSA => "ed",
        a if a.is_hmac() => "hmac",
        _ => "rsa",
    }
}

fn claims() -> Value {
    json!({"sub": "alice", "iss": "https://issuer.example", "aud": "api", "exp": NOW + 3600, "iat": NOW})
}

fn mint_raw(s: &Signer, header: &str, payload: &str) -> String {
    encode_token(header.as_bytes(), payload.as_bytes(), s).unwrap()
}

fn mint(alg: Alg, header: Value, payload: Value) -> String {
    mint_raw(&signer(alg), &header.to_string(), &payload.to_string())
}

fn std_token(alg: Alg) -> String {
    mint(
        alg,
        json!({"alg": alg.name(), "kid": kid_for(alg), "typ": "JWT"}),
        claims(),
    )
}

fn run(token: &str, keys: &KeySet, policy: &Policy) -> Result<Verified, JwtError> {
    verify(token.as_bytes(), keys, policy, NOW)
}

fn code(r: Result<Verified, JwtError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn flip_sig_bit(token: &str, bit: usize) -> String {
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut s = b64::decode(sig.as_bytes()).unwrap();
    let i = bit / 8 % s.len();
    s[i] ^= 1 << (bit % 8);
    format!("{rest}.{}", b64url(&s))
}

fn with_sig(token: &str, sig: &[u8]) -> String {
    let (rest, _) = token.rsplit_once('.').unwrap();
    format!("{rest}.{}", b64url(sig))
}

// ---------------------------------------------------------------------------------------
// Every algorithm: valid token accepted, one bit off refused.

#[test]
fn every_algorithm_accepts_valid_and_refuses_one_bit_off() {
    let keys = all_keys();
    let policy = Policy::default();
    for alg in Alg::ALL {
        let t = std_token(alg);
        let v = run(&t, &keys, &policy).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.alg(), alg);
        assert_eq!(v.kid(), Some(kid_for(alg)));
        assert_eq!(v.sub(), Some("alice"));
        let sig_bits = b64::decode(t.rsplit_once('.').unwrap().1.as_bytes())
            .unwrap()
            .len()
            * 8;
        for bit in [0, 7, sig_bits / 2, sig_bits - 1] {
            assert_eq!(
                code(run(&flip_sig_bit(&t, bit), &keys, &policy)),
                "bad_signature",
                "{alg} bit {bit}"
            );
        }
        // A changed payload under the old signature.
        let (h, rest) = t.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let forged = format!("{h}.{}.{s}", b64url(br#"{"sub":"admin"}"#));
        assert_eq!(code(run(&forged, &keys, &policy)), "bad_signature", "{alg}");
        // Without kid, the key is found by type and alg.
        let nokid = mint(alg, json!({"alg": alg.name()}), claims());
        assert_eq!(code(run(&nokid, &keys, &policy)), "ok", "{alg} without kid");
        // With the key loaded from PEM (no kid).
        if !alg.is_hmac() {
            let pem_keys = KeySet::load(public_pem(alg).as_bytes()).unwrap();
            assert_eq!(code(run(&nokid, &pem_keys, &policy)), "ok", "{alg} PEM");
        }
    }
}

#[test]
fn verified_accessors() {
    let payload = r#"{"sub":"alice","exp":1700003600,"nbf":1699999000,"iat":1699999999.9,"realm_access":{"roles":["a","b"]},"a.b":1,"aud":["x","y"]}"#;
    let t = mint_raw(
        &signer(Alg::HS256),
        r#"{"alg":"HS256","typ":"at+jwt","x":{"y":1}}"#,
        payload,
    );
    let keys = all_keys();
    let v = run(&t, &keys, &Policy::default()).unwrap();
    assert_eq!(v.payload_json(), payload);
    assert_eq!(v.exp(), Some(1_700_003_600));
    assert_eq!(v.nbf(), Some(1_699_999_000));
    assert_eq!(v.iat(), Some(1_699_999_999));
    assert_eq!(v.kid(), None);
    assert_eq!(v.typ(), Some("at+jwt"));
    assert_eq!(v.header("x"), Some(&json!({"y": 1})));
    assert_eq!(
        v.claim(&["realm_access", "roles"]),
        Some(&json!(["a", "b"]))
    );
    assert_eq!(v.claim(&["a.b"]), Some(&json!(1)));
    assert_eq!(v.claim(&["realm_access", "nope"]), None);
    assert_eq!(v.claim(&["sub", "x"]), None);
    assert_eq!(v.claim(&[]), None);
    assert_eq!(v.audiences().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(v.token_len(), t.len());
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 1: alg none in every spelling, empty or not-empty signature.

#[test]
fn case01_alg_none_never_accepted() {
    let keys = all_keys();
    let mut open = Policy::default();
    open.algorithms = Some(AlgSet::ALL);
    for name in ["none", "None", "NONE", "nOnE", "NoNe"] {
        let h = json!({"alg": name}).to_string();
        let p = claims().to_string();
        let empty = encode_with_signature(h.as_bytes(), p.as_bytes(), b"");
        let hs = encode_with_signature(
            h.as_bytes(),
            p.as_bytes(),
            &signer(Alg::HS256).sign(b"x").unwrap(),
        );
        let trailing = format!("{}.{}.", b64url(h.as_bytes()), b64url(p.as_bytes()));
        let two = format!("{}.{}", b64url(h.as_bytes()), b64url(p.as_bytes()));
        for t in [&empty, &hs, &trailing] {
            for policy in [&Policy::default(), &open] {
                assert_eq!(code(run(t, &keys, policy)), "alg_not_allowed", "{name}");
            }
            let r = decode_and_verify_signature(t.as_bytes(), &keys, AlgSet::ALL, usize::MAX);
            assert_eq!(r.unwrap_err().code(), "alg_not_allowed");
        }
        assert_eq!(code(run(&two, &keys, &open)), "malformed");
        // With a kid naming an HMAC key, too.
        let hk = json!({"alg": name, "kid": "hmac"}).to_string();
        let t = encode_with_signature(hk.as_bytes(), p.as_bytes(), b"");
        assert_eq!(code(run(&t, &keys, &open)), "alg_not_allowed");
        assert!(Alg::from_name(name).is_none());
        assert!(name.parse::<Alg>().is_err());
    }
    // No way to put "none" in an allow-list.
    assert!("none".parse::<Alg>().unwrap_err().contains("never"));
    // alg missing, null, non-string, empty, unknown.
    for h in [
        json!({}),
        json!({"alg": null}),
        json!({"alg": 1}),
        json!({"alg": ["HS256"]}),
    ] {
        let t = encode_with_signature(h.to_string().as_bytes(), b"{}", b"sig");
        assert_eq!(code(run(&t, &keys, &open)), "malformed", "{h}");
    }
    for name in ["", "hs256", "HS256 ", "RS1", "ES521", "Ed448", "PS256\u{0}"] {
        let t = encode_with_signature(json!({"alg": name}).to_string().as_bytes(), b"{}", b"sig");
        assert_eq!(code(run(&t, &keys, &open)), "alg_not_allowed", "{name:?}");
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 2: key confusion (HS256 with a public key as the secret).

#[test]
fn case02_key_confusion_refused() {
    for (pem, kid) in [
        (RSA_PUB, "rsa"),
        (EC256_PUB, "ec256"),
        (EC384_PUB, "ec384"),
        (ED_PUB, "ed"),
    ] {
        let der = pem::parse(pem).unwrap().into_contents();
        let jwk_v = jwk(pem, kid);
        let jwk_text = jwk_v.to_string();
        let pem_keys = KeySet::load(pem.as_bytes()).unwrap();
        let jwk_keys = jwks(vec![jwk_v]);
        let mut explicit_all = Policy::default();
        explicit_all.algorithms = Some(AlgSet::ALL);
        let secrets: [&[u8]; 4] = [
            pem.as_bytes(),
            pem.trim_end().as_bytes(),
            &der,
            jwk_text.as_bytes(),
        ];
        for secret in secrets {
            for hdr in [json!({"alg": "HS256"}), json!({"alg": "HS256", "kid": kid})] {
                let t = mint_raw(
                    &Signer::hmac(Alg::HS256, secret).unwrap(),
                    &hdr.to_string(),
                    &claims().to_string(),
                );
                for keys in [&pem_keys, &jwk_keys] {
                    assert_eq!(code(run(&t, keys, &Policy::default())), "alg_not_allowed");
                    assert_eq!(code(run(&t, keys, &explicit_all)), "alg_not_allowed");
                    // Even if the allow-list were bypassed, no asymmetric key does HMAC.
                    let r = decode_and_verify_signature(t.as_bytes(), keys, AlgSet::ALL, 8192);
                    assert!(matches!(
                        r.unwrap_err().code(),
                        "unknown_key" | "alg_not_allowed"
                    ));
                }
            }
        }
    }
    // Mixed set: the HMAC key cannot be reached with an asymmetric alg and vice versa.
    let keys = all_keys();
    let t = mint(Alg::HS256, json!({"alg": "HS256", "kid": "rsa"}), claims());
    assert_eq!(code(run(&t, &keys, &Policy::default())), "alg_not_allowed");
    let t = mint(Alg::RS256, json!({"alg": "RS256", "kid": "hmac"}), claims());
    assert_eq!(code(run(&t, &keys, &Policy::default())), "alg_not_allowed");
    // Key kinds are bound to their algorithms.
    for k in keys.keys() {
        assert_eq!(k.algs().intersect(k.kind().algs()), k.algs());
        assert!(k.kind() == KeyKind::Oct || k.algs().intersect(AlgSet::HMAC).is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 3: algorithm outside the allow-list.

#[test]
fn case03_alg_outside_allow_list() {
    let keys = all_keys();
    let mut rs256_only = Policy::default();
    rs256_only.algorithms = Some(AlgSet::single(Alg::RS256));
    assert_eq!(code(run(&std_token(Alg::RS256), &keys, &rs256_only)), "ok");
    for alg in Alg::ALL.into_iter().filter(|a| *a != Alg::RS256) {
        assert_eq!(
            code(run(&std_token(alg), &keys, &rs256_only)),
            "alg_not_allowed",
            "{alg}"
        );
    }
    // HS256 where only asymmetric keys are configured (default allow-list = key algs).
    let asym = jwks(vec![jwk(RSA_PUB, "rsa"), jwk(EC256_PUB, "ec256")]);
    assert_eq!(
        code(run(&std_token(Alg::HS256), &asym, &Policy::default())),
        "alg_not_allowed"
    );
    assert_eq!(
        code(run(&std_token(Alg::ES384), &asym, &Policy::default())),
        "alg_not_allowed"
    );
    // JWK alg narrows the key: an RS256-only key does not verify PS256/RS512.
    let mut j = jwk(RSA_PUB, "rsa");
    j["alg"] = "RS256".into();
    let narrow = jwks(vec![j]);
    assert_eq!(narrow.algs(), AlgSet::single(Alg::RS256));
    assert_eq!(
        code(run(&std_token(Alg::RS256), &narrow, &Policy::default())),
        "ok"
    );
    assert_eq!(
        code(run(&std_token(Alg::PS256), &narrow, &Policy::default())),
        "alg_not_allowed"
    );
    assert_eq!(
        code(run(&std_token(Alg::RS512), &narrow, &Policy::default())),
        "alg_not_allowed"
    );
    // check_claims re-checks the list (a cached Verified from a laxer location).
    let v = run(&std_token(Alg::ES256), &keys, &Policy::default()).unwrap();
    assert_eq!(
        check_claims(&v, &rs256_only, NOW).unwrap_err().code(),
        "alg_not_allowed"
    );
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 4: kid handling.

#[test]
fn case04_kid_is_only_a_lookup_key() {
    let keys = all_keys();
    let p = Policy::default();
    let long = "k".repeat(4096);
    for kid in [
        "unknown",
        "../../dev/null",
        "/etc/passwd",
        "' OR '1'='1' --",
        "\"quote\\",
        "rsa\u{0}",
        "RSA",
        " rsa",
        long.as_str(),
        "",
    ] {
        let t = mint(Alg::RS256, json!({"alg": "RS256", "kid": kid}), claims());
        let e = run(&t, &keys, &p).unwrap_err();
        assert_eq!(e.code(), "unknown_key", "{kid:?}");
        assert!(
            kid.is_empty() || !e.to_string().contains(kid),
            "error text must not echo kid"
        );
    }
    for kid in [
        json!(1),
        json!(null),
        json!(true),
        json!(["rsa"]),
        json!({"k": "rsa"}),
    ] {
        let t = mint(Alg::RS256, json!({"alg": "RS256", "kid": kid}), claims());
        assert_eq!(code(run(&t, &keys, &p)), "malformed", "{kid}");
    }
    // kid names a key of another type.
    for (alg, kid) in [
        (Alg::RS256, "ec256"),
        (Alg::ES256, "rsa"),
        (Alg::ES256, "ec384"),
        (Alg::EdDSA, "rsa"),
        (Alg::HS256, "ed"),
    ] {
        let t = mint(alg, json!({"alg": alg.name(), "kid": kid}), claims());
        assert_eq!(code(run(&t, &keys, &p)), "alg_not_allowed", "{alg} {kid}");
    }
    // Only the named key is tried, never another key of the same type.
    let rng = SystemRandom::new();
    let other = EcdsaKeyPair::generate_pkcs8(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let other_signer = Signer::from_pkcs8(Alg::ES256, other.as_ref()).unwrap();
    let other_point = other_signer.public_key_bytes().unwrap();
    let other_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "other",
        "x": b64url(&other_point[1..33]), "y": b64url(&other_point[33..])});
    let two = jwks(vec![jwk(EC256_PUB, "ec256"), other_jwk]);
    let by_other = |hdr: Value| mint_raw(&other_signer, &hdr.to_string(), &claims().to_string());
    assert_eq!(
        code(run(
            &by_other(json!({"alg": "ES256", "kid": "other"})),
            &two,
            &p
        )),
        "ok"
    );
    assert_eq!(
        code(run(
            &by_other(json!({"alg": "ES256", "kid": "ec256"})),
            &two,
            &p
        )),
        "bad_signature"
    );
    assert_eq!(
        code(run(&by_other(json!({"alg": "ES256"})), &two, &p)),
        "ok"
    );
    // A key without kid is not selected by a token with a kid...
    let pem_keys = KeySet::load(RSA_PUB.as_bytes()).unwrap();
    assert_eq!(
        code(run(&std_token(Alg::RS256), &pem_keys, &p)),
        "unknown_key"
    );
    // ...unless the operator names it.
    let mut named = pem_keys.clone();
    named.set_default_kid("rsa");
    assert_ne!(named.id(), pem_keys.id());
    assert_eq!(code(run(&std_token(Alg::RS256), &named, &p)), "ok");
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 5: keys carried in the token are ignored.

#[test]
fn case05_embedded_keys_ignored() {
    let keys = all_keys();
    let p = Policy::default();
    let rng = SystemRandom::new();
    let attacker =
        EcdsaKeyPair::generate_pkcs8(&rsig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let s = Signer::from_pkcs8(Alg::ES256, attacker.as_ref()).unwrap();
    let pt = s.public_key_bytes().unwrap();
    let ajwk =
        json!({"kty": "EC", "crv": "P-256", "x": b64url(&pt[1..33]), "y": b64url(&pt[33..])});
    for extra in [
        json!({"jwk": ajwk}),
        json!({"jwk": ajwk, "kid": "ec256"}),
        json!({"jku": "https://attacker.example/jwks.json"}),
        json!({"x5u": "https://attacker.example/cert.pem"}),
        json!({"x5c": ["MIIB"]}),
        json!({"jwk": {"kty": "oct", "k": b64url(SECRET64)}}),
    ] {
        let mut h = extra.clone();
        h["alg"] = "ES256".into();
        let t = mint_raw(&s, &h.to_string(), &claims().to_string());
        assert!(
            matches!(code(run(&t, &keys, &p)), "bad_signature" | "unknown_key"),
            "{extra}"
        );
        // The same headers on a token signed by a configured key are harmless.
        let good = mint(Alg::ES256, h, claims());
        assert_eq!(code(run(&good, &keys, &p)), "ok", "{extra}");
    }
    // HMAC token with an embedded oct jwk whose k is the attacker's secret.
    let h = json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64url(&[9u8; 32])}});
    let t = mint_raw(
        &Signer::hmac(Alg::HS256, &[9u8; 32]).unwrap(),
        &h.to_string(),
        &claims().to_string(),
    );
    assert_eq!(code(run(&t, &keys, &p)), "bad_signature");
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 6: crit.

#[test]
fn case06_crit_refused() {
    let keys = all_keys();
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!([]),
        json!("b64"),
        json!(null),
        json!(["kid"]),
    ] {
        let t = mint(
            Alg::HS256,
            json!({"alg": "HS256", "crit": crit, "b64": false, "exp": 1}),
            claims(),
        );
        let e = run(&t, &keys, &Policy::default()).unwrap_err();
        assert_eq!(e.code(), "malformed", "{crit}");
        assert!(e.to_string().contains("crit"));
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 7: time claims.

fn with_claims(extra: Value) -> String {
    let mut c = json!({"sub": "alice"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    mint(Alg::HS256, json!({"alg": "HS256"}), c)
}

#[test]
fn case07_time_claims() {
    let keys = all_keys();
    let p = Policy::default();
    let mut lee = Policy::default();
    lee.leeway = 60;
    let c = |extra: Value, pol: &Policy| code(run(&with_claims(extra), &keys, pol));
    assert_eq!(c(json!({"exp": NOW - 1}), &p), "expired");
    assert_eq!(c(json!({"exp": NOW}), &p), "expired");
    assert_eq!(c(json!({"exp": NOW + 1}), &p), "ok");
    assert_eq!(c(json!({"exp": NOW - 30}), &lee), "ok");
    assert_eq!(c(json!({"exp": NOW - 60}), &lee), "expired");
    assert_eq!(c(json!({"exp": 0}), &p), "expired");
    assert_eq!(c(json!({"nbf": NOW + 1}), &p), "not_yet_valid");
    assert_eq!(c(json!({"nbf": NOW}), &p), "ok");
    assert_eq!(c(json!({"nbf": NOW + 60}), &lee), "ok");
    assert_eq!(c(json!({"nbf": NOW + 61}), &lee), "not_yet_valid");
    assert_eq!(c(json!({"exp": (NOW + 10) as f64 + 0.5}), &p), "ok");
    assert_eq!(c(json!({"exp": 253_402_300_799i64}), &p), "ok");
    for name in ["exp", "nbf", "iat"] {
        for bad in [
            json!("1700003600"),
            json!(-1),
            json!(-0.5),
            json!(253_402_300_800i64),
            json!(u64::MAX),
            json!(1e300),
            json!(true),
            json!(null),
            json!([NOW + 10]),
            json!({"t": NOW + 10}),
        ] {
            assert_eq!(c(json!({ name: bad }), &p), "malformed", "{name}={bad}");
        }
    }
    // 1e999 is not even valid JSON for serde_json (out of range): malformed.
    let t = mint_raw(
        &signer(Alg::HS256),
        r#"{"alg":"HS256"}"#,
        r#"{"exp":1e999}"#,
    );
    assert_eq!(code(run(&t, &keys, &p)), "malformed");
    // exp required.
    let mut req = Policy::default();
    req.require_exp = true;
    assert_eq!(c(json!({}), &req), "expired");
    assert_eq!(c(json!({}), &p), "ok");
    assert_eq!(c(json!({"exp": NOW + 5}), &req), "ok");
    // Extreme now values do not overflow.
    let v = run(
        &with_claims(json!({"exp": 253_402_300_799i64, "nbf": 0})),
        &keys,
        &p,
    )
    .unwrap();
    let mut huge = Policy::default();
    huge.leeway = u32::MAX;
    assert!(
        check_claims(&v, &huge, i64::MAX).is_ok() || check_claims(&v, &huge, i64::MAX).is_err()
    );
    assert_eq!(
        check_claims(&v, &p, i64::MIN).unwrap_err().code(),
        "not_yet_valid"
    );
    assert_eq!(
        check_claims(&v, &p, i64::MAX).unwrap_err().code(),
        "expired"
    );
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 8: audience, issuer, type.

#[test]
fn case08_audience_issuer_type() {
    let keys = all_keys();
    let mut p = Policy::default();
    p.audiences = vec!["api".into(), "api2".into()];
    p.issuers = vec!["https://issuer.example".into()];
    let iss = "https://issuer.example";
    let c = |extra: Value, pol: &Policy| code(run(&with_claims(extra), &keys, pol));
    assert_eq!(c(json!({"iss": iss, "aud": "api"}), &p), "ok");
    assert_eq!(c(json!({"iss": iss, "aud": ["x", "api2"]}), &p), "ok");
    assert_eq!(c(json!({"iss": iss, "aud": "other"}), &p), "bad_audience");
    assert_eq!(
        c(json!({"iss": iss, "aud": ["x", "y"]}), &p),
        "bad_audience"
    );
    assert_eq!(c(json!({"iss": iss, "aud": []}), &p), "bad_audience");
    assert_eq!(c(json!({"iss": iss}), &p), "bad_audience");
    assert_eq!(c(json!({"iss": iss, "aud": "API"}), &p), "bad_audience");
    assert_eq!(c(json!({"iss": iss, "aud": ["api", 1]}), &p), "malformed");
    assert_eq!(c(json!({"iss": iss, "aud": 1}), &p), "malformed");
    assert_eq!(
        c(json!({"iss": "https://evil.example", "aud": "api"}), &p),
        "bad_issuer"
    );
    assert_eq!(
        c(json!({"iss": "https://issuer.example/", "aud": "api"}), &p),
        "bad_issuer"
    );
    assert_eq!(c(json!({"aud": "api"}), &p), "bad_issuer");
    assert_eq!(
        c(json!({"iss": ["https://issuer.example"], "aud": "api"}), &p),
        "malformed"
    );
    assert_eq!(c(json!({"sub": 42}), &Policy::default()), "malformed");
    // Not checked when not configured.
    assert_eq!(
        c(json!({"aud": "other", "iss": "x"}), &Policy::default()),
        "ok"
    );
    // typ.
    let mut at = Policy::default();
    at.typ = Some("at+jwt".into());
    let tp = |typ: Option<Value>, pol: &Policy| {
        let mut h = json!({"alg": "HS256"});
        if let Some(v) = typ {
            h["typ"] = v;
        }
        code(run(&mint(Alg::HS256, h, claims()), &keys, pol))
    };
    let t = |typ: Option<Value>| tp(typ, &at);
    assert_eq!(t(Some("at+jwt".into())), "ok");
    assert_eq!(t(Some("AT+JWT".into())), "ok");
    assert_eq!(t(Some("application/at+jwt".into())), "ok");
    assert_eq!(t(Some("JWT".into())), "bad_type");
    assert_eq!(t(Some("id_token+jwt".into())), "bad_type");
    assert_eq!(t(None), "bad_type");
    assert_eq!(t(Some(json!(1))), "malformed");
    let app = Policy {
        typ: Some("application/at+jwt".into()),
        ..Policy::default()
    };
    assert_eq!(tp(Some("at+jwt".into()), &app), "ok");
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 9: shape.

#[test]
fn case09_shape() {
    let keys = all_keys();
    let p = Policy::default();
    let good = std_token(Alg::HS256);
    let parts: Vec<&str> = good.split('.').collect();
    let (h, pl, s) = (parts[0], parts[1], parts[2]);
    let c = |t: &str| code(run(t, &keys, &p));
    assert_eq!(c(&good), "ok");
    assert_eq!(c(""), "missing");
    for t in [
        h.to_string(),
        format!("{h}.{pl}"),
        format!("{h}.{pl}.{s}.{s}"),
        ".".into(),
        "..".into(),
        "...".into(),
        format!(".{pl}.{s}"),
    ] {
        assert_eq!(c(&t), "malformed", "{t}");
    }
    // An empty payload segment: the signature is checked before the payload is parsed.
    assert_eq!(c(&format!("{h}..{s}")), "bad_signature");
    let jwe = format!("{h}.{pl}.{s}.{s}.{s}");
    let e = run(&jwe, &keys, &p).unwrap_err();
    assert_eq!(e.code(), "malformed");
    assert!(e.to_string().contains("JWE"));
    // Bad base64url in each segment.
    for bad in ["=", "==", "+", "/", " ", "\t", "\n", "é", "\u{0}", "*"] {
        for (i, seg) in [h, pl, s].iter().enumerate() {
            let mut segs = [h.to_string(), pl.to_string(), s.to_string()];
            segs[i] = format!("{seg}{bad}");
            let t = segs.join(".");
            assert_eq!(c(&t), "malformed", "segment {i} + {bad:?}");
            segs[i] = format!("{}{bad}{}", &seg[..2], &seg[2..]);
            assert_eq!(
                c(&segs.join(".")),
                "malformed",
                "segment {i} with {bad:?} inside"
            );
        }
    }
    // Non-canonical trailing bits in the signature (HS256: 32 bytes = 43 chars, 2 spare bits).
    let last = s.as_bytes()[s.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|b| *b == last).unwrap();
    let tweaked = format!(
        "{h}.{pl}.{}{}",
        &s[..s.len() - 1],
        alphabet[idx ^ 1] as char
    );
    assert_eq!(c(&tweaked), "malformed");
    // Header / payload not objects, not JSON, not UTF-8, duplicates, deep nesting.
    let sg = signer(Alg::HS256);
    let hdr = r#"{"alg":"HS256"}"#;
    for (hh, pp) in [
        (r#"["HS256"]"#, "{}"),
        (r#""HS256""#, "{}"),
        ("null", "{}"),
        ("", "{}"),
        (hdr, "[]"),
        (hdr, "\"sub\""),
        (hdr, "42"),
        (hdr, ""),
        (hdr, "{"),
        (hdr, "{}garbage"),
        (r#"{"alg":"HS256","alg":"HS256"}"#, "{}"),
        (r#"{"alg":"HS256","kid":"a","kid":"hmac"}"#, "{}"),
        (hdr, r#"{"sub":"alice","sub":"admin"}"#),
        (
            hdr,
            r#"{"realm_access":{"roles":["user"],"roles":["admin"]}}"#,
        ),
        (hdr, r#"{"a":[{"x":1,"x":2}]}"#),
        (hdr, r#"{"sub":"alice","\u0073ub":"admin"}"#),
    ] {
        let t = mint_raw(&sg, hh, pp);
        assert_eq!(c(&t), "malformed", "{hh} / {pp}");
    }
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(c(&mint_raw(&sg, hdr, &deep)), "malformed");
    let deep_h = format!(
        "{{\"alg\":\"HS256\",\"x\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(c(&mint_raw(&sg, &deep_h, "{}")), "malformed");
    // Invalid UTF-8 in header and payload.
    for (hh, pp) in [
        (&b"{\"alg\":\"HS256\",\"x\":\"\xff\"}"[..], &b"{}"[..]),
        (hdr.as_bytes(), &b"{\"sub\":\"\xc3\x28\"}"[..]),
    ] {
        let t = encode_token(hh, pp, &sg).unwrap();
        assert_eq!(c(&t), "malformed");
    }
    // Too large: refused before decoding (garbage of the wrong shape still says too_large).
    let big = "x".repeat(DEFAULT_MAX_TOKEN_SIZE + 1);
    assert_eq!(c(&big), "too_large");
    let padded = mint(
        Alg::HS256,
        json!({"alg": "HS256"}),
        json!({"pad": "p".repeat(9000)}),
    );
    assert_eq!(c(&padded), "too_large");
    let mut small = Policy::default();
    small.max_token_size = 100;
    assert_eq!(code(run(&good, &keys, &small)), "too_large");
    let exact = Policy {
        max_token_size: good.len(),
        ..Policy::default()
    };
    assert_eq!(code(run(&good, &keys, &exact)), "ok");
    // check_claims re-checks size (cached token, stricter location).
    let v = run(&good, &keys, &p).unwrap();
    assert_eq!(
        check_claims(&v, &small, NOW).unwrap_err().code(),
        "too_large"
    );
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 10: crypto details, weak keys.

#[test]
fn case10_ecdsa_psychic_and_encodings() {
    let keys = all_keys();
    let p = Policy::default();
    for (alg, n) in [(Alg::ES256, 32usize), (Alg::ES384, 48)] {
        let t = std_token(alg);
        let sig = b64::decode(t.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
        assert_eq!(sig.len(), 2 * n);
        let (r, s) = sig.split_at(n);
        let zero = vec![0u8; n];
        let order: Vec<u8> = if n == 32 {
            hex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
        } else {
            hex("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973")
        };
        for bad in [
            [&zero[..], &zero[..]].concat(),
            [&zero[..], s].concat(),
            [r, &zero[..]].concat(),
            [&order[..], s].concat(),
            [r, &order[..]].concat(),
            sig[..2 * n - 1].to_vec(),
            [&sig[..], &[0u8][..]].concat(),
            [&[0u8][..], &sig[..]].concat(),
            Vec::new(),
            vec![0xff; 2 * n],
        ] {
            assert_eq!(
                code(run(&with_sig(&t, &bad), &keys, &p)),
                "bad_signature",
                "{alg}"
            );
        }
        // A DER (ASN.1) signature over the same input is refused.
        let (input, _) = t.rsplit_once('.').unwrap();
        let (pem, asn1) = if n == 32 {
            (EC256_KEY, &rsig::ECDSA_P256_SHA256_ASN1_SIGNING)
        } else {
            (EC384_KEY, &rsig::ECDSA_P384_SHA384_ASN1_SIGNING)
        };
        let der = pem::parse(pem).unwrap().into_contents();
        let kp = EcdsaKeyPair::from_pkcs8(asn1, &der, &SystemRandom::new()).unwrap();
        let der_sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        assert_eq!(
            code(run(&with_sig(&t, der_sig.as_ref()), &keys, &p)),
            "bad_signature",
            "{alg} DER"
        );
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn case10_wrong_lengths_and_truncated_macs() {
    let keys = all_keys();
    let p = Policy::default();
    for alg in Alg::ALL {
        let t = std_token(alg);
        let sig = b64::decode(t.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
        for bad in [
            Vec::new(),
            sig[..sig.len() / 2].to_vec(),
            sig[..sig.len() - 1].to_vec(),
            [&sig[..], &[0][..]].concat(),
            [&sig[..], &sig[..]].concat(),
        ] {
            assert_eq!(
                code(run(&with_sig(&t, &bad), &keys, &p)),
                "bad_signature",
                "{alg} len {}",
                bad.len()
            );
        }
    }
    // Ed25519: s >= L (non-canonical) is refused by ring.
    let t = std_token(Alg::EdDSA);
    let mut sig = b64::decode(t.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
    sig[63] |= 0xf0;
    assert_eq!(code(run(&with_sig(&t, &sig), &keys, &p)), "bad_signature");
}

#[test]
fn case10_weak_keys_refused_at_load() {
    let e = KeySet::load(RSA1024_PUB.as_bytes()).unwrap_err();
    assert!(
        e.reason()
            .contains("RSA key is 1024 bits, at least 2048 required"),
        "{e}"
    );
    // 1024-bit RSA as JWK too.
    let der = pem::parse(RSA1024_PUB).unwrap().into_contents();
    let Ok(der::PublicKeyDer::Rsa { n, e: ex }) = der::parse_spki(&der) else {
        panic!()
    };
    let j = json!({"keys": [{"kty": "RSA", "kid": "weak", "n": b64url(n), "e": b64url(ex)}]});
    let e = KeySet::load(j.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        e.reason(),
        "key #1 (kid \"weak\"): RSA key is 1024 bits, at least 2048 required"
    );
    // HMAC secrets shorter than the hash.
    for (len, alg, ok) in [
        (16, None, false),
        (31, None, false),
        (32, None, true),
        (31, Some("HS256"), false),
        (32, Some("HS256"), true),
        (47, Some("HS384"), false),
        (48, Some("HS384"), true),
        (63, Some("HS512"), false),
        (64, Some("HS512"), true),
        (40, Some("RS256"), false),
    ] {
        let secret = vec![0x5au8; len];
        let r = KeySet::load(oct(&secret, None, alg).to_string().as_bytes());
        assert_eq!(r.is_ok(), ok, "{len} {alg:?}");
        if let Err(e) = r {
            assert!(!e.to_string().contains(&b64url(&secret)), "secret in error");
            assert!(!e.to_string().contains("WlpaWlpa"));
        }
    }
    // An oct key without alg allows only the HS algorithms its length fits.
    let a = |len: usize| {
        KeySet::load(oct(&vec![1u8; len], None, None).to_string().as_bytes())
            .unwrap()
            .algs()
    };
    assert_eq!(a(32), AlgSet::single(Alg::HS256));
    assert_eq!(a(48), AlgSet::of(&[Alg::HS256, Alg::HS384]));
    assert_eq!(a(64), AlgSet::HMAC);
    let keys32 = KeySet::load(oct(&SECRET64[..32], None, None).to_string().as_bytes()).unwrap();
    let t = mint_raw(
        &Signer::hmac(Alg::HS512, &SECRET64[..32]).unwrap(),
        r#"{"alg":"HS512"}"#,
        "{}",
    );
    assert_eq!(
        code(run(&t, &keys32, &Policy::default())),
        "alg_not_allowed"
    );
    let t = mint_raw(
        &Signer::hmac(Alg::HS256, &SECRET64[..32]).unwrap(),
        r#"{"alg":"HS256"}"#,
        "{}",
    );
    assert_eq!(code(run(&t, &keys32, &Policy::default())), "ok");
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 13 (core part): key-set content.

#[test]
fn case13_key_set_content() {
    let enc = {
        let mut j = jwk(RSA_PUB, "enc");
        j["use"] = "enc".into();
        j
    };
    let e = KeySet::load(json!({"keys": [enc.clone()]}).to_string().as_bytes()).unwrap_err();
    assert_eq!(e.reason(), "no usable signing key");
    let ks = jwks(vec![enc, jwk(EC256_PUB, "sig")]);
    assert_eq!(ks.len(), 1);
    assert_eq!(ks.keys()[0].kid(), Some("sig"));
    // key_ops without verify: skipped; with verify: used.
    let mut j = jwk(RSA_PUB, "ops");
    j["key_ops"] = json!(["encrypt"]);
    assert!(KeySet::load(json!({"keys": [j.clone()]}).to_string().as_bytes()).is_err());
    j["key_ops"] = json!(["verify"]);
    assert_eq!(jwks(vec![j]).len(), 1);
    // Bad JSON reports a position, never content.
    let e = KeySet::load(
        b"{\n  \"keys\": [\n    {\"kty\": \"oct\", \"k\": \"c2VjcmV0\" \n    \"x\": 1}]}",
    )
    .unwrap_err();
    assert!(
        e.reason().starts_with("invalid JSON at line 4 column"),
        "{e}"
    );
    assert!(!e.reason().contains("c2VjcmV0"));
    for (text, want) in [
        ("", "key file is empty"),
        ("   \n", "key file is empty"),
        ("hello", "unrecognised key file format"),
        ("[]", "unrecognised key file format"),
        (r#"{"keys": {}}"#, "JWKS \"keys\" is not an array"),
        (r#"{"keys": []}"#, "no usable signing key"),
        (r#"{"keys": [1]}"#, "key #1: not a JSON object"),
        (r#"{"foo": 1}"#, "neither a JWKS"),
        (
            r#"{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "k": "eA"}"#,
            "duplicate member name",
        ),
        (r#"{"kty": "XYZ"}"#, "kty \"XYZ\" is not supported"),
        (r#"{"kty": 1}"#, "\"kty\" is not a string"),
        (r#"{"n": "AQAB"}"#, "neither a JWKS"),
        (r#"{"kty": "RSA", "e": "AQAB"}"#, "\"n\" is missing"),
        (
            r#"{"kty": "RSA", "n": "AQAB=", "e": "AQAB"}"#,
            "\"n\" is not valid base64url",
        ),
        (
            r#"{"kty": "RSA", "n": "AQ+B", "e": "AQAB"}"#,
            "\"n\" is not valid base64url",
        ),
        (
            r#"{"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}"#,
            "curve \"P-192\" is not supported",
        ),
        (
            r#"{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}"#,
            "is not supported",
        ),
        (
            r#"{"kty": "EC", "x": "AA", "y": "AA"}"#,
            "\"crv\" is missing",
        ),
        (
            r#"{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}"#,
            "coordinates must be 32 bytes",
        ),
        (
            r#"{"kty": "OKP", "crv": "X25519", "x": "AA"}"#,
            "curve \"X25519\" is not supported",
        ),
        (r#"{"kty": "OKP", "crv": "Ed448", "x": "AA"}"#, "57 bytes"),
        (r#"{"kty": "OKP", "crv": "Ed25519", "x": "AA"}"#, "32 bytes"),
        (
            r#"{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "none"}"#,
            "not a supported signature algorithm",
        ),
        (
            r#"{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "RSA-OAEP"}"#,
            "not a supported signature algorithm",
        ),
        (r#"{"kty": "oct", "k": 5}"#, "\"k\" is not a string"),
        (
            r#"{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": 5}"#,
            "\"kid\" is not a string",
        ),
        (
            r#"{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "key_ops": "verify"}"#,
            "not an array",
        ),
    ] {
        let e = KeySet::load(text.as_bytes()).unwrap_err();
        assert!(e.reason().contains(want), "{text}: got {e}");
    }
    // An EC point that is not on the curve.
    let mut j = jwk(EC256_PUB, "bad");
    let mut y = b64::decode(j["y"].as_str().unwrap().as_bytes()).unwrap();
    y[31] ^= 1;
    j["y"] = b64url(&y).into();
    let e = KeySet::load(j.to_string().as_bytes()).unwrap_err();
    assert!(e.reason().contains("not a valid point"), "{e}");
    // JWK alg must fit its key type.
    let mut j = jwk(EC256_PUB, "x");
    j["alg"] = "ES384".into();
    assert!(KeySet::load(j.to_string().as_bytes())
        .unwrap_err()
        .reason()
        .contains("does not fit a EC P-256 key"));
    let mut j = jwk(RSA_PUB, "x");
    j["alg"] = "HS256".into();
    assert!(KeySet::load(j.to_string().as_bytes()).is_err());
    // Lenient loading (remote sets): unusable keys are skipped and reported.
    let weak_der = pem::parse(RSA1024_PUB).unwrap().into_contents();
    let Ok(der::PublicKeyDer::Rsa { n, e: ex }) = der::parse_spki(&weak_der) else {
        panic!()
    };
    let mixed = json!({"keys": [
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "weak", "n": b64url(n), "e": b64url(ex)},
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AA", "e": "AQAB"},
        jwk(RSA_PUB, "good"),
    ]})
    .to_string();
    assert!(KeySet::load(mixed.as_bytes()).is_err());
    let (ks, skipped) = KeySet::load_remote(mixed.as_bytes());
    let ks = ks.unwrap();
    assert_eq!(ks.len(), 1);
    assert_eq!(ks.keys()[0].kid(), Some("good"));
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].reason().starts_with("key #1 (kid \"p521\")"));
    assert!(skipped[1].reason().contains("1024 bits"));
    let (set, skipped) = KeySet::load_remote(b"{\"keys\": [{\"kty\": \"XYZ\"}]}");
    assert!(set.is_err());
    assert_eq!(skipped.len(), 1);
    assert!(KeySet::load_remote(b"{\"keys\": [").0.is_err());
    let (pems, skipped) = KeySet::load_remote(format!("{RSA1024_PUB}{EC256_PUB}").as_bytes());
    assert_eq!((pems.unwrap().len(), skipped.len()), (1, 1));
    // Private JWKs are refused.
    let mut j = jwk(EC256_PUB, "priv");
    j["d"] = "AAAA".into();
    let e = KeySet::load(j.to_string().as_bytes()).unwrap_err();
    assert!(e.reason().contains("private key material"));
    assert!(!e.reason().contains("AAAA"));
}

#[test]
fn pem_loading() {
    for (pem, kind) in [
        (RSA_PUB, KeyKind::Rsa),
        (RSA_PKCS1, KeyKind::Rsa),
        (EC256_PUB, KeyKind::EcP256),
        (EC384_PUB, KeyKind::EcP384),
        (ED_PUB, KeyKind::Ed25519),
    ] {
        let ks = KeySet::load(pem.as_bytes()).unwrap();
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.keys()[0].kind(), kind);
        assert_eq!(ks.keys()[0].kid(), None);
        // Leading whitespace / BOM tolerated.
        assert!(KeySet::load(format!("\u{feff}\n  {pem}").as_bytes()).is_ok());
    }
    let spki = KeySet::load(RSA_PUB.as_bytes()).unwrap();
    let pkcs1 = KeySet::load(RSA_PKCS1.as_bytes()).unwrap();
    assert_eq!(
        spki.keys()[0].to_public_jwk(),
        pkcs1.keys()[0].to_public_jwk()
    );
    // Several blocks in one file.
    let all = KeySet::load(format!("{RSA_PUB}\n{EC256_PUB}{ED_PUB}").as_bytes()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.algs(), AlgSet::RSA.with(Alg::ES256).with(Alg::EdDSA));
    // Private keys, certificates, unsupported curves are errors.
    for (text, want) in [
        (RSA_KEY, "a private key was given"),
        (EC256_KEY, "a private key was given"),
        (
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "certificates are not supported",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
            "truncated DER",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
            "PEM",
        ),
        (
            "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
            "unsupported PEM type",
        ),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n", "PEM"),
    ] {
        let e = KeySet::load(text.as_bytes()).unwrap_err();
        assert!(e.reason().contains(want), "{want}: got {e}");
    }
    // Truncations of a valid DER never panic and never load.
    let der = pem::parse(RSA_PUB).unwrap().into_contents();
    for cut in 0..der.len() {
        assert!(der::parse_spki(&der[..cut]).is_err());
    }
}

#[test]
fn keyset_extend_and_ids() {
    let mut a = KeySet::load(RSA_PUB.as_bytes()).unwrap();
    let b = KeySet::load(EC256_PUB.as_bytes()).unwrap();
    let id = a.id();
    assert_ne!(a.id(), b.id());
    a.extend(b);
    assert_eq!(a.len(), 2);
    assert_ne!(a.id(), id);
    assert!(KeySet::new().is_empty());
    let t = mint(Alg::ES256, json!({"alg": "ES256"}), claims());
    assert_eq!(code(run(&t, &a, &Policy::default())), "ok");
    assert_eq!(
        code(run(&t, &KeySet::new(), &Policy::default())),
        "alg_not_allowed"
    );
    // Debug output of keys never shows HMAC secrets.
    let dbg = format!("{:?}", all_keys());
    assert!(!dbg.contains(&b64url(SECRET64)) && !dbg.contains("0123456789abcdef"));
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 14 (core part): error texts never carry the token or secrets.

#[test]
fn case14_errors_never_echo_token() {
    let keys = all_keys();
    let p = Policy {
        issuers: vec!["i".into()],
        ..Policy::default()
    };
    let secret_sub = "SUBJECT-SECRET-VALUE";
    for t in [
        mint(
            Alg::HS256,
            json!({"alg": "HS256", "kid": "KID-SECRET"}),
            json!({"sub": secret_sub}),
        ),
        mint(
            Alg::HS256,
            json!({"alg": "HS256"}),
            json!({"sub": secret_sub, "iss": "ISS-SECRET"}),
        ),
        flip_sig_bit(
            &mint(
                Alg::HS256,
                json!({"alg": "HS256"}),
                json!({"sub": secret_sub}),
            ),
            3,
        ),
        mint_raw(
            &signer(Alg::HS256),
            r#"{"alg":"HS256"}"#,
            r#"{"SECRET-NAME":1,"SECRET-NAME":2}"#,
        ),
        mint_raw(&signer(Alg::HS256), r#"{"alg":"ALG-SECRET"}"#, "{}"),
        mint_raw(
            &signer(Alg::HS256),
            r#"{"alg":"HS256"}"#,
            r#"{"exp":"EXP-SECRET"}"#,
        ),
    ] {
        let e = run(&t, &keys, &p).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        for seg in t.split('.') {
            assert!(seg.len() < 4 || !text.contains(seg), "{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Claim rules and variables.

fn verified(payload: Value) -> Verified {
    run(
        &mint(Alg::HS256, json!({"alg": "HS256"}), payload),
        &all_keys(),
        &Policy::default(),
    )
    .unwrap()
}

fn rule(path: &str, op: &str, values: &[&str]) -> ClaimRule {
    ClaimRule::parse(path, op, values).unwrap()
}

#[test]
fn claim_rules() {
    let v = verified(json!({
        "sub": "alice", "n": 42, "f": 1.5, "admin": true, "nul": null,
        "scope": "read write  admin:all", "roles": ["user", "dev", 7],
        "realm_access": {"roles": ["r1", "r2"]},
        "https://example.com/roles": ["x"],
        "a": {"b.c": "dotted", "b\\c": "backslash"},
        "big": 18446744073709551615u64,
    }));
    let ok = |path: &str, op: &str, vals: &[&str]| rule(path, op, vals).check(&v);
    assert!(ok("sub", "eq", &["alice"]));
    assert!(!ok("sub", "eq", &["Alice"]));
    assert!(ok("n", "eq", &["42"]));
    assert!(ok("n", "eq", &["42.0"]));
    assert!(!ok("n", "eq", &["042x"]));
    assert!(ok("f", "eq", &["1.5"]));
    assert!(ok("admin", "eq", &["true"]));
    assert!(!ok("admin", "eq", &["1"]));
    assert!(!ok("nul", "eq", &["null"]));
    assert!(!ok("nul", "eq", &[""]));
    assert!(!ok("roles", "eq", &["user"]));
    assert!(ok("big", "eq", &["18446744073709551615"]));
    assert!(!ok("big", "eq", &["18446744073709551614"]));
    // ne: present scalar that differs; missing fails.
    assert!(ok("sub", "ne", &["bob"]));
    assert!(!ok("sub", "ne", &["alice"]));
    assert!(!ok("missing", "ne", &["bob"]));
    assert!(!ok("roles", "ne", &["bob"]));
    // in
    assert!(ok("sub", "in", &["bob", "alice"]));
    assert!(!ok("sub", "in", &["bob", "carol"]));
    assert!(ok("n", "in", &["1", "42"]));
    // any / all over arrays and space-separated strings.
    assert!(ok("roles", "any", &["admin", "dev"]));
    assert!(!ok("roles", "any", &["admin", "root"]));
    assert!(ok("roles", "all", &["user", "dev"]));
    assert!(ok("roles", "any", &["7"]));
    assert!(!ok("roles", "all", &["user", "admin"]));
    assert!(ok("scope", "any", &["write"]));
    assert!(ok("scope", "all", &["read", "admin:all"]));
    assert!(!ok("scope", "any", &["rea", ""]));
    assert!(!ok("scope", "all", &["read", "delete"]));
    assert!(ok("sub", "any", &["alice"]));
    assert!(ok("n", "any", &["42"]));
    assert!(!ok("realm_access", "any", &["r1"]));
    // nested and escaped paths
    assert!(ok("realm_access.roles", "any", &["r2"]));
    assert!(!ok("realm_access.roles.x", "any", &["r2"]));
    assert!(ok("https://example\\.com/roles", "all", &["x"]));
    assert!(!ok("https://example.com/roles", "all", &["x"]));
    assert!(ok("a.b\\.c", "eq", &["dotted"]));
    assert!(ok("a.b\\\\c", "eq", &["backslash"]));
    // gt / lt
    assert!(ok("n", "gt", &["41"]));
    assert!(!ok("n", "gt", &["42"]));
    assert!(ok("n", "lt", &["42.5"]));
    assert!(ok("f", "gt", &["1"]));
    assert!(!ok("sub", "gt", &["1"]));
    assert!(!ok("missing", "lt", &["1"]));
    assert!(ok("big", "gt", &["9223372036854775807"]));
    // Missing claims fail every operator.
    for op in ["eq", "ne", "in", "any", "all", "gt", "lt"] {
        assert!(!ok("nope", op, &["1"]), "{op}");
        assert!(!ok("realm_access.nope", op, &["1"]), "{op}");
    }
    // Parse errors.
    for (p, op, vals) in [
        ("", "eq", &["x"][..]),
        ("a..b", "eq", &["x"]),
        (".a", "eq", &["x"]),
        ("a.", "eq", &["x"]),
        ("a\\b", "eq", &["x"]),
        ("a\\", "eq", &["x"]),
        ("a", "eq", &[]),
        ("a", "eq", &["x", "y"]),
        ("a", "in", &[]),
        ("a", "gt", &["x"]),
        ("a", "lt", &["NaN"]),
        ("a", "lt", &["inf"]),
        ("a", "match", &["x"]),
        ("a", "EQ", &["x"]),
    ] {
        assert!(ClaimRule::parse(p, op, vals).is_err(), "{p} {op} {vals:?}");
    }
    // In a policy: the failing rule's index is reported, without the value.
    let p = Policy {
        claim_rules: vec![
            rule("sub", "eq", &["alice"]),
            rule("roles", "any", &["secret-role"]),
        ],
        ..Policy::default()
    };
    match check_claims(&v, &p, NOW) {
        Err(JwtError::ClaimMismatch { rule, detail }) => {
            assert_eq!(rule, 1);
            assert_eq!(detail, "roles any");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn variables_format_like_plus() {
    let v = verified(json!({
        "s": "text", "n": 42, "f": 1.5, "t": true, "nul": null,
        "arr": ["a", "b", 3, true], "nested": [["a"], "b"], "obj": {"k": "v", "a": [1]},
        "empty": [],
    }));
    let var = |k: &str| var_string(v.claim(&[k]).unwrap()).into_owned();
    assert_eq!(var("s"), "text");
    assert_eq!(var("n"), "42");
    assert_eq!(var("f"), "1.5");
    assert_eq!(var("t"), "true");
    assert_eq!(var("nul"), "");
    assert_eq!(var("arr"), "a,b,3,true");
    assert_eq!(var("nested"), r#"[["a"],"b"]"#);
    assert_eq!(var("obj"), r#"{"a":[1],"k":"v"}"#);
    assert_eq!(var("empty"), "");
    assert_eq!(var_string(v.header("alg").unwrap()), "HS256");
}

#[test]
fn json_rendered_variables_escape_every_control_character() {
    let v = verified(json!({
        "obj": {"n": "M\r\nX-Injected: 1\u{0}\u{1b}\u{7f}"},
        "nested": [["a\u{7f}"], "b\n"],
        "plain": "M\r\nX",
    }));
    let var = |k: &str| var_string(v.claim(&[k]).unwrap()).into_owned();
    let obj = var("obj");
    assert_eq!(obj, r#"{"n":"M\r\nX-Injected: 1\u0000\u001b\u007f"}"#);
    assert_eq!(crate::header::first_unsafe_byte(obj.as_bytes()), None);
    let nested = var("nested");
    assert_eq!(nested, r#"[["a\u007f"],"b\n"]"#);
    assert_eq!(crate::header::first_unsafe_byte(nested.as_bytes()), None);
    // The same JSON again once parsed: the escape means the same string.
    let back: serde_json::Value = serde_json::from_str(&obj).unwrap();
    assert_eq!(back, v.claim(&["obj"]).unwrap().clone());
    // A plain string is raw: the caller (the variables) refuses it.
    assert_eq!(
        crate::header::first_unsafe_byte(var("plain").as_bytes()),
        Some(1)
    );
}

// ---------------------------------------------------------------------------------------
// Cache.

#[test]
fn token_cache() {
    let keys = all_keys();
    let mut cache = TokenCache::new(2).unwrap();
    assert_eq!(cache.capacity(), 2);
    let t1 = with_claims(json!({"exp": NOW + 10}));
    let t2 = with_claims(json!({"n": 2}));
    let t3 = with_claims(json!({"n": 3}));
    let v1 = Arc::new(run(&t1, &keys, &Policy::default()).unwrap());
    assert!(cache.get(keys.id(), t1.as_bytes(), NOW).is_none());
    cache.insert(keys.id(), t1.as_bytes(), Arc::clone(&v1), NOW);
    let hit = cache.get(keys.id(), t1.as_bytes(), NOW).unwrap();
    assert!(Arc::ptr_eq(&hit, &v1));
    // Another key set, another token, one byte different: miss.
    assert!(cache.get(keys.id() + 1, t1.as_bytes(), NOW).is_none());
    assert!(cache.get(keys.id(), &t1.as_bytes()[1..], NOW).is_none());
    // Never past exp (the entry is dropped).
    assert!(cache.get(keys.id(), t1.as_bytes(), NOW + 9).is_some());
    assert!(cache.get(keys.id(), t1.as_bytes(), NOW + 10).is_none());
    assert_eq!(cache.len(), 0);
    // Already-expired tokens are not stored.
    cache.insert(keys.id(), t1.as_bytes(), Arc::clone(&v1), NOW + 10);
    assert!(cache.is_empty());
    // LRU eviction; tokens without exp stay until evicted.
    let v2 = Arc::new(run(&t2, &keys, &Policy::default()).unwrap());
    let v3 = Arc::new(run(&t3, &keys, &Policy::default()).unwrap());
    cache.insert(keys.id(), t1.as_bytes(), v1, NOW);
    cache.insert(keys.id(), t2.as_bytes(), v2, NOW);
    assert!(cache.get(keys.id(), t1.as_bytes(), NOW).is_some());
    cache.insert(keys.id(), t3.as_bytes(), v3, NOW);
    assert!(cache.get(keys.id(), t2.as_bytes(), NOW).is_none());
    assert!(cache.get(keys.id(), t1.as_bytes(), NOW).is_some());
    assert!(cache.get(keys.id(), t3.as_bytes(), i64::MAX).is_some());
    cache.clear();
    assert!(cache.is_empty());
    // Capacity 0: stores nothing.
    let mut off = TokenCache::with_seed(0, [0; 16]);
    off.insert(
        1,
        b"x",
        Arc::new(run(&t2, &keys, &Policy::default()).unwrap()),
        NOW,
    );
    assert!(off.get(1, b"x", NOW).is_none());
    assert_eq!(off.capacity(), 0);
}

#[test]
fn signer_rejects_mismatched_keys() {
    assert!(Signer::from_file_bytes(Alg::ES256, RSA_KEY.as_bytes()).is_err());
    assert!(Signer::from_file_bytes(Alg::RS256, EC256_KEY.as_bytes()).is_err());
    assert!(Signer::from_file_bytes(Alg::ES384, EC256_KEY.as_bytes()).is_err());
    assert!(Signer::from_file_bytes(Alg::HS256, RSA_KEY.as_bytes()).is_err());
    assert!(Signer::hmac(Alg::RS256, b"x").is_err());
    let ed = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let s = Signer::from_pkcs8(Alg::EdDSA, ed.as_ref()).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
    assert_eq!(s.public_key_bytes(), Some(kp.public_key().as_ref()));
}

/// Timing loop for a quick look (`cargo test --release -- --ignored --nocapture`); the
/// full per-algorithm numbers come from `gw-jwt bench`.
#[test]
#[ignore]
fn bench_hs256_decode_and_verify() {
    let keys = all_keys();
    let mut payload = claims();
    payload["scope"] = "openid profile email read:orders write:orders".into();
    payload["realm_access"] = json!({"roles": ["user", "dev", "offline_access"]});
    payload["name"] = "Alice Example".into();
    payload["email"] = "alice@example.com".into();
    payload["jti"] = "7f3c1c1e-1b1a-4a7e-9a55-3c3b1f0e2d11".into();
    let t = mint(
        Alg::HS256,
        json!({"alg": "HS256", "typ": "JWT", "kid": "hmac"}),
        payload,
    );
    let n = 200_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let v = decode_and_verify_signature(t.as_bytes(), &keys, AlgSet::ALL, 8192).unwrap();
        std::hint::black_box(v);
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "HS256 decode_and_verify_signature, {} byte token: {:.0} ns",
        t.len(),
        per
    );
}

/// Cheap deterministic fuzzing: mutated tokens and key files never panic, and a mutated
/// token is never accepted unless the mutation left it byte-identical in meaning.
#[test]
fn mutations_never_panic_or_pass() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let keys = all_keys();
    let p = Policy::default();
    let alphabet =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\xff{}\"";
    for alg in Alg::ALL {
        let t = std_token(alg).into_bytes();
        for _ in 0..300 {
            let mut m = t.clone();
            for _ in 0..(1 + rnd() % 3) {
                let i = (rnd() as usize) % m.len();
                match rnd() % 3 {
                    0 => m[i] = alphabet[(rnd() as usize) % alphabet.len()],
                    1 => {
                        m.remove(i);
                    }
                    _ => m.insert(i, alphabet[(rnd() as usize) % alphabet.len()]),
                }
            }
            if m == t {
                continue;
            }
            if let Ok(v) = verify(&m, &keys, &p, NOW) {
                // Only a change inside the signing input that decodes to the same bytes
                // could pass; strict base64url rules that out entirely.
                panic!("mutated {alg} token accepted: {:?}", v.payload_json());
            }
        }
    }
    for text in [RSA_PUB, EC256_PUB, ED_PUB, RSA_PKCS1] {
        let b = text.as_bytes();
        for _ in 0..300 {
            let mut m = b.to_vec();
            let i = (rnd() as usize) % m.len();
            m[i] = alphabet[(rnd() as usize) % alphabet.len()];
            let _ = KeySet::load(&m);
            let _ = KeySet::load_remote(&m);
        }
    }
    let jwks_text =
        json!({"keys": [jwk(RSA_PUB, "a"), jwk(EC384_PUB, "b"), oct(SECRET64, Some("c"), None)]})
            .to_string();
    for _ in 0..1000 {
        let mut m = jwks_text.clone().into_bytes();
        let i = (rnd() as usize) % m.len();
        m[i] = alphabet[(rnd() as usize) % alphabet.len()];
        let _ = KeySet::load(&m);
        let _ = KeySet::load_remote(&m);
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 19: key material. Published sets hold public keys only; degenerate public
// keys are refused at load, from files and from published sets alike.

/// The 8 points of the edwards25519 torsion subgroup, canonically encoded (little-endian y,
/// sign of x in the top bit): computed independently of `keys::ED25519_SMALL_ORDER`.
const ED25519_TORSION: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

fn okp(x: &[u8], kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(x)})
}

#[test]
fn ed25519_small_order_keys_forge_and_are_refused() {
    let torsion: Vec<Vec<u8>> = ED25519_TORSION.iter().map(|h| hex(h)).collect();
    // ring accepts forged signatures under each of them: S = 0 and R one of the torsion
    // points (R = -[k]A), found within a few messages. This is why they are refused at load.
    for a in &torsion {
        let forged = (0..64u32).find_map(|i| {
            let msg = format!("forged message {i}");
            torsion.iter().find_map(|r| {
                let sig = [&r[..], &[0u8; 32][..]].concat();
                rsig::UnparsedPublicKey::new(&rsig::ED25519, a)
                    .verify(msg.as_bytes(), &sig)
                    .is_ok()
                    .then_some(())
            })
        });
        assert!(forged.is_some(), "no forgery found for {a:02x?}");
    }
    // The identity (x = 01 00..00) verifies every message with R = identity, S = 0: a token
    // "signed" so was accepted by a key file holding it.
    let identity = &torsion[0];
    let forged_token = {
        let input = format!(
            "{}.{}",
            b64url(br#"{"alg":"EdDSA"}"#),
            b64url(claims().to_string().as_bytes())
        );
        let sig = [&identity[..], &[0u8; 32][..]].concat();
        format!("{input}.{}", b64url(&sig))
    };
    assert!(rsig::UnparsedPublicKey::new(&rsig::ED25519, identity)
        .verify(
            forged_token.rsplit_once('.').unwrap().0.as_bytes(),
            &b64::decode(forged_token.rsplit_once('.').unwrap().1.as_bytes()).unwrap()
        )
        .is_ok());
    // Every encoding of a small-order point is refused at load: the 8 canonical ones, x = 0
    // with the sign bit set, and y = p, p + 1 (non-canonical 0 and 1).
    let mut all = torsion.clone();
    for h in [
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ] {
        all.push(hex(h));
    }
    assert_eq!(all.len(), 14);
    for x in &all {
        let e = KeySet::load(okp(x, "bad").to_string().as_bytes()).unwrap_err();
        assert!(e.reason().contains("small order"), "{x:02x?}: {e}");
        // As SPKI PEM too.
        let mut der = hex("302a300506032b6570032100");
        der.extend_from_slice(x);
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der));
        let e = KeySet::load(pem.as_bytes()).unwrap_err();
        assert!(e.reason().contains("small order"), "{e}");
        // A published set skips it and keeps its other keys.
        let set = json!({"keys": [okp(x, "bad"), jwk(ED_PUB, "ed")]}).to_string();
        let (ks, skipped) = KeySet::load_remote(set.as_bytes());
        assert_eq!(ks.unwrap().len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason().starts_with("key #1 (kid \"bad\")"));
        assert!(!skipped[0].is_symmetric());
    }
    let ks = jwks(vec![jwk(ED_PUB, "ed")]);
    assert_eq!(
        code(run(&forged_token, &ks, &Policy::default())),
        "bad_signature"
    );
    // Any other non-canonical y (y >= p) is refused too; large y below p is fine.
    let mut x = [0xffu8; 32];
    x[0] = 0xf0;
    x[31] = 0x7f;
    let e = KeySet::load(okp(&x, "nc").to_string().as_bytes()).unwrap_err();
    assert!(e.reason().contains("canonical"), "{e}");
    x[31] = 0xff;
    assert!(KeySet::load(okp(&x, "nc").to_string().as_bytes()).is_err());
    x[0] = 0xec;
    x[1] = 0xfe;
    let _ = KeySet::load(okp(&x, "ok").to_string().as_bytes())
        .expect("y = p - 257: canonical, not small order");
    // The real key still loads.
    assert!(KeySet::load(ED_PUB.as_bytes()).is_ok());
}

#[test]
fn case19_published_sets_hold_public_keys_only() {
    // A symmetric key in a published set is refused (and marked so); the public keys stay.
    let set = json!({"keys": [oct(SECRET64, Some("hs"), Some("HS256")), jwk(RSA_PUB, "rsa")]})
        .to_string();
    let (ks, skipped) = KeySet::load_remote(set.as_bytes());
    let ks = ks.unwrap();
    assert_eq!(ks.len(), 1);
    assert_eq!(ks.keys()[0].kid(), Some("rsa"));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].is_symmetric());
    assert!(
        skipped[0]
            .reason()
            .starts_with("key #1 (kid \"hs\"): symmetric key (kty \"oct\") refused"),
        "{}",
        skipped[0]
    );
    assert!(!skipped[0].reason().contains(&b64url(SECRET64)));
    // So a token MACed with the published secret is not accepted (no key allows HS256).
    let t = mint(Alg::HS256, json!({"alg": "HS256", "kid": "hs"}), claims());
    assert_eq!(code(run(&t, &ks, &Policy::default())), "alg_not_allowed");
    // A published set of symmetric keys only has no usable key; a bare oct JWK neither.
    let (r, skipped) = KeySet::load_remote(
        json!({"keys": [oct(SECRET64, None, None)]})
            .to_string()
            .as_bytes(),
    );
    assert!(r.unwrap_err().reason().contains("no usable signing key"));
    assert!(skipped.len() == 1 && skipped[0].is_symmetric());
    let (r, skipped) = KeySet::load_remote(oct(SECRET64, None, None).to_string().as_bytes());
    assert!(r.is_err() && skipped.len() == 1 && skipped[0].is_symmetric());
    // A symmetric key only for encryption is ignored like any `use: enc` key.
    let mut enc = oct(SECRET64, None, None);
    enc["use"] = "enc".into();
    let set = json!({"keys": [enc, jwk(RSA_PUB, "rsa")]}).to_string();
    let (ks, skipped) = KeySet::load_remote(set.as_bytes());
    assert_eq!((ks.unwrap().len(), skipped.len()), (1, 0));
    // Local files keep their HMAC secrets.
    assert_eq!(
        KeySet::load(oct(SECRET64, None, None).to_string().as_bytes())
            .unwrap()
            .len(),
        1
    );

    // Degenerate public keys are skipped from published sets as they are refused from files.
    let weak_der = pem::parse(RSA1024_PUB).unwrap().into_contents();
    let Ok(der::PublicKeyDer::Rsa { n: n1024, .. }) = der::parse_spki(&weak_der) else {
        panic!()
    };
    let good = jwk(RSA_PUB, "good");
    let n2048 = good["n"].as_str().unwrap().to_owned();
    let mut off_curve = jwk(EC256_PUB, "off-curve");
    let mut y = b64::decode(off_curve["y"].as_str().unwrap().as_bytes()).unwrap();
    y[31] ^= 1;
    off_curve["y"] = b64url(&y).into();
    let cases = [
        (
            json!({"kty": "RSA", "kid": "rsa1024", "n": b64url(n1024), "e": "AQAB"}),
            "1024 bits",
        ),
        (
            json!({"kty": "RSA", "kid": "e1", "n": n2048, "e": "AQ"}),
            "exponent",
        ),
        (
            json!({"kty": "RSA", "kid": "e2", "n": n2048, "e": "Ag"}),
            "exponent",
        ),
        (
            json!({"kty": "RSA", "kid": "e-big", "n": n2048, "e": "AQAAAAAB"}),
            "exponent",
        ),
        (off_curve, "not a valid point"),
        (okp(&[0u8; 32], "ed-zero"), "small order"),
    ];
    for (key, why) in cases {
        let e = KeySet::load(json!({"keys": [key.clone()]}).to_string().as_bytes()).unwrap_err();
        assert!(e.reason().contains(why), "file: {e}");
        let set = json!({"keys": [key, good.clone()]}).to_string();
        let (ks, skipped) = KeySet::load_remote(set.as_bytes());
        assert_eq!(ks.unwrap().len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason().contains(why), "remote: {}", skipped[0]);
    }
}

// ---------------------------------------------------------------------------------------
// SECURITY-CASES 20 (core part): a token without kid costs a bounded number of signature
// checks.

#[test]
fn case20_signature_checks_per_token_are_bounded() {
    let secret = |i: usize| format!("key number {i:02} of the bounded set, 32+ bytes");
    let n = MAX_SIGNATURE_CHECKS + 4;
    let many = |kid: Option<&str>| {
        jwks(
            (0..n)
                .map(|i| oct(secret(i).as_bytes(), kid, Some("HS256")))
                .collect(),
        )
    };
    let p = Policy::default();
    let signed_by = |i: usize, header: &str| {
        mint_raw(
            &Signer::hmac(Alg::HS256, secret(i).as_bytes()).unwrap(),
            header,
            &claims().to_string(),
        )
    };
    for (keys, header) in [
        (many(None), r#"{"alg":"HS256"}"#),
        (many(Some("shared")), r#"{"alg":"HS256","kid":"shared"}"#),
    ] {
        for i in 0..n {
            let want = if i < MAX_SIGNATURE_CHECKS {
                "ok"
            } else {
                "unknown_key"
            };
            assert_eq!(code(run(&signed_by(i, header), &keys, &p)), want, "key {i}");
        }
        // A bad signature: bad_signature only when every candidate could be tried.
        let bad = flip_sig_bit(&signed_by(0, header), 3);
        assert_eq!(code(run(&bad, &keys, &p)), "unknown_key");
    }
    let few = jwks(
        (0..MAX_SIGNATURE_CHECKS)
            .map(|i| oct(secret(i).as_bytes(), None, Some("HS256")))
            .collect(),
    );
    let last = signed_by(MAX_SIGNATURE_CHECKS - 1, r#"{"alg":"HS256"}"#);
    assert_eq!(code(run(&last, &few, &p)), "ok");
    assert_eq!(
        code(run(&flip_sig_bit(&last, 3), &few, &p)),
        "bad_signature"
    );
    // Keys of other types, or with another kid, cost no signature check and do not count:
    // the right key behind many of them is still found.
    let mut keys: Vec<Value> = (0..50).map(|i| jwk(EC256_PUB, &format!("ec{i}"))).collect();
    keys.extend((0..50).map(|i| oct(secret(i).as_bytes(), Some(&format!("o{i}")), None)));
    keys.push(jwk(RSA_PUB, "rsa"));
    let mixed = jwks(keys);
    let t = mint(Alg::RS256, json!({"alg": "RS256"}), claims());
    assert_eq!(code(run(&t, &mixed, &p)), "ok");
    let t = mint_raw(
        &Signer::hmac(Alg::HS256, secret(40).as_bytes()).unwrap(),
        r#"{"alg":"HS256","kid":"o40"}"#,
        &claims().to_string(),
    );
    assert_eq!(code(run(&t, &mixed, &p)), "ok");
}

// ---------------------------------------------------------------------------------------
// ECDSA malleability (documented in README): (r, s) and (r, n - s) both verify, so one set
// of claims has two valid ES256 token strings. The token cache is keyed by token bytes and is
// fine with that; a denylist or replay check must key by claims (`jti`).

/// `a - b` for big-endian unsigned integers of equal length, `a >= b`.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0);
    out
}

#[test]
fn ecdsa_signatures_are_malleable() {
    let keys = all_keys();
    let p = Policy::default();
    for (alg, order) in [
        (Alg::ES256, "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
        (
            Alg::ES384,
            "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
        ),
    ] {
        let t = std_token(alg);
        let sig = b64::decode(t.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
        let (r, s) = sig.split_at(sig.len() / 2);
        let twin = with_sig(&t, &[r, &sub_be(&hex(order), s)[..]].concat());
        assert_ne!(twin, t);
        let (a, b) = (run(&t, &keys, &p).unwrap(), run(&twin, &keys, &p).unwrap());
        assert_eq!(a.payload_json(), b.payload_json(), "{alg}");
    }
}

// ---------------------------------------------------------------------------------------
// The two libraries (crypto::backend_for): ES512 and Ed448, the cross-check, no crypto for
// tokens refused on their header.

/// A fresh key of `kind` (not the test fixture), as a loaded key: a "wrong key".
fn other_key(kind: KeyKind) -> Key {
    use openssl::{ec, nid::Nid, pkey::PKey, rsa::Rsa};
    let curve = |nid| {
        let k = ec::EcKey::generate(&ec::EcGroup::from_curve_name(nid).unwrap()).unwrap();
        PKey::from_ec_key(k).unwrap()
    };
    let pkey = match kind {
        KeyKind::Rsa => PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        KeyKind::EcP256 => curve(Nid::X9_62_PRIME256V1),
        KeyKind::EcP384 => curve(Nid::SECP384R1),
        KeyKind::EcP521 => curve(Nid::SECP521R1),
        KeyKind::Ed25519 => PKey::generate_ed25519().unwrap(),
        KeyKind::Ed448 => PKey::generate_ed448().unwrap(),
        KeyKind::Oct => {
            return KeySet::load(oct(&[7u8; 64], None, None).to_string().as_bytes())
                .unwrap()
                .keys()[0]
                .clone()
        }
    };
    let pem = pkey.public_key_to_pem().unwrap();
    KeySet::load(&pem).unwrap().keys()[0].clone()
}

/// (r, n - s): the other valid ECDSA signature of the same message (see the module docs).
fn ecdsa_malleate(sig: &[u8], kind: KeyKind) -> Vec<u8> {
    use openssl::{bn::BigNum, bn::BigNumContext, ec::EcGroup, nid::Nid};
    let nid = match kind {
        KeyKind::EcP256 => Nid::X9_62_PRIME256V1,
        KeyKind::EcP384 => Nid::SECP384R1,
        _ => Nid::SECP521R1,
    };
    let group = EcGroup::from_curve_name(nid).unwrap();
    let mut order = BigNum::new().unwrap();
    group
        .order(&mut order, &mut BigNumContext::new().unwrap())
        .unwrap();
    let half = sig.len() / 2;
    let s = BigNum::from_slice(&sig[half..]).unwrap();
    let mut ns = BigNum::new().unwrap();
    ns.checked_sub(&order, &s).unwrap();
    let mut out = sig[..half].to_vec();
    out.extend(ns.to_vec_padded(half as i32).unwrap());
    out
}

/// Every (key, algorithm) of the fixtures: the key, the signer, and the other algorithms
/// the key verifies.
fn every_key_and_alg() -> Vec<(Key, Alg, Signer)> {
    let mut out = Vec::new();
    for (pem, key) in [
        (RSA_PUB, RSA_KEY),
        (EC256_PUB, EC256_KEY),
        (EC384_PUB, EC384_KEY),
        (EC521_PUB, EC521_KEY),
        (ED_PUB, ED_KEY),
        (ED448_PUB, ED448_KEY),
    ] {
        let k = KeySet::load(pem.as_bytes()).unwrap().keys()[0].clone();
        for alg in k.algs().iter() {
            out.push((
                k.clone(),
                alg,
                Signer::from_file_bytes(alg, key.as_bytes()).unwrap(),
            ));
        }
    }
    let hmac = KeySet::load(oct(SECRET64, None, None).to_string().as_bytes()).unwrap();
    for alg in [Alg::HS256, Alg::HS384, Alg::HS512] {
        out.push((
            hmac.keys()[0].clone(),
            alg,
            Signer::hmac(alg, SECRET64).unwrap(),
        ));
    }
    out
}

/// What, key, algorithm, message, signature, expected answer.
type Case<'a> = (&'a str, &'a Key, Alg, &'a [u8], Vec<u8>, bool);

#[test]
fn both_libraries_agree_on_every_test_key() {
    let msg = signing_input(br#"{"alg":"X","kid":"k"}"#, claims().to_string().as_bytes());
    let msg = msg.as_bytes();
    let mut checked_both = 0;
    for (key, alg, signer) in every_key_and_alg() {
        let sig = signer.sign(msg).unwrap();
        let other = other_key(key.kind());
        let mut tampered_msg = msg.to_vec();
        tampered_msg[5] ^= 1;
        let flip = |i: usize| {
            let mut s = sig.clone();
            s[i / 8] ^= 1 << (i % 8);
            s
        };
        let bits = sig.len() * 8;
        let mut cases: Vec<Case<'_>> = vec![
            ("valid", &key, alg, msg, sig.clone(), true),
            (
                "tampered message",
                &key,
                alg,
                &tampered_msg,
                sig.clone(),
                false,
            ),
            ("first bit", &key, alg, msg, flip(0), false),
            ("middle bit", &key, alg, msg, flip(bits / 2), false),
            ("last bit", &key, alg, msg, flip(bits - 1), false),
            (
                "truncated",
                &key,
                alg,
                msg,
                sig[..sig.len() - 1].to_vec(),
                false,
            ),
            ("half", &key, alg, msg, sig[..sig.len() / 2].to_vec(), false),
            ("empty", &key, alg, msg, Vec::new(), false),
            ("extended", &key, alg, msg, [&sig[..], &[0]].concat(), false),
            ("zero", &key, alg, msg, vec![0; sig.len()], false),
            ("wrong key", &other, alg, msg, sig.clone(), false),
        ];
        for wrong in Alg::ALL.into_iter().filter(|a| *a != alg) {
            cases.push(("wrong alg", &key, wrong, msg, sig.clone(), false));
        }
        if matches!(
            key.kind(),
            KeyKind::EcP256 | KeyKind::EcP384 | KeyKind::EcP521
        ) {
            let m = ecdsa_malleate(&sig, key.kind());
            cases.push(("(r, n - s)", &key, alg, msg, m, true));
        }
        let backends: Vec<Backend> = Backend::ALL
            .into_iter()
            .filter(|b| b.supports(alg, key.kind()))
            .collect();
        assert!(backends.contains(&backend_for(alg, key.kind())));
        if backends.len() == 2 {
            checked_both += 1;
        }
        for (what, k, a, m, s, want) in &cases {
            for b in &backends {
                let got = k.verifier(*b).unwrap().verify(*a, m, s);
                assert_eq!(
                    got,
                    *want,
                    "{alg} {:?} {what} ({a}): {} says {got}",
                    key.kind(),
                    b.name()
                );
            }
        }
        // The production path (Key::verify through the set) agrees too.
        let set = KeySet::from_keys(vec![key.clone()]).unwrap();
        assert!(set.verify_signature(alg, None, msg, &sig).is_ok());
        assert!(set.verify_signature(alg, None, msg, &flip(0)).is_err());
    }
    // RSA x 6, P-256, P-384, Ed25519.
    assert_eq!(checked_both, 9);
}

#[test]
fn es512_and_ed448_accept_and_refuse() {
    let mut keys = all_keys();
    keys.extend(jwks(vec![jwk(EC521_PUB, "ec521"), jwk(ED448_PUB, "ed448")]));
    let p = Policy::default();
    for (alg, pem, kid) in [
        (Alg::ES512, EC521_KEY, "ec521"),
        (Alg::EdDSA, ED448_KEY, "ed448"),
    ] {
        let s = Signer::from_file_bytes(alg, pem.as_bytes()).unwrap();
        let t = mint_raw(
            &s,
            &json!({"alg": alg.name(), "kid": kid}).to_string(),
            &claims().to_string(),
        );
        let v = run(&t, &keys, &p).unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!((v.alg(), v.kid()), (alg, Some(kid)));
        assert_eq!(code(run(&flip_sig_bit(&t, 9), &keys, &p)), "bad_signature");
        // Without kid: found among the keys that fit the alg (Ed448 after the Ed25519 key).
        let nokid = mint_raw(
            &s,
            &json!({"alg": alg.name()}).to_string(),
            &claims().to_string(),
        );
        assert!(run(&nokid, &keys, &p).is_ok(), "{kid} without kid");
        // Not in the location's list: refused.
        let only_rs = Policy {
            algorithms: Some(AlgSet::single(Alg::RS256)),
            ..Policy::default()
        };
        assert_eq!(code(run(&t, &keys, &only_rs)), "alg_not_allowed");
    }
    // An Ed448 signature never verifies with the Ed25519 key and the reverse (lengths differ).
    let ed448 = Signer::from_file_bytes(Alg::EdDSA, ED448_KEY.as_bytes()).unwrap();
    let t = mint_raw(
        &ed448,
        r#"{"alg":"EdDSA","kid":"ed"}"#,
        &claims().to_string(),
    );
    assert_eq!(code(run(&t, &keys, &p)), "bad_signature");
    // PEM and JWK load the same key.
    let from_pem = KeySet::load(ED448_PUB.as_bytes()).unwrap();
    assert_eq!(from_pem.keys()[0].kind(), KeyKind::Ed448);
    assert_eq!(from_pem.algs(), AlgSet::single(Alg::EdDSA));
    let from_pem = KeySet::load(EC521_PUB.as_bytes()).unwrap();
    assert_eq!(from_pem.algs(), AlgSet::single(Alg::ES512));
    // Load-time validation.
    let refuse = |j: Value, want: &str| {
        let e = KeySet::load(j.to_string().as_bytes()).unwrap_err();
        assert!(e.reason().contains(want), "{j}: {e}");
    };
    let mut j = jwk(EC521_PUB, "bad");
    let mut y = b64::decode(j["y"].as_str().unwrap().as_bytes()).unwrap();
    y[65] ^= 1;
    j["y"] = b64url(&y).into();
    refuse(j, "not a valid point on its curve");
    let mut j = jwk(EC521_PUB, "bad");
    j["x"] = b64url(&[0u8; 65]).into();
    refuse(j, "66 bytes");
    let ed = |x: &[u8]| json!({"kty": "OKP", "crv": "Ed448", "x": b64url(x)});
    refuse(ed(&[0u8; 56]), "57 bytes");
    let mut enc = [0u8; 57];
    refuse(ed(&enc), "small order"); // y = 0
    enc[0] = 1;
    refuse(ed(&enc), "small order"); // y = 1: the identity
    enc[56] = 0x80;
    refuse(ed(&enc), "small order"); // x = 0 with the sign bit: not even a valid encoding
    let mut p_minus_1 = [0xffu8; 57];
    p_minus_1[0] = 0xfe;
    p_minus_1[28] = 0xfe;
    p_minus_1[56] = 0;
    refuse(ed(&p_minus_1), "small order"); // y = -1: order 2
    let mut p = p_minus_1;
    p[0] = 0xff;
    refuse(ed(&p), "not canonically encoded"); // y = p
    let mut high = [0u8; 57];
    high[0] = 5;
    high[56] = 1;
    refuse(ed(&high), "not canonically encoded"); // stray bits in the last byte
                                                  // Some small y is not on the curve (x^2 has no square root); loading it fails.
    let off = (2u8..50)
        .find(|y| !crypto::ed448_y_on_curve(&[[*y].as_slice(), &[0u8; 55]].concat()))
        .expect("an off-curve y");
    let mut enc = [0u8; 57];
    enc[0] = off;
    refuse(ed(&enc), "not a point on the curve");
    // The real key's y is on the curve.
    let x = b64::decode(jwk(ED448_PUB, "k")["x"].as_str().unwrap().as_bytes()).unwrap();
    assert!(crypto::ed448_y_on_curve(&x[..56]));
}

#[test]
fn tokens_refused_on_their_header_cost_no_signature_check() {
    use super::keys::SIGNATURE_CHECKS;
    let keys = all_keys();
    let checks = |t: &str, p: &Policy| {
        SIGNATURE_CHECKS.with(|n| n.set(0));
        let c = code(run(t, &keys, p));
        (c, SIGNATURE_CHECKS.with(|n| n.get()))
    };
    let es384_only_rs = Policy {
        algorithms: Some(AlgSet::single(Alg::RS256)),
        ..Policy::default()
    };
    let valid = std_token(Alg::ES384);
    // A location that does not accept ES384 never runs the 1 ms P-384 verify.
    assert_eq!(checks(&valid, &es384_only_rs), ("alg_not_allowed", 0));
    let forged = flip_sig_bit(&std_token(Alg::RS256), 3);
    assert_eq!(checks(&forged, &Policy::default()), ("bad_signature", 1));
    // Unknown kid: no key is tried, whatever the algorithm.
    for alg in Alg::ALL {
        let t = mint(alg, json!({"alg": alg.name(), "kid": "nobody"}), claims());
        assert_eq!(checks(&t, &Policy::default()), ("unknown_key", 0), "{alg}");
    }
    // An algorithm no key holds: nothing to try either.
    let only_hmac = jwks(vec![oct(SECRET64, Some("h"), None)]);
    let t = std_token(Alg::RS256);
    SIGNATURE_CHECKS.with(|n| n.set(0));
    let r = decode_and_verify_signature(t.as_bytes(), &only_hmac, AlgSet::ALL, usize::MAX);
    assert_eq!(r.unwrap_err().code(), "unknown_key");
    assert_eq!(SIGNATURE_CHECKS.with(|n| n.get()), 0);
    // Without kid, at most MAX_SIGNATURE_CHECKS keys: the worst case of a forged token.
    let many = jwks(
        (0..MAX_SIGNATURE_CHECKS + 5)
            .map(|i| oct(&[i as u8 + 1; 32], None, Some("HS256")))
            .collect(),
    );
    let forged = encode_with_signature(br#"{"alg":"HS256"}"#, b"{}", &[0; 32]);
    SIGNATURE_CHECKS.with(|n| n.set(0));
    let r = decode_and_verify_signature(forged.as_bytes(), &many, AlgSet::ALL, usize::MAX);
    assert_eq!(r.unwrap_err().code(), "unknown_key");
    assert_eq!(SIGNATURE_CHECKS.with(|n| n.get()), MAX_SIGNATURE_CHECKS);
}

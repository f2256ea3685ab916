//! Arbitrary bytes as a key file (JWKS, JWK or PEM): `KeySet::load` and `load_lenient` never
//! panic, agree with each other, and every loaded public key survives a round trip through
//! `to_public_jwk`.
#![no_main]

use gateway_core::jwt::{KeyKind, KeySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let strict = KeySet::load(data);
    let lenient = KeySet::load_lenient(data);
    if let Err(e) = &strict {
        let _ = e.reason();
    }
    if let Ok((set, skipped)) = &lenient {
        assert!(!set.is_empty());
        for e in skipped {
            let _ = e.reason();
        }
    }
    let Ok(set) = strict else {
        return;
    };
    // Whatever the strict loader accepts, the lenient one accepts unchanged.
    let (lset, skipped) = lenient.expect("load accepted what load_lenient refused");
    assert!(
        skipped.is_empty(),
        "load_lenient skipped keys load accepted"
    );
    assert_eq!(lset.len(), set.len());
    assert!(!set.is_empty());
    for key in set.keys() {
        let _ = format!("{key:?}");
        let algs = key.algs();
        assert!(!algs.is_empty(), "a key that verifies nothing: {key:?}");
        assert_eq!(
            algs.intersect(key.kind().algs()),
            algs,
            "algorithms outside the key type: {key:?}"
        );
        let Some(jwk) = key.to_public_jwk() else {
            assert_eq!(
                key.kind(),
                KeyKind::Oct,
                "only HMAC secrets are not exported"
            );
            continue;
        };
        let text = serde_json::to_vec(&jwk).expect("JWK serializes");
        let again = KeySet::load(&text).expect("an exported public JWK loads again");
        assert_eq!(again.len(), 1);
        let k2 = &again.keys()[0];
        assert_eq!(k2.kind(), key.kind());
        assert_eq!(k2.kid(), key.kid());
        assert_eq!(
            k2.algs().intersect(algs),
            algs,
            "exported JWK lost algorithms: {key:?} -> {k2:?}"
        );
    }
});

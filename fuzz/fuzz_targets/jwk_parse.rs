//! Arbitrary bytes as a key file (JWKS, JWK or PEM): `KeySet::load` and `load_remote` never
//! panic, agree with each other (the remote loader takes what the strict one takes, less its
//! symmetric keys), and every loaded public key survives a round trip through `to_public_jwk`.
#![no_main]

use gateway_core::jwt::{KeyError, KeyKind, KeySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let strict = KeySet::load(data);
    let (remote, skipped) = KeySet::load_remote(data);
    if let Err(e) = &strict {
        let _ = e.reason();
    }
    if let Ok(set) = &remote {
        assert!(!set.is_empty());
        assert!(set.keys().iter().all(|k| k.kind() != KeyKind::Oct));
    }
    for e in &skipped {
        let _ = e.reason();
    }
    let Ok(set) = strict else {
        return;
    };
    // Whatever the strict loader accepts, the remote one accepts unchanged, less the symmetric
    // keys (which it refuses, one skipped entry each).
    let public = set.keys().iter().filter(|k| k.kind() != KeyKind::Oct).count();
    assert!(
        skipped.iter().all(KeyError::is_symmetric),
        "load_remote skipped a public key load accepted"
    );
    assert_eq!(skipped.len(), set.len() - public);
    match &remote {
        Ok(r) => assert_eq!(r.len(), public),
        Err(_) => assert_eq!(public, 0, "load_remote refused a set with public keys"),
    }
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

//! Both verification libraries (ring and OpenSSL, `gateway_core::jwt::Backend`) on the same
//! input, for every test key and algorithm: each implementation path is fuzzed, and where both
//! libraries support an algorithm they must agree.
//!
//! Input: `KEY ALG MODE REST`. KEY and ALG pick a test key and one of its algorithms. MODE bit
//! 0 clear: REST is a message, signed with the test private key, then the signature is changed
//! at the positions and with the bytes MODE's other bits and REST's tail say (nothing changed:
//! it must verify). MODE bit 0 set: REST is `MESSAGE SIGNATURE`, split at REST's first byte.
//! Every library that supports the key says the same; a refused signature never panics.
#![no_main]

use gateway_core::jwt::sign::Signer;
use gateway_core::jwt::{Alg, Backend, Key, KeySet, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Entry {
    alg: Alg,
    signer: Signer,
    verifiers: Vec<(Backend, Verifier<'static>)>,
}

fn fixture() -> &'static [Entry] {
    static KEYS: OnceLock<Vec<(Key, &'static [u8])>> = OnceLock::new();
    static F: OnceLock<Vec<Entry>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let pairs: [(&[u8], &'static [u8]); 7] = [
            (include_bytes!("../../t/keys/rsa2048.pub.pem"), include_bytes!("../../t/keys/rsa2048.key.pem")),
            (include_bytes!("../../t/keys/ec256.pub.pem"), include_bytes!("../../t/keys/ec256.key.pem")),
            (include_bytes!("../../t/keys/ec384.pub.pem"), include_bytes!("../../t/keys/ec384.key.pem")),
            (include_bytes!("../../t/keys/ec521.pub.pem"), include_bytes!("../../t/keys/ec521.key.pem")),
            (include_bytes!("../../t/keys/ed25519.pub.pem"), include_bytes!("../../t/keys/ed25519.key.pem")),
            (include_bytes!("../../t/keys/ed448.pub.pem"), include_bytes!("../../t/keys/ed448.key.pem")),
            (include_bytes!("../../t/keys/hs256.jwk"), include_bytes!("../../t/keys/hs256.jwk")),
        ];
        pairs
            .iter()
            .map(|(public, private)| {
                let set = KeySet::load(public).expect("test key");
                (set.keys()[0].clone(), *private)
            })
            .collect()
    });
    F.get_or_init(|| {
        let mut out = Vec::new();
        for (key, private) in keys {
            for alg in key.algs().iter() {
                let verifiers = Backend::ALL
                    .into_iter()
                    .filter(|b| b.supports(alg, key.kind()))
                    .map(|b| (b, key.verifier(b).expect("verifier")))
                    .collect();
                let signer = Signer::from_file_bytes(alg, private).expect("signer");
                out.push(Entry {
                    alg,
                    signer,
                    verifiers,
                });
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let [k, mode, rest @ ..] = data else {
        return;
    };
    let entries = fixture();
    let e = &entries[usize::from(*k) % entries.len()];
    let (msg, sig, must_verify) = if mode & 1 == 0 {
        let mut sig = e.signer.sign(rest).expect("signing");
        // Up to 3 changed bytes, at positions and with values taken from MODE and the tail.
        let changes = usize::from(mode >> 1) % 4;
        let tail = &rest[rest.len().saturating_sub(2 * changes)..];
        let mut changed = false;
        for pair in tail.chunks(2) {
            if let [pos, val] = pair {
                let i = usize::from(*pos) % sig.len();
                changed |= *val != 0;
                sig[i] ^= val;
            }
        }
        (rest.to_vec(), sig, !changed)
    } else {
        let cut = rest.first().map_or(0, |c| usize::from(*c).min(rest.len() - 1) + 1);
        let (m, s) = rest.split_at(cut.min(rest.len()));
        (m.to_vec(), s.to_vec(), false)
    };
    let results: Vec<(Backend, bool)> = e
        .verifiers
        .iter()
        .map(|(b, v)| (*b, v.verify(e.alg, &msg, &sig)))
        .collect();
    if must_verify {
        for (b, ok) in &results {
            assert!(ok, "{} refused a valid {} signature", b.name(), e.alg);
        }
    }
    if let [(_, a), (_, b)] = results[..] {
        assert_eq!(a, b, "ring and OpenSSL disagree on {} {:?}", e.alg, results);
    }
});

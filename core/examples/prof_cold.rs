use gateway_core::jwt::*;
use std::time::Instant;
fn toks(alg: &str) -> Vec<String> {
    let lua = std::fs::read_to_string(format!("/work/prof/cycle-{alg}.lua")).unwrap();
    lua.lines()
        .filter_map(|l| l.trim().strip_prefix("\"Bearer "))
        .map(|l| l.trim_end_matches("\",").to_string())
        .collect()
}
fn main() {
    let mut keys = KeySet::new();
    for f in ["jwks.json", "hmac.jwks", "ec521.jwk", "ed448.jwk"] {
        keys.extend(KeySet::load(&std::fs::read(format!("t/keys/{f}")).unwrap()).unwrap());
    }
    let thrash_mb: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let mut junk = vec![0u8; thrash_mb << 20];
    for alg in ["HS256", "RS256", "ES256", "EdDSA"] {
        let t = toks(alg);
        let mut total = 0.0;
        let mut n = 0;
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed().as_secs_f64() < 1.5 {
            if thrash_mb > 0 {
                for j in (0..junk.len()).step_by(64) {
                    junk[j] = junk[j].wrapping_add(1);
                }
            }
            let tok = &t[i % t.len()];
            i += 1;
            let a = Instant::now();
            let r = decode_and_verify_signature(tok.as_bytes(), &keys, AlgSet::ALL, 8192);
            total += a.elapsed().as_secs_f64();
            n += 1;
            assert!(r.is_ok());
        }
        println!(
            "{alg}: thrash {thrash_mb} MB: {:.2} us/verify",
            total * 1e6 / n as f64
        );
    }
    std::hint::black_box(&junk);
}

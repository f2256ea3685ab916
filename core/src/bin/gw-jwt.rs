//! `gw-jwt`: mint, inspect and verify JWTs for ngx-gateway tests; build JWKS files;
//! measure verification cost.
//!
//! ```text
//! gw-jwt sign --key FILE --alg ALG [--kid K] [--header JSON] [--claims JSON]
//!             [--raw-header-json TEXT] [--raw-payload-json TEXT]
//!             [--exp-in SECS] [--nbf-in SECS] [--iat-now]
//!             [--corrupt-signature] [--signature B64]
//! gw-jwt encode-unsigned [--header JSON | --raw-header-json TEXT]
//!             [--claims JSON | --raw-payload-json TEXT] [--signature B64]
//! gw-jwt jwks --pub FILE [--kid K] [--alg ALG] [--use USE] [--pub FILE | --jwk FILE ...]
//! gw-jwt jwk  --pub FILE [--kid K] [--alg ALG] [--use USE]
//! gw-jwt oct  --bytes N [--kid K] [--alg ALG]
//! gw-jwt verify --keys FILE [--alg ALG]... [--iss I]... [--aud A]... [--typ T]
//!             [--leeway SECS] [--require-exp] [--now UNIX] TOKEN|-
//! gw-jwt bench [--keys DIR] [--seconds S]
//! gw-jwt policy check FILE
//! gw-jwt policy key-digest [KEY]
//! gw-jwt policy new-key
//! gw-jwt policy gen --consumers N [--version V]
//! gw-jwt policy bench --consumers N [--seconds S]
//! ```
//!
//! `policy check` validates a policy document as the module does (`ok: ...` and exit 0, or
//! `FILE: CODE: MESSAGE` on stderr and exit 1); `policy key-digest` prints the SHA-256 digest
//! (64 hex digits) of KEY, or of standard input without its trailing newline; `policy new-key`
//! makes a random key (`gwk_` + 32 bytes base64url) and prints it with its digest; `policy gen`
//! prints a valid document with N consumers (the same for the same arguments, see
//! `gateway_core::policy::generate`); `policy bench` times compiling such a document and the
//! lookups a request makes.
//!
//! `sign` keys: PKCS#8 PEM private keys (`openssl genpkey`) for RS*/PS*/ES*/EdDSA, PKCS#1
//! `RSA PRIVATE KEY` for RS*/PS*, a JWK `kty: oct` file for HS*. The default header is
//! `{"alg":ALG,"typ":"JWT"}` plus `kid`; `--header` members are merged over it (so
//! `--header '{"alg":"none"}'` mints a lying header). `--raw-*-json` use the text verbatim
//! (duplicate names, bad UTF-8 via \u escapes, anything). `--signature` replaces the
//! signature segment with the given text verbatim.

use gateway_core::jwt::sign::{b64url, encode_with_signature, signing_input, Signer};
use gateway_core::jwt::{
    backend_for, check_claims, decode_and_verify_signature, verify, Alg, AlgSet, Backend, KeySet,
    Policy, TokenCache,
};
use gateway_core::policy;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sign") => sign(&args[1..], false),
        Some("encode-unsigned") => sign(&args[1..], true),
        Some("jwks") => jwks(&args[1..], true),
        Some("jwk") => jwks(&args[1..], false),
        Some("oct") => oct(&args[1..]),
        Some("verify") => verify_cmd(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("policy") if args.get(1).map(String::as_str) == Some("check") => {
            return policy_check(&args[2..]);
        }
        Some("policy") => policy(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command \"{other}\"\n{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gw-jwt: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> &'static str {
    "usage:
  gw-jwt sign --key FILE --alg ALG [--kid K] [--header JSON] [--claims JSON]
              [--raw-header-json TEXT] [--raw-payload-json TEXT]
              [--exp-in SECS] [--nbf-in SECS] [--iat-now] [--corrupt-signature] [--signature B64]
  gw-jwt encode-unsigned [--header JSON | --raw-header-json TEXT]
              [--claims JSON | --raw-payload-json TEXT] [--signature B64]
  gw-jwt jwks --pub FILE [--kid K] [--alg ALG] [--use USE] [--pub FILE | --jwk FILE ...]
  gw-jwt jwk  --pub FILE [--kid K] [--alg ALG] [--use USE]
  gw-jwt oct  --bytes N [--kid K] [--alg ALG]
  gw-jwt verify --keys FILE [--alg ALG]... [--iss I]... [--aud A]... [--typ T]
              [--leeway SECS] [--require-exp] [--now UNIX] TOKEN|-
  gw-jwt bench [--keys DIR] [--seconds S]
  gw-jwt policy check FILE
  gw-jwt policy key-digest [KEY]          (KEY from stdin when absent)
  gw-jwt policy new-key
  gw-jwt policy gen --consumers N [--version V]
  gw-jwt policy bench --consumers N [--seconds S]
"
}

/// `--name value` pairs and bare `--flag`s, in order, plus positional arguments.
struct Args {
    opts: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

const FLAGS: [&str; 3] = ["--corrupt-signature", "--iat-now", "--require-exp"];

impl Args {
    fn parse(args: &[String], allowed: &[&str]) -> Res<Args> {
        let mut opts = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a.starts_with("--") {
                if !allowed.contains(&a.as_str()) {
                    return Err(format!("unknown option {a}"));
                }
                if FLAGS.contains(&a.as_str()) {
                    opts.push((a.clone(), None));
                } else {
                    let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                    opts.push((a.clone(), Some(v.clone())));
                }
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Args { opts, positional })
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.opts
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
    fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| n == name)
    }
}

fn read(path: &str) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn parse_alg(s: &str) -> Res<Alg> {
    s.parse::<Alg>()
}

fn json_object(text: &str, what: &str) -> Res<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{what} must be a JSON object")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sign(args: &[String], unsigned: bool) -> Res<()> {
    let a = Args::parse(
        args,
        &[
            "--key",
            "--alg",
            "--kid",
            "--header",
            "--claims",
            "--raw-header-json",
            "--raw-payload-json",
            "--exp-in",
            "--nbf-in",
            "--iat-now",
            "--corrupt-signature",
            "--signature",
        ],
    )?;
    let alg = match a.get("--alg") {
        Some(s) => Some(parse_alg(s)?),
        None if unsigned => None,
        None => return Err("--alg is required".into()),
    };
    let header = match a.get("--raw-header-json") {
        Some(raw) => raw.to_owned(),
        None => {
            let mut h = Map::new();
            match alg {
                Some(alg) => {
                    h.insert("alg".into(), alg.name().into());
                    h.insert("typ".into(), "JWT".into());
                }
                None => {
                    h.insert("alg".into(), "none".into());
                }
            }
            if let Some(kid) = a.get("--kid") {
                h.insert("kid".into(), kid.into());
            }
            if let Some(extra) = a.get("--header") {
                h.extend(json_object(extra, "--header")?);
            }
            Value::Object(h).to_string()
        }
    };
    let payload = match a.get("--raw-payload-json") {
        Some(raw) => raw.to_owned(),
        None => {
            let mut c = match a.get("--claims") {
                Some(text) => json_object(text, "--claims")?,
                None => Map::new(),
            };
            let t = now();
            for (opt, claim) in [("--exp-in", "exp"), ("--nbf-in", "nbf")] {
                if let Some(v) = a.get(opt) {
                    let secs: i64 = v.parse().map_err(|_| format!("{opt}: not an integer"))?;
                    c.insert(claim.into(), (t + secs).into());
                }
            }
            if a.flag("--iat-now") {
                c.insert("iat".into(), t.into());
            }
            Value::Object(c).to_string()
        }
    };
    let mut token = if unsigned {
        encode_with_signature(header.as_bytes(), payload.as_bytes(), b"")
    } else {
        let key = a.get("--key").ok_or("--key is required")?;
        let alg = alg.ok_or("--alg is required")?;
        let signer =
            Signer::from_file_bytes(alg, &read(key)?).map_err(|e| format!("{key}: {e}"))?;
        let input = signing_input(header.as_bytes(), payload.as_bytes());
        let mut sig = signer.sign(input.as_bytes()).map_err(|e| e.to_string())?;
        if a.flag("--corrupt-signature") {
            if let Some(b) = sig.first_mut() {
                *b ^= 1;
            }
        }
        format!("{input}.{}", b64url(&sig))
    };
    if let Some(sig) = a.get("--signature") {
        if let Some(pos) = token.rfind('.') {
            token.truncate(pos + 1);
            token.push_str(sig);
        }
    }
    println!("{token}");
    Ok(())
}

fn jwks(args: &[String], set: bool) -> Res<()> {
    let a = Args::parse(args, &["--pub", "--jwk", "--kid", "--alg", "--use"])?;
    // Each --pub (a PEM public key) or --jwk (a JWK file, copied as is) starts a key;
    // --kid/--alg/--use apply to the latest one.
    let mut keys: Vec<Map<String, Value>> = Vec::new();
    for (name, value) in &a.opts {
        let value = value.as_deref().unwrap_or_default();
        if name == "--pub" {
            let ks = KeySet::load(&read(value)?).map_err(|e| format!("{value}: {e}"))?;
            for k in ks.keys() {
                keys.push(k.to_public_jwk().ok_or("HMAC keys cannot be exported")?);
            }
            continue;
        }
        if name == "--jwk" {
            let text =
                String::from_utf8(read(value)?).map_err(|_| format!("{value}: not UTF-8"))?;
            keys.push(json_object(&text, value)?);
            continue;
        }
        let last = keys
            .last_mut()
            .ok_or_else(|| format!("{name} must follow a --pub"))?;
        match name.as_str() {
            "--kid" => {
                last.insert("kid".into(), value.into());
            }
            "--alg" => {
                last.insert("alg".into(), parse_alg(value)?.name().into());
            }
            _ => {
                last.insert("use".into(), value.into());
            }
        }
    }
    let out = if set {
        let list: Vec<Value> = keys.into_iter().map(Value::Object).collect();
        serde_json::json!({ "keys": list })
    } else {
        match keys.as_slice() {
            [one] => Value::Object(one.clone()),
            _ => return Err("jwk takes exactly one --pub with one key".into()),
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn oct(args: &[String]) -> Res<()> {
    let a = Args::parse(args, &["--bytes", "--kid", "--alg"])?;
    let n: usize = a
        .get("--bytes")
        .ok_or("--bytes is required")?
        .parse()
        .map_err(|_| "--bytes: not a number")?;
    let mut secret = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| "random generator failed")?;
    let mut m = Map::new();
    m.insert("kty".into(), "oct".into());
    if let Some(kid) = a.get("--kid") {
        m.insert("kid".into(), kid.into());
    }
    if let Some(alg) = a.get("--alg") {
        m.insert("alg".into(), parse_alg(alg)?.name().into());
    }
    m.insert("k".into(), b64url(&secret).into());
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(m)).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn verify_cmd(args: &[String]) -> Res<()> {
    let a = Args::parse(
        args,
        &[
            "--keys",
            "--alg",
            "--iss",
            "--aud",
            "--typ",
            "--leeway",
            "--require-exp",
            "--now",
        ],
    )?;
    let mut keys = KeySet::new();
    for path in a.all("--keys") {
        keys.extend(KeySet::load(&read(path)?).map_err(|e| format!("{path}: {e}"))?);
    }
    let mut policy = Policy::default();
    let algs = a.all("--alg");
    if !algs.is_empty() {
        let mut set = AlgSet::EMPTY;
        for s in algs {
            set.insert(parse_alg(s)?);
        }
        policy.algorithms = Some(set);
    }
    policy.issuers = a.all("--iss").into_iter().map(String::from).collect();
    policy.audiences = a.all("--aud").into_iter().map(String::from).collect();
    policy.typ = a.get("--typ").map(String::from);
    policy.require_exp = a.flag("--require-exp");
    if let Some(l) = a.get("--leeway") {
        policy.leeway = l.parse().map_err(|_| "--leeway: not a number")?;
    }
    let t = match a.get("--now") {
        Some(n) => n.parse().map_err(|_| "--now: not a number")?,
        None => now(),
    };
    let token = match a.positional.as_slice() {
        [t] if t == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| e.to_string())?;
            s.trim().to_owned()
        }
        [t] => t.clone(),
        _ => return Err("give exactly one token (or - for stdin)".into()),
    };
    match verify(token.as_bytes(), &keys, &policy, t) {
        Ok(v) => {
            println!("{}", v.payload_json());
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", e.code())),
    }
}

// ----------------------------------------------------------------------------------------
// bench

fn time_per_op(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up, then run batches until the budget is spent.
    for _ in 0..10 {
        f();
    }
    let mut n: u64 = 0;
    let mut batch: u64 = 1;
    let start = Instant::now();
    loop {
        for _ in 0..batch {
            f();
        }
        n += batch;
        let el = start.elapsed();
        if el >= budget {
            return el.as_nanos() as f64 / n as f64;
        }
        batch = (batch * 2).min(1 << 16);
    }
}

fn bench_claims() -> String {
    // A typical access token; with the header the HS256 token is about 600 bytes.
    serde_json::json!({
        "exp": 4_102_444_800i64, "iat": 1_700_000_000,
        "jti": "7f3c1c1e-1b1a-4a7e-9a55-3c3b1f0e2d11",
        "iss": "https://sso.example.com/realms/example", "aud": "api",
        "sub": "2f6d9a8e-61a1-4c56-9b0e-1c9a4e8f7d21", "azp": "web-app",
        "realm_access": {"roles": ["offline_access", "user"]},
        "scope": "openid profile email", "email_verified": true,
        "preferred_username": "alice", "email": "alice@example.com"
    })
    .to_string()
}

/// `--seconds S` (default 0.5): the time budget of each measurement.
fn budget_arg(a: &Args) -> Res<Duration> {
    let secs: f64 = a
        .get("--seconds")
        .unwrap_or("0.5")
        .parse()
        .map_err(|_| "--seconds: not a number")?;
    Duration::try_from_secs_f64(secs).map_err(|_| "--seconds: not a duration".into())
}

/// One row of `gw-jwt bench`: label, algorithm, private key file, kid.
const BENCH_ROWS: [(&str, Alg, &str, &str); 14] = [
    ("HS256", Alg::HS256, "hs256.jwk", "hs256"),
    ("HS384", Alg::HS384, "hs384.jwk", "hs384"),
    ("HS512", Alg::HS512, "hs512.jwk", "hs512"),
    ("RS256", Alg::RS256, "rsa2048.key.pem", "rsa2048"),
    ("RS384", Alg::RS384, "rsa2048.key.pem", "rsa2048"),
    ("RS512", Alg::RS512, "rsa2048.key.pem", "rsa2048"),
    ("PS256", Alg::PS256, "rsa2048.key.pem", "rsa2048"),
    ("PS384", Alg::PS384, "rsa2048.key.pem", "rsa2048"),
    ("PS512", Alg::PS512, "rsa2048.key.pem", "rsa2048"),
    ("RS256/3072", Alg::RS256, "rsa3072.key.pem", "rsa3072"),
    ("ES256", Alg::ES256, "ec256.key.pem", "ec256"),
    ("ES384", Alg::ES384, "ec384.key.pem", "ec384"),
    ("ES512", Alg::ES512, "ec521.key.pem", "ec521"),
    ("EdDSA", Alg::EdDSA, "ed25519.key.pem", "ed25519"),
];

fn bench(args: &[String]) -> Res<()> {
    let a = Args::parse(args, &["--keys", "--seconds"])?;
    let dir = a.get("--keys").unwrap_or("t/keys");
    let budget = budget_arg(&a)?;
    let file = |name: &str| read(&format!("{dir}/{name}"));
    let mut keys = KeySet::new();
    for f in ["jwks.json", "hmac.jwks", "ec521.jwk", "ed448.jwk"] {
        keys.extend(KeySet::load(&file(f)?).map_err(|e| format!("{f}: {e}"))?);
    }
    let claims = bench_claims();
    let policy = Policy::default();
    let t_now = 1_700_000_100;
    println!(
        "raw: the library's verify alone, key prepared (µs); uses: the library the gateway runs"
    );
    println!(
        "{:<11} {:>6} {:>9} {:>11} {:>8} {:>14} {:>10} {:>13}",
        "alg",
        "bytes",
        "ring µs",
        "openssl µs",
        "uses",
        "decode+sig µs",
        "verify µs",
        "cache-hit ns"
    );
    let ed448 = [("Ed448", Alg::EdDSA, "ed448.key.pem", "ed448")];
    for (label, alg, key_file, kid) in BENCH_ROWS.iter().chain(ed448.iter()).copied() {
        let signer = Signer::from_file_bytes(alg, &file(key_file)?).map_err(|e| e.to_string())?;
        let header = serde_json::json!({"alg": alg.name(), "typ": "JWT", "kid": kid}).to_string();
        let input = signing_input(header.as_bytes(), claims.as_bytes());
        let sig = signer.sign(input.as_bytes()).map_err(|e| e.to_string())?;
        let token = format!("{input}.{}", b64url(&sig));
        verify(token.as_bytes(), &keys, &policy, t_now).map_err(|e| format!("{label}: {e}"))?;

        let key = keys
            .keys()
            .iter()
            .find(|k| k.kid() == Some(kid))
            .ok_or_else(|| format!("no key {kid}"))?;
        let mut raw = [None, None];
        for (i, backend) in Backend::ALL.into_iter().enumerate() {
            if !backend.supports(alg, key.kind()) {
                continue;
            }
            let v = key.verifier(backend).ok_or("no verifier")?;
            if !v.verify(alg, input.as_bytes(), &sig) {
                return Err(format!("{label}: {} does not verify", backend.name()));
            }
            raw[i] = Some(time_per_op(budget, || {
                std::hint::black_box(v.verify(alg, input.as_bytes(), &sig));
            }));
        }
        let algs = policy.effective_algs(&keys);
        let dec_ns = time_per_op(budget, || {
            let r = decode_and_verify_signature(token.as_bytes(), &keys, algs, 8192);
            std::hint::black_box(r.is_ok());
        });
        let full_ns = time_per_op(budget, || {
            let r = verify(token.as_bytes(), &keys, &policy, t_now);
            std::hint::black_box(r.is_ok());
        });
        let mut cache = TokenCache::new(1024).map_err(|e| e.to_string())?;
        let v = Arc::new(
            decode_and_verify_signature(token.as_bytes(), &keys, algs, 8192)
                .map_err(|e| e.to_string())?,
        );
        cache.insert(keys.id(), token.as_bytes(), v, t_now);
        let hit_ns = time_per_op(budget, || {
            let hit = cache.get(keys.id(), token.as_bytes(), t_now);
            let ok = hit.is_some_and(|v| check_claims(&v, &policy, t_now).is_ok());
            std::hint::black_box(ok);
        });
        let us = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.2}", t / 1000.0));
        println!(
            "{:<11} {:>6} {:>9} {:>11} {:>8} {:>14.2} {:>10.2} {:>13.0}",
            label,
            token.len(),
            us(raw[0]),
            us(raw[1]),
            backend_for(alg, key.kind()).name(),
            dec_ns / 1000.0,
            full_ns / 1000.0,
            hit_ns
        );
    }
    // The cache key alone.
    let mut cache = TokenCache::new(1024).map_err(|e| e.to_string())?;
    let token = vec![b'a'; 600];
    let miss_ns = time_per_op(budget, || {
        std::hint::black_box(cache.get(1, &token, t_now).is_some());
    });
    println!("cache lookup (miss, 600-byte token, hash + probe): {miss_ns:.0} ns");
    bench_misses(&keys, &file("hs256.jwk")?, budget)
}

/// What a cache that never hits costs: 4,096 distinct HS256 tokens in a cycle, verified with
/// no cache, then through a 1,024-entry cache (lookup, verify, insert: every lookup misses).
fn bench_misses(keys: &KeySet, hs256: &[u8], budget: Duration) -> Res<()> {
    let signer = Signer::from_file_bytes(Alg::HS256, hs256).map_err(|e| e.to_string())?;
    let header = br#"{"alg":"HS256","typ":"JWT","kid":"hs256"}"#;
    let tokens: Vec<String> = (0..4096)
        .map(|i| {
            let claims = bench_claims().replace("alice", &format!("user-{i}"));
            gateway_core::jwt::sign::encode_token(header, claims.as_bytes(), &signer)
                .map_err(|e| e.to_string())
        })
        .collect::<Res<_>>()?;
    let algs = AlgSet::single(Alg::HS256);
    let t_now = 1_700_000_100;
    // 0: cache off; 1: get, then insert (two hashes of the token, as before); 2: lookup,
    // then insert_at (one hash, as src/http/jwt.rs does).
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..7 {
        for (mode, runs) in times.iter_mut().enumerate() {
            let mut cache =
                TokenCache::new(if mode == 0 { 0 } else { 1024 }).map_err(|e| e.to_string())?;
            let mut n = 0usize;
            runs.push(time_per_op(budget, || {
                let t = tokens[n % tokens.len()].as_bytes();
                n += 1;
                let slot = match mode {
                    0 => None,
                    1 => {
                        std::hint::black_box(cache.get(keys.id(), t, t_now));
                        None
                    }
                    _ => match cache.lookup(keys.id(), t, t_now) {
                        Ok(v) => return drop(std::hint::black_box(v)),
                        Err(slot) => Some(slot),
                    },
                };
                let v = Arc::new(decode_and_verify_signature(t, keys, algs, 8192).unwrap());
                match (mode, slot) {
                    (1, _) => cache.insert(keys.id(), t, v, t_now),
                    (_, Some(slot)) => cache.insert_at(slot, v, t_now),
                    _ => drop(std::hint::black_box(v)),
                }
            }));
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / 1000.0
    };
    let [off, two, one] = times.map(|mut v| med(&mut v));
    println!(
        "4,096 distinct HS256 tokens, median of 7 (µs): cache off {off:.2}; 1,024-entry cache, all \
         misses: hashed twice {two:.2} ({:+.2}), hashed once {one:.2} ({:+.2})",
        two - off,
        one - off
    );
    Ok(())
}

// ----------------------------------------------------------------------------------------
// policy

/// `policy check FILE`: its own exit path, so the refusal line is exactly `FILE: CODE: MESSAGE`.
fn policy_check(args: &[String]) -> ExitCode {
    let [file] = args else {
        eprintln!("gw-jwt: policy check takes exactly one FILE\n{}", usage());
        return ExitCode::FAILURE;
    };
    let doc = match read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gw-jwt: {e}");
            return ExitCode::FAILURE;
        }
    };
    match policy::compile(&doc) {
        Ok((_, s)) => {
            println!(
                "ok: version {}, {} consumers, {} api keys, {} plans, {} rules, {} deny entries",
                s.version, s.consumers, s.api_keys, s.plans, s.rules, s.denied
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{file}: {}: {}", e.code, e.message);
            ExitCode::FAILURE
        }
    }
}

fn policy(args: &[String]) -> Res<()> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("key-digest") => {
            let key = match rest {
                [] => {
                    let mut k = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut k)
                        .map_err(|e| e.to_string())?;
                    if k.last() == Some(&b'\n') {
                        k.pop();
                        if k.last() == Some(&b'\r') {
                            k.pop();
                        }
                    }
                    k
                }
                [k] => k.clone().into_bytes(),
                _ => return Err("policy key-digest takes at most one KEY".into()),
            };
            println!("{}", policy::digest_hex(&policy::key_digest(&key)));
            Ok(())
        }
        Some("new-key") => {
            Args::parse(rest, &[])?;
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).map_err(|e| format!("random generator failed: {e}"))?;
            let key = format!("gwk_{}", b64url(&raw));
            println!("key:    {key}");
            println!(
                "sha256: {}",
                policy::digest_hex(&policy::key_digest(key.as_bytes()))
            );
            Ok(())
        }
        Some("gen") => {
            let a = Args::parse(rest, &["--consumers", "--version"])?;
            let n = consumers_arg(&a)?;
            let version = a
                .get("--version")
                .map_or_else(|| format!("gen-{n}"), String::from);
            print!("{}", policy::generate(n, &version));
            Ok(())
        }
        Some("bench") => policy_bench(rest),
        _ => Err(format!(
            "policy needs check, key-digest, new-key, gen or bench\n{}",
            usage()
        )),
    }
}

fn consumers_arg(a: &Args) -> Res<usize> {
    a.get("--consumers")
        .ok_or("--consumers is required")?
        .parse()
        .map_err(|_| "--consumers: not a number".into())
}

/// Compile time of a generated document and the per-request lookups on its image, spread over
/// many consumers so the caches see a realistic mix.
fn policy_bench(args: &[String]) -> Res<()> {
    let a = Args::parse(args, &["--consumers", "--seconds"])?;
    let n = consumers_arg(&a)?.max(1);
    let budget = budget_arg(&a)?;
    let doc = policy::generate(n, "bench");
    let mut times = Vec::new();
    let mut image = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        image = policy::compile(doc.as_bytes())
            .map_err(|e| format!("{}: {}", e.code, e.message))?
            .0;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let worst = times.iter().copied().fold(0.0, f64::max);
    println!(
        "compile: {n} consumers, document {:.1} MiB, image {:.1} MiB: {best:.0} ms best, {worst:.0} ms worst of 3",
        doc.len() as f64 / 1048576.0,
        image.len() as f64 / 1048576.0
    );
    let view = policy::View::new(&image).ok_or("the image does not open")?;
    // 1024 consumers spread over the whole table.
    let picks: Vec<usize> = (0..1024u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % n as u64) as usize + 1)
        .collect();
    let keys: Vec<String> = picks.iter().map(|i| format!("key-{i}")).collect();
    let digests: Vec<[u8; 32]> = keys
        .iter()
        .map(|k| policy::key_digest(k.as_bytes()))
        .collect();
    let subs: Vec<String> = picks.iter().map(|i| format!("sub-{i}")).collect();
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % picks.len();
        i
    };
    let new_ns = time_per_op(budget, || {
        std::hint::black_box(policy::View::new(std::hint::black_box(&image)).is_some());
    });
    let digest_ns = time_per_op(budget, || {
        let k = &keys[next()];
        std::hint::black_box(policy::key_digest(k.as_bytes()));
    });
    let key_ns = time_per_op(budget, || {
        let c = view.by_key_digest(&digests[next()]);
        std::hint::black_box(c.map(|c| c.disabled()));
    });
    let jwt_ns = time_per_op(budget, || {
        let sub = subs[next()].as_bytes();
        let claim = |c: &[u8]| match c {
            b"iss" => Some(policy::GEN_ISSUER.as_bytes()),
            b"sub" => Some(sub),
            _ => None,
        };
        std::hint::black_box(view.by_jwt(&claim).map(|c| c.disabled()));
    });
    let access_ns = time_per_op(budget, || {
        let c = view.by_key_digest(&digests[next()]);
        let groups: Vec<&[u8]> = c.map(|c| c.groups().collect()).unwrap_or_default();
        std::hint::black_box(view.access(b"orders", b"GET", &groups, true));
    });
    let groups: [&[u8]; 1] = [b"orders-read"];
    let rule_ns = time_per_op(budget, || {
        std::hint::black_box(view.access(b"orders", b"GET", &groups, true));
    });
    let deny_ns = time_per_op(budget, || {
        let d = &digests[next()];
        std::hint::black_box(view.key_denied(d) || view.consumer_denied(b"c1"));
    });
    println!("View::new:                          {new_ns:8.1} ns");
    println!("key_digest (SHA-256 of a key):      {digest_ns:8.1} ns");
    println!("by_key_digest:                      {key_ns:8.1} ns");
    println!("by_jwt (iss + sub):                 {jwt_ns:8.1} ns");
    println!("by_key_digest + groups + access:    {access_ns:8.1} ns");
    println!("access alone (2 rules on the route): {rule_ns:7.1} ns");
    println!("key_denied + consumer_denied:       {deny_ns:8.1} ns");
    Ok(())
}

use super::*;
use serde_json::{json, Value};

const ACME_KEY: &[u8] = b"demo-key-acme";
const ACME_DIGEST: &str = "8649cdebee753898fd50e01408a9e438aa5090249bc3e51b65f33dce973b0873";

fn example() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../nginx-conf/policy.json"
    ))
    .unwrap()
}

fn hexd(n: u8) -> String {
    digest_hex(&[n; 32])
}

/// A small document touching every part; tests change it with JSON pointers.
fn base() -> Value {
    json!({
        "version": "t-1",
        "plans": {
            "free": {"limits": {"second": 5, "minute": 100, "hour": 1000, "day": 10000}},
            "gold": {"limits": {"minute": 6000}}
        },
        "consumers": [
            {"id": "acme", "username": "Acme Corp", "groups": ["partners", "orders-read", "partners"],
             "plan": "gold",
             "credentials": {"api_keys": [{"sha256": ACME_DIGEST, "name": "ci-key"},
                                          {"sha256": hexd(0xAB).to_uppercase()}],
                             "jwt": [{"iss": "https://idp.example", "sub": "svc-123"},
                                     {"claim": "client_id", "value": "acme-app"}]}},
            {"id": "anysub", "credentials": {"jwt": [{"sub": "svc-123"}, {"sub": "only-any"}]}},
            {"id": "ops", "groups": ["admins"], "plan": "free", "disabled": true,
             "credentials": {"jwt": [{"claim": "azp", "value": "ops-console"},
                                     {"claim": "sub", "value": "ops-sub"}]}},
            {"id": "old-partner"}
        ],
        "access": [
            {"route": "orders", "groups": ["partners", "orders-read"], "methods": ["GET"]},
            {"route": "orders", "groups": ["partners"], "methods": ["POST"]},
            {"route": "admin", "groups": ["admins"]},
            {"route": "status", "groups": ["*"]}
        ],
        "deny": {"consumers": ["old-partner", "old-partner"], "api_keys": [hexd(7)],
                 "jti": ["jti-1"], "sub": ["user-42"]}
    })
}

fn compile_value(v: &Value) -> Result<(Vec<u8>, Summary), PolicyError> {
    compile(v.to_string().as_bytes())
}

fn image(v: &Value) -> Vec<u8> {
    compile_value(v).unwrap().0
}

/// `base()` with the value at `pointer` set to `new` (a missing object member is added) or,
/// when `new` is `None`, removed.
fn changed(pointer: &str, new: Option<Value>) -> Value {
    let mut v = base();
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let slot = v.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}"));
    match (slot, new) {
        (Value::Object(m), Some(n)) => {
            m.insert(last.into(), n);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(n)) => a[last.parse::<usize>().unwrap()] = n,
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        _ => panic!("{pointer}"),
    }
    v
}

fn assert_refused(pointer: &str, new: Option<Value>, code: &str, message: &str) {
    let e = compile_value(&changed(pointer, new)).expect_err(pointer);
    assert_eq!((e.code, e.message.as_str()), (code, message), "{pointer}");
}

#[test]
fn base_compiles_and_summarizes() {
    let (img, s) = compile_value(&base()).unwrap();
    assert_eq!(
        s,
        Summary {
            version: "t-1".into(),
            consumers: 4,
            api_keys: 2,
            plans: 2,
            rules: 4,
            denied: 4,
        }
    );
    let v = View::new(&img).unwrap();
    assert_eq!(v.summary(), s);
    assert_eq!(v.version(), b"t-1");
    assert!(v.check());
}

#[test]
fn compile_is_deterministic() {
    assert_eq!(image(&base()), image(&base()));
    let g = generate(50, "g");
    assert_eq!(
        compile(g.as_bytes()).unwrap(),
        compile(g.as_bytes()).unwrap()
    );
}

#[test]
fn bad_json() {
    for doc in [&b""[..], b"{", b"{\"version\": \"a\",}", b"\xff", b"[1] x"] {
        assert_eq!(compile(doc).unwrap_err().code, "bad_json");
    }
    // A repeated member is refused, not silently overwritten.
    let e = compile(
        br#"{"version": "a", "consumers": [{"id": "x", "disabled": true, "disabled": false}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            "bad_json",
            "consumers[0]: member \"disabled\" appears twice"
        )
    );
    let e = compile(
        br#"{"version": "a", "plans": {"p": {"limits": {"day": 1}}, "p": {"limits": {"day": 2}}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        ("bad_json", "plans: member \"p\" appears twice")
    );
    // Nesting beyond serde_json's limit is an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(compile(deep.as_bytes()).unwrap_err().code, "bad_json");
}

#[test]
fn unknown_member() {
    let e = compile(br#"{"version": "a", "consumer": []}"#).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        ("unknown_member", "consumer: unknown member")
    );
    for (pointer, message) in [
        (
            "/consumers/1/disabeld",
            "consumers[1].disabeld: unknown member",
        ),
        (
            "/consumers/0/credentials/keys",
            "consumers[0].credentials.keys: unknown member",
        ),
        (
            "/consumers/0/credentials/api_keys/0/digest",
            "consumers[0].credentials.api_keys[0].digest: unknown member",
        ),
        (
            "/plans/free/limits/week",
            "plans.free.limits.week: unknown member",
        ),
        ("/plans/free/rate", "plans.free.rate: unknown member"),
        ("/access/0/method", "access[0].method: unknown member"),
        ("/deny/keys", "deny.keys: unknown member"),
    ] {
        assert_refused(pointer, Some(json!(1)), "unknown_member", message);
    }
}

#[test]
fn bad_version() {
    for bad in ["", "a b", "caf\u{e9}", &"v".repeat(129), "tab\t"] {
        assert_refused(
            "/version",
            Some(json!(bad)),
            "bad_version",
            "version: must be 1..=128 printable ASCII characters without space",
        );
    }
    assert_refused(
        "/version",
        Some(json!(5)),
        "bad_value",
        "version: not a string",
    );
    assert_refused("/version", None, "bad_value", "version: missing");
    compile_value(&changed("/version", Some(json!("~!".repeat(64))))).unwrap();
}

#[test]
fn bad_values() {
    let hex = "consumers[0].credentials.api_keys[0].sha256: not 64 hex digits";
    for (pointer, new, message) in [
        ("/consumers/0/credentials/api_keys/0/sha256", json!("abc"), hex),
        ("/consumers/0/credentials/api_keys/0/sha256", json!("g".repeat(64)), hex),
        ("/consumers/0/credentials/api_keys/0/sha256", json!(1), "consumers[0].credentials.api_keys[0].sha256: not a string"),
        ("/consumers/0/id", json!("a b"), "consumers[0].id: must be 1..=128 characters of [A-Za-z0-9._:@-]"),
        ("/consumers/0/id", json!("x".repeat(129)), "consumers[0].id: must be 1..=128 characters of [A-Za-z0-9._:@-]"),
        ("/consumers/0/username", json!(""), "consumers[0].username: must be 1..=256 printable ASCII characters"),
        ("/consumers/0/username", json!("tab\there"), "consumers[0].username: must be 1..=256 printable ASCII characters"),
        ("/consumers/0/groups", json!(["a", "b c"]), "consumers[0].groups[1]: must be 1..=64 characters of [A-Za-z0-9._:@/-]"),
        ("/consumers/0/groups", json!("partners"), "consumers[0].groups: not an array"),
        ("/consumers/0/groups", json!((0..65).map(|i| format!("g{i}")).collect::<Vec<_>>()), "consumers[0].groups: more than 64 items"),
        ("/consumers/0/disabled", json!("yes"), "consumers[0].disabled: not a boolean"),
        ("/consumers/0/plan", json!(1), "consumers[0].plan: not a string"),
        ("/consumers/0/credentials/api_keys/0/name", json!("a b"), "consumers[0].credentials.api_keys[0].name: must be 1..=64 characters of [A-Za-z0-9._:@-]"),
        ("/consumers/0/credentials/jwt/0", json!({"iss": "i"}), "consumers[0].credentials.jwt[0]: needs either \"sub\" (with optional \"iss\") or \"claim\" and \"value\""),
        ("/consumers/0/credentials/jwt/0", json!({"sub": "s", "claim": "c", "value": "v"}), "consumers[0].credentials.jwt[0]: needs either \"sub\" (with optional \"iss\") or \"claim\" and \"value\""),
        ("/consumers/0/credentials/jwt/0", json!({"iss": "i", "claim": "c", "value": "v"}), "consumers[0].credentials.jwt[0]: needs either \"sub\" (with optional \"iss\") or \"claim\" and \"value\""),
        ("/consumers/0/credentials/jwt/0", json!({"sub": ""}), "consumers[0].credentials.jwt[0].sub: must be 1..=1024 bytes"),
        ("/consumers/0/credentials/jwt/0", json!({"claim": "a/b", "value": "v"}), "consumers[0].credentials.jwt[0].claim: must be 1..=64 characters of [A-Za-z0-9_.:-]"),
        ("/consumers/0/credentials/jwt/0", json!({"claim": "c", "value": "v".repeat(1025)}), "consumers[0].credentials.jwt[0].value: must be 1..=1024 bytes"),
        ("/consumers/0", json!([]), "consumers[0]: not an object"),
        ("/consumers/0", json!({"username": "x"}), "consumers[0].id: missing"),
        ("/consumers", json!({}), "consumers: not an array"),
        ("/plans/free", json!({"limits": {}}), "plans.free.limits: no limit"),
        ("/plans/free", json!({}), "plans.free.limits: missing"),
        ("/plans/free/limits/day", json!(0), "plans.free.limits.day: not an integer in 1..=1000000000"),
        ("/plans/free/limits/day", json!(1_000_000_001u64), "plans.free.limits.day: not an integer in 1..=1000000000"),
        ("/plans/free/limits/day", json!(-1), "plans.free.limits.day: not an integer in 1..=1000000000"),
        ("/plans/free/limits/day", json!(5.5), "plans.free.limits.day: not an integer in 1..=1000000000"),
        ("/plans/free/limits/day", json!("5"), "plans.free.limits.day: not an integer in 1..=1000000000"),
        ("/plans/a b", json!({"limits": {"day": 1}}), "plans.a b: must be 1..=64 characters of [A-Za-z0-9._-]"),
        ("/access/0/route", json!("a/b"), "access[0].route: must be 1..=64 characters of [A-Za-z0-9._-]"),
        ("/access/0/groups", json!([]), "access[0].groups: empty"),
        ("/access/0/groups", json!(["*", "a b"]), "access[0].groups[1]: must be 1..=64 characters of [A-Za-z0-9._:@/-]"),
        ("/access/0/methods", json!([]), "access[0].methods: empty (leave it out to allow every method)"),
        ("/access/0/methods", json!(["get"]), "access[0].methods[0]: must be 1..=32 characters of [A-Z_-]"),
        ("/access/0", json!({"groups": ["a"]}), "access[0].route: missing"),
        ("/deny/api_keys", json!(["00"]), "deny.api_keys[0]: not 64 hex digits"),
        ("/deny/consumers", json!(["a b"]), "deny.consumers[0]: must be 1..=128 characters of [A-Za-z0-9._:@-]"),
        ("/deny/jti", json!([""]), "deny.jti[0]: must be 1..=1024 bytes"),
        ("/deny/sub", json!([1]), "deny.sub[0]: not a string"),
        ("/deny", json!([]), "deny: not an object"),
    ] {
        assert_refused(pointer, Some(new), "bad_value", message);
    }
    let e = compile(b"[]").unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        ("bad_value", "document: not an object")
    );
}

#[test]
fn duplicates_and_unknown_plan() {
    assert_refused(
        "/consumers/3/id",
        Some(json!("acme")),
        "duplicate_id",
        "consumers[3].id: duplicate id \"acme\" (also consumers[0])",
    );
    assert_refused("/consumers/3/credentials", Some(json!({"api_keys": [{"sha256": ACME_DIGEST.to_uppercase()}]})), "duplicate_key",
        "consumers[3].credentials.api_keys[0].sha256: duplicate key (also consumers[0].credentials.api_keys[0])");
    assert_refused("/consumers/0/credentials/api_keys/1/sha256", Some(json!(ACME_DIGEST)), "duplicate_key",
        "consumers[0].credentials.api_keys[1].sha256: duplicate key (also consumers[0].credentials.api_keys[0])");
    assert_refused(
        "/consumers/3/credentials",
        Some(json!({"jwt": [{"iss": "https://idp.example", "sub": "svc-123"}]})),
        "duplicate_binding",
        "consumers[3].credentials.jwt[0]: duplicate binding (also consumers[0].credentials.jwt[0])",
    );
    assert_refused(
        "/consumers/3/credentials",
        Some(json!({"jwt": [{"claim": "client_id", "value": "acme-app"}]})),
        "duplicate_binding",
        "consumers[3].credentials.jwt[0]: duplicate binding (also consumers[0].credentials.jwt[1])",
    );
    // {"claim": "sub"} is the iss-less sub binding.
    assert_refused(
        "/consumers/3/credentials",
        Some(json!({"jwt": [{"sub": "ops-sub"}]})),
        "duplicate_binding",
        "consumers[3].credentials.jwt[0]: duplicate binding (also consumers[2].credentials.jwt[1])",
    );
    assert_refused(
        "/consumers/3/plan",
        Some(json!("platinum")),
        "unknown_plan",
        "consumers[3].plan: unknown plan \"platinum\"",
    );
    let e =
        compile(br#"{"version": "a", "consumers": [{"id": "x", "plan": "free"}]}"#).unwrap_err();
    assert_eq!(e.code, "unknown_plan");
    // Not repeats: the same sub with and without iss, or under another issuer; a claim
    // binding and a sub binding with the same value.
    let mut v = base();
    v["consumers"][3]["credentials"] = json!({"jwt": [{"iss": "https://other", "sub": "svc-123"},
                                                      {"claim": "client_id", "value": "svc-123"}]});
    compile_value(&v).unwrap();
}

#[test]
fn optional_parts() {
    let (img, s) = compile(br#"{"version": "only"}"#).unwrap();
    assert_eq!((s.consumers, s.plans, s.rules, s.denied), (0, 0, 0, 0));
    let v = View::new(&img).unwrap();
    assert!(v.check());
    assert!(v.consumer(b"x").is_none());
    assert!(v.by_key_digest(&key_digest(b"k")).is_none());
    assert!(v.by_jwt(&|_| Some(&b"x"[..])).is_none());
    assert_eq!(v.access(b"r", b"GET", &[b"g"], true), Access::UnknownRoute);
    assert!(!v.jti_denied(b"x") && !v.key_denied(&[0; 32]));
}

#[test]
fn consumers_and_plans() {
    let img = image(&base());
    let v = View::new(&img).unwrap();
    let acme = v.consumer(b"acme").unwrap();
    assert_eq!(acme.id(), b"acme");
    assert_eq!(acme.username(), b"Acme Corp");
    // Document order, repeats removed.
    assert_eq!(
        acme.groups().collect::<Vec<_>>(),
        [&b"partners"[..], b"orders-read"]
    );
    assert!(!acme.disabled());
    let gold = acme.plan().unwrap();
    assert_eq!(gold.name(), b"gold");
    assert_eq!(
        Period::ALL.map(|p| gold.limit(p)),
        [None, Some(6000), None, None]
    );
    let ops = v.consumer(b"ops").unwrap();
    assert!(ops.disabled());
    assert_eq!(ops.plan().unwrap().name(), b"free");
    let old = v.consumer(b"old-partner").unwrap();
    assert_eq!(old.username(), b"old-partner"); // defaults to the id
    assert!(old.plan().is_none() && old.groups().next().is_none());
    assert!(
        v.consumer(b"acm").is_none() && v.consumer(b"").is_none() && v.consumer(b"zzz").is_none()
    );
    let free = v.plan(b"free").unwrap();
    assert_eq!(
        Period::ALL.map(|p| free.limit(p)),
        [Some(5), Some(100), Some(1000), Some(10000)]
    );
    assert!(v.plan(b"platinum").is_none());
    assert_eq!(
        Period::ALL.map(Period::period_ms),
        [1_000, 60_000, 3_600_000, 86_400_000]
    );
    assert_eq!(Period::Hour.name(), "hour");
}

#[test]
fn api_keys() {
    let img = image(&base());
    let v = View::new(&img).unwrap();
    let d = key_digest(ACME_KEY);
    assert_eq!(digest_hex(&d), ACME_DIGEST);
    assert_eq!(v.by_key_digest(&d).unwrap().id(), b"acme");
    assert_eq!(v.key_name(&d), Some(&b"ci-key"[..]));
    // Upper-case hex in the document is the same digest.
    assert_eq!(v.by_key_digest(&[0xAB; 32]).unwrap().id(), b"acme");
    assert_eq!(v.key_name(&[0xAB; 32]), Some(&b""[..]));
    let mut near = d;
    near[31] ^= 1;
    assert!(v.by_key_digest(&near).is_none());
    assert!(v.by_key_digest(&[0; 32]).is_none() && v.by_key_digest(&[0xff; 32]).is_none());
    assert_eq!(parse_digest(ACME_DIGEST.to_uppercase().as_bytes()), Some(d));
    assert_eq!(parse_digest(b"00"), None);
    assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
}

#[test]
fn jwt_bindings() {
    let img = image(&base());
    let v = View::new(&img).unwrap();
    let by = |claims: &[(&str, &str)]| {
        let claim = |n: &[u8]| {
            claims
                .iter()
                .find(|(k, _)| k.as_bytes() == n)
                .map(|(_, val)| val.as_bytes())
        };
        v.by_jwt(&claim)
            .map(|c| String::from_utf8_lossy(c.id()).into_owned())
    };
    let id = |s: &str| Some(s.to_owned());
    // The exact issuer beats the iss-less binding of the same sub.
    assert_eq!(
        by(&[("iss", "https://idp.example"), ("sub", "svc-123")]),
        id("acme")
    );
    assert_eq!(
        by(&[("iss", "https://other"), ("sub", "svc-123")]),
        id("anysub")
    );
    assert_eq!(by(&[("sub", "svc-123")]), id("anysub"));
    assert_eq!(
        by(&[("iss", "https://idp.example"), ("sub", "only-any")]),
        id("anysub")
    );
    // An iss-bound binding needs the issuer.
    assert_eq!(
        by(&[("sub", "svc-999"), ("iss", "https://idp.example")]),
        None
    );
    // Claim bindings after sub bindings.
    assert_eq!(by(&[("client_id", "acme-app")]), id("acme"));
    assert_eq!(by(&[("sub", "nobody"), ("azp", "ops-console")]), id("ops"));
    assert_eq!(
        by(&[("sub", "svc-123"), ("azp", "ops-console")]),
        id("anysub")
    );
    assert_eq!(by(&[("sub", "ops-sub")]), id("ops"));
    assert_eq!(by(&[("client_id", "acme-ap")]), None);
    assert_eq!(by(&[("client", "acme-app")]), None);
    assert_eq!(by(&[]), None);
}

#[test]
fn deny_sets() {
    let img = image(&base());
    let v = View::new(&img).unwrap();
    assert!(v.consumer_denied(b"old-partner"));
    assert!(!v.consumer_denied(b"acme") && !v.consumer_denied(b"old-partne"));
    assert!(v.key_denied(&[7; 32]) && !v.key_denied(&key_digest(ACME_KEY)));
    assert!(v.jti_denied(b"jti-1") && !v.jti_denied(b"jti-2"));
    assert!(v.sub_denied(b"user-42") && !v.sub_denied(b"user-4"));
    // Denying is independent of the lookup: the consumer is still there.
    assert!(v.consumer(b"old-partner").is_some());
}

#[test]
fn access_decisions() {
    let img = image(&base());
    let v = View::new(&img).unwrap();
    let partners: &[&[u8]] = &[b"partners"];
    let readers: &[&[u8]] = &[b"other", b"orders-read"];
    let none: &[&[u8]] = &[];
    use Access::{Allowed, Forbidden};
    let admins: &[&[u8]] = &[b"admins"];
    let star: &[&[u8]] = &[b"*"];
    for (route, method, groups, identified, expect) in [
        ("orders", "GET", partners, true, Allowed),
        ("orders", "POST", partners, true, Allowed),
        ("orders", "GET", readers, true, Allowed),
        ("orders", "POST", readers, true, Forbidden),
        ("orders", "DELETE", partners, true, Forbidden),
        ("orders", "get", partners, true, Forbidden),
        ("orders", "GET", none, true, Forbidden),
        // No methods: every method.
        ("admin", "PATCH", admins, true, Allowed),
        ("admin", "GET", partners, true, Forbidden),
        // "*": any identified consumer, never an anonymous request.
        ("status", "GET", none, true, Allowed),
        ("status", "GET", partners, false, Forbidden),
        // A group named "*" (from a token claim, say) is no way around `identified`.
        ("status", "GET", star, false, Forbidden),
    ] {
        let got = v.access(route.as_bytes(), method.as_bytes(), groups, identified);
        assert_eq!(got, expect, "{route} {method} {identified}");
    }
    assert_eq!(
        v.access(b"order", b"GET", partners, true),
        Access::UnknownRoute
    );
    assert_eq!(v.access(b"", b"GET", partners, true), Access::UnknownRoute);
}

/// Calls every accessor with probes; must never panic, whatever the image.
fn poke(img: &[u8]) {
    if let Some(v) = View::new(img) {
        let _ = (v.check(), v.summary(), v.version());
        let probe = img.get(..img.len().min(40)).unwrap_or_default();
        if let Some(c) = v.consumer(b"acme").or_else(|| v.consumer(probe)) {
            let _ = (c.id(), c.username(), c.disabled(), c.groups().count());
            let _ = c
                .plan()
                .map(|p| (p.name(), Period::ALL.map(|x| p.limit(x))));
        }
        let d = key_digest(ACME_KEY);
        let _ = (v.by_key_digest(&d), v.key_name(&d), v.key_denied(&d));
        let _ = v.by_jwt(&|n| (n == b"sub").then_some(&b"svc-123"[..]));
        let _ = v.by_jwt(&|_| Some(probe));
        let _ = (
            v.consumer_denied(probe),
            v.jti_denied(probe),
            v.sub_denied(probe),
        );
        let _ = v.plan(b"free").map(|p| p.limit(Period::Day));
        let _ = v.access(b"orders", b"GET", &[b"partners", probe], true);
    }
}

#[test]
fn truncated_and_corrupted_images_never_panic() {
    let img = image(&base());
    assert!(View::new(&img).is_some());
    for n in 0..img.len() {
        // The total length in the header no longer matches.
        assert!(View::new(&img[..n]).is_none(), "{n}");
        poke(&img[..n]);
    }
    let mut longer = img.clone();
    longer.push(0);
    assert!(View::new(&longer).is_none());
    // Every single byte flipped in every bit, then random multi-byte damage.
    for i in 0..img.len() {
        for bit in 0..8 {
            let mut bad = img.clone();
            bad[i] ^= 1 << bit;
            poke(&bad);
        }
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..2000 {
        let mut bad = img.clone();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() % bad.len() as u64) as usize;
            bad[at] = next() as u8;
        }
        poke(&bad);
    }
    // Header-valid images whose sections claim the whole image, with junk rows.
    let mut junk = img.clone();
    for b in &mut junk[super::image::HEADER..] {
        *b = next() as u8;
    }
    poke(&junk);
}

#[test]
fn example_document_compiles() {
    let (img, s) = compile(&example()).unwrap();
    assert_eq!(
        (s.consumers, s.api_keys, s.plans, s.rules, s.denied),
        (4, 1, 2, 3, 4)
    );
    let v = View::new(&img).unwrap();
    assert!(v.check());
    let acme = v.by_key_digest(&key_digest(ACME_KEY)).unwrap();
    assert_eq!(acme.id(), b"acme");
    assert!(v.consumer(b"old-partner").unwrap().disabled());
    let billing = v.by_jwt(&|n: &[u8]| match n {
        b"iss" => Some(&b"https://idp.example"[..]),
        b"sub" => Some(b"svc-billing"),
        _ => None,
    });
    assert_eq!(billing.unwrap().id(), b"billing-svc");
    let ops = v.by_jwt(&|n: &[u8]| (n == b"client_id").then_some(&b"ops-console"[..]));
    assert_eq!(ops.unwrap().id(), b"ops");
}

#[test]
fn schema_matches_the_top_level() {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schema/policy.schema.json"
    ))
    .unwrap();
    let schema: Value = serde_json::from_slice(&text).unwrap();
    let obj = schema.as_object().unwrap();
    assert_eq!(
        obj["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(obj["additionalProperties"], false);
    let mut props: Vec<&str> = obj["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    props.sort_unstable();
    let mut top = super::doc::TOP_LEVEL.to_vec();
    top.sort_unstable();
    assert_eq!(props, top);
    assert_eq!(obj["required"], json!(["version"]));
    // Every top-level member the schema names is accepted by compile(), and nothing else is.
    for p in &top {
        let mut v = json!({"version": "v"});
        v[*p] = match *p {
            "version" => json!("v"),
            "plans" | "deny" => json!({}),
            _ => json!([]),
        };
        compile_value(&v).unwrap();
    }
}

#[test]
fn generated_documents() {
    let g = generate(10, "gen-10");
    let (img, s) = compile(g.as_bytes()).unwrap();
    assert_eq!(
        (s.consumers, s.api_keys, s.plans, s.rules, s.denied),
        (10, 10, 2, 3, 3)
    );
    assert_eq!(s.version, "gen-10");
    let v = View::new(&img).unwrap();
    assert!(v.check());
    let c3 = v.by_key_digest(&key_digest(b"key-3")).unwrap();
    assert_eq!(c3.id(), b"c3");
    assert_eq!(c3.plan().unwrap().name(), b"gold");
    assert_eq!(c3.groups().collect::<Vec<_>>(), [GEN_GROUPS[3].as_bytes()]);
    // A version that needs JSON escaping stays a valid document.
    assert_eq!(
        compile(generate(1, "a\"b\\").as_bytes()).unwrap().1.version,
        "a\"b\\"
    );
    assert_eq!(
        compile(generate(1, "a b").as_bytes()).unwrap_err().code,
        "bad_version"
    );
}

#[test]
fn hundred_thousand_consumers() {
    let n = 100_000;
    let g = generate(n, "big");
    let (img, s) = compile(g.as_bytes()).unwrap();
    assert_eq!((s.consumers, s.api_keys), (n, n));
    let v = View::new(&img).unwrap();
    for i in [1, n / 2, n] {
        let id = format!("c{i}");
        let c = v
            .by_key_digest(&key_digest(format!("key-{i}").as_bytes()))
            .unwrap();
        assert_eq!(c.id(), id.as_bytes());
        assert_eq!(v.consumer(id.as_bytes()).unwrap().id(), id.as_bytes());
        let sub = format!("sub-{i}");
        let claim = |k: &[u8]| match k {
            b"iss" => Some(GEN_ISSUER.as_bytes()),
            b"sub" => Some(sub.as_bytes()),
            _ => None,
        };
        assert_eq!(v.by_jwt(&claim).unwrap().id(), id.as_bytes());
        let groups: Vec<&[u8]> = c.groups().collect();
        let expect = if matches!(GEN_GROUPS[i % 4], "partners" | "orders-read") {
            Access::Allowed
        } else {
            Access::Forbidden
        };
        assert_eq!(v.access(b"orders", b"GET", &groups, true), expect);
    }
    assert!(v.consumer(b"c0").is_none() && v.consumer_denied(b"c0"));
    assert!(v.by_key_digest(&key_digest(b"key-0")).is_none());
}

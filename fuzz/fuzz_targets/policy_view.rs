//! Arbitrary bytes as a compiled policy image: `View::new` and every accessor never panic
//! and never read outside the bytes, whatever they hold. The first bytes can carry a valid
//! header (a compiled image's prefix) so the fuzzer reaches the tables quickly.
#![no_main]

use gateway_core::policy::{compile, key_digest, Period, View};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// A real image whose header the input may borrow.
fn seed() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let doc = gateway_core::policy::generate(3, "fuzz");
        compile(doc.as_bytes())
            .expect("generated documents compile")
            .0
    })
}

fuzz_target!(|data: &[u8]| {
    // Mode byte: 0 = the input as is; otherwise the seed image with the input written over
    // it from offset (mode * 4), so headers stay mostly valid.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let owned;
    let image: &[u8] = if mode == 0 {
        rest
    } else {
        let mut img = seed().to_vec();
        let at = usize::from(mode) * 4 % img.len();
        for (b, r) in img[at..].iter_mut().zip(rest) {
            *b = *r;
        }
        owned = img;
        &owned
    };
    let Some(view) = View::new(image) else {
        return;
    };
    let _ = (view.check(), view.summary(), view.version());
    let probe = rest.get(..rest.len().min(48)).unwrap_or_default();
    let mut digest = [0u8; 32];
    for (d, p) in digest.iter_mut().zip(probe) {
        *d = *p;
    }
    for d in [digest, key_digest(b"key-1")] {
        let _ = (
            view.by_key_digest(&d),
            view.key_name(&d),
            view.key_denied(&d),
        );
    }
    for c in [
        view.consumer(b"c1"),
        view.consumer(probe),
        view.by_key_digest(&digest),
    ]
    .into_iter()
    .flatten()
    {
        let _ = (c.id(), c.username(), c.disabled(), c.groups().count());
        if let Some(p) = c.plan() {
            let _ = (p.name(), Period::ALL.map(|x| p.limit(x)));
        }
    }
    let _ = view.by_jwt(&|_| Some(probe));
    let _ = view.by_jwt(&|n| (n == b"sub").then_some(&b"sub-1"[..]));
    let _ = (
        view.consumer_denied(probe),
        view.jti_denied(probe),
        view.sub_denied(probe),
    );
    let _ = view.plan(probe).map(|p| p.limit(Period::Second));
    let _ = view.access(probe, b"GET", &[probe, b"partners"], true);
    let _ = view.access(b"orders", probe, &[b"orders-read"], false);
});

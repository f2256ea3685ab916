//! Arbitrary bytes as a policy document: `compile` never panics, and when it accepts, its
//! image opens, agrees with the summary, and every row is found again by its own lookup
//! (`View::check`, which calls every accessor).
#![no_main]

use gateway_core::policy::{compile, View};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((image, summary)) = compile(data) else {
        return;
    };
    let view = View::new(&image).expect("a compiled image opens");
    assert_eq!(view.summary(), summary);
    assert!(view.check(), "a compiled image is consistent");
    // Compiling is deterministic.
    assert_eq!(compile(data).map(|(i, _)| i).ok(), Some(image.clone()));
});

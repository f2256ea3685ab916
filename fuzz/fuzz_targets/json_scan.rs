//! The JSON check of the token path (`scan_object`: validation without building a tree,
//! claims read in place) against the strict parser that builds `Verified::payload()`: on any
//! input both accept or both refuse, and the claims read in place equal the parsed ones.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(
        gateway_core::jwt::json_validators_agree(data),
        "scan_object and parse_object disagree"
    );
});

//! A generated policy document of any size, for the bench, the scale tests and
//! `gw-jwt policy gen`.

use super::{digest_hex, key_digest};
use std::fmt::Write;

/// The groups handed out round-robin by [`generate`].
pub const GEN_GROUPS: [&str; 4] = ["partners", "orders-read", "admins", "readers"];

/// The issuer of the JWT bindings of [`generate`].
pub const GEN_ISSUER: &str = "https://idp.example";

/// A valid document with `consumers` consumers, the same for the same arguments.
///
/// Consumer `i` (1-based) has id `c<i>`, the API key `key-<i>` (its digest in the document),
/// the JWT binding (iss [`GEN_ISSUER`], sub `sub-<i>`), group `GEN_GROUPS[i % 4]` and plan
/// `gold` for odd `i`, `free` for even ones. Rules: `orders` (partners and orders-read; GET and
/// POST), `admin` (admins), `status` (`"*"`). Deny: consumer `c0`, jti `revoked-jti`, sub
/// `revoked-sub`.
#[must_use]
pub fn generate(consumers: usize, version: &str) -> String {
    let mut s = String::with_capacity(consumers.saturating_mul(260).saturating_add(1024));
    let version = serde_json::Value::from(version).to_string();
    let _ = write!(
        s,
        "{{\n  \"version\": {version},\n  \"plans\": {{\n    \
         \"free\": {{\"limits\": {{\"second\": 5, \"minute\": 100, \"hour\": 1000, \"day\": 10000}}}},\n    \
         \"gold\": {{\"limits\": {{\"minute\": 6000}}}}\n  }},\n  \"consumers\": ["
    );
    for i in 1..=consumers {
        let sep = if i == 1 { "" } else { "," };
        let digest = digest_hex(&key_digest(format!("key-{i}").as_bytes()));
        let group = GEN_GROUPS[i % GEN_GROUPS.len()];
        let plan = if i % 2 == 1 { "gold" } else { "free" };
        let _ = write!(
            s,
            "{sep}\n    {{\"id\": \"c{i}\", \"groups\": [\"{group}\"], \"plan\": \"{plan}\", \
             \"credentials\": {{\"api_keys\": [{{\"sha256\": \"{digest}\"}}], \
             \"jwt\": [{{\"iss\": \"{GEN_ISSUER}\", \"sub\": \"sub-{i}\"}}]}}}}"
        );
    }
    s.push_str(
        "\n  ],\n  \"access\": [\n    \
         {\"route\": \"orders\", \"groups\": [\"partners\", \"orders-read\"], \"methods\": [\"GET\", \"POST\"]},\n    \
         {\"route\": \"admin\", \"groups\": [\"admins\"]},\n    \
         {\"route\": \"status\", \"groups\": [\"*\"]}\n  ],\n  \
         \"deny\": {\"consumers\": [\"c0\"], \"jti\": [\"revoked-jti\"], \"sub\": [\"revoked-sub\"]}\n}\n",
    );
    s
}

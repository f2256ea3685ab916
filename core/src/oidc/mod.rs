//! Rules about where an OpenID Provider's discovery document may send the gateway.
//!
//! The discovery document names the key set's location (`jwks_uri`). The document itself comes
//! from a location the administrator configured; the `jwks_uri` comes from the network. A
//! plain `http://` one would let anyone on the path between the gateway and the provider
//! replace the keys, so it is refused unless the configuration allows it explicitly
//! (`auth_jwt_oidc_discovery ... allow_http`, for a provider on loopback or in a test).

/// Checks the scheme of a discovery document's `jwks_uri`: `https://` always passes,
/// `http://` only when `allow_http` is set (both case-insensitive, as URL schemes are).
/// The error says why, for the log line.
pub fn check_jwks_uri(jwks_uri: &str, allow_http: bool) -> Result<(), String> {
    let has_scheme = |scheme: &str| {
        jwks_uri
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    if has_scheme("https://") || (allow_http && has_scheme("http://")) {
        return Ok(());
    }
    let shown: String = jwks_uri.chars().take(128).collect();
    Err(format!(
        "\"jwks_uri\" \"{}\" is not https (\"allow_http\" of auth_jwt_oidc_discovery accepts http)",
        shown.escape_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_only_unless_allowed() {
        assert!(check_jwks_uri("https://idp.example/certs", false).is_ok());
        assert!(check_jwks_uri("HTTPS://idp.example/certs", false).is_ok());
        let e = check_jwks_uri("http://idp.example/certs", false).unwrap_err();
        assert!(e.contains("not https"), "{e}");
        assert!(e.contains("http://idp.example/certs"), "{e}");
        assert!(check_jwks_uri("http://127.0.0.1:8080/certs", true).is_ok());
        assert!(check_jwks_uri("Http://127.0.0.1/certs", true).is_ok());
        // allow_http does not open other schemes
        for bad in [
            "ftp://x/certs",
            "file:///etc/passwd",
            "//idp/certs",
            "",
            "https:/x",
            "h",
        ] {
            assert!(check_jwks_uri(bad, true).is_err(), "{bad}");
            assert!(check_jwks_uri(bad, false).is_err(), "{bad}");
        }
        // a hostile value is cut and escaped in the message
        let long = format!("http://{}\n", "a".repeat(1000));
        let e = check_jwks_uri(&long, false).unwrap_err();
        assert!(e.len() < 300 && !e.contains('\n'), "{e}");
    }
}

pub mod rp;

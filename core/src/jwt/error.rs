//! Error types. Messages never contain token bytes or key material.

use std::borrow::Cow;

/// Why a token was refused. [`JwtError::code`] is the stable reason code (`$jwt_error`);
/// `Display` is a short detail for the error log. Neither ever contains the token, a claim
/// value taken from it, or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// No token was presented (empty input).
    #[error("no token")]
    Missing,
    /// The token is longer than the configured limit (checked before any decoding).
    #[error("token is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Token length in bytes.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The token is not a well-formed JWS, or a claim has the wrong type/range.
    #[error("malformed token: {0}")]
    Malformed(Cow<'static, str>),
    /// The header's `alg` is `none`, unknown, not in the allow-list, or not supported by the
    /// key its `kid` names.
    #[error("algorithm not allowed: {0}")]
    AlgNotAllowed(Cow<'static, str>),
    /// No configured key fits the token (unknown `kid`, or no key for its `alg`).
    #[error("no matching key: {0}")]
    UnknownKey(&'static str),
    /// A key fitted but the signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// `exp` is not in the future (after leeway), or `exp` is required and missing.
    #[error("token expired: {0}")]
    Expired(Cow<'static, str>),
    /// `nbf` is in the future (after leeway).
    #[error("token not yet valid: {0}")]
    NotYetValid(Cow<'static, str>),
    /// `iss` missing or not one of the accepted issuers.
    #[error("issuer not accepted")]
    BadIssuer,
    /// `aud` missing or none of its values is an accepted audience.
    #[error("audience not accepted")]
    BadAudience,
    /// Header `typ` missing or not the required type.
    #[error("token type not accepted")]
    BadType,
    /// Claim rule number `rule` (index into [`crate::jwt::Policy::claim_rules`]) failed.
    #[error("claim rule {rule} failed: {detail}")]
    ClaimMismatch {
        /// Index of the failed rule in the policy.
        rule: usize,
        /// The rule as written (path, operator), without the token's value.
        detail: String,
    },
    /// The key set is not available (e.g. a remote key set has not been fetched yet).
    #[error("key set unavailable")]
    KeyUnavailable,
}

impl JwtError {
    /// The stable reason code: one of `missing, too_large, malformed, alg_not_allowed,
    /// unknown_key, bad_signature, expired, not_yet_valid, bad_issuer, bad_audience, bad_type,
    /// claim_mismatch, key_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Missing => "missing",
            JwtError::TooLarge { .. } => "too_large",
            JwtError::Malformed(_) => "malformed",
            JwtError::AlgNotAllowed(_) => "alg_not_allowed",
            JwtError::UnknownKey(_) => "unknown_key",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired(_) => "expired",
            JwtError::NotYetValid(_) => "not_yet_valid",
            JwtError::BadIssuer => "bad_issuer",
            JwtError::BadAudience => "bad_audience",
            JwtError::BadType => "bad_type",
            JwtError::ClaimMismatch { .. } => "claim_mismatch",
            JwtError::KeyUnavailable => "key_unavailable",
        }
    }

    pub(crate) fn malformed(detail: &'static str) -> JwtError {
        JwtError::Malformed(Cow::Borrowed(detail))
    }
}

/// A key file or key set could not be used. The message is meant for `nginx -t`
/// (`"key #2 (kid \"k1\"): RSA key is 1024 bits, at least 2048 required"`) and never contains
/// secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct KeyError {
    reason: String,
    symmetric: bool,
}

impl KeyError {
    pub(crate) fn new(reason: impl Into<String>) -> KeyError {
        KeyError {
            reason: reason.into(),
            symmetric: false,
        }
    }

    /// A symmetric key (`kty: oct`) in a published key set.
    pub(crate) fn symmetric() -> KeyError {
        KeyError {
            reason: "symmetric key (kty \"oct\") refused: a published key set may hold public \
                     keys only (anyone who can read it could sign tokens with this one)"
                .into(),
            symmetric: true,
        }
    }

    /// Prefixes the reason with context (`"key #2: "`).
    pub(crate) fn context(self, ctx: impl std::fmt::Display) -> KeyError {
        KeyError {
            reason: format!("{ctx}: {}", self.reason),
            symmetric: self.symmetric,
        }
    }

    /// True when the key was refused for being a symmetric key in a published set (counted
    /// apart from other unusable keys: it is a provider's mistake that leaks a secret).
    pub fn is_symmetric(&self) -> bool {
        self.symmetric
    }

    /// The human-readable reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

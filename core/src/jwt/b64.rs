//! Strict base64url (RFC 7515 section 2): no padding, no `+`/`/`, no whitespace, and the
//! unused trailing bits of the last symbol must be zero (one canonical text per byte string).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Decodes strict unpadded base64url. `None` on any deviation.
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    // The engine's URL_SAFE_NO_PAD config already rejects padding, non-alphabet bytes
    // (including whitespace, `+`, `/`, non-ASCII) and non-zero trailing bits.
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// The exact decoded length of `len` unpadded base64 characters; `None` for a length no
/// encoding has (4k + 1).
pub(crate) fn decoded_len(input: &[u8]) -> Option<usize> {
    let n = input.len();
    match n % 4 {
        0 => Some(n / 4 * 3),
        2 => Some(n / 4 * 3 + 1),
        3 => Some(n / 4 * 3 + 2),
        _ => None,
    }
}

/// Decodes strict unpadded base64url into `out`, which must be exactly
/// [`decoded_len`]`(input)` long. False on any deviation (as [`decode`]).
pub(crate) fn decode_into(input: &[u8], out: &mut [u8]) -> bool {
    URL_SAFE_NO_PAD.decode_slice(input, out) == Ok(out.len())
}

/// Encodes unpadded base64url.
pub(crate) fn encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_base64url() {
        assert_eq!(decode(b"").as_deref(), Some(&b""[..]));
        assert_eq!(decode(b"YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode(b"YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(decode(b"_-8").as_deref(), Some(&[0xff, 0xef][..]));
        // padding
        assert!(decode(b"YWI=").is_none());
        assert!(decode(b"YQ==").is_none());
        // standard alphabet
        assert!(decode(b"+/8").is_none());
        assert!(decode(b"YW+j").is_none());
        // whitespace, non-ASCII
        assert!(decode(b"YW Jj").is_none());
        assert!(decode(b"YWJj\n").is_none());
        assert!(decode(b" YWJj").is_none());
        assert!(decode("YWJ\u{e9}".as_bytes()).is_none());
        // impossible length
        assert!(decode(b"Y").is_none());
        assert!(decode(b"YWJjZ").is_none());
        // non-canonical trailing bits: "YR" and "YQ" both would decode to "a"
        assert_eq!(decode(b"YQ").as_deref(), Some(&b"a"[..]));
        assert!(decode(b"YR").is_none());
        assert!(decode(b"YWJ").is_none() || decode(b"YWJ").as_deref() == Some(&b"ab"[..]));
        assert!(decode(b"YWK").is_none());
        assert_eq!(encode(b"ab"), "YWI");
        // decode_into agrees with decode, with an exactly sized output
        for input in [
            &b""[..],
            b"YWJj",
            b"YWI",
            b"_-8",
            b"YQ",
            b"YR",
            b"YWI=",
            b"+/8",
            b"YWJjZ",
            b"Y",
        ] {
            let mut out = vec![0u8; decoded_len(input).unwrap_or(0)];
            let ok = decoded_len(input).is_some() && decode_into(input, &mut out);
            assert_eq!(decode(input), ok.then_some(out), "{input:?}");
        }
    }
}

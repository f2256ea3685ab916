//! What may go into an HTTP header line.
//!
//! The module's variables end up in `proxy_set_header`, `add_header`, `auth_jwt_require` and
//! the like, and nginx copies a variable's bytes into the header line as they are. A value with
//! CR or LF would start a new header line (header injection towards the upstream, response
//! splitting towards the client, or a whole second request smuggled on a keepalive upstream
//! connection); NUL and the other control bytes are refused or mis-parsed by HTTP parsers in
//! different ways, which is how request smuggling starts. So a value the module produces is
//! allowed only if every byte is a field-value byte of RFC 9110 section 5.5: HTAB, SP, visible
//! ASCII, or a byte >= 0x80 (`obs-text`: nginx passes UTF-8 through unchanged). Everything
//! else (0x00-0x08, 0x0A-0x1F, 0x7F) is refused, with no exception for "harmless" ones: the
//! check is one byte class, not a list of attacks.

/// Whether `b` may appear in a header field value: HTAB, SP..`~`, or >= 0x80.
#[inline]
pub fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// The position of the first byte of `value` that may not appear in a header field value, or
/// `None` when the whole value is safe to put in a header line.
pub fn first_unsafe_byte(value: &[u8]) -> Option<usize> {
    value.iter().position(|&b| !is_field_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_class() {
        for b in 0u8..=255 {
            let expected = b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80;
            assert_eq!(is_field_byte(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn refuses_every_way_to_break_a_line() {
        for bad in [
            &b"M\rX-Injected: 1"[..],
            b"M\nX-Injected: 1",
            b"M\r\nX-Injected: 1",
            b"M\r\n X-Injected: 1",          // obs-fold
            b"M\r\n\r\nGET /admin HTTP/1.1", // a second request
            b"M\0X",
            b"M\x7fX",
            b"\x1b[31mred",
            b"a\x0bb",
            b"a\x0cb",
            b"\x01",
            b"\n",
        ] {
            assert!(first_unsafe_byte(bad).is_some(), "{bad:?}");
        }
        assert_eq!(first_unsafe_byte(b"ab\r\ncd"), Some(2));
        assert_eq!(first_unsafe_byte(b"\x7f"), Some(0));
    }

    #[test]
    fn keeps_tab_text_and_utf8() {
        for good in [
            &b""[..],
            b"alice",
            b"a\tb",
            b" spaced ",
            b"{\"name\":\"M\\r\\nX\"}", // JSON escapes are text
            "Zo\u{eb} \u{6f22}\u{5b57} \u{1f600}".as_bytes(),
            b"\x80\xff", // obs-text: not UTF-8, still not a line break
            b"!~",
        ] {
            assert_eq!(first_unsafe_byte(good), None, "{good:?}");
        }
    }
}

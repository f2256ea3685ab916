//! Credentials never go to the log.
//!
//! Two halves: [`credential_variable`] says which nginx variables echo a credential (the
//! `gateway_log_field` guard refuses them when the configuration loads), and [`redact_query`]
//! writes a query string with the arguments that carry tokens replaced by `[REDACTED]` (the
//! record's `query` field).
//!
//! The guard reads variable names the way nginx's script compiler does
//! ([`referenced_variables`]): `$name` and `${name}`, a name being ASCII letters, digits and
//! `_`, compared case-insensitively (nginx lowercases variable names: `$HTTP_COOKIE` is
//! `$http_cookie`). A value that reaches a credential only through another variable (`map`,
//! `set`) is beyond what the guard can see.

use std::borrow::Cow;

/// What every redacted argument's value becomes.
pub const REDACTED: &[u8] = b"[REDACTED]";

/// Arguments redacted in every configuration: the OAuth 2.0 bearer token (RFC 6750 section
/// 2.3), whether or not `auth_jwt` reads it.
pub const ALWAYS_REDACTED_ARGS: &[&str] = &["access_token"];

/// The variables a complex value refers to, lowercased, in order (repeats kept). Captures
/// (`$1`..`$9`) are not variables and are left out.
pub fn referenced_variables(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let name_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        i += 1;
        if i < b.len() && (b'1'..=b'9').contains(&b[i]) {
            i += 1;
            continue;
        }
        let bracket = i < b.len() && b[i] == b'{';
        if bracket {
            i += 1;
        }
        let start = i;
        while i < b.len() && name_byte(b[i]) {
            i += 1;
        }
        if i > start {
            out.push(value[start..i].to_ascii_lowercase());
        }
        if bracket && i < b.len() && b[i] == b'}' {
            i += 1;
        }
    }
    out
}

/// Request and response headers that are credentials, as the suffix of `$http_`,
/// `$sent_http_` and `$upstream_http_` variables.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
];

/// Why logging the variable `name` (lowercase, without `$`) would always write a credential,
/// or `None`. The variables `auth_jwt ... token=` reads tokens from are credentials too; the
/// configuration knows those and checks them itself.
pub fn credential_variable(name: &str) -> Option<&'static str> {
    for prefix in ["http_", "sent_http_", "upstream_http_"] {
        if let Some(h) = name.strip_prefix(prefix) {
            if CREDENTIAL_HEADERS.contains(&h) {
                return Some(if h.ends_with("cookie") {
                    "cookies carry sessions"
                } else {
                    "it is a credential header"
                });
            }
        }
    }
    if name.starts_with("cookie_") || name.starts_with("upstream_cookie_") {
        return Some("cookies carry sessions");
    }
    if let Some(arg) = name.strip_prefix("arg_") {
        if ALWAYS_REDACTED_ARGS.contains(&arg) {
            return Some("OAuth 2.0 bearer tokens travel in it (RFC 6750)");
        }
    }
    match name {
        "remote_user" => Some("it comes from the Authorization header"),
        "args" | "query_string" | "request_uri" | "request" => Some(
            "it holds the query string, where tokens travel; the \"query\" field logs it with them redacted",
        ),
        "request_body" => Some("request bodies carry passwords and tokens"),
        _ => None,
    }
}

/// `query` with the value of every argument named in `names` replaced by [`REDACTED`].
///
/// Arguments are separated by `&` (as nginx's `$arg_` reads them) or `;` (as some
/// applications do); a name matches whatever its ASCII case (as `$arg_` matches) and also
/// when it is percent-encoded (`access%5Ftoken`). The original spelling of the name is kept;
/// nothing is allocated when nothing matches.
pub fn redact_query<'a, N: AsRef<[u8]>>(query: &'a [u8], names: &[N]) -> Cow<'a, [u8]> {
    let matches = |piece: &[u8]| -> Option<usize> {
        let eq = piece.iter().position(|&c| c == b'=')?;
        let name = percent_decoded(&piece[..eq]);
        names
            .iter()
            .any(|n| n.as_ref().eq_ignore_ascii_case(&name))
            .then_some(eq)
    };
    let separator = |c: &u8| *c == b'&' || *c == b';';
    if !query.split(separator).any(|p| matches(p).is_some()) {
        return Cow::Borrowed(query);
    }
    let mut out = Vec::with_capacity(query.len());
    let mut rest = query;
    loop {
        let end = rest.iter().position(separator).unwrap_or(rest.len());
        let piece = &rest[..end];
        match matches(piece) {
            Some(eq) => {
                out.extend_from_slice(&piece[..=eq]);
                out.extend_from_slice(REDACTED);
            }
            None => out.extend_from_slice(piece),
        }
        if end == rest.len() {
            break;
        }
        out.push(rest[end]);
        rest = &rest[end + 1..];
    }
    Cow::Owned(out)
}

/// `query` without the arguments named `name` (names compared as [`redact_query`] does:
/// percent-decoded, case-insensitively), for a credential that must not reach the upstream.
pub fn without_arg(query: &[u8], name: &[u8]) -> Vec<u8> {
    let separator = |c: &u8| *c == b'&' || *c == b';';
    let named = |piece: &[u8]| {
        let n = piece.split(|&c| c == b'=').next().unwrap_or_default();
        percent_decoded(n).eq_ignore_ascii_case(name)
    };
    let mut out = Vec::with_capacity(query.len());
    for piece in query.split(separator) {
        if piece.is_empty() || named(piece) {
            continue;
        }
        if !out.is_empty() {
            out.push(b'&');
        }
        out.extend_from_slice(piece);
    }
    out
}

/// `%XX` sequences decoded (invalid ones kept as they are); `+` is left alone.
fn percent_decoded(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_arg_removes_every_copy_of_the_argument() {
        let w =
            |q: &str, n: &str| String::from_utf8(without_arg(q.as_bytes(), n.as_bytes())).unwrap();
        assert_eq!(w("a=1&apikey=k&b=2", "apikey"), "a=1&b=2");
        assert_eq!(w("apikey=k", "apikey"), "");
        assert_eq!(w("APIKEY=k;x=1&api%6bey=k2", "apikey"), "x=1");
        assert_eq!(w("apikeys=1&key=2", "apikey"), "apikeys=1&key=2");
        assert_eq!(w("a=1&&b", "apikey"), "a=1&b");
    }

    fn names(v: &str) -> Vec<String> {
        referenced_variables(v)
    }

    #[test]
    fn variable_names_as_nginx_reads_them() {
        assert_eq!(names("$http_authorization"), ["http_authorization"]);
        assert_eq!(names("${http_authorization}"), ["http_authorization"]);
        assert_eq!(names("${HTTP_Authorization}x"), ["http_authorization"]);
        assert_eq!(names("$HTTP_COOKIE"), ["http_cookie"]);
        assert_eq!(names("s=$cookie_session;"), ["cookie_session"]);
        assert_eq!(names("a$host-$Request_URI.b"), ["host", "request_uri"]);
        assert_eq!(names("$1$2 ${arg_a}$arg_b"), ["arg_a", "arg_b"]);
        assert_eq!(names("plain text"), Vec::<String>::new());
        assert_eq!(names("$"), Vec::<String>::new());
        assert_eq!(names("${"), Vec::<String>::new());
        assert_eq!(names("$$host"), ["host"]);
        // "$10" is capture 1 then "0": no variable.
        assert_eq!(names("$10"), Vec::<String>::new());
    }

    #[test]
    fn credential_variables() {
        for v in [
            "http_authorization",
            "http_proxy_authorization",
            "http_cookie",
            "sent_http_set_cookie",
            "upstream_http_set_cookie",
            "upstream_http_authorization",
            "cookie_session",
            "cookie_",
            "upstream_cookie_sid",
            "remote_user",
            "arg_access_token",
            "args",
            "query_string",
            "request_uri",
            "request",
            "request_body",
        ] {
            assert!(credential_variable(v).is_some(), "{v}");
        }
        for v in [
            "host",
            "uri",
            "arg_tenant",
            "http_x_request_id",
            "http_user_agent",
            "sent_http_content_type",
            "request_method",
            "request_time",
            "request_length",
            "remote_addr",
            "http_authorization_hint",
        ] {
            assert_eq!(credential_variable(v), None, "{v}");
        }
        // Only with an auth_jwt reading tokens from it (checked by the configuration).
        assert_eq!(credential_variable("arg_jwt"), None);
    }

    fn redact(q: &str, n: &[&str]) -> String {
        String::from_utf8(redact_query(q.as_bytes(), n).into_owned()).unwrap()
    }

    #[test]
    fn redacts_token_arguments_only() {
        let n = &["access_token", "jwt"];
        assert_eq!(redact("a=1&jwt=eyJ.x.y&b=2", n), "a=1&jwt=[REDACTED]&b=2");
        assert_eq!(redact("jwt=eyJ", n), "jwt=[REDACTED]");
        assert_eq!(
            redact("JWT=eyJ&Access_Token=t", n),
            "JWT=[REDACTED]&Access_Token=[REDACTED]"
        );
        assert_eq!(
            redact("access%5Ftoken=t&x=1", n),
            "access%5Ftoken=[REDACTED]&x=1"
        );
        assert_eq!(redact("a=1;jwt=t", n), "a=1;jwt=[REDACTED]");
        assert_eq!(redact("jwt=a&jwt=b", n), "jwt=[REDACTED]&jwt=[REDACTED]");
        assert_eq!(redact("jwt=", n), "jwt=[REDACTED]");
        assert_eq!(redact("xjwt=t&jwtx=t&jwt", n), "xjwt=t&jwtx=t&jwt");
        assert_eq!(redact("a=jwt=t", n), "a=jwt=t");
        assert_eq!(redact("jwt=a=b&&", n), "jwt=[REDACTED]&&");
        assert_eq!(redact("", n), "");
        assert_eq!(redact("%zz=1&%=2&%4=3", n), "%zz=1&%=2&%4=3");
        let q = b"a=1&b=2";
        assert!(matches!(redact_query(q, n), Cow::Borrowed(_)));
        assert!(matches!(redact_query(q, &[] as &[&str]), Cow::Borrowed(_)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(&*percent_decoded(b"a%5Fb"), b"a_b");
        assert_eq!(&*percent_decoded(b"a%5fb%"), b"a_b%");
        assert_eq!(&*percent_decoded(b"%4"), b"%4");
        assert_eq!(&*percent_decoded(b"%41%4"), b"A%4");
        assert_eq!(&*percent_decoded(b"+"), b"+");
    }
}

//! nginx-style directive value parsers.
//!
//! Pure functions over bytes (nginx hands directive arguments over as `ngx_str_t`, which need
//! not be UTF-8), so they take anything that is `AsRef<[u8]>`: `parse_size("10m")` and
//! `parse_size(arg_bytes)` both work. None of them panics or overflows on any input; every
//! failure is a [`ParseError`] whose `Display` reads like nginx's own messages, e.g.
//! `invalid rate "10r/x", the unit must be r/s, r/m, r/h, r/d, r/w or r/M`. The glue appends
//! `in FILE:LINE` (nginx does that itself for errors returned from a directive handler).

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::fmt;

/// What kind of value failed to parse; names the value in the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A size such as `10m`.
    Size,
    /// A time such as `1h30m`.
    Time,
    /// A rate such as `10r/s`.
    Rate,
    /// An `on`/`off` flag.
    Flag,
    /// A plain non-negative integer such as `burst=5`.
    Number,
    /// A `key=value` argument.
    Argument,
    /// A `name:size` zone specification.
    Zone,
}

impl What {
    fn as_str(self) -> &'static str {
        match self {
            What::Size => "size",
            What::Time => "time",
            What::Rate => "rate",
            What::Flag => "value",
            What::Number => "number",
            What::Argument => "parameter",
            What::Zone => "zone",
        }
    }
}

/// A value that does not parse.
///
/// Displays as `invalid <what> "<value>"`, followed by `, <hint>` when there is one, which is the
/// shape of nginx's own configuration errors (`invalid rate "10r/x", the unit must be ...`).
/// The offending value is kept (lossily decoded, cut at 64 bytes) so that a hostile value from a
/// request variable cannot blow up a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which kind of value was being parsed.
    pub what: What,
    /// The offending value, for the message.
    pub value: String,
    /// Why it was rejected, when that helps (`"too large"`, `"the unit must be ..."`).
    pub hint: Option<&'static str>,
}

/// Longest prefix of the offending value quoted in an error message.
const MAX_QUOTED: usize = 64;

impl ParseError {
    fn new(what: What, value: &[u8], hint: Option<&'static str>) -> Self {
        let cut = value.get(..MAX_QUOTED).unwrap_or(value);
        let mut quoted = String::from_utf8_lossy(cut).into_owned();
        if cut.len() < value.len() {
            quoted.push_str("...");
        }
        ParseError {
            what,
            value: quoted,
            hint,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} \"{}\"", self.what.as_str(), self.value)?;
        if let Some(hint) = self.hint {
            write!(f, ", {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// Parses a run of ASCII digits (nothing else, not empty) as a `u64`, `None` on overflow.
fn digits_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v
            .checked_mul(10)?
            .checked_add(u64::from(c.wrapping_sub(b'0')))?;
    }
    Some(v)
}

/// Largest size accepted: nginx's `NGX_MAX_SIZE_T_VALUE` (the `ssize_t` maximum).
const MAX_SIZE: u64 = isize::MAX as u64;

/// Parses a size like nginx's `ngx_parse_size`: digits with an optional unit suffix `k`/`K`
/// (×1024), `m`/`M` (×1024²) or `g`/`G` (×1024³).
///
/// No sign, no spaces, no fraction. Values above `isize::MAX` bytes are rejected as nginx does.
///
/// ```
/// # use gateway_core::parse::parse_size;
/// assert_eq!(parse_size("10m"), Ok(10 << 20));
/// assert_eq!(parse_size("512"), Ok(512));
/// assert!(parse_size("10x").is_err());
/// ```
pub fn parse_size<S: AsRef<[u8]> + ?Sized>(value: &S) -> Result<usize, ParseError> {
    let s = value.as_ref();
    let err = |hint| ParseError::new(What::Size, s, hint);
    let (digits, scale): (&[u8], u64) = match s.split_last() {
        Some((b'k' | b'K', rest)) => (rest, 1 << 10),
        Some((b'm' | b'M', rest)) => (rest, 1 << 20),
        Some((b'g' | b'G', rest)) => (rest, 1 << 30),
        Some(_) => (s, 1),
        None => return Err(err(None)),
    };
    let n = digits_u64(digits).ok_or_else(|| err(None))?;
    let bytes = n
        .checked_mul(scale)
        .filter(|&b| b <= MAX_SIZE)
        .ok_or_else(|| err(Some("too large")))?;
    usize::try_from(bytes).map_err(|_| err(Some("too large")))
}

/// Largest time accepted, in milliseconds: nginx's `NGX_MAX_INT_T_VALUE`, so a result always
/// fits `ngx_msec_int_t` / `ngx_int_t`.
const MAX_MS: u64 = i64::MAX as u64;

/// Parses a time like nginx's `ngx_parse_time` and returns milliseconds.
///
/// A value is one or more `<digits><unit>` parts with units in strictly decreasing order,
/// optionally separated by spaces: `ms` (milliseconds), `s` (seconds), `m` (minutes), `h`,
/// `d`, `w` (weeks), `M` (30 days), `y` (365 days). A bare number is seconds, and may stand
/// alone (`"10"`) or last after larger units (`"1m 30"` is 90 s), as nginx allows.
///
/// Differences from `ngx_parse_time(.., 0)`, all stricter or documented-superset: `M` and `y`
/// are accepted (nginx documents them but rejects them in milliseconds mode); a unit must be
/// preceded by digits (nginx accepts `"1hs"`); a bare number may not follow `s` or `ms`.
///
/// ```
/// # use gateway_core::parse::parse_duration_ms;
/// assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
/// assert_eq!(parse_duration_ms("500ms"), Ok(500));
/// assert_eq!(parse_duration_ms("10"), Ok(10_000));
/// assert!(parse_duration_ms("30m1h").is_err());
/// ```
pub fn parse_duration_ms<S: AsRef<[u8]> + ?Sized>(value: &S) -> Result<u64, ParseError> {
    let s = value.as_ref();
    let err = |hint| ParseError::new(What::Time, s, hint);
    const DAY: u64 = 86_400_000;
    // Units, largest first; `rank` orders them (a part must have a smaller rank than the last).
    let mut last_rank: u8 = u8::MAX;
    let mut total: u64 = 0;
    let mut rest = s;
    let mut any = false;
    loop {
        while let Some((&b' ', r)) = rest.split_first() {
            rest = r;
        }
        if rest.is_empty() {
            break;
        }
        let n_digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let (digits, after) = rest.split_at_checked(n_digits).ok_or_else(|| err(None))?;
        let n = digits_u64(digits).ok_or_else(|| {
            err(if digits.is_empty() {
                None
            } else {
                Some("too large")
            })
        })?;
        let (rank, scale, after) = match after {
            [b'm', b's', r @ ..] => (1, 1, r),
            [b's', r @ ..] => (2, 1_000, r),
            [b'm', r @ ..] => (3, 60_000, r),
            [b'h', r @ ..] => (4, 3_600_000, r),
            [b'd', r @ ..] => (5, DAY, r),
            [b'w', r @ ..] => (6, 7 * DAY, r),
            [b'M', r @ ..] => (7, 30 * DAY, r),
            [b'y', r @ ..] => (8, 365 * DAY, r),
            // A bare number: seconds, and it must be the last part.
            [] | [b' ', ..] => {
                let trailing_ok = after.iter().all(|&c| c == b' ');
                if !trailing_ok || last_rank <= 2 {
                    return Err(err(None));
                }
                (0, 1_000, &[][..])
            }
            _ => return Err(err(None)),
        };
        if rank != 0 && rank >= last_rank {
            return Err(err(Some("units must be in decreasing order")));
        }
        last_rank = rank;
        let part = n.checked_mul(scale).ok_or_else(|| err(Some("too large")))?;
        total = total
            .checked_add(part)
            .filter(|&t| t <= MAX_MS)
            .ok_or_else(|| err(Some("too large")))?;
        any = true;
        rest = after;
    }
    if any {
        Ok(total)
    } else {
        Err(err(None))
    }
}

/// A request rate: `count` requests per `period_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests per period, at least 1 and at most [`Rate::MAX_COUNT`].
    pub count: u64,
    /// Length of the period in milliseconds: 1000, 60000, 3600000 or 86400000; for the
    /// calendar windows `r/w` and `r/M`, [`crate::ratelimit::calendar::WEEK_MS`] and
    /// [`crate::ratelimit::calendar::MONTH_MS`] (which stands for a calendar month).
    pub period_ms: u64,
}

impl Rate {
    /// Largest count accepted (the rate-limit state keeps per-window counts in 32 bits).
    pub const MAX_COUNT: u64 = u32::MAX as u64;

    /// The period in whole seconds (for `RateLimit-Policy: ...;w=60`).
    pub fn period_secs(&self) -> u64 {
        self.period_ms / 1000
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period_ms {
            1_000 => "s",
            60_000 => "m",
            3_600_000 => "h",
            86_400_000 => "d",
            crate::ratelimit::calendar::WEEK_MS => "w",
            crate::ratelimit::calendar::MONTH_MS => "M",
            _ => return write!(f, "{}r/{}ms", self.count, self.period_ms),
        };
        write!(f, "{}r/{}", self.count, unit)
    }
}

/// Parses a rate: `<count>r/s`, `r/m`, `r/h`, `r/d`, `r/w` (calendar week) or `r/M` (calendar
/// month), e.g. `10r/s`, `1000r/h`, `100000r/M`.
///
/// The count is 1 to [`Rate::MAX_COUNT`]; no spaces, signs or fractions. (nginx's `limit_req`
/// knows only `r/s` and `r/m`; hours and days serve quotas.)
///
/// ```
/// # use gateway_core::parse::{parse_rate, Rate};
/// assert_eq!(parse_rate("100r/m"), Ok(Rate { count: 100, period_ms: 60_000 }));
/// assert_eq!(parse_rate("10r/x").unwrap_err().to_string(),
///            r#"invalid rate "10r/x", the unit must be r/s, r/m, r/h, r/d, r/w or r/M"#);
/// ```
pub fn parse_rate<S: AsRef<[u8]> + ?Sized>(value: &S) -> Result<Rate, ParseError> {
    let s = value.as_ref();
    let err = |hint| ParseError::new(What::Rate, s, hint);
    let n_digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (digits, unit) = s.split_at_checked(n_digits).ok_or_else(|| err(None))?;
    if digits.is_empty() {
        return Err(err(Some("it must look like 10r/s")));
    }
    let period_ms = match unit {
        b"r/s" => 1_000,
        b"r/m" => 60_000,
        b"r/h" => 3_600_000,
        b"r/d" => 86_400_000,
        b"r/w" => crate::ratelimit::calendar::WEEK_MS,
        b"r/M" => crate::ratelimit::calendar::MONTH_MS,
        [b'r', b'/', ..] => {
            return Err(err(Some("the unit must be r/s, r/m, r/h, r/d, r/w or r/M")))
        }
        _ => return Err(err(Some("it must look like 10r/s"))),
    };
    let count = digits_u64(digits)
        .filter(|&c| c <= Rate::MAX_COUNT)
        .ok_or_else(|| err(Some("too large")))?;
    if count == 0 {
        return Err(err(Some("it must be at least 1r/d")));
    }
    Ok(Rate { count, period_ms })
}

/// Parses `on` or `off` (ASCII case-insensitive, as `ngx_conf_set_flag_slot` does).
pub fn parse_on_off<S: AsRef<[u8]> + ?Sized>(value: &S) -> Result<bool, ParseError> {
    let s = value.as_ref();
    if s.eq_ignore_ascii_case(b"on") {
        Ok(true)
    } else if s.eq_ignore_ascii_case(b"off") {
        Ok(false)
    } else {
        Err(ParseError::new(
            What::Flag,
            s,
            Some("it must be \"on\" or \"off\""),
        ))
    }
}

/// Parses a non-negative decimal integer (digits only), e.g. the `5` of `burst=5`.
pub fn parse_number<S: AsRef<[u8]> + ?Sized>(value: &S) -> Result<u64, ParseError> {
    let s = value.as_ref();
    digits_u64(s).ok_or_else(|| {
        let hint = if !s.is_empty() && s.iter().all(u8::is_ascii_digit) {
            Some("too large")
        } else {
            None
        };
        ParseError::new(What::Number, s, hint)
    })
}

/// Splits a `key=value` directive argument at the first `=`.
///
/// The key must be non-empty; the value must be non-empty too (`burst=` is an error), and may
/// itself contain `=`. An argument without `=` is an error; callers that also accept bare flags
/// (`dry_run`) test for those first.
///
/// ```
/// # use gateway_core::parse::split_key_value;
/// assert_eq!(split_key_value("zone=api:10m"), Ok((&b"zone"[..], &b"api:10m"[..])));
/// assert!(split_key_value("burst").is_err());
/// ```
pub fn split_key_value<S: AsRef<[u8]> + ?Sized>(arg: &S) -> Result<(&[u8], &[u8]), ParseError> {
    let s = arg.as_ref();
    let err = |hint| ParseError::new(What::Argument, s, hint);
    let eq = s
        .iter()
        .position(|&c| c == b'=')
        .ok_or_else(|| err(Some("expected key=value")))?;
    let (key, value) = s.split_at_checked(eq).ok_or_else(|| err(None))?;
    let value = value.get(1..).unwrap_or_default();
    if key.is_empty() {
        return Err(err(Some("empty name")));
    }
    if value.is_empty() {
        return Err(err(Some("empty value")));
    }
    Ok((key, value))
}

/// Largest zone name accepted, in bytes.
pub const MAX_ZONE_NAME: usize = 128;

/// Parses a zone specification: `name:size` (for `rate_limit_zone ... zone=name:10m`) or `name`
/// (for `rate_limit zone=name`).
///
/// With `require_size` a size must be present; without it a size is an error, so each directive
/// gets the message that fits it. The name is 1 to [`MAX_ZONE_NAME`] bytes of
/// `[A-Za-z0-9_.-]`. Whether the size is large enough for the zone's table is the caller's check
/// (see `ratelimit::table::Table::min_region_len`).
pub fn parse_zone<S: AsRef<[u8]> + ?Sized>(
    value: &S,
    require_size: bool,
) -> Result<(&[u8], Option<usize>), ParseError> {
    let s = value.as_ref();
    let err = |hint| ParseError::new(What::Zone, s, hint);
    let (name, size) = match s.iter().rposition(|&c| c == b':') {
        Some(colon) => {
            let (name, size) = s.split_at_checked(colon).ok_or_else(|| err(None))?;
            (name, Some(size.get(1..).unwrap_or_default()))
        }
        None => (s, None),
    };
    if name.is_empty() || name.len() > MAX_ZONE_NAME {
        return Err(err(Some("bad zone name")));
    }
    if !name
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    {
        return Err(err(Some("bad zone name")));
    }
    match (size, require_size) {
        (Some(sz), true) => {
            let bytes = parse_size(sz).map_err(|_| err(Some("bad zone size")))?;
            Ok((name, Some(bytes)))
        }
        (None, true) => Err(err(Some("the zone size is missing, e.g. zone=name:10m"))),
        (Some(_), false) => Err(err(Some("a size is not allowed here"))),
        (None, false) => Ok((name, None)),
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used
)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10k"), Ok(10 * 1024));
        assert_eq!(parse_size("10K"), Ok(10 * 1024));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size(b"1g".as_slice()), Ok(1 << 30));
        for bad in [
            "", "k", "m", "-1", "+1", "1.5m", " 1m", "1m ", "1mb", "1t", "1kk", "0x10",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        // Overflow, both in the digits and in the scaling.
        assert!(parse_size("99999999999999999999999").is_err());
        assert!(parse_size("9223372036854775807").is_ok());
        assert!(parse_size("9223372036854775808").is_err());
        assert!(parse_size("8589934592g").is_err());
        assert_eq!(
            parse_size("8589934592g").unwrap_err().to_string(),
            "invalid size \"8589934592g\", too large"
        );
    }

    #[test]
    fn durations() {
        let ok = [
            ("0", 0),
            ("10", 10_000),
            ("30s", 30_000),
            ("500ms", 500),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1h 30m ", 5_400_000),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            ("1M", 2_592_000_000),
            ("1y", 31_536_000_000),
            ("1m30", 90_000),
            ("1m 30", 90_000),
            ("1d2h3m4s5ms", 93_784_005),
        ];
        for (s, v) in ok {
            assert_eq!(parse_duration_ms(s), Ok(v), "{s:?}");
        }
        for bad in [
            "", " ", "s", "ms", "h1", "30m1h", "1s1s", "1m1m", "1s 5", "5ms 1", "1x", "-1s",
            "1.5s", "1 2", "1hs", "1sms", "1 h",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_duration_ms("9223372036854775807ms"),
            Ok(i64::MAX as u64)
        );
        assert!(parse_duration_ms("9223372036854775808ms").is_err());
        assert!(parse_duration_ms("9223372036854775807s").is_err());
        assert!(parse_duration_ms("300000000y").is_err());
        assert!(parse_duration_ms("99999999999999999999999999s").is_err());
        assert_eq!(
            parse_duration_ms("30m1h").unwrap_err().to_string(),
            "invalid time \"30m1h\", units must be in decreasing order"
        );
    }

    #[test]
    fn rates() {
        let r = |count, period_ms| Rate { count, period_ms };
        assert_eq!(parse_rate("10r/s"), Ok(r(10, 1000)));
        assert_eq!(parse_rate("100r/m"), Ok(r(100, 60_000)));
        assert_eq!(parse_rate("1000r/h"), Ok(r(1000, 3_600_000)));
        assert_eq!(parse_rate("5000r/d"), Ok(r(5000, 86_400_000)));
        assert_eq!(parse_rate("7r/w"), Ok(r(7, 604_800_000)));
        assert_eq!(parse_rate("100000r/M"), Ok(r(100_000, 2_678_400_000)));
        assert_eq!(parse_rate("100000r/M").unwrap().to_string(), "100000r/M");
        assert_eq!(parse_rate("7r/w").unwrap().to_string(), "7r/w");
        assert!(parse_rate("7r/W").is_err());
        assert_eq!(parse_rate("4294967295r/s"), Ok(r(u32::MAX as u64, 1000)));
        for bad in [
            "",
            "r/s",
            "0r/s",
            "-1r/s",
            "10",
            "10r",
            "10r/",
            "10r/x",
            "10 r/s",
            "10r/s ",
            "1.5r/s",
            "10R/s",
            "10r/S",
            "10r/ss",
            "10/s",
            "4294967296r/s",
            "99999999999999999999999r/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_rate("10r/x").unwrap_err().to_string(),
            "invalid rate \"10r/x\", the unit must be r/s, r/m, r/h, r/d, r/w or r/M"
        );
        assert_eq!(r(10, 1000).to_string(), "10r/s");
        assert_eq!(r(7, 86_400_000).to_string(), "7r/d");
        assert_eq!(r(7, 86_400_000).period_secs(), 86_400);
    }

    #[test]
    fn flags_numbers_kv_zones() {
        assert_eq!(parse_on_off("on"), Ok(true));
        assert_eq!(parse_on_off("OFF"), Ok(false));
        assert!(parse_on_off("yes").is_err());
        assert_eq!(
            parse_on_off("yes").unwrap_err().to_string(),
            "invalid value \"yes\", it must be \"on\" or \"off\""
        );
        assert_eq!(parse_number("5"), Ok(5));
        assert!(parse_number("").is_err());
        assert!(parse_number("-5").is_err());
        assert_eq!(
            parse_number("18446744073709551616").unwrap_err().hint,
            Some("too large")
        );

        assert_eq!(split_key_value("burst=5"), Ok((&b"burst"[..], &b"5"[..])));
        assert_eq!(split_key_value("a=b=c"), Ok((&b"a"[..], &b"b=c"[..])));
        assert!(split_key_value("dry_run").is_err());
        assert!(split_key_value("=5").is_err());
        assert!(split_key_value("burst=").is_err());

        assert_eq!(
            parse_zone("api:10m", true),
            Ok((&b"api"[..], Some(10 << 20)))
        );
        assert_eq!(parse_zone("api", false), Ok((&b"api"[..], None)));
        assert!(parse_zone("api", true).is_err());
        assert!(parse_zone("api:10m", false).is_err());
        assert!(parse_zone(":10m", true).is_err());
        assert!(parse_zone("api:", true).is_err());
        assert!(parse_zone("api:10x", true).is_err());
        assert!(parse_zone("a b:1m", true).is_err());
        assert_eq!(
            parse_zone("api", true).unwrap_err().to_string(),
            "invalid zone \"api\", the zone size is missing, e.g. zone=name:10m"
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "9".repeat(1000) + "r/s";
        let e = parse_rate(&long).unwrap_err();
        assert_eq!(e.value.len(), MAX_QUOTED + 3);
        assert!(e.value.ends_with("..."));
        // Cutting inside a multi-byte character does not panic.
        let s = "é".repeat(100);
        let e = parse_size(&s).unwrap_err();
        assert!(e.to_string().starts_with("invalid size"));
    }

    /// Random bytes and mutations of valid values never panic (a cheap stand-in for fuzzing).
    #[test]
    fn fuzz_no_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"0123456789 kKmMgGsShdwyr/=:.-+x\xff";
        let seeds = [
            "10m",
            "1h30m",
            "500ms",
            "10r/s",
            "zone=a:1m",
            "on",
            "5",
            "1y2M3w4d5h6m7s8ms",
        ];
        for i in 0..200_000u32 {
            let mut v: Vec<u8> = seeds[i as usize % seeds.len()].as_bytes().to_vec();
            for _ in 0..(next() % 4) {
                let pos = (next() as usize) % (v.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => v.insert(pos, c),
                    1 if pos < v.len() => v[pos] = c,
                    _ if pos < v.len() => {
                        v.remove(pos);
                    }
                    _ => {}
                }
            }
            let _ = parse_size(&v);
            let _ = parse_duration_ms(&v);
            let _ = parse_rate(&v);
            let _ = parse_on_off(&v);
            let _ = parse_number(&v);
            let _ = split_key_value(&v);
            let _ = parse_zone(&v, true);
            let _ = parse_zone(&v, false);
            if let Ok(ms) = parse_duration_ms(&v) {
                assert!(ms <= MAX_MS);
            }
        }
    }
}

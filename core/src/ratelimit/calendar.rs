//! Where a limit's windows lie on the clock: fixed periods (`r/s` ... `r/d`) and calendar
//! windows (`r/w`: from Monday 00:00 to the next Monday; `r/M`: from the 1st of a month 00:00
//! to the 1st of the next), all aligned on the local clock of a fixed UTC offset (`tz=`).
//!
//! A fixed period `P` with offset `o` has its windows start at the instants `t` where
//! `(t + o) mod P == 0`; with `o = 0` (UTC, the default) that is the multiples of `P` since the
//! epoch, as before calendar windows existed. A week is a fixed period of 7 days with the phase
//! of Monday (1970-01-01 was a Thursday). A month has 28 to 31 days: its bounds come from the
//! civil calendar (proleptic Gregorian, leap years included).
//!
//! Only fixed offsets: a zone that follows daylight saving time (Europe/Paris) would give days
//! of 23 or 25 hours and ambiguous local midnights twice a year, and would need the time-zone
//! database at request time; every node must also name the same window the same way (the Redis
//! keys carry the window's start), which a fixed offset guarantees whatever each host's own
//! time-zone settings are.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

/// `r/w`: the period of a calendar week (also its exact length with a fixed offset).
pub const WEEK_MS: u64 = 7 * DAY_MS;
/// `r/M`: stands for the calendar month wherever a period is expected (it is the longest
/// month, 31 days, so any bound derived from it is on the safe side); the real bounds come from
/// [`Windows`].
pub const MONTH_MS: u64 = 31 * DAY_MS;

const DAY_MS: u64 = 86_400_000;
const DAY_MS_I: i128 = 86_400_000;
/// 1970-01-01 (day 0) was a Thursday: Monday 1969-12-29 is 3 days before.
const MONDAY_PHASE_MS: i128 = 3 * DAY_MS_I;
/// Largest offset accepted, in minutes (UTC-14:00 ... UTC+14:00 exist; 18 hours as ISO 8601).
pub const MAX_OFFSET_MIN: i64 = 18 * 60;

/// The windows of one limit: its period and the zone's UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Windows {
    /// The period in milliseconds; [`WEEK_MS`] and [`MONTH_MS`] are calendar windows.
    pub period_ms: u64,
    /// The local clock's offset from UTC in milliseconds (`+02:00` is 7 200 000).
    pub offset_ms: i64,
}

impl Windows {
    /// Whether these are calendar windows (week or month): counted as fixed windows, without
    /// the sliding estimate (see [`super::algo`]).
    #[must_use]
    pub fn is_calendar(&self) -> bool {
        self.period_ms == WEEK_MS || self.period_ms == MONTH_MS
    }

    fn period(&self) -> u64 {
        self.period_ms.max(1)
    }

    /// Start (ms since the epoch, UTC) of the window holding `t`.
    #[must_use]
    pub fn start(&self, t: u64) -> u64 {
        let local = i128::from(t).saturating_add(i128::from(self.offset_ms));
        let start_local = if self.period_ms == MONTH_MS {
            let (y, m, _) = civil_from_days(local.div_euclid(DAY_MS_I));
            days_from_civil(y, m, 1).saturating_mul(DAY_MS_I)
        } else {
            let p = i128::from(self.period());
            let phase = if self.period_ms == WEEK_MS {
                MONDAY_PHASE_MS
            } else {
                0
            };
            local.saturating_sub(local.saturating_add(phase).rem_euclid(p))
        };
        to_u64(start_local.saturating_sub(i128::from(self.offset_ms)))
    }

    /// End (exclusive) of the window that starts at `start`.
    #[must_use]
    pub fn end(&self, start: u64) -> u64 {
        if self.period_ms == MONTH_MS {
            let local = i128::from(start).saturating_add(i128::from(self.offset_ms));
            let (y, m, _) = civil_from_days(local.div_euclid(DAY_MS_I));
            let (y, m) = if m == 12 {
                (y.saturating_add(1), 1)
            } else {
                (y, m.saturating_add(1))
            };
            let end_local = days_from_civil(y, m, 1).saturating_mul(DAY_MS_I);
            to_u64(end_local.saturating_sub(i128::from(self.offset_ms)))
        } else {
            start.saturating_add(self.period())
        }
    }

    /// Length of the window that starts at `start` (a month: 28 to 31 days).
    #[must_use]
    pub fn len(&self, start: u64) -> u64 {
        self.end(start).saturating_sub(start).max(1)
    }

    /// Start of the window before the one that starts at `start`.
    #[must_use]
    pub fn prev_start(&self, start: u64) -> u64 {
        if self.period_ms == MONTH_MS {
            self.start(start.saturating_sub(1))
        } else {
            start.saturating_sub(self.period())
        }
    }
}

fn to_u64(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

/// (year, month 1..=12, day 1..=31) of a day number (days since 1970-01-01), proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`).
#[must_use]
pub fn civil_from_days(z: i128) -> (i128, u32, u32) {
    let z = z.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = doe
        .saturating_sub(doe / 1460)
        .saturating_add(doe / 36524)
        .saturating_sub(doe / 146_096)
        / 365; // [0, 399]
    let y = yoe.saturating_add(era.saturating_mul(400));
    let doy = doe.saturating_sub(
        yoe.saturating_mul(365)
            .saturating_add(yoe / 4)
            .saturating_sub(yoe / 100),
    ); // [0, 365]
    let mp = doy.saturating_mul(5).saturating_add(2) / 153; // [0, 11]
    let d = doy
        .saturating_sub(mp.saturating_mul(153).saturating_add(2) / 5)
        .saturating_add(1);
    let m = if mp < 10 {
        mp.saturating_add(3)
    } else {
        mp.saturating_sub(9)
    };
    let y = if m <= 2 { y.saturating_add(1) } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Day number (days since 1970-01-01) of a civil date (H. Hinnant's `days_from_civil`).
#[must_use]
pub fn days_from_civil(y: i128, m: u32, d: u32) -> i128 {
    let y = if m <= 2 { y.saturating_sub(1) } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i128::from(m);
    let mp = if m > 2 {
        m.saturating_sub(3)
    } else {
        m.saturating_add(9)
    };
    let doy = mp
        .saturating_mul(153)
        .saturating_add(2)
        .checked_div(5)
        .unwrap_or(0)
        .saturating_add(i128::from(d))
        .saturating_sub(1); // [0, 365]
    let doe = yoe
        .saturating_mul(365)
        .saturating_add(yoe / 4)
        .saturating_sub(yoe / 100)
        .saturating_add(doy); // [0, 146096]
    era.saturating_mul(146_097)
        .saturating_add(doe)
        .saturating_sub(719_468)
}

/// Parses a fixed UTC offset: `UTC`, `Z`, `+02:00`, `-05:30`, `+0200` or `+02`. Returns it in
/// milliseconds.
#[must_use]
pub fn parse_offset(s: &[u8]) -> Option<i64> {
    if s.eq_ignore_ascii_case(b"utc") || s == b"Z" {
        return Some(0);
    }
    let (sign, rest) = match s.split_first()? {
        (b'+', r) => (1i64, r),
        (b'-', r) => (-1i64, r),
        _ => return None,
    };
    let digits = |b: &[u8]| -> Option<i64> {
        if b.len() != 2 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok()
    };
    let (h, m) = match rest.len() {
        2 => (digits(rest)?, 0),
        4 => (digits(rest.get(..2)?)?, digits(rest.get(2..)?)?),
        5 if rest.get(2) == Some(&b':') => (digits(rest.get(..2)?)?, digits(rest.get(3..)?)?),
        _ => return None,
    };
    if m >= 60 {
        return None;
    }
    let min = h.checked_mul(60)?.checked_add(m)?;
    if min > MAX_OFFSET_MIN {
        return None;
    }
    sign.checked_mul(min)?.checked_mul(60_000)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::unwrap_used)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    /// Milliseconds since the epoch of a UTC civil time.
    fn at(y: i128, m: u32, d: u32, hour: u64) -> u64 {
        u64::try_from(days_from_civil(y, m, d)).unwrap() * DAY_MS + hour * H
    }

    fn month(offset_ms: i64) -> Windows {
        Windows {
            period_ms: MONTH_MS,
            offset_ms,
        }
    }

    fn week(offset_ms: i64) -> Windows {
        Windows {
            period_ms: WEEK_MS,
            offset_ms,
        }
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for z in -800_000..800_000i128 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn month_lengths_and_leap_years() {
        let w = month(0);
        let days = |y, m| w.len(at(y, m, 1, 0)) / DAY_MS;
        assert_eq!(days(2026, 1), 31);
        assert_eq!(days(2026, 2), 28);
        assert_eq!(days(2024, 2), 29); // divisible by 4
        assert_eq!(days(2100, 2), 28); // by 100, not by 400
        assert_eq!(days(2000, 2), 29); // by 400
        assert_eq!(days(2026, 4), 30);
        assert_eq!(days(2026, 12), 31); // into the next year
        assert_eq!(w.end(at(2026, 12, 1, 0)), at(2027, 1, 1, 0));
        // Any instant of a month maps to its 1st, 00:00; the previous month is found too.
        let t = at(2024, 2, 29, 23) + 3_599_999;
        assert_eq!(w.start(t), at(2024, 2, 1, 0));
        assert_eq!(w.start(t + 1), at(2024, 3, 1, 0));
        assert_eq!(w.prev_start(at(2024, 3, 1, 0)), at(2024, 2, 1, 0));
        assert_eq!(w.prev_start(at(2026, 1, 1, 0)), at(2025, 12, 1, 0));
        assert!(w.is_calendar());
    }

    #[test]
    fn offsets_move_the_bounds() {
        // +02:00: the local month starts at 22:00 UTC on the last day of the previous month.
        let w = month(2 * 3_600_000);
        assert_eq!(w.start(at(2026, 3, 31, 22)), at(2026, 3, 31, 22));
        assert_eq!(w.start(at(2026, 3, 31, 21)), at(2026, 2, 28, 22));
        assert_eq!(w.len(at(2026, 2, 28, 22)), 31 * DAY_MS); // local March
                                                             // -05:30: local midnight is 05:30 UTC.
        let w = month(-(5 * 60 + 30) * 60_000);
        let start = at(2026, 6, 1, 5) + 30 * 60_000;
        assert_eq!(w.start(start), start);
        assert_eq!(w.start(start - 1), at(2026, 5, 1, 5) + 30 * 60_000);
        // Days follow the offset too; whole-hour offsets leave minutes and seconds alone.
        let d = Windows {
            period_ms: DAY_MS,
            offset_ms: 2 * 3_600_000,
        };
        assert_eq!(d.start(at(2026, 5, 10, 23)), at(2026, 5, 10, 22));
        assert_eq!(d.start(at(2026, 5, 10, 21)), at(2026, 5, 9, 22));
        let m = Windows {
            period_ms: 60_000,
            offset_ms: 2 * 3_600_000,
        };
        assert_eq!(
            m.start(at(2026, 5, 10, 21) + 61_000),
            at(2026, 5, 10, 21) + 60_000
        );
        // UTC keeps the old alignment: multiples of the period.
        let h = Windows {
            period_ms: H,
            offset_ms: 0,
        };
        assert_eq!(h.start(7 * H + 5), 7 * H);
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-30 is a Monday; 2026-12-06 a Sunday.
        let w = week(0);
        assert_eq!(w.start(at(2026, 12, 6, 23)), at(2026, 11, 30, 0));
        assert_eq!(w.start(at(2026, 11, 30, 0)), at(2026, 11, 30, 0));
        assert_eq!(w.start(at(2026, 11, 29, 23)), at(2026, 11, 23, 0));
        assert_eq!(w.len(at(2026, 11, 30, 0)), WEEK_MS);
        assert_eq!(w.prev_start(at(2026, 11, 30, 0)), at(2026, 11, 23, 0));
        // 1970-01-01 (a Thursday) is in the week of Monday 1969-12-29: clamped at the epoch.
        assert_eq!(w.start(DAY_MS), 0);
        assert_eq!(w.start(at(1970, 1, 5, 1)), at(1970, 1, 5, 0));
        // +09:00: Monday 00:00 local is Sunday 15:00 UTC.
        let w = week(9 * 3_600_000);
        assert_eq!(w.start(at(2026, 11, 29, 15)), at(2026, 11, 29, 15));
        assert_eq!(w.start(at(2026, 11, 29, 14)), at(2026, 11, 22, 15));
        for i in 0..2000u64 {
            let t = at(2026, 1, 1, 0) + i * 7_919_000;
            let s = w.start(t);
            let local_day = (s as i128 + 9 * 3_600_000) / DAY_MS_I;
            // Day 4 since the epoch was a Monday (1970-01-05).
            assert_eq!((local_day - 4).rem_euclid(7), 0);
            assert!(s <= t && t < w.end(s));
        }
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset(b"UTC"), Some(0));
        assert_eq!(parse_offset(b"Z"), Some(0));
        assert_eq!(parse_offset(b"+02:00"), Some(7_200_000));
        assert_eq!(parse_offset(b"-05:30"), Some(-19_800_000));
        assert_eq!(parse_offset(b"+0545"), Some(20_700_000));
        assert_eq!(parse_offset(b"+14"), Some(50_400_000));
        assert_eq!(parse_offset(b"+18:00"), Some(64_800_000));
        for bad in [
            &b"+18:01"[..],
            b"+2",
            b"02:00",
            b"+02:60",
            b"+02:0",
            b"Europe/Paris",
            b"",
            b"+",
            b"+ab:cd",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
    }
}

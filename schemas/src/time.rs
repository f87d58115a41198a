//! Event time: a strict RFC 3339 parser and formatter that keeps the sender's UTC offset.
//!
//! Written here rather than taken from a date crate because it sits on the hot decode path
//! (one call per event) and needs only this one format; property tests check it against
//! round trips and calendar arithmetic.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// A point in event time: microseconds since the Unix epoch (UTC) plus the sender's offset.
///
/// Equality and ordering use the instant and the offset; logic should compare `unix_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventTime {
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub unix_us: i64,
    /// The sender's UTC offset in minutes (e.g. 480 for +08:00); used for local-day KPIs.
    pub offset_min: i16,
}

/// Why a timestamp string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimeError(pub &'static str);

const US_PER_SEC: i64 = 1_000_000;

impl EventTime {
    /// An instant from epoch milliseconds, in UTC.
    pub fn from_unix_ms(ms: i64) -> Self {
        EventTime {
            unix_us: ms * 1000,
            offset_min: 0,
        }
    }

    /// Milliseconds since the epoch (floor).
    pub fn unix_ms(self) -> i64 {
        self.unix_us.div_euclid(1000)
    }

    /// Seconds since the epoch (floor).
    pub fn unix_s(self) -> i64 {
        self.unix_us.div_euclid(US_PER_SEC)
    }

    /// The local calendar day number (days since epoch in the sender's offset).
    pub fn local_day(self) -> i64 {
        (self.unix_us + i64::from(self.offset_min) * 60 * US_PER_SEC)
            .div_euclid(86_400 * US_PER_SEC)
    }

    /// The local hour number (hours since epoch in the sender's offset).
    pub fn local_hour(self) -> i64 {
        (self.unix_us + i64::from(self.offset_min) * 60 * US_PER_SEC).div_euclid(3_600 * US_PER_SEC)
    }

    /// Parses RFC 3339 (`2026-11-11T00:00:01.250+08:00`); an offset (`Z` or `±hh:mm`) is required.
    pub fn parse(s: &str) -> Result<Self, TimeError> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(TimeError(
                "too short for RFC 3339, which is a date, 'T', a time and an offset \
                 (2026-11-11T00:00:01+08:00)",
            ));
        }
        let year = digits(b, 0, 4)?;
        expect(b, 4, b'-')?;
        let month = digits(b, 5, 2)?;
        expect(b, 7, b'-')?;
        let day = digits(b, 8, 2)?;
        if !matches!(b[10], b'T' | b't') {
            return Err(TimeError("expected 'T' between date and time"));
        }
        let hour = digits(b, 11, 2)?;
        expect(b, 13, b':')?;
        let minute = digits(b, 14, 2)?;
        expect(b, 16, b':')?;
        let second = digits(b, 17, 2)?;
        let mut i = 19;
        let mut micros: i64 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    micros = micros * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return Err(TimeError("empty fraction of a second"));
            }
            if n > 9 {
                return Err(TimeError("fraction of a second longer than nanoseconds"));
            }
            for _ in n..6 {
                micros *= 10;
            }
        }
        let offset_min: i64 = match b.get(i) {
            Some(b'Z' | b'z') => {
                i += 1;
                0
            }
            Some(&sign @ (b'+' | b'-')) => {
                if b.len() != i + 6 {
                    return Err(TimeError("offset must be ±hh:mm"));
                }
                let oh = digits(b, i + 1, 2)?;
                expect(b, i + 3, b':')?;
                let om = digits(b, i + 4, 2)?;
                i += 6;
                if oh > 23 || om > 59 {
                    return Err(TimeError("offset out of range"));
                }
                let m = oh * 60 + om;
                if sign == b'-' {
                    -m
                } else {
                    m
                }
            }
            _ => return Err(TimeError("an offset (Z or ±hh:mm) is required")),
        };
        if i != b.len() {
            return Err(TimeError("trailing characters after the offset"));
        }
        if !(1..=12).contains(&month) {
            return Err(TimeError("month out of range"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(TimeError("day out of range for the month"));
        }
        if hour > 23 || minute > 59 {
            return Err(TimeError("time of day out of range"));
        }
        // A leap second (:60) is folded into the last microsecond of the minute's :59.
        let (second, micros) = match second {
            0..=59 => (second, micros),
            60 => (59, 999_999),
            _ => return Err(TimeError("second out of range")),
        };
        let days = days_from_civil(year, month, day);
        let local_s = days * 86_400 + hour * 3600 + minute * 60 + second;
        let utc_s = local_s - offset_min * 60;
        Ok(EventTime {
            unix_us: utc_s * US_PER_SEC + micros,
            offset_min: offset_min as i16,
        })
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<i64, TimeError> {
    let mut v: i64 = 0;
    for k in 0..n {
        let c = *b.get(at + k).ok_or(TimeError("truncated timestamp"))?;
        if !c.is_ascii_digit() {
            return Err(TimeError("expected a digit"));
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), TimeError> {
    if b.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(TimeError("malformed rfc 3339 timestamp"))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Longest text [`EventTime::rfc3339`] writes: `YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM`.
const RFC3339_MAX: usize = 32;

impl EventTime {
    /// The RFC 3339 text of [`fmt::Display`] written into `buf` digit by digit, without the
    /// formatting machinery (it runs for every event and output the service stores: a
    /// profile found `core::fmt` a tenth of the shard's time there). None for a year outside
    /// 0..=9999 or an offset of 100 hours or more, which `Display` writes the slow way.
    fn rfc3339(&self, buf: &mut [u8; RFC3339_MAX]) -> Option<usize> {
        let off = i64::from(self.offset_min);
        let local_us = self.unix_us.checked_add(off * 60 * US_PER_SEC)?;
        let secs = local_us.div_euclid(US_PER_SEC);
        let micros = local_us.rem_euclid(US_PER_SEC);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        if !(0..=9999).contains(&y) || off.abs() / 60 > 99 {
            return None;
        }
        let mut w = Digits { buf, n: 0 };
        w.num(y, 4, b'-');
        w.num(mo, 2, b'-');
        w.num(d, 2, b'T');
        w.num(sod / 3600, 2, b':');
        w.num(sod % 3600 / 60, 2, b':');
        w.num(sod % 60, 2, b'.');
        if micros % 1000 == 0 {
            w.num(micros / 1000, 3, 0);
        } else {
            w.num(micros, 6, 0);
        }
        if off == 0 {
            w.byte(b'Z');
        } else {
            w.byte(if off < 0 { b'-' } else { b'+' });
            w.num(off.abs() / 60, 2, b':');
            w.num(off.abs() % 60, 2, 0);
        }
        Some(w.n)
    }

    /// [`fmt::Display`]'s text the general way, for what [`EventTime::rfc3339`] leaves.
    fn fmt_slow(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = i64::from(self.offset_min);
        // saturating: a time built by hand at the edge of the range prints the last
        // representable instant instead of overflowing (parsing never makes one)
        let local_us = self.unix_us.saturating_add(off * 60 * US_PER_SEC);
        let secs = local_us.div_euclid(US_PER_SEC);
        let micros = local_us.rem_euclid(US_PER_SEC);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            y,
            mo,
            d,
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )?;
        if micros % 1000 == 0 {
            write!(f, ".{:03}", micros / 1000)?;
        } else {
            write!(f, ".{:06}", micros)?;
        }
        if off == 0 {
            f.write_str("Z")
        } else {
            let sign = if off < 0 { '-' } else { '+' };
            write!(f, "{}{:02}:{:02}", sign, off.abs() / 60, off.abs() % 60)
        }
    }
}

/// A cursor writing fixed-width decimal fields into a buffer.
struct Digits<'a> {
    buf: &'a mut [u8; RFC3339_MAX],
    n: usize,
}

impl Digits<'_> {
    fn byte(&mut self, c: u8) {
        self.buf[self.n] = c;
        self.n += 1;
    }

    /// `v` (0 ≤ v < 10^width) in `width` digits, then `after` unless it is 0.
    fn num(&mut self, v: i64, width: u32, after: u8) {
        for i in (0..width).rev() {
            self.byte(b'0' + (v / 10i64.pow(i) % 10) as u8);
        }
        if after != 0 {
            self.byte(after);
        }
    }
}

impl fmt::Display for EventTime {
    /// RFC 3339 in the sender's offset, with milliseconds (microseconds when present).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; RFC3339_MAX];
        match self.rfc3339(&mut buf) {
            Some(n) => f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?),
            None => self.fmt_slow(f),
        }
    }
}

impl Serialize for EventTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0; RFC3339_MAX];
        match self.rfc3339(&mut buf) {
            Some(n) => {
                s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?)
            }
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Cow<'de, str> = Deserialize::deserialize(d)?;
        EventTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for EventTime {
    fn schema_name() -> Cow<'static, str> {
        "EventTime".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 event time with an offset, e.g. 2026-11-11T00:00:01.250+08:00",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times_at_the_edges_of_the_range_print_without_overflowing() {
        for (us, off) in [
            (i64::MAX, 1),
            (i64::MIN, -1),
            (i64::MAX, i16::MAX),
            (i64::MIN, i16::MIN),
        ] {
            let t = EventTime {
                unix_us: us,
                offset_min: off,
            };
            assert!(!t.to_string().is_empty());
        }
    }

    #[test]
    fn parses_the_contract_example() {
        let t = EventTime::parse("2026-11-11T20:15:03.120+08:00").unwrap();
        assert_eq!(t.offset_min, 480);
        // 2026-11-11T12:15:03.120Z
        assert_eq!(t.unix_ms(), 1_794_399_303_120);
        assert_eq!(t.to_string(), "2026-11-11T20:15:03.120+08:00");
    }

    #[test]
    fn utc_and_negative_offsets() {
        let a = EventTime::parse("2026-01-01T00:00:00Z").unwrap();
        let b = EventTime::parse("2025-12-31T19:00:00-05:00").unwrap();
        assert_eq!(a.unix_us, b.unix_us);
        assert_eq!(b.to_string(), "2025-12-31T19:00:00.000-05:00");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "2026-11-11T20:15:03",
            "2026-11-11 20:15:03Z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-11T24:00:00Z",
            "2026-11-11T20:15:03.+08:00",
            "2026-11-11T20:15:03+8:00",
            "2026-11-11T20:15:03Zjunk",
            "2026-11-11T20:15:03+24:00",
            "yesterday at noon",
            "",
        ] {
            assert!(EventTime::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(EventTime::parse("2024-02-29T00:00:00Z").is_ok());
        assert!(EventTime::parse("2023-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn local_day_uses_sender_offset() {
        // 23:30 local in Shanghai is 15:30 UTC the same day; 00:30 local is the previous UTC day.
        let late = EventTime::parse("2026-11-11T23:30:00+08:00").unwrap();
        let early = EventTime::parse("2026-11-12T00:30:00+08:00").unwrap();
        assert_eq!(early.local_day() - late.local_day(), 1);
    }

    /// The general formatter, to hold the fast one against.
    struct Slow(EventTime);

    impl fmt::Display for Slow {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt_slow(f)
        }
    }

    fn any_instant() -> impl Strategy<Value = i64> {
        prop_oneof![
            // this century, where events are
            1_500_000_000_000_000i64..2_500_000_000_000_000,
            // years before 0 and after 9999 too, which take the general path
            -80_000_000_000_000_000i64..300_000_000_000_000_000,
        ]
    }

    proptest! {
        /// Display and serde write the text of the general formatter, byte for byte.
        #[test]
        fn the_fast_text_is_the_general_one(
            us in any_instant(), off in -6_100i16..6_100, whole_ms in any::<bool>(),
        ) {
            let us = if whole_ms { us - us.rem_euclid(1000) } else { us };
            let t = EventTime { unix_us: us, offset_min: off };
            prop_assert_eq!(t.to_string(), Slow(t).to_string());
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", Slow(t)));
        }

        #[test]
        fn display_then_parse_round_trips(us in -2_000_000_000_000_000i64..8_000_000_000_000_000i64,
                                          off in -1439i16..=1439) {
            let t = EventTime { unix_us: us, offset_min: off };
            let back = EventTime::parse(&t.to_string()).unwrap();
            prop_assert_eq!(back, t);
        }

        #[test]
        fn civil_conversion_inverts(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn never_panics_on_any_string(s in ".{0,40}") {
            let _ = EventTime::parse(&s);
        }
    }
}

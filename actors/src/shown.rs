//! How the views (HTTP answers and `replay`'s state files) show times: an instant as
//! RFC 3339 in UTC (`2026-11-11T12:00:00.000Z`), a local day as its date (`2026-11-11`) and
//! a local hour as its date and hour (`2026-11-11T20:00`), so no view carries a bare number of
//! microseconds, days or hours. Days and hours are the sender's local ones, so they carry no
//! offset. Used with `#[serde(with = ...)]`; each reads back what it writes.

use omnistream_schemas::EventTime;
use serde::{de::Error, Deserialize, Deserializer, Serializer};

const US_PER_DAY: i64 = 86_400_000_000;
const US_PER_HOUR: i64 = 3_600_000_000;

fn utc(unix_us: i64) -> EventTime {
    EventTime {
        unix_us,
        offset_min: 0,
    }
}

fn parse<'de, D: Deserializer<'de>>(d: D, suffix: &str) -> Result<i64, D::Error> {
    let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
    EventTime::parse(&format!("{s}{suffix}"))
        .map(|t| t.unix_us)
        .map_err(D::Error::custom)
}

/// An instant in µs since the epoch, as RFC 3339 in UTC.
pub mod instant {
    use super::*;

    /// Writes `us` as RFC 3339 in UTC.
    pub fn serialize<S: Serializer>(us: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&utc(*us))
    }

    /// Reads RFC 3339 (any offset) into µs.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        parse(d, "")
    }
}

/// An optional instant in µs since the epoch, as RFC 3339 in UTC or null.
pub mod instant_opt {
    use super::*;

    /// Writes `us` as RFC 3339 in UTC, or null.
    pub fn serialize<S: Serializer>(us: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match us {
            Some(us) => s.collect_str(&utc(*us)),
            None => s.serialize_none(),
        }
    }
}

/// Instants in µs since the epoch, as a list of RFC 3339 in UTC.
pub mod instants {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Writes each as RFC 3339 in UTC.
    pub fn serialize<S: Serializer>(us: &[i64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(us.len()))?;
        for u in us {
            seq.serialize_element(&utc(*u).to_string())?;
        }
        seq.end()
    }

    /// Reads a list of RFC 3339 (any offset) into µs.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                EventTime::parse(s)
                    .map(|t| t.unix_us)
                    .map_err(D::Error::custom)
            })
            .collect()
    }
}

/// A span of local time numbered from the epoch (days, hours), shown as the start of the
/// span in RFC 3339 cut to `len` characters; read back by completing the cut with `rest`.
struct Span {
    us: i64,
    len: usize,
    rest: &'static str,
}

impl Span {
    fn write<S: Serializer>(&self, n: i64, s: S) -> Result<S::Ok, S::Error> {
        let t = utc(n.saturating_mul(self.us)).to_string();
        s.serialize_str(t.get(..self.len).unwrap_or(&t))
    }

    fn read<'de, D: Deserializer<'de>>(&self, d: D) -> Result<i64, D::Error> {
        parse(d, self.rest).map(|us| us.div_euclid(self.us))
    }
}

const DAY: Span = Span {
    us: US_PER_DAY,
    len: 10,
    rest: "T00:00:00Z",
};

const HOUR: Span = Span {
    us: US_PER_HOUR,
    len: 16,
    rest: ":00Z",
};

/// A local day number (days since 1970-01-01), as `YYYY-MM-DD`.
pub mod day {
    use super::*;

    /// Writes day `n` as its date.
    pub fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        DAY.write(*n, s)
    }

    /// Reads a date into its day number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        DAY.read(d)
    }
}

/// A local hour number (hours since 1970-01-01T00:00), as `YYYY-MM-DDTHH:00`.
pub mod hour {
    use super::*;

    /// Writes hour `n` as its date and hour.
    pub fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        HOUR.write(*n, s)
    }

    /// Reads a date and hour into its hour number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        HOUR.read(d)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Times {
        #[serde(with = "super::instant")]
        at: i64,
        #[serde(with = "super::day")]
        day: i64,
        #[serde(with = "super::hour")]
        hour: i64,
    }

    #[test]
    fn times_show_as_text_and_read_back() {
        // 2026-11-11T12:00:00.250Z; local day 20768 and hour 498452 (2026-11-11T20:00)
        let t = Times {
            at: 1_794_398_400_250_000,
            day: 20_768,
            hour: 498_452,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"at":"2026-11-11T12:00:00.250Z","day":"2026-11-11","hour":"2026-11-11T20:00"}"#
        );
        assert_eq!(serde_json::from_str::<Times>(&json).unwrap(), t);
        // days before the epoch, and an instant given with another offset
        let back: Times = serde_json::from_str(
            r#"{"at":"2026-11-11T20:00:00.250+08:00","day":"1969-12-31","hour":"1969-12-31T23:00"}"#,
        )
        .unwrap();
        assert_eq!(
            (back.at, back.day, back.hour),
            (1_794_398_400_250_000, -1, -1)
        );
        assert!(serde_json::from_str::<Times>(r#"{"at":"soon","day":"x","hour":"y"}"#).is_err());
    }
}

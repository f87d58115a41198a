//! Stable reason codes for rejected events, and the problem list a rejection carries.

use serde::Serialize;
use std::fmt;

/// Why an event (or one of its fields) was refused; the string form is a stable API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The raw event is larger than the 64 KiB limit; it was not parsed.
    TooLarge,
    /// The bytes are not valid UTF-8.
    BadUtf8,
    /// The bytes are not JSON (syntax error).
    BadJson,
    /// The JSON ends before the value is complete.
    Truncated,
    /// Nesting deeper than the decoder allows.
    TooDeep,
    /// The event is JSON but not an object.
    NotAnObject,
    /// The same field appears twice in one object.
    DuplicateField,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type (string where a number is due, a fraction for an integer).
    WrongType,
    /// `type` names no known event type.
    UnknownType,
    /// `id` is not a UUID.
    BadUuid,
    /// `ts` is not RFC 3339 with an offset, or not a real date.
    BadTimestamp,
    /// A value is not one of the values the field allows.
    BadValue,
    /// A string is empty where a value is required.
    EmptyString,
    /// A string is longer than the field allows.
    TooLong,
    /// A quantity is below zero.
    NegativeQty,
    /// A quantity is zero where it must be positive.
    ZeroQty,
    /// An amount of money or points is below zero (or zero where it must be positive).
    NegativeAmount,
    /// An order has more than 200 lines.
    TooManyLines,
    /// An order that must have lines has none.
    NoLines,
    /// A number lies outside the range the field allows (or does not fit in 64 bits).
    OutOfRange,
    /// `ip` is not an IPv4 or IPv6 address.
    BadIp,
    /// `geo` has a latitude or longitude outside the globe.
    BadGeo,
    /// `member` has no identity (or fewer than an `identify` event needs).
    NoIdentity,
    /// A phone identity has characters a phone number cannot have.
    BadPhone,
    /// `ts` is further ahead of the receiving server's clock than the allowed skew (checked at
    /// live ingest, not by the decoder: the decoder has no clock).
    FutureTimestamp,
    /// `ts` is further before the watermark (the latest event time seen, less the watermark
    /// lag) than the lateness window allows (`max-lateness-s`).
    TooLate,
}

impl Reason {
    /// The stable snake_case code, as used in outputs, metrics labels and the CLI.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::BadUtf8 => "bad_utf8",
            Reason::BadJson => "bad_json",
            Reason::Truncated => "truncated",
            Reason::TooDeep => "too_deep",
            Reason::NotAnObject => "not_an_object",
            Reason::DuplicateField => "duplicate_field",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownType => "unknown_type",
            Reason::BadUuid => "bad_uuid",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::BadValue => "bad_value",
            Reason::EmptyString => "empty_string",
            Reason::TooLong => "too_long",
            Reason::NegativeQty => "negative_qty",
            Reason::ZeroQty => "zero_qty",
            Reason::NegativeAmount => "negative_amount",
            Reason::TooManyLines => "too_many_lines",
            Reason::NoLines => "no_lines",
            Reason::OutOfRange => "out_of_range",
            Reason::BadIp => "bad_ip",
            Reason::BadGeo => "bad_geo",
            Reason::NoIdentity => "no_identity",
            Reason::BadPhone => "bad_phone",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::TooLate => "too_late",
        }
    }

    /// Every reason, in a fixed order (for summaries and documentation).
    pub const ALL: [Reason; 27] = [
        Reason::TooLarge,
        Reason::BadUtf8,
        Reason::BadJson,
        Reason::Truncated,
        Reason::TooDeep,
        Reason::NotAnObject,
        Reason::DuplicateField,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownType,
        Reason::BadUuid,
        Reason::BadTimestamp,
        Reason::BadValue,
        Reason::EmptyString,
        Reason::TooLong,
        Reason::NegativeQty,
        Reason::ZeroQty,
        Reason::NegativeAmount,
        Reason::TooManyLines,
        Reason::NoLines,
        Reason::OutOfRange,
        Reason::BadIp,
        Reason::BadGeo,
        Reason::NoIdentity,
        Reason::BadPhone,
        Reason::FutureTimestamp,
        Reason::TooLate,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One thing wrong with an event: the reason, the JSON path of the field, and a human detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable reason code.
    pub reason: Reason,
    /// Path of the offending field, e.g. `lines[3].qty`; empty for the whole event.
    pub path: String,
    /// What exactly is wrong, for a person reading the dead-letter output.
    pub detail: String,
}

impl Problem {
    /// A problem at `path` with a detail message.
    pub fn new(reason: Reason, path: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem {
            reason,
            path: path.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.reason, self.detail)
        } else {
            write!(f, "{} at {}: {}", self.reason, self.path, self.detail)
        }
    }
}

/// A refused event: every problem found, never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("event rejected: {}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct Rejection {
    /// The event's id when it could be read (useful to correlate dead letters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Every problem found, in field order.
    pub problems: Vec<Problem>,
    /// The event's type when it names one (for metrics by type; not part of the answer).
    #[serde(skip)]
    pub kind: Option<crate::event::EventKind>,
}

impl Rejection {
    /// A rejection with a single problem about the whole event.
    pub fn whole(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            kind: None,
            id: None,
            problems: vec![Problem::new(reason, "", detail)],
        }
    }

    /// The first (primary) reason, used where one label is needed (metrics).
    pub fn primary(&self) -> Reason {
        self.problems
            .first()
            .map(|p| p.reason)
            .unwrap_or(Reason::BadJson)
    }

    /// Whether any problem has this reason.
    pub fn has(&self, reason: Reason) -> bool {
        self.problems.iter().any(|p| p.reason == reason)
    }
}

//! The omnistream event contract (shared/EVENTS.md) as code: typed events, decoding from JSON
//! bytes, validation with stable reason codes and field paths, keyed hashing of personal
//! identity values, and the JSON Schema generated from the types.

pub mod decode;
pub mod event;
pub mod pii;
pub mod reason;
pub mod time;

pub use decode::{
    control_char, lint, near_channel, plausible_visit, unlikely_phone, Decoder, MAX_EVENT_BYTES,
    MAX_VISIT_S,
};
pub use event::*;
pub use pii::Pii;
pub use reason::{Problem, Reason, Rejection};
pub use time::EventTime;

/// The JSON Schema (draft 2020-12) of one event, generated from [`Event`].
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Event);
    schema.to_value()
}

/// The JSON Schema as the pretty-printed text kept in `schemas/json/event.schema.json`.
pub fn json_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    s.push('\n');
    s
}

//! The load tool of omnistream (issue #9): a seeded, deterministic workload generator with
//! fraud ground truth ([`gen`]), its scenario files ([`scenario`]), the scorer of fraud
//! decisions against the labels ([`score`]) and the in-process benchmark ([`bench`]) and the HTTP driver
//! ([`http`]), and the paced writer that feeds a pipe ([`paced`]).
//!
//! Errors use anyhow: this is a tool, and every error ends as a message to the person who ran
//! it (STYLE.md).

pub mod bench;
#[cfg(feature = "chart")]
pub mod chart;
pub mod gen;
pub mod http;
pub mod invariants;
pub mod paced;
pub mod rng;
pub mod scenario;
pub mod score;

pub use gen::{generate, generated_lines, lines_of, Label, Summary};
pub use scenario::Scenario;

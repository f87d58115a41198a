//! The omnistream service: command-line entry points, configuration and wiring. The binary in
//! `main.rs` only parses arguments and calls into this library, so tests drive the same code.

pub mod board;
pub mod cli;
pub mod config;
pub mod cql;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod shard;
pub mod store;

//! Sources and sinks behind small traits. Filled by the runtime issue (#5: files, HTTP ingest,
//! in-memory) and the Fluvio issue (#7); today it holds the JSON-lines reader the CLI uses.

pub mod jsonl;

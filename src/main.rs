//! The `omnistream` command: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use omnistream::cli;
use std::path::PathBuf;
use std::process::ExitCode;

/// omnistream: a real-time, actor-based stream processor for omnichannel consumer brands.
#[derive(Parser)]
#[command(name = "omnistream", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check JSON-lines feeds against the event contract: a summary per reason code; exit 1
    /// when any line is rejected.
    Validate {
        /// Files of JSON lines to check; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write every rejected line with its reasons to this file (JSON lines; personal
        /// values in the copied line are hashed).
        #[arg(long, value_name = "OUT")]
        rejects: Option<PathBuf>,
        /// Print the summary as one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the event contract.
    Schema,
    /// Process JSON-lines files to the end through the entity logic; write final states and
    /// every output as JSON lines into a directory.
    Replay {
        /// Input files of events (JSON lines); `-` reads standard input.
        #[arg(long = "input", short = 'i', required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// Directory for outputs.jsonl, ledger.jsonl, dead-letter.jsonl, members.jsonl,
        /// skus.jsonl, dealers.jsonl, stores.jsonl and state.json.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Business rules (TOML); defaults when not given.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// After the input, move event time to this instant (RFC 3339) so timers fire
        /// (dormant tags, points expiry).
        #[arg(long)]
        until: Option<String>,
    },
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let result = match args.command {
        Command::Validate {
            files,
            rejects,
            json,
        } => cli::validate::run(&files, rejects.as_deref(), json),
        Command::Replay {
            inputs,
            out,
            rules,
            until,
        } => cli::replay::run(&inputs, &out, rules.as_deref(), until.as_deref()).map(|s| {
            print!("{}", cli::replay::render(&s, &out));
            ExitCode::SUCCESS
        }),
        Command::Schema => {
            print!("{}", omnistream_schemas::json_schema_text());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("omnistream: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

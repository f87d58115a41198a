//! `loadtest`: generate a scenario's events and labels, score fraud decisions against the
//! labels, and run the in-process benchmark.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use omnistream_loadtest::{bench, generate, score, Scenario};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::time::Instant;

/// omnistream's load generator and benchmark harness.
#[derive(Parser)]
#[command(name = "loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a scenario's events.jsonl and labels.jsonl (ground truth per scan) into a folder.
    Generate {
        /// A built-in scenario (smoke, default, double11, fraud-heavy) or a TOML file.
        #[arg(long)]
        scenario: String,
        /// The output folder (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a scenario's events as JSON lines to standard output, at a steady rate if asked:
    /// the feed for `omnistream produce -`, which puts them on the Fluvio topics (or any
    /// other pipe). A summary goes to standard error.
    Stream {
        /// A built-in scenario (smoke, default, double11, fraud-heavy) or a TOML file.
        #[arg(long)]
        scenario: String,
        /// Events a second (default: as fast as the pipe takes them).
        #[arg(long)]
        rate: Option<f64>,
        /// Generate this many events instead of the scenario's count.
        #[arg(long)]
        events: Option<u64>,
        /// Also write the labels (ground truth per scan) to this file, for `score`.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// Score fraud decisions (JSON lines with "output":"decision") against labels.
    Score {
        /// Outputs of a replay, e.g. out/outputs.jsonl; lines that are not decisions are skipped.
        #[arg(long)]
        decisions: PathBuf,
        /// labels.jsonl from `generate`.
        #[arg(long)]
        labels: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Generate in memory, then time the decode ceiling against the deterministic engine.
    Bench {
        /// A built-in scenario or a TOML file.
        #[arg(long)]
        scenario: String,
        /// Timed runs per phase (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also time the sharded engine: SHARDSxEVENTS (shards, events per epoch), e.g.
        /// `--sharded 2x256`; repeat for several.
        #[arg(long, value_parser = parse_sharded)]
        sharded: Vec<(usize, usize)>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Drive a running service over HTTP: its maximum rate (closed loop), then latency
    /// percentiles at a fraction of that rate (open loop, no coordinated omission).
    Http {
        /// Address of the service.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// A built-in scenario or a TOML file (generated in memory).
        #[arg(long)]
        scenario: String,
        /// Events per request: 1 sends scans to /v1/scan and the rest to /v1/events one by
        /// one; more sends batches of JSON lines to /v1/events.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Keep-alive connections (one request in flight on each).
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Longest the closed-loop phase runs, seconds.
        #[arg(long, default_value_t = 20.0)]
        max_secs: f64,
        /// Longest the paced phase runs, seconds.
        #[arg(long, default_value_t = 30.0)]
        paced_secs: f64,
        /// Paced rate as a fraction of the maximum rate.
        #[arg(long, default_value_t = 0.5)]
        fraction: f64,
        /// Events to generate instead of the scenario's count (both phases draw on them; when
        /// the closed loop uses them all, its figures are printed and the run exits 1 for want
        /// of a paced phase).
        #[arg(long)]
        events: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Speak HTTPS (a service with `[http] tls`), trusting the certificates of this PEM
        /// file; the service's certificate must carry the host of --addr.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
    /// Throughput and latency against offered load: the closed loop's maximum, then an open
    /// loop at each fraction of it; a table, JSON, and (built with `--features chart`) a PNG.
    Sweep {
        /// Address of the service.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// A built-in scenario or a TOML file (generated in memory).
        #[arg(long)]
        scenario: String,
        /// Events per request (as for `http`).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Keep-alive connections: enough that the open loop can offer more than the maximum.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Longest the closed-loop phase runs, seconds.
        #[arg(long, default_value_t = 10.0)]
        max_secs: f64,
        /// Each open-loop phase, seconds.
        #[arg(long, default_value_t = 8.0)]
        secs: f64,
        /// Offered rates as fractions of the closed loop's maximum, comma separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0.1,0.25,0.5,0.75,0.9,1.0,1.2,1.5"
        )]
        fractions: Vec<f64>,
        /// Write the sweep as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the chart to this PNG (needs a build with `--features chart`).
        #[arg(long)]
        chart: Option<PathBuf>,
        /// The chart's title.
        #[arg(
            long,
            default_value = "omnistream over HTTP: answered rate and latency against offered load"
        )]
        title: String,
        /// A TrueType font for the chart's text.
        #[arg(long)]
        font: Option<PathBuf>,
        /// Speak HTTPS, trusting the certificates of this PEM file (as for `http`).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    // its output is read by other programs (`loadtest generate --scenario default | head`):
    // when the reader goes, it ends quietly as Unix filters do, instead of panicking on the
    // failed write (Rust ignores SIGPIPE)
    // SAFETY: restores a default disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match Cli::parse().cmd {
        Cmd::Generate {
            scenario,
            out,
            json,
        } => cmd_generate(&scenario, &out, json),
        Cmd::Stream {
            scenario,
            rate,
            events,
            labels,
        } => cmd_stream(&scenario, rate, events, labels.as_ref()),
        Cmd::Score {
            decisions,
            labels,
            json,
        } => {
            let d = File::open(&decisions)
                .with_context(|| format!("cannot open {}", decisions.display()))?;
            let l =
                File::open(&labels).with_context(|| format!("cannot open {}", labels.display()))?;
            let report = score::score(BufReader::new(d), BufReader::new(l))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.json())?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Cmd::Bench {
            scenario,
            runs,
            sharded,
            json,
        } => {
            let sc = Scenario::load(&scenario)?;
            let report = bench::run(&sc, runs, &sharded, &mut |m| eprintln!("bench: {m}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Cmd::Sweep {
            addr,
            scenario,
            batch,
            connections,
            max_secs,
            secs,
            fractions,
            json,
            chart,
            title,
            font,
            tls_ca,
        } => {
            if let Some(ca) = &tls_ca {
                omnistream_loadtest::http::use_https(ca)?;
            }
            let opts = omnistream_loadtest::http::Options {
                batch,
                connections,
                max_secs,
                paced_secs: secs,
                fraction: 1.0,
            };
            cmd_sweep(
                &addr,
                &scenario,
                &opts,
                &fractions,
                json.as_ref(),
                chart.as_ref(),
                &title,
                font.as_ref(),
            )
        }
        Cmd::Http {
            addr,
            scenario,
            batch,
            connections,
            max_secs,
            paced_secs,
            fraction,
            events: count,
            json,
            tls_ca,
        } => {
            if let Some(ca) = &tls_ca {
                omnistream_loadtest::http::use_https(ca)?;
            }
            let mut sc = Scenario::load(&scenario)?;
            if let Some(n) = count {
                sc.events = n;
            }
            let mut events = Vec::new();
            generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {})?;
            let opts = omnistream_loadtest::http::Options {
                batch,
                connections,
                max_secs,
                paced_secs,
                fraction,
            };
            let report = omnistream_loadtest::http::run(&addr, &events, &opts, &mut |m| {
                eprintln!("http: {m}")
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            // the run is incomplete: a script waiting for the paced figures must see that, as
            // it did when the tool stopped without a report
            match report.paced_skipped {
                Some(why) => anyhow::bail!(why),
                None => Ok(()),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn cmd_sweep(
    addr: &str,
    scenario: &str,
    opts: &omnistream_loadtest::http::Options,
    fractions: &[f64],
    json: Option<&PathBuf>,
    chart: Option<&PathBuf>,
    title: &str,
    font: Option<&PathBuf>,
) -> Result<()> {
    if chart.is_some() && !cfg!(feature = "chart") {
        anyhow::bail!(
            "--chart needs a loadtest built with the chart feature: \
             cargo build --release -p omnistream-loadtest --features chart"
        );
    }
    let sc = Scenario::load(scenario)?;
    let mut events = Vec::new();
    generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {})?;
    let sweep = omnistream_loadtest::http::sweep(addr, &events, opts, fractions, &mut |m| {
        eprintln!("sweep: {m}")
    })?;
    print!("{}", sweep.table());
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(&sweep)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    #[cfg(feature = "chart")]
    if let Some(p) = chart {
        let font = font
            .cloned()
            .unwrap_or_else(|| omnistream_loadtest::chart::DEFAULT_FONT.into());
        omnistream_loadtest::chart::draw(&sweep, p, title, &font)?;
        eprintln!("sweep: chart written to {}", p.display());
    }
    #[cfg(not(feature = "chart"))]
    let _ = (title, font);
    Ok(())
}

fn cmd_stream(
    scenario: &str,
    rate: Option<f64>,
    events: Option<u64>,
    labels: Option<&PathBuf>,
) -> Result<()> {
    if let Some(r) = rate {
        anyhow::ensure!(
            r.is_finite() && (0.001..=1e9).contains(&r),
            "--rate {r}: must be a positive number of events a second, from 0.001 to 1e9"
        );
    }
    let mut sc = Scenario::load(scenario)?;
    if let Some(n) = events {
        sc.events = n;
    }
    let mut label_out: Box<dyn std::io::Write> = match labels {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::sink()),
    };
    let stdout = std::io::stdout().lock();
    let mut out = omnistream_loadtest::paced::Paced::new(BufWriter::new(stdout), rate);
    let t = Instant::now();
    let written = generate(&sc, &mut out, &mut label_out, &mut |_| {})
        .and_then(|summary| std::io::Write::flush(&mut out).map(|()| summary));
    let lines = out.lines();
    let summary = match written {
        Ok(s) => s,
        // `| head` and a consumer that stopped close the pipe: not an error of the generator's
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            eprintln!("stream: the reader closed the pipe after about {lines} events");
            return Ok(());
        }
        Err(e) => return Err(e).context("writing events to standard output"),
    };
    label_out.flush().context("writing labels")?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "stream: {lines} events ({} scans, {} labelled fraud) in {secs:.1} s, {:.0}/s",
        summary.by_type.get("scan").copied().unwrap_or(0),
        summary
            .scans_by_pattern
            .values()
            .map(|(f, _)| f)
            .sum::<u64>(),
        lines as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn cmd_generate(scenario: &str, out: &PathBuf, json: bool) -> Result<()> {
    let sc = Scenario::load(scenario)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let open = |name: &str| -> Result<BufWriter<File>> {
        let p = out.join(name);
        let f = File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(BufWriter::with_capacity(1 << 20, f))
    };
    let mut events = open("events.jsonl")?;
    let mut labels = open("labels.jsonl")?;
    // a bar only where it helps: long runs on a terminal
    let bar = if sc.events >= 100_000 {
        ProgressBar::new(sc.events)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t = Instant::now();
    let summary = generate(&sc, &mut events, &mut labels, &mut |n| bar.set_position(n))
        .context("writing events")?;
    bar.finish_and_clear();
    // every event went to the reference data the sizes make first: no member did anything
    let activity: u64 = ["scan", "click", "order", "visit"]
        .iter()
        .filter_map(|t| summary.by_type.get(t))
        .sum();
    if activity == 0 {
        anyhow::bail!(
            "{} events written, all of them reference data (dealers, code batches, stock for \
             each store's SKUs), no scan, click, order or visit: raise `events` or shrink \
             [sizes] (stores, store_skus, dealers, batches_per_dealer)",
            summary.events
        );
    }
    let secs = t.elapsed().as_secs_f64();
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let (fraud, legit) = summary
        .scans_by_pattern
        .values()
        .fold((0, 0), |(f, l), (a, b)| (f + a, l + b));
    println!(
        "{}: {} events ({:.1} MB) in {:.2} s into {}",
        if sc.description.is_empty() {
            scenario
        } else {
            &sc.description
        },
        summary.events,
        summary.bytes as f64 / 1e6,
        secs,
        out.display()
    );
    println!(
        "event time {} .. {}, {} late, {} fresh fraud accounts, {} history events",
        omnistream_loadtest::gen::format_ts(summary.first_ms),
        omnistream_loadtest::gen::format_ts(summary.last_ms),
        summary.late,
        summary.fresh_accounts,
        summary.history
    );
    let types: Vec<String> = summary
        .by_type
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("by type: {}", types.join(" "));
    println!(
        "scans: {} fraud, {} legit ({:.1}% fraud)",
        fraud,
        legit,
        100.0 * fraud as f64 / (fraud + legit).max(1) as f64
    );
    for (p, (f, l)) in &summary.scans_by_pattern {
        println!("  {p:<18} fraud {f:>8}  legit {l:>8}");
    }
    Ok(())
}

/// `SHARDSxEVENTS`, both at least 1.
fn parse_sharded(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once('x')
        .ok_or_else(|| format!("`{s}`: expected SHARDSxEVENTS, e.g. 2x256"))?;
    let num = |t: &str| match t.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}`: `{t}` is not a number above 0")),
    };
    Ok((num(a)?, num(b)?))
}

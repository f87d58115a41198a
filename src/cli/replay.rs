//! `omnistream replay`: processes JSON-lines files to the end through the deterministic engine
//! and writes the final states and every output as JSON lines. A backfill and what-if tool:
//! replay the same input with changed rules and compare the outputs.

use crate::store::{Batch, CheckpointWrite, Store};
use anyhow::Context;
use omnistream_actors::cold::Kind;
use omnistream_actors::engine::{Applied, Emitted, Engine, State};
use omnistream_actors::inorder::Spread;
use omnistream_actors::sharded::Sharded;
use omnistream_actors::{Output, Rules};
use omnistream_schemas::Decoder;
use omnistream_streams::jsonl::JsonLines;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// How often a long replay says how far it got (on standard error).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplaySummary {
    /// Lines read.
    pub lines: u64,
    /// Events processed.
    pub events: u64,
    /// Lines rejected (in `dead-letter.jsonl`).
    pub rejected: u64,
    /// Events dropped as repeats of an earlier id.
    pub duplicates: u64,
    /// Outputs per stream.
    pub outputs: BTreeMap<&'static str, u64>,
    /// Members (not counting aliases).
    pub members: u64,
    /// Entities passivated to the spill store (`--resident`).
    pub passivated: u64,
    /// Peak resident memory (kB, VmHWM) when the input was processed, before the final
    /// states were written (streamed a chunk of entities at a time; with `--resident`,
    /// passivated ones are read back one by one).
    pub peak_rss_kb: Option<u64>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Of which writing the final states and their views, after the input was processed.
    pub state_seconds: f64,
    /// Events refused as older than the lateness window (`too_late`), and whether the inputs
    /// were read as several files one after another (not `--sort-by-time`): files of one
    /// channel each then want sorting into one timeline.
    pub late: (u64, bool),
    /// Campaigns the rules configure that no scan named, and campaigns scans named that the
    /// rules do not configure (run on `default-campaign`): a misspelt id on either side.
    pub campaigns_apart: (Vec<String>, Vec<String>),
}

/// Loads rules from TOML files (none: the defaults), refusing unknown keys and bad values:
/// each is the `[rules]` section's tables at top level, or a whole configuration file (one
/// with a `[rules]` table, as `check-config` prints it), whose rules are taken. Several are
/// laid one over the other in order, key by key (a list such as `[[tags]]` replaces the
/// whole list), so a what-if file of a few keys given after the service's configuration
/// changes only those. Campaigns then take what they do not set from the default campaign,
/// as in the configuration.
pub fn load_rules(paths: &[PathBuf]) -> anyhow::Result<Rules> {
    let mut merged = toml::Value::Table(toml::Table::new());
    for p in paths {
        crate::config::merge_toml(&mut merged, toml::Value::Table(rules_table(p)?));
    }
    let toml::Value::Table(mut table) = merged else {
        unreachable!("a table merged with tables is a table");
    };
    let named = || {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    crate::config::inherit_default_campaign(&mut table);
    let rules = <Rules as serde::Deserialize>::deserialize(table)
        .map_err(|e| anyhow::anyhow!("rules {}: {e}", named()))?;
    rules
        .check()
        .map_err(|(key, why)| anyhow::anyhow!("rules {}: {key}: {why}", named()))?;
    for w in rules.warnings() {
        super::note(format_args!("omnistream: warning: rules {}: {w}", named()));
    }
    Ok(rules)
}

/// The rules table of one `--rules` file as written (its keys and types checked alone first,
/// so a mistake is reported against its file): a configuration file's `[rules]`, or the
/// file itself.
fn rules_table(p: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading rules {}", p.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("rules {}: {e}", p.display()))?;
    // a configuration file: its [rules] only (the rest, access tokens from the environment
    // among it, is the service's business, not a replay's)
    let table = if table.contains_key("rules") {
        match table.remove("rules") {
            Some(toml::Value::Table(t)) => t,
            Some(_) => anyhow::bail!(
                "rules {} (a configuration file): [rules] is not a table",
                p.display()
            ),
            None => toml::Table::new(),
        }
    } else {
        table
    };
    // its keys and types alone (a typo is reported against its file); its values are checked
    // once the files are laid together, since a what-if's may hold only with the base's
    let mut alone = table.clone();
    crate::config::inherit_default_campaign(&mut alone);
    <Rules as serde::Deserialize>::deserialize(alone)
        .map_err(|e| anyhow::anyhow!("rules {}: {e}", p.display()))?;
    Ok(table)
}

fn writer(dir: &Path, name: &str) -> anyhow::Result<BufWriter<File>> {
    let p = dir.join(name);
    Ok(BufWriter::new(
        File::create(&p).with_context(|| format!("creating {}", p.display()))?,
    ))
}

fn line<T: Serialize>(w: &mut impl Write, v: &T) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *w, v)?;
    w.write_all(b"\n")?;
    Ok(())
}

/// How `replay` runs the entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    /// Shards (threads), each owning the keys that hash to it.
    pub shards: usize,
    /// Events per epoch (see `omnistream_actors::sharded`): the shards run this many events'
    /// cascades together. 1 with one shard is the single engine.
    pub epoch: usize,
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel {
            shards: 1,
            epoch: 1,
        }
    }
}

/// Where an event waiting for its epoch came from (for the dead letters).
struct Source {
    file: Arc<str>,
    line: u64,
    raw: Vec<u8>,
}

/// The sharded engine and the epoch being gathered: its events, and where each came from.
struct Epochs {
    sharded: Sharded,
    size: usize,
    events: Vec<omnistream_schemas::Event>,
    sources: Vec<Source>,
}

impl Epochs {
    /// Runs the gathered epoch; returns the events refused as late: id, source and why.
    fn flush(
        &mut self,
        summary: &mut ReplaySummary,
        buf: &mut Vec<Emitted>,
    ) -> Vec<(String, Source, omnistream_schemas::Problem)> {
        let results = self.sharded.apply_epoch(&self.events, buf);
        let mut late = Vec::new();
        for ((ev, source), (applied, _)) in self
            .events
            .drain(..)
            .zip(self.sources.drain(..))
            .zip(results)
        {
            match applied {
                Applied::Done(_) => summary.events += 1,
                Applied::Duplicate => summary.duplicates += 1,
                Applied::Late => {
                    summary.late.0 += 1;
                    let why = crate::shard::too_late(ev.ts.unix_us, self.sharded.coordinator());
                    late.push((ev.id.to_string(), source, why));
                }
            }
        }
        late
    }
}

/// Lines read per batch handed from the reading thread to the engine.
const LINES_A_BATCH: usize = 1024;
/// Batches in flight between the threads (each way), which bounds the memory they hold.
const BATCHES_IN_FLIGHT: usize = 4;

/// Lines of one input, read and decoded, in order.
struct Decoded {
    file: Arc<str>,
    lines: Vec<(
        omnistream_streams::jsonl::RawLine,
        Result<omnistream_schemas::Event, omnistream_schemas::Rejection>,
    )>,
}

/// Reads and decodes the inputs on a thread of its own, in file order, so the engine's thread
/// only applies events: a batch at a time through a bounded channel, ending with the first
/// read error. With `by_time`, every input is read first and the events are handed over in
/// event-time order instead (see [`sorted_by_time`]).
fn spawn_reader(
    inputs: &[PathBuf],
    decoder: Decoder,
    by_time: bool,
) -> anyhow::Result<Receiver<anyhow::Result<Decoded>>> {
    let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT);
    let inputs = inputs.to_vec();
    let tx = if by_time {
        // the sorting thread hands on what the reader sends once it has all of it
        let (to_sort, all) = sync_channel(BATCHES_IN_FLIGHT);
        std::thread::Builder::new()
            .name("replay-sort".into())
            .spawn(move || sorted_by_time(all, &tx))
            .context("starting the sorting thread")?;
        to_sort
    } else {
        tx
    };
    std::thread::Builder::new()
        .name("replay-read".into())
        .spawn(move || {
            for input in &inputs {
                let file: Arc<str> = input.display().to_string().into();
                let reader: Box<dyn std::io::Read> = if &*file == "-" {
                    Box::new(std::io::stdin().lock())
                } else {
                    match crate::files::open_events(input) {
                        Ok(f) => f,
                        Err(e) => {
                            let _ = tx.send(Err(
                                anyhow::Error::new(e).context(format!("opening {file}"))
                            ));
                            return;
                        }
                    }
                };
                let mut lines = Vec::with_capacity(LINES_A_BATCH);
                for raw in JsonLines::new(reader) {
                    match raw {
                        Ok(raw) => {
                            let ev = decoder.decode(&raw.bytes);
                            lines.push((raw, ev));
                        }
                        Err(e) => {
                            let _ = tx.send(Err(
                                anyhow::Error::new(e).context(format!("reading {file}"))
                            ));
                            return;
                        }
                    }
                    if lines.len() == LINES_A_BATCH {
                        let full = std::mem::replace(&mut lines, Vec::with_capacity(LINES_A_BATCH));
                        let batch = Decoded {
                            file: Arc::clone(&file),
                            lines: full,
                        };
                        if tx.send(Ok(batch)).is_err() {
                            return; // the engine's side stopped
                        }
                    }
                }
                if !lines.is_empty() && tx.send(Ok(Decoded { file, lines })).is_err() {
                    return;
                }
            }
        })
        .context("starting the reading thread")?;
    Ok(rx)
}

/// Takes every batch the reader sends, then hands the events on in event-time order (the
/// instant, whatever the sender's offset): a backfill of exports made per channel, each in
/// its own order, replays as the events happened instead of being refused as `too_late`
/// across files. Ties keep the order read (files in the order given, then by line); lines
/// that did not decode come first, in that order (they are dead letters either way). Holds
/// the whole input in memory. A read error is passed on as soon as it comes.
fn sorted_by_time(
    all: Receiver<anyhow::Result<Decoded>>,
    out: &SyncSender<anyhow::Result<Decoded>>,
) {
    let mut lines = Vec::new();
    for batch in all {
        match batch {
            Ok(b) => lines.extend(b.lines.into_iter().map(|l| (Arc::clone(&b.file), l))),
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        }
    }
    // stable: equal times keep the order they were read in
    lines.sort_by_key(|(_, (_, ev))| ev.as_ref().map_or(i64::MIN, |e| e.ts.unix_us));
    let mut batch: Option<Decoded> = None;
    for (file, line) in lines {
        let same = batch
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.file, &file) && b.lines.len() < LINES_A_BATCH);
        if !same {
            if let Some(full) = batch.take() {
                if out.send(Ok(full)).is_err() {
                    return;
                }
            }
            batch = Some(Decoded {
                file,
                lines: Vec::with_capacity(LINES_A_BATCH),
            });
        }
        if let Some(b) = batch.as_mut() {
            b.lines.push(line);
        }
    }
    if let Some(last) = batch {
        let _ = out.send(Ok(last));
    }
}

/// Writes the outputs on a thread of its own, in the order they were emitted: all to
/// `outputs.jsonl`, ledger entries also to `ledger.jsonl`.
struct OutputWriter {
    tx: SyncSender<Vec<Emitted>>,
    done: Option<JoinHandle<anyhow::Result<BTreeMap<&'static str, u64>>>>,
}

impl OutputWriter {
    fn spawn(out_dir: &Path) -> anyhow::Result<Self> {
        let mut outputs = writer(out_dir, "outputs.jsonl")?;
        let mut ledger = writer(out_dir, "ledger.jsonl")?;
        let (tx, rx) = sync_channel::<Vec<Emitted>>(BATCHES_IN_FLIGHT);
        let done = std::thread::Builder::new()
            .name("replay-write".into())
            .spawn(move || {
                let mut counts = BTreeMap::new();
                let ledger_ = "writing ledger.jsonl";
                let outputs_ = "writing outputs.jsonl";
                for batch in rx {
                    for e in &batch {
                        *counts.entry(e.output.stream()).or_default() += 1;
                        if matches!(e.output, Output::Ledger { .. }) {
                            line(&mut ledger, e).context(ledger_)?;
                        }
                        line(&mut outputs, e).context(outputs_)?;
                    }
                }
                outputs.flush().context(outputs_)?;
                ledger.flush().context(ledger_)?;
                Ok(counts)
            })
            .context("starting the writing thread")?;
        Ok(OutputWriter {
            tx,
            done: Some(done),
        })
    }

    /// Hands the buffered outputs over (leaving `buf` empty).
    fn send(&mut self, buf: &mut Vec<Emitted>) -> anyhow::Result<()> {
        if !buf.is_empty() && self.tx.send(std::mem::take(buf)).is_err() {
            // the thread stopped on a write error: that error is the one to tell
            return Self::join(self.done.take()).map(|_| ());
        }
        Ok(())
    }

    /// Waits for every output to be written; the count of each stream.
    fn finish(mut self) -> anyhow::Result<BTreeMap<&'static str, u64>> {
        let done = self.done.take();
        drop(self);
        Self::join(done)
    }

    fn join(
        done: Option<JoinHandle<anyhow::Result<BTreeMap<&'static str, u64>>>>,
    ) -> anyhow::Result<BTreeMap<&'static str, u64>> {
        done.context("the output writer already stopped")?
            .join()
            .map_err(|_| anyhow::anyhow!("the output writer panicked"))?
    }
}

/// Runs `omnistream replay`.
pub fn run(
    inputs: &[PathBuf],
    out_dir: &Path,
    rules: &[PathBuf],
    until: Option<&str>,
    resident: usize,
    parallel: Parallel,
    by_time: bool,
) -> anyhow::Result<ReplaySummary> {
    let rules = load_rules(rules)?;
    if parallel.shards == 0 || parallel.epoch == 0 {
        anyhow::bail!("--shards and --epoch-events must be at least 1");
    }
    if parallel.shards > 64 {
        // as the service's `shards`: each is a thread, and more than cores only costs
        anyhow::bail!("--shards {}: at most 64", parallel.shards);
    }
    // every input opens before anything is written: a missing file found half-way used to
    // leave the output directory with some files new and others from an earlier run
    for f in inputs.iter().filter(|f| f.as_os_str() != "-") {
        File::open(f).with_context(|| format!("opening {}", f.display()))?;
    }
    let sharded = parallel != Parallel::default();
    if sharded && resident > 0 {
        anyhow::bail!(
            "--resident works with one shard and epochs of one event only (passivation is not \
             built for several shards yet)"
        );
    }
    let mut epochs = sharded.then(|| Epochs {
        sharded: Sharded::new(rules.clone(), parallel.shards),
        size: parallel.epoch,
        events: Vec::with_capacity(parallel.epoch),
        sources: Vec::with_capacity(parallel.epoch),
    });
    let until_text = until.map(str::to_string);
    let until = until
        .map(|s| {
            omnistream_schemas::EventTime::parse(s).map_err(|e| {
                anyhow::anyhow!(
                    "--until `{s}`: {e} (an RFC 3339 time with its UTC offset, \
                         2027-01-01T00:00:00+08:00)"
                )
            })
        })
        .transpose()?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // the rules the replay ran under, whole (defaults filled in): what `diff` compares, and
    // a file `--rules` takes again
    let shown = toml::to_string_pretty(&rules).context("writing the rules as TOML")?;
    std::fs::write(
        out_dir.join("rules.toml"),
        format!("# the rules this replay ran under (`replay --rules` takes this file)\n{shown}"),
    )
    .with_context(|| format!("writing {}", out_dir.join("rules.toml").display()))?;
    let (pii, _) = super::pii_from_env()?;
    let mut engine = Engine::new(rules);
    let mut spill = match resident {
        0 => None,
        n => {
            let dir = out_dir.join("spill");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            let store = crate::store::RedbStore::open(&dir)?;
            engine.set_cold(
                store.cold().context("the spill store keeps no states")?,
                n,
                10_000_000,
            );
            Some((store, dir))
        }
    };
    let mut outputs = OutputWriter::spawn(out_dir)?;
    let mut dead = writer(out_dir, "dead-letter.jsonl")?;
    let mut summary = ReplaySummary {
        late: (0, inputs.len() > 1 && !by_time),
        ..ReplaySummary::default()
    };
    let started = Instant::now();
    let mut told = started;
    let mut buf: Vec<Emitted> = Vec::new();
    for batch in spawn_reader(inputs, Decoder::new(pii.clone()), by_time)? {
        let Decoded { file: name, lines } = batch?;
        for (mut raw, decoded) in lines {
            summary.lines += 1;
            if summary.lines.is_multiple_of(4096) && told.elapsed() >= PROGRESS_EVERY {
                told = Instant::now();
                let (resident, passivated) = match &epochs {
                    Some(ep) => (ep.sharded.resident(), ep.sharded.evicted()),
                    None => (engine.resident(), engine.evicted()),
                };
                eprintln!(
                    "replay: {} lines in {:.0} s ({:.0} lines/s overall), {resident} entities resident, \
                     {passivated} passivated, RSS {} MiB",
                    summary.lines,
                    started.elapsed().as_secs_f64(),
                    summary.lines as f64 / started.elapsed().as_secs_f64(),
                    omnistream_loadtest::bench::rss_kb().unwrap_or(0) / 1024
                );
            }
            // a line the decoder or the engine refused: its id when readable, and why
            let refused = match decoded {
                Ok(ev) if epochs.is_some() => {
                    if let Some(ep) = epochs.as_mut() {
                        ep.events.push(ev);
                        // the line is only needed again if the event turns out late
                        ep.sources.push(Source {
                            file: Arc::clone(&name),
                            line: raw.line,
                            raw: std::mem::take(&mut raw.bytes),
                        });
                        if ep.events.len() >= ep.size {
                            flush_epoch(ep, &mut summary, &mut buf, &mut dead, &pii)?;
                        }
                    }
                    None
                }
                Ok(ev) => match engine.apply(&ev, &mut buf) {
                    Applied::Done(_) => {
                        summary.events += 1;
                        None
                    }
                    Applied::Duplicate => {
                        summary.duplicates += 1;
                        None
                    }
                    Applied::Late => {
                        summary.late.0 += 1;
                        let why = crate::shard::too_late(ev.ts.unix_us, &engine);
                        Some((Some(ev.id.to_string()), vec![why]))
                    }
                },
                Err(rej) => Some((rej.id, rej.problems)),
            };
            if let Some((id, reasons)) = refused {
                summary.rejected += 1;
                dead_letter(&mut dead, &pii, &name, raw.line, id, reasons, &raw.bytes)?;
            }
            if buf.len() >= 4096 {
                outputs.send(&mut buf)?;
            }
            if let Some((store, _)) = &mut spill {
                // evicted states wait in memory, encoded, until a checkpoint writes them
                if engine.spilled() >= resident / 2 {
                    checkpoint(&mut engine, store)?;
                }
            }
        }
    }
    if let Some(ep) = epochs.as_mut() {
        flush_epoch(ep, &mut summary, &mut buf, &mut dead, &pii)?;
    }
    if told > started {
        eprintln!(
            "replay: {} lines read in {:.0} s; writing the final states",
            summary.lines,
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(t) = until {
        let reached = match &epochs {
            Some(ep) => ep.sharded.watermark(),
            None => engine.watermark(),
        };
        if t.unix_us <= reached {
            // the input went past it already: nothing more is due, say so rather than nothing
            eprintln!(
                "replay: --until {t} is not after the input's last event time ({}, the watermark): no further timer fired",
                omnistream_schemas::EventTime { unix_us: reached, offset_min: t.offset_min }
            );
        }
        match epochs.as_mut() {
            Some(ep) => ep.sharded.advance(t, &mut buf),
            None => engine.advance(t, &mut buf),
        }
    }
    // the writing thread finishes the outputs while this one writes the final states
    outputs.send(&mut buf)?;
    dead.flush()?;
    summary.peak_rss_kb = omnistream_loadtest::bench::peak_rss_kb();
    let processed = Instant::now();
    summary.passivated = engine.evicted();
    // the time the views are as of, and the campaigns as /v1/campaigns lists them
    let (as_of, campaigns) = match &epochs {
        Some(ep) => (ep.sharded.watermark(), ep.sharded.campaigns()),
        None => (engine.watermark(), engine.campaigns_owned(0, 1)),
    };
    let campaigns = campaigns.map_err(|e| anyhow::anyhow!("campaigns: {e}"))?;
    summary.campaigns_apart = write_campaigns(out_dir, engine_rules(&engine, &epochs), campaigns)?;
    summary.members = match &epochs {
        Some(ep) => {
            let snap = ep
                .sharded
                .try_snapshot()
                .map_err(|e| anyhow::anyhow!("snapshot: {e}"))?;
            let mut views = Views::new(ep.sharded.watermark(), ep.sharded.rules(), out_dir)?;
            let mut state = writer(out_dir, "state.json")?;
            serde_json::to_writer(&mut state, &snap)?;
            state.flush()?;
            views.snapshot(&snap).map_err(|e| anyhow::anyhow!(e))?;
            views.finish()?
        }
        None => {
            // streamed: with a resident bound, the whole state need not fit in memory
            let mut views = Views::new(engine.watermark(), &engine.rules, out_dir)?;
            let mut state = writer(out_dir, "state.json")?;
            let (at, rules) = (views.at, views.rules);
            let view = move |_: Kind, key: &str, s: State<'_>, buf: &mut Vec<u8>| {
                Views::render(at, rules, key, s, buf)
            };
            engine
                .write_snapshot(&mut state, Spread::cores(), &view, &mut |kind, lines| {
                    views.write(kind, lines)
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            state.flush()?;
            views.finish()?
        }
    };
    // the outputs' thread finishing and the spill store's removal are not the states' time
    summary.state_seconds = processed.elapsed().as_secs_f64();
    summary.outputs = outputs.finish()?;
    match spill {
        Some((store, dir)) => {
            drop(engine);
            drop(store);
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        // the caller has no use for the entities: freed while it goes on (or exits)
        None => crate::free_in_background((engine, epochs)),
    }
    summary.seconds = started.elapsed().as_secs_f64();
    // what the replay read and how it ran, beside rules.toml: what `diff` checks before it
    // puts two replays side by side as a rule change
    let run = serde_json::json!({
        "inputs": inputs.iter().map(|f| serde_json::json!({
            "file": f.display().to_string(),
            "bytes": std::fs::metadata(f).ok().filter(|_| f.as_os_str() != "-").map(|m| m.len()),
        })).collect::<Vec<_>>(),
        "lines": summary.lines,
        "until": until_text,
        // the time the views are as of (recency, expiring points, tiers' progress): the
        // last event's, or `until`
        "as_of": omnistream_schemas::EventTime { unix_us: as_of.max(0), offset_min: 0 }.to_string(),
        "sort_by_time": by_time,
        "shards": parallel.shards,
        "epoch_events": parallel.epoch,
    });
    std::fs::write(out_dir.join("input.json"), format!("{run}\n"))
        .with_context(|| format!("writing {}", out_dir.join("input.json").display()))?;
    Ok(summary)
}

/// The rules the replay ran under.
fn engine_rules<'a>(
    engine: &'a Engine,
    epochs: &'a Option<Epochs>,
) -> &'a omnistream_actors::Rules {
    match epochs {
        Some(ep) => ep.sharded.rules(),
        None => &engine.rules,
    }
}

/// Writes `campaigns.jsonl`, each campaign as `/v1/campaigns` shows it (budget, spent,
/// counts, the rules it ran under, `configured`): those the rules configure and those any
/// scan named. Answers the configured ones no scan named and the named ones not configured.
fn write_campaigns(
    dir: &Path,
    rules: &omnistream_actors::Rules,
    mut all: BTreeMap<omnistream_actors::Str, omnistream_actors::campaign::Campaign>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let unscanned: Vec<String> = rules
        .campaigns
        .keys()
        .filter(|id| !all.contains_key(*id))
        .map(ToString::to_string)
        .collect();
    let unconfigured: Vec<String> = all
        .keys()
        .filter(|id| !rules.campaigns.contains_key(*id))
        .map(ToString::to_string)
        .collect();
    for id in rules.campaigns.keys() {
        all.entry(id.clone()).or_default();
    }
    let mut out = writer(dir, "campaigns.jsonl")?;
    for (id, state) in all {
        let Ok(v) = crate::http::campaign_json(rules, &id, state) else {
            anyhow::bail!("campaign {id}: its view could not be rendered");
        };
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok((unscanned, unconfigured))
}

/// Writes the states changed since the last checkpoint to the spill store.
fn checkpoint(engine: &mut Engine, store: &mut dyn Store) -> anyhow::Result<()> {
    if let Some(why) = engine.take_cold_error() {
        anyhow::bail!("spill store: {why}");
    }
    let states = engine
        .changed_states()
        .map_err(|e| anyhow::anyhow!("spill store: {e}"))?;
    store.commit(&Batch {
        checkpoint: Some(CheckpointWrite {
            states,
            ..CheckpointWrite::default()
        }),
        ..Batch::default()
    })?;
    Ok(())
}

/// Runs the gathered epoch; the events it refused as late go to the dead letters.
fn flush_epoch(
    ep: &mut Epochs,
    summary: &mut ReplaySummary,
    buf: &mut Vec<Emitted>,
    dead: &mut impl Write,
    pii: &omnistream_schemas::Pii,
) -> anyhow::Result<()> {
    for (id, s, why) in ep.flush(summary, buf) {
        summary.rejected += 1;
        dead_letter(dead, pii, &s.file, s.line, Some(id), vec![why], &s.raw)?;
    }
    Ok(())
}

/// Writes one refused line to the dead letters, its personal values hashed: the service's
/// dead letter (`output`, `source` as `run --input` names a file, `id`, `reasons`, `raw`)
/// with the file and line it came from.
fn dead_letter(
    dead: &mut impl Write,
    pii: &omnistream_schemas::Pii,
    file: &str,
    at_line: u64,
    id: Option<String>,
    reasons: Vec<omnistream_schemas::Problem>,
    raw: &[u8],
) -> anyhow::Result<()> {
    line(
        dead,
        &serde_json::json!({
            "output": "dead_letter", "source": format!("file:{file}"),
            "file": file, "line": at_line, "id": id,
            "reasons": reasons, "raw": pii.redact(raw),
        }),
    )
}

/// The views `replay` writes beside `state.json`, one file per kind, fed in key order (a
/// chunk of rendered lines at a time, or one entity at a time from a whole snapshot): members (not aliases), SKUs' stock, dealers' credit, stores' KPIs, as of the
/// final watermark.
struct Views<'a> {
    members: BufWriter<File>,
    skus: BufWriter<File>,
    dealers: BufWriter<File>,
    stores: BufWriter<File>,
    at: omnistream_schemas::EventTime,
    rules: &'a omnistream_actors::Rules,
    /// Members written.
    n: u64,
}

impl<'a> Views<'a> {
    fn new(
        watermark: i64,
        rules: &'a omnistream_actors::Rules,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        Ok(Views {
            members: writer(dir, "members.jsonl")?,
            skus: writer(dir, "skus.jsonl")?,
            dealers: writer(dir, "dealers.jsonl")?,
            stores: writer(dir, "stores.jsonl")?,
            at: omnistream_schemas::EventTime {
                unix_us: watermark.max(0),
                offset_min: 480,
            },
            rules,
            n: 0,
        })
    }

    /// Renders the view of one entity as a line into `buf`: members (not aliases), SKUs,
    /// dealers and stores have one. Called on the threads writing the final states.
    fn render(
        at: omnistream_schemas::EventTime,
        rules: &omnistream_actors::Rules,
        key: &str,
        state: State<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        let rendered = match state {
            State::Member(m) if m.alias_of.is_none() => {
                line(buf, &m.view(at.unix_us, at.local_day(), rules))
            }
            State::Sku(s) => line(buf, &serde_json::json!({"sku": key, "stock": s.view()})),
            State::Dealer(d) => line(buf, &serde_json::json!({"dealer": key, "credit": d.view()})),
            State::Store(s) => line(
                buf,
                &serde_json::json!({"store": key, "kpis": s.view(at, &rules.store)}),
            ),
            _ => Ok(()),
        };
        rendered.map_err(|e| format!("rendering a view of {key}: {e}"))
    }

    /// Writes rendered views of one kind, in key order, to its file.
    fn write(&mut self, kind: Kind, lines: &[u8]) -> Result<(), String> {
        let file = match kind {
            Kind::Member => {
                self.n += lines.iter().filter(|&&b| b == b'\n').count() as u64;
                &mut self.members
            }
            Kind::Sku => &mut self.skus,
            Kind::Dealer => &mut self.dealers,
            Kind::Store => &mut self.stores,
            _ => return Ok(()),
        };
        file.write_all(lines)
            .map_err(|e| format!("writing the {} views: {e}", kind.name()))
    }

    /// Renders and writes the view of one entity.
    fn see(&mut self, kind: Kind, key: &str, state: State<'_>) -> Result<(), String> {
        let mut buf = Vec::new();
        Self::render(self.at, self.rules, key, state, &mut buf)?;
        self.write(kind, &buf)
    }

    /// Every view of a snapshot held whole (the sharded replay's).
    fn snapshot(&mut self, snap: &omnistream_actors::engine::Snapshot) -> Result<(), String> {
        let members = snap
            .members
            .iter()
            .map(|(k, v)| (Kind::Member, k, State::Member(v)));
        let skus = snap.skus.iter().map(|(k, v)| (Kind::Sku, k, State::Sku(v)));
        let dealers = snap
            .dealers
            .iter()
            .map(|(k, v)| (Kind::Dealer, k, State::Dealer(v)));
        let stores = snap
            .stores
            .iter()
            .map(|(k, v)| (Kind::Store, k, State::Store(v)));
        for (kind, key, s) in members.chain(skus).chain(dealers).chain(stores) {
            self.see(kind, key, s)?;
        }
        Ok(())
    }

    /// Flushes the files; returns the members written.
    fn finish(mut self) -> anyhow::Result<u64> {
        for w in [
            &mut self.members,
            &mut self.skus,
            &mut self.dealers,
            &mut self.stores,
        ] {
            w.flush()?;
        }
        Ok(self.n)
    }
}

/// The summary as printed.
pub fn render(s: &ReplaySummary, out: &Path) -> String {
    let streams: Vec<String> = s.outputs.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "replayed {} lines: {} events, {} rejected (dead-letter.jsonl), {} duplicates\n\
         outputs: {}\nmembers: {}\npassivated: {} entities, peak RSS {} MiB while processing\n\
         wrote {} in {:.2} s ({:.0} events/s; the final states in {:.2} s of it)\n{}{}",
        s.lines,
        s.events,
        s.rejected,
        s.duplicates,
        if streams.is_empty() {
            "none".to_string()
        } else {
            streams.join(", ")
        },
        s.members,
        s.passivated,
        s.peak_rss_kb
            .map_or("?".to_string(), |k| (k / 1024).to_string()),
        out.display(),
        s.seconds,
        s.events as f64 / s.seconds.max(1e-9),
        s.state_seconds,
        campaign_notes(&s.campaigns_apart),
        match s.late {
            (0, _) => String::new(),
            (n, true) => format!(
                "note: {n} events were older than the lateness window (too_late, in \
                 dead-letter.jsonl): files read one after another (one per channel?) want \
                 --sort-by-time, which replays them as one timeline\n"
            ),
            (n, false) => format!(
                "note: {n} events were older than the lateness window (too_late, in \
                 dead-letter.jsonl)\n"
            ),
        },
    )
}

/// Notes on campaigns configured and never scanned, or scanned and not configured: the
/// two sides of a misspelt campaign id (the scans ran on `default-campaign`).
fn campaign_notes((unscanned, unconfigured): &(Vec<String>, Vec<String>)) -> String {
    let mut s = String::new();
    if !unscanned.is_empty() {
        s += &format!(
            "note: campaigns configured that no scan named: {} (misspelt? see campaigns.jsonl)\n",
            unscanned.join(", ")
        );
    }
    if !unconfigured.is_empty() && !unscanned.is_empty() {
        s += &format!(
            "note: campaigns scans named that the rules do not configure (they ran on \
             default-campaign): {}\n",
            unconfigured.join(", ")
        );
    }
    s
}

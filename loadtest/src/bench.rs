//! The in-process benchmark: generate a scenario into memory, then time (a) the ceiling,
//! decoding every event and one hash-map update keyed by its main entity, and (b) the
//! deterministic engine, decoding every event and applying it to
//! `omnistream_actors::Engine`. Both read the same bytes, so their ratio is the cost of the
//! entity logic over the bare minimum any stream processor must do.

use crate::scenario::Scenario;
use anyhow::{bail, Result};
use omnistream_actors::sharded::Sharded;
use omnistream_actors::{Engine, Rules};
use omnistream_schemas::{Body, Decoder, Event, Pii, Str};
use std::collections::HashMap;
use std::time::Instant;

/// Timings of one measured phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    /// Seconds per run.
    pub runs_s: Vec<f64>,
    /// Events per second of the median run.
    pub events_per_s: f64,
    /// Peak resident memory during the phase (kB, VmHWM), input included.
    pub peak_rss_kb: Option<u64>,
    /// CPU seconds (user + system, all threads) of the median run ÷ its wall seconds: how
    /// many cores the phase kept busy.
    pub cores: f64,
}

/// The benchmark's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Scenario description.
    pub scenario: String,
    /// Events in the input.
    pub events: u64,
    /// Bytes of the input.
    pub bytes: u64,
    /// Seconds to generate the input.
    pub generate_s: f64,
    /// Resident memory after generation (kB), the base every phase starts from.
    pub rss_after_generate_kb: Option<u64>,
    /// Decode only.
    pub decode: Phase,
    /// Decode plus one hash-map update per event.
    pub ceiling: Phase,
    /// Decode plus `Engine::apply`.
    pub engine: Phase,
    /// engine events/s ÷ ceiling events/s.
    pub ratio: f64,
    /// Outputs the engine emitted in its last run.
    pub engine_outputs: u64,
    /// Commands the engine ran in its last run.
    pub engine_commands: u64,
    /// Members resident at the end of the engine's last run (what its peak RSS holds).
    pub engine_members: u64,
    /// Entities resident per kind at the end of the engine's last run.
    pub engine_resident: Vec<(String, usize)>,
    /// `Engine::apply` of one event in the engine's last run, µs: p50, p99, p99.9, p99.99,
    /// max (decode excluded). The tail shows pauses inside single events.
    pub engine_apply_us: [f64; 5],
    /// Invariants broken by the engine's final state (`invariants::check`); empty when sound.
    pub violations: Vec<String>,
    /// Decode plus `Sharded::apply_epoch`, for each `(shards, events per epoch)` asked for.
    pub sharded: Vec<ShardedPhase>,
}

/// One sharded configuration's timings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardedPhase {
    /// Shards (threads).
    pub shards: usize,
    /// Events per epoch.
    pub epoch: usize,
    /// Timings.
    pub phase: Phase,
    /// events/s ÷ the single engine's events/s, from the medians of this run.
    pub vs_engine: f64,
    /// Outputs emitted in its last run.
    pub outputs: u64,
}

/// The key the ceiling's hash map is updated under: the entity an event is first routed to.
pub fn main_key(ev: &Event) -> &str {
    match &ev.body {
        Body::Scan(s) => &s.code,
        Body::Click(c) => first_id(&c.member.0),
        Body::Order(o) => &o.order,
        Body::Visit(v) => &v.store,
        Body::Stock(s) => &s.sku,
        Body::Payment(p) => &p.dealer,
        Body::Dealer(d) => &d.dealer,
        Body::CodeBatch(b) => &b.batch,
        Body::Identify(i) => first_id(&i.member.0),
    }
}

fn first_id(ids: &[(omnistream_schemas::IdKind, Str)]) -> &str {
    ids.first().map_or("", |(_, v)| v.as_str())
}

/// Reads VmHWM (peak resident set) of this process, in kB.
pub fn peak_rss_kb() -> Option<u64> {
    status_kb("VmHWM:")
}

/// Reads VmRSS (resident set now) of this process, in kB.
pub fn rss_kb() -> Option<u64> {
    status_kb("VmRSS:")
}

/// CPU seconds this process has used (user + system, all threads), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // the fields after the command name (which may hold spaces) close with `)`
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so each phase reports its own peak.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Times `f` over `runs` runs; what `f` returns (the state it built) is dropped after the
/// clock stops, since freeing state is not part of processing events.
fn phase<T>(
    runs: usize,
    events: usize,
    mut f: impl FnMut() -> Result<T>,
    mut inspect: impl FnMut(&T),
) -> Result<Phase> {
    reset_peak();
    let mut runs_s = Vec::with_capacity(runs);
    let mut cores = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let state = f()?;
        let wall = t.elapsed().as_secs_f64();
        runs_s.push(wall);
        cores.push((cpu_seconds() - cpu) / wall.max(1e-9));
        inspect(&state);
        drop(state);
    }
    let m = median(&runs_s);
    Ok(Phase {
        events_per_s: if m > 0.0 { events as f64 / m } else { 0.0 },
        runs_s,
        peak_rss_kb: peak_rss_kb(),
        cores: median(&cores),
    })
}

/// Runs the benchmark: `runs` timed runs per phase, and a phase on the sharded engine for
/// each `(shards, events per epoch)` in `sharded`; `log` receives progress lines.
pub fn run(
    sc: &Scenario,
    runs: usize,
    sharded: &[(usize, usize)],
    log: &mut dyn FnMut(&str),
) -> Result<Report> {
    log("generating");
    let t = Instant::now();
    let mut buf = Vec::with_capacity((sc.events as usize).saturating_mul(300));
    let summary = crate::generate(sc, &mut buf, &mut std::io::sink(), &mut |_| {})?;
    let generate_s = t.elapsed().as_secs_f64();
    let lines = crate::lines_of(&buf);
    let n = lines.len();
    let rss_after_generate_kb = status_kb("VmRSS:");
    let decoder = Decoder::new(Pii::new(b"bench-key"));

    log("decode only");
    let decode = phase(
        runs,
        n,
        || {
            let mut bad = 0usize;
            for l in &lines {
                bad += usize::from(decoder.decode(l).is_err());
            }
            if bad > 0 {
                bail!("{bad} generated events failed to decode");
            }
            Ok(())
        },
        |_| {},
    )?;

    log("ceiling: decode + one hash-map update per event");
    let ceiling = phase(
        runs,
        n,
        || {
            let mut map: HashMap<Str, u64> = HashMap::new();
            for l in &lines {
                let ev = decoder
                    .decode(l)
                    .map_err(|r| anyhow::anyhow!("generated event rejected: {r:?}"))?;
                let k = main_key(&ev);
                if let Some(v) = map.get_mut(k) {
                    *v += 1;
                } else {
                    map.insert(Str::from(k), 1);
                }
            }
            std::hint::black_box(map.len());
            Ok(map)
        },
        |_| {},
    )?;

    log("engine: decode + Engine::apply");
    let mut outputs = 0u64;
    let mut commands = 0u64;
    let mut members = 0u64;
    let mut resident = Vec::new();
    let mut violations = Vec::new();
    let mut apply_us = [0.0; 5];
    let engine = phase(
        runs,
        n,
        || {
            let mut engine = Engine::new(Rules::default());
            let mut out = Vec::new();
            let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
            outputs = 0;
            for l in &lines {
                let ev = decoder
                    .decode(l)
                    .map_err(|r| anyhow::anyhow!("generated event rejected: {r:?}"))?;
                let t = Instant::now();
                engine.apply(&ev, &mut out);
                hist.record(t.elapsed().as_nanos() as u64)?;
                outputs += out.len() as u64;
                out.clear();
            }
            commands = engine.stats.commands;
            members = engine.members().count() as u64;
            resident = engine.counts().map(|(k, n)| (k.to_string(), n)).to_vec();
            let q = |p: f64| hist.value_at_quantile(p) as f64 / 1e3;
            apply_us = [
                q(0.5),
                q(0.99),
                q(0.999),
                q(0.9999),
                hist.max() as f64 / 1e3,
            ];
            Ok(engine)
        },
        |e| violations = crate::invariants::check_engine(e),
    )?;

    let mut sharded_phases = Vec::new();
    for &(shards, epoch) in sharded {
        log(&format!(
            "sharded: decode + Sharded::apply_epoch, {shards} shards, {epoch} events per epoch"
        ));
        let mut outputs = 0u64;
        let phase = phase(
            runs,
            n,
            || {
                let mut s = Sharded::new(Rules::default(), shards);
                let mut out = Vec::new();
                let mut batch = Vec::with_capacity(epoch);
                outputs = 0;
                for chunk in lines.chunks(epoch.max(1)) {
                    batch.clear();
                    for l in chunk {
                        batch.push(
                            decoder
                                .decode(l)
                                .map_err(|r| anyhow::anyhow!("generated event rejected: {r:?}"))?,
                        );
                    }
                    s.apply_epoch(&batch, &mut out);
                    outputs += out.len() as u64;
                    out.clear();
                }
                Ok(s)
            },
            |_| {},
        )?;
        let vs_engine = if engine.events_per_s > 0.0 {
            phase.events_per_s / engine.events_per_s
        } else {
            0.0
        };
        sharded_phases.push(ShardedPhase {
            shards,
            epoch,
            phase,
            vs_engine,
            outputs,
        });
    }

    let ratio = if ceiling.events_per_s > 0.0 {
        engine.events_per_s / ceiling.events_per_s
    } else {
        0.0
    };
    Ok(Report {
        scenario: sc.description.clone(),
        events: summary.events,
        bytes: summary.bytes,
        generate_s,
        rss_after_generate_kb,
        decode,
        ceiling,
        engine,
        ratio,
        engine_outputs: outputs,
        engine_commands: commands,
        engine_members: members,
        engine_resident: resident,
        engine_apply_us: apply_us,
        violations,
        sharded: sharded_phases,
    })
}

impl Report {
    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let mb = |kb: Option<u64>| {
            kb.map_or_else(|| "-".into(), |k| format!("{:.0} MB", k as f64 / 1024.0))
        };
        let row = |name: &str, p: &Phase| {
            let runs: Vec<String> = p.runs_s.iter().map(|s| format!("{s:.3}")).collect();
            // CPU time comes in 10 ms ticks: a run of under half a second cannot say
            let cores = if median(&p.runs_s) < 0.5 {
                "-".to_string()
            } else {
                format!("{:.2}", p.cores)
            };
            format!(
                "{name:<34} {:>12.0} {:>10} {cores:>6}   runs (s): {}\n",
                p.events_per_s,
                mb(p.peak_rss_kb),
                runs.join(" ")
            )
        };
        let mut s = format!(
            "scenario: {}\nevents: {} ({:.1} MB), generated in {:.2} s; RSS after generating {}\n\n",
            self.scenario,
            self.events,
            self.bytes as f64 / 1e6,
            self.generate_s,
            mb(self.rss_after_generate_kb)
        );
        s.push_str(&format!(
            "{:<34} {:>12} {:>10} {:>6}\n",
            "phase", "events/s", "peak RSS", "cores"
        ));
        s.push_str(&row("decode only", &self.decode));
        s.push_str(&row("ceiling (decode + 1 map update)", &self.ceiling));
        s.push_str(&row("engine (decode + Engine::apply)", &self.engine));
        for p in &self.sharded {
            s.push_str(&row(
                &format!("sharded {} x {} events/epoch", p.shards, p.epoch),
                &p.phase,
            ));
        }
        s.push_str(&format!(
            "\nengine / ceiling: {:.3}   (engine ran {} commands, emitted {} outputs; {} members resident)\n",
            self.ratio, self.engine_commands, self.engine_outputs, self.engine_members
        ));
        let kinds: Vec<String> = self
            .engine_resident
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        s.push_str(&format!("entities resident: {}\n", kinds.join(", ")));
        let [p50, p99, p999, p9999, max] = self.engine_apply_us;
        s.push_str(&format!(
            "engine apply per event, last run (us): p50 {p50:.1}  p99 {p99:.1}  p99.9 {p999:.1}  p99.99 {p9999:.1}  max {max:.0}\n"
        ));
        for p in &self.sharded {
            s.push_str(&format!(
                "sharded {} x {}: {:.3} x the engine, {} outputs\n",
                p.shards, p.epoch, p.vs_engine, p.outputs
            ));
        }
        match self.violations.len() {
            0 => s.push_str(
                "invariants: points = lots >= 0, no oversold stock, credit within limits: ok\n",
            ),
            n => {
                s.push_str(&format!("invariants: {n} VIOLATED, first ones:\n"));
                for v in self.violations.iter().take(10) {
                    s.push_str(&format!("  {v}\n"));
                }
            }
        }
        s
    }
}

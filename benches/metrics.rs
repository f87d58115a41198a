//! `cargo bench -p omnistream --bench metrics`: what the Prometheus metrics cost the
//! pipeline's own work (issue #8). The same decoded events go through a fresh `Engine` in
//! each run, with the calls the service's shard makes per event: `Metrics::event` by type
//! and outcome, `Metrics::observe` of its outputs (decisions, reasons, points, GMV, orders,
//! stock alerts), and one latency-window record (the service records one per request; a
//! request per event is the most it can make). "On" is a recording `Metrics`, "off" is
//! `Metrics::new(false)`, what `metrics = false` runs. Each round runs both, alternating
//! which goes first; medians of events/s and of the per-round ratio are printed.
//!
//! Then the calls alone are timed on each event's outputs, recorded once beforehand: their
//! nanoseconds an event, as a share of the engine's with metrics off.
//!
//! Decoding, the store and HTTP are left out: they add work the metrics do not touch, so the
//! ratio here bounds the service's overhead from above. `OMNISTREAM_BENCH_EVENTS` (default
//! 200,000 of the `default` scenario), `OMNISTREAM_BENCH_ROUNDS` (default 7).

use omnistream::metrics::Metrics;
use omnistream_actors::engine::{Applied, Emitted, Engine};
use omnistream_actors::Rules;
use omnistream_schemas::{Decoder, Event, Pii};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The calls the service's shard makes for one event applied since `t`.
fn shard_calls(m: &Metrics, ev: &Event, outcome: &str, out: &[Emitted], t: Instant) {
    m.event(ev.body.kind().name(), outcome);
    m.observe(out);
    m.decided(t.elapsed().max(Duration::from_micros(1)));
}

/// Seconds to apply every event with the shard's metric calls on `m`, and outputs made.
fn run(events: &[Event], m: &Metrics) -> (f64, usize) {
    let mut engine = Engine::new(Rules::default());
    let mut out = Vec::new();
    let mut outputs = 0;
    let started = Instant::now();
    for ev in events {
        let t = Instant::now();
        let outcome = outcome(engine.apply(ev, &mut out));
        shard_calls(m, ev, outcome, &out, t);
        outputs += out.len();
        out.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(&engine);
    (secs, outputs)
}

/// Seconds for the metric calls alone, on the outputs each event made (recorded once).
fn calls_only(events: &[Event], per_event: &[(&str, Vec<Emitted>)], m: &Metrics) -> f64 {
    let started = Instant::now();
    for (ev, (outcome, out)) in events.iter().zip(per_event) {
        shard_calls(m, ev, outcome, out, Instant::now());
    }
    started.elapsed().as_secs_f64()
}

/// The outcome label of an applied event.
fn outcome(applied: Applied) -> &'static str {
    match applied {
        Applied::Done(_) => "accepted",
        Applied::Duplicate => "duplicate",
        Applied::Late => "rejected",
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut sc = omnistream_loadtest::Scenario::load("default").expect("scenario");
    sc.events = env("OMNISTREAM_BENCH_EVENTS", 200_000);
    let rounds = env("OMNISTREAM_BENCH_ROUNDS", 7).max(1);
    let lines = omnistream_loadtest::generated_lines(&sc).expect("generate");
    let decoder = Decoder::new(Pii::new(b"bench-key"));
    let events: Vec<Event> = lines
        .iter()
        .map(|l| decoder.decode(l).expect("generated events decode"))
        .collect();
    let n = events.len() as f64;
    let (mut on, mut off, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut outputs = (0, 0);
    for round in 0..rounds {
        let recording = Metrics::new(true);
        let silent = Metrics::new(false);
        let timed = |m: &Metrics| {
            let (secs, o) = run(&events, m);
            (n / secs, o)
        };
        let ((r_on, o_on), (r_off, o_off)) = if round % 2 == 0 {
            let a = timed(&recording);
            (a, timed(&silent))
        } else {
            let b = timed(&silent);
            (timed(&recording), b)
        };
        eprintln!("round {round}: metrics on {r_on:.0} events/s, off {r_off:.0}");
        on.push(r_on);
        off.push(r_off);
        ratios.push(r_on / r_off);
        outputs = (o_on, o_off);
        // what the recording set counted, so the run is known to have recorded
        assert!(recording
            .render()
            .contains("omnistream_scan_decisions_total{"));
    }
    assert_eq!(outputs.0, outputs.1, "both variants made the same outputs");
    // the calls alone: each event's outputs recorded once, then only the metric calls timed
    let mut engine = Engine::new(Rules::default());
    let per_event: Vec<_> = events
        .iter()
        .map(|ev| {
            let mut out = Vec::new();
            (outcome(engine.apply(ev, &mut out)), out)
        })
        .collect();
    let calls: Vec<f64> = (0..rounds)
        .map(|_| calls_only(&events, &per_event, &Metrics::new(true)) / n * 1e9)
        .collect();
    println!(
        "{} events (default scenario), {} outputs, {rounds} rounds alternated, medians:",
        events.len(),
        outputs.0
    );
    let off = median(off);
    println!("metrics on   {:>9.0} events/s", median(on));
    println!("metrics off  {off:>9.0} events/s");
    let (calls, engine_ns) = (median(calls), 1e9 / off);
    println!(
        "the metric calls alone: {calls:.0} ns an event, {:.1}% of the engine's {engine_ns:.0} ns \
         an event with metrics off",
        calls / engine_ns * 100.0
    );
    println!(
        "on ÷ off     {:>9.3} (per-round ratios: {})",
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

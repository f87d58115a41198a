//! `cargo bench -p omnistream --bench cluster`: the same generated input through a cluster of
//! 1, 2 and 3 processes (each with its own embedded store, one shard each) over the
//! in-memory log, timed from start until every process has applied every epoch. Rounds
//! alternate the process counts; medians are printed, with each count's events/s as a ratio
//! of one process's in the same round. What it measures is the cost of the exchange and of
//! every process reading every record: on one machine the processes share its cores.
//!
//! `OMNISTREAM_BENCH_EVENTS` (default 200,000 of the `default` scenario, whose first ~20,000
//! are reference data: code batches, dealers, stock), rounds 3. `OMNISTREAM_BENCH_SKEW_S`
//! sets the sequencer's `max-skew-s` (default 21600; 0: epochs cut by records alone). The
//! scenario begins with four weeks of members' history clicks: cut by records alone, much of
//! it is refused as late, so each line also says how many events process 0 refused.

use omnistream::cluster::{self, run_process, ClusterConfig, Setup, Stop};
use omnistream::fluvio::log::PartitionedLog;
use omnistream::fluvio::MemTransport;
use omnistream::store::RedbStore;
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn setup(processes: u32, process: u32) -> Setup {
    Setup {
        rules: omnistream_actors::Rules::default(),
        pii_key: b"bench-key".to_vec(),
        topics: omnistream::config::FluvioTopics::default(),
        partitions: 4,
        cluster: ClusterConfig {
            processes,
            process,
            ..ClusterConfig::default()
        },
        codes: 10_000_000,
        resident: 0,
        metrics: None,
        sinks: false,
        align: omnistream::cluster::sequencer::Aligning {
            max_skew_s: std::env::var("OMNISTREAM_BENCH_SKEW_S")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(omnistream::cluster::sequencer::Aligning::default().max_skew_s),
            ..omnistream::cluster::sequencer::Aligning::default()
        },
    }
}

/// One run: seconds until every process applied every epoch, epochs, exchange records,
/// events process 0 refused.
fn run(lines: &[Vec<u8>], processes: u32) -> (f64, u64, usize, u64) {
    let log = cluster::mem_log(&setup(processes, 0), processes, lines).expect("log");
    let root = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let running: Vec<_> = (0..processes)
        .map(|p| {
            let (stop, stop_rx) = watch::channel(Stop::Run);
            let (ptx, progress) = watch::channel(0u64);
            let transport = MemTransport {
                log: log.clone(),
                group: format!("p{p}"),
            };
            let dir = root.path().join(format!("p{p}"));
            let s = setup(processes, p);
            let t = std::thread::spawn(move || {
                let store = Box::new(RedbStore::open(&dir).expect("store"));
                run_process(transport, store, &s, stop_rx, Some(ptx))
            });
            (stop, progress, t)
        })
        .collect();
    let total: u64 = lines.len() as u64;
    let control = setup(processes, 0).cluster.control_topic;
    let last = loop {
        let records = log.read(&control, 0, 0, usize::MAX).expect("control");
        let cuts =
            cluster::sequencer::cuts(records.iter().map(|r| r.value.as_slice())).expect("cuts");
        if let Some(c) = cuts.last() {
            if c.ranges.iter().map(|r| r.to).sum::<u64>() == total
                && running.iter().all(|r| *r.1.borrow() > c.epoch)
            {
                break c.epoch + 1;
            }
        }
        assert!(
            running.iter().all(|r| !r.2.is_finished()),
            "a process stopped"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let secs = started.elapsed().as_secs_f64();
    let mut refused = 0;
    for (p, (stop, _, t)) in running.into_iter().enumerate() {
        stop.send(Stop::Drain).expect("stop");
        let report = t.join().expect("thread").expect("process");
        if p == 0 {
            refused = report.rejected;
        }
    }
    let exchanged = log.all(&setup(processes, 0).cluster.exchange_topic).len();
    (secs, last, exchanged, refused)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let events: u64 = std::env::var("OMNISTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut sc = omnistream_loadtest::Scenario::load("default").expect("scenario");
    sc.events = events;
    let lines = omnistream_loadtest::generated_lines(&sc).expect("generate");
    let n = lines.len() as f64;
    let counts = [1u32, 2, 3];
    let mut rates: Vec<Vec<f64>> = counts.iter().map(|_| Vec::new()).collect();
    let mut ratios: Vec<Vec<f64>> = counts.iter().map(|_| Vec::new()).collect();
    let mut shape = vec![(0u64, 0usize); counts.len()];
    for round in 0..3 {
        let mut this = Vec::new();
        for (i, &p) in counts.iter().enumerate() {
            let (secs, epochs, exchanged, refused) = run(&lines, p);
            eprintln!(
                "round {round}: {p} process(es): {:.0} events/s, {epochs} epochs, {exchanged} exchange records, {refused} refused",
                n / secs
            );
            rates[i].push(n / secs);
            this.push(n / secs);
            shape[i] = (epochs, exchanged);
        }
        for (i, r) in this.iter().enumerate() {
            ratios[i].push(r / this[0]);
        }
    }
    println!(
        "{} events, default scenario, 4 input partitions, epoch-records 512, max-skew-s {}, medians of 3 rounds",
        lines.len(),
        setup(1, 0).align.max_skew_s
    );
    println!("processes  events/s  ÷ one process  epochs  exchange records");
    for (i, &p) in counts.iter().enumerate() {
        println!(
            "{p:>9}  {:>8.0}  {:>13.2}  {:>6}  {:>16}",
            median(rates[i].clone()),
            median(ratios[i].clone()),
            shape[i].0,
            shape[i].1
        );
    }
}

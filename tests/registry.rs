//! The code registry's lookup path at scale (issue #4): what the engine does when a scan names
//! a code that is not resident, measured on the embedded store. The `code` kind's table asks
//! its Bloom filter ([`CodeFilter`], sized like `code-filter-codes`, 1% false positives) and,
//! when the filter says "maybe", loads the state from the cold tier (the service's `Layered`
//! over the store, whose codes live in the code runs of `omnistream::codes`) and decodes it
//! (`Table::get_mut` in `actors/src/cold.rs`).
//!
//! The benchmark is an ignored test:
//! `OMNISTREAM_BENCH_CODES=10000000 cargo test --release -p omnistream --test registry -- --ignored --nocapture`
//! (`OMNISTREAM_BENCH_CODES`, default 1,000,000; `OMNISTREAM_BENCH_CHUNK`, codes a checkpoint,
//! default 1,000,000; `OMNISTREAM_BENCH_MARKS`, sizes at which to stop and time lookups of the
//! registry so far, e.g. `100000000,300000000`; `OMNISTREAM_BENCH_DIR`, where the temporary
//! store goes, default the system's temp dir; `OMNISTREAM_BENCH_REUSE`, a copy of a store this
//! benchmark wrote with `OMNISTREAM_BENCH_CODES` codes, to time its lookups again from a cold
//! start without writing it: `cp -al` its temporary directory before the test ends). It writes the codes' states through the store's
//! checkpoint writer (keys of earlier checkpoints stay: a checkpoint only inserts), which
//! writes them as code runs and merges runs as they gather, stops early rather than leave
//! less than 8 GB (8e9 B) free on the store's disk, and fills the filter as it goes; then it
//! times lookups of codes that exist and of codes that do not, with the files in the page
//! cache (hot) and after dropping them from the page cache and reopening the store (cold).
//! Prints p50/p99/p99.9/max, write rate, sizes on disk and in memory, RSS.
//! On a tmpfs (`OMNISTREAM_BENCH_DIR=/dev/shm`) the files are memory: every pass is hot there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly on purpose

use hdrhistogram::Histogram;
use omnistream::store::{CheckpointWrite, InFlightSlot, Layered, RedbStore, Store};
use omnistream_actors::cold::{self, Cold, Kind};
use omnistream_actors::fraud::code::Code;
use omnistream_actors::fraud::filter::CodeFilter;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Codes per checkpoint while loading the registry (bounds the benchmark's own memory).
const CHUNK: u64 = 1_000_000;
/// Codes per batch (one batch prefix each).
const PER_BATCH: u64 = 100_000;
/// Lookups per pass.
const SAMPLES: usize = 200_000;
/// The store's disk must keep this much free (`OMNISTREAM_BENCH_MIN_FREE` to change).
const MIN_FREE: u64 = 8_000_000_000;

/// A bijection on u64 (splitmix64's finalizer): distinct inputs give distinct codes.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const B32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn b32(mut x: u64, n: usize, out: &mut String) {
    for _ in 0..n {
        out.push(char::from(B32[(x & 31) as usize]));
        x >>= 5;
    }
}

/// Code `i` of a registry with `batches` batches: a 6-character batch prefix and a 14-character
/// serial (70 bits from a bijection of `i`, so every `i` gives another code). Codes past the
/// registered ones carry the prefixes of real batches, like forged codes.
fn code(i: u64, batches: u64) -> String {
    let mut s = String::with_capacity(20);
    b32(mix((i % batches) ^ 0xba7c), 6, &mut s);
    b32(mix(i), 14, &mut s);
    s
}

/// The state the engine stores for a code scanned once: first scanner, time, event id.
fn state(i: u64) -> Vec<u8> {
    let c = Code {
        first: format!("m{:016x}", mix(i ^ 0x5eed)).into(),
        at: 1_764_460_800_000_000 + (mix(i) % 86_400_000_000) as i64,
        event: (u128::from(mix(i ^ 1)) << 64) | u128::from(mix(i ^ 2)),
        scans: 1,
        others: 0,
    };
    cold::encode(&c).unwrap()
}

/// `(VmRSS, VmHWM)` in MB.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = |name: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:") / 1024, kb("VmHWM:") / 1024)
}

/// Bytes free on the disk holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// The store's files: `states.redb` and the code runs.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![dir.join("states.redb")];
    v.extend(
        std::fs::read_dir(dir.join("codes"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    v
}

/// Bytes the store's files take.
fn disk(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// How much of the store's files is in the page cache (`fincore`), in MB.
fn cached(dir: &Path) -> String {
    let mut res = 0u64;
    for f in files(dir) {
        let out = Command::new("fincore")
            .args(["--noheadings", "--bytes", "--output", "RES"])
            .arg(&f)
            .output();
        let Ok(out) = out else {
            return "(fincore failed)".into();
        };
        res += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    format!("{} MB of {} MB", res >> 20, disk(dir) >> 20)
}

/// Drops the store's files from the page cache (GNU dd: `iflag=nocache count=0` advises the
/// kernel to drop a whole file); only these files' pages, clean ones (checkpoints are synced).
fn drop_cache(dir: &Path) {
    for f in files(dir) {
        let st = Command::new("dd")
            .arg(format!("if={}", f.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// One pass of lookups: filter, then (on "maybe") load and decode, as `Table::get_mut` does.
/// Returns the histogram (ns) and how many lookups reached the store.
fn pass(
    what: &str,
    filter: &CodeFilter,
    cold: &dyn Cold,
    keys: &[String],
    expect: bool,
) -> (Histogram<u64>, usize) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut loads = 0;
    let mut found = 0;
    let t = Instant::now();
    for k in keys {
        let t1 = Instant::now();
        let v = if filter.contains(k.as_bytes()) {
            loads += 1;
            cold.load(Kind::Code, k)
                .unwrap()
                .map(|b| cold::decode::<Code>(&b).unwrap())
        } else {
            None
        };
        h.record(t1.elapsed().as_nanos().max(1) as u64).unwrap();
        found += usize::from(v.is_some_and(|c| c.scans == 1));
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(found, if expect { keys.len() } else { 0 }, "{what}");
    let (r, hwm) = rss();
    println!(
        "{what}: {} lookups, {loads} reached the store; p50 {:.2} µs, p99 {:.2} µs, \
         p99.9 {:.2} µs, max {:.1} µs, mean {:.2} µs, {:.0} lookups/s; RSS {r} MB (peak {hwm} MB)",
        keys.len(),
        us(&h, 0.5),
        us(&h, 0.99),
        us(&h, 0.999),
        h.max() as f64 / 1000.0,
        h.mean() / 1000.0,
        keys.len() as f64 / secs,
    );
    (h, loads)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A source of lookup samples, seeded.
struct Rand(u64);

impl Rand {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        mix(self.0)
    }

    /// `SAMPLES` codes never registered: serials past the first `n`, under real batches.
    fn absent(&mut self, n: u64, batches: u64) -> Vec<String> {
        (0..SAMPLES)
            .map(|_| code(n + self.next() % (1 << 40), batches))
            .collect()
    }

    /// `SAMPLES` codes among the first `n`.
    fn present(&mut self, n: u64, batches: u64) -> Vec<String> {
        (0..SAMPLES)
            .map(|_| code(self.next() % n, batches))
            .collect()
    }
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture (OMNISTREAM_BENCH_CODES)"]
fn registry_bench_lookup_with_filter_and_store() {
    let planned = env_u64("OMNISTREAM_BENCH_CODES", 1_000_000);
    let chunk = env_u64("OMNISTREAM_BENCH_CHUNK", CHUNK);
    let min_free = env_u64("OMNISTREAM_BENCH_MIN_FREE", MIN_FREE);
    // sizes at which to pause and time lookups of the registry so far (hot)
    let marks: Vec<u64> = std::env::var("OMNISTREAM_BENCH_MARKS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|v| v.trim().replace('_', "").parse().ok())
        .collect();
    let base = std::env::var_os("OMNISTREAM_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    // an existing store of `planned` codes this benchmark wrote (and kept): time its lookups
    // from a cold start only
    let reuse = std::env::var_os("OMNISTREAM_BENCH_REUSE").map(std::path::PathBuf::from);
    let dir_buf = reuse.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let dir = dir_buf.as_path();
    let batches = planned.div_ceil(PER_BATCH).max(1);
    let mut packed = Vec::new();
    omnistream::codes::pack(&cold::decode(&state(0)).unwrap(), &mut packed);
    println!(
        "{planned} codes planned ({batches} batches), 20-character codes, states of {} B as the \
         engine encodes them, {} B packed in the code runs; {chunk} codes a checkpoint; store in {}",
        state(0).len(),
        packed.len(),
        dir.display()
    );

    // the filter the engine builds for `code-filter-codes` = the planned count, filled as the
    // codes are written
    let t = Instant::now();
    let mut filter = CodeFilter::for_rate(planned.max(1024), 0.01).unwrap();
    println!(
        "filter: {:.1} MB for {planned} codes, made in {:.1} s",
        filter.memory_bytes() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let mut rand = Rand(0x9e37_79b9_7f4a_7c15);

    if reuse.is_some() {
        let t = Instant::now();
        for i in 0..planned {
            filter.insert(code(i, batches).as_bytes());
        }
        println!(
            "reusing {}: filter filled with its {planned} codes in {:.1} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
        let present2 = rand.present(planned, batches);
        let absent = rand.absent(planned, batches);
        cold_passes(dir, &filter, &present2, &absent);
        return;
    }

    // 1. the registry, written as the engine's checkpoints write it
    let store = RedbStore::open(dir).unwrap();
    let cp = store.checkpointer().unwrap();
    let t = Instant::now();
    let mut n = 0;
    let mut last = (0.0, 0.0);
    let mut slowest = 0.0f64;
    // what the next checkpoint may add to the disk at most: its own run, and a merge's new
    // runs before the old ones go (a partition's share of everything, twice, is more than
    // any merge of one partition writes)
    let mut grow = chunk * 100;
    // the next checkpoint's states are made on the other core while one is written
    let (tx, chunks) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut n = 0;
        while n < planned {
            let end = (n + chunk).min(planned);
            let states: Vec<(Kind, omnistream_actors::Str, Vec<u8>)> = (n..end)
                .map(|i| (Kind::Code, code(i, batches).into(), state(i)))
                .collect();
            if tx.send((end, states)).is_err() {
                return;
            }
            n = end;
        }
    });
    while n < planned {
        let used = disk(dir);
        let need = grow + 2 * used / omnistream::codes::PARTS as u64;
        if free_bytes(dir) < min_free + need {
            println!(
                "stopped at {n} codes: the next checkpoint could leave less than {min_free} B free"
            );
            break;
        }
        let (end, states) = chunks.recv().unwrap();
        for (_, c, _) in &states {
            filter.insert(c.as_bytes());
        }
        let t1 = Instant::now();
        cp.write(&CheckpointWrite {
            seq: end,
            states,
            ..CheckpointWrite::default()
        })
        .unwrap();
        last = ((end - n) as f64, t1.elapsed().as_secs_f64());
        slowest = slowest.max(last.1);
        grow = grow.max(2 * disk(dir).saturating_sub(used));
        n = end;
        if n % (10 * chunk) == 0 || n == planned {
            let s = store
                .code_registry()
                .expect("the embedded store has code runs");
            println!(
                "  {n} codes, {:.1} s, last checkpoint {:.0} codes/s, slowest {slowest:.1} s; \
                 {} runs, {:.0} MB on disk, {:.0} MB of index and filters; free {} MB",
                t.elapsed().as_secs_f64(),
                last.0 / last.1,
                s.runs,
                s.disk_bytes as f64 / 1e6,
                s.memory_bytes as f64 / 1e6,
                free_bytes(dir) >> 20,
            );
        }
        if marks.contains(&n) {
            let tier = layered(&store);
            println!("at {n} codes: page cache {}", cached(dir));
            pass(
                &format!("at {n}, hot, registered"),
                &filter,
                &tier,
                &rand.present(n, batches),
                true,
            );
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let s = store
        .code_registry()
        .expect("the embedded store has code runs");
    let (r, hwm) = rss();
    println!(
        "wrote {n} codes in {secs:.1} s: {:.0} codes/s overall, {:.0} codes/s in the last \
         checkpoint, slowest checkpoint {slowest:.1} s; {} runs holding {} records, {:.0} MB \
         ({:.1} B a code), their indexes and filters {:.1} MB; states.redb {:.0} MB; RSS {r} MB \
         (peak {hwm} MB)",
        n as f64 / secs,
        last.0 / last.1,
        s.runs,
        s.records,
        s.disk_bytes as f64 / 1e6,
        s.disk_bytes as f64 / n as f64,
        s.memory_bytes as f64 / 1e6,
        std::fs::metadata(dir.join("states.redb")).unwrap().len() as f64 / 1e6,
    );

    // 2. lookups in a random order: registered codes, and codes never registered
    let present = rand.present(n, batches);
    let present2 = rand.present(n, batches);
    let absent = rand.absent(n, batches);
    println!("page cache before the hot passes: {}", cached(dir));
    let cold_tier = layered(&store);
    pass("hot, registered", &filter, &cold_tier, &present, true);
    pass(
        "hot, registered (again)",
        &filter,
        &cold_tier,
        &present,
        true,
    );
    let (_, fp) = pass("hot, never registered", &filter, &cold_tier, &absent, false);
    println!(
        "  false positives: {fp} of {SAMPLES} ({:.2}%)",
        fp as f64 * 100.0 / SAMPLES as f64
    );
    drop(cold_tier);
    drop(cp);
    drop(store);
    cold_passes(dir, &filter, &present2, &absent);
}

/// The store's cold tier, read as the engine reads it (nothing in flight).
fn layered(s: &RedbStore) -> Layered {
    Layered {
        inflight: InFlightSlot::default(),
        base: s.cold().unwrap(),
    }
}

/// Drops the store's files from the page cache, reopens it, and times registered codes, then
/// codes never registered.
fn cold_passes(dir: &Path, filter: &CodeFilter, present: &[String], absent: &[String]) {
    drop_cache(dir);
    println!("page cache after dropping the files: {}", cached(dir));
    let t = Instant::now();
    let store = RedbStore::open(dir).unwrap();
    let (r, hwm) = rss();
    println!(
        "reopened in {:.1} s (reads every run's index and filter); RSS {r} MB (peak {hwm} MB)",
        t.elapsed().as_secs_f64()
    );
    let cold_tier = layered(&store);
    pass(
        "cold (files dropped, store reopened), registered",
        filter,
        &cold_tier,
        present,
        true,
    );
    println!("page cache after the cold pass: {}", cached(dir));
    pass("then never registered", filter, &cold_tier, absent, false);
    println!("free on the disk at the end: {} MB", free_bytes(dir) >> 20);
}

//! The remembered event ids under their two ways of forgetting, timed per insert: what one
//! event pays for deduplication, and the longest any single event pays.
//! Run: `cargo bench -p omnistream-actors --bench seen` (sizes from the environment:
//! `SEEN_CAP`, `SEEN_IDS`, `SEEN_PER_S`).
//!
//! - **bound**: `max-remembered-ids` = `SEEN_CAP` (default 2,000,000), then `SEEN_IDS`
//!   (default 2 × the cap) ids at `SEEN_PER_S` a second (default 5,000) of event time: past the
//!   cap every insert has to make room.
//! - **horizon**: no bound, 5 ids a second for 8 days of event time (3.46 M ids), the watermark
//!   moving with each id, as the engine calls `expire` with the 7-day horizon behind it.
//!
//! The figures are each insert's wall time (including its `expire`), so a machine's hiccups
//! land in the maximum too: compare runs, and read p99.99 beside it. RSS is `/proc`'s, taken
//! before the fill and at its end.

use omnistream_actors::seen::Seen;
use omnistream_actors::DAY_US;
use std::time::Instant;
use uuid::Uuid;

mod common;
use common::{env, rss_bytes};

fn rss_mb() -> f64 {
    rss_bytes() / 1e6
}

/// Inserts `n` ids, the `i`th at `ts(i)`, calling `expire` first as the engine does; prints
/// the per-insert times, and the longest from insert `steady` on (once the set is full, so no
/// table grows any more and only forgetting remains).
fn run(name: &str, mut seen: Seen, n: u64, steady: u64, ts: impl Fn(u64) -> i64) {
    let before = rss_mb();
    let mut ns: Vec<u32> = Vec::with_capacity(n as usize);
    let mut forgotten = 0;
    let t = Instant::now();
    for i in 0..n {
        let at = ts(i);
        let id = Uuid::from_u64_pair(0x5eed, i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let t0 = Instant::now();
        seen.expire(at - 7 * DAY_US);
        if !seen.contains(&id) {
            forgotten += seen.insert(id, at);
        }
        ns.push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
    }
    let secs = t.elapsed().as_secs_f64();
    let after = rss_mb();
    let steady_max = ns[steady as usize..].iter().max().copied().unwrap_or(0);
    ns.sort_unstable();
    let q = |p: f64| f64::from(ns[((ns.len() - 1) as f64 * p) as usize]) / 1e3;
    println!(
        "{name}: {n} inserts in {secs:.2} s ({:.0} ns each); kept {}, forgotten by the bound \
         {forgotten}; per insert p50 {:.2} us, p99 {:.2}, p99.99 {:.1}, max {:.0} us, max once \
         full {:.0} us; RSS {before:.0} -> {after:.0} MB",
        secs * 1e9 / n as f64,
        seen.len(),
        q(0.5),
        q(0.99),
        q(0.9999),
        f64::from(ns[ns.len() - 1]) / 1e3,
        f64::from(steady_max) / 1e3,
    );
}

fn main() {
    let cap = env("SEEN_CAP", 2_000_000);
    let ids = env("SEEN_IDS", 2 * cap);
    let per_s = env("SEEN_PER_S", 5_000).max(1);
    let start = 1_794_000_000_000_000i64;
    run("bound", Seen::new(cap as usize), ids, cap.min(ids), |i| {
        start + (i / per_s) as i64 * 1_000_000 + (i % per_s) as i64
    });
    let horizon_ids = 8 * 86_400 * 5;
    let full = 7 * 86_400 * 5 + 3_600 * 5;
    run("horizon", Seen::new(0), horizon_ids, full, |i| {
        start + i as i64 * 200_000
    });
}

//! Pending timers at the scale of many members known: what each costs in memory, and what
//! arming, re-arming and firing cost. A member keeps one pending timer (its next inactivity or
//! expiry moment) even while passivated, so at 10 million members known the timers are a
//! large part of what the resident bound does not bound.
//! Run: `cargo bench -p omnistream-actors --bench timers` (`TIMERS_N` timers, default
//! 2,000,000).
//!
//! Phases, each over every key (member ids as the engine issues them, `m` + 16 hex digits):
//! arm (a new key each, times spread over a day), re-arm to a later time (the common case: a
//! member's next moment moves with each event; each followed by a look for due timers, as the
//! engine makes at every event), then move the time across both days in as many steps, firing
//! at each step what it makes due (each step timed as one call). Bytes a timer is the RSS
//! growth over the arm phase divided by the timers.

use omnistream_actors::timers::Timers;
use omnistream_actors::{Key, DAY_US};
use std::time::Instant;

mod common;
use common::{env, rss_bytes};

fn key(i: u64) -> Key {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Key::Member(compact_str::format_compact!("m{h:016x}"))
}

fn at(i: u64, n: u64) -> i64 {
    // spread over a day, not in key order
    let slot = i.wrapping_mul(0x2545_f491_4f6c_dd1d) % n;
    (slot as i64) * (DAY_US / n as i64)
}

/// Times `f` over `0..n` and prints the per-call median and the worst.
fn phase(name: &str, n: u64, mut f: impl FnMut(u64)) {
    let mut ns: Vec<u32> = Vec::with_capacity(n as usize);
    let t = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        f(i);
        ns.push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
    }
    let secs = t.elapsed().as_secs_f64();
    ns.sort_unstable();
    let q = |p: f64| f64::from(ns[((ns.len() - 1) as f64 * p) as usize]);
    println!(
        "{name:<8} {n} in {secs:.2} s: p50 {:.0} ns  p99 {:.0} ns  max {:.2} ms",
        q(0.5),
        q(0.99),
        q(1.0) / 1e6
    );
}

fn main() {
    let n = env("TIMERS_N", 2_000_000).max(1);
    let keys: Vec<Key> = (0..n).map(key).collect();
    let mut timers = Timers::default();
    let before = rss_bytes();
    phase("arm", n, |i| timers.arm(keys[i as usize].clone(), at(i, n)));
    let grown = rss_bytes() - before;
    println!(
        "memory: {:.0} MB for {n} timers, {:.0} B a timer (RSS growth over the arm phase)",
        grown / 1e6,
        grown / n as f64
    );
    phase("re-arm", n, |i| {
        timers.arm(keys[i as usize].clone(), at(i, n) + DAY_US);
        // as the engine looks for due timers at every event (none is due here)
        assert!(timers.pop_due(-1).is_none());
    });
    // the watermark crosses the two days in n steps, firing what each step makes due
    let mut fired = 0u64;
    phase("fire", n, |i| {
        let to = (2 * DAY_US) * (i as i64 + 1) / n as i64;
        while timers.pop_due(to).is_some() {
            fired += 1;
        }
    });
    assert_eq!(fired, n, "every timer fires once");
}

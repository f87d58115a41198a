//! Overload: many concurrent posters offer far more than `max-inflight-events = 200` lets in,
//! for a bounded time. Refusals are 429 with `Retry-After`, never a 5xx; every event answered
//! `accepted` is applied exactly once (the shard's applied count and each poster's stock both
//! equal what was answered accepted); peak RSS (VmHWM) stays under a stated bound.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{id, Service};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POSTERS: u32 = 24;
const BATCH: u32 = 50;
const SECONDS: u64 = 8;
/// Peak resident memory allowed for the service process, in KiB (the debug build idles near
/// 30 MiB; this bound is what "memory stays bounded under overload" means here).
const MAX_HWM_KIB: u64 = 256 * 1024;

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn overload_is_refused_with_429_and_retry_after_and_accepted_events_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Service::start_with(
        dir.path(),
        &[
            ("OMNISTREAM_MAX_INFLIGHT_EVENTS", "200"),
            ("OMNISTREAM_MAX_BATCH_EVENTS", "50"),
        ],
    ));
    let pid = s.pid();
    let stop = Instant::now() + Duration::from_secs(SECONDS);
    let posters: Vec<_> = (0..POSTERS)
        .map(|p| {
            let s = s.clone();
            std::thread::spawn(move || {
                let (mut accepted, mut refused, mut latencies) = (0u64, 0u64, Vec::new());
                let mut n = 0u32;
                while Instant::now() < stop {
                    let body: Vec<String> = (0..BATCH)
                        .map(|_| {
                            n += 1;
                            json!({"type":"stock","id":id(p * 10_000_000 + n),
                                "ts":"2026-11-11T08:00:00+08:00","sku":format!("L{p}"),
                                "location":"wh","op":"receive","qty":1})
                            .to_string()
                        })
                        .collect();
                    let t = Instant::now();
                    let (code, head, text) = s.raw(
                        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json",
                        body.join("\n").as_bytes(),
                    );
                    match code {
                        200 => {
                            latencies.push(t.elapsed());
                            let v: Value = serde_json::from_str(&text).unwrap();
                            assert_eq!(v["rejected"], 0, "{v}");
                            accepted += v["accepted"].as_u64().unwrap();
                        }
                        429 => {
                            refused += 1;
                            assert!(
                                head.to_ascii_lowercase().contains("retry-after:"),
                                "429 without Retry-After: {head}"
                            );
                            let v: Value = serde_json::from_str(&text).unwrap();
                            assert_eq!(v["error"], "saturated", "{v}");
                        }
                        c => panic!("poster {p}: {c} {text}"),
                    }
                }
                (accepted, refused, latencies)
            })
        })
        .collect();
    let (mut accepted, mut refused, mut latencies) = (0u64, 0u64, Vec::new());
    let mut per_poster = Vec::new();
    for h in posters {
        let (a, r, l) = h.join().unwrap();
        per_poster.push(a);
        accepted += a;
        refused += r;
        latencies.extend(l);
    }
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let hwm = vm_hwm_kib(pid);
    println!(
        "{POSTERS} posters x {BATCH}-event batches for {SECONDS} s: {accepted} events accepted \
         in {} requests, {refused} requests refused (429); accepted request latency p50 {:?} \
         p99 {:?}; VmHWM {} MiB",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        hwm / 1024
    );
    assert!(
        refused > 0,
        "the load did not exceed the limit: nothing refused"
    );
    assert!(accepted > 0, "nothing accepted");
    let stats = s.get("/v1/stats");
    assert_eq!(
        stats["shard"]["applied"], accepted,
        "applied = accepted: {stats}"
    );
    assert_eq!(stats["engine"]["events"], accepted, "{stats}");
    assert_eq!(stats["shard"]["duplicates"], 0, "{stats}");
    for (p, a) in per_poster.iter().enumerate() {
        let atp = s
            .request("GET", &format!("/v1/skus/L{p}/stock"), "")
            .1
            .get("atp")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        assert_eq!(
            atp, *a,
            "poster {p}: stock received once per accepted event"
        );
    }
    assert!(
        hwm < MAX_HWM_KIB,
        "peak RSS {hwm} KiB over {MAX_HWM_KIB} KiB"
    );
    assert_eq!(s.get("/readyz")["status"], "ready");
    Arc::try_unwrap(s).ok().unwrap().stop();
}

//! Overload, two ways.
//!
//! In the suite, a quick one: many concurrent posters offer far more than
//! `max-inflight-events = 200` lets in, for a bounded time. Refusals are 429 with `Retry-After`,
//! never a 5xx; every event answered `accepted` is applied exactly once (the shard's applied
//! count and each poster's stock both equal what was answered accepted); peak RSS (VmHWM) stays
//! under a stated bound.
//!
//! Ignored by `cargo test` (about 75 s; `ops/test-all.sh` runs it as its own step): the
//! issue's open-loop run. A closed loop first measures the most events a second the service
//! accepts; then requests are sent on a fixed schedule, not when the previous one answered, at
//! 2x that rate for 30 s and at 5x for 30 s. Latency counts from each request's scheduled send
//! time, so a client that falls behind shows up in the numbers instead of hiding the queue.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{id, Service};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POSTERS: u32 = 24;
const BATCH: u32 = 50;
const SECONDS: u64 = 8;
/// Peak resident memory allowed for the service process, in KiB (the debug build idles near
/// 30 MiB; this bound is what "memory stays bounded under overload" means here).
const MAX_HWM_KIB: u64 = 256 * 1024;

/// A `/proc/{pid}/status` line's value in KiB (`VmHWM:` is the peak resident set).
fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
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
    let hwm = proc_status_kib(pid, "VmHWM:");
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

// ---- the open-loop run: 2x and 5x the measured maximum, 30 s each ----

/// Events per request. Large enough that the client, on the same two cores as the service,
/// can build and send 5x the service's rate; small enough that many requests are in flight.
const OL_BATCH: u32 = 100;
/// `max-inflight-events`: ten requests' worth.
const OL_INFLIGHT: u32 = 1_000;
/// The embedded store's page cache, in MiB.
const OL_STORE_CACHE_MB: u64 = 32;
/// Largest request body: each request is buffered whole before it is admitted or refused.
const OL_MAX_BODY_BYTES: u64 = 64 * 1024;
/// Event ids remembered for deduplication (`rules.max-remembered-ids`): fewer than the run
/// accepts (about 1.5-2 million), so the bound is reached and the oldest seconds' ids are
/// forgotten while the load runs.
const OL_REMEMBERED_IDS: u64 = 1_000_000;
/// Peak resident memory allowed under `ol_config()`, in KiB: the 32 MiB page cache, what the
/// debug build needs idle (about 22 MiB), the in-flight events and buffered bodies (a few MiB),
/// and the remembered ids (21 bytes a slot, the table 44-88% full: 24-48 MB for a million).
/// Every part has a setting, so the bound holds however long the load lasts. (Before the id
/// bound, the peak rose 65-90 bytes an accepted event, and a run that accepted 1.9 million
/// events went over this bound.)
const OL_MAX_HWM_KIB: u64 = 192 * 1024;
/// The closed loop that measures the maximum: its first second is warm-up, not counted.
const MEASURE_WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(8);
/// Its posters: as many as the bound admits. More posters keep the window fuller while each
/// one turns around, but their refused requests cost the service more than that gains: 12 to 30
/// posters with 3-50 ms back-off measured 8-18 thousand events/s where 10 measured 13-18 (the
/// spread is the shared machine).
const MEASURE_POSTERS: u32 = OL_INFLIGHT / OL_BATCH;
/// A refused poster's pause before it tries again (`Retry-After: 1` would idle it a second).
const MEASURE_BACKOFF: Duration = Duration::from_millis(5);
/// Each overload phase.
const PHASE: Duration = Duration::from_secs(30);
/// Client threads, one keep-alive connection each: enough that requests leave on schedule
/// while accepted ones wait for their commit.
const SENDERS: u32 = 48;
/// The client must really offer this share of the target rate, or the run proves nothing.
const OFFERED_FLOOR: f64 = 0.9;

/// The configuration that bounds the service's memory under this load: events in flight and
/// a request, request bodies, the page cache. The client keeps at most `SENDERS` connections.
fn ol_config() -> [(&'static str, String); 5] {
    [
        (
            "OMNISTREAM_RULES__MAX_REMEMBERED_IDS",
            OL_REMEMBERED_IDS.to_string(),
        ),
        ("OMNISTREAM_MAX_INFLIGHT_EVENTS", OL_INFLIGHT.to_string()),
        ("OMNISTREAM_MAX_BATCH_EVENTS", OL_BATCH.to_string()),
        ("OMNISTREAM_MAX_BODY_BYTES", OL_MAX_BODY_BYTES.to_string()),
        ("OMNISTREAM_STORE_CACHE_MB", OL_STORE_CACHE_MB.to_string()),
    ]
}

/// One keep-alive HTTP/1.1 connection to the service (the suite's helper opens one per
/// request; at thousands of requests a second that would run the loopback out of ports).
struct Conn {
    addr: String,
    stream: Option<TcpStream>,
}

/// A response: status, head, body.
struct Answer {
    code: u16,
    head: String,
    body: String,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        Conn {
            addr: addr.to_string(),
            stream: None,
        }
    }

    fn post_events(&mut self, body: &[u8]) -> Answer {
        let stream = self.stream.get_or_insert_with(|| {
            let s = TcpStream::connect(&self.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.set_nodelay(true).unwrap();
            s
        });
        let mut req = format!(
            "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        // a failure here is a failure of the test: the request's fate would be unknown
        stream.write_all(&req).expect("request not sent");
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut chunk = [0u8; 16 * 1024];
        let (head_len, content_len) = loop {
            let n = stream.read(&mut chunk).expect("no answer");
            assert!(n > 0, "connection closed before an answer");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap_or_else(|| panic!("answer without content-length: {head}"))
                    .trim()
                    .parse::<usize>()
                    .unwrap();
                break (i + 4, len);
            }
        };
        while buf.len() < head_len + content_len {
            let n = stream.read(&mut chunk).expect("answer cut short");
            assert!(n > 0, "connection closed inside an answer");
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_len - 4]).to_string();
        if head.to_ascii_lowercase().contains("connection: close") {
            self.stream = None;
        }
        Answer {
            code: head[9..12].parse().unwrap(),
            head,
            body: String::from_utf8_lossy(&buf[head_len..head_len + content_len]).to_string(),
        }
    }
}

/// `n` stock receipts of one unit of `sku`, ids from `first`, as JSON lines, stamped now (so
/// event time moves as in a live feed, and the id bound forgets the oldest seconds first).
fn receipts(first: u32, n: u32, sku: &str) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ts = omnistream_schemas::EventTime::from_unix_ms(now_ms);
    let mut out = String::with_capacity(n as usize * 150);
    for i in 0..n {
        out.push_str(&format!(
            "{{\"type\":\"stock\",\"id\":\"{}\",\"ts\":\"{ts}\",\
             \"sku\":\"{sku}\",\"location\":\"wh\",\"op\":\"receive\",\"qty\":1}}\n",
            id(first + i)
        ));
    }
    out.into_bytes()
}

/// Events accepted (`Some`) or the request refused (`None`), after checking that the answer is
/// one the issue allows: 200 with every event accepted, or 429/503 with `Retry-After`.
fn judge(a: &Answer, n: u32) -> Option<u64> {
    match a.code {
        200 => {
            let v: Value = serde_json::from_str(&a.body).unwrap();
            assert_eq!(v["accepted"], n, "not all accepted: {}", a.body);
            Some(u64::from(n))
        }
        429 | 503 => {
            assert!(
                a.head.to_ascii_lowercase().contains("\r\nretry-after:"),
                "{} without Retry-After: {}",
                a.code,
                a.head
            );
            let v: Value = serde_json::from_str(&a.body).unwrap();
            if a.code == 429 {
                assert_eq!(v["error"], "saturated", "{v}");
            }
            None
        }
        c => panic!("refused with {c}, not 429/503: {} {}", a.head, a.body),
    }
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The closed loop: as many posters as the in-flight bound admits requests, each sending its
/// next request when the last one answered (after `MEASURE_BACKOFF` if it was refused, which
/// should not happen). Answers the accepted rate after the warm-up (events/s), what each poster
/// had accepted (SKU `M{poster}`) and the refusals.
fn measure_max(s: &Service) -> (f64, Vec<u64>, u64) {
    let start = Instant::now();
    let posters: Vec<_> = (0..MEASURE_POSTERS)
        .map(|p| {
            let addr = s.addr.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::new(&addr);
                let (mut total, mut counted, mut refused, mut n) = (0u64, 0u64, 0u64, 0u32);
                while start.elapsed() < MEASURE {
                    let body = receipts(p * 10_000_000 + n, OL_BATCH, &format!("M{p}"));
                    n += OL_BATCH;
                    match judge(&conn.post_events(&body), OL_BATCH) {
                        Some(a) => {
                            total += a;
                            if start.elapsed() > MEASURE_WARMUP {
                                counted += a;
                            }
                        }
                        None => {
                            refused += 1;
                            std::thread::sleep(MEASURE_BACKOFF);
                        }
                    }
                }
                (total, counted, refused)
            })
        })
        .collect();
    let (mut per_poster, mut counted, mut refused) = (Vec::new(), 0, 0);
    for h in posters {
        let (t, c, r) = h.join().unwrap();
        per_poster.push(t);
        counted += c;
        refused += r;
    }
    let secs = (start.elapsed() - MEASURE_WARMUP).as_secs_f64();
    (counted as f64 / secs, per_poster, refused)
}

/// What one open-loop phase came to.
#[derive(Default)]
struct Phase {
    sent_requests: u64,
    accepted_events: u64,
    refused: BTreeMap<u16, u64>,
    /// Of accepted requests, from the scheduled send time to the answer.
    accepted_latency: Vec<Duration>,
    refused_latency: Vec<Duration>,
    /// How late each request left, behind its schedule.
    send_lag: Vec<Duration>,
    /// When the last request left, from the phase's start.
    last_send: Duration,
    /// Events accepted per sender (SKU `{prefix}{sender}`).
    per_sender: Vec<u64>,
}

/// Offers `rate` events a second for `PHASE`: request `k` is due at `k * OL_BATCH / rate`
/// seconds, whichever sender is free takes it; nothing is re-sent. Ids start at `id_base`.
fn open_loop(s: &Service, prefix: &str, rate: f64, id_base: u32) -> Phase {
    let period = Duration::from_secs_f64(f64::from(OL_BATCH) / rate);
    let slots = (PHASE.as_secs_f64() * rate / f64::from(OL_BATCH)) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now() + Duration::from_millis(50);
    let total = Arc::new(Mutex::new(Phase {
        per_sender: vec![0; SENDERS as usize],
        ..Phase::default()
    }));
    let failed = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|w| {
            let (addr, next, total) = (s.addr.clone(), next.clone(), total.clone());
            let failed = failed.clone();
            let sku = format!("{prefix}{w}");
            std::thread::spawn(move || {
                let _stop_all = SetOnPanic(failed.clone());
                let mut conn = Conn::new(&addr);
                let mut mine = Phase::default();
                let mut accepted = 0;
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= slots || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let due = t0 + period * k as u32;
                    let body = receipts(id_base + k as u32 * OL_BATCH, OL_BATCH, &sku);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    let answer = conn.post_events(&body);
                    let latency = Instant::now().saturating_duration_since(due);
                    mine.send_lag.push(sent.saturating_duration_since(due));
                    mine.last_send = mine.last_send.max(sent.saturating_duration_since(t0));
                    mine.sent_requests += 1;
                    match judge(&answer, OL_BATCH) {
                        Some(a) => {
                            accepted += a;
                            mine.accepted_latency.push(latency);
                        }
                        None => {
                            *mine.refused.entry(answer.code).or_default() += 1;
                            mine.refused_latency.push(latency);
                        }
                    }
                }
                let mut t = total.lock().unwrap();
                t.sent_requests += mine.sent_requests;
                t.accepted_events += accepted;
                t.per_sender[w as usize] = accepted;
                for (c, n) in mine.refused {
                    *t.refused.entry(c).or_default() += n;
                }
                t.accepted_latency.extend(mine.accepted_latency);
                t.refused_latency.extend(mine.refused_latency);
                t.send_lag.extend(mine.send_lag);
                t.last_send = t.last_send.max(mine.last_send);
            })
        })
        .collect();
    // every sender ends before the first failure is raised
    let ended: Vec<_> = senders.into_iter().map(|h| h.join()).collect();
    for e in ended {
        e.unwrap();
    }
    let mut p = Arc::try_unwrap(total).ok().unwrap().into_inner().unwrap();
    p.accepted_latency.sort();
    p.refused_latency.sort();
    p.send_lag.sort();
    p
}

/// User and system CPU time of `/proc/{pid}` (a pid or `self`), in seconds: on two shared
/// cores the client's share is what the service did not get.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // fields after the parenthesised command name: state is the first, utime the 12th
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux whatever the kernel's own tick rate
    ticks as f64 / 100.0
}

/// Sets its flag when the thread holding it unwinds: the other senders then stop at once
/// instead of offering load until the phase ends.
struct SetOnPanic(Arc<AtomicBool>);

impl Drop for SetOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Polls `/readyz` and reads VmRSS every 250 ms until `stop`; answers the answers that were
/// not "ready" and the largest RSS seen (KiB). It holds no `Service`, so a failing test still
/// drops (kills) the service it started.
fn watch(
    addr: &str,
    pid: u32,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, u64)> {
    let (addr, stop) = (addr.to_string(), stop.clone());
    std::thread::spawn(move || {
        let (mut not_ready, mut rss) = (Vec::new(), 0);
        while !stop.load(Ordering::SeqCst) {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            c.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).unwrap();
            if !answer.starts_with("HTTP/1.1 200") || !answer.contains(r#""status":"ready""#) {
                not_ready.push(answer);
            }
            rss = rss.max(proc_status_kib(pid, "VmRSS:"));
            std::thread::sleep(Duration::from_millis(250));
        }
        (not_ready, rss)
    })
}

#[test]
#[ignore = "about 75 s of load: ops/test-all.sh runs it as its own step"]
fn open_loop_overload_at_2x_and_5x_the_measured_maximum_refuses_and_applies_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = ol_config();
    let mut env: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // commits of a full window take 20-50 ms here and each is logged as a slow commit warning
    env.push(("OMNISTREAM_LOG", "error"));
    let s = Service::start_with(dir.path(), &env);
    let pid = s.pid();
    let idle = proc_status_kib(pid, "VmRSS:");
    let cpu = (cpu_secs(&pid.to_string()), cpu_secs("self"));
    let (max_rate, measured, refused) = measure_max(&s);
    let cpu = (cpu_secs(&pid.to_string()) - cpu.0, cpu_secs("self") - cpu.1);
    let mut applied: u64 = measured.iter().sum();
    let (secs, warmup, backoff) = (
        MEASURE.as_secs(),
        MEASURE_WARMUP.as_secs(),
        MEASURE_BACKOFF.as_millis(),
    );
    println!(
        "closed loop, {MEASURE_POSTERS} posters x {OL_BATCH} events, max-inflight-events \
         {OL_INFLIGHT}: {max_rate:.0} events/s accepted ({applied} events in {secs} s, first \
         {warmup} s not counted; {refused} requests refused and re-sent after {backoff} ms); \
         VmRSS idle {} MiB, VmHWM {} MiB; CPU time: service {:.1} s, this client {:.1} s",
        idle / 1024,
        proc_status_kib(pid, "VmHWM:") / 1024,
        cpu.0,
        cpu.1
    );
    assert!(max_rate > 0.0, "nothing accepted in the closed loop");
    let check_stock = |prefix: &str, per: &[u64]| {
        for (i, a) in per.iter().enumerate() {
            let atp = s
                .request("GET", &format!("/v1/skus/{prefix}{i}/stock"), "")
                .1
                .get("atp")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            assert_eq!(
                atp, *a,
                "{prefix}{i}: stock received once per accepted event"
            );
        }
    };
    check_stock("M", &measured);
    for (factor, prefix, id_base) in [(2.0, "A", 1_000_000_000), (5.0, "B", 2_000_000_000)] {
        let target = factor * max_rate;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch(&s.addr, pid, &stop);
        let cpu = (cpu_secs(&pid.to_string()), cpu_secs("self"));
        let p = std::panic::catch_unwind(|| open_loop(&s, prefix, target, id_base));
        let cpu = (cpu_secs(&pid.to_string()) - cpu.0, cpu_secs("self") - cpu.1);
        stop.store(true, Ordering::SeqCst);
        let p = p.unwrap_or_else(|e| std::panic::resume_unwind(e));
        let (not_ready, rss) = watcher.join().unwrap();
        let hwm = proc_status_kib(pid, "VmHWM:");
        let sent_events = p.sent_requests * u64::from(OL_BATCH);
        let offered = sent_events as f64 / p.last_send.as_secs_f64().max(PHASE.as_secs_f64());
        let accepted_rate = p.accepted_events as f64 / PHASE.as_secs_f64();
        let refused: u64 = p.refused.values().sum();
        // the measured maximum is noisy on a shared machine: how far over what was accepted
        let over = offered / accepted_rate.max(1.0);
        println!(
            "{factor}x for {} s: offered {offered:.0} events/s (target {target:.0}; {} \
             requests of {OL_BATCH}, the last sent at {:.2} s, send lag p50 {} p99 {} max {}); \
             accepted {accepted_rate:.0} events/s ({} events in {} requests; the offer was \
             {over:.1}x that); refused {refused} \
             requests {:?}; accepted requests' latency from their scheduled send p50 {} p99 {} \
             max {}; refusals p50 {} p99 {}; VmRSS max sampled {} MiB, VmHWM {} MiB (bound {} \
             MiB); CPU time: service {:.1} s, this client {:.1} s",
            PHASE.as_secs(),
            p.sent_requests,
            p.last_send.as_secs_f64(),
            ms(pct(&p.send_lag, 0.5)),
            ms(pct(&p.send_lag, 0.99)),
            ms(pct(&p.send_lag, 1.0)),
            p.accepted_events,
            p.accepted_latency.len(),
            p.refused,
            ms(pct(&p.accepted_latency, 0.5)),
            ms(pct(&p.accepted_latency, 0.99)),
            ms(pct(&p.accepted_latency, 1.0)),
            ms(pct(&p.refused_latency, 0.5)),
            ms(pct(&p.refused_latency, 0.99)),
            rss / 1024,
            hwm / 1024,
            OL_MAX_HWM_KIB / 1024,
            cpu.0,
            cpu.1
        );
        assert!(
            offered >= OFFERED_FLOOR * target,
            "{factor}x: the client offered {offered:.0} events/s, under {OFFERED_FLOOR} of the \
             target {target:.0}: this run did not test {factor}x"
        );
        assert!(refused > 0, "{factor}x: nothing refused");
        assert!(p.accepted_events > 0, "{factor}x: nothing accepted");
        assert!(not_ready.is_empty(), "{factor}x: not ready: {not_ready:?}");
        assert!(
            hwm < OL_MAX_HWM_KIB,
            "{factor}x: peak RSS {hwm} KiB over {OL_MAX_HWM_KIB} KiB"
        );
        applied += p.accepted_events;
        let stats = s.get("/v1/stats");
        assert_eq!(
            stats["shard"]["applied"], applied,
            "applied = accepted: {stats}"
        );
        assert_eq!(stats["engine"]["events"], applied, "{stats}");
        assert_eq!(stats["shard"]["duplicates"], 0, "{stats}");
        assert_eq!(
            stats["engine"]["late"], 0,
            "nothing accepted was refused: {stats}"
        );
        println!(
            "{factor}x: {applied} events applied so far; event ids remembered {}, forgotten \
             under the bound of {OL_REMEMBERED_IDS} {}",
            stats["engine"]["remembered_ids"], stats["engine"]["forgotten"]
        );
        let remembered = stats["engine"]["remembered_ids"].as_u64().unwrap();
        assert!(remembered <= OL_REMEMBERED_IDS, "{stats}");
        if applied > OL_REMEMBERED_IDS {
            assert!(
                stats["engine"]["forgotten"].as_u64().unwrap() > 0,
                "past the id bound and nothing forgotten: {stats}"
            );
        }
        check_stock(prefix, &p.per_sender);
    }
    assert_eq!(s.get("/readyz")["status"], "ready");
    s.stop();
}

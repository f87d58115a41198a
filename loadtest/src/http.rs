//! The HTTP driver: feeds a generated scenario to a running omnistream over HTTP and measures
//! what a channel sees.
//!
//! Two phases on the same event stream, one request per event (scans to `/v1/scan`, every
//! other event to `/v1/events`), over keep-alive connections:
//! 1. **closed loop**: each connection sends its next request as soon as the last one is
//!    answered; the events answered per second is the service's maximum rate for this shape of
//!    traffic;
//! 2. **open loop** at a fraction of that rate (half by default): requests are sent on a fixed
//!    schedule and each latency is taken from the moment the request was *due*, not when it was
//!    sent, so a stalled service is charged for the requests queued behind the stall (no
//!    coordinated omission).
//!
//! Every answer is durable when it arrives (the service answers after its group commit), so the
//! latency is ingest → decision → durable, as a caller waits for it.

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The client configuration of HTTPS, once [`use_https`] was called: every connection of
/// the process then speaks TLS.
static HTTPS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Speak HTTPS to the service (`[http] tls`), trusting the certificates of the PEM file
/// `ca`; the service's certificate must carry the host of the address it is driven at (an IP
/// address or a name).
pub fn use_https(ca: &std::path::Path) -> Result<()> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("--tls-ca {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("--tls-ca {}", ca.display()))?)
            .with_context(|| format!("--tls-ca {}", ca.display()))?;
    }
    if roots.is_empty() {
        bail!("--tls-ca {}: no certificate in it", ca.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = HTTPS.set(Arc::new(config));
    Ok(())
}

/// A connection's bytes: plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time.
struct Conn {
    addr: String,
    io: BufReader<Stream>,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let stream = match HTTPS.get() {
            None => Stream::Plain(s),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .with_context(|| format!("`{host}` is not a name TLS can check"))?;
                let conn = rustls::ClientConnection::new(config.clone(), name)?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
            }
        };
        Ok(Conn {
            addr: addr.to_string(),
            io: BufReader::new(stream),
        })
    }

    /// Sends one POST and reads the whole answer; returns the status code.
    fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.send("POST", path, body)
    }

    /// Sends one request and reads the whole answer: its status code and body.
    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        // the buffer holds only what was read ahead: writing past it is safe
        let addr = &self.addr;
        let gone = |doing: &str| {
            format!("{doing} {addr}: the connection broke (the service stopped or restarted?)")
        };
        let w = self.io.get_mut();
        w.write_all(head.as_bytes())
            .and_then(|()| w.write_all(body))
            .and_then(|()| w.flush())
            .with_context(|| gone("sending a request to"))?;
        let mut line = String::new();
        let read = self
            .io
            .read_line(&mut line)
            .with_context(|| gone("reading an answer from"))?;
        if read == 0 {
            bail!("{}", gone("reading an answer from"));
        }
        let status: u16 = line
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("not an HTTP answer: {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            if self.io.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let Some(len) = len else {
            bail!("answer without Content-Length (status {status})");
        };
        let mut body = vec![0u8; len];
        self.io.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// Where one event goes.
fn route(line: &[u8]) -> &'static str {
    // the generator writes `"type":"scan"` near the start of every scan line
    let head = &line[..line.len().min(120)];
    if head.windows(13).any(|w| w == b"\"type\":\"scan\"") {
        "/v1/scan"
    } else {
        "/v1/events"
    }
}

/// How to drive the service.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Events per request.
    pub batch: usize,
    /// Keep-alive connections.
    pub connections: usize,
    /// Longest closed-loop phase, seconds.
    pub max_secs: f64,
    /// Longest paced phase, seconds.
    pub paced_secs: f64,
    /// Paced rate as a fraction of the maximum.
    pub fraction: f64,
}

/// Results of one phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseReport {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests answered 429 (backpressure) or another non-2xx status.
    pub refused: u64,
    /// Events the service answered as accepted, as duplicates and as rejected (a rejected
    /// event is answered, and counted in `ok` when its request was 2xx: a store that already
    /// holds later events refuses these as `too_late`, so read these before the rates).
    pub events_accepted: u64,
    /// See `events_accepted`.
    pub events_duplicate: u64,
    /// See `events_accepted`.
    pub events_rejected: u64,
    /// Wall seconds of the phase.
    pub seconds: f64,
    /// Answered requests per second.
    pub per_s: f64,
    /// Events in answered requests per second.
    pub events_per_s: f64,
    /// Target rate (open loop only).
    pub target_per_s: Option<f64>,
    /// Latency percentiles of every request, microseconds: p50, p99, p99.9, max.
    pub all_us: [u64; 4],
    /// The same for scans alone (the fraud decision a consumer waits for).
    pub scan_us: [u64; 4],
}

/// The driver's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Connections used.
    pub connections: usize,
    /// Closed loop: maximum rate.
    pub max: PhaseReport,
    /// Open loop at a fraction of the maximum rate; None when the closed loop used every
    /// event (see `paced_skipped`).
    pub paced: Option<PhaseReport>,
    /// Why the paced phase did not run and how to give it events (None when it ran).
    pub paced_skipped: Option<String>,
    /// The service's own latencies over the paced phase (None when it exports no metrics).
    pub server: Option<ServerLatency>,
}

/// Histograms of the service's Prometheus text: `le` bound → cumulative count, per name.
type Scrape = std::collections::BTreeMap<String, Vec<(f64, u64)>>;

/// The histograms of the service's request latencies, as the service measures them.
const SERVER_HISTOGRAMS: [&str; 2] = [
    "omnistream_ingest_decision_seconds",
    "omnistream_ingest_durable_seconds",
];

/// One server-side histogram over a phase: the difference of two scrapes.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Quantiles {
    /// Requests observed.
    pub count: u64,
    /// p50, p99 and p99.9 in milliseconds, interpolated within the buckets as Prometheus'
    /// `histogram_quantile` does (so only as fine as the buckets around them).
    pub ms: [f64; 3],
    /// The share of requests within 2 ms (a bucket bound: exact).
    pub within_2ms: f64,
}

/// The service's own view of the paced phase, from its Prometheus histograms scraped before
/// and after it: from a request's arrival (its body read) to its decision, and to its durable
/// answer. Time before the service reads a request (the connection's queue) is not in it; the
/// driver's own latency, from each request's due time, is.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct ServerLatency {
    /// Arrival → decision (`omnistream_ingest_decision_seconds`).
    pub decision: Quantiles,
    /// Arrival → durable answer (`omnistream_ingest_durable_seconds`).
    pub durable: Quantiles,
}

/// Reads the request-latency histograms of `/metrics`; None when the service has metrics off
/// (404), keeps them behind a token (401, 403: the driver sends none) or exports neither.
fn scrape(addr: &str) -> Result<Option<Scrape>> {
    let (status, body) = Conn::open(addr)?.send("GET", "/metrics", b"")?;
    if matches!(status, 401 | 403 | 404) {
        return Ok(None);
    }
    if status != 200 {
        bail!("GET /metrics answered {status}");
    }
    let text = String::from_utf8_lossy(&body);
    let found = parse_buckets(&text);
    Ok((!found.is_empty()).then_some(found))
}

/// The `_bucket` lines of [`SERVER_HISTOGRAMS`] in Prometheus text.
fn parse_buckets(text: &str) -> Scrape {
    let mut found = Scrape::new();
    for line in text.lines() {
        for name in SERVER_HISTOGRAMS {
            let Some(rest) = line
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix("_bucket{le=\""))
            else {
                continue;
            };
            let Some((le, count)) = rest.split_once("\"} ") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            if let Ok(n) = count.trim().parse::<u64>() {
                found.entry(name.to_string()).or_default().push((le, n));
            }
        }
    }
    found
}

/// The quantiles of the requests observed between two scrapes of one histogram.
fn quantiles(before: &[(f64, u64)], after: &[(f64, u64)]) -> Quantiles {
    let was = |le: f64| before.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| (le, n.saturating_sub(was(le))))
        .collect();
    let count = delta.last().map_or(0, |d| d.1);
    let at = |q: f64| {
        if count == 0 {
            return 0.0;
        }
        let rank = q * count as f64;
        let (mut lo, mut below) = (0.0, 0u64);
        for &(le, n) in &delta {
            if n as f64 >= rank {
                if le.is_infinite() {
                    // above the last bound: Prometheus answers the last bound
                    return lo * 1000.0;
                }
                let share = if n > below {
                    (rank - below as f64) / (n - below) as f64
                } else {
                    0.0
                };
                return (lo + (le - lo) * share) * 1000.0;
            }
            (lo, below) = (le, n);
        }
        lo * 1000.0
    };
    let within_2ms = delta
        .iter()
        .find(|d| (d.0 - 0.002).abs() < 1e-12)
        .map_or(f64::NAN, |d| {
            if count == 0 {
                0.0
            } else {
                d.1 as f64 / count as f64
            }
        });
    Quantiles {
        count,
        ms: [at(0.5), at(0.99), at(0.999)],
        within_2ms,
    }
}

/// The service's latencies between two scrapes; None if either lacks a histogram.
fn server_latency(before: &Scrape, after: &Scrape) -> Option<ServerLatency> {
    let q = |name: &str| Some(quantiles(before.get(name)?, after.get(name)?));
    Some(ServerLatency {
        decision: q(SERVER_HISTOGRAMS[0])?,
        durable: q(SERVER_HISTOGRAMS[1])?,
    })
}

impl Report {
    /// The phases that ran, by name.
    fn phases(&self) -> Vec<(&'static str, &PhaseReport)> {
        let mut v = vec![("closed loop", &self.max)];
        v.extend(self.paced.as_ref().map(|p| ("open loop", p)));
        v
    }

    /// Each phase's events by answer, and warnings when the service turned events away.
    fn outcome_lines(&self) -> String {
        let mut s = String::new();
        for (name, p) in self.phases() {
            s += &format!(
                "events, {name}: {} accepted, {} duplicate, {} rejected\n",
                p.events_accepted, p.events_duplicate, p.events_rejected
            );
        }
        for (name, p) in self.phases() {
            let away = p.events_duplicate + p.events_rejected;
            let answered = p.events_accepted + away;
            // a duplicate changes nothing and a rejection only adds a dead letter: the rates
            // of a phase made mostly of them are those of that short path, not of ingest
            if away * 2 > answered {
                s += &format!(
                    "warning: the {name} measured the service turning events away, not \
                     ingesting them: {away} of its {answered} events were duplicates or rejected. \
                     The store already holds them (the same scenario sent before: the tool has no \
                     --seed, a scenario always sends the same events): run the service on a \
                     fresh data directory\n"
                );
            }
        }
        let rejected: u64 = self.phases().iter().map(|(_, p)| p.events_rejected).sum();
        if rejected > 0 {
            s += &format!(
                "warning: the service rejected {rejected} events (their reasons: \
                 /v1/outputs?output=dead_letter); rates above count them as answered. A store \
                 that already holds later events refuses these as too_late: use a fresh data \
                 directory\n"
            );
        }
        s
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let row = |name: &str, p: &PhaseReport| {
            format!(
                "{name:<28} {:>9.0} {:>9.0} {:>9} {:>7} {:>9} | all p50/p99/p99.9/max µs {:>6} {:>6} {:>7} {:>7} | scans {:>6} {:>6} {:>7} {:>7}\n",
                p.per_s,
                p.events_per_s,
                p.target_per_s.map_or("-".into(), |t| format!("{t:.0}")),
                p.ok,
                p.refused,
                p.all_us[0], p.all_us[1], p.all_us[2], p.all_us[3],
                p.scan_us[0], p.scan_us[1], p.scan_us[2], p.scan_us[3],
            )
        };
        format!(
            "{:<28} {:>9} {:>9} {:>9} {:>7} {:>9}\n{}{}",
            format!("phase ({} connections)", self.connections),
            "req/s",
            "events/s",
            "target",
            "ok",
            "refused",
            row("closed loop (max)", &self.max),
            match &self.paced {
                Some(p) => row("open loop (paced)", p),
                None => format!("{:<28} did not run: no events left\n", "open loop (paced)"),
            },
        ) + &self.outcome_lines()
            + &self.server.as_ref().map_or(String::new(), |s| {
            let line = |name: &str, q: &Quantiles| {
                format!(
                    "server, paced: {name:<22} {:>8} requests | p50/p99/p99.9 ms {:>6.2} {:>6.2} {:>6.2} | within 2 ms {:.2}%\n",
                    q.count,
                    q.ms[0],
                    q.ms[1],
                    q.ms[2],
                    q.within_2ms * 100.0
                )
            };
            line("arrival -> decision", &s.decision) + &line("arrival -> durable", &s.durable)
        })
    }
}

struct Tally {
    all: Histogram<u64>,
    scans: Histogram<u64>,
    ok: u64,
    refused: u64,
    events: u64,
    /// Events answered accepted, duplicate, rejected.
    outcomes: [u64; 3],
}

/// The events an answer counts as accepted, duplicate and rejected: `/v1/events` answers
/// the three counts, `/v1/scan` one event's `status` (422 when rejected); anything else
/// (429, 503, ...) counts none.
fn outcomes(path: &str, status: u16, body: &[u8]) -> [u64; 3] {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return [0; 3];
    };
    if path == "/v1/scan" {
        return match (status, v["status"].as_str()) {
            (200, Some("accepted")) => [1, 0, 0],
            (200, Some("duplicate")) => [0, 1, 0],
            (422, _) => [0, 0, 1],
            _ => [0; 3],
        };
    }
    if status != 200 {
        return [0; 3];
    }
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    [n("accepted"), n("duplicates"), n("rejected")]
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            all: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            scans: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            ok: 0,
            refused: 0,
            events: 0,
            outcomes: [0; 3],
        })
    }

    fn add(&mut self, o: &Tally) -> Result<()> {
        self.all.add(&o.all)?;
        self.scans.add(&o.scans)?;
        self.ok += o.ok;
        self.events += o.events;
        self.refused += o.refused;
        for (a, b) in self.outcomes.iter_mut().zip(o.outcomes) {
            *a += b;
        }
        Ok(())
    }
}

fn pct(h: &Histogram<u64>) -> [u64; 4] {
    if h.is_empty() {
        return [0; 4];
    }
    [
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ]
}

/// Runs one phase over `lines[from..to]`: closed loop when `rate` is `None`, else paced.
fn phase(
    addr: &str,
    lines: &[&[u8]],
    batch: usize,
    connections: usize,
    rate: Option<f64>,
    limit: Duration,
) -> Result<PhaseReport> {
    let requests: Vec<&[&[u8]]> = lines.chunks(batch.max(1)).collect();
    let requests = &requests;
    let next = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(Mutex::new(Tally::new()?));
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for _ in 0..connections {
            let next = next.clone();
            let total = total.clone();
            handles.push(s.spawn(move || -> Result<()> {
                let mut conn = Conn::open(addr)?;
                let mut t = Tally::new()?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() || started.elapsed() >= limit {
                        break;
                    }
                    // the moment this request is due: now (closed loop) or on the schedule
                    let due = match rate {
                        None => Instant::now(),
                        Some(r) => {
                            let due = started + Duration::from_secs_f64(i as f64 / r);
                            if let Some(w) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(w);
                            }
                            due
                        }
                    };
                    let (path, (status, body)) = match requests[i] {
                        [one] => (route(one), conn.post(route(one), one)?),
                        many => ("/v1/events", conn.post("/v1/events", &many.join(&b'\n'))?),
                    };
                    let us = (due.elapsed().as_micros() as u64).max(1);
                    for (a, b) in t.outcomes.iter_mut().zip(outcomes(path, status, &body)) {
                        *a += b;
                    }
                    if (200..300).contains(&status) {
                        t.ok += 1;
                        t.events += requests[i].len() as u64;
                        t.all.saturating_record(us);
                        if path == "/v1/scan" {
                            t.scans.saturating_record(us);
                        }
                    } else {
                        t.refused += 1;
                        if status == 429 {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                let mut tot = total
                    .lock()
                    .map_err(|_| anyhow::anyhow!("a driver thread panicked"))?;
                tot.add(&t)
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a driver thread panicked"))??;
        }
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let t = total
        .lock()
        .map_err(|_| anyhow::anyhow!("a driver thread panicked"))?;
    Ok(PhaseReport {
        ok: t.ok,
        refused: t.refused,
        events_accepted: t.outcomes[0],
        events_duplicate: t.outcomes[1],
        events_rejected: t.outcomes[2],
        seconds,
        per_s: t.ok as f64 / seconds,
        events_per_s: t.events as f64 / seconds,
        target_per_s: rate,
        all_us: pct(&t.all),
        scan_us: pct(&t.scans),
    })
}

/// The events still to send, phase after phase: each phase gets those no earlier one sent.
struct Feed<'a> {
    addr: &'a str,
    lines: Vec<&'a [u8]>,
    used: usize,
    batch: usize,
    connections: usize,
}

impl<'a> Feed<'a> {
    fn new(addr: &'a str, events: &'a [u8], batch: usize, connections: usize) -> Feed<'a> {
        Feed {
            addr,
            lines: crate::lines_of(events),
            used: 0,
            batch: batch.max(1),
            connections,
        }
    }

    /// Events no phase has sent yet.
    fn left(&self) -> usize {
        self.lines.len().saturating_sub(self.used)
    }

    /// One phase (closed loop when `rate` is None) of at most `secs` on the events left;
    /// `what` names it when none are left.
    fn phase(&mut self, rate: Option<f64>, secs: f64, what: &str) -> Result<PhaseReport> {
        let rest = &self.lines[self.used.min(self.lines.len())..];
        if rest.is_empty() {
            bail!(
                "no events left for {what}: the phases before it used all {} events; give more \
                 (--events) or shorten them (--max-secs)",
                self.lines.len()
            );
        }
        let p = phase(
            self.addr,
            rest,
            self.batch,
            self.connections,
            rate,
            Duration::from_secs_f64(secs),
        )?;
        self.used += ((p.ok + p.refused) as usize).saturating_mul(self.batch);
        Ok(p)
    }
}

/// Drives `addr` with the events in `events` (JSON lines), `batch` events per request (one:
/// scans to `/v1/scan`, the rest to `/v1/events`; more: all to `/v1/events`): first the closed loop for at most
/// `max_secs`, then the open loop at `fraction` of the rate found, for at most `paced_secs`, on
/// the events after those the first phase used. When the closed loop used them all, the
/// report has its figures and says in `paced_skipped` why the paced phase did not run.
pub fn run(addr: &str, events: &[u8], o: &Options, log: &mut dyn FnMut(&str)) -> Result<Report> {
    let Options {
        batch,
        connections,
        max_secs,
        paced_secs,
        fraction,
    } = *o;
    if !(0.0..=1.0).contains(&fraction) || fraction == 0.0 {
        bail!("--fraction must be in (0, 1], got {fraction}");
    }
    let mut feed = Feed::new(addr, events, batch, connections);
    log(&format!(
        "{} events; closed loop for up to {max_secs} s on {connections} connections",
        feed.lines.len()
    ));
    let max = feed.phase(None, max_secs, "the closed loop")?;
    if feed.left() == 0 {
        // the closed loop's figures are measured and worth having: report them, and say what
        // would have given the paced phase events (the closed loop's pace over both phases)
        let (n, secs) = (feed.lines.len(), max.seconds);
        let pace = n as f64 / secs.max(1e-9);
        let need = (pace * (max_secs + fraction * paced_secs) / 1000.0).ceil() as u64 * 1000;
        return Ok(Report {
            connections,
            max,
            paced: None,
            paced_skipped: Some(format!(
                "the paced phase did not run: the closed loop used all {n} events in {secs:.1} s \
                 and left none for it; give more events (about --events {need} for these phase \
                 lengths) or shorten the closed loop (--max-secs)"
            )),
            server: None,
        });
    }
    let rate = max.per_s * fraction;
    log(&format!(
        "max {:.0} req/s; open loop at {rate:.0}/s for up to {paced_secs} s",
        max.per_s
    ));
    let before = scrape(addr)?;
    let paced = feed.phase(Some(rate), paced_secs, "the paced phase")?;
    let server = match before {
        Some(b) => scrape(addr)?.and_then(|a| server_latency(&b, &a)),
        None => None,
    };
    Ok(Report {
        connections,
        max,
        paced: Some(paced),
        paced_skipped: None,
        server,
    })
}

/// A sweep: the closed loop's maximum, then one open-loop phase per offered rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sweep {
    /// Connections used.
    pub connections: usize,
    /// Events per request.
    pub batch: usize,
    /// Closed loop: maximum rate, at the start (on a fresh service: the rates offered are
    /// fractions of this).
    pub max: PhaseReport,
    /// Open loop at each offered rate, in the order run (rising).
    pub points: Vec<PhaseReport>,
    /// Closed loop again after the points, on the state they built: the maximum the last
    /// points were up against.
    pub max_end: PhaseReport,
}

impl Sweep {
    /// A readable table: offered, answered, refused and latency per point.
    pub fn table(&self) -> String {
        table(
            self.connections,
            self.batch,
            &self.max,
            &self.points,
            Some(&self.max_end),
        )
    }
}

/// The table of [`Sweep::table`], also of a sweep cut short (no closing closed loop).
fn table(
    connections: usize,
    batch: usize,
    max: &PhaseReport,
    points: &[PhaseReport],
    max_end: Option<&PhaseReport>,
) -> String {
    let end = max_end.map_or("not measured".to_string(), |m| {
        format!("{:.0} req/s", m.per_s)
    });
    let mut s = format!(
        "closed loop at the start: {:.0} req/s ({:.0} events/s) on {} connections, {} events a \
         request; at the end: {end}\n\
         {:>10} {:>10} {:>10} {:>8} | latency from schedule, ms: {:>8} {:>8} {:>8} {:>8}\n",
        max.per_s,
        max.events_per_s,
        connections,
        batch,
        "offered/s",
        "answered/s",
        "events/s",
        "refused",
        "p50",
        "p99",
        "p99.9",
        "max"
    );
    for p in points {
        let ms = |us: u64| us as f64 / 1000.0;
        s.push_str(&format!(
            "{:>10.0} {:>10.0} {:>10.0} {:>8} | {:>34.2} {:>8.2} {:>8.2} {:>8.2}\n",
            p.target_per_s.unwrap_or(0.0),
            p.per_s,
            p.events_per_s,
            p.refused,
            ms(p.all_us[0]),
            ms(p.all_us[1]),
            ms(p.all_us[2]),
            ms(p.all_us[3]),
        ));
    }
    s
}

/// Drives `addr` as [`run`] does, but with one open-loop phase of `secs` per fraction of the
/// closed loop's maximum in `fractions` (above 1 offers more than the maximum), each on
/// events no earlier phase used: where the service saturates, and what latency costs on
/// the way.
pub fn sweep(
    addr: &str,
    events: &[u8],
    o: &Options,
    fractions: &[f64],
    log: &mut dyn FnMut(&str),
) -> Result<Sweep> {
    if fractions.is_empty() || fractions.iter().any(|f| !f.is_finite() || *f <= 0.0) {
        bail!("--fractions must be positive numbers, got {fractions:?}");
    }
    let mut feed = Feed::new(addr, events, o.batch, o.connections);
    let max = feed.phase(None, o.max_secs, "the closed loop")?;
    log(&format!("max {:.0} req/s", max.per_s));
    // a sweep cut short (the events ran out) still shows what it measured
    let cut_short = |e: anyhow::Error, points: &[PhaseReport]| {
        e.context(format!(
            "the sweep stopped; measured before that:\n{}",
            table(o.connections, o.batch.max(1), &max, points, None)
        ))
    };
    let mut points = Vec::new();
    for f in fractions {
        let rate = max.per_s * f;
        log(&format!(
            "open loop at {f} of the maximum: {rate:.0}/s for up to {} s",
            o.paced_secs
        ));
        let p = feed
            .phase(
                Some(rate),
                o.paced_secs,
                &format!("the phase at {f} of the maximum"),
            )
            .map_err(|e| cut_short(e, &points))?;
        points.push(p);
    }
    let max_end = feed
        .phase(None, o.max_secs, "the closing closed loop")
        .map_err(|e| cut_short(e, &points))?;
    log(&format!("max at the end {:.0} req/s", max_end.per_s));
    Ok(Sweep {
        connections: o.connections,
        batch: feed.batch,
        max,
        points,
        max_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_what_happened_to_their_events() {
        let batch = br#"{"accepted":3,"duplicates":1,"rejected":2,"results":[]}"#;
        assert_eq!(outcomes("/v1/events", 200, batch), [3, 1, 2]);
        let scan = |s: &str| format!(r#"{{"id":"x","status":"{s}"}}"#).into_bytes();
        assert_eq!(outcomes("/v1/scan", 200, &scan("accepted")), [1, 0, 0]);
        assert_eq!(outcomes("/v1/scan", 200, &scan("duplicate")), [0, 1, 0]);
        assert_eq!(outcomes("/v1/scan", 422, &scan("rejected")), [0, 0, 1]);
        let busy = br#"{"error":"saturated","detail":"retry"}"#;
        assert_eq!(outcomes("/v1/events", 429, busy), [0; 3]);
        assert_eq!(outcomes("/v1/scan", 503, busy), [0; 3]);
        assert_eq!(outcomes("/v1/events", 200, b"not json"), [0; 3]);
    }

    #[test]
    fn scans_go_to_the_scan_endpoint_and_the_rest_to_events() {
        assert_eq!(route(br#"{"id":"x","type":"scan","ts":"t"}"#), "/v1/scan");
        assert_eq!(route(br#"{"id":"x","type":"click"}"#), "/v1/events");
        assert_eq!(
            route(br#"{"id":"x","type":"order","note":"scan"}"#),
            "/v1/events"
        );
    }

    #[test]
    fn server_latency_is_the_difference_of_two_scrapes() {
        let text = |counts: [u64; 4], other: u64| {
            let mut s = String::from("# HELP x\n");
            for (name, c) in [
                ("omnistream_ingest_decision_seconds", counts),
                ("omnistream_ingest_durable_seconds", [other; 4]),
            ] {
                for (le, n) in ["0.001", "0.002", "0.004", "+Inf"].iter().zip(c) {
                    s.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {n}\n"));
                }
                s.push_str(&format!("{name}_count {}\n", c[3]));
            }
            s
        };
        // before: 100 requests, all within 1 ms (a closed loop the phase must not count)
        let before = parse_buckets(&text([100, 100, 100, 100], 7));
        // after: 1,000 more, 500 within 1 ms, 490 in (1, 2] ms, 10 in (2, 4] ms
        let after = parse_buckets(&text([600, 1090, 1100, 1100], 7));
        let s = server_latency(&before, &after).unwrap();
        assert_eq!(s.decision.count, 1000);
        assert!((s.decision.within_2ms - 0.99).abs() < 1e-9);
        // rank 500 is the last of the first bucket
        assert!((s.decision.ms[0] - 1.0).abs() < 1e-9, "{:?}", s.decision);
        // rank 990 is the last of the second
        assert!((s.decision.ms[1] - 2.0).abs() < 1e-9, "{:?}", s.decision);
        // rank 999 is 9 of the 10 in (2, 4] ms: 2 + 2 × 0.9
        assert!((s.decision.ms[2] - 3.8).abs() < 1e-9, "{:?}", s.decision);
        // nothing observed in the durable histogram between the two
        assert_eq!(s.durable.count, 0);
        assert_eq!(s.durable.ms, [0.0; 3]);
        // a scrape without the histograms gives no server view
        assert_eq!(server_latency(&before, &parse_buckets("up 1\n")), None);
    }

    #[test]
    fn a_quantile_above_the_last_bound_is_that_bound() {
        let after = parse_buckets(
            "omnistream_ingest_decision_seconds_bucket{le=\"0.002\"} 1\n\
             omnistream_ingest_decision_seconds_bucket{le=\"+Inf\"} 10\n",
        );
        let q = quantiles(&[], &after[SERVER_HISTOGRAMS[0]]);
        assert_eq!(q.count, 10);
        assert!((q.ms[1] - 2.0).abs() < 1e-9, "{q:?}");
        assert!((q.within_2ms - 0.1).abs() < 1e-9);
    }

    fn phase_of(accepted: u64, duplicate: u64, rejected: u64) -> PhaseReport {
        PhaseReport {
            ok: accepted + duplicate + rejected,
            refused: 0,
            events_accepted: accepted,
            events_duplicate: duplicate,
            events_rejected: rejected,
            seconds: 1.0,
            per_s: 1.0,
            events_per_s: 1.0,
            target_per_s: None,
            all_us: [1; 4],
            scan_us: [1; 4],
        }
    }

    #[test]
    fn a_phase_of_mostly_duplicates_or_rejections_is_called_out() {
        let report = |max: PhaseReport, paced: PhaseReport| Report {
            connections: 1,
            max,
            paced: Some(paced),
            paced_skipped: None,
            server: None,
        };
        let warned = |r: &Report| {
            r.table()
                .contains("measured the service turning events away")
        };
        // a fresh store, and a few duplicates (retries): ingest was measured
        assert!(!warned(&report(phase_of(100, 0, 0), phase_of(60, 40, 0))));
        // a rerun on the same store: the closed loop met only what it had sent before
        let rerun = report(phase_of(0, 19_892, 0), phase_of(900, 0, 0));
        let table = rerun.table();
        assert!(warned(&rerun), "{table}");
        assert!(table.contains("the closed loop measured"), "{table}");
        assert!(table.contains("19892 of its 19892 events"), "{table}");
        assert!(table.contains("fresh data directory"), "{table}");
        assert!(!table.contains("the open loop measured"), "{table}");
        // mostly rejected (too_late on a store that holds later events) counts the same
        let late = report(phase_of(100, 0, 0), phase_of(10, 5, 30));
        assert!(
            late.table().contains("the open loop measured"),
            "{}",
            late.table()
        );
    }

    #[test]
    fn a_report_without_a_paced_phase_shows_the_closed_loop() {
        let r = Report {
            connections: 8,
            max: phase_of(20_000, 0, 0),
            paced: None,
            paced_skipped: Some("the paced phase did not run".into()),
            server: None,
        };
        let table = r.table();
        assert!(table.contains("closed loop (max)"), "{table}");
        assert!(
            table.contains("events, closed loop: 20000 accepted"),
            "{table}"
        );
        assert!(table.contains("did not run"), "{table}");
        assert!(!table.contains("events, open loop"), "{table}");
    }

    #[test]
    fn percentiles_of_an_empty_histogram_are_zero() -> Result<()> {
        let t = Tally::new()?;
        assert_eq!(pct(&t.all), [0; 4]);
        Ok(())
    }
}

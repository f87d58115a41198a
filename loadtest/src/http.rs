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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A keep-alive HTTP/1.1 connection that sends one request at a time.
struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            addr: addr.to_string(),
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends one POST and reads the whole answer; returns the status code.
    fn post(&mut self, path: &str, body: &[u8]) -> Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("not an HTTP answer: {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
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
        self.reader.read_exact(&mut body)?;
        Ok(status)
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
    /// Open loop at a fraction of the maximum rate.
    pub paced: PhaseReport,
}

impl Report {
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
            row("open loop (paced)", &self.paced),
        )
    }
}

struct Tally {
    all: Histogram<u64>,
    scans: Histogram<u64>,
    ok: u64,
    refused: u64,
    events: u64,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            all: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            scans: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            ok: 0,
            refused: 0,
            events: 0,
        })
    }

    fn add(&mut self, o: &Tally) -> Result<()> {
        self.all.add(&o.all)?;
        self.scans.add(&o.scans)?;
        self.ok += o.ok;
        self.events += o.events;
        self.refused += o.refused;
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
                    let (path, status) = match requests[i] {
                        [one] => (route(one), conn.post(route(one), one)?),
                        many => ("/v1/events", conn.post("/v1/events", &many.join(&b'\n'))?),
                    };
                    let us = (due.elapsed().as_micros() as u64).max(1);
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

    /// One phase (closed loop when `rate` is None) of at most `secs` on the events left;
    /// `what` names it when none are left.
    fn phase(&mut self, rate: Option<f64>, secs: f64, what: &str) -> Result<PhaseReport> {
        let rest = &self.lines[self.used.min(self.lines.len())..];
        if rest.is_empty() {
            bail!("no events left for {what}: generate more events");
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
/// the events after those the first phase used.
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
    let rate = max.per_s * fraction;
    log(&format!(
        "max {:.0} req/s; open loop at {rate:.0}/s for up to {paced_secs} s",
        max.per_s
    ));
    let paced = feed.phase(Some(rate), paced_secs, "the paced phase")?;
    Ok(Report {
        connections,
        max,
        paced,
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
        let mut s = format!(
            "closed loop at the start: {:.0} req/s ({:.0} events/s) on {} connections, {} events a \
             request; at the end: {:.0} req/s\n\
             {:>10} {:>10} {:>10} {:>8} | latency from schedule, ms: {:>8} {:>8} {:>8} {:>8}\n",
            self.max.per_s,
            self.max.events_per_s,
            self.connections,
            self.batch,
            self.max_end.per_s,
            "offered/s",
            "answered/s",
            "events/s",
            "refused",
            "p50",
            "p99",
            "p99.9",
            "max"
        );
        for p in &self.points {
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
    let mut points = Vec::new();
    for f in fractions {
        let rate = max.per_s * f;
        log(&format!(
            "open loop at {f} of the maximum: {rate:.0}/s for up to {} s",
            o.paced_secs
        ));
        points.push(feed.phase(
            Some(rate),
            o.paced_secs,
            &format!("the phase at {f} of the maximum"),
        )?);
    }
    let max_end = feed.phase(None, o.max_secs, "the closing closed loop")?;
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
    fn scans_go_to_the_scan_endpoint_and_the_rest_to_events() {
        assert_eq!(route(br#"{"id":"x","type":"scan","ts":"t"}"#), "/v1/scan");
        assert_eq!(route(br#"{"id":"x","type":"click"}"#), "/v1/events");
        assert_eq!(
            route(br#"{"id":"x","type":"order","note":"scan"}"#),
            "/v1/events"
        );
    }

    #[test]
    fn percentiles_of_an_empty_histogram_are_zero() -> Result<()> {
        let t = Tally::new()?;
        assert_eq!(pct(&t.all), [0; 4]);
        Ok(())
    }
}

//! `omnistream demo`: the service on embedded defaults plus the built-in generator feeding it
//! over HTTP at a modest rate, so a newcomer sees the live board fill within seconds.

use omnistream_loadtest::Scenario;
use omnistream_schemas::EventTime;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Posts one batch of JSON lines; returns the HTTP status.
fn post(addr: &str, body: &[u8]) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: demo\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    Ok(std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Whether the service answers `/readyz` with 200 now.
fn ready(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// Waits until the service answers `/readyz`.
fn wait_ready(addr: &str) -> bool {
    for _ in 0..300 {
        if ready(addr) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The scenario's `k`-th round: its own seed (new consumers, codes and event ids, so nothing
/// is a duplicate of an earlier round) and its event time right after the round before, so
/// the demo goes on for as long as the service runs.
fn round(base: &Scenario, k: u64) -> anyhow::Result<Scenario> {
    let t0 = EventTime::parse(&base.start)
        .map_err(|e| anyhow::anyhow!("scenario start {}: {}", base.start, e.0))?;
    let shift_us = (k as i64)
        .saturating_mul(base.duration as i64)
        .saturating_mul(1_000_000);
    let mut sc = base.clone();
    sc.seed = base.seed.wrapping_add(k);
    sc.start = EventTime {
        unix_us: t0.unix_us.saturating_add(shift_us),
        ..t0
    }
    .to_string();
    Ok(sc)
}

/// Generates `scenario` round after round (see [`round`]) and posts it to `addr` at about
/// `rate` events per second, in batches, for `rounds` rounds (0: until the service stops);
/// runs on its own thread beside the server.
pub fn feed(addr: String, scenario: String, rate: u64, rounds: u64) -> anyhow::Result<()> {
    let base = Scenario::load(&scenario)?;
    if !wait_ready(&addr) {
        anyhow::bail!("the service at {addr} never became ready");
    }
    super::note(format_args!(
        "demo: feeding scenario {scenario} at about {rate}/s, {} events a round, each round with \
         new consumers and {} more minutes of event time, {}; open http://{addr}/",
        base.events,
        base.duration / 60,
        match rounds {
            0 => "until Ctrl-C".to_string(),
            1 => "for 1 round".to_string(),
            n => format!("for {n} rounds"),
        }
    ));
    let batch = (rate / 10).clamp(1, 1000) as usize;
    let started = Instant::now();
    let mut sent = 0usize;
    let last = if rounds == 0 { u64::MAX } else { rounds };
    for k in 0..last {
        let sc = round(&base, k)?;
        let mut events = Vec::new();
        omnistream_loadtest::generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {})?;
        for chunk in omnistream_loadtest::lines_of(&events).chunks(batch) {
            let body = chunk.join(&b'\n');
            let code = match post(&addr, &body) {
                Ok(code) => code,
                // Ctrl-C: the service answered what it had and stopped taking requests
                Err(_) if !ready(&addr) => {
                    super::note(format_args!(
                        "demo: the service is stopping; {sent} events were sent in {:.0} s \
                         ({} rounds begun)",
                        started.elapsed().as_secs_f64(),
                        k + 1
                    ));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            if code == 401 || code == 403 {
                // every later request would be refused alike: say so instead of "sent"
                anyhow::bail!(
                    "the service refused the generated events ({code}): the demo sends them \
                     without a token; run it with auth.enabled = false"
                );
            }
            if code == 429 || code == 503 {
                std::thread::sleep(Duration::from_secs(1));
            }
            sent += chunk.len();
            // pace by the wall clock: `sent` events should take sent / rate seconds
            let due = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        tracing::info!(
            round = k + 1,
            sent,
            "demo: a round of generated events sent"
        );
    }
    super::note(format_args!(
        "demo: sent {sent} events in {:.0} s; the service keeps running (Ctrl-C stops it)",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

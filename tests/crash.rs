//! Crash exactness: the service is killed with SIGKILL at ten seeded points of a generated
//! stream (some while a batch is in flight), restarted each time, and the client re-sends
//! what was not acknowledged; the final state must equal one uninterrupted run's, byte for
//! byte. The interrupted run checkpoints every 700 events and holds at most 500 entities (the
//! uninterrupted one: defaults, everything in memory, embedded store), so the kills also
//! strike around checkpoints and restarts restore from them. Once on the embedded store,
//! once on the CQL store (`cql_` test: needs `OMNISTREAM_TEST_CQL=host:port`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Small enough that the smoke stream checkpoints and passivates many times.
const BOUNDED: [(&str, &str); 2] = [
    ("OMNISTREAM_CHECKPOINT_EVERY_EVENTS", "700"),
    ("OMNISTREAM_RESIDENT_ENTITIES", "500"),
];

/// The service process; killed when dropped, so a failing test leaves none behind.
struct Proc(Child);

impl Proc {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(drop)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn start(dir: &Path, env: &[(String, String)]) -> (Proc, String) {
    start_args(dir, env, &[])
}

fn start_args(dir: &Path, env: &[(String, String)], args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("OMNISTREAM_LOG", "error")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    (Proc(child), addr)
}

fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((
        code,
        resp.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

fn snapshot(addr: &str) -> String {
    let (code, body) = request(addr, "GET", "/v1/admin/snapshot", b"").unwrap();
    assert_eq!(code, 200);
    body
}

fn batches() -> Vec<Vec<u8>> {
    let sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    let mut events = Vec::new();
    omnistream_loadtest::generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {}).unwrap();
    let lines = omnistream_loadtest::lines_of(&events);
    lines.chunks(100).map(|c| c.join(&b'\n')).collect()
}

#[test]
fn ten_sigkills_lose_nothing_and_count_nothing_twice() {
    ten_sigkills(Vec::new(), Vec::new());
}

/// The same with three shards on both sides: each batch of 100 events is one epoch, logged
/// with its marker, so every restart (from a checkpoint written by three shards, with
/// passivated states spread over them) replays the committed epochs as they ran. Every
/// other pair of restarts comes up with two shards instead: the epochs it replays (and the
/// checkpoints it restores) were written by three, and it must run them as they ran.
#[test]
fn ten_sigkills_on_three_shards_lose_nothing_and_count_nothing_twice() {
    ten_sigkills(Vec::new(), vec![("OMNISTREAM_SHARDS".into(), "3".into())]);
}

/// The same on the CQL store: every restart opens the keyspace, restores the last checkpoint
/// written there and replays the committed tail from the node.
#[test]
fn cql_ten_sigkills_lose_nothing_and_count_nothing_twice() {
    let node = std::env::var("OMNISTREAM_TEST_CQL")
        .expect("set OMNISTREAM_TEST_CQL=127.0.0.1:9042 (or skip the cql_ tests)");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000;
    let cfg = omnistream::config::CqlConfig {
        contact_points: vec![node.clone()],
        keyspace: format!("t_crash_{}_{nanos}", std::process::id()),
        read_consistency: "ONE".into(),
        write_consistency: "ONE".into(),
        ..Default::default()
    };
    omnistream::cql::migrate(&cfg).unwrap();
    ten_sigkills(
        vec![
            ("OMNISTREAM_STORE".into(), "cql".into()),
            (
                "OMNISTREAM_CQL__CONTACT_POINTS".into(),
                format!("[\"{node}\"]"),
            ),
            ("OMNISTREAM_CQL__KEYSPACE".into(), cfg.keyspace.clone()),
            ("OMNISTREAM_CQL__READ_CONSISTENCY".into(), "ONE".into()),
            ("OMNISTREAM_CQL__WRITE_CONSISTENCY".into(), "ONE".into()),
            // each restart takes the killed run's writer lease over after the margin, 1 s
            // at the shortest lease (3 s at the default)
            ("OMNISTREAM_CQL__LEASE_S".into(), "5".into()),
        ],
        Vec::new(),
    );
}

/// The file source under kills: `run --input FILE` (20 lines a batch, up to 8 in flight),
/// with the small checkpoint interval and resident bound, is killed with SIGKILL once its
/// durable position passes each of six seeded points of the file and started again with the
/// same file; read to the end, the state must be the one of the same events posted to one
/// uninterrupted run.
#[test]
fn sigkills_of_a_file_being_read_lose_nothing_and_count_nothing_twice() {
    let batches = batches();
    let whole = tempfile::tempdir().unwrap();
    let (mut a, addr) = start(whole.path(), &[]);
    for b in &batches {
        assert_eq!(request(&addr, "POST", "/v1/events", b).unwrap().0, 200);
    }
    let expected = snapshot(&addr);
    a.kill().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("feed.jsonl");
    let mut text = batches.join(&b'\n');
    text.push(b'\n');
    std::fs::write(&file, &text).unwrap();
    let len = text.len() as u64;
    let bounded: Vec<(String, String)> = BOUNDED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let data = dir.path().join("data");
    let args = ["--input", file.to_str().unwrap(), "--input-batch", "20"];
    let position = |addr: &str| -> u64 {
        let (_, stats) = request(addr, "GET", "/v1/stats", b"").unwrap();
        let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
        stats["inputs"][0]["position"].as_u64().unwrap()
    };
    let wait_past = |addr: &str, at: u64| -> u64 {
        let started = std::time::Instant::now();
        loop {
            let p = position(addr);
            if p >= at {
                return p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "stuck at {p} < {at}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut seed: u64 = 0x0000_f11e_5eed;
    let mut points: Vec<u64> = (0..6)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % len
        })
        .collect();
    points.sort_unstable();
    let mut midway = 0;
    for at in points {
        let (mut child, addr) = start_args(&data, &bounded, &args);
        if wait_past(&addr, at) < len {
            midway += 1;
        }
        child.kill().unwrap();
    }
    let (mut child, addr) = start_args(&data, &bounded, &args);
    wait_past(&addr, len);
    let got = snapshot(&addr);
    child.kill().unwrap();
    assert!(
        midway >= 4,
        "only {midway} of the kills struck before the end of the file"
    );
    assert!(
        got == expected,
        "state after SIGKILLs of the file source differs from one uninterrupted run"
    );
}

/// Kills the service at ten seeded points with `store` (environment) plus a small checkpoint
/// interval and resident bound, and compares with one uninterrupted run on the embedded store;
/// `both` (environment) applies to both runs.
fn ten_sigkills(store: Vec<(String, String)>, both: Vec<(String, String)>) {
    let bounded: Vec<(String, String)> = BOUNDED
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(store)
        .chain(both.iter().cloned())
        .collect();
    let batches = batches();
    let whole = tempfile::tempdir().unwrap();
    let (mut a, addr) = start(whole.path(), &both);
    for b in &batches {
        assert_eq!(request(&addr, "POST", "/v1/events", b).unwrap().0, 200);
    }
    let expected = snapshot(&addr);
    a.kill().unwrap();

    // ten kill points from a fixed seed; odd ones strike while a batch is in flight
    let mut seed: u64 = 0x005e_ed0f_c4a5;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut points: Vec<usize> = (0..10).map(|_| (next() as usize) % batches.len()).collect();
    points.sort_unstable();
    points.dedup();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut addr) = start(dir.path(), &bounded);
    // with several shards, every other pair of restarts comes up with two (one shard would
    // run the next requests event by event, another order: see the README)
    let several = both
        .iter()
        .any(|(k, v)| k == "OMNISTREAM_SHARDS" && v != "1");
    let restart_env = |k: usize| -> Vec<(String, String)> {
        let mut env = bounded.clone();
        if several && k % 4 < 2 {
            env.push(("OMNISTREAM_SHARDS".into(), "2".into()));
        }
        env
    };
    for (i, b) in batches.iter().enumerate() {
        if let Some(k) = points.iter().position(|p| *p == i) {
            if k % 2 == 1 {
                let (a2, b2) = (addr.clone(), b.clone());
                let inflight = std::thread::spawn(move || request(&a2, "POST", "/v1/events", &b2));
                std::thread::sleep(Duration::from_millis(next() % 15));
                child.kill().unwrap();
                let _ = inflight.join();
                (child, addr) = start(dir.path(), &restart_env(k));
            } else {
                // acknowledged means durable: this batch is not sent again
                assert_eq!(request(&addr, "POST", "/v1/events", b).unwrap().0, 200);
                child.kill().unwrap();
                (child, addr) = start(dir.path(), &restart_env(k));
                continue;
            }
        }
        // at least once: a batch whose answer was lost is sent again; repeats are no-ops
        let (code, body) = request(&addr, "POST", "/v1/events", b).unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let got = snapshot(&addr);
    let (_, stats) = request(&addr, "GET", "/v1/stats", b"").unwrap();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(
        stats["shard"]["restored_from"].as_u64().unwrap() > 0,
        "the last start did not restore a checkpoint: {stats}"
    );
    child.kill().unwrap();
    assert!(points.len() >= 8, "kill points {points:?}");
    assert!(
        got == expected,
        "state after {} SIGKILLs differs from one uninterrupted run",
        points.len()
    );
}

//! Store outage (issue #10): the Cassandra node under a running service on `store = "cql"` is
//! stopped mid-stream (SIGTERM; in the other variants frozen with SIGSTOP, or killed with
//! SIGKILL), stays down for 20 s and is started again. Meanwhile the service must
//! say not-ready, refuse ingest with 503 and `Retry-After` (never another error, never hang
//! past the client's 30 s timeout), and come back by itself; the client re-offers what was
//! refused, and the final state (snapshot, every output, ledgers) must equal one uninterrupted
//! run's on the embedded store, with no reward paid twice.
//!
//! The node is this test's own, started through `ops/cassandra/cassandra.sh` with its own work
//! dir, ports (`OMNISTREAM_OUTAGE_CQL_PORT`, default 19042; storage port 17000) and a data dir
//! the launcher keeps across the stop, so the suite's shared node is never touched. Ignored by
//! default (it takes about two minutes and needs Java 17); `ops/test-all.sh` runs it after the
//! suite: `cargo test -p omnistream --test outage -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::Service;
use omnistream::config::CqlConfig;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the node stays down.
const DOWN: Duration = Duration::from_secs(20);
/// Events per request.
const BATCH: usize = 25;
/// Requests sent before the node is stopped.
const BEFORE: usize = 60;
/// Pause between requests until the outage is seen, so the stop lands mid-stream.
const PACE: Duration = Duration::from_millis(150);
/// Ready again at most this long after the node answers CQL again.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Every request, refusal included, is answered within this (the harness's read timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole outage phase, from the stop to the last batch accepted.
const OUTAGE_DEADLINE: Duration = Duration::from_secs(300);

/// The test's own Cassandra node, driven through the project's launcher.
#[derive(Clone)]
struct Node {
    home: PathBuf,
    data: PathBuf,
    port: u16,
    /// The commit log's sync mode (`CASSANDRA_COMMITLOG_SYNC`).
    commitlog: &'static str,
}

impl Node {
    fn launcher(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/ops/cassandra/cassandra.sh"
            ))
            .args(args)
            .env("OMNI_CASSANDRA_HOME", &self.home)
            .env("CASSANDRA_PORT", self.port.to_string())
            .env("CASSANDRA_STORAGE_PORT", "17000")
            .env("CASSANDRA_CLUSTER_NAME", "omnistream-outage")
            .env("CASSANDRA_COMMITLOG_SYNC", self.commitlog)
            .env_remove("CASSANDRA_DATA_DIR")
            .output()
            .map_err(|e| format!("cassandra.sh {args:?}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text.trim().to_string())
        } else {
            Err(format!("cassandra.sh {args:?} failed: {text}"))
        }
    }

    /// Launches the JVM on the data dir (kept by the launcher because it is named).
    fn launch(&self) -> Result<String, String> {
        self.launcher(&["start", self.data.to_str().unwrap()])
    }

    fn wait(&self) -> Result<String, String> {
        self.launcher(&["wait", "300"])
    }

    fn stop(&self) -> Result<String, String> {
        self.launcher(&["stop"])
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// How the node goes away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Stopped (the launcher's SIGTERM) and started again: connections are refused.
    Stop,
    /// Frozen with SIGSTOP and thawed with SIGCONT: connections stay open and nothing
    /// answers, so every request waits for its timeout (a hung node, a GC pause, a partition).
    Freeze,
    /// Killed with SIGKILL (no drain, no flush: a crashed node, an OOM kill) and started
    /// again; it replays its commit log. What it acknowledged must still be there.
    Kill,
}

impl Node {
    /// The JVM's pid, from the launcher's pidfile.
    fn pid(&self) -> Result<String, String> {
        let f = self.home.join("cassandra.pid");
        let pid = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let pid: String = pid.chars().filter(char::is_ascii_digit).collect();
        if pid.is_empty() {
            return Err(format!("no pid in {}", f.display()));
        }
        Ok(pid)
    }

    /// SIGKILL to the JVM, and waits (at most 10 s) until the process is gone.
    fn kill(&self) -> Result<(), String> {
        let pid = self.pid()?;
        self.signal("KILL")?;
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            // gone, or a zombie waiting to be reaped: either way it serves nothing
            match std::fs::read_to_string(&stat) {
                Err(_) => return Ok(()),
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    return Ok(())
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Err(format!("pid {pid} still running 10 s after SIGKILL"))
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the JVM.
    fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid()?;
        let st = Command::new("kill")
            .args([format!("-{signal}"), pid.clone()])
            .status()
            .map_err(|e| format!("kill -{signal} {pid}: {e}"))?;
        st.success()
            .then_some(())
            .ok_or_else(|| format!("kill -{signal} {pid}: {st}"))
    }
}

/// What the outage thread reports, with the time since the test started the stop.
enum Step {
    Stopped(Duration),
    Answering(Duration),
    Failed(String),
}

/// Owns the node and the thread that takes it down and up: on drop (also when the test
/// fails) the thread is told to give up, joined, and the node stopped, so no JVM outlives
/// the test.
struct Outage {
    node: Node,
    mode: Mode,
    abort: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Outage {
    /// Stops (or freezes) the node now, keeps it down for `DOWN`, starts (thaws) it again;
    /// reports each step.
    fn begin(&mut self, tx: mpsc::Sender<Step>) {
        let (node, abort, mode) = (self.node.clone(), self.abort.clone(), self.mode);
        self.thread = Some(std::thread::spawn(move || {
            let t0 = Instant::now();
            let down = match mode {
                Mode::Stop => node.stop().map(drop),
                Mode::Freeze => node.signal("STOP"),
                Mode::Kill => node.kill(),
            };
            if let Err(e) = down {
                let _ = tx.send(Step::Failed(e));
                return;
            }
            let _ = tx.send(Step::Stopped(t0.elapsed()));
            let down = Instant::now();
            while down.elapsed() < DOWN {
                if abort.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if abort.load(Ordering::SeqCst) {
                return;
            }
            let up = match mode {
                Mode::Stop | Mode::Kill => node.launch().map(drop),
                Mode::Freeze => node.signal("CONT"),
            };
            match up.and_then(|_| node.wait()) {
                Ok(_) => {
                    let _ = tx.send(Step::Answering(t0.elapsed()));
                }
                Err(e) => {
                    let _ = tx.send(Step::Failed(e));
                }
            }
        }));
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.abort.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.mode == Mode::Freeze {
            // a frozen JVM would sit out SIGTERM until the launcher's SIGKILL
            let _ = self.node.signal("CONT");
        }
        if let Err(e) = self.node.stop() {
            eprintln!("outage: {e}");
        }
    }
}

/// The smoke scenario as JSON-lines request bodies of `BATCH` events.
fn batches() -> Vec<String> {
    let sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    let mut events = Vec::new();
    omnistream_loadtest::generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {}).unwrap();
    let text = String::from_utf8(events).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines.chunks(BATCH).map(|c| c.join("\n")).collect()
}

/// One request through the harness (which panics on a read timeout of 30 s: a hang fails the
/// test); the status, the head and the body.
fn call(s: &Service, method: &str, path: &str, body: &str) -> (u16, String, String, Duration) {
    let t = Instant::now();
    let (code, head, body) = s.raw(
        &format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"),
        body.as_bytes(),
    );
    (code, head, body, t.elapsed())
}

fn post(s: &Service, batch: &str) -> (u16, String, String, Duration) {
    call(s, "POST", "/v1/events", batch)
}

fn ready(s: &Service) -> bool {
    let (code, _, body, _) = call(s, "GET", "/readyz", "");
    assert!(code == 200 || code == 503, "/readyz {code}: {body}");
    code == 200
}

/// Every output in order, as `(seq, output)` text, paged.
fn outputs(s: &Service) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut from = 0u64;
    for _ in 0..10_000 {
        let page = s.get(&format!("/v1/outputs?from={from}&limit=1000"));
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return all;
        }
        for it in items {
            all.push((it["seq"].as_u64().unwrap(), it["output"].to_string()));
        }
        from = page["next"].as_u64().unwrap();
    }
    panic!("more than 10,000 pages of outputs");
}

fn snapshot(s: &Service) -> String {
    let (code, text) = s.request_text("GET", "/v1/admin/snapshot", "");
    assert_eq!(code, 200, "{text}");
    text
}

/// The members with ledger entries, from the outputs.
fn ledger_members(outs: &[(u64, String)]) -> Vec<String> {
    let mut m: Vec<String> = outs
        .iter()
        .map(|(_, o)| serde_json::from_str::<Value>(o).unwrap())
        .filter(|o| o["output"] == "ledger")
        .map(|o| o["member"].as_str().unwrap().to_string())
        .collect();
    m.sort();
    m.dedup();
    m
}

fn cql_env(node: &Node, keyspace: &str) -> Vec<(String, String)> {
    vec![
        ("OMNISTREAM_STORE".into(), "cql".into()),
        (
            "OMNISTREAM_CQL__CONTACT_POINTS".into(),
            format!("[\"{}\"]", node.addr()),
        ),
        ("OMNISTREAM_CQL__KEYSPACE".into(), keyspace.into()),
        ("OMNISTREAM_CQL__READ_CONSISTENCY".into(), "ONE".into()),
        ("OMNISTREAM_CQL__WRITE_CONSISTENCY".into(), "ONE".into()),
        ("OMNISTREAM_LOG".into(), "warn,omnistream=info".into()),
    ]
}

fn start_cql(node: &Node, keyspace: &str) -> Service {
    let env = cql_env(node, keyspace);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Service::start_with(std::path::Path::new("/dev/null/no-data-dir"), &env)
}

/// What the client saw during the outage.
#[derive(Default, Debug)]
struct Seen {
    /// Index of the first refused batch.
    first_refused: Option<usize>,
    /// 503 answers to ingest, by error code.
    refusals: std::collections::BTreeMap<String, u32>,
    /// `/readyz` answered 503 at least once.
    not_ready: bool,
    /// A read of state answered 503 `not_ready` while not ready.
    read_refused: bool,
    /// Slowest refusal.
    slowest_refusal: Duration,
    /// Since the stop began: first refusal, first not-ready, node answering CQL, ready again.
    t_refused: Option<Duration>,
    t_not_ready: Option<Duration>,
    t_stopped: Option<Duration>,
    t_answering: Option<Duration>,
    t_ready: Option<Duration>,
}

/// The two tests share the node's work dir and ports: one at a time.
static ONE_NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
#[ignore = "stops and starts a Cassandra node of its own (about 2 minutes, Java 17): \
            cargo test -p omnistream --test outage -- --ignored --nocapture"]
fn store_outage_of_20_s_refuses_with_503_loses_nothing_and_resumes() {
    outage(Mode::Stop);
}

#[test]
#[ignore = "freezes a Cassandra node of its own with SIGSTOP (about 2 minutes, Java 17): \
            cargo test -p omnistream --test outage -- --ignored --nocapture"]
fn a_store_node_frozen_for_20_s_refuses_with_503_loses_nothing_and_resumes() {
    outage(Mode::Freeze);
}

#[test]
#[ignore = "kills a Cassandra node of its own with SIGKILL (about 2 minutes, Java 17): \
            cargo test -p omnistream --test outage -- --ignored --nocapture"]
fn a_store_node_killed_with_sigkill_for_20_s_loses_nothing_acknowledged_and_resumes() {
    outage(Mode::Kill);
}

fn outage(mode: Mode) {
    let _one = ONE_NODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = Instant::now();
    let batches = batches();
    assert!(batches.len() > BEFORE + 100, "{} batches", batches.len());

    let data = tempfile::tempdir().unwrap();
    let port = std::env::var("OMNISTREAM_OUTAGE_CQL_PORT")
        .ok()
        .map(|p| p.parse().expect("OMNISTREAM_OUTAGE_CQL_PORT is a port"))
        .unwrap_or(19042);
    let node = Node {
        // kept between runs: the launcher caches the resolved classpath there
        home: std::env::temp_dir().join("omnistream-cassandra-outage"),
        data: data.path().join("cassandra"),
        port,
        // the launcher's quick start (periodic sync, system tables outside the commit log)
        // lost the keyspace to a SIGKILL: the test of omnistream needs a node that keeps
        // what it acknowledged
        commitlog: if mode == Mode::Kill {
            "batch"
        } else {
            "periodic"
        },
    };
    let mut outage = Outage {
        node: node.clone(),
        mode,
        abort: Arc::new(AtomicBool::new(false)),
        thread: None,
    };
    // the JVM boots while the uninterrupted run goes on the embedded store
    eprintln!("outage: {}", node.launch().unwrap());

    let whole = tempfile::tempdir().unwrap();
    let reference = Service::start(whole.path());
    for b in &batches {
        let (code, _, body, _) = post(&reference, b);
        assert_eq!(code, 200, "{body}");
    }
    let want_snapshot = snapshot(&reference);
    let want_outputs = outputs(&reference);
    let members = ledger_members(&want_outputs);
    let want_ledgers: Vec<Value> = members
        .iter()
        .map(|m| reference.get(&format!("/v1/members/{m}/ledger?limit=1000")))
        .collect();
    reference.stop();

    eprintln!("outage: {}", node.wait().unwrap());
    let keyspace = "outage";
    let cfg = CqlConfig {
        contact_points: vec![node.addr()],
        keyspace: keyspace.into(),
        ..CqlConfig::default()
    };
    omnistream::cql::migrate(&cfg).unwrap();
    let s = start_cql(&node, keyspace);
    assert!(ready(&s));
    for b in &batches[..BEFORE] {
        let (code, _, body, _) = post(&s, b);
        assert_eq!(code, 200, "before the outage: {body}");
    }
    // frozen: a fresh start first, so that the requests during the freeze load entities'
    // states from the node (paged reads, which the driver's timeout does not bound: they
    // hung until the node thawed, with /readyz still ready), not only commit to it
    let s = if mode == Mode::Freeze {
        s.stop();
        let s = start_cql(&node, keyspace);
        assert!(ready(&s));
        s
    } else {
        s
    };

    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    outage.begin(tx);
    let mut seen = Seen::default();
    let mut i = BEFORE;
    let mut offers = 0u32;
    while i < batches.len() {
        assert!(
            t0.elapsed() < OUTAGE_DEADLINE,
            "batch {i} not accepted {OUTAGE_DEADLINE:?} after the stop began: {seen:?}"
        );
        offers += 1;
        assert!(offers < 5_000, "too many requests: {seen:?}");
        for step in rx.try_iter() {
            match step {
                Step::Stopped(t) => seen.t_stopped = Some(t),
                Step::Answering(t) => seen.t_answering = Some(t),
                Step::Failed(e) => panic!("the outage could not be staged: {e}"),
            }
        }
        let (code, head, body, took) = post(&s, &batches[i]);
        assert!(took < REQUEST_TIMEOUT, "batch {i} took {took:?}");
        match code {
            200 => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["rejected"], 0, "{v}");
                if seen.first_refused.is_some() && seen.t_ready.is_none() {
                    // accepted again: readiness must say so too
                    assert!(ready(&s), "ingest accepted while /readyz says not ready");
                    seen.t_ready = Some(t0.elapsed());
                }
                i += 1;
                if seen.first_refused.is_none() {
                    std::thread::sleep(PACE);
                }
            }
            503 => {
                let h = head.to_ascii_lowercase();
                assert!(
                    h.contains("\r\nretry-after: "),
                    "503 without Retry-After: {head}"
                );
                let v: Value = serde_json::from_str(&body).unwrap();
                let err = v["error"].as_str().unwrap_or_default().to_string();
                assert!(
                    err == "not_ready" || err == "store_unavailable",
                    "503 {body}"
                );
                assert!(v["detail"].is_string(), "{body}");
                seen.first_refused.get_or_insert(i);
                seen.t_refused.get_or_insert(t0.elapsed());
                *seen.refusals.entry(err).or_default() += 1;
                seen.slowest_refusal = seen.slowest_refusal.max(took);
                if !ready(&s) {
                    seen.not_ready = true;
                    seen.t_not_ready.get_or_insert(t0.elapsed());
                    let (code, _, body, _) = call(&s, "GET", "/v1/outputs?limit=1", "");
                    if code == 503 && body.contains("not_ready") {
                        seen.read_refused = true;
                    }
                }
                if let Some(up) = seen.t_answering {
                    assert!(
                        t0.elapsed() < up + READY_WITHIN,
                        "still refusing {READY_WITHIN:?} after the node answered again: {seen:?}"
                    );
                }
                // the client honours Retry-After (1 s)
                std::thread::sleep(Duration::from_secs(1));
            }
            _ => panic!("batch {i}: {code} {body}"),
        }
        let (code, _, _, _) = call(&s, "GET", "/healthz", "");
        assert_eq!(code, 200, "the process stays up");
    }
    let finished = t0.elapsed();
    // the driver may reconnect before the launcher's own probe answers: wait for its report
    while seen.t_answering.is_none() {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Step::Stopped(t)) => seen.t_stopped = Some(t),
            Ok(Step::Answering(t)) => seen.t_answering = Some(t),
            Ok(Step::Failed(e)) => panic!("the outage could not be staged: {e}"),
            Err(e) => panic!("no word from the outage thread: {e}"),
        }
    }
    eprintln!("outage: {seen:?}, stream finished {finished:?} after the stop began");
    let first = seen
        .first_refused
        .expect("no request was refused: the outage did not hit the stream");
    assert!(
        first < batches.len() - 1,
        "the outage came at the end of the stream"
    );
    assert!(seen.not_ready, "/readyz never said not ready: {seen:?}");
    // the longest a refusal may take is a commit's `request-timeout-ms` (5 s) × `write-attempts`
    // (3); one as long as the outage (20 s) waited on the node without a bound (a load's
    // paged read on the frozen node did, until the node thawed)
    assert!(
        seen.slowest_refusal < Duration::from_secs(18),
        "a refusal took as long as the outage: {seen:?}"
    );
    assert!(seen.read_refused, "no read was refused while not ready");
    let (answering, ready_again) = (seen.t_answering.unwrap(), seen.t_ready.unwrap());
    assert!(
        ready_again >= seen.t_stopped.unwrap() + DOWN,
        "ready again before the node came back: {seen:?}"
    );
    assert!(ready_again < answering + READY_WITHIN, "{seen:?}");

    // the final state equals the uninterrupted run's
    assert!(ready(&s));
    let got_snapshot = snapshot(&s);
    assert!(
        got_snapshot == want_snapshot,
        "state after the outage differs from the uninterrupted run ({} vs {} bytes)",
        got_snapshot.len(),
        want_snapshot.len()
    );
    let got_outputs = outputs(&s);
    assert_eq!(got_outputs.len(), want_outputs.len(), "number of outputs");
    if let Some(k) = (0..got_outputs.len()).find(|k| got_outputs[*k] != want_outputs[*k]) {
        panic!(
            "output {k} differs:\n  got  {:?}\n  want {:?}",
            got_outputs[k], want_outputs[k]
        );
    }
    for (m, want) in members.iter().zip(&want_ledgers) {
        let got = s.get(&format!("/v1/members/{m}/ledger?limit=1000"));
        assert_eq!(&got, want, "ledger of {m}");
    }
    // no reward twice: one scan_reward entry per scan event at most, one decision per scan
    let mut rewarded = std::collections::HashSet::new();
    let mut decided = std::collections::HashSet::new();
    let mut rewards = 0;
    for (_, o) in &got_outputs {
        let o: Value = serde_json::from_str(o).unwrap();
        let event = o["event"].as_str().unwrap_or_default().to_string();
        if o["output"] == "ledger" && o["reason"] == "scan_reward" {
            rewards += 1;
            assert!(
                rewarded.insert(event.clone()),
                "scan {event} rewarded twice"
            );
        }
        if o["output"] == "decision" {
            assert!(decided.insert(event.clone()), "scan {event} decided twice");
        }
    }
    assert!(rewards > 100, "{rewards} rewards");
    let state: omnistream_actors::engine::Snapshot = serde_json::from_str(&got_snapshot).unwrap();
    let broken = omnistream_loadtest::invariants::check(&state);
    assert!(broken.is_empty(), "invariants broken: {broken:?}");
    s.stop();

    // and it is in the keyspace: a fresh process replays it to the same state
    let s = start_cql(&node, keyspace);
    assert!(snapshot(&s) == want_snapshot, "the replayed state differs");
    s.stop();
    drop(outage);
    eprintln!(
        "outage ({mode:?}): passed in {:?}: {} events in {} requests, first refusal at batch {first} ({:?} after \
         the stop began), refusals {:?}, slowest refusal {:?}, node answering again at {answering:?}, \
         ready again at {ready_again:?}, {} outputs and {} ledgers equal to the uninterrupted run, \
         {rewards} scan rewards each paid once",
        started.elapsed(),
        batches.iter().map(|b| b.lines().count()).sum::<usize>(),
        batches.len(),
        seen.t_refused.unwrap(),
        seen.refusals,
        seen.slowest_refusal,
        got_outputs.len(),
        members.len(),
    );
}

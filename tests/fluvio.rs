//! Against a real Fluvio cluster, only when `OMNISTREAM_FLUVIO_ENDPOINT` is set (e.g.
//! `127.0.0.1:9003` after `fluvio cluster start --local`); otherwise each test prints that it
//! skipped and passes. Topic names get a per-run suffix, so runs do not see each other.
//! For a cluster that serves TLS, set the service's own `OMNISTREAM_FLUVIO__TLS*` variables
//! too: the processes the tests start inherit them, and the tests' own reader reads them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::Service;
use omnistream::config::FluvioConfig;
use omnistream::fluvio::client::{Client, FluvioTransport};
use omnistream::fluvio::mapping::Sink;
use omnistream::fluvio::source::RecordStream;
use omnistream::fluvio::Transport;
use std::process::Command;
use std::time::{Duration, Instant};

const SINKS: [(&str, &str); 8] = [
    ("DECISIONS", "decisions"),
    ("POINTS", "points"),
    ("MEMBERS", "members"),
    ("ORDER_UPDATES", "order-updates"),
    ("STOCK", "stock"),
    ("CREDIT", "credit"),
    ("ALERTS", "alerts"),
    ("DEAD_LETTER", "dead-letter"),
];
const INPUTS: [(&str, &str); 5] = [
    ("SCANS", "scans"),
    ("CLICKS", "clicks"),
    ("ORDERS", "orders"),
    ("VISITS", "visits"),
    ("OPS", "ops"),
];

fn endpoint() -> Option<String> {
    match std::env::var("OMNISTREAM_FLUVIO_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            eprintln!("skipped: set OMNISTREAM_FLUVIO_ENDPOINT=host:port to run against Fluvio");
            None
        }
    }
}

/// The environment that points omnistream at the cluster and this run's topics.
fn env(endpoint: &str, suffix: &str) -> Vec<(String, String)> {
    let mut v = vec![
        (
            "OMNISTREAM_FLUVIO__ENDPOINT".to_string(),
            endpoint.to_string(),
        ),
        ("OMNISTREAM_FLUVIO__CONSUMER".into(), format!("it-{suffix}")),
        ("OMNISTREAM_PII_KEY".into(), "service-test-key".into()),
    ];
    for (var, name) in INPUTS.iter().chain(SINKS.iter()) {
        v.push((
            format!("OMNISTREAM_FLUVIO__TOPICS__{var}"),
            format!("{name}-{suffix}"),
        ));
    }
    v
}

/// This run's topic-name suffix: the test's letter, the process id and the second.
fn suffix(letter: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{letter}{}-{secs}", std::process::id())
}

/// `cfg` with the TLS settings of the environment the service reads
/// (`OMNISTREAM_FLUVIO__TLS`, `__TLS_DOMAIN`, `__TLS_CA_FILE`, `__TLS_CERT_FILE`,
/// `__TLS_KEY_FILE`), so the tests' own client reaches a cluster that serves TLS.
fn tls_from_env(mut cfg: FluvioConfig) -> FluvioConfig {
    let var = |name: &str| std::env::var(format!("OMNISTREAM_FLUVIO__{name}")).ok();
    cfg.tls = var("TLS").is_some_and(|v| v == "true");
    cfg.tls_domain = var("TLS_DOMAIN");
    cfg.tls_ca_file = var("TLS_CA_FILE").map(Into::into);
    cfg.tls_cert_file = var("TLS_CERT_FILE").map(Into::into);
    cfg.tls_key_file = var("TLS_KEY_FILE").map(Into::into);
    cfg
}

/// Reads `topic`'s first `partitions` partitions from their start with the service's own
/// client code, round robin (each until it has nothing for 50 ms), and hands every record's
/// key and JSON value to `each` until it returns true or `limit` passes. No offsets are
/// committed on these streams, so the timeouts are harmless.
fn read_topic(
    endpoint: &str,
    topic: &str,
    partitions: u32,
    limit: Duration,
    mut each: impl FnMut(&[u8], serde_json::Value) -> bool,
) {
    let cfg = tls_from_env(FluvioConfig {
        endpoint: endpoint.to_string(),
        ..FluvioConfig::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect(&cfg).await.unwrap();
        let t = FluvioTransport { client };
        let mut streams = Vec::new();
        for p in 0..partitions {
            streams.push(t.open_stream(topic, p, 0).await.unwrap());
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            for s in &mut streams {
                while let Ok(Ok(Some(r))) =
                    tokio::time::timeout(Duration::from_millis(50), s.next()).await
                {
                    let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
                    if each(&r.key, v) {
                        return;
                    }
                }
            }
        }
    });
}

/// The `smoke` scenario's first `events` events in `dir/events.jsonl`, and how many lines.
fn smoke_file(dir: &std::path::Path, events: u64) -> (std::path::PathBuf, u64) {
    let mut sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    sc.events = events;
    let mut bytes = Vec::new();
    omnistream_loadtest::generate(&sc, &mut bytes, &mut std::io::sink(), &mut |_| {}).unwrap();
    let n = omnistream_loadtest::lines_of(&bytes).len() as u64;
    let file = dir.join("events.jsonl");
    std::fs::write(&file, &bytes).unwrap();
    (file, n)
}

fn omnistream(args: &[&str], env: &[(String, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "omnistream {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_generated_stream_through_fluvio_gives_its_decisions_on_the_output_topic() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let suffix = suffix("");
    let env = env(&endpoint, &suffix);
    let created = omnistream(&["topics", "create"], &env);
    assert!(
        created.contains(&format!("scans-{suffix}: created")),
        "{created}"
    );

    let dir = tempfile::tempdir().unwrap();
    // enough that the scans partition (~40% of events, ~300 bytes each) holds more than one
    // 1 MB fetch: the 0.50.1 client skipped the batch cut at that boundary (see client.rs)
    let (file, n) = smoke_file(dir.path(), 20_000);
    let produced = omnistream(
        &["produce", file.to_str().unwrap(), "--topic", "auto"],
        &env,
    );
    assert!(produced.contains(&format!("scans-{suffix}")), "{produced}");

    let mut service_env = env.clone();
    service_env.push(("OMNISTREAM_FLUVIO__ENABLED".into(), "true".into()));
    let refs: Vec<(&str, &str)> = service_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let s = Service::start_with(&dir.path().join("data"), &refs);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = s.get("/v1/stats");
        let sh = &st["shard"];
        let seen = ["applied", "duplicates", "rejected"]
            .iter()
            .map(|k| sh[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        if seen >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {n} consumed: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let decisions = s.get("/v1/decisions?limit=1000")["items"]
        .as_array()
        .unwrap()
        .len();
    assert!(decisions > 0);

    // read the decisions topic back
    let mut got = 0usize;
    read_topic(
        &endpoint,
        &format!("decisions-{suffix}"),
        1,
        Duration::from_secs(60),
        |key, v| {
            assert_eq!(v["output"], "decision", "{v}");
            assert!(String::from_utf8_lossy(key).starts_with("member/"));
            got += 1;
            got == decisions
        },
    );
    assert_eq!(got, decisions, "decisions on the topic");
    assert!(Sink::ALL.len() == SINKS.len());
    s.stop();
}

/// The load generator's paced feed (`loadtest stream --rate R | omnistream produce -`, here
/// the same `Paced` writer into `produce`'s standard input): records reach the topics while
/// the pipe is still being written, not at its end, and every line is produced once.
#[test]
fn a_paced_pipe_is_produced_as_it_arrives() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    use std::io::Write;
    let suffix = suffix("p");
    let env = env(&endpoint, &suffix);
    omnistream(&["topics", "create"], &env);
    let mut sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    sc.events = 4_000;
    let lines = omnistream_loadtest::generated_lines(&sc).unwrap();
    let scans = lines
        .iter()
        .filter(|l| String::from_utf8_lossy(l).contains(r#""type":"scan""#))
        .count();
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["produce", "-"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let n = lines.len();
    // 4,000 lines at 500 a second: the feed cannot end before 8 s
    let writer = std::thread::spawn(move || {
        let mut p = omnistream_loadtest::paced::Paced::new(stdin, Some(500.0));
        for l in &lines {
            p.write_all(l).unwrap();
            p.write_all(b"\n").unwrap();
        }
    });
    let topic = format!("scans-{suffix}");
    let mut first = false;
    read_topic(&endpoint, &topic, 1, Duration::from_secs(30), |_, _| {
        first = true;
        true
    });
    assert!(first, "no record on {topic}");
    assert!(
        !writer.is_finished(),
        "the first record arrived only after the feed ended"
    );
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let produced: usize = text
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)?
                .strip_suffix(" records")?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(produced, n, "{text}");
    assert!(
        text.contains(&format!("{topic}: {scans} records")),
        "{text}"
    );
    let mut read = 0usize;
    read_topic(&endpoint, &topic, 1, Duration::from_secs(30), |_, _| {
        read += 1;
        read == scans
    });
    assert_eq!(read, scans, "records on {topic}");
}

#[test]
fn a_cluster_that_is_not_there_is_named_in_the_error() {
    // needs no cluster: runs always
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["topics", "create"])
        .env("OMNISTREAM_FLUVIO__ENDPOINT", &ep)
        .env("OMNISTREAM_FLUVIO__CONNECT_TIMEOUT_MS", "2000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&ep), "{err}");
}

/// Two `omnistream cluster` processes against the cluster (on the CQL store too when
/// `OMNISTREAM_TEST_CQL` names a node), one of them killed (SIGKILL) and
/// started again mid-stream: every scan gets its decision on the decisions topic (as many
/// distinct ones as a replay of the file makes; the sinks are at least once), and process 0,
/// stopped with SIGTERM, reports every record taken once.
#[test]
fn two_cluster_processes_over_fluvio_decide_every_scan_once() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let suffix = suffix("c");
    let mut env = env(&endpoint, &suffix);
    env.push(("OMNISTREAM_FLUVIO__PARTITIONS".into(), "2".into()));
    env.push(("OMNISTREAM_CLUSTER__PROCESSES".into(), "2".into()));
    // small epochs and frequent checkpoints, so the kill below lands mid-stream and after a
    // checkpoint
    env.push(("OMNISTREAM_CLUSTER__EPOCH_RECORDS".into(), "100".into()));
    env.push(("OMNISTREAM_CLUSTER__COMMIT_EPOCHS".into(), "10".into()));
    env.push((
        "OMNISTREAM_CLUSTER__CONTROL_TOPIC".into(),
        format!("epochs-{suffix}"),
    ));
    env.push((
        "OMNISTREAM_CLUSTER__EXCHANGE_TOPIC".into(),
        format!("exchange-{suffix}"),
    ));
    let created = omnistream(&["topics", "create"], &env);
    assert!(
        created.contains(&format!("exchange-{suffix}: created")),
        "{created}"
    );
    // with a CQL node at hand too, the processes keep their states there (a keyspace each)
    let mut cluster_env = env.clone();
    if let Ok(node) = std::env::var("OMNISTREAM_TEST_CQL") {
        for (k, v) in [
            ("OMNISTREAM_STORE", "cql".to_string()),
            ("OMNISTREAM_CQL__CONTACT_POINTS", format!("[\"{node}\"]")),
            (
                "OMNISTREAM_CQL__KEYSPACE",
                format!("fl_{}", suffix.replace('-', "_")),
            ),
            ("OMNISTREAM_CQL__READ_CONSISTENCY", "ONE".into()),
            ("OMNISTREAM_CQL__WRITE_CONSISTENCY", "ONE".into()),
        ] {
            cluster_env.push((k.into(), v));
        }
        let migrated = omnistream(&["migrate", "--cluster"], &cluster_env);
        assert!(
            migrated.contains("_p1: schema version none -> 4"),
            "{migrated}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (file, n) = smoke_file(dir.path(), 15_000);
    // how many decisions the events make: one per scan taken (a replay of the file)
    let out = dir.path().join("replay");
    omnistream(
        &[
            "replay",
            "-i",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    );
    let want = std::fs::read_to_string(out.join("outputs.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""output":"decision""#))
        .count();
    assert!(want > 100, "{want}");
    omnistream(
        &["produce", file.to_str().unwrap(), "--topic", "auto"],
        &env,
    );
    // each process's HTTP port (/metrics), chosen free here so the test knows it
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        })
        .collect();
    let start = |p: usize| {
        Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["cluster", "--listen", &format!("127.0.0.1:{}", ports[p])])
            .arg("--data-dir")
            .arg(dir.path().join(format!("p{p}")))
            .envs(cluster_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("OMNISTREAM_CLUSTER__PROCESS", p.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    let mut procs: Vec<std::process::Child> = (0..2).map(start).collect();
    let topic = format!("decisions-{suffix}");
    let mut seen = std::collections::HashSet::new();
    let mut records = 0usize;
    let mut killed = false;
    read_topic(&endpoint, &topic, 2, Duration::from_secs(300), |_, v| {
        assert_eq!(v["output"], "decision", "{v}");
        seen.insert(v["scan_event"].to_string());
        records += 1;
        // mid-stream: the epochs take longer than this (about half a second each on debug
        // builds here)
        if !killed && started.elapsed() > Duration::from_secs(4) {
            killed = true;
            procs[1].kill().unwrap();
            procs[1].wait().unwrap();
            std::thread::sleep(Duration::from_secs(1));
            procs[1] = start(1);
        }
        seen.len() == want
    });
    eprintln!(
        "{} distinct decisions in {records} records after {:.1} s",
        seen.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(killed, "process 1 was not killed");
    let got = seen.len();
    // both serve their metrics while they run
    for port in &ports {
        let (code, body) = common::http_get(&format!("127.0.0.1:{port}"), "/metrics", None);
        assert_eq!(code, 200, "{body}");
        let epochs = body
            .lines()
            .find_map(|l| l.strip_prefix("omnistream_cluster_epochs_total "))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(epochs.is_some_and(|e| e > 0.0), "{body}");
        assert!(body.contains("omnistream_ready 1"), "{body}");
    }
    let mut reports = Vec::new();
    for child in procs {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{text}{err}");
        for l in err
            .lines()
            .filter(|l| l.contains("skipped") || l.contains("again"))
        {
            eprintln!("{l}");
        }
        reports.push(serde_json::from_str::<serde_json::Value>(text.trim()).unwrap());
    }
    eprintln!("{reports:?}");
    assert_eq!(got, want, "decisions on {topic}");
    let count = |r: &serde_json::Value, keys: &[&str]| -> u64 {
        keys.iter().map(|k| r[k].as_u64().unwrap()).sum()
    };
    // process 0 counts every record (it writes the dead letters); process 1 resumed from a
    // checkpoint and applied the rest of the same epochs
    assert_eq!(
        count(&reports[0], &["events", "duplicates", "rejected"]),
        n,
        "{reports:?}"
    );
    // killed mid-stream: after its restart (from its last checkpoint, or from the start when
    // it had none yet) it had epochs left to apply
    assert!(reports[1]["epochs"].as_u64().unwrap() > 0, "{reports:?}");
}

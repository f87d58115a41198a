//! The CQL store against a real database: store behaviour (commit, replay across buckets,
//! ledger paging, positions, recovery of a half-written commit, migrate twice, a newer schema
//! refused) and the service scenarios of `tests/service.rs` on `store = "cql"`, each test in a
//! keyspace of its own. Needs a node: `OMNISTREAM_TEST_CQL=host:port` (see `need_cql`).
//!
//! The benchmark is an ignored test:
//! `cargo test --release -p omnistream --test cql -- --ignored cql_bench --nocapture`
//! (`OMNISTREAM_BENCH_EVENTS`, default 100000, and `OMNISTREAM_BENCH_COMMIT`, events per
//! commit, default 2048, the service's `group-commit-events`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{observe, script, Service};
use omnistream::config::CqlConfig;
use omnistream::cql::{self, CqlStore};
use omnistream::store::{Batch, CheckpointWrite, Store};
use omnistream_actors::cold::Kind;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The node's address; fails (never skips) without one, saying how to get one.
fn need_cql() -> String {
    std::env::var("OMNISTREAM_TEST_CQL").unwrap_or_else(|_| {
        panic!(
            "the CQL tests need a Cassandra or ScyllaDB node: set OMNISTREAM_TEST_CQL=127.0.0.1:9042 \
             after `bash ops/cassandra/cassandra.sh start && bash ops/cassandra/cassandra.sh wait 300`, \
             or run `bash ops/test-all.sh` (which does both); skip them with `cargo test -- --skip cql_`"
        )
    })
}

/// A fresh keyspace name per test and run, so tests neither see nor disturb each other.
fn keyspace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000;
    let mut t: String = test.chars().take(24).collect();
    t.retain(|c| c.is_ascii_alphanumeric() || c == '_');
    format!("t_{t}_{}_{nanos}", std::process::id())
}

fn config(test: &str) -> CqlConfig {
    CqlConfig {
        contact_points: vec![need_cql()],
        keyspace: keyspace(test),
        read_consistency: "ONE".into(),
        write_consistency: "ONE".into(),
        ..CqlConfig::default()
    }
}

fn migrated(test: &str) -> CqlConfig {
    let cfg = config(test);
    let m = cql::migrate(&cfg).unwrap();
    assert_eq!((m.from, m.to), (None, cql::SCHEMA_VERSION));
    cfg
}

fn replay_all(s: &dyn Store, from: u64) -> (u64, Vec<(u64, Vec<u8>)>) {
    let mut seen = Vec::new();
    let next = s
        .replay(from, &mut |k, v| seen.push((k, v.to_vec())))
        .unwrap();
    (next, seen)
}

fn body(tag: &str, n: u64) -> Vec<u8> {
    format!("{{\"{tag}\":{n}}}").into_bytes()
}

#[test]
fn cql_store_commits_replays_across_buckets_and_survives_reopening() {
    let cfg = migrated("store");
    // seqs straddle the event bucket boundary (65536), as a long-lived log does
    let first = (1u64 << cql::EVENT_BUCKET_BITS) - 6;
    let mut s = CqlStore::open(&cfg).unwrap();
    assert_eq!(s.next_output().unwrap(), 0);
    assert_eq!(replay_all(&s, 0), (0, vec![]), "a fresh keyspace is empty");
    for part in 0..3u64 {
        let seqs = first + part * 4..first + part * 4 + 4;
        let b = Batch {
            checkpoint: None,
            truncate_below: None,
            events: seqs.clone().map(|q| (q, body("e", q))).collect(),
            outputs: seqs.clone().map(|q| (q, body("o", q))).collect(),
            ledger: vec![],
            positions: vec![("http".into(), seqs.end)],
            ..Batch::default()
        };
        s.commit(&b).unwrap();
    }
    let end = first + 12;
    let (next, seen) = replay_all(&s, first);
    assert_eq!(next, end);
    let want: Vec<(u64, Vec<u8>)> = (first..end).map(|q| (q, body("e", q))).collect();
    assert_eq!(
        seen, want,
        "every event once, in seq order, across two partitions"
    );
    let (_, tail) = replay_all(&s, first + 7);
    assert_eq!(tail.first().map(|r| r.0), Some(first + 7));
    assert_eq!(s.next_output().unwrap(), end);
    let o = s.outputs(65535, 3).unwrap();
    assert_eq!(
        o.iter().map(|r| r.0).collect::<Vec<_>>(),
        [65535, 65536, 65537]
    );
    assert_eq!(o[1].1, body("o", 65536));
    assert_eq!(s.position("http").unwrap(), Some(end));
    assert_eq!(s.position("kafka").unwrap(), None);
    drop(s);
    let s = CqlStore::open(&cfg).unwrap();
    assert_eq!(
        replay_all(&s, first),
        (end, want),
        "the same after reopening"
    );
    assert_eq!(s.next_output().unwrap(), end);
    assert_eq!(s.position("http").unwrap(), Some(end));
}

#[test]
fn cql_ledger_pages_in_entry_order_across_member_buckets() {
    let cfg = migrated("ledger");
    let mut s = CqlStore::open(&cfg).unwrap();
    let n = (1u64 << cql::LEDGER_BUCKET_BITS) + 10; // 4106 entries: two partitions
    let entry = |q: u64| format!("{{\"seq\":{q}}}").into_bytes();
    let b = Batch {
        checkpoint: None,
        truncate_below: None,
        events: vec![(0, b"{}".to_vec())],
        outputs: vec![],
        ledger: (1..=n)
            .map(|q| ("m1".to_string(), q, entry(q)))
            .chain([("m2".to_string(), 1, entry(1))])
            .collect(),
        positions: vec![],
        ..Batch::default()
    };
    s.commit(&b).unwrap();
    assert_eq!(
        s.ledger("m1", 0, 5).unwrap(),
        (1..=5).map(entry).collect::<Vec<_>>()
    );
    let across = s.ledger("m1", 4090, 20).unwrap();
    assert_eq!(
        across,
        (4090..=n).map(entry).collect::<Vec<_>>(),
        "to the end, across buckets"
    );
    assert_eq!(
        s.ledger("m1", 4094, 4).unwrap(),
        (4094..4098).map(entry).collect::<Vec<_>>(),
        "a page ends at its limit, across the bucket boundary"
    );
    assert_eq!(s.ledger("m1", 0, 100_000).unwrap().len() as u64, n);
    assert_eq!(s.ledger("m2", 0, 10).unwrap(), vec![entry(1)]);
    assert!(s.ledger("nobody", 0, 10).unwrap().is_empty());
}

/// Output rows expire after `outputs-ttl-s` (the database drops them); the event log and the
/// ledger do not.
#[test]
fn cql_outputs_expire_after_their_ttl_and_the_log_and_ledger_stay() {
    let mut cfg = migrated("ttl");
    cfg.outputs_ttl_s = 2;
    let mut s = CqlStore::open(&cfg).unwrap();
    s.commit(&Batch {
        events: vec![(0, body("e", 0)), (1, body("e", 1))],
        outputs: vec![(0, body("o", 0)), (1, body("o", 1))],
        ledger: vec![("m1".into(), 1, body("l", 1))],
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(s.outputs(0, 10).unwrap().len(), 2);
    std::thread::sleep(std::time::Duration::from_millis(3_500));
    assert_eq!(s.outputs(0, 10).unwrap(), vec![], "expired");
    assert_eq!(replay_all(&s, 0).1.len(), 2, "the log has no TTL");
    assert_eq!(s.ledger("m1", 0, 10).unwrap().len(), 1, "nor the ledger");
    // new outputs still get their seqs after the expired ones
    assert_eq!(s.next_output().unwrap(), 2);
}

#[test]
fn cql_a_half_written_commit_is_neither_replayed_nor_served() {
    let cfg = migrated("halfwritten");
    let mut s = CqlStore::open(&cfg).unwrap();
    s.commit(&Batch {
        checkpoint: None,
        truncate_below: None,
        events: vec![(0, body("e", 0)), (1, body("e", 1))],
        outputs: vec![(0, body("o", 0))],
        ledger: vec![("m1".into(), 1, body("l", 1))],
        positions: vec![("http".into(), 2)],
        ..Batch::default()
    })
    .unwrap();
    drop(s);
    // what a crash between the data rows and the marker leaves: rows past the marker and the
    // pending ledger keys
    let ks = cfg.keyspace.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(need_cql())
            .build()
            .await
            .unwrap();
        for q in [
            format!("INSERT INTO {ks}.events (bucket, seq, body) VALUES (0, 2, 0x7b7d)"),
            format!("INSERT INTO {ks}.outputs (bucket, seq, body) VALUES (0, 1, 0x7b7d)"),
            format!(
                "INSERT INTO {ks}.ledger (member, bucket, seq, body) VALUES ('m1', 0, 2, 0x7b7d)"
            ),
            format!(
                "UPDATE {ks}.positions SET pending = textAsBlob('[[\"m1\",2]]') WHERE shard = 0"
            ),
        ] {
            session.query_unpaged(q, &[]).await.unwrap();
        }
    });
    let mut s = CqlStore::open(&cfg).unwrap();
    let (next, seen) = replay_all(&s, 0);
    assert_eq!(next, 2, "the marker, not the rows, says what is committed");
    assert_eq!(seen.len(), 2);
    assert_eq!(s.next_output().unwrap(), 1);
    assert_eq!(s.outputs(0, 10).unwrap().len(), 1);
    assert_eq!(
        s.ledger("m1", 0, 10).unwrap(),
        vec![body("l", 1)],
        "the unfinished commit's ledger row was removed"
    );
    // the next commit takes the same seqs and overwrites the leftovers
    s.commit(&Batch {
        checkpoint: None,
        truncate_below: None,
        events: vec![(2, body("e", 2))],
        outputs: vec![(1, body("o", 1))],
        ledger: vec![("m1".into(), 2, body("l", 2))],
        positions: vec![("http".into(), 3)],
        ..Batch::default()
    })
    .unwrap();
    let (next, seen) = replay_all(&s, 0);
    assert_eq!(next, 3);
    assert_eq!(seen[2], (2, body("e", 2)));
    assert_eq!(
        s.ledger("m1", 0, 10).unwrap(),
        vec![body("l", 1), body("l", 2)]
    );
}

#[test]
fn cql_a_write_that_fails_for_good_names_table_and_key_and_keeps_nothing() {
    let cfg = CqlConfig {
        write_attempts: 2,
        ..migrated("failing")
    };
    let mut s = CqlStore::open(&cfg).unwrap();
    s.commit(&Batch {
        checkpoint: None,
        truncate_below: None,
        events: vec![(0, body("e", 0))],
        outputs: vec![],
        ledger: vec![],
        positions: vec![("http".into(), 1)],
        ..Batch::default()
    })
    .unwrap();
    // take the table away under the open store: every write to it now fails
    let ks = cfg.keyspace.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(need_cql())
            .build()
            .await
            .unwrap();
        session
            .query_unpaged(format!("DROP TABLE {ks}.outputs"), &[])
            .await
            .unwrap();
    });
    let e = s
        .commit(&Batch {
            checkpoint: None,
            truncate_below: None,
            events: vec![(1, body("e", 1)), (2, body("e", 2))],
            outputs: vec![(0, body("o", 0)), (1, body("o", 1))],
            ledger: vec![],
            positions: vec![("http".into(), 3)],
            ..Batch::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("outputs") && e.contains("bucket 0 seq 0..+2") && e.contains("2 attempts"),
        "{e}"
    );
    // the marker did not move: the events that did land are not part of the log
    let (next, seen) = replay_all(&s, 0);
    assert_eq!((next, seen.len()), (1, 1));
    assert_eq!(s.position("http").unwrap(), Some(1));
}

#[test]
fn cql_migrate_twice_is_a_no_op_and_a_newer_schema_is_refused() {
    let cfg = config("migrate");
    let e = CqlStore::open(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("omnistream migrate") && e.contains(&cfg.keyspace),
        "{e}"
    );
    let first = cql::migrate(&cfg).unwrap();
    assert_eq!(first.from, None);
    assert!(first.statements >= 6, "{first:?}");
    let again = cql::migrate(&cfg).unwrap();
    let v = cql::SCHEMA_VERSION;
    assert_eq!((again.from, again.statements), (Some(v), 0), "{again:?}");
    CqlStore::open(&cfg).unwrap();
    // a keyspace of schema 1 (before checkpoints) is refused until migrated, and then
    // gains the checkpoint tables (3 statements), the state table of each kind (12) and
    // the lease table (1)
    cql::force_schema_version(&cfg, 1).unwrap();
    let e = CqlStore::open(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("older") && e.contains("omnistream migrate"),
        "{e}"
    );
    let up = cql::migrate(&cfg).unwrap();
    assert_eq!(
        (up.from, up.to, up.statements, up.states_copied),
        (Some(1), v, 3 + Kind::ALL.len() + 1, 0),
        "{up:?}"
    );
    CqlStore::open(&cfg).unwrap();

    cql::force_schema_version(&cfg, cql::SCHEMA_VERSION + 1).unwrap();
    let e = CqlStore::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("newer") && e.contains(&cfg.keyspace), "{e}");
    let e = cql::migrate(&cfg).unwrap_err().to_string();
    assert!(e.contains("newer"), "{e}");
    // and the binary says so and exits non-zero
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .envs(cql_env(&cfg))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("schema version {}, newer than this binary", v + 1)),
        "{err}"
    );
}

#[test]
fn cql_check_config_reports_the_cluster_and_the_schema() {
    let cfg = config("checkconfig");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(args)
            .envs(cql_env(&cfg))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["check-config"]);
    assert_eq!(code, Some(2), "not migrated yet: {out}{err}");
    assert!(out.contains("keyspace") && out.contains("absent"), "{out}");
    assert!(err.contains("omnistream migrate"), "{err}");
    let (code, out, _) = run(&["migrate"]);
    assert_eq!(code, Some(0), "{out}");
    let v = cql::SCHEMA_VERSION;
    assert!(out.contains(&format!("none -> {v}")), "{out}");
    let (code, out, _) = run(&["migrate"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("{v} -> {v} (0 statements)")), "{out}");
    let (code, out, err) = run(&["check-config"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("# cql: cluster \"") && out.contains(", release "),
        "{out}"
    );
    assert!(
        out.contains(&format!("present, schema version {v}")),
        "{out}"
    );
    assert!(out.contains("no process writes it now"), "{out}");
    // the keyspaces of a cluster's processes: checked with --cluster, made by migrate --cluster
    let cluster = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(args)
            .envs(cql_env(&cfg))
            .env("OMNISTREAM_CLUSTER__PROCESSES", "2")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = cluster(&["check-config", "--cluster"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "{}_p0 is not migrated: run `omnistream migrate --cluster`",
            cfg.keyspace
        )),
        "{out}"
    );
    let (code, out) = cluster(&["migrate", "--cluster"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cluster(&["check-config", "--cluster"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("keyspace {}_p1 present", cfg.keyspace))
            && out.contains("2 keyspaces ready"),
        "{out}"
    );
}

/// The environment that points `omnistream` at the test keyspace.
/// The launcher's TLS files (`ops/cassandra/cassandra.sh` makes them at start): `ca.pem`, the
/// node's certificate, and `other-ca.pem`, one the node does not use.
fn tls_dir() -> std::path::PathBuf {
    let dir = std::env::var("OMNISTREAM_TEST_CQL_TLS")
        .unwrap_or_else(|_| "/tmp/omnistream-cassandra/tls".into());
    let dir = std::path::PathBuf::from(dir);
    assert!(
        dir.join("ca.pem").is_file(),
        "no {}/ca.pem: start the node with ops/cassandra/cassandra.sh (it makes the TLS files) \
         or set OMNISTREAM_TEST_CQL_TLS to the directory holding them",
        dir.display()
    );
    dir
}

/// With `tls = true` the store talks TLS to the node and verifies its certificate: the CA the
/// node's certificate comes from connects (library and CLI), another one is refused. The
/// node asks TLS clients for a certificate from the test CA (mutual TLS): ours connects,
/// none is refused by the node.
#[test]
fn cql_tls_connects_with_the_node_certificate_and_refuses_another() {
    let dir = tls_dir();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let mut cfg = config("tls");
    cfg.tls = true;
    cfg.tls_ca_file = Some(dir.join("ca.pem"));
    // no client certificate: the node refuses the handshake, and says why in its alert; on
    // a loaded machine the node's reset can overtake the alert (seen once, session 34, with
    // the crash tests running beside it), so the reason is looked for in up to three refusals
    let mut refusals = Vec::new();
    for _ in 0..3 {
        let e = match cql::migrate(&cfg) {
            Ok(_) => panic!("the node let a TLS client in without a certificate"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("127.0.0.1"), "names the node: {e}");
        let why = e.to_lowercase().contains("certificate");
        refusals.push(e);
        if why {
            break;
        }
    }
    assert!(
        refusals
            .last()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "says why: {refusals:?}"
    );
    cfg.tls_cert_file = Some(fixtures.join("client.pem"));
    cfg.tls_key_file = Some(fixtures.join("client-key.pem"));
    let m = cql::migrate(&cfg).unwrap();
    assert_eq!(m.to, cql::SCHEMA_VERSION);
    let s = CqlStore::open(&cfg).unwrap();
    assert_eq!(s.next_output().unwrap(), 0);
    drop(s);
    let mut env = cql_env(&cfg);
    env.push(("OMNISTREAM_CQL__TLS".into(), "true".into()));
    env.push((
        "OMNISTREAM_CQL__TLS_CA_FILE".into(),
        dir.join("ca.pem").display().to_string(),
    ));
    for (var, file) in [("CERT", "client.pem"), ("KEY", "client-key.pem")] {
        env.push((
            format!("OMNISTREAM_CQL__TLS_{var}_FILE"),
            fixtures.join(file).display().to_string(),
        ));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .arg("check-config")
        .envs(env)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("# cql: cluster \""), "{text}");
    // a certificate the node's is not signed by: the handshake fails, nothing connects
    cfg.tls_ca_file = Some(dir.join("other-ca.pem"));
    let e = match CqlStore::open(&cfg) {
        Ok(_) => panic!("connected while trusting a certificate the node does not have"),
        Err(e) => e.to_string(),
    };
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

fn cql_env(cfg: &CqlConfig) -> Vec<(String, String)> {
    vec![
        ("OMNISTREAM_STORE".into(), "cql".into()),
        (
            "OMNISTREAM_CQL__CONTACT_POINTS".into(),
            format!("[\"{}\"]", cfg.contact_points[0]),
        ),
        ("OMNISTREAM_CQL__KEYSPACE".into(), cfg.keyspace.clone()),
        ("OMNISTREAM_CQL__READ_CONSISTENCY".into(), "ONE".into()),
        ("OMNISTREAM_CQL__WRITE_CONSISTENCY".into(), "ONE".into()),
        ("OMNISTREAM_LOG".into(), "warn".into()),
    ]
}

fn start(cfg: &CqlConfig) -> Service {
    start_bounded(cfg, &[])
}

fn start_bounded(cfg: &CqlConfig, more: &[(&str, &str)]) -> Service {
    // the data dir must stay unused: prove it by pointing it at a path that cannot be created
    let mut env = cql_env(cfg);
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Service::start_with(std::path::Path::new("/dev/null/no-data-dir"), &env)
}

/// A TCP forwarder from a port of its own to the node, started `after` from now: until then
/// nothing listens there, as on a node still booting. Answers the port.
fn late_proxy(after: std::time::Duration) -> u16 {
    use std::net::{TcpListener, TcpStream};
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = need_cql();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        for client in l.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&node) else {
                return;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

/// Started before its node answers, the service waits for it (`store-wait-s`) and then
/// works; with nothing to wait for it gives up after the setting, naming it.
#[test]
fn cql_service_waits_for_a_node_that_is_not_up_yet_and_gives_up_after_store_wait_s() {
    let mut cfg = migrated("svc_wait");
    let port = late_proxy(std::time::Duration::from_secs(3));
    cfg.contact_points = vec![format!("127.0.0.1:{port}")];
    let t = Instant::now();
    let s = start(&cfg);
    let waited = t.elapsed();
    assert!(waited.as_secs_f64() >= 2.5, "did not wait: {waited:?}");
    assert_eq!(s.get("/readyz")["status"], "ready");
    let r = s.post(&script());
    assert_eq!(r["accepted"], 14, "{r}");
    s.stop();

    // nothing ever listens: start-up fails after the wait, with the reason and the setting
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.contact_points = vec![format!("127.0.0.1:{closed}")];
    let err = gives_up_after_2_s(&cfg);
    assert!(
        err.contains("cannot connect") && err.contains("store-wait-s = 2"),
        "{err}"
    );
    assert!(err.contains("store not reachable yet"), "it retried: {err}");
}

/// `run` with `store-wait-s = 2` on a store it cannot use: it must stop with status 2 after
/// the whole wait (it once gave up at the last backoff step before it, 1.5 s of 2); its
/// standard error.
fn gives_up_after_2_s(cfg: &CqlConfig) -> String {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .envs(cql_env(cfg))
        .env("OMNISTREAM_STORE_WAIT_S", "2")
        .env("OMNISTREAM_PII_KEY", "service-test-key")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(t.elapsed().as_secs_f64() >= 2.0, "{:?}", t.elapsed());
    err
}

#[test]
fn cql_service_the_scripted_day_gives_the_expected_state_over_http() {
    let cfg = migrated("svc_day");
    let s = start(&cfg);
    assert_eq!(s.get("/readyz")["status"], "ready");
    let r = s.post(&script());
    assert_eq!(r["accepted"], 14, "{r}");
    let o = observe(&s);
    assert_eq!(o["member"]["balance"], 100, "{o}");
    assert_eq!(o["same_member"], true, "{o}");
    let ledger = o["ledger"]["entries"].as_array().unwrap();
    let sum: i64 = ledger.iter().map(|e| e["delta"].as_i64().unwrap()).sum();
    assert_eq!(sum, 100, "{o}");
    assert_eq!(o["scanner"]["balance"], 20);
    assert_eq!(o["stock"]["atp"], 39, "{o}");
    assert_eq!(o["credit"]["held"].as_array().unwrap().len(), 0, "{o}");
    assert_eq!(o["credit"]["exposure"], 20000, "{o}");
    let again = s.post(&script());
    assert_eq!(again["duplicates"], 14);
    assert_eq!(observe(&s), o);
    s.stop();
    // and it is all in the keyspace: a fresh store replays 14 events, after the entry that
    // says which rules they ran under (the first start logs it)
    let store = CqlStore::open(&cfg).unwrap();
    let (next, logged) = replay_all(&store, 0);
    assert_eq!(next, 15);
    assert!(logged[0].1.starts_with(br#"{"admin":"rules""#));
    let events = logged
        .iter()
        .filter(|(_, v)| !v.starts_with(b"{\"admin\""))
        .count();
    assert_eq!(events, 14);
}

#[test]
fn cql_service_bad_requests_get_4xx_and_dead_letters_are_stored() {
    let cfg = migrated("svc_bad");
    let s = start(&cfg);
    let (code, v) = s.request("POST", "/v1/events", " [ ] ");
    assert_eq!((code, v["error"].as_str()), (400, Some("empty")), "{v}");
    let mut events = script();
    events.insert(1, r#"{"id":"nope","type":"scan"}"#.to_string());
    let r = s.post(&events);
    assert_eq!(
        (r["accepted"].as_u64(), r["rejected"].as_u64()),
        (Some(14), Some(1)),
        "{r}"
    );
    let dead = s.get("/v1/outputs?output=dead_letter");
    assert_eq!(dead["items"].as_array().unwrap().len(), 1, "{dead}");
    let (code, _) = s.request("GET", "/v1/members/nobody", "");
    assert_eq!(code, 404);
    s.stop();
}

#[test]
fn cql_service_restarts_after_sigterm_and_sigkill_reach_the_same_state_as_one_run() {
    let events = script();
    let whole = migrated("svc_whole");
    let s = start(&whole);
    s.post(&events);
    let expected = observe(&s);
    s.stop();

    let cfg = migrated("svc_restart");
    // a long writer lease (40 s: its margin, 15 s, is waited after a takeover; an expiry
    // would take 32 s at least): the restart after the SIGKILL must not wait for it
    let long = [("OMNISTREAM_CQL__LEASE_S", "40")];
    let s = start_bounded(&cfg, &long);
    s.post(&events[..5]);
    s.stop();
    let s = start_bounded(&cfg, &long);
    s.post(&events[5..9]);
    // answered means durable: a SIGKILL right after loses nothing acknowledged
    s.kill();
    // the killed run's lease is taken over (same host), on another port too
    let t = Instant::now();
    let s = start_bounded(&cfg, &long);
    assert!(
        t.elapsed().as_secs() < 28,
        "waited for the lease: {:?}",
        t.elapsed()
    );
    let r = s.post(&events);
    assert_eq!(r["duplicates"], 9, "the first nine were kept: {r}");
    assert_eq!(observe(&s), expected);
    s.stop();
}

fn checkpoint(seq: u64, states: &[(Kind, &str, &str)], seen: Vec<u8>) -> CheckpointWrite {
    CheckpointWrite {
        seq,
        states: states
            .iter()
            .map(|(k, key, v)| (*k, (*key).into(), v.as_bytes().to_vec()))
            .collect(),
        global: b"{\"global\":1}".to_vec(),
        seen,
        filter: Vec::new(),
        extras: b"{}".to_vec(),
    }
}

fn load(s: &CqlStore, kind: Kind, key: &str) -> Option<String> {
    let cold = s.cold().unwrap();
    let v = cold.load(kind, key).unwrap();
    v.map(|b| String::from_utf8(b).unwrap())
}

/// Once a checkpoint is durable, the rows it replaced (older generations of the keys it
/// wrote) are deleted in the background: a key rewritten by three checkpoints ends with one
/// row, and loads see the newest state throughout.
#[test]
fn cql_a_durable_checkpoint_deletes_the_rows_it_replaced_in_the_background() {
    let cfg = migrated("ckpt_clean");
    let s = CqlStore::open(&cfg).unwrap();
    for (seq, v) in [(1, "v1"), (2, "v2"), (3, "v3")] {
        let cp = checkpoint(seq, &[(Kind::Member, "m1", v)], vec![]);
        s.checkpointer().unwrap().write(&cp).unwrap();
        assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some(v));
    }
    let ks = cfg.keyspace.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rows = rt.block_on(async {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(need_cql())
            .build()
            .await
            .unwrap();
        let q = format!("SELECT gen FROM {ks}.state_member WHERE key = ?");
        let mut rows = 0;
        // the cleanups run after each checkpoint returned: give them a few seconds
        for _ in 0..50 {
            let r = session
                .query_unpaged(q.as_str(), ("m1",))
                .await
                .unwrap()
                .into_rows_result()
                .unwrap();
            rows = r.rows_num();
            if rows == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        rows
    });
    assert_eq!(rows, 1, "older generations of m1 still there");
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("v3"));
}

#[test]
fn cql_checkpoints_restore_states_and_blobs_never_read_an_unfinished_one_and_drop_the_log() {
    // with the read cache of states and without it
    for cache_mb in [64, 0] {
        checkpoints_case(cache_mb);
    }
}

/// A batch that carries a checkpoint writes it after the batch, through the store and
/// through its committer, as the embedded store does (a cluster process checkpoints in its
/// commits; the CQL store once dropped them, so a restarted process started from nothing).
#[test]
fn cql_a_batch_carrying_a_checkpoint_writes_it() {
    let cfg = migrated("batch_ckpt");
    let mut s = CqlStore::open(&cfg).unwrap();
    s.commit(&Batch {
        outputs: vec![(0, body("o", 0))],
        checkpoint: Some(CheckpointWrite {
            extras: b"{\"place\":1}".to_vec(),
            ..checkpoint(0, &[(Kind::Member, "m1", "v1")], vec![1])
        }),
        ..Batch::default()
    })
    .unwrap();
    let cp = s
        .last_checkpoint()
        .unwrap()
        .expect("the batch's checkpoint");
    assert_eq!(cp.extras, b"{\"place\":1}");
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("v1"));
    s.committer()
        .unwrap()
        .commit(&Batch {
            checkpoint: Some(CheckpointWrite {
                extras: b"{\"place\":2}".to_vec(),
                ..checkpoint(0, &[(Kind::Member, "m1", "v2")], vec![2])
            }),
            ..Batch::default()
        })
        .unwrap();
    drop(s);
    let s = CqlStore::open(&cfg).unwrap();
    let cp = s
        .last_checkpoint()
        .unwrap()
        .expect("the committer's checkpoint");
    assert_eq!((cp.extras, cp.seen), (b"{\"place\":2}".to_vec(), vec![2]));
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("v2"));
}

fn checkpoints_case(cache_mb: u64) {
    let mut cfg = migrated(&format!("ckpt_{cache_mb}"));
    cfg.cache_mb = cache_mb;
    let mut s = CqlStore::open(&cfg).unwrap();
    assert!(s.last_checkpoint().unwrap().is_none());
    assert_eq!(load(&s, Kind::Member, "m1"), None);
    s.commit(&Batch {
        events: (0..4).map(|n| (n, body("e", n))).collect(),
        ..Batch::default()
    })
    .unwrap();
    // a blob over one chunk (1 MiB) comes back whole and in order
    let seen: Vec<u8> = (0..(3 << 19)).map(|i: u32| (i % 251) as u8).collect();
    let first = checkpoint(
        3,
        &[(Kind::Member, "m1", "v1"), (Kind::Code, "c1", "c")],
        seen.clone(),
    );
    s.checkpointer().unwrap().write(&first).unwrap();
    let cp = s.last_checkpoint().unwrap().unwrap();
    assert_eq!((cp.seq, &cp.seen, &cp.global), (3, &seen, &first.global));
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("v1"));
    assert_eq!(load(&s, Kind::Code, "c1").as_deref(), Some("c"));
    assert_eq!(load(&s, Kind::Code, "m1"), None, "kinds are apart");
    if cache_mb > 0 {
        // the checkpoint's states went into the cache once durable: their loads were hits,
        // the code with no state a miss
        let c = s.read_cache().unwrap();
        assert_eq!((c.hits, c.misses), (2, 1), "{c:?}");
    } else {
        assert_eq!(s.read_cache(), None);
    }

    // a checkpoint cut short (a crash before its commit point) is never read, even later
    let cut = checkpoint(
        4,
        &[(Kind::Member, "m1", "bad"), (Kind::Member, "m2", "bad")],
        vec![],
    );
    // (five of them: more than the rows a load reads first)
    for _ in 0..5 {
        s.write_unfinished_checkpoint(&cut).unwrap();
    }
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("v1"));
    drop(s);
    let mut s = CqlStore::open(&cfg).unwrap();
    assert_eq!(s.last_checkpoint().unwrap().unwrap().seq, 3);
    // a new process: its cache is empty, so this reads the table past the unfinished rows
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("v1"));
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("v1"));
    assert_eq!(load(&s, Kind::Member, "m2"), None);
    assert_eq!(load(&s, Kind::Member, "m2"), None);
    if cache_mb > 0 {
        let c = s.read_cache().unwrap();
        assert_eq!(
            (c.hits, c.misses),
            (2, 2),
            "one miss then one hit each: {c:?}"
        );
    }
    let next = checkpoint(4, &[(Kind::Member, "m2", "v2")], vec![1, 2, 3]);
    s.checkpointer().unwrap().write(&next).unwrap();
    assert_eq!(load(&s, Kind::Member, "m2").as_deref(), Some("v2"));
    assert_eq!(
        load(&s, Kind::Member, "m1").as_deref(),
        Some("v1"),
        "older generation"
    );
    let mut members = Vec::new();
    s.cold()
        .unwrap()
        .scan(Kind::Member, &mut |k, v| {
            members.push((k.to_string(), String::from_utf8(v.to_vec()).unwrap()))
        })
        .unwrap();
    members.sort();
    assert_eq!(
        members,
        [("m1".into(), "v1".into()), ("m2".into(), "v2".into())]
    );
    let cp = s.last_checkpoint().unwrap().unwrap();
    assert_eq!((cp.seq, cp.seen), (4, vec![1, 2, 3]));

    // the log below a durable checkpoint goes with the next commit; the tail replays
    s.commit(&Batch {
        events: vec![(4, body("e", 4))],
        truncate_below: Some(4),
        ..Batch::default()
    })
    .unwrap();
    let (next, tail) = replay_all(&s, 4);
    assert_eq!((next, tail), (5, vec![(4, body("e", 4))]));
    drop(s);
    let s = CqlStore::open(&cfg).unwrap();
    let (next, tail) = replay_all(&s, 4);
    assert_eq!((next, tail.len()), (5, 1));
}

#[test]
fn cql_service_with_a_resident_bound_and_checkpoints_restarts_to_the_same_state() {
    let events = script();
    let whole = migrated("svc_bounded_whole");
    let s = start(&whole);
    s.post(&events);
    let expected = observe(&s);
    s.stop();

    // with the read cache of states (the default) and without it
    for cache_mb in ["64", "0"] {
        bounded_run(&events, &expected, cache_mb);
    }
}

fn bounded_run(events: &[String], expected: &serde_json::Value, cache_mb: &str) {
    let cfg = migrated(&format!("svc_bounded_{cache_mb}"));
    let bounded = [
        ("OMNISTREAM_RESIDENT_ENTITIES", "4"),
        ("OMNISTREAM_CHECKPOINT_EVERY_EVENTS", "3"),
        ("OMNISTREAM_CQL__CACHE_MB", cache_mb),
    ];
    let s = start_bounded(&cfg, &bounded);
    s.post(&events[..5]);
    let st = s.get("/v1/stats");
    assert!(st["shard"]["passivated"].as_u64().unwrap() > 0, "{st}");
    s.stop();
    let s = start_bounded(&cfg, &bounded);
    assert!(
        s.get("/v1/stats")["shard"]["restored_from"]
            .as_u64()
            .unwrap()
            > 0
    );
    s.post(&events[5..9]);
    // a crash: the next start restores the last checkpoint and replays the tail after it
    s.kill();
    let s = start_bounded(&cfg, &bounded);
    let st = s.get("/v1/stats");
    assert!(st["shard"]["restored_from"].as_u64().unwrap() > 0, "{st}");
    let r = s.post(events);
    assert_eq!(r["duplicates"], 9, "the first nine were kept: {r}");
    assert_eq!(&observe(&s), expected);
    let cache = &s.get("/v1/stats")["shard"]["read_cache"];
    if cache_mb == "0" {
        assert!(cache.is_null(), "no cache: {cache}");
    } else {
        // the loads of passivated entities went through it (what hits is the store test's)
        let loads = cache["hits"].as_u64().unwrap() + cache["misses"].as_u64().unwrap();
        assert!(loads > 0, "{cache}");
    }
    s.stop();
}

/// Events/s through `CqlStore::commit` against the same rows written by a plain loop of
/// prepared single-row inserts with the same driver (bounded to the same concurrency), and
/// the p99 commit latency. Prints figures; asserts only that all rows arrived.
#[test]
#[ignore = "benchmark: run with --release -- --ignored cql_bench --nocapture"]
fn cql_bench_commit_vs_single_row_inserts() {
    let events: u64 = std::env::var("OMNISTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let per_commit: u64 = std::env::var("OMNISTREAM_BENCH_COMMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let cfg = migrated("bench");
    // a realistic event and output: ~400 and ~200 bytes of JSON; every 4th event a ledger row
    // for one of 5000 members
    let ev = |q: u64| {
        format!(
            "{{\"id\":\"00000000-0000-7000-8000-{q:012}\",\"type\":\"order\",\"ts\":\"2026-11-11T09:00:00+08:00\",\
             \"channel\":\"mall\",\"order\":\"o{q}\",\"status\":\"placed\",\"kind\":\"consumer\",\
             \"member\":{{\"openid\":\"oa{}\"}},\"lines\":[{{\"sku\":\"S{}\",\"qty\":2,\"unit_price\":10000}}],\
             \"location\":\"wh\",\"pad\":\"{}\"}}",
            q % 5000,
            q % 97,
            "x".repeat(120)
        )
        .into_bytes()
    };
    let out = |q: u64| {
        format!(
            "{{\"output\":\"stock\",\"sku\":\"S{}\",\"atp\":{q},\"pad\":\"{}\"}}",
            q % 97,
            "y".repeat(120)
        )
        .into_bytes()
    };
    let mut ledger_seq = std::collections::HashMap::new();
    let mut batches = Vec::new();
    let mut q = 0;
    while q < events {
        let hi = (q + per_commit).min(events);
        let mut b = Batch {
            checkpoint: None,
            truncate_below: None,
            positions: vec![("http".into(), hi)],
            ..Batch::default()
        };
        for s in q..hi {
            b.events.push((s, ev(s)));
            b.outputs.push((s, out(s)));
            if s % 4 == 0 {
                let m = format!("m{}", s % 5000);
                let n = ledger_seq.entry(m.clone()).or_insert(0u64);
                *n += 1;
                b.ledger.push((m, *n, out(s)));
            }
        }
        batches.push(b);
        q = hi;
    }
    let rows: usize = batches
        .iter()
        .map(|b| b.events.len() + b.outputs.len() + b.ledger.len())
        .sum();

    let mut store = CqlStore::open(&cfg).unwrap();
    let mut lat = Vec::new();
    let t = Instant::now();
    for b in &batches {
        let c = Instant::now();
        store.commit(b).unwrap();
        lat.push(c.elapsed());
    }
    let store_secs = t.elapsed().as_secs_f64();
    lat.sort();
    // nearest rank: with fewer than 100 commits the p99 is the slowest one
    let p = |f: f64| lat[((lat.len() as f64 * f).ceil() as usize).clamp(1, lat.len()) - 1];
    assert_eq!(replay_all(&store, 0).0, events);

    // the ceiling: the same rows, one prepared INSERT each, into a second keyspace
    let base = migrated("bench_base");
    let conc = cfg.max_concurrent_requests;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base_secs = rt.block_on(async {
        use futures::StreamExt;
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_node(need_cql())
            .build()
            .await
            .unwrap();
        let ks = &base.keyspace;
        let prep = |cql: String| {
            let session = &session;
            async move {
                let mut p = session.prepare(cql).await.unwrap();
                p.set_consistency(scylla::statement::Consistency::One);
                p
            }
        };
        let ins_log = prep(format!(
            "INSERT INTO {ks}.events (bucket, seq, body) VALUES (?, ?, ?)"
        ))
        .await;
        let ins_out = prep(format!(
            "INSERT INTO {ks}.outputs (bucket, seq, body) VALUES (?, ?, ?)"
        ))
        .await;
        let ins_led = prep(format!(
            "INSERT INTO {ks}.ledger (member, bucket, seq, body) VALUES (?, ?, ?, ?)"
        ))
        .await;
        let t = Instant::now();
        for b in &batches {
            let mut reqs = Vec::new();
            for (s, body) in &b.events {
                reqs.push(session.execute_unpaged(&ins_log, ((*s >> 16) as i64, *s as i64, body)));
            }
            let mut reqs2 = Vec::new();
            for (s, body) in &b.outputs {
                reqs2.push(session.execute_unpaged(&ins_out, ((*s >> 16) as i64, *s as i64, body)));
            }
            let mut reqs3 = Vec::new();
            for (m, s, body) in &b.ledger {
                reqs3.push(
                    session.execute_unpaged(
                        &ins_led,
                        (m.as_str(), (*s >> 12) as i64, *s as i64, body),
                    ),
                );
            }
            let all: Vec<_> = futures::stream::iter(reqs)
                .buffer_unordered(conc)
                .chain(futures::stream::iter(reqs2).buffer_unordered(conc))
                .chain(futures::stream::iter(reqs3).buffer_unordered(conc))
                .collect()
                .await;
            assert!(all.iter().all(Result::is_ok));
        }
        t.elapsed().as_secs_f64()
    });
    let ev_s = events as f64 / store_secs;
    let base_ev_s = events as f64 / base_secs;
    println!(
        "cql bench: {events} events ({rows} rows: events, outputs, ledger) in {} commits of {per_commit}, \
         concurrency {conc}, consistency ONE",
        lat.len()
    );
    println!(
        "  CqlStore::commit:            {store_secs:.2} s  {ev_s:.0} events/s  {:.0} rows/s  commit p50 {:?} p99 {:?} max {:?}",
        rows as f64 / store_secs,
        p(0.50),
        p(0.99),
        lat[lat.len() - 1]
    );
    println!(
        "  single-row prepared inserts: {base_secs:.2} s  {base_ev_s:.0} events/s  {:.0} rows/s",
        rows as f64 / base_secs
    );
    println!("  ratio store/ceiling: {:.2}", ev_s / base_ev_s);
}

/// What an activation costs: loads of passivated states (~1 KB each, the size of a member)
/// from the `state_member` table, and from the read cache in front of it. Writes one
/// checkpoint of `OMNISTREAM_BENCH_EVENTS` states (default 20,000), then loads every key in a
/// shuffled order: with the cache off; with it on, first pass (all misses: the table) and
/// second pass (all hits). Prints per-load p50/p99/mean and loads/s; asserts only that every state came back.
#[test]
#[ignore = "benchmark: run with --release -- --ignored cql_bench --nocapture"]
fn cql_bench_state_loads_from_the_table_and_the_cache() {
    let n: usize = std::env::var("OMNISTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut cfg = migrated("bench_loads");
    let state = "x".repeat(1000);
    let keys: Vec<String> = (0..n).map(|i| format!("member-{i:08}")).collect();
    cfg.cache_mb = 0;
    let s = CqlStore::open(&cfg).unwrap();
    let cp = CheckpointWrite {
        states: keys
            .iter()
            .map(|k| (Kind::Member, k.as_str().into(), state.as_bytes().to_vec()))
            .collect(),
        ..checkpoint(1, &[], vec![])
    };
    let t = Instant::now();
    s.checkpointer().unwrap().write(&cp).unwrap();
    println!(
        "checkpoint of {n} states of {} B: {:.2} s",
        state.len(),
        t.elapsed().as_secs_f64()
    );
    // a fixed shuffle (an LCG), the same for every pass
    let mut order: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        order.swap(i, (x >> 33) as usize % (i + 1));
    }
    let pass = |s: &CqlStore, what: &str| {
        let cold = s.cold().unwrap();
        let mut times = Vec::with_capacity(n);
        let t = Instant::now();
        for &i in &order {
            let t1 = Instant::now();
            let v = cold.load(Kind::Member, &keys[i]).unwrap();
            times.push(t1.elapsed());
            assert_eq!(v.map(|b| b.len()), Some(state.len()), "{}", keys[i]);
        }
        let total = t.elapsed();
        times.sort();
        println!(
            "{what}: {n} loads, p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs, {:.0} loads/s",
            times[n / 2].as_secs_f64() * 1e6,
            times[n * 99 / 100].as_secs_f64() * 1e6,
            total.as_secs_f64() * 1e6 / n as f64,
            n as f64 / total.as_secs_f64()
        );
    };
    pass(&s, "cache off (cql.cache-mb = 0), the table");
    drop(s);
    cfg.cache_mb = 64;
    let s = CqlStore::open(&cfg).unwrap();
    pass(&s, "cache on, first pass (misses: the table)");
    pass(&s, "cache on, second pass (hits)");
    println!("{:?}", s.read_cache().unwrap());
}

/// A session of the test's own, to write and read rows as another binary would.
async fn raw_session() -> scylla::client::session::Session {
    scylla::client::session_builder::SessionBuilder::new()
        .known_node(need_cql())
        .build()
        .await
        .unwrap()
}

/// Schema 2 kept the states of every kind in one table, `states ((kind, key), gen)`; schema 3
/// has a table per kind. A keyspace left at schema 2 with a checkpoint in it (written here row
/// by row as schema 2's store wrote it: a durable generation, an older one whose rows were not
/// cleaned up yet, an unfinished one, the same key under two kinds, a blob over one chunk) is
/// refused until `migrate` upgrades it; then the same checkpoint loads: its blobs, each
/// state, each kind's scan, never a row of the unfinished generation. A migrate cut short
/// before it recorded version 3 is simply run again, and the upgraded store checkpoints on.
#[test]
fn cql_migrate_from_schema_2_moves_the_states_to_their_kinds_tables_and_the_checkpoint_loads() {
    let cfg = config("from_v2");
    let m = cql::migrate_to(&cfg, 2).unwrap();
    assert_eq!((m.from, m.to, m.states_copied), (None, 2, 0), "{m:?}");
    let ks = cfg.keyspace.clone();
    let rows: Vec<(Kind, &str, i64, &str)> = vec![
        (Kind::Member, "m1", 1, "m1 v1"),
        (Kind::Member, "m1", 2, "m1 v2"),
        (Kind::Member, "m1", 3, "m1 unfinished"),
        (Kind::Member, "m2", 1, "m2 v1"),
        (Kind::Code, "m1", 2, "code m1"),
        (Kind::Sku, "S1", 2, "sku S1"),
        (Kind::Identity, "phone:1", 1, "identity 1"),
        (Kind::Ring, "r1", 3, "ring unfinished"),
    ];
    let seen: Vec<u8> = (0..(3 << 19)).map(|i: u32| (i % 251) as u8).collect();
    let blobs: [(&str, Vec<u8>); 4] = [
        ("global", b"{\"global\":2}".to_vec()),
        ("seen", seen.clone()),
        ("codes_filter", Vec::new()),
        ("extras", b"{}".to_vec()),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = raw_session().await;
        let ins = format!("INSERT INTO {ks}.states (kind, key, gen, state) VALUES (?, ?, ?, ?)");
        for (kind, key, gen, state) in &rows {
            s.query_unpaged(
                ins.as_str(),
                (*kind as u8 as i8, *key, *gen, state.as_bytes()),
            )
            .await
            .unwrap();
        }
        let ins = format!(
            "INSERT INTO {ks}.checkpoint_blobs (gen, name, chunk, data) VALUES (?, ?, ?, ?)"
        );
        for (name, data) in &blobs {
            for (i, chunk) in data.chunks(1 << 20).enumerate() {
                s.query_unpaged(ins.as_str(), (2i64, *name, i as i32, chunk))
                    .await
                    .unwrap();
            }
        }
        let ck = format!(
            "INSERT INTO {ks}.checkpoints (shard, gen, seq, unfinished) VALUES (0, 2, 7, {{3}})"
        );
        s.query_unpaged(ck.as_str(), &[]).await.unwrap();
    });
    let e = CqlStore::open(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("older") && e.contains("omnistream migrate"),
        "{e}"
    );

    let check = |s: &CqlStore| {
        let cp = s.last_checkpoint().unwrap().unwrap();
        assert_eq!(
            (cp.seq, &cp.global, &cp.seen, &cp.filter, &cp.extras),
            (7, &blobs[0].1, &seen, &blobs[2].1, &blobs[3].1)
        );
        for (kind, key, want) in [
            (Kind::Member, "m1", Some("m1 v2")),
            (Kind::Member, "m2", Some("m2 v1")),
            (Kind::Code, "m1", Some("code m1")),
            (Kind::Sku, "S1", Some("sku S1")),
            (Kind::Identity, "phone:1", Some("identity 1")),
            (Kind::Ring, "r1", None),
            (Kind::Member, "S1", None),
            (Kind::Order, "m1", None),
        ] {
            assert_eq!(load(s, kind, key).as_deref(), want, "{kind:?} {key}");
        }
        let scan = |kind: Kind| {
            let mut out = Vec::new();
            s.cold()
                .unwrap()
                .scan(kind, &mut |k, v| {
                    out.push((k.to_string(), String::from_utf8(v.to_vec()).unwrap()))
                })
                .unwrap();
            out.sort();
            out
        };
        assert_eq!(
            scan(Kind::Member),
            [("m1".into(), "m1 v2".into()), ("m2".into(), "m2 v1".into())]
        );
        assert_eq!(scan(Kind::Code), [("m1".into(), "code m1".into())]);
        assert_eq!(scan(Kind::Ring), []);
    };

    let up = cql::migrate(&cfg).unwrap();
    assert_eq!(
        (up.from, up.to, up.statements, up.states_copied),
        (
            Some(2),
            cql::SCHEMA_VERSION,
            // the kinds' tables, and schema 4's lease table
            Kind::ALL.len() + 1,
            rows.len() as u64
        ),
        "{up:?}"
    );
    // every row went as it was into its kind's table, the unfinished ones too
    let member_gens = rt.block_on(async {
        let s = raw_session().await;
        let q = format!("SELECT gen FROM {ks}.state_member WHERE key = ?");
        let r = s
            .query_unpaged(q.as_str(), ("m1",))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        r.rows::<(i64,)>()
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect::<Vec<_>>()
    });
    assert_eq!(member_gens, [3, 2, 1]);
    check(&CqlStore::open(&cfg).unwrap());

    // applying it again changes nothing
    let again = cql::migrate(&cfg).unwrap();
    assert_eq!(
        (again.from, again.statements, again.states_copied),
        (Some(cql::SCHEMA_VERSION), 0, 0),
        "{again:?}"
    );
    // a migrate that stopped after the copy and before recording 3 is run again: the same
    // rows, the same checkpoint
    cql::force_schema_version(&cfg, 2).unwrap();
    let redo = cql::migrate(&cfg).unwrap();
    assert_eq!(
        (redo.from, redo.to, redo.states_copied),
        (Some(2), cql::SCHEMA_VERSION, rows.len() as u64),
        "{redo:?}"
    );
    let s = CqlStore::open(&cfg).unwrap();
    check(&s);

    // the upgraded store goes on: the next generation is above the unfinished one
    let next = checkpoint(8, &[(Kind::Member, "m1", "m1 v4")], vec![9]);
    s.checkpointer().unwrap().write(&next).unwrap();
    drop(s);
    let s = CqlStore::open(&cfg).unwrap();
    assert_eq!(s.last_checkpoint().unwrap().unwrap().seq, 8);
    assert_eq!(load(&s, Kind::Member, "m1").as_deref(), Some("m1 v4"));
    assert_eq!(load(&s, Kind::Member, "m2").as_deref(), Some("m2 v1"));
    assert_eq!(load(&s, Kind::Ring, "r1"), None);
}

/// The same upgrade with a real checkpoint: a bounded service (entities passivated to the
/// store) stops, its checkpoint's rows are moved back into schema 2's one `states` table and
/// the kind tables emptied, the keyspace marked schema 2; `migrate` moves them back, and the
/// service restores that checkpoint, replays nothing, and answers the same state.
#[test]
fn cql_service_restores_a_schema_2_checkpoint_after_migrate() {
    let events = script();
    let cfg = migrated("svc_from_v2");
    let bounded = [
        ("OMNISTREAM_RESIDENT_ENTITIES", "4"),
        ("OMNISTREAM_CHECKPOINT_EVERY_EVENTS", "3"),
    ];
    let s = start_bounded(&cfg, &bounded);
    s.post(&events);
    let expected = observe(&s);
    let st = s.get("/v1/stats");
    assert!(st["shard"]["passivated"].as_u64().unwrap() > 0, "{st}");
    // SIGTERM writes a last checkpoint
    s.stop();

    let ks = cfg.keyspace.clone();
    let moved = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let s = raw_session().await;
        let ins = format!("INSERT INTO {ks}.states (kind, key, gen, state) VALUES (?, ?, ?, ?)");
        let mut moved = 0u64;
        for kind in Kind::ALL {
            let table = format!("{ks}.state_{}", kind.name());
            let mut rows = s
                .query_iter(format!("SELECT key, gen, state FROM {table}"), &[])
                .await
                .unwrap()
                .rows_stream::<(String, i64, Vec<u8>)>()
                .unwrap();
            while let Some(row) = futures::StreamExt::next(&mut rows).await {
                let (key, gen, state) = row.unwrap();
                s.query_unpaged(ins.as_str(), (kind as u8 as i8, key, gen, state))
                    .await
                    .unwrap();
                moved += 1;
            }
            s.query_unpaged(format!("TRUNCATE {table}"), &[])
                .await
                .unwrap();
        }
        moved
    });
    assert!(moved > 0, "the checkpoint wrote no states");
    cql::force_schema_version(&cfg, 2).unwrap();

    let up = cql::migrate(&cfg).unwrap();
    assert_eq!(
        (up.from, up.to, up.states_copied),
        (Some(2), cql::SCHEMA_VERSION, moved),
        "{up:?}"
    );
    let s = start_bounded(&cfg, &bounded);
    let st = s.get("/v1/stats");
    assert!(st["shard"]["restored_from"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["shard"]["replayed"], 0, "{st}");
    assert_eq!(observe(&s), expected);
    let r = s.post(&events);
    assert_eq!(r["duplicates"], events.len(), "all kept: {r}");
    assert_eq!(observe(&s), expected);
    s.stop();
}

/// Runs CQL of its own on the test's node (a process other than the store under test).
struct Raw {
    rt: tokio::runtime::Runtime,
    session: scylla::client::session::Session,
}

impl Raw {
    fn connect() -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let session = rt.block_on(raw_session());
        Raw { rt, session }
    }

    fn run(&self, cql: &str) {
        self.rt
            .block_on(self.session.query_unpaged(cql.to_string(), ()))
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    }

    /// The writer lease's owner, if the row is there.
    fn lease_owner(&self, ks: &str) -> Option<String> {
        let r = self
            .rt
            .block_on(self.session.query_unpaged(
                format!("SELECT owner FROM {ks}.leases WHERE name = 'writer'"),
                (),
            ))
            .unwrap()
            .into_rows_result()
            .unwrap();
        r.maybe_first_row::<(Option<String>,)>().unwrap()?.0
    }
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `secs`.
fn within<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed().as_secs() < secs, "not within {secs} s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn lease_batch(seq: u64) -> Batch {
    Batch {
        events: vec![(seq, body("e", seq))],
        positions: vec![("http".into(), seq + 1)],
        ..Batch::default()
    }
}

/// One writer per keyspace, in one process: a second store is refused naming the holder, a
/// closed store releases the lease; a store whose lease expired (the row deleted here) takes
/// it again and writes on when the log is where it left it, and writes nothing more once
/// another process moved the commit marker meanwhile, or holds the row.
#[test]
fn cql_a_store_writes_only_while_it_holds_the_writer_lease() {
    let mut cfg = migrated("lease");
    cfg.lease_s = 5; // renewed every second, writes stop 3 s after the last renewal
    let ks = cfg.keyspace.clone();
    let raw = Raw::connect();
    let mut s = CqlStore::open(&cfg).unwrap();
    let me = raw
        .lease_owner(&ks)
        .expect("the open store holds the lease");
    assert!(
        me.contains(&format!(" in-process run {}.", std::process::id())),
        "{me}"
    );
    s.commit(&lease_batch(0)).unwrap();
    let e = CqlStore::open(&cfg)
        .err()
        .expect("a second writer is refused");
    let msg = e.to_string();
    assert!(
        matches!(e, omnistream::store::StoreError::Held { .. })
            && msg.contains("another process writes it")
            && msg.contains(&me)
            && msg.contains("since "),
        "{msg}"
    );
    drop(s);
    assert_eq!(raw.lease_owner(&ks), None, "closing releases the lease");

    let mut s = CqlStore::open(&cfg).unwrap();
    let me = raw.lease_owner(&ks).unwrap();
    s.commit(&lease_batch(1)).unwrap();
    // the row expires, nobody writes meanwhile: taken again, checked, written on
    raw.run(&format!("DELETE FROM {ks}.leases WHERE name = 'writer'"));
    within(10, "the lease taken again", || {
        (raw.lease_owner(&ks).as_deref() == Some(me.as_str())).then_some(())
    });
    within(10, "writes again after the check", || {
        s.commit(&lease_batch(2)).ok()
    });
    assert_eq!(replay_all(&s, 0).0, 3);

    // the row expires and another run takes it meanwhile (and stops): fenced for good
    raw.run(&format!("DELETE FROM {ks}.leases WHERE name = 'writer'"));
    raw.run(&format!(
        "UPDATE {ks}.leases SET owner = 'elsewhere 10.0.0.9:8080 run 7.1.0' WHERE name = 'last-writer'"
    ));
    // (refused meanwhile while the last writer is being checked)
    let e = within(10, "the store fenced", || {
        s.commit(&lease_batch(3))
            .err()
            .map(|e| e.to_string())
            .filter(|e| !e.contains("last writer is checked"))
    });
    assert!(
        e.contains("another process took the writer lease")
            && e.contains("elsewhere 10.0.0.9:8080 run 7.1.0")
            && e.contains("state is stale"),
        "{e}"
    );
    // the row is this store's again, and still nothing is written
    assert_eq!(raw.lease_owner(&ks).as_deref(), Some(me.as_str()));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let e = s.commit(&lease_batch(3)).unwrap_err().to_string();
    assert!(e.contains("state is stale"), "{e}");
    drop(s);

    // a row left by a run of this host that is gone (a crash: its lock went with it) is
    // taken over after the margin (1 s at lease-s 5), though it has a minute left
    let host = me.split(' ').next().unwrap();
    let dead = format!("{host} 127.0.0.1:1 run 1.1.1");
    raw.run(&format!(
        "UPDATE {ks}.leases USING TTL 60 SET owner = '{dead}' WHERE name = 'writer'"
    ));
    let t = Instant::now();
    let mut s = CqlStore::open(&cfg).unwrap();
    assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
    let taker = raw.lease_owner(&ks).unwrap();
    assert!(taker != dead && taker != me, "{taker}");
    s.commit(&lease_batch(3)).unwrap();
    // another owner takes the row: the store stops writing at its next renewal
    raw.run(&format!(
        "UPDATE {ks}.leases USING TTL 60 SET owner = 'intruder', info = 'pid 1' WHERE name = 'writer'"
    ));
    let e = within(10, "the store fenced", || s.commit(&lease_batch(4)).err());
    let e = e.to_string();
    assert!(
        e.contains("another process holds the writer lease") && e.contains("intruder (pid 1)"),
        "{e}"
    );
    drop(s);
    assert_eq!(
        raw.lease_owner(&ks).as_deref(),
        Some("intruder"),
        "a fenced store does not release another's lease"
    );
}

/// Two services on one keyspace: the second waits for the first's writer lease and gives up
/// after `store-wait-s`, naming the holder; started again, it starts once the first stops
/// (SIGTERM releases the lease) and serves what the first wrote.
#[test]
fn cql_service_a_second_service_on_one_keyspace_waits_for_the_first_ones_lease() {
    let cfg = migrated("svc_lease");
    let events = script();
    let a = start(&cfg);
    a.post(&events[..5]);
    let err = gives_up_after_2_s(&cfg);
    assert!(
        err.contains("another process writes it")
            && err.contains(&a.addr)
            && err.contains("store-wait-s = 2")
            && err.contains("writer lease is held; waiting"),
        "{err}"
    );

    let env = cql_env(&cfg);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let child = Service::spawn(
        std::path::Path::new("/dev/null/no-data-dir"),
        &[],
        &env,
        std::process::Stdio::null(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Service::listening(child));
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        rx.try_recv().is_err(),
        "the second service started beside the first"
    );
    // an operator asks who writes the keyspace
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .arg("check-config")
        .envs(cql_env(&cfg))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("is written by ") && text.contains(&a.addr),
        "{text}"
    );
    a.stop();
    let b = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the second service starts once the first stopped");
    let r = b.post(&events);
    assert_eq!(r["duplicates"], 5, "it serves what the first wrote: {r}");
    b.stop();
}

/// `check-config` on CQL checks the personal-data key as `run` would: none recorded yet, the
/// one a service recorded, and another (which stops `run`, so it fails `check-config` too).
#[test]
fn cql_check_config_checks_the_personal_data_key() {
    let cfg = migrated("checkpii");
    let check = |key: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .arg("check-config")
            .envs(cql_env(&cfg))
            .env("OMNISTREAM_PII_KEY", key)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = check("the-first-key-0123456789");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("recorded by the next run"), "{text}");
    // a service (key `service-test-key`) records it with its first commit
    let s = start(&cfg);
    s.post(&script()[..1]);
    s.stop();
    let (code, text) = check("service-test-key");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("written with this personal-data key"),
        "{text}"
    );
    let (code, text) = check("another-key-0123456789");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&cfg.keyspace) && text.contains("OMNISTREAM_PII_KEY: not the key"),
        "{text}"
    );
}

//! Upgrade safety: a store written by an older build loads in this one with the same state,
//! survives a checkpoint and a restart from it, and a store from a newer build is refused at
//! start-up naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{texts, Service};
use std::path::Path;
use std::process::Command;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-format-1/omnistream.redb"
);
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample.jsonl");

fn snapshot(s: &Service) -> String {
    let (code, body) = s.request_text("GET", "/v1/admin/snapshot", "");
    assert_eq!(code, 200, "{body}");
    body
}

/// `omnistream replay` of the sample with the development PII key the fixture was written
/// with (no `OMNISTREAM_PII_KEY`): its `state.json`.
fn replay_sample(out: &Path) -> String {
    let st = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", SAMPLE, "--out"])
        .arg(out)
        .env_remove("OMNISTREAM_PII_KEY")
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    std::fs::read_to_string(out.join("state.json")).unwrap()
}

#[test]
fn a_store_written_by_format_1_loads_and_equals_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(FIXTURE, data.join("omnistream.redb")).unwrap();
    let expected = replay_sample(&dir.path().join("replay"));

    // format 1 has no checkpoint: the whole log is replayed
    let s = Service::start(&data);
    let stats = s.get("/v1/stats");
    assert_eq!(stats["shard"]["replayed"], 28, "{stats}");
    assert_eq!(stats["shard"]["restored_from"], 0, "{stats}");
    let first = snapshot(&s);
    assert!(first.len() > 1000);
    assert!(
        first == expected,
        "a format-1 store loads into another state than a replay of its events"
    );
    // SIGTERM writes a checkpoint (today's encoding) and drops the log before it: the 28
    // events and the entry that says which rules the log runs under from the first start on
    s.stop();

    let s = Service::start(&data);
    let stats = s.get("/v1/stats");
    assert_eq!(stats["shard"]["restored_from"], 29, "{stats}");
    assert_eq!(stats["shard"]["replayed"], 0, "{stats}");
    assert!(
        snapshot(&s) == expected,
        "restored from the checkpoint into another state"
    );
    // and it goes on: the same events again are duplicates, a new one applies
    let body = std::fs::read_to_string(SAMPLE).unwrap();
    let (code, v) = s.request("POST", "/v1/events", &body);
    assert_eq!(code, 200, "{v}");
    let statuses = texts(&v["results"], "status");
    assert_eq!(statuses.len(), 29);
    assert!(
        statuses.iter().filter(|s| **s == "duplicate").count() >= 28,
        "events seen before the checkpoint were applied again: {statuses:?}"
    );
    s.stop();
}

/// Fields a later encoding added that the JSON of a state always shows (a store's KPI
/// counts, which its views show at 0 too): a state restored from an older encoding has them
/// at 0, which its snapshot, written before they existed, does not hold.
const ADDED_SHOWN: &[&str] = &[
    "member_visit_seconds",
    "timed_member_visits",
    "timed_rep_visits",
];

/// `v` without the [`ADDED_SHOWN`] fields that are 0 (any other difference stays).
fn without_added_zeros(mut v: serde_json::Value) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, x| !(ADDED_SHOWN.contains(&k.as_str()) && *x == 0));
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// A store whose checkpoint holds states of encoding 2 (written before orders kept when they
/// were placed) restores the very state the build that wrote it had, goes on from there,
/// and after a checkpoint of its own (today's encoding) restores the same again.
#[test]
fn a_store_of_encoding_2_restores_the_state_its_build_had() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-encoding-2");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("codes")).unwrap();
    for f in [
        "omnistream.redb",
        "states.redb",
        "codes/0000000000000001.run",
    ] {
        std::fs::copy(fixture.join("data").join(f), data.join(f)).unwrap();
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("snapshot.json")).unwrap()).unwrap();
    let state = |s: &Service| -> serde_json::Value { serde_json::from_str(&snapshot(s)).unwrap() };
    // written with the development key (an empty variable is no key)
    let dev_key = [("OMNISTREAM_PII_KEY", "")];
    let s = Service::start_with(&data, &dev_key);
    let stats = s.get("/v1/stats");
    assert_eq!(stats["shard"]["restored_from"], 28, "{stats}");
    assert_eq!(stats["shard"]["replayed"], 0, "{stats}");
    assert!(
        without_added_zeros(state(&s)) == saved,
        "the encoding-2 checkpoint restores into another state than its build had"
    );
    // M-501 was placed by that build: its time is not known, its cancellation still runs
    let cancel = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-0000000000f1","type":"order","ts":"2026-11-14T10:00:00+08:00","channel":"mall","order":"M-501","status":"cancelled","kind":"consumer","member":{"openid":"o6_chen"}}"#;
    let placed = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-0000000000f2","type":"order","ts":"2026-11-14T10:05:00+08:00","channel":"mall","order":"M-502","status":"placed","kind":"consumer","lines":[{"sku":"SKU-TEA-330","qty":1,"unit_price":2900}],"location":"wh-sh","member":{"openid":"o6_chen"}}"#;
    let r = s.post(&[cancel.to_string(), placed.to_string()]);
    assert_eq!(r["accepted"], 2, "{r}");
    assert_eq!(r["results"][0]["order"]["output"], "order_status", "{r}");
    let old = s.get("/v1/orders/mall/M-501");
    assert_eq!(
        (old["status"].as_str(), old.get("placed_at")),
        (Some("cancelled"), None)
    );
    let new = s.get("/v1/orders/mall/M-502");
    assert_eq!(new["placed_at"], "2026-11-14T10:05:00.000+08:00", "{new}");
    let before = state(&s);
    s.stop();
    let s = Service::start_with(&data, &dev_key);
    assert_eq!(s.get("/v1/stats")["shard"]["replayed"], 0);
    assert!(
        state(&s) == before,
        "restored from its own checkpoint into another state"
    );
    s.stop();
}

/// `omnistream run` on `data` with `env`, which must refuse to start: its standard error. One
/// that started would serve until stopped: it is killed after 60 s and the test fails.
fn refused_start(data: &Path, env: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let running = child.try_wait().unwrap().is_none();
    if running {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !running && !out.status.success(),
        "started on {}: {err}",
        data.display()
    );
    err
}

#[test]
fn a_store_from_a_newer_build_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("omnistream.redb");
    std::fs::copy(FIXTURE, &file).unwrap();
    {
        let db = redb::Database::create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut t = tx.open_table(def).unwrap();
            t.insert("format", 99).unwrap();
        }
        tx.commit().unwrap();
    }
    let err = refused_start(dir.path(), &[]);
    assert!(
        err.contains("omnistream.redb") && err.contains("newer") && err.contains("99"),
        "{err}"
    );
}

/// A data directory put together from files copied at different moments (the log and
/// outputs of one, the checkpoint of a later one, as a copy taken file by file while the
/// service runs can be) is refused at start-up, saying so: going on would hand out the
/// missing outputs' seqs again to other outputs, and a follower resuming by seq would read
/// different data under them.
#[test]
fn a_data_directory_copied_at_different_moments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, copy) = (dir.path().join("data"), dir.path().join("copy"));
    std::fs::create_dir_all(&copy).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(SAMPLE)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let s = Service::start(&data);
    s.post(&lines[..10]);
    s.stop();
    // the log and outputs as they were then
    std::fs::copy(data.join("omnistream.redb"), copy.join("omnistream.redb")).unwrap();
    let s = Service::start(&data);
    s.post(&lines[10..]);
    s.stop();
    // the checkpoint of the later stop
    std::fs::copy(data.join("states.redb"), copy.join("states.redb")).unwrap();
    let codes = copy.join("codes");
    std::fs::create_dir_all(&codes).unwrap();
    for f in std::fs::read_dir(data.join("codes")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), codes.join(f.file_name())).unwrap();
    }
    let err = refused_start(&copy, &[("OMNISTREAM_PII_KEY", "service-test-key")]);
    assert!(err.contains("copied at different moments"), "{err}");
    // the directory itself, whole, still starts
    let s = Service::start(&data);
    assert_eq!(s.get("/v1/stats")["shard"]["replayed"], 0);
    s.stop();
}

/// `check-config` reads a store without writing to it: a format-1 store stays byte for byte
/// as it was (no upgrade, no `states.redb` made) and it says `run` would upgrade it, one
/// way; `run` did that on a pre-flight check before any decision to upgrade.
#[test]
fn check_config_leaves_an_older_store_as_it_is_and_says_run_upgrades_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("omnistream.redb");
    std::fs::copy(FIXTURE, &file).unwrap();
    // the fixture was not closed cleanly (check-config says `run` recovers it): recovered
    // and closed by redb itself, still of format 1
    drop(redb::Database::create(&file).unwrap());
    let before = std::fs::read(&file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["check-config", "--data-dir"])
        .arg(dir.path())
        .env_remove("OMNISTREAM_PII_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("format 1 is older") && text.contains("one way"),
        "{text}"
    );
    assert!(
        std::fs::read(&file).unwrap() == before,
        "the store was written"
    );
    assert!(!dir.path().join("states.redb").exists());
}

/// A graceful stop closes the embedded store's files cleanly: the next open has nothing to
/// recover (redb checks, and repairs, a file left open, which takes longer the larger it
/// is).
#[test]
fn a_graceful_stop_closes_the_store_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let lines: Vec<String> = std::fs::read_to_string(SAMPLE)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    s.post(&lines);
    s.stop();
    for f in ["omnistream.redb", "states.redb"] {
        let opened = redb::ReadOnlyDatabase::open(dir.path().join(f));
        assert!(opened.is_ok(), "{f}: {:?}", opened.err());
    }
}

//! End-to-end tests of `omnistream validate` and `omnistream schema`, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::io::Write;
use std::process::{Command, Stdio};

const GOOD: &str = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03.120+08:00","channel":"campaign","code":"HZ8K2M9Q4T7W","sku":"SKU-COLA-500","campaign":"cny-2027","member":{"phone":"13800138000"},"device":"d-7f3a91","ip":"112.65.3.18"}"#;

fn omnistream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omnistream"))
}

#[test]
fn a_clean_feed_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("feed.jsonl");
    std::fs::write(&f, format!("{GOOD}\n")).unwrap();
    let out = omnistream().arg("validate").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("ok: 1 lines, 1 valid, 0 rejected"), "{text}");
}

#[test]
fn a_bad_feed_exits_one_and_writes_rejects_without_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("feed.jsonl");
    let rejects = dir.path().join("rejects.jsonl");
    let bad = GOOD.replace("112.65.3.18", "999.1.1.1");
    std::fs::write(&f, format!("{GOOD}\n{bad}\n{{\"id\":\n")).unwrap();
    let out = omnistream()
        .arg("validate")
        .arg(&f)
        .arg("--rejects")
        .arg(&rejects)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad_ip"), "{text}");
    assert!(
        text.contains("truncated") || text.contains("bad_json"),
        "{text}"
    );
    assert!(
        text.contains("FAILED: 3 lines, 1 valid, 2 rejected"),
        "{text}"
    );
    let written = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(written.lines().count(), 2);
    assert!(
        !written.contains("13800138000"),
        "plain phone in rejects: {written}"
    );
    let first: serde_json::Value = serde_json::from_str(written.lines().next().unwrap()).unwrap();
    assert_eq!(first["line"], 2);
    assert_eq!(first["reasons"][0]["reason"], "bad_ip");
    assert_eq!(first["reasons"][0]["path"], "ip");
}

/// A misspelt field gets its "did you mean" whether the line is valid (an optional field,
/// ignored) or rejected (a required one, then missing): the rejected line is where it helps.
#[test]
fn a_misspelt_field_is_named_on_valid_and_rejected_lines() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("feed.jsonl");
    // `store` is optional on a scan: without it the line is still valid
    let optional = GOOD.replace("\"ip\":", "\"stroe\":\"st-001\",\"ip\":");
    std::fs::write(&f, format!("{optional}\n")).unwrap();
    let out = omnistream().arg("validate").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "warnings (the lines are still valid):\n  unknown_field at stroe: ignored; did you \
             mean `store`?: 1 lines, first at"
        ),
        "{text}"
    );

    let required = GOOD.replace("\"device\":", "\"devcie\":");
    std::fs::write(&f, format!("{GOOD}\n{required}\n")).unwrap();
    let out = omnistream().arg("validate").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("missing_field"), "{text}");
    assert!(
        text.contains("unknown_field at devcie: ignored; did you mean `device`?: 1 lines"),
        "{text}"
    );
    assert!(!text.contains("the lines are still valid"), "{text}");
    let out = omnistream()
        .args(["validate", "--json"])
        .arg(&f)
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        s["rejected_warnings"]["unknown_field at devcie: ignored; did you mean `device`?"]["lines"],
        1,
        "{s}"
    );
}

#[test]
fn stdin_and_json_summary() {
    let mut child = omnistream()
        .args(["validate", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // the second line is the first again (a repeated id) with a field of its own
    let input = format!(
        "{GOOD}\n{}\n{}\n",
        GOOD.replace("scan", "scna"),
        GOOD.replacen('{', r#"{"colour":"red","#, 1)
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["files"][0]["file"], "-");
    assert_eq!(s["files"][0]["valid"], 2);
    assert_eq!(s["reasons"]["unknown_type"]["lines"], 1);
    // the warnings by code, for a script that gates a feed on them
    assert_eq!(s["warning_codes"]["duplicate_id"], 1, "{s}");
    assert_eq!(s["warning_codes"]["unknown_field"], 1, "{s}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = omnistream()
        .args(["validate", "/nonexistent/feed.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("opening /nonexistent/feed.jsonl"), "{err}");
}

#[test]
fn schema_prints_the_committed_json_schema() {
    let out = omnistream().arg("schema").output().unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/json/event.schema.json"
    ))
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
}

/// `omnistream validate --json FILE | head -c 10`: the reader goes early and validate ends
/// quietly, as a Unix filter does (it panicked on the failed write).
#[test]
fn a_reader_that_goes_early_ends_validate_quietly() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["validate", "--json", sample])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// An event ahead of the clock is warned of as `run` would refuse it, by the configuration
/// `run` would use: `-c FILE`, then `OMNISTREAM_*` (a bad value stops it with the key).
#[test]
fn events_ahead_of_the_clock_are_judged_by_the_configuration_given() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("feed.jsonl");
    let ahead = GOOD.replace("2026-11-11T20:15:03.120+08:00", "2999-01-01T00:00:00+08:00");
    std::fs::write(&f, format!("{ahead}\n")).unwrap();
    let conf = dir.path().join("omnistream.toml");
    std::fs::write(&conf, "max-future-s = 0\n").unwrap();
    let warned = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{text}");
        text.contains("future_timestamp")
    };
    assert!(warned(omnistream().arg("validate").arg(&f)));
    assert!(!warned(
        omnistream().args(["validate", "-c"]).arg(&conf).arg(&f)
    ));
    assert!(!warned(
        omnistream()
            .arg("validate")
            .arg(&f)
            .env("OMNISTREAM_MAX_FUTURE_S", "0")
    ));
    let out = omnistream()
        .arg("validate")
        .arg(&f)
        .env("OMNISTREAM_MAX_FUTURE_S", "soon")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("OMNISTREAM_MAX_FUTURE_S"), "{err}");
}

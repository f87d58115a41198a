//! The `loadtest` command line, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::process::Command;

fn loadtest(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

#[test]
fn stream_writes_the_scenarios_events_and_labels_as_generate_does() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.jsonl");
    let out = loadtest(&[
        "stream",
        "--scenario",
        "smoke",
        "--events",
        "400",
        "--rate",
        "100000",
        "--labels",
        labels.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stream: 400 events"), "{err}");
    // the same bytes as `generate` of the same scenario and count
    let mut sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    sc.events = 400;
    let (mut events, mut want_labels) = (Vec::new(), Vec::new());
    omnistream_loadtest::generate(&sc, &mut events, &mut want_labels, &mut |_| {}).unwrap();
    assert!(out.stdout == events, "stdout is not the generated events");
    assert!(std::fs::read(&labels).unwrap() == want_labels);
}

#[test]
fn stream_refuses_a_rate_that_is_not_positive() {
    for rate in ["0", "-5", "NaN", "1e-30"] {
        let out = loadtest(&["stream", "--scenario", "smoke", &format!("--rate={rate}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("--rate") && err.contains("positive"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// A reader that stops early (`loadtest stream ... | head`) ends the stream quietly, as
/// with any Unix filter: killed by SIGPIPE, no panic on standard error.
#[test]
fn a_reader_that_goes_early_ends_stream_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["stream", "--scenario", "smoke"])
        .env_remove("RUST_BACKTRACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // the pipe's reading end is closed here: the next writes fail
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(13), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

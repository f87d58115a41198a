//! Logs and the metrics switch, end to end: debug logs as JSON lines carry spans per request,
//! event and commit without personal data; `metrics = false` turns /metrics off; a bad log
//! format stops start-up naming the variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{script, texts, Service};
use std::process::{Command, Stdio};

#[test]
fn debug_logs_as_json_carry_spans_and_no_phone_number() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let s = Service::start_logging(
        &dir.path().join("data"),
        &[
            (
                "OMNISTREAM_LOG",
                "debug,actix=warn,actix_server=warn,actix_web=warn",
            ),
            ("OMNISTREAM_LOG_FORMAT", "json"),
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let events = script();
    let r = s.post(&events);
    assert_eq!(r["rejected"], 0, "{r}");
    s.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("13800138000"),
        "a phone number reached the logs"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let applied = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "applied")
        .count();
    assert_eq!(applied, events.len(), "one debug line per event");
    let first = lines
        .iter()
        .find(|l| l["fields"]["message"] == "applied")
        .unwrap();
    let spans = texts(&first["spans"], "name");
    assert_eq!(spans, ["ingest", "event"]);
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "committed" && l["span"]["name"] == "commit"));
}

#[test]
fn metrics_can_be_turned_off_and_the_service_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(dir.path(), &[("OMNISTREAM_METRICS", "false")]);
    let r = s.post(&script());
    assert_eq!(r["rejected"], 0, "{r}");
    let (code, body) = s.request("GET", "/metrics", "");
    assert_eq!(code, 404);
    assert_eq!(body["error"], "metrics_off", "{body}");
    assert_eq!(
        s.get("/v1/stats")["latency_us"]["ingest_to_durable"]["count"],
        0
    );
    s.stop();
}

#[test]
fn a_bad_log_format_stops_start_up_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["check-config"])
        .env("OMNISTREAM_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OMNISTREAM_LOG_FORMAT"), "{err}");
}

/// With JSON logs, the error a start-up stops on is a JSON line too (a log shipper saw only
/// the plain `omnistream: error:` line, the one that explains a crash loop), beside it.
#[test]
fn a_fatal_error_is_a_json_line_with_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .env("OMNISTREAM_LOG_FORMAT", "json")
        .env("OMNISTREAM_PII_KEY", "logs-test-key-0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error line in\n{err}"));
    assert!(
        line["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&addr)),
        "{line}"
    );
    assert!(err.contains("omnistream: error:"), "{err}");
    drop(taken);
}

/// `omnistream run ... 2>&1 | head -3`: with its standard output and error closed, the service
/// serves on and stops on SIGTERM (printing its address panicked the main thread, and the
/// process then served on and ignored SIGTERM until killed). A log filter that does not
/// parse stops start-up naming the variable.
#[test]
fn closed_standard_streams_do_not_stop_the_service_or_its_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let health = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        Some(r.starts_with("HTTP/1.1 200"))
    };
    let t = std::time::Instant::now();
    while health() != Some(true) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the service exited: {:?}",
            child.try_wait()
        );
        assert!(t.elapsed().as_secs() < 30, "never healthy");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SIGTERM: a graceful stop, in seconds
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed().as_secs() > 20 {
            let _ = child.kill();
            panic!("still running 20 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("OMNISTREAM_LOG", "notalevel[[")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OMNISTREAM_LOG") && err.contains("notalevel[["),
        "{err}"
    );
}

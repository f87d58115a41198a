//! Logs and the metrics switch, end to end: debug logs as JSON lines carry spans per request,
//! event and commit without personal data; `metrics = false` turns /metrics off; a bad log
//! format stops start-up naming the variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{script, Service};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn debug_logs_as_json_carry_spans_and_no_phone_number() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("OMNISTREAM_PII_KEY", "logs-test-key")
        .env(
            "OMNISTREAM_LOG",
            "debug,actix=warn,actix_server=warn,actix_web=warn",
        )
        .env("OMNISTREAM_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("omnistream listening on http://")
        .unwrap()
        .to_string();
    let events = script();
    let body = events.join("\n");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());

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
    let spans: Vec<&str> = first["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
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

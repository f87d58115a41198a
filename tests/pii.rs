//! Personal data, end to end: the `smoke` scenario (thousands of consumers known by phone
//! number) goes through the service, and no plain phone number of the input may appear in the
//! store's file, the outputs, the metrics, the board or the debug logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Service;
use std::collections::HashSet;
use std::process::Stdio;

/// Every run of exactly 11 ASCII digits in `bytes` (a mainland mobile number's length),
/// not part of a longer run of digits.
fn eleven_digit_runs(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 11 {
                out.push(&bytes[start..i]);
            }
        } else {
            i += 1;
        }
    }
    out
}

fn leaks(what: &str, bytes: &[u8], phones: &HashSet<Vec<u8>>) -> Vec<String> {
    eleven_digit_runs(bytes)
        .into_iter()
        .filter(|r| phones.contains(*r))
        .map(|r| format!("{what}: {}", String::from_utf8_lossy(r)))
        .collect()
}

#[test]
fn no_plain_phone_number_reaches_store_outputs_metrics_board_or_logs() {
    let sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    let mut events = Vec::new();
    omnistream_loadtest::generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {}).unwrap();
    let text = String::from_utf8(events).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // the phone numbers of the input, as sent
    let mut phones = HashSet::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if let Some(p) = v["member"]["phone"].as_str() {
            phones.insert(p.as_bytes().to_vec());
        }
    }
    assert!(phones.len() > 100, "the scenario must carry phone numbers");
    // the check itself finds a phone where one is
    let probe = phones.iter().next().unwrap().clone();
    assert_eq!(
        leaks("probe", &[b"x", &probe[..], b"y"].concat(), &phones).len(),
        1
    );

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let data = dir.path().join("data");
    let s = Service::start_logging(
        &data,
        &[(
            "OMNISTREAM_LOG",
            "debug,actix=warn,actix_server=warn,actix_web=warn",
        )],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    for chunk in lines.chunks(500) {
        let r = s.post(chunk);
        assert_eq!(r["rejected"], 0, "{r}");
    }
    // a malformed line with a phone goes to the dead letters, redacted
    let bad = format!(
        r#"{{"id":"not-a-uuid","type":"scan","member":{{"phone":"{}"}}}}"#,
        String::from_utf8_lossy(&probe)
    );
    let (code, _) = s.request("POST", "/v1/events", &bad);
    assert_eq!(code, 200);

    let mut found = Vec::new();
    let (_, metrics) = s.request_text("GET", "/metrics", "");
    assert!(metrics.contains("omnistream_events_total"), "{metrics}");
    found.extend(leaks("metrics", metrics.as_bytes(), &phones));
    let board = s.get("/v1/board");
    found.extend(leaks("board", board.to_string().as_bytes(), &phones));
    let mut from = 0;
    loop {
        let page = s.get(&format!("/v1/outputs?from={from}&limit=1000"));
        if page["items"].as_array().unwrap().is_empty() {
            break;
        }
        found.extend(leaks("outputs", page.to_string().as_bytes(), &phones));
        from = page["next"].as_u64().unwrap();
    }
    s.stop();
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            found.extend(leaks(&p.display().to_string(), &bytes, &phones));
        }
    }
    found.extend(leaks("logs", &std::fs::read(&log).unwrap(), &phones));
    assert!(found.is_empty(), "plain phone numbers found: {found:?}");
}

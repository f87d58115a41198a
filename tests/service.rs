//! The service end to end: `omnistream run` as a child process on port 0 with a temp data
//! directory, driven over real HTTP; restarts with SIGTERM and SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{observe, script, Service};

#[test]
fn the_scripted_day_gives_the_expected_state_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    assert_eq!(s.get("/readyz")["status"], "ready");
    let r = s.post(&script());
    assert_eq!(r["accepted"], 14, "{r}");
    let o = observe(&s);
    // the order earned 200 points, the return of half took 100 back
    assert_eq!(o["member"]["balance"], 100, "{o}");
    assert_eq!(
        o["same_member"], true,
        "phone at the store and openid are one member: {o}"
    );
    let ledger = o["ledger"]["entries"].as_array().unwrap();
    let sum: i64 = ledger.iter().map(|e| e["delta"].as_i64().unwrap()).sum();
    assert_eq!(sum, 100);
    assert_eq!(o["scanner"]["balance"], 20, "two scans of 10 points");
    // 100 − 2 sold + 1 returned − 40 (p1, fulfilled) − 20 (p2, released after the payment)
    assert_eq!(o["stock"]["atp"], 39, "{o}");
    assert_eq!(o["credit"]["held"].as_array().unwrap().len(), 0, "{o}");
    assert_eq!(o["credit"]["exposure"], 20000, "{o}");
    // a repeat of the whole batch changes nothing
    let again = s.post(&script());
    assert_eq!(again["duplicates"], 14);
    assert_eq!(observe(&s), o);
    let openapi = s.get("/openapi.json");
    assert!(openapi["paths"]["/v1/events"]["post"].is_object());
    s.stop();
}

#[test]
fn bad_requests_get_4xx_with_reasons_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let (code, v) = s.request("POST", "/v1/events", "[{\"id\": 1,");
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["error"], "bad_body");
    let mut events = script();
    events.insert(1, r#"{"id":"nope","type":"scan"}"#.to_string());
    let r = s.post(&events);
    assert_eq!(
        (r["accepted"].as_u64(), r["rejected"].as_u64()),
        (Some(14), Some(1)),
        "{r}"
    );
    assert_eq!(r["results"][1]["status"], "rejected");
    assert_eq!(r["results"][1]["reasons"][0]["reason"], "bad_uuid");
    let dead = s.get("/v1/outputs?output=dead_letter");
    assert_eq!(dead["items"].as_array().unwrap().len(), 1, "{dead}");
    let (code, _) = s.request("GET", "/v1/members/nobody", "");
    assert_eq!(code, 404);
    let (code, v) = s.request("GET", "/v1/identities/phone/not-a-phone", "");
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.request("POST", "/v1/scan", &script()[2]);
    assert_eq!(code, 400, "an order is not a scan: {v}");
}

#[test]
fn restarts_after_sigterm_and_sigkill_reach_the_same_state_as_one_run() {
    let events = script();
    let whole = tempfile::tempdir().unwrap();
    let s = Service::start(whole.path());
    s.post(&events);
    let expected = observe(&s);
    s.stop();

    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    s.post(&events[..5]);
    s.stop();
    let s = Service::start(dir.path());
    s.post(&events[5..9]);
    // answered means durable: a SIGKILL right after loses nothing acknowledged
    s.kill();
    let s = Service::start(dir.path());
    let r = s.post(&events);
    assert_eq!(r["duplicates"], 9, "the first nine were kept: {r}");
    assert_eq!(observe(&s), expected);
    s.stop();
}

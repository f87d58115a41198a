//! The `smoke` scenario end to end against the running service: generated over HTTP in
//! batches, then the fraud decisions scored against the generator's labels (a minimum recall
//! and a maximum false-positive rate) and the state checked for the invariants the business
//! relies on: points never negative and equal to their lots, stock never oversold, dealer
//! credit never exceeded (an order over the limit waits on hold instead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{short_drive, smoke_events, Service};

/// Floors set below what `smoke` gives at the commit this test was written (recall 0.845,
/// false positives 0.89%; `smoke` has no member history, so the account-age signals stay
/// off), so a rule change that loses a real share of the fraud or flags many genuine
/// consumers fails here, while ordinary tuning does not. Generator and engine are
/// deterministic: the figures only move when the code does.
const MIN_RECALL: f64 = 0.80;
const MAX_FALSE_POSITIVES: f64 = 0.02;

#[test]
fn smoke_over_http_meets_its_fraud_floor_and_keeps_the_invariants() {
    let sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    let (mut events, mut labels) = (Vec::new(), Vec::new());
    omnistream_loadtest::generate(&sc, &mut events, &mut labels, &mut |_| {}).unwrap();
    let lines: Vec<String> = String::from_utf8(events)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let mut accepted = 0;
    for chunk in lines.chunks(500) {
        let r = s.post(chunk);
        assert_eq!(r["rejected"], 0, "generated events must all be valid: {r}");
        accepted += r["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted as usize, lines.len());

    // every decision, page by page
    let mut decisions = String::new();
    let mut from = 0u64;
    loop {
        let page = s.get(&format!("/v1/decisions?from={from}&limit=1000"));
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        for it in items {
            decisions.push_str(&it["output"].to_string());
            decisions.push('\n');
        }
        from = page["next"].as_u64().unwrap();
    }
    let report =
        omnistream_loadtest::score::score(decisions.as_bytes(), labels.as_slice()).unwrap();
    let o = &report.overall;
    eprintln!("{}", report.table());
    assert!(o.fraud > 0 && o.legit > 0, "the scenario has both kinds");
    assert_eq!(
        o.decisions.get("missing").copied().unwrap_or(0),
        0,
        "every labelled scan got a decision"
    );
    let recall = o.recall().unwrap();
    let fpr = o.false_positive_rate().unwrap();
    assert!(recall >= MIN_RECALL, "recall {recall:.3} < {MIN_RECALL}");
    assert!(
        fpr <= MAX_FALSE_POSITIVES,
        "false positives {fpr:.4} > {MAX_FALSE_POSITIVES}"
    );

    // invariants on the final state, by the same check `loadtest bench` reports
    let (code, text) = s.request_text("GET", "/v1/admin/snapshot", "");
    assert_eq!(code, 200);
    let state: omnistream_actors::engine::Snapshot = serde_json::from_str(&text).unwrap();
    assert!(state.members.len() > 100 && state.skus.len() > 10 && !state.dealers.is_empty());
    let broken = omnistream_loadtest::invariants::check(&state);
    assert!(broken.is_empty(), "invariants broken: {broken:?}");
    s.stop();
}

/// `loadtest http` counts what the service did with the events it sent, not only the
/// statuses: a fresh store accepts them, and the same events sent again are duplicates, which
/// the report says instead of passing them off as a rate.
#[test]
fn the_http_driver_reports_the_events_accepted_and_the_duplicates() {
    let events = smoke_events(3_000);
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let opts = short_drive();
    let first = omnistream_loadtest::http::run(&s.addr, &events, &opts, &mut |_| {}).unwrap();
    let again = omnistream_loadtest::http::run(&s.addr, &events, &opts, &mut |_| {}).unwrap();
    let first_paced = first.paced.as_ref().expect("3,000 events outlast 0.2 s");
    for (name, p) in [("closed", &first.max), ("paced", first_paced)] {
        assert!(p.events_accepted > 0, "{name}: {p:?}");
        assert_eq!(p.events_rejected, 0, "{name}: {p:?}");
        // one event a request: every answered request is one event's answer
        assert_eq!(
            p.events_accepted + p.events_duplicate,
            p.ok,
            "{name}: {p:?}"
        );
    }
    // the second run starts again from the first event: the first run's events are
    // duplicates now, and only those
    let sent = first.max.ok + first_paced.ok;
    let p = &again.max;
    assert_eq!(p.events_duplicate, sent.min(p.ok), "{p:?}");
    assert_eq!(p.events_accepted, p.ok - p.events_duplicate, "{p:?}");
    let table = again.table();
    assert!(
        table.contains(&format!("{} duplicate", p.events_duplicate)),
        "{table}"
    );
    // a rate measured on a fresh store is ingest's; one measured on events the store already
    // holds is the duplicate path's, and the report says so instead of passing it off
    let away = "measured the service turning events away";
    assert!(!first.table().contains(away), "{}", first.table());
    let lines = omnistream_loadtest::lines_of(&events);
    let resent = lines[..sent as usize].join(&b'\n');
    let long = omnistream_loadtest::http::Options {
        max_secs: 30.0,
        ..opts
    };
    let rerun = omnistream_loadtest::http::run(&s.addr, &resent, &long, &mut |_| {}).unwrap();
    assert_eq!(rerun.max.events_duplicate, sent, "{:?}", rerun.max);
    let table = rerun.table();
    assert!(
        table.contains(&format!(
            "the closed loop {away}, not ingesting them: {sent} of its {sent} events"
        )),
        "{table}"
    );
    assert!(table.contains("fresh data directory"), "{table}");
}

/// 300 events, a fresh service and options whose closed loop (up to 30 s) uses them all.
fn too_few_events() -> (
    Vec<u8>,
    tempfile::TempDir,
    Service,
    omnistream_loadtest::http::Options,
) {
    let events = smoke_events(300);
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let opts = omnistream_loadtest::http::Options {
        max_secs: 30.0,
        paced_secs: 3.0,
        ..short_drive()
    };
    (events, dir, s, opts)
}

/// A short run (`--events` too few for `--max-secs`) can send every event in the closed
/// loop: its figures are still reported, with why the paced phase did not run and how many
/// events would have let it.
#[test]
fn the_http_driver_reports_the_closed_loop_when_it_used_every_event() {
    let (events, _dir, s, opts) = too_few_events();
    let r = omnistream_loadtest::http::run(&s.addr, &events, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.max.events_accepted, 300, "{:?}", r.max);
    assert!(r.paced.is_none() && r.server.is_none(), "{r:?}");
    let why = r.paced_skipped.as_deref().unwrap();
    assert!(why.contains("used all 300 events"), "{why}");
    let need: u64 = why
        .split("--events ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no --events N in: {why}"));
    assert!(need > 300, "{why}");
    let table = r.table();
    assert!(table.contains("closed loop (max)"), "{table}");
    assert!(
        table.contains("events, closed loop: 300 accepted"),
        "{table}"
    );
    assert!(table.contains("did not run"), "{table}");
    let json = serde_json::to_value(&r).unwrap();
    assert!(
        json["paced"].is_null() && json["max"]["ok"] == 300,
        "{json}"
    );
}

/// A sweep whose events run out stops with why, and still shows what it measured.
#[test]
fn a_sweep_cut_short_by_its_events_says_why_and_shows_what_it_measured() {
    let (events, _dir, s, opts) = too_few_events();
    let e = omnistream_loadtest::http::sweep(&s.addr, &events, &opts, &[0.25, 0.5], &mut |_| {})
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("the sweep stopped; measured before that")
            && text.contains("closed loop at the start: ")
            && text.contains("at the end: not measured")
            && text.contains("no events left for the phase at 0.25 of the maximum"),
        "{text}"
    );
}

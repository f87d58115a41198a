//! The generator's contract: deterministic bytes per seed, every line a valid event, labels
//! for exactly the scans, codes inside their batches, and the scorer's arithmetic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use omnistream_loadtest::{generate, score, Scenario};
use omnistream_schemas::{Body, Decoder, Event, Pii};
use std::collections::{BTreeMap, HashMap, HashSet};

fn run(sc: &Scenario) -> (Vec<u8>, Vec<u8>) {
    let mut ev = Vec::new();
    let mut lb = Vec::new();
    generate(sc, &mut ev, &mut lb, &mut |_| {}).unwrap();
    (ev, lb)
}

fn smoke() -> Scenario {
    Scenario::load("smoke").unwrap()
}

fn decode_all(bytes: &[u8]) -> Vec<Event> {
    let d = Decoder::new(Pii::new(b"test"));
    omnistream_loadtest::lines_of(bytes)
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            d.decode(l).unwrap_or_else(|r| {
                panic!("line {}: {:?}\n{}", i + 1, r, String::from_utf8_lossy(l))
            })
        })
        .collect()
}

#[derive(serde::Deserialize)]
struct LabelLine {
    event: String,
    label: String,
    pattern: String,
}

fn labels(bytes: &[u8]) -> Vec<LabelLine> {
    omnistream_loadtest::lines_of(bytes)
        .into_iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let sc = smoke();
    let (a, la) = run(&sc);
    let (b, lb) = run(&sc);
    assert!(a == b, "events differ between two runs of one seed");
    assert!(la == lb, "labels differ between two runs of one seed");
    let mut other = sc.clone();
    other.seed += 1;
    let (c, lc) = run(&other);
    assert_ne!(a, c);
    assert_ne!(la, lc);
}

#[test]
fn exactly_the_requested_events_all_decode_with_unique_ids() {
    let sc = smoke();
    let (ev, _) = run(&sc);
    let events = decode_all(&ev);
    assert_eq!(events.len() as u64, sc.events);
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "duplicate event ids");
    let mut kinds = BTreeMap::new();
    for e in &events {
        *kinds.entry(e.type_name()).or_insert(0u32) += 1;
    }
    for k in omnistream_schemas::EventKind::ALL.map(|k| k.name()) {
        assert!(kinds.contains_key(k), "no {k} events: {kinds:?}");
    }
}

#[test]
fn every_builtin_scenario_starts_with_valid_events() {
    for (name, _) in omnistream_loadtest::scenario::BUILTIN {
        let mut sc = Scenario::load(name).unwrap();
        // the first 20k lines cover the reference data and the start of the activity
        sc.events = sc.events.min(20_000);
        let mut ev = Vec::new();
        let sum = generate(&sc, &mut ev, &mut std::io::sink(), &mut |_| {}).unwrap();
        // members' history comes on top of the scenario's events
        assert_eq!(sum.events, sc.events + sum.history, "{name}");
        assert_eq!(decode_all(&ev).len() as u64, sum.events, "{name}");
    }
}

#[test]
fn history_precedes_the_scenario_leaves_it_unchanged_and_skips_new_customers() {
    let plain = smoke();
    let mut sc = smoke();
    sc.history.days = 28;
    sc.history.share = 0.8;
    let (a, la) = run(&plain);
    let mut b = Vec::new();
    let mut lb = Vec::new();
    let sum = generate(&sc, &mut b, &mut lb, &mut |_| {}).unwrap();
    assert!(sum.history > 0);
    assert_eq!(sum.events, sc.events + sum.history);
    let events = decode_all(&b);
    let start = omnistream_schemas::EventTime::parse(&sc.start)
        .unwrap()
        .unix_ms();
    let (past, live) = events.split_at(sum.history as usize);
    // one click per member, weeks to an hour before the start, oldest first
    let mut last = i64::MIN;
    let mut who = HashSet::new();
    for e in past {
        let Body::Click(c) = &e.body else {
            panic!("history is clicks: {e:?}")
        };
        let t = e.ts.unix_ms();
        assert!(t >= last && t <= start - 3_600_000 && t >= start - 28 * 86_400_000);
        last = t;
        assert!(
            who.insert(format!("{:?}", c.member)),
            "one click per member"
        );
    }
    // the scenario's own events follow unchanged, ids apart; labels likewise
    let strip = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| l.split_once(',').map_or("", |x| x.1).to_string())
            .collect()
    };
    let tail: Vec<String> = strip(&b).split_off(sum.history as usize);
    assert_eq!(tail, strip(&a));
    assert_eq!(live.len(), plain.events as usize);
    let labels = |bytes: &[u8]| -> Vec<(String, String)> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["label"].to_string(), v["pattern"].to_string())
            })
            .collect()
    };
    assert_eq!(labels(&la), labels(&lb));
    // most ordinary scanners have a past, some are new customers; fraud accounts never do
    let known: HashSet<String> = past
        .iter()
        .filter_map(|e| match &e.body {
            Body::Click(c) => Some(
                c.member
                    .iter()
                    .map(|(_, v)| v.to_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    let scans = live.iter().filter_map(|e| match &e.body {
        Body::Scan(s) => Some(s.member.iter().any(|(_, v)| known.contains(&v.to_string()))),
        _ => None,
    });
    let mut seen = HashMap::new();
    for (has_past, (label, pattern)) in scans.zip(labels(&lb)) {
        *seen.entry((label, pattern, has_past)).or_insert(0) += 1;
    }
    let n = |l: &str, p: &str, h: bool| {
        seen.get(&(format!("\"{l}\""), format!("\"{p}\""), h))
            .copied()
            .unwrap_or(0)
    };
    assert!(
        n("legit", "normal", true) > 3 * n("legit", "normal", false),
        "{seen:?}"
    );
    assert!(n("legit", "normal", false) > 0, "{seen:?}");
    for p in ["device_farm", "nat_rotation", "new_account_burst", "ring"] {
        assert_eq!(n("fraud", p, true), 0, "{p}: {seen:?}");
    }
    // and the same seed gives the same bytes
    let mut c = Vec::new();
    generate(&sc, &mut c, &mut std::io::sink(), &mut |_| {}).unwrap();
    assert!(b == c);
}

#[test]
fn labels_cover_every_scan_and_only_scans() {
    let (ev, lb) = run(&smoke());
    let events = decode_all(&ev);
    let scans: HashSet<String> = events
        .iter()
        .filter(|e| matches!(e.body, Body::Scan(_)))
        .map(|e| e.id.to_string())
        .collect();
    let ls = labels(&lb);
    let labelled: HashSet<String> = ls.iter().map(|l| l.event.clone()).collect();
    assert_eq!(ls.len(), labelled.len(), "a scan labelled twice");
    assert_eq!(labelled, scans);
    assert!(ls.iter().all(|l| l.label == "fraud" || l.label == "legit"));
    // labels never leak into the events
    let text = String::from_utf8(ev).unwrap();
    assert!(!text.contains("\"label\"") && !text.contains("\"pattern\""));
    // every pattern of the scenario shows up, with the side it belongs to
    let mut seen: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for l in &ls {
        let e = seen.entry(l.pattern.as_str()).or_default();
        if l.label == "fraud" {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    for (p, _) in smoke().patterns.shares() {
        assert!(seen.contains_key(p), "pattern {p} missing: {seen:?}");
    }
    for p in [
        "device_farm",
        "batch_harvest",
        "nat_rotation",
        "ring",
        "forged_code",
        "new_account_burst",
    ] {
        assert_eq!(seen[p].1, 0, "{p} has legit scans");
        assert!(seen[p].0 > 0, "{p} has no fraud scans");
    }
    for p in [
        "family",
        "campus_nat",
        "shop_owner",
        "rescan",
        "diversion",
        "normal",
    ] {
        assert_eq!(seen[p].0, 0, "{p} has fraud scans");
    }
}

#[test]
fn codes_start_with_their_batch_prefix_except_forged_ones() {
    let (ev, lb) = run(&smoke());
    let events = decode_all(&ev);
    let pattern: HashMap<String, String> = labels(&lb)
        .into_iter()
        .map(|l| (l.event, l.pattern))
        .collect();
    let mut prefix_sku = HashMap::new();
    for e in &events {
        if let Body::CodeBatch(b) = &e.body {
            prefix_sku.insert(b.prefix.to_string(), b.sku.to_string());
        }
    }
    let mut checked = 0;
    for e in &events {
        let Body::Scan(s) = &e.body else { continue };
        let hit = prefix_sku
            .iter()
            .find(|(p, _)| s.code.starts_with(p.as_str()));
        if pattern[&e.id.to_string()] == "forged_code" {
            assert!(hit.is_none(), "forged code {} matches a batch", s.code);
        } else {
            let (_, sku) = hit.unwrap_or_else(|| panic!("code {} in no batch", s.code));
            assert_eq!(
                sku.as_str(),
                s.sku.as_str(),
                "code {} under the wrong sku",
                s.code
            );
            checked += 1;
        }
    }
    assert!(checked > 1000);
}

#[test]
fn shared_codes_are_scanned_by_many_members_and_fresh_codes_once() {
    let (ev, lb) = run(&smoke());
    let events = decode_all(&ev);
    let pattern: HashMap<String, String> = labels(&lb)
        .into_iter()
        .map(|l| (l.event, l.pattern))
        .collect();
    let mut by_code: HashMap<String, Vec<&str>> = HashMap::new();
    for e in &events {
        if let Body::Scan(s) = &e.body {
            let p = pattern[&e.id.to_string()].as_str();
            by_code.entry(s.code.to_string()).or_default().push(p);
        }
    }
    for (code, ps) in &by_code {
        if ps.len() > 1 {
            assert!(
                ps.iter().all(|p| *p == "shared_code" || *p == "rescan"),
                "code {code} reused outside shared_code/rescan: {ps:?}"
            );
        }
    }
    assert!(by_code
        .values()
        .any(|ps| ps.len() >= 5 && ps[0] == "shared_code"));
}

#[test]
fn time_mostly_increases_and_launches_burst() {
    let sc = smoke();
    let (ev, _) = run(&sc);
    let events = decode_all(&ev);
    let back = events
        .windows(2)
        .filter(|w| w[1].ts.unix_us < w[0].ts.unix_us)
        .count();
    assert!(back > 0, "no late events at all");
    assert!(
        back * 20 < events.len(),
        "{back} of {} go back in time",
        events.len()
    );
    // the first campaign launches at the start: its first minute is far busier than a
    // typical minute afterwards
    let t0 = omnistream_schemas::EventTime::parse(&sc.start)
        .unwrap()
        .unix_us;
    let mut per_min: BTreeMap<i64, u32> = BTreeMap::new();
    for e in events.iter().filter(|e| e.ts.unix_us >= t0) {
        *per_min.entry((e.ts.unix_us - t0) / 60_000_000).or_default() += 1;
    }
    let mut counts: Vec<u32> = per_min.values().copied().collect();
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    assert!(
        per_min[&0] > 4 * median,
        "launch minute {} vs median {median}",
        per_min[&0]
    );
}

#[test]
fn scorer_counts_flags_per_pattern() {
    let labels = r#"{"event":"e1","label":"fraud","pattern":"device_farm"}
{"event":"e2","label":"fraud","pattern":"device_farm"}
{"event":"e3","label":"fraud","pattern":"device_farm"}
{"event":"e4","label":"fraud","pattern":"device_farm"}
{"event":"e5","label":"legit","pattern":"family"}
{"event":"e6","label":"legit","pattern":"family"}
{"event":"e7","label":"legit","pattern":"normal"}
{"event":"e8","label":"legit","pattern":"normal"}
{"event":"e9","label":"legit","pattern":"normal"}
{"event":"e10","label":"legit","pattern":"normal"}
"#;
    let decisions = r#"{"event":"e1","output":"decision","decision":"block","reasons":["device_sharing"]}
{"event":"e2","output":"decision","decision":"review","reasons":[]}
{"event":"e3","output":"decision","decision":"allow","reasons":[]}
{"event":"e5","output":"decision","decision":"block","reasons":[]}
{"event":"e6","output":"decision","decision":"duplicate","reasons":[]}
{"event":"e7","output":"decision","decision":"allow","reasons":[]}
{"event":"e8","output":"decision","decision":"allow","reasons":[]}
{"event":"e9","output":"decision","decision":"allow","reasons":[]}
{"event":"e10","output":"decision","decision":"allow","reasons":[]}
{"event":"e11","output":"decision","decision":"allow","reasons":[]}
{"event":"e1","output":"ledger","member":"m1","delta":5}
{"event":"e4","at":"2026-11-11T00:00:00+08:00","output":"decision","event":"e4","decision":"block"}
not json at all
"#;
    let r = score::score(decisions.as_bytes(), labels.as_bytes()).unwrap();
    let farm = &r.patterns["device_farm"];
    assert_eq!((farm.fraud, farm.tp, farm.fp), (4, 3, 0));
    assert_eq!(farm.recall(), Some(0.75));
    assert_eq!(farm.precision(), Some(1.0));
    assert_eq!(farm.false_positive_rate(), None);
    assert_eq!(
        farm.decisions["block"], 2,
        "e4's decision, whose event key is doubled, counts"
    );
    let fam = &r.patterns["family"];
    assert_eq!((fam.legit, fam.fp), (2, 1));
    assert_eq!(fam.false_positive_rate(), Some(0.5));
    assert_eq!(fam.precision(), Some(0.0));
    let all = &r.overall;
    assert_eq!((all.fraud, all.legit, all.tp, all.fp), (4, 6, 3, 1));
    assert!((all.precision().unwrap() - 3.0 / 4.0).abs() < 1e-12);
    assert!((all.false_positive_rate().unwrap() - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(r.decisions, 11);
    assert_eq!(r.unlabelled, 1);
    let j = r.json();
    assert_eq!(j["overall"]["recall"], 0.75);
    assert!(r.table().contains("device_farm"));
}

#[test]
fn scenario_errors_name_the_key() {
    let base = "seed = 1\nevents = 10\nduration = \"1h\"\n";
    let err = |extra: &str| {
        format!(
            "{:#}",
            Scenario::from_toml(&format!("{base}{extra}"), "t.toml").unwrap_err()
        )
    };
    assert!(err("sedd = 2\n").contains("sedd"));
    let e = err("[patterns]\ndevce_farm = 0.1\n");
    assert!(e.contains("devce_farm") && e.contains("t.toml"), "{e}");
    assert!(err("[patterns]\nring = 2.0\n").contains("patterns.ring"));
    assert!(err("[sizes]\nstores = 0\n").contains("sizes.stores"));
    assert!(err("[mix]\nscan = -1\n").contains("mix.scan"));
    let e = format!(
        "{:#}",
        Scenario::from_toml("seed = 1\nevents = 10\nduration = \"1 hour\"\n", "t").unwrap_err()
    );
    assert!(e.contains("duration") || e.contains("1 hour"), "{e}");
    let e = format!(
        "{:#}",
        Scenario::from_toml("seed = 1\nduration = \"1h\"\n", "t").unwrap_err()
    );
    assert!(e.contains("events"), "{e}");
    assert!(Scenario::load("no-such-scenario").is_err());
}

#[test]
fn bench_runs_on_smoke() {
    let r = omnistream_loadtest::bench::run(&smoke(), 1, &[(2, 1), (2, 64)], &mut |_| {}).unwrap();
    assert_eq!(r.events, 5000);
    assert!(r.ceiling.events_per_s > 0.0 && r.engine.events_per_s > 0.0);
    assert!(
        r.engine_commands >= 5000,
        "engine ran {} commands",
        r.engine_commands
    );
    assert!(r.ratio > 0.0);
    // epochs of one event are the engine's order: the same outputs; longer ones decide the
    // same events into other outputs only where events of one epoch meet
    assert_eq!(r.sharded.len(), 2);
    assert_eq!(r.sharded[0].outputs, r.engine_outputs);
    assert!(r
        .sharded
        .iter()
        .all(|p| p.phase.events_per_s > 0.0 && p.vs_engine > 0.0));
    assert!(r.table().contains("sharded 2 x 64"), "{}", r.table());
}

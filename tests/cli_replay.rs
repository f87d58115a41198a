//! End-to-end tests of `omnistream replay` on the sample feed, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::Path;
use std::process::Command;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample.jsonl");

fn replay(out: &Path, extra: &[&str]) -> String {
    replay_file(Path::new(SAMPLE), out, extra)
}

/// `omnistream replay --input input --out out extra...`; its summary.
fn replay_file(input: &Path, out: &Path, extra: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// The `smoke` scenario's generated events, written to `dir/events.jsonl`.
fn smoke_file(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("events.jsonl");
    let sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
    let mut events = Vec::new();
    omnistream_loadtest::generate(&sc, &mut events, &mut std::io::sink(), &mut |_| {}).unwrap();
    std::fs::write(&input, &events).unwrap();
    input
}

const FILES: [&str; 9] = [
    "outputs.jsonl",
    "ledger.jsonl",
    "dead-letter.jsonl",
    "members.jsonl",
    "skus.jsonl",
    "dealers.jsonl",
    "stores.jsonl",
    "campaigns.jsonl",
    "state.json",
];

#[test]
fn replaying_the_same_file_twice_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    replay(&a, &[]);
    replay(&b, &[]);
    for f in FILES {
        let x = std::fs::read(a.join(f)).unwrap();
        assert_eq!(
            x,
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two replays"
        );
    }
}

#[test]
fn the_sample_feed_gives_the_expected_business_results() {
    let dir = tempfile::tempdir().unwrap();
    let summary = replay(dir.path(), &[]);
    assert!(summary.contains("1 rejected"), "{summary}");
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    // the POS customer and the mini-program login are one member with both identities
    let members: Vec<serde_json::Value> = read("members.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let chen = members
        .iter()
        .find(|m| m["identities"].to_string().contains("o6_chen"))
        .unwrap();
    assert!(chen["identities"].to_string().contains("card"), "{chen}");
    // no plain phone number anywhere in the outputs
    for f in FILES {
        assert!(!read(f).contains("13800138000"), "plain phone in {f}");
    }
    // the held dealer order was released by the payment and accepted
    let outputs = read("outputs.jsonl");
    assert!(
        outputs.contains(r#""output":"order_held","order":"dealer:D-9002""#),
        "{outputs}"
    );
    assert!(outputs.contains(r#""output":"order_released","order":"dealer:D-9002""#));
    // the bad line is in the dead letters with its reasons, phone redacted
    let dead = read("dead-letter.jsonl");
    assert!(dead.contains("bad_uuid") && dead.contains("bad_ip") && dead.contains("<redacted>"));
    // the campaign's budget and counts, as /v1/campaigns shows them (on the defaults: no
    // rules name it), and the time the views are as of: the last event's
    let cny: serde_json::Value = serde_json::from_str(read("campaigns.jsonl").trim()).unwrap();
    assert_eq!(
        (&cny["id"], &cny["configured"]),
        (&"cny-2027".into(), &false.into()),
        "{cny}"
    );
    assert!(cny["spent"].as_i64().unwrap() > 0, "{cny}");
    let input: serde_json::Value = serde_json::from_str(&read("input.json")).unwrap();
    assert!(
        input["as_of"].as_str().unwrap().starts_with("2026-11-1"),
        "{input}"
    );
    assert!(!summary.contains("note: campaigns"), "{summary}");
    // a campaign misspelt in the rules is named, with the one the scans named
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[campaigns.cny-2072]\npoints = 20\n").unwrap();
    let out = dir.path().join("typo");
    let summary = replay(&out, &["--rules", typo.to_str().unwrap()]);
    assert!(summary.contains("no scan named: cny-2072"), "{summary}");
    assert!(summary.contains("default-campaign): cny-2027"), "{summary}");
}

#[test]
fn bad_rules_stop_with_the_key_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[points]\nfen-per-point = 0\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", SAMPLE, "--out"])
        .arg(dir.path().join("out"))
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("points.fen-per-point: must be > 0"), "{err}");
}

/// `--rules` takes a rules file (the `[rules]` tables at top level) or a whole configuration
/// file (`check-config`'s), whose `[rules]` it uses: the same rules give the same ledger.
#[test]
fn a_whole_configuration_file_gives_replay_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    let replay = |name: &str, text: &str| {
        let rules = dir.path().join(format!("{name}.toml"));
        std::fs::write(&rules, text).unwrap();
        let out = dir.path().join(name);
        let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["replay", "--input", SAMPLE, "--out"])
            .arg(&out)
            .arg("--rules")
            .arg(&rules)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read_to_string(out.join("ledger.jsonl")).unwrap()
    };
    let rules = replay("rules", "[default-campaign]\npoints = 33\n");
    let config = replay(
        "config",
        "listen = \"127.0.0.1:9999\"\n[auth]\nenabled = false\n[rules.default-campaign]\npoints = 33\n",
    );
    assert!(rules.contains(r#""delta":33,"#), "{rules}");
    assert_eq!(rules, config);
}

/// A what-if as a data team runs it: replay, edit the `rules.toml` the replay wrote, replay
/// under it, and `diff` the two: it names the settings changed and what they did, exits 1;
/// the file taken back unchanged gives the same replay (exit 0).
#[test]
fn diff_shows_what_a_rule_change_did() {
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_file(dir.path());
    let (base, same, what_if) = (
        dir.path().join("base"),
        dir.path().join("same"),
        dir.path().join("what-if"),
    );
    replay_file(&input, &base, &[]);
    let written = std::fs::read_to_string(base.join("rules.toml")).unwrap();
    let again = base.join("rules.toml");
    replay_file(&input, &same, &["--rules", again.to_str().unwrap()]);
    // twice the points a yuan, and a lower block threshold
    let edited = written
        .replace("fen-per-point = 100", "fen-per-point = 50")
        .replace("block-at = 70", "block-at = 50");
    assert_ne!(edited, written, "the defaults moved: {written}");
    let rules = dir.path().join("what-if.toml");
    std::fs::write(&rules, edited).unwrap();
    replay_file(&input, &what_if, &["--rules", rules.to_str().unwrap()]);
    let diff = |a: &Path, b: &Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .arg("diff")
            .args([a, b])
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (code, text) = diff(&base, &same, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("rules: the same"), "{text}");
    assert!(!text.contains("NOTE"), "{text}");
    // a replay that ran otherwise (time moved on after the input) is said to, whatever
    // its outputs
    let later = dir.path().join("later");
    replay_file(&input, &later, &["--until", "2027-06-01T00:00:00+08:00"]);
    let (_, text) = diff(&base, &later, &[]);
    assert!(
        text.contains("NOTE the two replays ran differently, not only by rules: until: null against \"2027-06-01T00:00:00+08:00\""),
        "{text}"
    );
    let changes = dir.path().join("changes.jsonl");
    let (code, text) = diff(&base, &what_if, &["--changes", changes.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("rules changed: default-campaign.fraud.block-at, points.fen-per-point"),
        "{text}"
    );
    let (_, json) = diff(&base, &what_if, &["--json"]);
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    // more points in all, and reviews scoring 50 or more blocked
    let [a, b] = [0, 1].map(|i| r["members"]["points"]["balance"][i].as_i64().unwrap());
    assert!(b > a, "{r}");
    let [x, y] = [0, 1].map(|i| r["decisions"]["block"][i].as_i64().unwrap_or(0));
    assert!(y > x, "{r}");
    // every changed member in the file, one line each
    let lines = std::fs::read_to_string(&changes).unwrap();
    assert_eq!(
        lines.lines().count() as u64,
        r["members"]["changed"].as_u64().unwrap()
    );
    assert!(lines.lines().all(|l| l.contains(r#""points":"#)
        || l.contains(r#""tier":"#)
        || l.contains(r#""tags":"#)
        || l.contains(r#""other":"#)));
}

/// A backfill from exports made one per kind of event, each in its own time order: with
/// `--sort-by-time` the replay is the one of all the events in time order.
#[test]
fn sort_by_time_replays_exports_per_channel_as_one_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_file(dir.path());
    let text = std::fs::read_to_string(&input).unwrap();
    let ts = |l: &str| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        omnistream_schemas::EventTime::parse(v["ts"].as_str().unwrap())
            .unwrap()
            .unix_us
    };
    // the events in time order, leaving out those sharing an instant (whose order among
    // themselves would be the files' order, not the generator's)
    let mut lines: Vec<(i64, &str)> = text.lines().map(|l| (ts(l), l)).collect();
    lines.sort_by_key(|(t, _)| *t);
    let mut count = std::collections::HashMap::new();
    for (t, _) in &lines {
        *count.entry(*t).or_insert(0) += 1;
    }
    lines.retain(|(t, _)| count[t] == 1);
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let timeline = dir.path().join("timeline.jsonl");
    std::fs::write(
        &timeline,
        join(&lines.iter().map(|(_, l)| *l).collect::<Vec<_>>()),
    )
    .unwrap();
    // orders in one export, everything else in another
    let (orders, rest): (Vec<&str>, Vec<&str>) = lines
        .iter()
        .map(|(_, l)| *l)
        .partition(|l| l.contains(r#""type":"order""#));
    assert!(orders.len() > 100 && rest.len() > 100);
    let (a, b) = (
        dir.path().join("orders.jsonl"),
        dir.path().join("rest.jsonl"),
    );
    std::fs::write(&a, join(&orders)).unwrap();
    std::fs::write(&b, join(&rest)).unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    replay_file(&timeline, &one, &[]);
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--sort-by-time", "--input"])
        .args([&a, &b])
        .arg("--out")
        .arg(&two)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "members.jsonl",
        "skus.jsonl",
        "dealers.jsonl",
        "stores.jsonl",
        "state.json",
    ] {
        let (x, y) = (
            std::fs::read(one.join(f)).unwrap(),
            std::fs::read(two.join(f)).unwrap(),
        );
        assert!(
            x == y,
            "{f} differs between the timeline and the sorted exports"
        );
    }
}

/// Exports of one channel each, read one after another: the second's events older than the
/// lateness window behind the first's are refused, and the summary says to sort them.
#[test]
fn files_read_one_after_another_with_late_events_are_told_to_sort() {
    let dir = tempfile::tempdir().unwrap();
    let click = |n: u32, day: u32| {
        format!(
            r#"{{"id":"00000000-0000-7000-8000-{n:012}","type":"click","ts":"2026-11-{day:02}T10:00:00+08:00","channel":"mall","member":{{"openid":"o{n}"}},"target":"ad"}}"#
        ) + "\n"
    };
    let (a, b) = (
        dir.path().join("mall.jsonl"),
        dir.path().join("tmall.jsonl"),
    );
    std::fs::write(&a, click(1, 20)).unwrap();
    std::fs::write(&b, click(2, 1)).unwrap();
    let summary = replay_file(
        &a,
        &dir.path().join("out"),
        &["--input", b.to_str().unwrap()],
    );
    assert!(summary.contains("1 rejected"), "{summary}");
    assert!(
        summary.contains("note: 1 events were older") && summary.contains("--sort-by-time"),
        "{summary}"
    );
    let summary = replay_file(
        &a,
        &dir.path().join("sorted"),
        &["--input", b.to_str().unwrap(), "--sort-by-time"],
    );
    assert!(
        summary.contains("0 rejected") && !summary.contains("note:"),
        "{summary}"
    );
}

/// The outputs are written on a thread of their own: a write that fails there stops the
/// replay with the file and the reason, as one on the main thread does. (`/dev/full` answers
/// every write with "no space left".)
#[test]
fn a_failed_write_of_the_outputs_stops_with_the_file_and_the_reason() {
    if !Path::new("/dev/full").exists() {
        return; // not Linux: nothing to test with
    }
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_file(dir.path());
    for file in ["outputs.jsonl", "ledger.jsonl", "state.json"] {
        let out = dir.path().join(format!("out-{file}"));
        std::fs::create_dir_all(&out).unwrap();
        std::os::unix::fs::symlink("/dev/full", out.join(file)).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["replay", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{file}");
        let err = String::from_utf8_lossy(&o.stderr);
        let what = if file == "state.json" {
            "the state"
        } else {
            file
        };
        assert!(
            err.contains(&format!("writing {what}: No space left")),
            "{file}: {err}"
        );
    }
}

/// `--resident` passivates entities to a spill store while replaying: the files are the same
/// as with every entity in memory, on a generated stream big enough to evict many times.
#[test]
fn a_resident_bound_changes_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_file(dir.path());
    let (a, b) = (dir.path().join("all"), dir.path().join("bounded"));
    replay_file(&input, &a, &[]);
    let summary = replay_file(&input, &b, &["--resident", "300"]);
    let passivated: u64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("passivated: "))
        .and_then(|n| n.split_whitespace().next())
        .unwrap_or_else(|| panic!("no passivated line in {summary}"))
        .parse()
        .unwrap();
    assert!(passivated > 1000, "{summary}");
    assert!(!b.join("spill").exists(), "the spill store is left behind");
    for f in FILES {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs with --resident 300"
        );
    }
}

#[test]
fn replay_refuses_an_event_beyond_the_lateness_window_into_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("late.jsonl");
    let at = |n: u32, ts: &str| {
        format!(
            r#"{{"type":"stock","id":"00000000-0000-7000-8000-{n:012}","ts":"{ts}","sku":"T","location":"wh","op":"receive","qty":1}}"#
        )
    };
    let lines = [
        at(1, "2026-11-11T08:00:00+08:00"),
        // ten days before the watermark: beyond the default window of six
        at(2, "2026-11-01T08:00:00+08:00"),
        at(3, "2026-11-10T08:00:00+08:00"),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    replay_file(&input, &out, &[]);
    let dead = std::fs::read_to_string(out.join("dead-letter.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], "00000000-0000-7000-8000-000000000002");
    assert_eq!(dead[0]["line"], 2);
    // shaped as the service's dead letters, which a warehouse loads beside these
    assert_eq!(dead[0]["output"], "dead_letter");
    assert_eq!(
        dead[0]["source"],
        format!("file:{}", dead[0]["file"].as_str().unwrap())
    );
    assert_eq!(dead[0]["reasons"][0]["reason"], "too_late", "{dead:?}");
    let skus = std::fs::read_to_string(out.join("skus.jsonl")).unwrap();
    assert!(skus.contains("\"T\""), "{skus}");
    // on shards, the late line is dead-lettered alike: same file, line, id, reasons and text
    let sharded = dir.path().join("sharded");
    replay_file(&input, &sharded, &["--shards", "2", "--epoch-events", "2"]);
    assert_eq!(
        std::fs::read_to_string(sharded.join("dead-letter.jsonl")).unwrap(),
        std::fs::read_to_string(out.join("dead-letter.jsonl")).unwrap()
    );
    // --strict: the same files, and status 1 for a backfill that must not pass short
    let strict = dir.path().join("strict");
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--strict", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&strict)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--strict: lines rejected: 1 "),
        "{o:?}"
    );
    assert_eq!(
        std::fs::read_to_string(strict.join("dead-letter.jsonl")).unwrap(),
        std::fs::read_to_string(out.join("dead-letter.jsonl")).unwrap()
    );
}

/// The key for personal data may come from a file (`OMNISTREAM_PII_KEY_FILE`, a mounted
/// secret): the same key from the file or the variable hashes alike, another key otherwise;
/// both set, or a key under 16 bytes, stops with the variable named and the key not shown.
#[test]
fn the_personal_data_key_comes_from_the_variable_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("pii.key");
    std::fs::write(&key_file, "a-key-from-a-mounted-secret\n").unwrap();
    let run = |out: &str, env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_omnistream"));
        c.args(["replay", "--input", SAMPLE, "--out"])
            .arg(dir.path().join(out))
            .env_remove("OMNISTREAM_PII_KEY")
            .env_remove("OMNISTREAM_PII_KEY_FILE");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let state = std::fs::read(dir.path().join(out).join("state.json")).ok();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
            state,
        )
    };
    let file = key_file.to_str().unwrap();
    let (code, err, from_file) = run("file", &[("OMNISTREAM_PII_KEY_FILE", file)]);
    assert_eq!(code, Some(0), "{err}");
    let (_, _, from_var) = run(
        "var",
        &[("OMNISTREAM_PII_KEY", "a-key-from-a-mounted-secret")],
    );
    assert_eq!(from_file, from_var, "the same key hashes alike");
    let (_, _, other) = run("other", &[("OMNISTREAM_PII_KEY", "another-key-0123456789")]);
    assert_ne!(from_file, other, "another key hashes otherwise");
    let (code, err, _) = run(
        "both",
        &[
            ("OMNISTREAM_PII_KEY_FILE", file),
            ("OMNISTREAM_PII_KEY", "x-0123456789abcdef"),
        ],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("both set"), "{err}");
    let (code, err, _) = run("short", &[("OMNISTREAM_PII_KEY", "short-key")]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("OMNISTREAM_PII_KEY") && err.contains("16"),
        "{err}"
    );
    assert!(!err.contains("short-key"), "the key is never shown: {err}");
    let (code, err, _) = run(
        "missing",
        &[("OMNISTREAM_PII_KEY_FILE", "/nonexistent/pii.key")],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("/nonexistent/pii.key"), "{err}");
    // `check-config` refuses what `run` would, before any store exists
    for (var, value, says) in [
        ("OMNISTREAM_PII_KEY", "short-key", "16"),
        (
            "OMNISTREAM_PII_KEY_FILE",
            "/nonexistent/pii.key",
            "/nonexistent/pii.key",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["check-config", "--data-dir"])
            .arg(dir.path().join("no-store-yet"))
            .env_remove("OMNISTREAM_PII_KEY")
            .env_remove("OMNISTREAM_PII_KEY_FILE")
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{var}: {err}");
        assert!(err.contains(var) && err.contains(says), "{err}");
    }
}

/// `--shards` changes no output file: on a generated stream, 3 shards write what 1 writes for
/// the same epochs, and with epochs of one event both write what the single engine writes.
/// `--until` fires the timers the same way too.
#[test]
fn the_number_of_shards_changes_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = smoke_file(dir.path());
    let until = ["--until", "2031-01-01T00:00:00Z"];
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let summary = replay_file(&input, &out, &[&until[..], extra].concat());
        (out, summary)
    };
    let same = |a: &Path, b: &Path, what: &str| {
        for f in FILES {
            assert!(
                std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
                "{f} differs: {what}"
            );
        }
    };
    let (engine, s) = run("engine", &[]);
    assert!(s.contains(" events, "), "{s}");
    let (three, _) = run("three", &["--shards", "3"]);
    same(
        &engine,
        &three,
        "3 shards, epochs of one event, against the engine",
    );
    let (one_e, _) = run("one-e64", &["--shards", "1", "--epoch-events", "64"]);
    let (three_e, _) = run("three-e64", &["--shards", "3", "--epoch-events", "64"]);
    same(&one_e, &three_e, "3 shards against 1, epochs of 64 events");
    // longer epochs are another order, not another business: every scan is decided once
    let decisions = |d: &Path| {
        std::fs::read_to_string(d.join("outputs.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(r#""output":"decision""#))
            .count()
    };
    assert_eq!(decisions(&engine), decisions(&three_e));
    // a bad value is refused with the flag's name
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--shards", "0", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("zero"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shards"));
}

/// A missing input is found before anything is written: the output directory keeps the
/// files of the earlier run as they were (it used to truncate some and keep others).
#[test]
fn a_missing_input_stops_before_any_output_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    replay(&out, &[]);
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", SAMPLE, "--input"])
        .arg(dir.path().join("nope.jsonl"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("opening") && err.contains("nope.jsonl"),
        "{err}"
    );
    for (f, b) in FILES.iter().zip(&before) {
        assert_eq!(&std::fs::read(out.join(f)).unwrap(), b, "{f} changed");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", SAMPLE, "--shards", "1000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at most 64"));
}

/// The timers `--until` fires run in its offset, as those an event makes due run in the
/// event's: points expiring and tags lapsing a year on are stamped, and land on days, in
/// `+08:00` when `--until` says `+08:00` (they were in UTC whatever it said).
#[test]
fn the_timers_until_fires_run_in_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    for (until, suffix) in [
        ("2027-12-01T00:00:00+08:00", "+08:00"),
        ("2027-12-01T00:00:00Z", "Z"),
    ] {
        let out = dir.path().join(suffix);
        replay(&out, &["--until", until]);
        let text = std::fs::read_to_string(out.join("outputs.jsonl")).unwrap();
        let fired: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|o| o["at"].as_str().map(str::to_string))
            .filter(|at| at.as_str() > "2027")
            .collect();
        assert!(fired.len() >= 5, "{until}: {fired:?}");
        assert!(
            fired.iter().all(|at| at.ends_with(suffix)),
            "{until}: {fired:?}"
        );
    }
}

/// `--until` before the input's last event time fires nothing more, and says so.
#[test]
fn an_until_before_the_inputs_end_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", SAMPLE, "--out"])
        .arg(dir.path().join("out"))
        .args(["--until", "2020-01-01T00:00:00Z"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("--until 2020-01-01T00:00:00.000Z is not after the input's last event time"),
        "{err}"
    );
}

/// `--rules` given twice: the second laid over the first, key by key, so a what-if file of
/// one key keeps the rest of the service's configuration (its campaigns), and the campaign
/// takes the changed default it does not set itself. A configuration's [rules] only are
/// read: its access tokens need not be in the environment.
#[test]
fn a_what_if_file_is_laid_over_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("omnistream.toml");
    std::fs::write(
        &config,
        "[auth]\nenabled = true\ntokens = [{name = \"pos\", scopes = [\"ingest\"], token-env = \"OMNISTREAM_TOKEN_NOT_SET_HERE\"}]\n\
         [rules.campaigns.qr-summer]\npoints = 50\n[rules.default-campaign.fraud]\nblock-at = 80\n",
    )
    .unwrap();
    let what_if = dir.path().join("what-if.toml");
    // valid only over the base's block-at (80): alone, over the default 70, it is not
    std::fs::write(&what_if, "[default-campaign.fraud]\nreview-at = 75\n").unwrap();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", SAMPLE, "--out"])
        .arg(&out)
        .arg("--rules")
        .arg(&config)
        .arg("--rules")
        .arg(&what_if)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ran: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.join("rules.toml")).unwrap()).unwrap();
    let qr = &ran["campaigns"]["qr-summer"];
    assert_eq!(qr["points"].as_integer(), Some(50), "{ran}");
    assert_eq!(qr["fraud"]["review-at"].as_integer(), Some(75), "{ran}");
    assert_eq!(qr["fraud"]["block-at"].as_integer(), Some(80), "{ran}");
    assert_eq!(
        ran["default-campaign"]["fraud"]["review-at"].as_integer(),
        Some(75)
    );
    // a bad key in either is reported against its own file
    std::fs::write(&what_if, "[default-campaign.fraud]\nreview_at = 30\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", SAMPLE, "--out"])
        .arg(&out)
        .arg("--rules")
        .arg(&config)
        .arg("--rules")
        .arg(&what_if)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("what-if.toml") && err.contains("review_at"),
        "{err}"
    );
}

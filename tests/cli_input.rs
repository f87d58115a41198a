//! `omnistream run --input FILE`: a JSON-lines file taken in exactly once, followed while it
//! grows, and read on from its durable position after a restart; `--stop-after-input` as a
//! backfill; a file that cannot be read stops start-up.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{observe, script, Service};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `/v1/stats` until the input file's durable position is `position`.
fn wait_for(s: &Service, position: u64) -> Value {
    let started = Instant::now();
    loop {
        let stats = s.get("/v1/stats");
        if stats["inputs"][0]["position"] == position {
            return stats;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the input did not reach {position}: {}",
            stats["inputs"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of one sample of `/metrics`, by its name and labels as printed.
fn metric(s: &Service, sample: &str) -> Option<f64> {
    let (code, text) = s.request_text("GET", "/metrics", "");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_followed_file_gives_the_state_of_the_same_events_posted_and_restarts_where_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let events = script();
    // the reference: the same events over HTTP
    let posted = Service::start(&tmp.path().join("posted"));
    posted.post(&events);
    let want = observe(&posted);
    posted.stop();

    // the first half, a blank line, and the next event cut in the middle of its line
    let file = tmp.path().join("feed.jsonl");
    let half = events.len() / 2;
    let mut text = events[..half].join("\n") + "\n\n";
    let cut = events[half].len() / 2;
    text.push_str(&events[half][..cut]);
    std::fs::write(&file, &text).unwrap();
    let first_part = (text.len() - cut) as u64;

    let data = tmp.path().join("data");
    let path = file.to_str().unwrap();
    let s = Service::start_args(&data, &["--input", path], &[], Stdio::inherit());
    let stats = wait_for(&s, first_part);
    assert_eq!(stats["inputs"][0]["lines"], half as u64, "{stats}");
    assert_eq!(
        stats["inputs"][0]["done"], false,
        "a followed file is never done"
    );
    assert_eq!(stats["shard"]["applied"], half as u64, "{stats}");
    // the same in the metrics, and the cut line as bytes behind
    let label = format!("{{file=\"{path}\"");
    let sample = |name: &str, rest: &str| metric(&s, &format!("{name}{label}{rest}}}"));
    assert_eq!(
        sample("omnistream_input_position_bytes", ""),
        Some(first_part as f64)
    );
    assert_eq!(
        sample("omnistream_input_behind_bytes", ""),
        Some(cut as f64)
    );
    assert_eq!(
        sample("omnistream_input_lines_total", ",outcome=\"accepted\""),
        Some(half as f64)
    );

    // the cut line ends, and the rest arrives
    let rest = events[half][cut..].to_string() + "\n" + &events[half + 1..].join("\n") + "\n";
    append(&file, rest.as_bytes());
    let end = std::fs::metadata(&file).unwrap().len();
    let stats = wait_for(&s, end);
    assert_eq!(
        stats["inputs"][0]["accepted"],
        events.len() as u64,
        "{stats}"
    );
    assert_eq!(observe(&s), want);
    assert_eq!(sample("omnistream_input_behind_bytes", ""), Some(0.0));
    assert_eq!(
        sample("omnistream_input_lines_total", ",outcome=\"accepted\""),
        Some(events.len() as f64)
    );
    s.stop();

    // a restart reads on from the durable position: nothing is taken twice
    let s = Service::start_args(&data, &["--input", path], &[], Stdio::inherit());
    let stats = wait_for(&s, end);
    assert_eq!(stats["inputs"][0]["from"], end, "{stats}");
    assert_eq!(stats["inputs"][0]["lines"], 0, "{stats}");
    assert_eq!(observe(&s), want);
    s.stop();
}

#[test]
fn stop_after_input_is_a_backfill_and_a_copy_of_the_file_is_all_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let events = script();
    let (a, b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    let half = events.len() / 2;
    // two files read in order; a bad line goes to the dead letters and stops nothing
    std::fs::write(&a, events[..half].join("\n") + "\nnot json\n").unwrap();
    // the last line has no terminator: the file is complete, so it counts
    std::fs::write(&b, events[half..].join("\n")).unwrap();
    let data = tmp.path().join("data");
    let run = |files: &[&std::path::Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_omnistream"));
        cmd.args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("OMNISTREAM_PII_KEY", "service-test-key")
            .env("OMNISTREAM_LOG", "warn");
        for f in files {
            cmd.arg("--input").arg(f);
        }
        let out = cmd.arg("--stop-after-input").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run(&[&a, &b]);
    let want_a = format!("{} lines", half + 1);
    assert!(
        out.contains(&want_a)
            && out.contains(&format!("{half} accepted, 0 duplicates, 1 rejected")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{} accepted, 0 duplicates, 0 rejected",
            events.len() - half
        )),
        "{out}"
    );

    // the same events under another name are read from its start, and change nothing
    let copy = tmp.path().join("copy.jsonl");
    std::fs::write(&copy, events.join("\n") + "\n").unwrap();
    let out = run(&[&copy]);
    assert!(
        out.contains(&format!("0 accepted, {} duplicates", events.len())),
        "{out}"
    );

    // the state is the one of the events posted
    let s = Service::start(&data);
    let posted = Service::start(&tmp.path().join("posted"));
    posted.post(&events);
    assert_eq!(observe(&s), observe(&posted));
    s.stop();
    posted.stop();
}

#[test]
fn an_input_that_cannot_be_read_or_was_cut_stops_start_up_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let run = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--input")
            .arg(file)
            .arg("--stop-after-input")
            .env("OMNISTREAM_LOG", "error")
            .output()
            .unwrap()
    };
    let missing = tmp.path().join("missing.jsonl");
    let out = run(&missing);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--input") && err.contains("missing.jsonl"),
        "{err}"
    );

    let file = tmp.path().join("feed.jsonl");
    std::fs::write(&file, script().join("\n") + "\n").unwrap();
    assert!(run(&file).status.success());
    // replaced by a shorter file under the same name
    std::fs::write(&file, script()[0].clone() + "\n").unwrap();
    let out = run(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("past its end"),
        "{err}"
    );
}

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
    wait_until(s, &format!("the input did not reach {position}"), |i| {
        i[0]["position"] == position
    })
}

/// Polls `/v1/stats` until `check` holds for its `inputs`.
fn wait_until(s: &Service, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let stats = s.get("/v1/stats");
        if check(&stats["inputs"]) {
            return stats;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: {}",
            stats["inputs"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The script's events, and the state they give when posted over HTTP (the reference).
fn posted(tmp: &std::path::Path) -> (Vec<String>, Value) {
    let events = script();
    let posted = Service::start(&tmp.join("posted"));
    posted.post(&events);
    let want = observe(&posted);
    posted.stop();
    (events, want)
}

/// `omnistream run` on `data`, its output captured (for runs that end by themselves).
fn run_to_end(data: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_omnistream"));
    cmd.args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("OMNISTREAM_PII_KEY", "service-test-key")
        .env("OMNISTREAM_LOG", "warn");
    cmd
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
    // the reference: the same events over HTTP
    let (events, want) = posted(tmp.path());

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
        let mut cmd = run_to_end(&data);
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
fn an_input_that_cannot_be_read_stops_start_up_with_its_name_and_one_cut_is_read_again() {
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
    assert!(
        !data.exists(),
        "no data directory made for a run that could not start"
    );

    let file = tmp.path().join("feed.jsonl");
    std::fs::write(&file, script().join("\n") + "\n").unwrap();
    assert!(run(&file).status.success());
    // cut in place and written again (copytruncate; the same file, shorter than the
    // position read to): read again from its start, its event a duplicate
    std::fs::write(&file, script()[0].clone() + "\n").unwrap();
    let out = run(&file);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains("1 lines") && said.contains("0 accepted, 1 duplicates"),
        "{said}"
    );
    // written over in place again (the same inode), now longer than the position read to:
    // its first bytes are not those read, so it is read from its start, not from the
    // middle of a line
    let rest = script()[1..].to_vec();
    std::fs::write(&file, rest.join("\n") + "\n").unwrap();
    let out = run(&file);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let want = format!(
        "{} lines to byte {}",
        rest.len(),
        std::fs::metadata(&file).unwrap().len()
    );
    assert!(
        said.contains(&want)
            && said.contains(&format!(
                "0 accepted, {} duplicates, 0 rejected",
                rest.len()
            )),
        "{said}"
    );
}

#[test]
fn a_followed_file_rotated_by_renaming_goes_on_in_the_new_file_and_a_restart_tells_them_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (events, want) = posted(tmp.path());
    // three files under one name: the third longer than the second, so a position in the
    // second read in the third would start in the middle of a line
    let (a, b) = (events.len() / 3, events.len() / 3 + 2);
    let c = b + (events.len() - b) / 2;
    assert!(c > b + 1 && c < events.len());
    assert!(events[c..].join("\n").len() > events[a..b].join("\n").len() + 1);
    let file = tmp.path().join("feed.jsonl");
    let path = file.to_str().unwrap();
    let write = |part: &[String]| std::fs::write(&file, part.join("\n") + "\n").unwrap();
    write(&events[..a]);
    let data = tmp.path().join("data");
    let s = Service::start_args(&data, &["--input", path], &[], Stdio::inherit());
    let accepted = |n: usize| move |i: &Value| i[0]["accepted"] == n as u64;
    wait_until(&s, "the first file", accepted(a));
    // logrotate: renamed away, a last line written to it by its writer (which has not
    // reopened yet), then another file created under the name
    let old = tmp.path().join("feed.jsonl.1");
    std::fs::rename(&file, &old).unwrap();
    append(&old, (events[a].clone() + "\n").as_bytes());
    write(&events[a + 1..b]);
    let stats = wait_until(&s, "the file created after the rename", accepted(b));
    let second = std::fs::metadata(&file).unwrap().len();
    assert_eq!(stats["inputs"][0]["position"], second, "{stats}");
    assert_eq!(stats["inputs"][0]["rejected"], 0, "{stats}");
    s.stop();

    // while the service was stopped, lines appended, then rotated again: the rest of the
    // renamed file (found beside it by its inode and first bytes) is read, then the new
    // file from its start
    append(&file, (events[b..c].join("\n") + "\n").as_bytes());
    let renamed = tmp.path().join("feed.jsonl.2");
    std::fs::rename(&file, &renamed).unwrap();
    write(&events[c..]);
    // its writer still adds to it (blank lines): it is read until it is quiet, and
    // `/v1/stats` says which file is being finished meanwhile
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (writing, renamed) = (writing.clone(), renamed.clone());
        std::thread::spawn(move || {
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                append(&renamed, b"\n");
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let s = Service::start_args(&data, &["--input", path], &[], Stdio::inherit());
    let stats = wait_until(&s, "the rest of the renamed file", accepted(c - b));
    let rest = &stats["inputs"][0]["rest_of"];
    assert!(
        rest["file"].as_str().unwrap().ends_with("feed.jsonl.2"),
        "{stats}"
    );
    assert_eq!(rest["from"], second, "{stats}");
    assert!(
        stats["inputs"][0]["position"].as_u64().unwrap() > second,
        "{stats}"
    );
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let stats = wait_until(
        &s,
        "the file rotated in while stopped",
        accepted(events.len() - b),
    );
    assert_eq!(stats["inputs"][0]["from"], 0, "{stats}");
    assert!(stats["inputs"][0].get("rest_of").is_none(), "{stats}");
    assert_eq!(stats["inputs"][0]["rejected"], 0, "{stats}");
    assert_eq!(observe(&s), want);
    s.stop();
}

/// The `inputs` entry of the file named `name`.
fn entry<'a>(inputs: &'a Value, name: &str) -> &'a Value {
    inputs
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|f| f["file"].as_str().is_some_and(|f| f.ends_with(name)))
        })
        .unwrap_or(&Value::Null)
}

/// Writes `lines` to `name` in `dir` the way a producer should: under a hidden name, then
/// renamed in (gzip-compressed when the name ends in `.gz`).
fn drop_file(dir: &std::path::Path, name: &str, lines: &[String]) {
    let text = lines.join("\n") + "\n";
    let hidden = dir.join(format!(".{name}.part"));
    if name.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&hidden).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(&hidden, text).unwrap();
    }
    std::fs::rename(&hidden, dir.join(name)).unwrap();
}

#[test]
fn a_watched_directory_takes_files_in_name_order_as_they_appear_and_restarts_where_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let (events, want) = posted(tmp.path());
    let dir = tmp.path().join("feeds");
    std::fs::create_dir(&dir).unwrap();
    // not taken: a hidden file (one being written), and a name that is not JSON lines
    std::fs::write(dir.join(".draft.jsonl"), "not json\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not json\n").unwrap();
    drop_file(&dir, "2026-12-01.jsonl", &events[..4]);
    // the newest, followed: its last line is still being written
    let cut = events[8].len() / 2;
    let second = dir.join("2026-12-02.jsonl");
    std::fs::write(&second, events[4..8].join("\n") + "\n" + &events[8][..cut]).unwrap();
    let data = tmp.path().join("data");
    let args = ["--input-dir", dir.to_str().unwrap()];
    let s = Service::start_args(&data, &args, &[], Stdio::inherit());
    let stats = wait_until(&s, "the first two files", |i| {
        entry(i, "12-01.jsonl")["done"] == true && entry(i, "12-02.jsonl")["lines"] == 4
    });
    let inputs = stats["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2, "only the two JSON-lines files: {inputs:?}");
    assert_eq!(entry(&stats["inputs"], "12-02.jsonl")["done"], false);
    assert_eq!(stats["shard"]["applied"], 8, "{stats}");

    // the followed file grows; then a later name ends it: one gzip-compressed, one plain
    append(&second, (events[8][cut..].to_string() + "\n").as_bytes());
    drop_file(&dir, "2026-12-03.jsonl.gz", &events[9..11]);
    drop_file(&dir, "2026-12-04.jsonl", &events[11..]);
    let stats = wait_until(&s, "the later files", |i| {
        entry(i, "12-02.jsonl")["done"] == true
            && entry(i, "12-03.jsonl.gz")["done"] == true
            && entry(i, "12-04.jsonl")["lines"] == 3
    });
    assert_eq!(entry(&stats["inputs"], "12-02.jsonl")["accepted"], 5);
    assert_eq!(entry(&stats["inputs"], "12-03.jsonl.gz")["accepted"], 2);
    assert_eq!(entry(&stats["inputs"], "12-04.jsonl")["done"], false);
    // an earlier name arriving late is taken too (here a copy: all duplicates), while the
    // newest stays followed
    drop_file(&dir, "2026-11-30.jsonl", &events[..4]);
    let stats = wait_until(&s, "the late file", |i| {
        entry(i, "11-30.jsonl")["done"] == true
    });
    assert_eq!(entry(&stats["inputs"], "11-30.jsonl")["duplicates"], 4);
    assert_eq!(entry(&stats["inputs"], "12-04.jsonl")["done"], false);
    assert_eq!(observe(&s), want);
    let label = format!("{{file=\"{}\"}}", dir.join("2026-12-03.jsonl.gz").display());
    assert_eq!(
        metric(&s, &format!("omnistream_input_behind_bytes{label}")),
        Some(0.0),
        "a done .gz file is not behind"
    );
    s.stop();

    // a restart: the files read to their end are not opened again, the .gz file neither,
    // the newest is followed from its own position; nothing is taken twice
    let s = Service::start_args(&data, &args, &[], Stdio::inherit());
    let stats = wait_until(&s, "the restart", |i| {
        entry(i, "12-03.jsonl.gz")["done"] == true
    });
    for f in [
        "11-30.jsonl",
        "12-01.jsonl",
        "12-02.jsonl",
        "12-03.jsonl.gz",
    ] {
        let e = entry(&stats["inputs"], f);
        assert!(
            e["done"] == true && e["lines"] == 0 && e["from"] == e["position"],
            "{e}"
        );
    }
    assert_eq!(entry(&stats["inputs"], "12-03.jsonl.gz")["lines"], 0);
    let newest = entry(&stats["inputs"], "12-04.jsonl");
    assert!(newest["done"] == false && newest["from"] != 0, "{newest}");
    assert_eq!(observe(&s), want);
    s.stop();

    // a backfill of what is there: every file done, then exit 0; a file read in this run
    // prints its summary, and none is (the .gz file's compressed size was stored with its
    // end: it is not decompressed again)
    let out = run_to_end(&data)
        .args(args)
        .arg("--stop-after-input")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    for f in [
        "12-03.jsonl.gz:",
        "11-30.jsonl:",
        "12-01.jsonl:",
        "12-02.jsonl:",
        "12-04.jsonl:",
    ] {
        assert!(!printed.contains(f), "{f} was opened again: {printed}");
    }
    let missing = run_to_end(&data)
        .args(["--input-dir", tmp.path().join("none").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("--input-dir") && err.contains("none"),
        "{err}"
    );
}

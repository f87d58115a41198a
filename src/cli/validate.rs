//! `omnistream validate`: checks JSON-lines feeds against the event contract, the way a
//! channel team checks its feed before going live.

use anyhow::Context;
use omnistream_schemas::{lint, Decoder, Pii, Problem};
use omnistream_streams::jsonl::JsonLines;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// How often one reason (or warning) occurred, and where first.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// Lines with at least one problem of this kind.
    pub lines: u64,
    /// `file:line` and field path of the first occurrence.
    pub first: String,
}

impl Tally {
    fn add(&mut self, at: impl FnOnce() -> String) {
        if self.lines == 0 {
            self.first = at();
        }
        self.lines += 1;
    }
}

/// The counts for one input file.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct FileCounts {
    /// The file as named on the command line (`-` for stdin).
    pub file: String,
    /// Non-blank lines read.
    pub lines: u64,
    /// Lines that decoded into a valid event.
    pub valid: u64,
    /// Lines rejected.
    pub rejected: u64,
}

/// What `validate` found across all inputs.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Per input file.
    pub files: Vec<FileCounts>,
    /// Rejected lines per reason code.
    pub reasons: BTreeMap<&'static str, Tally>,
    /// Valid events per event type.
    pub valid_by_type: BTreeMap<&'static str, u64>,
    /// Warnings that do not reject a line (unknown fields, repeated ids).
    pub warnings: BTreeMap<String, Tally>,
    /// The same unknown-field warnings on rejected lines: a misspelt required field is
    /// rejected as missing, and its "did you mean" is what says which field it was.
    pub rejected_warnings: BTreeMap<String, Tally>,
    /// Valid lines' warnings per code (`unknown_field`, `duplicate_id`, `future_timestamp`,
    /// ...), the word each warning starts with, summed over the warnings of that code (a
    /// line with two unknown fields counts twice): what a script gating a feed counts.
    pub warning_codes: BTreeMap<String, u64>,
}

/// A warning's code: the word it starts with (`unknown_field at x: ...` → `unknown_field`).
pub(crate) fn warning_code(w: &str) -> &str {
    w.split([' ', ':']).next().unwrap_or(w)
}

impl Summary {
    /// Lines read in all files.
    pub fn lines(&self) -> u64 {
        self.files.iter().map(|f| f.lines).sum()
    }

    /// Lines rejected in all files.
    pub fn rejected(&self) -> u64 {
        self.files.iter().map(|f| f.rejected).sum()
    }
}

/// One rejected line as written to the rejects file.
#[derive(Serialize)]
struct RejectRecord<'a> {
    file: &'a str,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    reasons: &'a [Problem],
    /// Unknown fields in the line, with a "did you mean" for likely typos.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    /// The line with personal values hashed (see `Pii::redact`).
    raw: String,
}

/// Checks every line of every input; writes rejects when asked.
pub struct Validator {
    decoder: Decoder,
    pii: Pii,
    summary: Summary,
    seen_ids: HashSet<uuid::Uuid>,
    rejects: Option<Box<dyn Write>>,
    /// This machine's clock when validation began (µs): events further ahead of it than
    /// `run` takes are warned of.
    now_us: i64,
    /// How far ahead of the clock `run` takes an event (s; 0: any), `max-future-s`.
    max_future_s: u64,
}

impl Validator {
    /// A validator hashing personal values with `pii`, writing rejects to `rejects` if given.
    pub fn new(pii: Pii, rejects: Option<Box<dyn Write>>) -> Self {
        Validator {
            decoder: Decoder::new(pii.clone()),
            pii,
            summary: Summary::default(),
            seen_ids: HashSet::new(),
            rejects,
            now_us: crate::shard::wall_clock_us(),
            max_future_s: crate::config::Config::default().max_future_s,
        }
    }

    /// Warns of events further ahead of the clock than `max_future_s` (0: never), as the
    /// configuration `run` would use sets `max-future-s`.
    pub fn max_future_s(mut self, max_future_s: u64) -> Self {
        self.max_future_s = max_future_s;
        self
    }

    /// Checks all lines of one input named `name`.
    pub fn check(&mut self, name: &str, input: impl Read) -> anyhow::Result<()> {
        let mut counts = FileCounts {
            file: name.to_string(),
            ..FileCounts::default()
        };
        for raw in JsonLines::new(input) {
            let raw = raw.with_context(|| format!("reading {name}"))?;
            counts.lines += 1;
            let at = |path: &str| {
                if path.is_empty() {
                    format!("{name}:{}", raw.line)
                } else {
                    format!("{name}:{} ({path})", raw.line)
                }
            };
            match self.decoder.decode(&raw.bytes) {
                Ok(ev) => {
                    counts.valid += 1;
                    *self
                        .summary
                        .valid_by_type
                        .entry(ev.body.kind().name())
                        .or_default() += 1;
                    if !self.seen_ids.insert(ev.id) {
                        self.summary
                            .warnings
                            .entry("duplicate_id: the same id twice is one event".into())
                            .or_default()
                            .add(|| at("id"));
                    }
                    for w in lint(&raw.bytes) {
                        self.summary.warnings.entry(w).or_default().add(|| at(""));
                    }
                    // what `run` would refuse now, though the contract takes it
                    let max_future_s = self.max_future_s;
                    if crate::shard::too_far_ahead(ev.ts.unix_us, self.now_us, max_future_s)
                        .is_some()
                    {
                        let w = format!(
                            "future_timestamp: more than {max_future_s} s ahead of this \
                             machine's clock: `run` refuses it now (max-future-s)"
                        );
                        self.summary.warnings.entry(w).or_default().add(|| at("ts"));
                    }
                }
                Err(rej) => {
                    counts.rejected += 1;
                    let warnings = lint(&raw.bytes);
                    for w in &warnings {
                        self.summary
                            .rejected_warnings
                            .entry(w.clone())
                            .or_default()
                            .add(|| at(""));
                    }
                    let mut reasons_seen = Vec::new();
                    for p in &rej.problems {
                        let code = p.reason.code();
                        if !reasons_seen.contains(&code) {
                            reasons_seen.push(code);
                            self.summary
                                .reasons
                                .entry(code)
                                .or_default()
                                .add(|| at(&p.path));
                        }
                    }
                    if let Some(out) = self.rejects.as_mut() {
                        let rec = RejectRecord {
                            file: name,
                            line: raw.line,
                            id: rej.id.as_deref(),
                            reasons: &rej.problems,
                            warnings: &warnings,
                            raw: self.pii.redact(&raw.bytes),
                        };
                        serde_json::to_writer(&mut *out, &rec)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
        }
        self.summary.files.push(counts);
        Ok(())
    }

    /// Flushes the rejects file and returns what was found.
    pub fn finish(mut self) -> anyhow::Result<Summary> {
        if let Some(out) = self.rejects.as_mut() {
            out.flush().context("writing the rejects file")?;
        }
        let mut codes = BTreeMap::new();
        for (w, t) in &self.summary.warnings {
            *codes.entry(warning_code(w).to_string()).or_default() += t.lines;
        }
        self.summary.warning_codes = codes;
        Ok(self.summary)
    }
}

/// Renders the summary as the table `validate` prints.
pub fn render(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for f in &s.files {
        let _ = writeln!(
            o,
            "{}: {} lines, {} valid, {} rejected",
            f.file, f.lines, f.valid, f.rejected
        );
    }
    if !s.valid_by_type.is_empty() {
        let parts: Vec<String> = s
            .valid_by_type
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let _ = writeln!(o, "valid by type: {}", parts.join(", "));
    }
    if !s.reasons.is_empty() {
        let _ = writeln!(o, "\nrejected lines by reason:");
        let _ = writeln!(o, "  {:<16} {:>8}  first at", "reason", "lines");
        for (r, t) in &s.reasons {
            let _ = writeln!(o, "  {:<16} {:>8}  {}", r, t.lines, t.first);
        }
    }
    if !s.rejected_warnings.is_empty() {
        let _ = writeln!(
            o,
            "\nin rejected lines (a misspelt required field is rejected as missing):"
        );
        for (w, t) in &s.rejected_warnings {
            let _ = writeln!(o, "  {w}: {} lines, first at {}", t.lines, t.first);
        }
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings (the lines are still valid):");
        for (w, t) in &s.warnings {
            let _ = writeln!(o, "  {w}: {} lines, first at {}", t.lines, t.first);
        }
    }
    let lines = s.lines();
    let rejected = s.rejected();
    let pct = if lines == 0 {
        0.0
    } else {
        100.0 * rejected as f64 / lines as f64
    };
    let verdict = if rejected == 0 { "ok" } else { "FAILED" };
    let _ = writeln!(
        o,
        "\n{verdict}: {lines} lines, {} valid, {rejected} rejected ({pct:.2}%)",
        lines - rejected
    );
    o
}

/// Runs `omnistream validate`: exit 0 when every line is valid, 1 otherwise.
pub fn run(
    files: &[std::path::PathBuf],
    rejects: Option<&Path>,
    json: bool,
    max_future_s: u64,
) -> anyhow::Result<ExitCode> {
    let (pii, _) = super::pii_from_env()?;
    let out: Option<Box<dyn Write>> = match rejects {
        Some(p) => Some(Box::new(BufWriter::new(File::create(p).with_context(
            || format!("creating the rejects file {}", p.display()),
        )?))),
        None => None,
    };
    let mut v = Validator::new(pii, out).max_future_s(max_future_s);
    for f in files {
        if f.as_os_str() == "-" {
            v.check("-", io::stdin().lock())?;
        } else {
            let file =
                crate::files::open_events(f).with_context(|| format!("opening {}", f.display()))?;
            v.check(&f.display().to_string(), file)?;
        }
    }
    let summary = v.finish()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    Ok(if summary.rejected() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03.120+08:00","channel":"campaign","code":"HZ8K2M9Q4T7W","sku":"SKU-COLA-500","campaign":"cny-2027","member":{"phone":"13800138000"},"device":"d-7f3a91","ip":"112.65.3.18"}"#;

    /// An event the contract takes but `run` would refuse now, being ahead of the clock, is
    /// warned of (not rejected: a file is often fed later).
    #[test]
    fn an_event_ahead_of_the_clock_is_warned_of() {
        let ahead = GOOD.replace("2026-11-11T20:15:03.120+08:00", "2999-01-01T00:00:00+08:00");
        let mut v = Validator::new(Pii::new(b"k"), None);
        v.check("in", format!("{GOOD}\n{ahead}\n").as_bytes())
            .unwrap();
        let s = v.finish().unwrap();
        assert_eq!(s.rejected(), 0);
        let warned: Vec<&String> = s
            .warnings
            .keys()
            .filter(|w| w.starts_with("future_timestamp"))
            .collect();
        assert_eq!(warned.len(), 1, "{:?}", s.warnings.keys());
        // as configured: 0 takes any time, so nothing is warned of
        let mut v = Validator::new(Pii::new(b"k"), None).max_future_s(0);
        v.check("in", ahead.as_bytes()).unwrap();
        let s = v.finish().unwrap();
        assert!(
            !s.warnings.keys().any(|w| w.starts_with("future_timestamp")),
            "{:?}",
            s.warnings.keys()
        );
    }

    #[test]
    fn counts_reasons_types_and_duplicates_and_writes_redacted_rejects() {
        let bad_ts = GOOD.replace("2026-11-11T20:15:03.120+08:00", "yesterday");
        let no_member = GOOD.replace(r#""member":{"phone":"13800138000"},"#, "");
        let typo = GOOD
            .replace("\"geo\"", "\"goe\"")
            .replace("\"device\"", "\"devcie\"");
        let input = format!("{GOOD}\n{GOOD}\n{bad_ts}\n\n{no_member}\n{typo}\nnot json\n");
        let buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut v = Validator::new(Pii::new(b"k"), Some(Box::new(Shared(buf.clone()))));
        v.check("feed", input.as_bytes()).unwrap();
        let s = v.finish().unwrap();
        assert_eq!(s.files[0].lines, 6);
        assert_eq!(s.files[0].valid, 2);
        assert_eq!(s.rejected(), 4);
        assert_eq!(s.reasons["bad_timestamp"].lines, 1);
        assert_eq!(s.reasons["bad_timestamp"].first, "feed:3 (ts)");
        assert_eq!(s.reasons["missing_field"].lines, 2, "{:?}", s.reasons);
        assert_eq!(s.reasons["bad_json"].first, "feed:7");
        assert_eq!(s.valid_by_type["scan"], 2);
        let dup = s
            .warnings
            .keys()
            .find(|k| k.starts_with("duplicate_id"))
            .unwrap();
        assert_eq!(s.warnings[dup].first, "feed:2 (id)");
        // the typo that made line 6 miss its device is named on the rejected line, not among
        // the warnings of valid lines
        let hint = "unknown_field at devcie: ignored; did you mean `device`?";
        assert_eq!(s.rejected_warnings[hint].first, "feed:6");
        assert!(!s.warnings.contains_key(hint), "{:?}", s.warnings);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(
            !text.contains("13800138000"),
            "a plain phone leaked: {text}"
        );
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["line"], 3);
        assert_eq!(first["reasons"][0]["reason"], "bad_timestamp");
        assert!(first.get("warnings").is_none(), "{first}");
        let typo: serde_json::Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
        assert_eq!(typo["line"], 6);
        assert_eq!(typo["warnings"][0], hint);
        assert!(render(&s).contains("FAILED: 6 lines, 2 valid, 4 rejected"));
    }
}

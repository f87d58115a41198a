//! Scoring fraud decisions against the generator's labels: precision, recall and the
//! false-positive rate, per pattern and overall.
//!
//! A scan counts as flagged when its decision is `block` or `review` (both stop the reward
//! from being paid at once); `allow` and `duplicate` are not flagged. A labelled scan with no
//! decision is counted as not flagged and reported as missing, so a replay that dropped
//! scans cannot look better than it is.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

#[derive(Deserialize)]
struct LabelLine {
    event: String,
    label: String,
    pattern: String,
}

/// Counts for one pattern (or all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Fraudulent scans.
    pub fraud: u64,
    /// Legitimate scans.
    pub legit: u64,
    /// Fraudulent scans flagged (true positives).
    pub tp: u64,
    /// Legitimate scans flagged (false positives).
    pub fp: u64,
    /// Decisions per value (`allow`, `review`, `block`, `duplicate`, `missing`).
    pub decisions: BTreeMap<String, u64>,
}

impl Counts {
    /// Flagged scans that were fraud; `None` when nothing was flagged.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// Fraud scans flagged; `None` when there was no fraud.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.fraud)
    }

    /// Legitimate scans flagged; `None` when there were none.
    pub fn false_positive_rate(&self) -> Option<f64> {
        ratio(self.fp, self.legit)
    }

    fn add(&mut self, o: &Counts) {
        self.fraud += o.fraud;
        self.legit += o.legit;
        self.tp += o.tp;
        self.fp += o.fp;
        for (k, v) in &o.decisions {
            *self.decisions.entry(k.clone()).or_default() += v;
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "fraud": self.fraud,
            "legit": self.legit,
            "true_positives": self.tp,
            "false_positives": self.fp,
            "precision": self.precision(),
            "recall": self.recall(),
            "false_positive_rate": self.false_positive_rate(),
            "decisions": self.decisions,
        })
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The scorer's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Per pattern, sorted by name.
    pub patterns: BTreeMap<String, Counts>,
    /// All patterns together.
    pub overall: Counts,
    /// Decision lines read.
    pub decisions: u64,
    /// Decisions for events that have no label (not scans of this run).
    pub unlabelled: u64,
}

/// Reads decisions (JSON lines; only `"output":"decision"` lines count) and labels, and scores.
pub fn score(decisions: impl BufRead, labels: impl BufRead) -> Result<Report> {
    let mut by_event: HashMap<String, String> = HashMap::new();
    let mut report = Report::default();
    for (n, line) in decisions.lines().enumerate() {
        let line = line.context("cannot read the decisions")?;
        if !line.contains("\"decision\"") {
            continue;
        }
        // a generic value rather than a struct: it tolerates a key written twice (last wins),
        // which a strict struct would refuse, silently dropping the decision
        let Ok(serde_json::Value::Object(d)) = serde_json::from_str::<serde_json::Value>(&line)
        else {
            continue;
        };
        if d.get("output").and_then(|v| v.as_str()) != Some("decision") {
            continue;
        }
        let field = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let (Some(event), Some(decision)) = (field("event"), field("decision")) else {
            bail!(
                "decisions line {}: a decision without `event` or `decision`",
                n + 1
            );
        };
        report.decisions += 1;
        by_event.insert(event, decision);
    }
    let mut labelled = 0u64;
    for (n, line) in labels.lines().enumerate() {
        let line = line.context("cannot read the labels")?;
        if line.trim().is_empty() {
            continue;
        }
        let l: LabelLine = serde_json::from_str(&line)
            .with_context(|| format!("labels line {}: not a label", n + 1))?;
        let fraud = match l.label.as_str() {
            "fraud" => true,
            "legit" => false,
            other => bail!(
                "labels line {}: label {other:?} is neither fraud nor legit",
                n + 1
            ),
        };
        labelled += 1;
        let decision = by_event
            .remove(&l.event)
            .unwrap_or_else(|| "missing".into());
        let flagged = matches!(decision.as_str(), "block" | "review");
        let c = report.patterns.entry(l.pattern).or_default();
        if fraud {
            c.fraud += 1;
            c.tp += u64::from(flagged);
        } else {
            c.legit += 1;
            c.fp += u64::from(flagged);
        }
        *c.decisions.entry(decision).or_default() += 1;
    }
    if labelled == 0 {
        bail!("the labels file has no labels");
    }
    report.unlabelled = by_event.len() as u64;
    let mut overall = Counts::default();
    for c in report.patterns.values() {
        overall.add(c);
    }
    report.overall = overall;
    Ok(report)
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.2}%", v * 100.0))
}

impl Report {
    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<18} {:>8} {:>8} {:>8} {:>6} {:>10} {:>8} {:>8}  decisions\n",
            "pattern", "fraud", "legit", "tp", "fp", "precision", "recall", "fpr"
        );
        let rows = self
            .patterns
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(std::iter::once(("overall", &self.overall)));
        for (name, c) in rows {
            let dec: Vec<String> = c
                .decisions
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!(
                "{:<18} {:>8} {:>8} {:>8} {:>6} {:>10} {:>8} {:>8}  {}\n",
                name,
                c.fraud,
                c.legit,
                c.tp,
                c.fp,
                pct(c.precision()),
                pct(c.recall()),
                pct(c.false_positive_rate()),
                dec.join(" ")
            ));
        }
        s.push_str(&format!(
            "decision lines: {}, for unlabelled events: {}\n",
            self.decisions, self.unlabelled
        ));
        s
    }

    /// The report as JSON, for tracking over time.
    pub fn json(&self) -> serde_json::Value {
        let patterns: serde_json::Map<String, serde_json::Value> = self
            .patterns
            .iter()
            .map(|(k, v)| (k.clone(), v.json()))
            .collect();
        serde_json::json!({
            "overall": self.overall.json(),
            "patterns": patterns,
            "decision_lines": self.decisions,
            "unlabelled_decisions": self.unlabelled,
        })
    }
}

//! `omnistream diff`: what a rule change did, read from two `replay` directories of the same
//! input (the current rules, then the what-if ones): the rules that differ, members' tiers,
//! tags and points in sum and member by member, scan decisions, refused orders, and which
//! SKUs, dealers and stores came out differently.
//!
//! The view files are read side by side, one line of each at a time (`replay` writes them in
//! key order), so two replays of millions of members are compared in little memory; files
//! out of order (not written by `replay`) are read whole instead.

use anyhow::Context;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// A count on each side.
type Pair = (i64, i64);

/// The member fields summed and compared one by one (the rest are compared whole).
const POINTS: [&str; 3] = ["balance", "pending", "debt"];

/// What two replays came to, side by side.
#[derive(Debug, Default)]
pub struct Report {
    /// Settings that differ (dotted paths), when both directories have their `rules.toml`.
    pub rules: Option<Vec<String>>,
    /// Whether the two are one directory.
    pub same_dir: bool,
    /// How the two replays' runs differ besides the rules (their `input.json`: the inputs'
    /// sizes and lines, `--until`, `--sort-by-time`, shards and epoch size): a difference
    /// here is not the rule change's doing.
    pub runs_differ: Vec<String>,
    /// Members on each side.
    pub members: Pair,
    /// Members of one side only (ids merged differently, or none).
    pub only: Pair,
    /// Members on both sides whose view differs, and how many of them in each respect.
    pub changed: u64,
    /// Changed members by what changed: `tier`, `tags`, `points`, `other`.
    pub changed_in: BTreeMap<&'static str, u64>,
    /// Sums of each of [`POINTS`].
    pub points: BTreeMap<String, Pair>,
    /// Members per tier.
    pub tiers: BTreeMap<String, Pair>,
    /// Members holding each tag.
    pub tags: BTreeMap<String, Pair>,
    /// The first changed members (up to the limit asked for): those whose tier, tags or
    /// points moved first, in key order, then those with other changes only (a threshold's
    /// effect is not lost among members whose tier progress alone moved).
    pub first: Vec<Value>,
    /// The first members with other changes only, kept until the end to fill `first`.
    others_first: Vec<Value>,
    /// Outputs per kind (`output`).
    pub outputs: BTreeMap<String, Pair>,
    /// Scan decisions per decision.
    pub decisions: BTreeMap<String, Pair>,
    /// Scan decisions per campaign, then per decision.
    pub campaign_decisions: BTreeMap<String, BTreeMap<String, Pair>>,
    /// Scans decided on both sides but otherwise, by `(first, second)` decision.
    pub moved: BTreeMap<(String, String), u64>,
    /// The first of those scans (up to the limit asked for): scan event, campaign, code,
    /// member, and each side's decision and score.
    pub moved_first: Vec<Value>,
    /// Refused orders per reason.
    pub rejected: BTreeMap<String, Pair>,
    /// SKUs, dealers and stores: on each side, changed, and the first changed ids.
    pub views: Vec<ViewDiff>,
}

/// One view file compared.
#[derive(Debug, Default)]
pub struct ViewDiff {
    /// `skus`, `dealers`, `stores`.
    pub name: &'static str,
    /// Lines on each side.
    pub count: Pair,
    /// Entities on both sides whose view differs, or on one side only.
    pub changed: u64,
    /// The first of them: id and the fields that differ.
    pub first: Vec<(String, Vec<String>)>,
}

/// Compares the replay in `base` with that in `other`; every changed member is written to
/// `changes` as a JSON line when given; the report keeps the first `limit`.
pub fn run(
    base: &Path,
    other: &Path,
    limit: usize,
    mut changes: Option<&mut dyn Write>,
) -> anyhow::Result<Report> {
    for dir in [base, other] {
        anyhow::ensure!(dir.is_dir(), "{}: no such directory", dir.display());
        for f in ["members.jsonl", "outputs.jsonl"] {
            anyhow::ensure!(
                dir.join(f).is_file(),
                "{}: no {f} here (give two directories `omnistream replay --out` wrote)",
                dir.display()
            );
        }
    }
    let mut r = Report {
        rules: rules_changed(base, other)?,
        same_dir: std::fs::canonicalize(base)? == std::fs::canonicalize(other)?,
        runs_differ: runs_differ(base, other)?,
        ..Report::default()
    };
    join(base, other, "members", "id", |a, b| {
        for (side, m) in [(0, a), (1, b)] {
            let Some(m) = m else { continue };
            bump_one(&mut r.members, side);
            if let Some(t) = m["tier"].as_str() {
                bump_one(r.tiers.entry(t.to_string()).or_default(), side);
            }
            for t in m["tags"].as_array().into_iter().flatten() {
                if let Some(t) = t.as_str() {
                    bump_one(r.tags.entry(t.to_string()).or_default(), side);
                }
            }
            for k in POINTS {
                add(
                    r.points.entry(k.to_string()).or_default(),
                    side,
                    m[k].as_i64().unwrap_or(0),
                );
            }
        }
        match (a, b) {
            (Some(a), Some(b)) => {
                if let Some(c) = member_change(a, b) {
                    r.changed += 1;
                    for k in ["tier", "tags", "points", "other"] {
                        if c.get(k).is_some() {
                            *r.changed_in.entry(k).or_default() += 1;
                        }
                    }
                    if let Some(w) = changes.as_deref_mut() {
                        writeln!(w, "{c}")?;
                    }
                    let notable = ["tier", "tags", "points"]
                        .iter()
                        .any(|k| c.get(*k).is_some());
                    if notable && r.first.len() < limit {
                        r.first.push(c);
                    } else if !notable && r.others_first.len() < limit {
                        r.others_first.push(c);
                    }
                }
            }
            (Some(_), None) => r.only.0 += 1,
            (None, Some(_)) => r.only.1 += 1,
            (None, None) => {}
        }
        Ok(())
    })?;
    let room = limit.saturating_sub(r.first.len());
    let others = std::mem::take(&mut r.others_first);
    r.first.extend(others.into_iter().take(room));
    for (name, key) in [("skus", "sku"), ("dealers", "dealer"), ("stores", "store")] {
        let mut v = ViewDiff {
            name,
            ..ViewDiff::default()
        };
        join(base, other, name, key, |a, b| {
            for (side, x) in [(0, a), (1, b)] {
                if x.is_some() {
                    bump_one(&mut v.count, side);
                }
            }
            let id = a.or(b).map(|x| text(&x[key])).unwrap_or_default();
            let paths = match (a, b) {
                (Some(a), Some(b)) => crate::changed_paths(a, b),
                (Some(_), None) => vec!["(only in the first)".to_string()],
                _ => vec!["(only in the second)".to_string()],
            };
            if !paths.is_empty() {
                v.changed += 1;
                if v.first.len() < limit {
                    v.first.push((id, paths));
                }
            }
            Ok(())
        })?;
        r.views.push(v);
    }
    let mut first_side = std::collections::HashMap::new();
    for (side, dir) in [(0, base), (1, other)] {
        count_outputs(
            &dir.join("outputs.jsonl"),
            side,
            &mut r,
            &mut first_side,
            limit,
        )?;
    }
    Ok(r)
}

/// Adds `n` to a side's count.
fn add(p: &mut Pair, side: usize, n: i64) {
    if side == 0 {
        p.0 += n;
    } else {
        p.1 += n;
    }
}

/// Adds one to a side's count.
fn bump_one(p: &mut Pair, side: usize) {
    add(p, side, 1);
}

/// A side file of a replay directory (`rules.toml`, `input.json`) read and parsed by
/// `parse`; None when the directory has none (a replay by an older build).
fn side_file(
    dir: &Path,
    name: &str,
    parse: impl Fn(&str) -> anyhow::Result<Value>,
) -> anyhow::Result<Option<Value>> {
    let p = dir.join(name);
    if !p.is_file() {
        return Ok(None);
    }
    let s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Some(parse(&s).with_context(|| format!("{}", p.display()))?))
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The settings that differ between the two replays' `rules.toml` (None when either has none:
/// a replay by a build before it was written).
fn rules_changed(base: &Path, other: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let read = |dir: &Path| {
        side_file(dir, "rules.toml", |s| {
            Ok(serde_json::to_value(toml::from_str::<toml::Table>(s)?)?)
        })
    };
    Ok(match (read(base)?, read(other)?) {
        (Some(a), Some(b)) => Some(crate::changed_paths(&a, &b)),
        _ => None,
    })
}

/// What differs between the two replays' `input.json` besides the file names (none when
/// either has none: a replay by an older build).
fn runs_differ(base: &Path, other: &Path) -> anyhow::Result<Vec<String>> {
    let read = |dir: &Path| side_file(dir, "input.json", |s| Ok(serde_json::from_str(s)?));
    let (Some(a), Some(b)) = (read(base)?, read(other)?) else {
        return Ok(Vec::new());
    };
    let sizes = |v: &Value| -> Vec<Value> {
        v["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["bytes"].clone())
            .collect()
    };
    let mut out = Vec::new();
    if sizes(&a) != sizes(&b) || a["lines"] != b["lines"] {
        out.push(format!(
            "the input: {} lines in {:?} bytes against {} lines in {:?} bytes",
            a["lines"],
            sizes(&a),
            b["lines"],
            sizes(&b)
        ));
    }
    for k in ["until", "sort_by_time", "shards", "epoch_events"] {
        if a[k] != b[k] {
            out.push(format!("{k}: {} against {}", a[k], b[k]));
        }
    }
    Ok(out)
}

/// How one member's view differs between the two sides, or None when it does not:
/// `{"id", "tier": [from, to], "tags": {"added": [..], "removed": [..]},
/// "points": {"balance": [from, to], ...}, "other": [paths]}`, each part only when it moved.
pub fn member_change(a: &Value, b: &Value) -> Option<Value> {
    let mut c = serde_json::Map::new();
    if a["tier"] != b["tier"] {
        c.insert("tier".into(), json!([a["tier"], b["tier"]]));
    }
    let tags = |m: &Value| -> Vec<String> {
        m["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect()
    };
    let (ta, tb) = (tags(a), tags(b));
    let added: Vec<&String> = tb.iter().filter(|t| !ta.contains(t)).collect();
    let removed: Vec<&String> = ta.iter().filter(|t| !tb.contains(t)).collect();
    if !added.is_empty() || !removed.is_empty() {
        c.insert("tags".into(), json!({"added": added, "removed": removed}));
    }
    let points: serde_json::Map<String, Value> = POINTS
        .iter()
        .filter(|k| a[**k] != b[**k])
        .map(|k| (k.to_string(), json!([a[*k], b[*k]])))
        .collect();
    if !points.is_empty() {
        c.insert("points".into(), Value::Object(points));
    }
    let other: Vec<String> = crate::changed_paths(a, b)
        .into_iter()
        .filter(|p| {
            let top = p.split(['.', '[']).next().unwrap_or("");
            !["tier", "tags"].contains(&top) && !POINTS.contains(&top)
        })
        .collect();
    if !other.is_empty() {
        c.insert("other".into(), json!(other));
    }
    if c.is_empty() {
        return None;
    }
    let mut with_id = serde_json::Map::new();
    with_id.insert("id".into(), a["id"].clone());
    with_id.extend(c);
    Some(Value::Object(with_id))
}

/// One view file read line by line.
struct Lines {
    path: std::path::PathBuf,
    lines: std::io::Lines<BufReader<std::fs::File>>,
    at: u64,
}

impl Lines {
    fn open(dir: &Path, name: &str) -> anyhow::Result<Option<Lines>> {
        let path = dir.join(format!("{name}.jsonl"));
        if !path.is_file() {
            return Ok(None);
        }
        let f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Some(Lines {
            path,
            lines: BufReader::new(f).lines(),
            at: 0,
        }))
    }

    /// The next entity and its id.
    fn next(&mut self, key: &str) -> anyhow::Result<Option<(String, Value)>> {
        let Some(line) = self.lines.next() else {
            return Ok(None);
        };
        self.at += 1;
        let line = line.with_context(|| format!("reading {}", self.path.display()))?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", self.path.display(), self.at))?;
        let id = v
            .get(key)
            .map(text)
            .with_context(|| format!("{}:{}: no `{key}`", self.path.display(), self.at))?;
        Ok(Some((id, v)))
    }
}

/// Calls `f` with each entity of `name`.jsonl on both sides, matched by `key`, in id order
/// (None for the side without it). A directory without the file has none.
fn join(
    base: &Path,
    other: &Path,
    name: &str,
    key: &str,
    mut f: impl FnMut(Option<&Value>, Option<&Value>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (a, b) = (Lines::open(base, name)?, Lines::open(other, name)?);
    if !sorted(a.as_ref().map(|l| l.path.as_path()), key)?
        || !sorted(b.as_ref().map(|l| l.path.as_path()), key)?
    {
        return join_in_memory(a, b, key, f);
    }
    let (mut a, mut b) = (a, b);
    let next = |l: &mut Option<Lines>| match l {
        Some(l) => l.next(key),
        None => Ok(None),
    };
    let (mut x, mut y) = (next(&mut a)?, next(&mut b)?);
    loop {
        match (&x, &y) {
            (None, None) => return Ok(()),
            (Some((i, v)), Some((j, w))) if i == j => {
                f(Some(v), Some(w))?;
                x = next(&mut a)?;
                y = next(&mut b)?;
            }
            (Some((i, v)), Some((j, _))) if i < j => {
                f(Some(v), None)?;
                x = next(&mut a)?;
            }
            (Some((_, v)), None) => {
                f(Some(v), None)?;
                x = next(&mut a)?;
            }
            (_, Some((_, w))) => {
                f(None, Some(w))?;
                y = next(&mut b)?;
            }
        }
    }
}

/// Whether a view file's ids come in increasing order (as `replay` writes them): a pass that
/// reads only the id of each line.
fn sorted(path: Option<&Path>, key: &str) -> anyhow::Result<bool> {
    /// A view's id, whichever of the four files it is in (each line holds one of these).
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(alias = "sku", alias = "dealer", alias = "store")]
        id: Option<String>,
    }
    let Some(path) = path else { return Ok(true) };
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut last: Option<String> = None;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let id = serde_json::from_str::<Id>(&line)
            .ok()
            .and_then(|x| x.id)
            .with_context(|| format!("{}:{}: no `{key}`", path.display(), i + 1))?;
        if last.as_ref().is_some_and(|p| *p >= id) {
            return Ok(false);
        }
        last = Some(id);
    }
    Ok(true)
}

/// [`join`] for files out of order: both read whole.
fn join_in_memory(
    a: Option<Lines>,
    b: Option<Lines>,
    key: &str,
    mut f: impl FnMut(Option<&Value>, Option<&Value>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut all: BTreeMap<String, (Option<Value>, Option<Value>)> = BTreeMap::new();
    for (side, l) in [(0, a), (1, b)] {
        let Some(mut l) = l else { continue };
        while let Some((id, v)) = l.next(key)? {
            let e = all.entry(id).or_default();
            if side == 0 {
                e.0 = Some(v);
            } else {
                e.1 = Some(v);
            }
        }
    }
    for (_, (x, y)) in all {
        f(x.as_ref(), y.as_ref())?;
    }
    Ok(())
}

/// A scan's first decision on the first side: decision and score, by scan event.
type FirstSide = std::collections::HashMap<String, (String, u64)>;

/// Counts one side's outputs per kind, scan decisions per decision and per campaign, and
/// refused orders per reason; the first side's decisions are kept by scan (`first`), so the
/// second side's count the scans decided otherwise (a scan's first decision on each side:
/// a repeat of the scan is a duplicate on both).
fn count_outputs(
    path: &Path,
    side: usize,
    r: &mut Report,
    first: &mut FirstSide,
    limit: usize,
) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // only the few fields counted are read from each line
    #[derive(serde::Deserialize)]
    struct Seen {
        output: Option<String>,
        decision: Option<String>,
        reason: Option<String>,
        campaign: Option<String>,
        scan_event: Option<String>,
        code: Option<String>,
        member: Option<String>,
        score: Option<u64>,
    }
    let mut seen_here = std::collections::HashSet::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let o: Seen = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not an output", path.display(), i + 1))?;
        let Some(kind) = o.output else { continue };
        match (kind.as_str(), &o.decision, o.reason) {
            ("decision", Some(d), _) => {
                bump_one(r.decisions.entry(d.clone()).or_default(), side);
                let campaign = o.campaign.clone().unwrap_or_default();
                let per = r.campaign_decisions.entry(campaign.clone()).or_default();
                bump_one(per.entry(d.clone()).or_default(), side);
                let score = o.score.unwrap_or(0);
                if let Some(scan) = o.scan_event.filter(|s| seen_here.insert(s.clone())) {
                    if side == 0 {
                        first.insert(scan, (d.clone(), score));
                    } else if let Some((was, was_score)) = first.get(&scan) {
                        if was != d {
                            *r.moved.entry((was.clone(), d.clone())).or_default() += 1;
                            if r.moved_first.len() < limit {
                                r.moved_first.push(json!({
                                    "scan_event": scan, "campaign": campaign,
                                    "code": o.code, "member": o.member,
                                    "first": {"decision": was, "score": was_score},
                                    "second": {"decision": d, "score": score},
                                }));
                            }
                        }
                    }
                }
            }
            ("order_rejected", _, Some(why)) => bump_one(r.rejected.entry(why).or_default(), side),
            _ => {}
        }
        bump_one(r.outputs.entry(kind).or_default(), side);
    }
    Ok(())
}

/// Thousands separated by commas.
fn num(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A change with its sign (`+1,450`, `-3`), empty for none.
fn signed(d: i64) -> String {
    match d {
        0 => String::new(),
        d if d > 0 => format!("+{}", num(d)),
        d => num(d),
    }
}

fn row(out: &mut String, name: &str, (a, b): Pair) {
    let change = signed(b - a);
    out.push_str(&format!(
        "  {name:<30} {:>14} {:>14} {change:>12}\n",
        num(a),
        num(b)
    ));
}

/// The report as a table (the first column the base, the second the what-if).
pub fn render(r: &Report, base: &Path, other: &Path) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<32} {:>14} {:>14} {:>12}\n",
        "",
        short(base),
        short(other),
        "change"
    ));
    if r.same_dir {
        out.push_str("(the same directory twice)\n");
    }
    for d in &r.runs_differ {
        out.push_str(&format!(
            "NOTE the two replays ran differently, not only by rules: {d}\n"
        ));
    }
    match &r.rules {
        Some(p) if p.is_empty() => out.push_str("rules: the same\n"),
        Some(p) => out.push_str(&format!("rules changed: {}\n", p.join(", "))),
        None => {
            out.push_str("rules: not known (a rules.toml is missing: replayed by an older build)\n")
        }
    }
    out.push_str("members\n");
    row(&mut out, "count", r.members);
    for (k, p) in &r.points {
        row(&mut out, &format!("points {k} (sum)"), *p);
    }
    for (t, p) in &r.tiers {
        row(&mut out, &format!("tier {t}"), *p);
    }
    for (t, p) in &r.tags {
        row(&mut out, &format!("tag {t}"), *p);
    }
    let by: Vec<String> = r
        .changed_in
        .iter()
        .map(|(k, n)| format!("{k} {}", num(*n as i64)))
        .collect();
    out.push_str(&format!(
        "  changed: {}{}; only in the first: {}, only in the second: {}\n",
        num(r.changed as i64),
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        },
        num(r.only.0),
        num(r.only.1)
    ));
    if !r.decisions.is_empty() {
        out.push_str("scan decisions\n");
        for (d, p) in &r.decisions {
            row(&mut out, d, *p);
        }
        // per campaign only where there are several, and only the decisions that moved
        if r.campaign_decisions.len() > 1 {
            for (c, per) in &r.campaign_decisions {
                for (d, p) in per.iter().filter(|(_, (a, b))| a != b) {
                    row(&mut out, &format!("  {c}: {d}"), *p);
                }
            }
        }
    }
    if !r.moved.is_empty() {
        let all: u64 = r.moved.values().sum();
        out.push_str(&format!(
            "scans decided otherwise: {} (first → second)\n",
            num(all as i64)
        ));
        for ((a, b), n) in &r.moved {
            out.push_str(&format!("  {a} → {b}: {}\n", num(*n as i64)));
        }
        for m in &r.moved_first {
            out.push_str(&format!(
                "  {} {} code {}: {} ({}) → {} ({})\n",
                text(&m["scan_event"]),
                text(&m["campaign"]),
                text(&m["code"]),
                text(&m["first"]["decision"]),
                m["first"]["score"],
                text(&m["second"]["decision"]),
                m["second"]["score"],
            ));
        }
    }
    if !r.rejected.is_empty() {
        out.push_str("orders refused\n");
        for (why, p) in &r.rejected {
            row(&mut out, why, *p);
        }
    }
    let moved: Vec<_> = r.outputs.iter().filter(|(_, (a, b))| a != b).collect();
    if !moved.is_empty() {
        out.push_str("outputs that differ in number\n");
        for (k, p) in moved {
            row(&mut out, k, *p);
        }
    }
    for v in &r.views {
        out.push_str(&format!(
            "{}: {} and {}, {} changed\n",
            v.name,
            num(v.count.0),
            num(v.count.1),
            num(v.changed as i64)
        ));
        for (id, paths) in &v.first {
            out.push_str(&format!("  {id}: {}\n", paths.join(", ")));
        }
    }
    if !r.first.is_empty() {
        out.push_str(&format!(
            "changed members (the first {} of {}):\n",
            r.first.len(),
            num(r.changed as i64)
        ));
        for c in &r.first {
            out.push_str(&format!("  {}\n", describe(c)));
        }
    }
    out
}

fn short(p: &Path) -> String {
    let s = p.display().to_string();
    if s.chars().count() > 14 {
        let tail: String = s
            .chars()
            .rev()
            .take(13)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    } else {
        s
    }
}

/// One member's change in a line: `m1  tier silver → gold; tags +a −b; balance 10 → 20`.
fn describe(c: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = c["tier"].as_array() {
        parts.push(format!("tier {} → {}", text(&t[0]), text(&t[1])));
    }
    if c["tags"].is_object() {
        let mut t: Vec<String> = Vec::new();
        for (sign, k) in [("+", "added"), ("-", "removed")] {
            for x in c["tags"][k].as_array().into_iter().flatten() {
                t.push(format!("{sign}{}", text(x)));
            }
        }
        parts.push(format!("tags {}", t.join(" ")));
    }
    if let Some(p) = c["points"].as_object() {
        for (k, v) in p {
            let (a, b) = (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0));
            parts.push(format!("{k} {} → {} ({})", num(a), num(b), signed(b - a)));
        }
    }
    if let Some(o) = c["other"].as_array() {
        let o: Vec<String> = o.iter().map(text).collect();
        parts.push(format!("also {}", o.join(", ")));
    }
    format!("{}  {}", text(&c["id"]), parts.join("; "))
}

/// The report as one JSON object (`--json`).
pub fn to_json(r: &Report) -> Value {
    let pairs = |m: &BTreeMap<String, Pair>| -> Value {
        m.iter()
            .map(|(k, (a, b))| (k.clone(), json!([a, b])))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "rules_changed": r.rules,
        "same_directory": r.same_dir,
        "runs_differ": r.runs_differ,
        "members": {
            "count": [r.members.0, r.members.1],
            "only": [r.only.0, r.only.1],
            "changed": r.changed,
            "changed_in": r.changed_in,
            "points": pairs(&r.points),
            "tiers": pairs(&r.tiers),
            "tags": pairs(&r.tags),
            "first": r.first,
        },
        "decisions": pairs(&r.decisions),
        "campaign_decisions": r.campaign_decisions.iter()
            .map(|(c, per)| (c.clone(), pairs(per)))
            .collect::<serde_json::Map<_, _>>(),
        "decisions_moved": r.moved.iter()
            .map(|((a, b), n)| json!({"first": a, "second": b, "scans": n}))
            .collect::<Vec<_>>(),
        "decisions_moved_first": r.moved_first,
        "orders_refused": pairs(&r.rejected),
        "outputs": pairs(&r.outputs),
        "views": r.views.iter().map(|v| json!({
            "name": v.name, "count": [v.count.0, v.count.1], "changed": v.changed,
            "first": v.first.iter().map(|(id, p)| json!({"id": id, "fields": p})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Whether the two replays came out the same (the rules aside): no member, SKU, dealer or
/// store changed, and as many outputs of each kind, decisions of each decision and refused
/// orders of each reason.
pub fn same(r: &Report) -> bool {
    let even = |m: &BTreeMap<String, Pair>| m.values().all(|(a, b)| a == b);
    r.changed == 0
        && r.only == (0, 0)
        && even(&r.outputs)
        && even(&r.decisions)
        && r.moved.is_empty()
        && even(&r.rejected)
        && r.views.iter().all(|v| v.changed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_change_names_tier_tags_points_and_the_rest() {
        let a = json!({"id": "m1", "tier": "silver", "tags": ["a", "b"], "balance": 10, "pending": 0, "debt": 0,
                       "xrfm": [{"days": 30, "frequency": 1}]});
        let mut b = a.clone();
        assert_eq!(member_change(&a, &b), None);
        b["tier"] = json!("gold");
        b["tags"] = json!(["b", "c"]);
        b["balance"] = json!(25);
        b["xrfm"][0]["frequency"] = json!(2);
        b["channels"] = json!(["mall"]);
        let c = member_change(&a, &b).unwrap();
        assert_eq!(
            c,
            json!({"id": "m1", "tier": ["silver", "gold"], "tags": {"added": ["c"], "removed": ["a"]},
                   "points": {"balance": [10, 25]}, "other": ["channels", "xrfm[0].frequency"]})
        );
        assert_eq!(
            describe(&c),
            "m1  tier silver → gold; tags +c -a; balance 10 → 25 (+15); also channels, xrfm[0].frequency"
        );
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1_000), "1,000");
        assert_eq!(num(-1_234_567), "-1,234,567");
    }

    fn write(dir: &Path, name: &str, lines: &[Value]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn two_directories_are_compared_side_by_side_in_order_or_not() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let m = |id: &str, tier: &str, bal: i64| json!({"id": id, "tier": tier, "tags": [], "balance": bal, "pending": 0, "debt": 0});
        write(
            a.path(),
            "members.jsonl",
            &[
                m("m1", "member", 5),
                m("m2", "gold", 9),
                m("m4", "member", 1),
            ],
        );
        // the second side out of order: read whole
        write(
            b.path(),
            "members.jsonl",
            &[
                m("m3", "member", 1),
                m("m1", "member", 5),
                m("m2", "silver", 9),
            ],
        );
        write(
            a.path(),
            "outputs.jsonl",
            &[json!({"output": "decision", "decision": "allow"})],
        );
        write(
            b.path(),
            "outputs.jsonl",
            &[
                json!({"output": "decision", "decision": "block"}),
                json!({"output": "order_rejected", "reason": "insufficient_points"}),
            ],
        );
        write(
            a.path(),
            "skus.jsonl",
            &[json!({"sku": "S1", "stock": {"atp": 3}})],
        );
        write(
            b.path(),
            "skus.jsonl",
            &[json!({"sku": "S1", "stock": {"atp": 2}})],
        );
        let mut lines = Vec::new();
        let r = run(a.path(), b.path(), 10, Some(&mut lines)).unwrap();
        assert_eq!((r.members, r.only, r.changed), ((3, 3), (1, 1), 1));
        assert_eq!(r.tiers["gold"], (1, 0));
        assert_eq!(r.tiers["silver"], (0, 1));
        assert_eq!(r.points["balance"], (15, 15));
        assert_eq!(r.decisions["block"], (0, 1));
        assert_eq!(r.rejected["insufficient_points"], (0, 1));
        assert_eq!(
            r.views[0].first,
            [("S1".to_string(), vec!["stock.atp".to_string()])]
        );
        assert_eq!(r.rules, None);
        assert!(!same(&r));
        let written = String::from_utf8(lines).unwrap();
        assert_eq!(written, "{\"id\":\"m2\",\"tier\":[\"gold\",\"silver\"]}\n");
        let shown = render(&r, a.path(), b.path());
        assert!(shown.contains("m2  tier gold → silver"), "{shown}");
        // the same directory twice: the same
        let r = run(a.path(), a.path(), 10, None).unwrap();
        assert!(same(&r), "{r:?}");
        // decisions swapped between two scans, every count of outputs equal: not the same
        let (c, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let m1 = [m("m1", "member", 5)];
        let scans = |x: &str, y: &str| {
            [
                json!({"output": "decision", "decision": x}),
                json!({"output": "decision", "decision": y}),
            ]
        };
        for (dir, s) in [(&c, scans("allow", "allow")), (&d, scans("allow", "block"))] {
            write(dir.path(), "members.jsonl", &m1);
            write(dir.path(), "outputs.jsonl", &s);
        }
        let r = run(c.path(), d.path(), 10, None).unwrap();
        assert_eq!(r.outputs["decision"], (2, 2));
        assert!(!same(&r), "{r:?}");
        // two scans swap their decisions, campaign by campaign: the counts stay even, the
        // scans that moved are named (a repeat of a scan counts once)
        let (e, f) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let scans = |x: &str, y: &str| {
            [
                json!({"output": "decision", "decision": x, "scan_event": "s1", "campaign": "a",
                       "code": "C1", "score": 30}),
                json!({"output": "decision", "decision": y, "scan_event": "s2", "campaign": "a",
                       "code": "C2", "score": 60}),
                json!({"output": "decision", "decision": "duplicate", "scan_event": "s2",
                       "campaign": "a", "code": "C2", "score": 0}),
                json!({"output": "decision", "decision": "allow", "scan_event": "s3",
                       "campaign": "b", "code": "C3", "score": 0}),
            ]
        };
        for (dir, s) in [
            (&e, scans("allow", "review")),
            (&f, scans("review", "allow")),
        ] {
            write(dir.path(), "members.jsonl", &m1);
            write(dir.path(), "outputs.jsonl", &s);
        }
        let r = run(e.path(), f.path(), 1, None).unwrap();
        assert!(!same(&r), "{r:?}");
        assert_eq!(r.decisions["allow"], (2, 2));
        assert_eq!(r.campaign_decisions["a"]["review"], (1, 1));
        let moved: Vec<_> = r.moved.iter().collect();
        assert_eq!(
            moved,
            [
                (&("allow".to_string(), "review".to_string()), &1),
                (&("review".to_string(), "allow".to_string()), &1)
            ]
        );
        assert_eq!(r.moved_first.len(), 1, "the limit asked for");
        let shown = render(&r, e.path(), f.path());
        assert!(shown.contains("scans decided otherwise: 2"), "{shown}");
        assert!(
            shown.contains("s1 a code C1: allow (30) → review (30)"),
            "{shown}"
        );
    }
}

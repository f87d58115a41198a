//! The omnistream service: command-line entry points, configuration and wiring. The binary in
//! `main.rs` only parses arguments and calls into this library, so tests drive the same code.

pub mod board;
pub mod cli;
pub mod cluster;
pub mod codes;
pub mod config;
pub mod cql;
pub mod files;
pub mod fluvio;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod shard;
pub mod store;
pub mod tls;

/// The sum of amounts, held at `i64::MAX` (or `MIN`) rather than wrapping: totals over
/// many entities (a list's, a gauge's) of amounts each far inside the range.
pub(crate) fn total(amounts: impl IntoIterator<Item = i64>) -> i64 {
    amounts.into_iter().fold(0, i64::saturating_add)
}

/// Drops `v` on a thread of its own, which the process does not wait for: freeing a million
/// entities' allocations one by one takes seconds (BENCHMARKS.md), and at the end of a run or
/// a service nobody needs that memory back before the process exits. When the thread cannot
/// be started, `v` is dropped here.
pub fn free_in_background<T: Send + 'static>(v: T) {
    let _ = std::thread::Builder::new()
        .name("omnistream-free".into())
        .spawn(move || drop(v));
}

/// The places (dotted paths, `stock.cancel-unpaid-after-s`, `tags[2].when.fen`; objects
/// walked key by key, arrays item by item, any other value compared whole) where two JSON
/// values differ, in key order.
pub fn changed_paths(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                let null = serde_json::Value::Null;
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            (serde_json::Value::Array(x), serde_json::Value::Array(y)) => {
                let null = serde_json::Value::Null;
                // a list of named things (tag rules, tier levels) by name: a tag added in
                // the middle is that tag, not every later position changed
                if let (Some(mut names), Some(theirs)) = (named(x), named(y)) {
                    for n in theirs {
                        if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                    for n in names {
                        let a = x.iter().find(|e| e["name"] == n).unwrap_or(&null);
                        let b = y.iter().find(|e| e["name"] == n).unwrap_or(&null);
                        walk(&format!("{path}[{n}]"), a, b, out);
                    }
                    return;
                }
                for i in 0..x.len().max(y.len()) {
                    let p = format!("{path}[{i}]");
                    walk(
                        &p,
                        x.get(i).unwrap_or(&null),
                        y.get(i).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(path.to_string()),
            _ => {}
        }
    }
    /// The names of a list whose every item is an object with a `name` of its own.
    fn named(v: &[serde_json::Value]) -> Option<Vec<&str>> {
        let names: Vec<&str> = v
            .iter()
            .map(|e| e.get("name").and_then(serde_json::Value::as_str))
            .collect::<Option<_>>()?;
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        (unique.len() == names.len()).then_some(names)
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

/// Waits for the next SIGINT (Ctrl-C) or SIGTERM; `term` is the process's SIGTERM stream
/// (None if it could not be had: then SIGINT alone). False when no signal can come.
pub async fn next_stop_signal(term: &mut Option<tokio::signal::unix::Signal>) -> bool {
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.is_ok(),
        r = async {
            match term.as_mut() {
                Some(t) => t.recv().await.is_some(),
                None => std::future::pending().await,
            }
        } => r,
    }
}

/// The moment read views (member X-RFM, store KPIs) are computed at: the engine's watermark,
/// in China time, since KPI days are the brands' local days.
pub fn view_time(engine: &omnistream_actors::sharded::Sharded) -> omnistream_schemas::EventTime {
    omnistream_schemas::EventTime {
        unix_us: engine.watermark().max(0),
        offset_min: 480,
    }
}

#[cfg(test)]
mod changed_paths_tests {
    use serde_json::json;

    /// Named items are told by name: one added in the middle is one path, a change inside
    /// one is its path under its name; other lists by position.
    #[test]
    fn named_items_are_told_by_name() {
        let a = json!({"tags": [{"name": "vip", "days": 30}, {"name": "lapsed", "days": 90}],
            "ids": [1, 2]});
        let b = json!({"tags": [{"name": "new", "days": 7}, {"name": "vip", "days": 30},
            {"name": "lapsed", "days": 60}], "ids": [1, 3]});
        assert_eq!(
            super::changed_paths(&a, &b),
            ["ids[1]", "tags[lapsed].days", "tags[new]"]
        );
    }
}

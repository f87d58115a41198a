//! The HTTP API (actix-web): ingest, synchronous scans, queries of live state, health, and
//! the OpenAPI document. `serve` takes a bound listener, so tests bind port 0.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shard::{GetBoard, GetStats, Ingest, Item, Outcome, Read, Shard, Shutdown};
use crate::store::{Store, StoreError};
use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer};
use omnistream_actors::refdata::BatchRef;
use omnistream_actors::sharded::Sharded;
use omnistream_schemas::{Decoder, IdKind, Pii};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    shard: Addr<Shard>,
    decoder: Decoder,
    pii: Pii,
    inflight: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    /// The `run --input` files' progress (none: empty).
    inputs: crate::files::Progress,
    /// Turns true when the server begins to stop: the board's event streams end then, or
    /// the graceful stop would wait for them until its timeout.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Changes after every durable commit: `/v1/outputs/stream` reads again then.
    durable: tokio::sync::watch::Receiver<u64>,
    /// Where `/v1/outputs/stream` reads apart from the shard (the embedded store).
    output_rows: Option<Arc<dyn crate::store::OutputRows>>,
    /// Reads the configuration again, as at start-up (rules reloaded on SIGHUP and `POST
    /// /v1/admin/reload`).
    reload: Reloader,
    /// The access guard, whose tokens a reload replaces.
    guard: Arc<Guard>,
}

/// Reads the configuration again: the file, the `OMNISTREAM_*` variables and the flags, as
/// at start-up.
pub type Reloader = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Serialize)]
struct Reloaded {
    /// `reloaded` or `unchanged`.
    status: &'static str,
    /// The rules that changed, as dotted paths (`rules.campaigns.cny.fraud.review-at`).
    changed: Vec<String>,
    /// Other settings that differ from those the service started with: read at start-up
    /// only, so not applied until a restart.
    restart_needed: Vec<String>,
    /// What the rules take but is likely a mistake (as start-up and `check-config` say it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// Reads the configuration again and runs its rules from now on (logged, so a restart and a
/// replay of the log switch at the same point); other settings need a restart, and are
/// named. A configuration that does not load changes nothing: the error says its key.
async fn reload_rules(st: &AppState) -> Result<Reloaded, HttpResponse> {
    // one at a time (a SIGHUP and a POST together): the later read is the one that stays
    static RELOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = RELOADING.lock().await;
    let cfg = (st.reload)().map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_config",
            format!("{e:#}; the rules in effect stay"),
        )
    })?;
    let json = |c: &Config| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        let rules = v.as_object_mut().and_then(|o| o.remove("rules"));
        (v, rules.unwrap_or_default())
    };
    let ((old, _), (new, _)) = (json(&st.cfg), json(&cfg));
    let mut restart_needed = crate::changed_paths(&old, &new);
    // the tokens (a secret rotated in its file, a token added or revoked) apply at once,
    // while access control is on now and stays on
    let mut tokens = false;
    if st.cfg.auth.enabled && cfg.auth.enabled {
        restart_needed.retain(|p| !p.starts_with("auth.tokens"));
        if *st.guard.credentials() != cfg.auth.credentials {
            let names = token_names(&cfg.auth.credentials);
            st.guard.set_credentials(cfg.auth.credentials);
            tracing::warn!(tokens = ?names, "access tokens reloaded: only these are taken from now on");
            tokens = true;
        }
    }
    let warnings: Vec<String> = (cfg.rules.warnings().into_iter())
        .map(|w| format!("rules.{w}"))
        .collect();
    let answer = ask_shard(st, |reply| crate::shard::ReloadRules {
        rules: cfg.rules,
        reply,
    });
    match answer.await? {
        Ok(changed) => {
            let changed: Vec<String> = (tokens.then(|| "auth.tokens".to_string()))
                .into_iter()
                .chain(changed.into_iter().map(|c| format!("rules.{c}")))
                .collect();
            let status = if changed.is_empty() {
                "unchanged"
            } else {
                "reloaded"
            };
            Ok(Reloaded {
                status,
                changed,
                restart_needed,
                warnings,
            })
        }
        // the configured rules are the new ones now: a store failing rebuilds the state and
        // runs them from there
        Err(e) => Err(store_unavailable(format!(
            "{e}; the reloaded rules apply from the rebuild once the store answers again"
        ))),
    }
}

/// The tokens as the log shows them: each name with its scopes, never a secret.
fn token_names(credentials: &[crate::config::Credential]) -> Vec<String> {
    (credentials.iter())
        .map(|c| format!("{} [{}]", c.name, c.scopes.join(",")))
        .collect()
}

/// `POST /v1/admin/reload`: the rules read again from the configuration (as SIGHUP does).
async fn post_reload(st: web::Data<AppState>) -> HttpResponse {
    match reload_rules(&st).await {
        Ok(r) => HttpResponse::Ok().json(r),
        Err(refused) => refused,
    }
}

/// Reloads the rules at every SIGHUP, logging what changed or why nothing did.
async fn reload_on_hangup(st: AppState, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        match reload_rules(&st).await {
            Ok(r) => tracing::info!(
                status = r.status,
                changed = %r.changed.join(", "),
                restart_needed = %r.restart_needed.join(", "),
                warnings = %r.warnings.join("; "),
                "SIGHUP: configuration read again"
            ),
            Err(r) => {
                let body = actix_web::body::to_bytes(r.into_body())
                    .await
                    .unwrap_or_default();
                tracing::error!(answer = %String::from_utf8_lossy(&body), "SIGHUP: the rules were not reloaded");
            }
        }
    }
}

/// 503 `shard_unavailable`: the shard (the entities' actor) stopped.
fn shard_stopped() -> HttpResponse {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "shard_unavailable",
        "the shard stopped",
    )
}

/// The store failed: 503, retry after a second (`error` sets the header).
fn store_unavailable(e: impl std::fmt::Display) -> HttpResponse {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

/// A JSON error body with a stable code and a human detail.
fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        r.insert_header(("Retry-After", "1"));
    }
    r.json(json!({"error": code, "detail": detail.into()}))
}

/// Splits a body into event texts: a JSON array of objects, one JSON object (also spread
/// over lines, as a pretty-printer writes it), or JSON lines. A leading UTF-8 byte-order mark
/// is dropped. Also whether the body is an array that never closes where an element ends
/// (`[{..},` or `[{..}`: cut at an element's end, which no element's own refusal says).
fn split(body: &[u8]) -> (Vec<&[u8]>, bool) {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let rest = &body[start..];
    if rest.first() == Some(&b'[') {
        return match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(rest) {
            Ok(raws) => (
                raws.into_iter().map(|r| r.get().as_bytes()).collect(),
                false,
            ),
            // one broken element does not cost the others: each is refused or applied alone
            Err(_) => array_items(rest),
        };
    }
    // a first line that does not close its object is an object over several lines (a line
    // of JSON lines ends with its `}`): the body is read as JSON values one after another;
    // one that does not parse is one text, refused with the error's own line and column
    // (not a dead letter for each of its lines), up to the next line that starts an object
    // that parses (the objects after a broken one stand), or to the end
    let first_line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    if rest.first() == Some(&b'{') && !first_line.trim_ascii_end().ends_with(b"}") {
        let mut texts = Vec::new();
        let (mut base, mut resyncs) = (0, 0);
        'values: loop {
            let mut values = serde_json::Deserializer::from_slice(&rest[base..])
                .into_iter::<&serde_json::value::RawValue>();
            loop {
                let at = base + values.byte_offset();
                match values.next() {
                    None => break 'values,
                    Some(Ok(v)) => texts.push(v.get().as_bytes()),
                    Some(Err(_)) => {
                        let next = (resyncs < RESYNCS)
                            .then(|| object_line_after(rest, at))
                            .flatten();
                        let Some(next) = next else {
                            texts.push(rest[at..].trim_ascii());
                            break 'values;
                        };
                        texts.push(rest[at..next].trim_ascii());
                        (base, resyncs) = (next, resyncs + 1);
                        continue 'values;
                    }
                }
            }
        }
        return (texts, false);
    }
    let lines = body
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    (lines, false)
}

/// The elements of a JSON array that does not parse as a whole (`body` starts with its `[`),
/// split at the commas outside strings, objects and arrays, so each is decoded on its own: a
/// broken one is refused with its own reason and the others stand. Empty elements (a comma
/// too many) are dropped. A string left open, or a bracket never closed, runs to the end of
/// the body, unless a later element boundary (`}` `,` `{`) starts an element that parses: the
/// text before it is then the broken element, and the rest is split again (a quote closed in
/// the wrong place no longer swallows the events after it); text after the closing `]` is one
/// more (refused: it is not an event). Also whether the array was left open after an
/// element's end (nothing after its last element, no `]`).
fn array_items(body: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut items = Vec::new();
    let open = split_elements(body, 1, &mut items, 0);
    (items, open)
}

/// Adds `t`, trimmed, unless it is empty.
fn push_item<'a>(items: &mut Vec<&'a [u8]>, t: &'a [u8]) {
    let t = t.trim_ascii();
    if !t.is_empty() {
        items.push(t);
    }
}

/// How many times one body is split again after a broken element (each costs a scan of what
/// follows): a hostile body of many broken elements gets the rest refused as one.
const RESYNCS: usize = 16;

/// [`array_items`] of `body` from `start` (the first byte inside the array), adding to `items`;
/// `resyncs` counts the splits after broken elements so far. Returns whether the array was
/// left open after an element's end.
fn split_elements<'a>(
    body: &'a [u8],
    start: usize,
    items: &mut Vec<&'a [u8]>,
    resyncs: usize,
) -> bool {
    let mut start = start;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    // an element just closed and no comma yet: another opening there is a comma missed
    let mut ended = false;
    for (i, &b) in body.iter().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                if depth == 0 && ended {
                    push_item(items, &body[start..i]);
                    start = i;
                }
                ended = false;
                depth += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                ended = depth == 0;
            }
            b']' => {
                push_item(items, &body[start..i]);
                push_item(items, &body[i + 1..]);
                return false;
            }
            b',' if depth == 0 => {
                push_item(items, &body[start..i]);
                start = i + 1;
                ended = false;
            }
            _ => {}
        }
    }
    // a string or bracket left open ran to the end: the first later boundary that starts an
    // element that parses ends the broken one
    let tail = &body[start..];
    if resyncs < RESYNCS {
        if let Some((end, next)) = resync_point(tail) {
            push_item(items, &tail[..end]);
            return split_elements(body, start + next, items, resyncs + 1);
        }
    }
    push_item(items, tail);
    // no `]`, and no element left open at the end: cut where an element ended (a body that
    // ends with `]` has one, its brackets mismatched inside: that element's own refusal)
    depth == 0 && !in_string && !body.trim_ascii_end().ends_with(b"]")
}

/// The first line after `from` in `body` that starts (at its first byte) an object that
/// parses, right after a line that is a lone `}` (a pretty-printer's end of an object, not
/// a line inside a string), among the next 16 such lines within an event's greatest size:
/// where the objects after a broken one resume. None when none does.
fn object_line_after(body: &[u8], from: usize) -> Option<usize> {
    const EVENT_MAX: usize = 64 * 1024;
    let end = body.len().min(from.saturating_add(2 * EVENT_MAX));
    let after_close = |p: usize| {
        let before = body[from..p].trim_ascii_end();
        let line = before
            .rsplit(|b| *b == b'\n')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        line == b"}"
    };
    (from + 1..end)
        .filter(|&p| body[p] == b'{' && body[p - 1] == b'\n' && after_close(p))
        .take(16)
        .find(|&p| {
            let window = &body[p..body.len().min(p + EVENT_MAX)];
            serde_json::Deserializer::from_slice(window)
                .into_iter::<serde::de::IgnoredAny>()
                .next()
                .is_some_and(|r| r.is_ok())
        })
}

/// Where a broken element in `t` likely ends: `(end, next)`, the end of its text (after a
/// `}`) and where the next element starts (its `{`), at the first of the first 16 `}` `,` `{`
/// boundaries whose element parses as JSON, looked for within an event's greatest size (and
/// each element read no further): a hostile body costs a bounded scan. None when none does.
fn resync_point(t: &[u8]) -> Option<(usize, usize)> {
    const EVENT_MAX: usize = 64 * 1024;
    let t = &t[..t.len().min(2 * EVENT_MAX)];
    let skip_ws = |mut i: usize| {
        while t.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut tries = 0;
    for p in (0..t.len()).filter(|&p| t[p] == b'}') {
        let comma = skip_ws(p + 1);
        if t.get(comma) != Some(&b',') {
            continue;
        }
        let next = skip_ws(comma + 1);
        if t.get(next) != Some(&b'{') {
            continue;
        }
        tries += 1;
        if tries > 16 {
            return None;
        }
        // the element starting there: parses on its own, followed by a boundary or the end
        let element = &t[next..t.len().min(next + EVENT_MAX)];
        let mut values =
            serde_json::Deserializer::from_slice(element).into_iter::<serde::de::IgnoredAny>();
        if let Some(Ok(_)) = values.next() {
            return Some((p + 1, next));
        }
    }
    None
}

/// Events of a request counted in flight until this is dropped.
struct InFlight<'a>(&'a AtomicUsize, usize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// Decodes, applies and waits until durable; the shared path of both ingest endpoints.
/// One event's warnings, as `omnistream validate` gives them ([`omnistream_schemas::lint`]):
/// for a refused event always (a misspelt required field is named with the refusal), for an
/// accepted one when the decoder met something to warn of (`unusual`), so the common event
/// is not parsed twice. Accepted events' warnings are counted by code.
fn warnings_of(st: &AppState, item: &Item, unusual: bool, raw: &[u8]) -> Vec<String> {
    // (lint reads nothing of an event refused as too large)
    let accepted = matches!(item, Item::Event(_));
    if accepted && !unusual {
        return Vec::new();
    }
    let w = omnistream_schemas::lint(raw);
    if accepted {
        for one in &w {
            st.metrics
                .event_warning(crate::cli::validate::warning_code(one));
        }
    }
    w
}

/// The decoded items of an ingest request went to the shard: its outcomes, and each event's
/// warnings (see [`warnings_of`]), in the order sent; and the payments and dealers' orders
/// placed among them, by place, with their dealer and whether an order (see
/// [`unknown_dealers`]).
type Submitted = (
    Vec<Outcome>,
    Vec<Vec<String>>,
    Vec<(usize, omnistream_actors::Str, bool)>,
);

async fn submit(st: &AppState, source: &str, texts: Vec<&[u8]>) -> Result<Submitted, HttpResponse> {
    let received = std::time::Instant::now();
    if !st.ready.load(Ordering::SeqCst) {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store is not available",
        ));
    }
    if texts.len() > st.cfg.max_batch_events {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("{} events, limit {}", texts.len(), st.cfg.max_batch_events),
        ));
    }
    let n = texts.len();
    let before = st.inflight.fetch_add(n, Ordering::SeqCst);
    // given back however this ends: answered, refused, or dropped with a client that went
    // away mid-commit (actix drops the handler's future then; a count left behind would
    // narrow `max-inflight-events` for good, until every request were answered 429)
    let _inflight = InFlight(&st.inflight, n);
    if before + n > st.cfg.max_inflight_events {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "saturated",
            format!(
                "{before} events in flight and this request's {n} would pass the limit of {}; \
                 nothing of it was applied: send it again after Retry-After",
                st.cfg.max_inflight_events
            ),
        ));
    }
    let now = crate::shard::wall_clock_us();
    let mut warnings = Vec::with_capacity(n);
    let mut payments = Vec::new();
    let mut batches = Vec::new();
    let items: Vec<Item> = texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (item, unusual) =
                Item::decode_noting(&st.decoder, &st.pii, t, now, st.cfg.max_future_s);
            warnings.push(warnings_of(st, &item, unusual, t));
            if let Item::Event(ev) = &item {
                match &ev.body {
                    omnistream_schemas::Body::Payment(p) => {
                        payments.push((i, p.dealer.clone(), false));
                    }
                    // a dealer's order placed: held at once when no limit was ever set
                    omnistream_schemas::Body::Order(o)
                        if o.status == omnistream_schemas::OrderStatus::Placed
                            && o.kind == omnistream_schemas::OrderKind::Dealer =>
                    {
                        if let Some(d) = &o.dealer {
                            payments.push((i, d.clone(), true));
                        }
                    }
                    omnistream_schemas::Body::CodeBatch(b) => {
                        batches.push((i, b.clone(), ev.ts.unix_us));
                    }
                    _ => {}
                }
            }
            item
        })
        .collect();
    let reused = reused_in(&items);
    // read before the events run; said (and counted) of those the shard accepts
    let batch_said = batch_warnings(st, batches).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = st
        .shard
        .send(Ingest {
            source: source.into(),
            position: None,
            after: None,
            also: Vec::new(),
            items,
            reply: tx,
            received,
        })
        .await;
    let result = match sent {
        Ok(()) => rx.await.map_err(|_| "the shard stopped".to_string()),
        Err(e) => Err(e.to_string()),
    };
    st.metrics.durable(received.elapsed());
    match result {
        Ok(Ok(outcomes)) => {
            for (i, w) in batch_said {
                if matches!(outcomes.get(i), Some(Outcome::Accepted { .. })) {
                    st.metrics
                        .event_warning(crate::cli::validate::warning_code(&w));
                    warnings[i].push(w);
                }
            }
            for (i, first) in reused_after(&outcomes, &reused) {
                st.metrics.event_warning("id_reused");
                warnings[i].push(format!(
                    "id_reused at id: event {first} of this request (counted from 0) took \
                     this id with other content: this one was not applied; send it with an id \
                     of its own"
                ));
            }
            Ok((outcomes, warnings, payments))
        }
        Ok(Err(e)) => Err(store_unavailable(e)),
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shard_unavailable",
            e,
        )),
    }
}

/// The events of one request whose id an earlier one of it took with other content (an
/// integrator's id made per batch, not per event): `(place, the earlier's place)`. The
/// shard answers the later `duplicate`, unapplied; the same event twice is no reuse.
fn reused_in(items: &[Item]) -> Vec<(usize, usize, bool)> {
    // each id's first place in the request, and for the rare id sent again its next few (a
    // request of one id many times is judged against its first 8): no allocation an event
    let mut first: std::collections::HashMap<uuid::Uuid, usize> =
        std::collections::HashMap::with_capacity(items.len());
    let mut more: std::collections::HashMap<uuid::Uuid, Vec<usize>> = Default::default();
    let mut pairs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Item::Event(ev) = item else {
            continue;
        };
        let Some(&j0) = first.get(&ev.id) else {
            first.insert(ev.id, i);
            continue;
        };
        let later = more.entry(ev.id).or_default();
        for &j in std::iter::once(&j0).chain(later.iter()) {
            // the same instant in another offset is the same event
            let other = matches!(&items[j], Item::Event(e)
                if e.body != ev.body || e.channel != ev.channel || e.ts.unix_us != ev.ts.unix_us);
            pairs.push((i, j, other));
        }
        if later.len() < 7 {
            later.push(i);
        }
    }
    pairs
}

/// The events [`reused_in`] paired that the shard answered `duplicate` because an earlier
/// one of the request with other content took their id (the earliest it applied): `(place,
/// the earlier's place)`. An event that repeats one applied, or whose earlier namesakes were
/// all refused (a refused event takes no id), is none.
fn reused_after(outcomes: &[Outcome], pairs: &[(usize, usize, bool)]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    // (pairs come by place, each with its earlier namesakes in order: the first of them
    // applied decides; the same event again is a plain duplicate)
    let mut decided = None;
    for &(i, j, other) in pairs {
        if decided == Some(i) {
            continue;
        }
        if !matches!(outcomes.get(i), Some(Outcome::Duplicate { .. })) {
            decided = Some(i);
            continue;
        }
        if !matches!(outcomes.get(j), Some(Outcome::Accepted { .. })) {
            continue;
        }
        decided = Some(i);
        if other {
            found.push((i, j));
        }
    }
    found
}

/// 415 for a body declared as something no event can be sent as (a form upload, XML, ...):
/// its parts would otherwise be read as lines of events. No `Content-Type`, JSON (also
/// `+json` types), JSON lines, plain text, bytes, and curl's default for `-d` (a form's
/// type, the body as sent) pass.
fn unsupported_type(req: &actix_web::HttpRequest) -> Option<HttpResponse> {
    const TAKEN: [&str; 13] = [
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/jsonlines",
        "application/json-lines",
        "application/x-jsonlines",
        "application/x-ldjson",
        "text/x-ndjson",
        "text/ndjson",
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
    ];
    // a compressed body would be read as bytes of events: this service does not inflate
    if let Some(enc) = req.headers().get("content-encoding") {
        let enc = String::from_utf8_lossy(enc.as_bytes())
            .trim()
            .to_ascii_lowercase();
        if enc != "identity" {
            return Some(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Encoding `{enc}`: send events uncompressed"),
            ));
        }
    }
    let given = req.headers().get("content-type")?;
    let given = given.to_str().unwrap_or("").to_ascii_lowercase();
    let mut parts = given.split(';');
    let essence = parts.next().unwrap_or("").trim().to_string();
    // events are UTF-8: a body declared in another charset (GBK) would be misread
    if let Some(cs) = parts
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .map(|c| c.trim_matches('"'))
        .find(|c| !matches!(*c, "utf-8" | "utf8" | "us-ascii"))
    {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("charset `{cs}`: events are sent in UTF-8"),
        ));
    }
    // JSON by another name too (`application/cloudevents+json`)
    if essence.is_empty() || TAKEN.contains(&essence.as_str()) || essence.ends_with("+json") {
        return None;
    }
    Some(error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "Content-Type `{essence}`: events are sent as JSON (application/json) or JSON lines \
             (application/x-ndjson), the events themselves as the body"
        ),
    ))
}

async fn post_events(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = unsupported_type(&req) {
        return r;
    }
    // gzip's magic bytes: a compressed body sent without its Content-Encoding
    if body.starts_with(&[0x1f, 0x8b]) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body is gzip-compressed (it starts with gzip's magic bytes): send events \
             uncompressed",
        );
    }
    let (texts, open) = split(&body);
    if texts.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty", "no events in the body");
    }
    match submit(&st, "http", texts).await {
        Ok((outcomes, mut warnings, payments)) => {
            let now = duplicates_now(&st, &outcomes).await;
            for (i, w) in unknown_dealers(&st, &outcomes, payments).await {
                st.metrics.event_warning("unknown_dealer");
                warnings[i].push(w);
            }
            for (i, code, w) in not_applied(&outcomes) {
                st.metrics.event_warning(code);
                warnings[i].push(w);
            }
            let mut answer = events_answer(&outcomes, &now);
            with_warnings(&mut answer["results"], &warnings);
            // the request's own: its array never closed (each event's result stands)
            if open {
                st.metrics.event_warning("truncated");
                answer["warnings"] = json!([
                    "truncated at body: the array has no closing `]`: the body may have been cut \
                     after its last complete event, and what followed it never arrived (the \
                     events before it are answered as sent)"
                ]);
            }
            HttpResponse::Ok().json(answer)
        }
        Err(resp) => resp,
    }
}

/// Each event's warnings (none: no field) on its result, in the order sent.
pub(crate) fn with_warnings(results: &mut Value, warnings: &[Vec<String>]) {
    let Some(results) = results.as_array_mut() else {
        return;
    };
    for (r, w) in results.iter_mut().zip(warnings) {
        add_warnings(r, w);
    }
}

/// An event's warnings on its result (none: no field), after a duplicate's own
/// (`id_reused`; then the request's own `id_reused` is not said again).
fn add_warnings(result: &mut Value, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    match result.get_mut("warnings").and_then(Value::as_array_mut) {
        Some(own) => {
            let reused = |w: &Value| w.as_str().is_some_and(|w| w.starts_with("id_reused"));
            let said = own.iter().any(reused);
            own.extend(
                warnings
                    .iter()
                    .filter(|w| !(said && w.starts_with("id_reused")))
                    .map(|w| json!(w)),
            );
        }
        None => result["warnings"] = json!(warnings),
    }
}

/// The answer to `POST /v1/events`: the counts and each event's result, in the order sent;
/// `now`, where the duplicates' orders and payments stand now (see [`duplicates_now`]).
pub(crate) fn events_answer(
    outcomes: &[Outcome],
    now: &std::collections::HashMap<uuid::Uuid, Value>,
) -> Value {
    let count = |s: &str| outcomes.iter().filter(|o| status(o) == s).count();
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted { id, outputs } => {
                // a channel learns at once what its event did, not only that it is
                // durable: whether the stock (and points, and credit) were there for
                // an order, a scan's decision, a payment's credit (or why it was not
                // booked)
                let mut answer = json!({"id": id, "status": "accepted"});
                let own_order = own_order(id, outputs).map(|o| o.as_str());
                for (field, is) in RESULTS {
                    // its own outputs only: a timer it made due, a status that waited
                    // for its `placed`, run under other ids
                    let mine: Vec<Value> = outputs
                        .iter()
                        .filter(|e| e.event == *id && is(&e.output))
                        .filter_map(|e| serde_json::to_value(&e.output).ok())
                        .collect();
                    // every merge the event made or was refused, the channel's answer
                    // to a binding (a phone that belongs to another person says so)
                    if field == "merges" {
                        if !mine.is_empty() {
                            answer[field] = Value::from(mine);
                        }
                        continue;
                    }
                    // an order's result is its own: the order the event touched first
                    // (its own order, whose entity runs first), where it ended; the
                    // others it moved (held orders a cancellation made room for) are
                    // in `orders`
                    let own = |v: &Value| field != "order" || v["order"].as_str() == own_order;
                    let last = mine.iter().rev().find(|v| own(v)).cloned();
                    if mine.len() > 1 && field == "order" {
                        answer["orders"] = Value::from(mine);
                    }
                    if let Some(r) = last {
                        answer[field] = r;
                    }
                }
                answer
            }
            // a scan sent again: the decision it got, while the shard remembers it,
            // and its review's resolution once there is one
            Outcome::Duplicate { id, answered, .. } => {
                let mut answer = json!({"id": id, "status": "duplicate"});
                // an order or a payment sent again: where it stands now
                if let Some(Value::Object(fields)) = now.get(id) {
                    for (k, v) in fields {
                        answer[k] = v.clone();
                    }
                }
                if let Some(d) = output_json(answered, |e| is_decision(&e.output)) {
                    answer["decision"] = d;
                    answer["resolution"] =
                        output_json(answered, |e| is_resolution(&e.output)).unwrap_or_default();
                }
                answer
            }
            Outcome::Rejected { id, reasons } => {
                json!({"id": id, "status": "rejected", "reasons": reasons})
            }
        })
        .collect();
    json!({
        "accepted": count("accepted"), "duplicates": count("duplicate"),
        "rejected": count("rejected"), "results": results,
    })
}

/// What the order events and payments among `outcomes` that were duplicates are about,
/// as it stands now, by event id: an order's `order_state` (as `GET
/// /v1/orders/{channel}/{order}` answers), a payment's dealer's `credit_state` (as `GET
/// /v1/dealers/{id}/credit`) and `booked`, the amount its `ref` was booked for (null: not
/// booked; `true`: booked before amounts were kept). Empty when there are none or the shard
/// cannot answer (the duplicates are then answered without them).
async fn duplicates_now(
    st: &AppState,
    outcomes: &[Outcome],
) -> std::collections::HashMap<uuid::Uuid, Value> {
    let asked: Vec<(uuid::Uuid, crate::shard::About)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Duplicate {
                id, about: Some(a), ..
            } => Some((*id, a.clone())),
            _ => None,
        })
        .collect();
    if asked.is_empty() {
        return Default::default();
    }
    let read = Read(move |e: &Sharded, _: &dyn Store| {
        asked
            .into_iter()
            .filter_map(|(id, about)| {
                let v = match about {
                    crate::shard::About::Order(k) => match order_view_of(e, &k).ok()? {
                        Some(order) => json!({"order_state": order}),
                        // the id's first event was no event of this order: the id was used
                        // again for another event, which is lost unless sent with its own
                        None => json!({"order_state": null, "warnings": [format!(
                            "id_reused at id: an earlier event took this id, and order {k} \
                             has no state: this is not that event sent again, and nothing of \
                             it was applied; send it with an id of its own"
                        )]}),
                    },
                    crate::shard::About::Payment { dealer, reference } => {
                        let state = e.dealer(&dealer);
                        let booked = state.as_ref().and_then(|d| d.booked(&reference));
                        // a ref the dealer never booked: the id's first event was another; said
                        // only when certain (the dealer read, none of its refs forgotten yet: a
                        // big dealer keeps its latest PAYMENTS_CAP only)
                        let certain = state.as_ref().is_some_and(|d| {
                            d.payments.0.len() < omnistream_actors::dealer::PAYMENTS_CAP
                        });
                        let mut warnings = Vec::new();
                        if booked.is_none() && certain {
                            warnings.push(format!(
                                "id_reused at id: an earlier event took this id, and dealer \
                                 {dealer} has no payment `{reference}` booked: this payment was \
                                 not booked; send it with an id of its own"
                            ));
                        }
                        // a retry after a timeout is told what the first answer said
                        if !state.as_ref().is_some_and(|d| d.set_up()) {
                            warnings.push(unknown_dealer(&dealer, false));
                        }
                        // (a store that cannot be read: said of nothing)
                        let credit = credit_of(&dealer, state.as_deref()).ok()?;
                        let mut v = json!({
                            "credit_state": credit,
                            "booked": match booked {
                                Some(Some(amount)) => json!(amount),
                                Some(None) => json!(true),
                                None => Value::Null,
                            },
                        });
                        if !warnings.is_empty() {
                            v["warnings"] = json!(warnings);
                        }
                        v
                    }
                    // a sign-up sent again: whom each identity leads to now (null: no one, as
                    // a phone a conflict refused), which tells the merges it made or not
                    crate::shard::About::Identities(ids) => {
                        let mut members = serde_json::Map::new();
                        for (kind, value) in ids {
                            let m = e.member_of(&kind, &value).map(|m| m.id.to_string());
                            members.insert(kind.to_string(), json!(m));
                        }
                        let first = members.values().next().cloned().unwrap_or_default();
                        let one = !first.is_null() && members.values().all(|m| *m == first);
                        json!({"members": members, "one_person": one})
                    }
                    crate::shard::About::Reused(w) => json!({"warnings": [w]}),
                };
                Some((id, v))
            })
            .collect()
    });
    st.shard.send(read).await.unwrap_or_default()
}

/// The accepted payments and dealers' orders placed among `outcomes` (`payments`: by place,
/// with their dealer, and whether an order) whose dealer no `dealer` event has set up, each
/// with its warning: a payment is booked all the same (money came in), as credit paid
/// ahead, and an order held, but a mistyped dealer id would leave the real dealer's orders
/// held, so the sender is told at once (and again when it sends the payment again:
/// see [`duplicates_now`]). None when the shard cannot answer.
async fn unknown_dealers(
    st: &AppState,
    outcomes: &[Outcome],
    payments: Vec<(usize, omnistream_actors::Str, bool)>,
) -> Vec<(usize, String)> {
    // (an order only when it was held: one taken on credit paid ahead is no mistake to say;
    // a payment only when booked: one whose `ref` was booked before says that instead)
    let made = |i: usize, is: fn(&omnistream_actors::Output) -> bool| match outcomes.get(i) {
        Some(Outcome::Accepted { id, outputs }) => {
            outputs.iter().any(|e| e.event == *id && is(&e.output))
        }
        _ => false,
    };
    let held: fn(&omnistream_actors::Output) -> bool =
        |o| matches!(o, omnistream_actors::Output::OrderHeld { .. });
    let ignored: fn(&omnistream_actors::Output) -> bool =
        |o| matches!(o, omnistream_actors::Output::PaymentIgnored { .. });
    let asked: Vec<(usize, omnistream_actors::Str, bool)> = payments
        .into_iter()
        .filter(|(i, _, order)| {
            matches!(outcomes.get(*i), Some(Outcome::Accepted { .. }))
                && if *order {
                    made(*i, held)
                } else {
                    !made(*i, ignored)
                }
        })
        .collect();
    if asked.is_empty() {
        return Vec::new();
    }
    let read = Read(move |e: &Sharded, _: &dyn Store| {
        asked
            .into_iter()
            .filter(|(_, dealer, _)| !e.dealer(dealer).is_some_and(|d| d.set_up()))
            .map(|(i, dealer, order)| (i, unknown_dealer(&dealer, order)))
            .collect()
    });
    st.shard.send(read).await.unwrap_or_default()
}

/// What the `code_batch` events about to be applied (`batches`: by place, with their event
/// time) do to the registrations in effect now, when it is not plain: a prefix registered
/// to another batch, SKU or dealer is taken over (`prefix_taken`: scans of its codes are
/// judged by the new one, `sku_mismatch` included), and one stamped before the registration
/// in effect is not applied (`code_batch_ignored`: a registry sent again takes no prefix
/// back). Read before the events run (the shard answers reads in order), each judged after
/// the request's earlier ones as the reference data applies them (a later time takes the
/// prefix). None when the shard cannot answer.
async fn batch_warnings(
    st: &AppState,
    batches: Vec<(usize, omnistream_schemas::CodeBatch, i64)>,
) -> Vec<(usize, String)> {
    if batches.is_empty() {
        return Vec::new();
    }
    let read = Read(move |e: &Sharded, _: &dyn Store| {
        let refs = e.coordinator().refs();
        // the registrations as this request's earlier code_batch events leave them
        let mut mine: std::collections::HashMap<omnistream_actors::Str, (BatchRef, i64)> =
            Default::default();
        batches
            .into_iter()
            .filter_map(|(i, b, ts)| {
                let before = match mine.get(&b.prefix) {
                    Some((r, at)) => Some((r.clone(), *at)),
                    None => refs.registered(&b.prefix).map(|(r, at)| (r.clone(), at)),
                };
                let new = BatchRef::from(&b);
                if before.as_ref().is_none_or(|(_, at)| ts >= *at) {
                    mine.insert(b.prefix.clone(), (new.clone(), ts));
                }
                let (now, at) = before?;
                let same = now == new;
                let what = format!(
                    "batch `{}` (SKU `{}`, dealer `{}`)",
                    now.batch, now.sku, now.dealer
                );
                let w = if ts < at {
                    (!same).then(|| {
                        format!(
                            "code_batch_ignored at ts: prefix `{}` is registered to {what} by a \
                             code_batch stamped later, which stays in effect; this one was not \
                             applied",
                            b.prefix
                        )
                    })
                } else {
                    (!same).then(|| {
                        format!(
                            "prefix_taken at prefix: codes starting `{}` were {what}; from \
                             now on they are batch `{}` (SKU `{}`, dealer `{}`)",
                            b.prefix, b.batch, b.sku, b.dealer
                        )
                    })
                };
                w.map(|w| (i, w))
            })
            .collect()
    });
    st.shard.send(read).await.unwrap_or_default()
}

/// The accepted events among `outcomes` that their entities did not apply, each with the
/// code and text of its warning: an order status the order's state refused, a payment
/// whose `ref` was booked before, a `dealer` event older than the one in effect, a stock
/// count or movement older than the latest count. Such an event is accepted (durable,
/// counted, not sent again by a retry) and its result field says why; the warning says it
/// where every kind says it, for a sender that reads `accepted` alone.
fn not_applied(outcomes: &[Outcome]) -> Vec<(usize, &'static str, String)> {
    use omnistream_actors::Output as O;
    let mut found = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        let Outcome::Accepted { id, outputs } = o else {
            continue;
        };
        // an order's: the event's own order (as its answer's `order`)
        let own = own_order(id, outputs);
        for e in outputs.iter().filter(|e| e.event == *id) {
            let (code, what, reason): (&'static str, String, &str) = match &e.output {
                O::OrderIgnored {
                    order,
                    status,
                    reason,
                    ..
                } if Some(order) == own => (
                    "order_ignored",
                    format!("`{status}` of order {order}"),
                    reason,
                ),
                O::PaymentIgnored {
                    reference, reason, ..
                } => ("payment_ignored", format!("payment `{reference}`"), reason),
                O::DealerIgnored { dealer, reason, .. } => (
                    "dealer_ignored",
                    format!("the `dealer` event of {dealer}"),
                    reason,
                ),
                O::StockCountIgnored {
                    sku,
                    location,
                    reason,
                    ..
                } => (
                    "stock_count_ignored",
                    format!("the count of {sku} at {location}"),
                    reason,
                ),
                O::StockMoveIgnored {
                    sku,
                    location,
                    reason,
                    ..
                } => (
                    "stock_move_ignored",
                    format!("the movement of {sku} at {location}"),
                    reason,
                ),
                _ => continue,
            };
            found.push((
                i,
                code,
                format!("{code}: {what} was not applied ({reason}); the event is kept as accepted"),
            ));
        }
    }
    found
}

/// The order an accepted event `id` is about, the first its `outputs` on the `orders` stream
/// name: its own order, whose entity runs first (others it moved, as held orders a
/// cancellation made room for, come after).
fn own_order<'a>(
    id: &uuid::Uuid,
    outputs: &'a [omnistream_actors::engine::Emitted],
) -> Option<&'a omnistream_actors::Str> {
    outputs
        .iter()
        .filter(|e| e.event == *id)
        .find_map(|e| order_of(&e.output))
}

/// The order an output on the `orders` stream is about.
fn order_of(o: &omnistream_actors::Output) -> Option<&omnistream_actors::Str> {
    use omnistream_actors::Output as O;
    match o {
        O::OrderAccepted { order, .. }
        | O::OrderRejected { order, .. }
        | O::OrderHeld { order, .. }
        | O::OrderReleased { order, .. }
        | O::OrderStatus { order, .. }
        | O::OrderIgnored { order, .. }
        | O::OrderDeferred { order, .. } => Some(order),
        _ => None,
    }
}

/// The warning of a payment (or an order: `order`) to `dealer`, which no `dealer` event has
/// set up.
fn unknown_dealer(dealer: &str, order: bool) -> String {
    let what = if order {
        "the order is held until one sets a limit (or payments cover it)"
    } else {
        "the payment is booked as credit paid ahead"
    };
    format!(
        "unknown_dealer at dealer: no `dealer` event has set up dealer `{dealer}` (no credit \
         limit, no region): {what}; check the dealer id"
    )
}

fn status(o: &Outcome) -> &'static str {
    match o {
        Outcome::Accepted { .. } => "accepted",
        Outcome::Duplicate { .. } => "duplicate",
        Outcome::Rejected { .. } => "rejected",
    }
}

/// The fields of an accepted event's answer, and which of its outputs is each one's result,
/// the last it made (where it ended: a dealer's order taken on credit and then refused for
/// stock ends rejected, with its credit given back): for an order, the last on the `orders`
/// stream of the order it touched first, its own (accepted, rejected with the reason, held
/// for credit, released, a status change, or a change the order's state refused; all it
/// made, of every order, in `orders` when there were more, as a payment releasing two held
/// orders or a cancellation making room for one makes); for a scan, its decision (not the refusal of
/// an older review a new one pushed over `max-held-reviews`, written under the new scan's
/// id on the same stream); for a payment, a dealer's order or its fulfilment, its last on
/// the `credit` stream (the dealer's credit after it, or why a payment was not booked); for
/// any event whose identities joined two members or were refused for it (an `identify`, an
/// order naming a second phone), all its `merged` and `merge_conflict` outputs, in `merges`;
/// for a `stock` event, the location's numbers after it (its `stock` output, with `floored`
/// when an `adjust` took on hand to 0 short) or why its count or movement was not applied
/// (`stock_count_ignored`, `stock_move_ignored`); for an event whose `member_id` names no member this service
/// issued, what of it the member did not apply (`unknown_member`; a scan's is its decision).
const RESULTS: [(&str, IsOutput); 6] = [
    ("order", |o| o.stream() == "orders"),
    ("decision", is_decision),
    ("credit", |o| o.stream() == "credit"),
    ("merges", is_merge),
    ("stock", is_stock_event_result),
    ("unknown_member", |o| {
        matches!(o, omnistream_actors::Output::UnknownMember { .. })
    }),
];

/// Whether an output is a `stock` event's result: the location's numbers it moved, or its
/// count refused (not an order's reservation, shipment, release or restock).
fn is_stock_event_result(o: &omnistream_actors::Output) -> bool {
    use omnistream_actors::output::StockCause as C;
    matches!(
        o,
        omnistream_actors::Output::Stock {
            cause: Some(C::Receive | C::Adjust | C::Set),
            ..
        } | omnistream_actors::Output::StockCountIgnored { .. }
            | omnistream_actors::Output::StockMoveIgnored { .. }
    )
}

/// Whether an output is a merge of two members or one refused.
fn is_merge(o: &omnistream_actors::Output) -> bool {
    matches!(
        o,
        omnistream_actors::Output::Merged { .. } | omnistream_actors::Output::MergeConflict { .. }
    )
}

/// Whether an output is of some kind.
type IsOutput = fn(&omnistream_actors::Output) -> bool;

fn is_decision(o: &omnistream_actors::Output) -> bool {
    matches!(o, omnistream_actors::Output::Decision { .. })
}

fn is_resolution(o: &omnistream_actors::Output) -> bool {
    matches!(o, omnistream_actors::Output::ReviewResolved { .. })
}

/// The first of `outputs` that `pick` picks, as the output's own JSON (without the
/// envelope's `event` and `at`).
fn output_json(
    outputs: &[omnistream_actors::engine::Emitted],
    pick: impl Fn(&omnistream_actors::engine::Emitted) -> bool,
) -> Option<Value> {
    outputs
        .iter()
        .find(|e| pick(e))
        .and_then(|e| serde_json::to_value(&e.output).ok())
}

/// The first of `outputs` of one kind (its `output` tag), as JSON.
fn first_of(outputs: &[omnistream_actors::engine::Emitted], kind: &str) -> Option<Value> {
    outputs
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .find(|v| v.get("output").and_then(Value::as_str) == Some(kind))
}

async fn post_scan(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = unsupported_type(&req) {
        return r;
    }
    // what is wrong with a body that is not one scan, said as precisely as it can be; a
    // scan's own problems (fields) are answered as a rejection with reasons, below
    let not_a_scan = match serde_json::from_slice::<Value>(&body) {
        Err(e) => Some(("bad_body", format!("the body is not JSON: {e}"))),
        Ok(Value::Object(o)) => match o.get("type") {
            Some(Value::String(t)) if t == "scan" => None,
            Some(Value::String(t)) => Some((
                "not_a_scan",
                format!(
                    "the body is {} `{t}` event; /v1/scan takes one scan event (others go to /v1/events)",
                    if t.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
                ),
            )),
            Some(other) => Some(("not_a_scan", format!("type: {other} is not \"scan\""))),
            None => Some(("not_a_scan", "type: missing; a scan event has \"type\": \"scan\"".into())),
        },
        Ok(_) => Some((
            "not_a_scan",
            "the body must be one JSON object, a scan event (a batch goes to /v1/events)".into(),
        )),
    };
    if let Some((code, detail)) = not_a_scan {
        return error(StatusCode::BAD_REQUEST, code, detail);
    }
    match submit(&st, "http-scan", vec![&body]).await {
        Ok((mut outcomes, warnings, _)) => match outcomes.pop() {
            Some(o) => {
                let (ok, mut answer) = scan_answer(o);
                add_warnings(&mut answer, warnings.first().map_or(&[], Vec::as_slice));
                if ok {
                    HttpResponse::Ok().json(answer)
                } else {
                    HttpResponse::UnprocessableEntity().json(answer)
                }
            }
            None => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no_outcome",
                "the shard answered nothing",
            ),
        },
        Err(resp) => resp,
    }
}

/// The answer to `POST /v1/scan`, and whether it is a 200 (else a 422: rejected).
pub(crate) fn scan_answer(outcome: Outcome) -> (bool, Value) {
    match outcome {
        Outcome::Accepted { id, outputs } => {
            let decision = first_of(&outputs, "decision");
            let mut answer =
                json!({"id": id, "status": "accepted", "decision": decision, "outputs": outputs});
            // the scan's identities joined two members, or were refused for it: said as
            // /v1/events says it
            let merges: Vec<Value> = outputs
                .iter()
                .filter(|e| e.event == id && is_merge(&e.output))
                .filter_map(|e| serde_json::to_value(&e.output).ok())
                .collect();
            if !merges.is_empty() {
                answer["merges"] = Value::from(merges);
            }
            (true, answer)
        }
        // a retry: the decision it got and its review's resolution, while the shard
        // remembers them (else null); an id another scan took says so
        Outcome::Duplicate {
            id,
            answered,
            about,
        } => {
            let mut answer = json!({
            "id": id, "status": "duplicate", "decision": first_of(&answered, "decision"),
            "resolution": first_of(&answered, "review_resolved")});
            if let Some(crate::shard::About::Reused(w)) = about {
                answer["warnings"] = json!([w]);
            }
            (true, answer)
        }
        Outcome::Rejected { id, reasons } => (
            false,
            json!({"id": id, "status": "rejected", "reasons": reasons}),
        ),
    }
}

/// Why a read found no answer to give: the store failed, or the state did not render as JSON.
pub(crate) enum ReadError {
    Store(StoreError),
    Render(serde_json::Error),
    /// A query the state at hand refuses (a tier no rule names): 400 with why.
    BadQuery(String),
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError::Store(e)
    }
}

impl From<serde_json::Error> for ReadError {
    fn from(e: serde_json::Error) -> Self {
        ReadError::Render(e)
    }
}

/// A view, when there is one, as JSON (a failure is the server's fault, answered 500, never
/// taken for a 404).
fn to_json<T: Serialize>(view: Option<T>) -> Result<Option<Value>, ReadError> {
    Ok(view.map(serde_json::to_value).transpose()?)
}

/// A walk over every stored state of a kind (members, SKUs, ...) that the store failed:
/// answered 503 with the reason, never a short answer that would pass for the whole.
fn read_failed(table: &'static str) -> impl FnOnce(String) -> ReadError {
    move |why| {
        ReadError::Store(StoreError::Io {
            op: "read",
            table,
            why,
        })
    }
}

/// Runs a read on the shard and answers 200 with its value or 404.
async fn read<F>(st: &AppState, what: &str, f: F) -> HttpResponse
where
    F: FnOnce(&Sharded) -> Result<Option<Value>, ReadError> + Send + 'static,
{
    read_store(st, what, move |e, _| f(e)).await
}

/// [`read`] for lookups that read the store: a store failure answers 503 with its reason,
/// never a 404 or a short page that would pass for an answer.
async fn read_store<F>(st: &AppState, what: &str, f: F) -> HttpResponse
where
    F: FnOnce(&Sharded, &dyn Store) -> Result<Option<Value>, ReadError> + Send + 'static,
{
    if let Some(r) = not_ready(st) {
        return r;
    }
    read_answer(what, st.shard.send(Read(f)).await)
}

/// 503 until the store is open and the state rebuilt: until the rebuild the engine may hold
/// events of a commit that failed.
fn not_ready(st: &AppState) -> Option<HttpResponse> {
    (!st.ready.load(Ordering::SeqCst)).then(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store is not available",
        )
    })
}

/// The answer to a read the shard ran (or could not run).
fn read_answer(
    what: &str,
    got: Result<Result<Option<Value>, ReadError>, actix::MailboxError>,
) -> HttpResponse {
    match got {
        Ok(Ok(Some(v))) => HttpResponse::Ok().json(v),
        Ok(Err(ReadError::BadQuery(why))) => bad_query(why),
        Ok(Err(ReadError::Render(e))) => {
            tracing::error!(what, error = %e, "a state did not render as JSON");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "render_failed",
                format!("the {what} could not be shown: {e}"),
            )
        }
        Ok(Err(ReadError::Store(e))) => store_unavailable(e),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shard_unavailable",
            e.to_string(),
        ),
    }
}

/// What `GET /v1/members/{id}` answers (the functions below are the routes' answers too, also
/// read by [`crate::openapi`] for its examples).
pub(crate) fn member_view(e: &Sharded, id: &str) -> Result<Option<Value>, ReadError> {
    let at = crate::view_time(e);
    let (now, today) = (at.unix_us, at.local_day());
    to_json(e.member(id).map(|m| m.view(now, today, e.rules())))
}

async fn get_member(st: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    let what = member_miss(&st.pii, &id);
    read(&st, &what, move |e| member_view(e, &id)).await
}

/// What a miss of member `id` is called in its 404 (`no such ...`): an id not of the form
/// the service issues (an openid, a phone pasted for one) says what a member id looks like
/// and where to look a member up.
fn member_miss(pii: &Pii, id: &str) -> String {
    match pii.protect(&IdKind::MemberId, id) {
        Ok(_) => "member".to_string(),
        Err(e) => format!(
            "member: `{id}` is not a member id ({e}); find a member by any identity at \
             /v1/identities/{{kind}}/{{value}}"
        ),
    }
}

async fn get_identity(st: web::Data<AppState>, p: web::Path<(String, String)>) -> HttpResponse {
    let (kind, value) = p.into_inner();
    let k = IdKind::parse(&kind);
    // the caller sends the plain value; only its keyed hash is ever looked up
    let v = match st.pii.protect(&k, &value) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_identity", e.to_string()),
    };
    // a kind none of the contract's is looked up as sent (channels may use their own), but a
    // miss says so: `Phone` is not `phone`
    let what = if matches!(k, IdKind::Other(_)) {
        format!(
            "member for this identity (`{kind}` is none of the contract's identity kinds: {}; \
             another kind is kept exactly as the channel sent it)",
            IdKind::KNOWN.join(", ")
        )
    } else {
        "member for this identity".to_string()
    };
    read(&st, &what, move |e| {
        let Some(m) = e.member_of(k.as_str(), &v) else {
            return Ok(None);
        };
        let id = m.id.clone();
        member_view(e, &id)
    })
    .await
}

/// `from` and `limit` of a paged read, as given; [`Page::bounds`] parses them with errors
/// that name them.
#[derive(Deserialize)]
struct Page {
    from: Option<String>,
    limit: Option<String>,
}

impl Page {
    /// `from` (default 0) and `limit` (see [`limit_param`]), or what is wrong, naming the one
    /// that is not a whole number (see [`bad_query`]).
    fn bounds(&self) -> Result<(u64, usize), String> {
        let from = whole_param("from", self.from.as_deref())?.unwrap_or(0);
        Ok((from, limit_param(self.limit.as_deref())?))
    }
}

/// A query parameter that must be a whole number, or what is wrong with it.
fn whole_param(name: &str, v: Option<&str>) -> Result<Option<u64>, String> {
    v.map(|s| {
        s.parse::<u64>()
            .map_err(|_| format!("{name}: `{s}` is not a whole number"))
    })
    .transpose()
}

/// A page's `limit`: 100 by default, at most 1000.
fn limit_param(v: Option<&str>) -> Result<usize, String> {
    Ok(whole_param("limit", v)?.map_or(100, |l| l.min(1000) as usize))
}

/// A query parameter that is `true` or `false` (None when not given), or what is wrong.
fn flag_param(name: &str, v: Option<&str>) -> Result<Option<bool>, String> {
    match v {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(format!("{name}: `{other}` is not true or false")),
    }
}

/// 400 `bad_query` with what is wrong with the query.
fn bad_query(detail: String) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, "bad_query", detail)
}

async fn get_ledger(
    st: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<Page>,
) -> HttpResponse {
    let id = id.into_inner();
    let (from, limit) = match q.bounds() {
        Ok(b) => b,
        Err(e) => return bad_query(e),
    };
    let what = member_miss(&st.pii, &id);
    read_store(&st, &what, move |e, s| {
        let Some(m) = e.member(&id) else {
            return Ok(None);
        };
        let entries = |of: &str| -> Result<Vec<Value>, ReadError> {
            Ok(s.ledger(of, from, limit)?
                .iter()
                .filter_map(|r| serde_json::from_slice(r).ok())
                .collect())
        };
        // an id merged away keeps its own history, up to its `merged_out` (the survivor's
        // ledger has the `merged_in`, naming it): shown as it was, with where it went
        if m.id != id.as_str() {
            if let Some(kept) = e.member_as_kept(&id).filter(|k| k.alias_of.is_some()) {
                let rows = entries(&id)?;
                let next = rows
                    .last()
                    .and_then(|e| e["seq"].as_u64())
                    .map_or(from, |s| s + 1);
                // the member it merged into (its `merged_out` names it), which may itself have
                // merged on since: `survivor` is where the person is now
                return Ok(Some(
                    json!({"member": kept.id, "merged_into": kept.alias_of,
                    "survivor": m.id, "balance": 0, "debt": 0, "next": next,
                    "entries": rows}),
                ));
            }
        }
        let rows = entries(&m.id)?;
        Ok(Some(ledger_page(&m, from, rows)))
    })
    .await
}

pub(crate) fn stock_view(e: &Sharded, id: &str) -> Result<Option<Value>, ReadError> {
    to_json(e.sku(id).map(|s| s.view()))
}

/// What `GET /v1/members/{id}/ledger` answers: the member's balance and debt, a page of its
/// entries from `from`, and `next`, where the following page starts (after the last entry
/// given, as /v1/outputs answers it).
pub(crate) fn ledger_page(
    m: &omnistream_actors::member::Member,
    from: u64,
    entries: Vec<Value>,
) -> Value {
    // a cursor past the end comes back as the end, as /v1/outputs answers it: following
    // `next` from there misses no entry written later
    let next = entries
        .last()
        .and_then(|e| e["seq"].as_u64())
        .map_or(from.min(m.points.seq + 1), |s| s + 1);
    json!({"member": m.id, "balance": m.points.balance, "debt": m.points.debt,
        "next": next, "entries": entries})
}

/// Every SKU's stock at one location (a store, a warehouse), by SKU, with the location's
/// total ATP; None when no SKU was ever stocked there. Reads every SKU.
pub(crate) fn location_view(e: &Sharded, location: &str) -> Result<Option<Value>, ReadError> {
    let mut skus = std::collections::BTreeMap::new();
    e.each_sku(&mut |id, s| {
        if let Some(v) = s.location_view(location) {
            skus.insert(id.to_string(), v);
        }
    })
    .map_err(read_failed("skus"))?;
    if skus.is_empty() {
        return Ok(None);
    }
    let atp = crate::total(skus.values().map(|v| v.atp));
    let items: Vec<Value> = skus
        .into_iter()
        .map(|(sku, v)| {
            json!({"sku": sku, "on_hand": v.on_hand, "reserved": v.reserved,
                   "safety": v.safety, "atp": v.atp})
        })
        .collect();
    Ok(Some(
        json!({"location": location, "atp": atp, "items": items}),
    ))
}

async fn get_location_stock(st: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    read(&st, "location (no SKU was ever stocked there)", move |e| {
        location_view(e, &id)
    })
    .await
}

async fn get_stock(st: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    read(&st, "sku", move |e| stock_view(e, &id)).await
}

pub(crate) fn credit_view(e: &Sharded, id: &str) -> Result<Option<Value>, ReadError> {
    credit_of(id, e.dealer(id).as_deref())
}

/// [`credit_view`] of a dealer's state already read.
fn credit_of(
    id: &str,
    dealer: Option<&omnistream_actors::dealer::Dealer>,
) -> Result<Option<Value>, ReadError> {
    let mut v = to_json(dealer.map(|d| d.view()))?;
    // which dealer, as every other view names its entity (a saved answer stands alone)
    if let Some(Value::Object(o)) = &mut v {
        o.insert("dealer".into(), Value::from(id));
    }
    Ok(v)
}

/// `GET /v1/dealers`' query: which dealers (all by default).
#[derive(Deserialize, Default)]
pub(crate) struct DealersQuery {
    pub(crate) held: Option<String>,
    pub(crate) over_limit: Option<String>,
    pub(crate) sort: Option<String>,
    pub(crate) limit: Option<String>,
}

/// Every dealer's credit, resident or not, by id, as `/v1/dealers/{id}/credit` shows it:
/// only those with orders held when `held=true`, only those whose exposure is past their
/// limit when `over_limit=true`; the most first by `sort` (`exposure`, `held_fen`,
/// `past_limit`: exposure − limit), the first `limit` of them; with the count and totals of
/// every one that matched. Reads every dealer.
pub(crate) fn dealers_list(e: &Sharded, q: &DealersQuery) -> Result<Option<Value>, ReadError> {
    let flag =
        |name, v: &Option<String>| flag_param(name, v.as_deref()).map_err(ReadError::BadQuery);
    let (held, over) = (flag("held", &q.held)?, flag("over_limit", &q.over_limit)?);
    let by: Option<fn(&omnistream_actors::dealer::DealerView) -> i64> = match q.sort.as_deref() {
        None => None,
        Some("exposure") => Some(|v| v.exposure),
        Some("held_fen") => Some(|v| v.held_fen),
        Some("past_limit") => Some(|v| v.exposure.saturating_sub(v.limit)),
        Some(other) => {
            return Err(ReadError::BadQuery(format!(
                "sort: `{other}` is not one of exposure, held_fen, past_limit (each the most first)"
            )))
        }
    };
    // (given: at most 1000, as every list's; absent: all, as before there was one)
    let limit = match q.limit {
        Some(_) => Some(limit_param(q.limit.as_deref()).map_err(ReadError::BadQuery)?),
        None => None,
    };
    let mut all = std::collections::BTreeMap::new();
    e.each_dealer(&mut |id, d| {
        // true: those with; false: those without; absent: all
        if held.is_some_and(|h| h == d.held.is_empty())
            || over.is_some_and(|o| o == (d.available() >= 0))
        {
            return;
        }
        all.insert(id.to_string(), d.view());
    })
    .map_err(read_failed("dealers"))?;
    // what dealers owe and have on order, apart from what some paid ahead: one dealer's
    // prepayment is no cover for another's debt
    let (mut exposure, mut prepaid, mut held_fen) = (0i64, 0i64, 0i64);
    for v in all.values() {
        exposure = exposure.saturating_add(v.exposure.max(0));
        prepaid = prepaid.saturating_add(v.exposure.min(0).saturating_neg());
        held_fen = held_fen.saturating_add(v.held_fen);
    }
    let matched = all.len();
    let mut listed: Vec<_> = all.into_iter().collect();
    if let Some(by) = by {
        // (a stable sort: ties stay by id)
        listed.sort_by_key(|(_, v)| std::cmp::Reverse(by(v)));
    }
    if let Some(n) = limit {
        listed.truncate(n);
    }
    let items = listed
        .into_iter()
        .map(|(id, v)| {
            let mut j = serde_json::to_value(v)?;
            j["dealer"] = json!(id);
            Ok(j)
        })
        .collect::<Result<Vec<Value>, serde_json::Error>>()?;
    Ok(Some(
        json!({"dealers": matched, "exposure": exposure, "prepaid": prepaid,
        "held_fen": held_fen, "items": items}),
    ))
}

async fn get_dealers(st: web::Data<AppState>, q: web::Query<DealersQuery>) -> HttpResponse {
    let q = q.into_inner();
    read(&st, "dealers", move |e| dealers_list(e, &q)).await
}

async fn get_credit(st: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    read(&st, "dealer", move |e| credit_view(e, &id)).await
}

pub(crate) fn kpis_view(e: &Sharded, id: &str) -> Result<Option<Value>, ReadError> {
    kpis_view_on(e, &StoreRefs::new(), id, None)
}

/// The stores the configuration names (`[stores.ID]`).
type StoreRefs = std::collections::BTreeMap<String, crate::config::StoreRef>;

/// Adds a configured store's name, region and kind to its JSON.
fn with_ref(v: &mut Value, r: Option<&crate::config::StoreRef>) {
    let Some(r) = r else { return };
    for (k, x) in [("name", &r.name), ("region", &r.region), ("kind", &r.kind)] {
        if let Some(x) = x {
            v[k] = json!(x);
        }
    }
}

/// [`kpis_view`] with the hours of local day `day` instead of today's, when given; a store
/// the configuration names shows (with zeros) before its first event.
fn kpis_view_on(
    e: &Sharded,
    refs: &StoreRefs,
    id: &str,
    day: Option<i64>,
) -> Result<Option<Value>, ReadError> {
    let r = refs.get(id);
    let Some(s) = e.store(id).or_else(|| r.map(|_| Default::default())) else {
        return Ok(None);
    };
    let mut v = s.view(crate::view_time(e), &e.rules().store);
    if let Some(day) = day {
        v.hours = s.hours_of(day);
    }
    let empty = v.hours.is_empty();
    let mut json = to_json(Some(v))?.unwrap_or_default();
    with_ref(&mut json, r);
    let Some(day) = day else {
        return Ok(Some(json));
    };
    // no hours: a day before those kept, after the newest, or one without events
    if empty {
        let date = |n: i64| {
            omnistream_actors::shown::day::serialize(&n, serde_json::value::Serializer)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        };
        let (first, last) = (s.days.keys().next(), s.days.keys().next_back());
        let why = match (first, last) {
            // days are dropped past kpi-days: a shorter span is the store's whole history
            (Some(&f), Some(&l)) if day < f && l - f + 1 >= e.rules().store.kpi_days => format!(
                "before the days kept ({} to {}; rules.store.kpi-days is {})",
                date(f),
                date(l),
                e.rules().store.kpi_days
            ),
            (Some(&f), _) if day < f => {
                format!("before the store's first day with an event ({})", date(f))
            }
            (Some(&f), Some(&l)) if day > l => format!(
                "after the newest day with an event ({}; days kept from {})",
                date(l),
                date(f)
            ),
            _ => "no event of this store fell on that day".to_string(),
        };
        json["hours_note"] = json!(why);
    }
    Ok(Some(json))
}

/// A campaign's budget and counts, with the rules it runs under: its own (`configured`) or
/// `default-campaign`'s, so a campaign id misspelt by a channel shows as one that runs on
/// the defaults. None for an id neither configured nor named by any scan.
pub(crate) fn campaign_view(e: &Sharded, id: &str) -> Result<Option<Value>, ReadError> {
    let configured = e.rules().campaigns.contains_key(id);
    let state = e.campaign(id);
    if state.is_none() && !configured {
        return Ok(None);
    }
    let state = state.map_or_else(Default::default, |c| c.into_owned());
    campaign_json(e.rules(), id, state).map(Some)
}

/// A campaign as `/v1/campaigns/{id}` shows it, from its state and the rules now; `points`
/// is what a rewarded scan is paid (0 for a campaign nobody configured when
/// `unconfigured-campaigns` pays those nothing).
pub(crate) fn campaign_json(
    all: &omnistream_actors::config::Rules,
    id: &str,
    state: omnistream_actors::campaign::Campaign,
) -> Result<Value, ReadError> {
    let rules = all.campaign(id);
    let mut view = state.view();
    // the rules' budget, which the state takes on at its next scan
    view.budget = rules.budget;
    view.remaining = (rules.budget > 0).then(|| (rules.budget - view.spent).max(0));
    let mut v = to_json(Some(view))?.unwrap_or_default();
    v["id"] = json!(id);
    v["configured"] = json!(all.campaigns.contains_key(id));
    v["points"] = json!(all.campaign_points(id));
    v["daily_cap"] = json!(rules.daily_cap);
    v["review_at"] = json!(rules.fraud.review_at);
    v["block_at"] = json!(rules.fraud.block_at);
    Ok(v)
}

async fn get_campaign(st: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    read(&st, "campaign", move |e| campaign_view(e, &id)).await
}

/// Every campaign, by id: those the configuration names (scanned or not) and those any scan
/// named (a misspelt id among them, `configured: false`), each as `/v1/campaigns/{id}`
/// shows it: the risk team's list when a budget alert fires.
pub(crate) fn campaigns_view(e: &Sharded) -> Result<Option<Value>, ReadError> {
    let mut all = e.campaigns().map_err(read_failed("campaigns"))?;
    for id in e.rules().campaigns.keys() {
        all.entry(id.clone()).or_default();
    }
    let items = all
        .into_iter()
        .map(|(id, s)| campaign_json(e.rules(), &id, s))
        .collect::<Result<Vec<Value>, ReadError>>()?;
    Ok(Some(json!({ "items": items })))
}

/// The loyalty programme in figures, over every member (resident or not; ids merged away
/// left out): how many, per tier and per tag, and the points they hold (`balance`, the
/// programme's liability), are owed (`debt`), wait for fulfilments (`pending`) and for
/// reviews (`held`). Reads every member: a manager's figure, not a tight loop.
pub(crate) fn loyalty_view(e: &Sharded) -> Result<Option<Value>, ReadError> {
    let (mut members, mut balance, mut pending, mut debt, mut held) =
        (0u64, 0i64, 0i64, 0i64, 0i64);
    let mut tiers = std::collections::BTreeMap::<String, u64>::new();
    let mut tags = std::collections::BTreeMap::<String, u64>::new();
    e.each_member(&mut |_, m| {
        if m.alias_of.is_some() {
            return;
        }
        members += 1;
        *tiers.entry(m.tier.to_string()).or_default() += 1;
        for t in m.tags.iter() {
            *tags.entry(t.to_string()).or_default() += 1;
        }
        balance = balance.saturating_add(m.points.balance);
        pending = pending.saturating_add(m.points.pending);
        debt = debt.saturating_add(m.points.debt);
        held = held.saturating_add(crate::total(m.held.iter().map(|h| h.points)));
    })
    .map_err(read_failed("members"))?;
    // every configured tier, with none in it too
    let rules = e.rules();
    for t in rules.tiers.names() {
        tiers.entry(t.to_string()).or_default();
    }
    for t in &rules.tags {
        tags.entry(t.name.to_string()).or_default();
    }
    Ok(Some(json!({
        "members": members, "tiers": tiers, "tags": tags,
        "points": {"balance": balance, "pending": pending, "debt": debt, "held": held},
    })))
}

/// `GET /v1/members`' query: a segment (tier, tag, channel, points held) and a page of it.
#[derive(Deserialize, Default)]
pub(crate) struct MembersQuery {
    pub(crate) tier: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) min_balance: Option<String>,
    pub(crate) after: Option<String>,
    pub(crate) limit: Option<String>,
}

/// Members in a segment, by id, a page at a time: those in `tier`, with `tag`, who used
/// `channel`, holding at least `min_balance` points (each optional), after member id `after`;
/// `total` counts the whole segment and `next` is the `after` of the next page. Reads every
/// member, as [`loyalty_view`] does.
pub(crate) fn members_list(e: &Sharded, q: &MembersQuery) -> Result<Option<Value>, ReadError> {
    let limit = limit_param(q.limit.as_deref()).map_err(ReadError::BadQuery)?;
    let min_balance = q
        .min_balance
        .as_deref()
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ReadError::BadQuery(format!("min_balance: `{s}` is not a number of points"))
            })
        })
        .transpose()?;
    // a tier or tag no rule names matches no one ever: say so rather than list nobody
    let rules = e.rules();
    let tiers: Vec<&str> = rules.tiers.names().map(|t| t.as_str()).collect();
    let tags: Vec<&str> = rules.tags.iter().map(|t| t.name.as_str()).collect();
    let check = |what: &str, v: &Option<String>, known: &[&str]| match v {
        Some(v) if !known.contains(&v.as_str()) => Err(ReadError::BadQuery(format!(
            "{what}: `{v}` is none of the configured {what}s ({})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))),
        _ => Ok(()),
    };
    check("tier", &q.tier, &tiers)?;
    check("tag", &q.tag, &tags)?;
    let after = q.after.as_deref().unwrap_or("");
    let mut total = 0u64;
    // the `limit + 1` smallest ids past `after`: one more than the page tells whether a
    // next page exists
    let mut page =
        std::collections::BTreeMap::<String, omnistream_actors::member::MemberSummary>::new();
    e.each_member(&mut |id, m| {
        if m.alias_of.is_some()
            || q.tier.as_deref().is_some_and(|t| m.tier.as_str() != t)
            || q.tag
                .as_deref()
                .is_some_and(|t| !m.tags.iter().any(|g| g.as_str() == t))
            || q.channel
                .as_deref()
                .is_some_and(|c| !m.channels.iter().any(|g| g.as_str() == c))
            || min_balance.is_some_and(|b| m.points.balance < b)
        {
            return;
        }
        total += 1;
        if id <= after
            || page.len() > limit && page.keys().next_back().is_some_and(|l| l.as_str() < id)
        {
            return;
        }
        page.insert(id.to_string(), m.summary());
        if page.len() > limit + 1 {
            page.pop_last();
        }
    })
    .map_err(read_failed("members"))?;
    let more = page.len() > limit;
    let items: Vec<_> = page.into_values().take(limit).collect();
    let next = more.then(|| items.last().map(|m| m.id.clone())).flatten();
    Ok(Some(
        json!({ "total": total, "items": items, "next": next }),
    ))
}

async fn get_members(st: web::Data<AppState>, q: web::Query<MembersQuery>) -> HttpResponse {
    let q = q.into_inner();
    read(&st, "members", move |e| members_list(e, &q)).await
}

async fn get_loyalty(st: web::Data<AppState>) -> HttpResponse {
    read(&st, "loyalty", loyalty_view).await
}

async fn get_campaigns(st: web::Data<AppState>) -> HttpResponse {
    read(&st, "campaigns", campaigns_view).await
}

/// Every store's view now, resident or not, by id (what `/v1/stores/{id}/kpis` shows).
fn store_views(
    e: &Sharded,
) -> Result<Vec<(omnistream_actors::Str, omnistream_actors::store::StoreView)>, ReadError> {
    let at = crate::view_time(e);
    let stores = e.stores().map_err(read_failed("stores"))?;
    Ok(stores
        .into_iter()
        .map(|(id, s)| {
            let v = s.view(at, &e.rules().store);
            (id, v)
        })
        .collect())
}

/// Every store, resident or not, by id: its `today` and `this_hour` as
/// `/v1/stores/{id}/kpis` shows them, how many reps visited it and its recent visitors: a
/// manager's list of stores.
pub(crate) fn stores_view(e: &Sharded) -> Result<Option<Value>, ReadError> {
    stores_list(e, &StoreRefs::new(), &StoresFilter::default())
}

/// What `/v1/stores` keeps and adds.
#[derive(Default)]
struct StoresFilter {
    /// Only the stores no sales rep visited in that many days before the view's time (a
    /// rep's coverage: never visited ones included).
    unvisited_days: Option<i64>,
    /// Only the stores the configuration puts in this region.
    region: Option<String>,
    /// Each store's KPIs of this local day, and their total (`total`, `hours`).
    day: Option<i64>,
}

/// [`stores_view`], filtered and with a day's KPIs as `f` says; the stores the configuration
/// names are listed before their first event, with their name, region and kind.
fn stores_list(
    e: &Sharded,
    refs: &StoreRefs,
    f: &StoresFilter,
) -> Result<Option<Value>, ReadError> {
    let at = crate::view_time(e);
    let since = f
        .unvisited_days
        .map(|d| at.unix_us.saturating_sub(d.saturating_mul(86_400_000_000)));
    let mut stores = e.stores().map_err(read_failed("stores"))?;
    for id in refs.keys() {
        stores.entry(id.as_str().into()).or_default();
    }
    let mut items = Vec::new();
    let mut listed = Vec::new();
    for (id, s) in &stores {
        let r = refs.get(id.as_str());
        if f.region.is_some() && r.and_then(|r| r.region.as_ref()) != f.region.as_ref() {
            continue;
        }
        let v = s.view(at, &e.rules().store);
        let last = v.reps.iter().map(|r| r.last_visit).max();
        if since.is_some_and(|s| last.is_some_and(|l| l >= s)) {
            continue;
        }
        // as each rep's `last_visit` is shown (RFC 3339, UTC)
        let last_rep_visit = last.and_then(|us| {
            omnistream_actors::shown::instant::serialize(&us, serde_json::value::Serializer).ok()
        });
        let rep_visits_30d: usize = v.reps.iter().map(|r| r.visits_30d).sum();
        let mut row = json!({"store": id, "today": v.today, "this_hour": v.this_hour,
           "rep_count": v.reps.len(), "last_rep_visit": last_rep_visit,
           "rep_visits_30d": rep_visits_30d, "recent_visitors": v.recent_visitors});
        with_ref(&mut row, r);
        if let Some(day) = f.day {
            row["day"] = serde_json::to_value(s.day_of(day)).map_err(ReadError::Render)?;
        }
        items.push(row);
        listed.push(s);
    }
    let mut v = json!({ "items": items });
    if let Some(day) = f.day {
        let (total, hours) = omnistream_actors::store::rollup(listed, day);
        v["total"] = serde_json::to_value(total).map_err(ReadError::Render)?;
        v["hours"] = serde_json::to_value(hours).map_err(ReadError::Render)?;
    }
    Ok(Some(v))
}

/// `GET /v1/stores`' query.
#[derive(Deserialize)]
struct StoresQuery {
    unvisited_days: Option<String>,
    region: Option<String>,
    day: Option<String>,
}

async fn get_stores(st: web::Data<AppState>, q: web::Query<StoresQuery>) -> HttpResponse {
    let q = q.into_inner();
    let unvisited_days = match q.unvisited_days.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(d)) if (0..=3_660).contains(&d) => Some(d),
        Some(_) => {
            return bad_query(format!(
                "unvisited_days: `{}` is not a number of days from 0 to 3660",
                q.unvisited_days.as_deref().unwrap_or_default()
            ))
        }
    };
    let day = match day_param(q.day.as_deref()) {
        Ok(d) => d,
        Err(e) => return bad_query(e),
    };
    let cfg = st.cfg.clone();
    if let Some(r) = q.region.as_deref() {
        if !cfg.stores.values().any(|s| s.region.as_deref() == Some(r)) {
            return bad_query(format!(
                "region: `{r}` is no configured store's region ([stores.ID] region = ...)"
            ));
        }
    }
    let f = StoresFilter {
        unvisited_days,
        region: q.region,
        day,
    };
    read(&st, "stores", move |e| stores_list(e, &cfg.stores, &f)).await
}

/// Every sales rep's visits across stores (by rep id): the totals and, per store as the
/// store's KPIs show it, `visits`, `last_visit`, `visits_30d`, `avg_duration_s`.
fn reps_across_stores(e: &Sharded) -> Result<std::collections::BTreeMap<String, Value>, ReadError> {
    let mut reps = std::collections::BTreeMap::<String, Value>::new();
    for (id, v) in store_views(e)? {
        for r in v.reps {
            let mut at_store = serde_json::to_value(&r).map_err(ReadError::Render)?;
            if let Some(o) = at_store.as_object_mut() {
                o.remove("rep");
                o.insert("store".into(), json!(id));
            }
            let all = reps.entry(r.rep.to_string()).or_insert_with(|| {
                json!({"rep": r.rep, "visits": 0, "visits_30d": 0, "last_visit": null,
                       "visit_seconds": 0, "timed_visits": 0, "avg_duration_s": null,
                       "stores": []})
            });
            all["visits"] = json!(all["visits"].as_u64().unwrap_or(0) + r.visits);
            all["visits_30d"] =
                json!(all["visits_30d"].as_u64().unwrap_or(0) + r.visits_30d as u64);
            // the time spent over every store, and its average per timed visit
            let seconds = all["visit_seconds"].as_i64().unwrap_or(0) + r.visit_seconds;
            let timed = all["timed_visits"].as_u64().unwrap_or(0) + r.timed_visits;
            all["visit_seconds"] = json!(seconds);
            all["timed_visits"] = json!(timed);
            all["avg_duration_s"] = json!((timed > 0).then(|| seconds as f64 / timed as f64));
            // RFC 3339 in UTC, so the text orders as the time
            if all["last_visit"].as_str() < at_store["last_visit"].as_str() {
                all["last_visit"] = at_store["last_visit"].clone();
            }
            if let Some(list) = all["stores"].as_array_mut() {
                list.push(at_store);
            }
        }
    }
    Ok(reps)
}

/// One sales rep's visits across stores, with the totals; None when no store has seen the
/// rep.
pub(crate) fn rep_view(e: &Sharded, rep: &str) -> Result<Option<Value>, ReadError> {
    Ok(reps_across_stores(e)?.remove(rep))
}

/// Every sales rep any store has seen, by id, with the totals and the number of stores
/// visited (the stores themselves at `/v1/reps/{rep}`).
pub(crate) fn reps_view(e: &Sharded) -> Result<Option<Value>, ReadError> {
    let items: Vec<Value> = reps_across_stores(e)?
        .into_values()
        .map(|mut r| {
            let stores = r["stores"].as_array().map_or(0, Vec::len);
            if let Some(o) = r.as_object_mut() {
                o.remove("stores");
                o.insert("store_count".into(), json!(stores));
            }
            r
        })
        .collect();
    Ok(Some(json!({ "items": items })))
}

async fn get_reps(st: web::Data<AppState>) -> HttpResponse {
    read(&st, "sales reps", reps_view).await
}

async fn get_rep(st: web::Data<AppState>, rep: web::Path<String>) -> HttpResponse {
    let rep = rep.into_inner();
    read(&st, "sales rep", move |e| rep_view(e, &rep)).await
}

/// A `day` query parameter (YYYY-MM-DD) as its local day number, or what is wrong with it.
fn day_param(d: Option<&str>) -> Result<Option<i64>, String> {
    d.map(|d| {
        omnistream_actors::shown::day::deserialize(Value::from(d))
            .map_err(|_| format!("day: `{d}` is not a date (YYYY-MM-DD)"))
    })
    .transpose()
}

/// `GET /v1/stores/{id}/kpis`' query: the day whose hours to show (today's by default).
#[derive(Deserialize)]
struct KpisQuery {
    day: Option<String>,
}

async fn get_kpis(
    st: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<KpisQuery>,
) -> HttpResponse {
    let id = id.into_inner();
    let day = match day_param(q.day.as_deref()) {
        Ok(d) => d,
        Err(e) => return bad_query(e),
    };
    let cfg = st.cfg.clone();
    // (a location stocked is not a store until a visit, an order or a scan names it)
    const WHAT: &str = "store: a store is known once a visit, an order or a scan names it, \
                        or `[stores.ID]` configures it (stock at a location makes no store)";
    read(&st, WHAT, move |e| kpis_view_on(e, &cfg.stores, &id, day)).await
}

pub(crate) fn order_view(
    e: &Sharded,
    channel: &str,
    order: &str,
) -> Result<Option<Value>, ReadError> {
    order_view_of(e, &omnistream_actors::router::order_key(channel, order))
}

/// [`order_view`] of an order's key, `channel:order`.
fn order_view_of(e: &Sharded, key: &str) -> Result<Option<Value>, ReadError> {
    let key = omnistream_actors::Str::from(key);
    // a timer the setting no longer acts on is not shown
    let due = e
        .timer_of(omnistream_actors::Key::Order(key.clone()))
        .filter(|_| e.rules().stock.cancel_unpaid_after_s > 0);
    to_json(e.order(&key).map(|o| o.view(&key, due)))
}

async fn get_order(st: web::Data<AppState>, p: web::Path<(String, String)>) -> HttpResponse {
    let (channel, order) = p.into_inner();
    read(&st, "order", move |e| order_view(e, &channel, &order)).await
}

#[derive(Deserialize)]
struct OutputQuery {
    #[serde(flatten)]
    page: Page,
    output: Option<String>,
    campaign: Option<String>,
    sku: Option<String>,
    location: Option<String>,
    member: Option<String>,
    dealer: Option<String>,
    order: Option<String>,
    /// `/v1/decisions` only: `allow`, `review`, `block` or `duplicate`.
    decision: Option<String>,
    /// `/v1/decisions` only: the device and the IP address scanned from.
    device: Option<String>,
    ip: Option<String>,
    /// The code scanned (decisions and the code's other outputs).
    code: Option<String>,
    /// A reason among a decision's `reasons` (`/v1/decisions`), or among a dead letter's
    /// (`/v1/outputs?output=dead_letter`).
    reason: Option<String>,
    /// A dead letter's event id, as it was sent (`/v1/outputs?output=dead_letter`).
    id: Option<String>,
    /// `/v1/decisions` only: the scan's event id (its decision, and any repeat's).
    scan_event: Option<String>,
    /// `/v1/decisions`: `true`, reviews still waiting for a person; `false`, reviews no
    /// longer waiting. `/v1/outputs?output=merge_conflict`: merges refused for two phones
    /// whose two members are (`true`) or are no longer (`false`) two.
    pending: Option<String>,
}

/// What [`outputs_page`] reads: where to start, how many, the kind (`output`), and the
/// values an output must hold, each in one of the fields named with it.
#[derive(Clone)]
struct OutputFilter {
    from: u64,
    limit: usize,
    output: Option<String>,
    fields: Vec<(&'static [&'static str], String)>,
    /// Only reviews that are (true) or are no longer (false) waiting for a person.
    pending: Option<bool>,
}

impl OutputQuery {
    /// The filter, or what is wrong, naming the parameter: a bad number, or an `output` no
    /// output has (answered with the kinds there are, instead of an empty page).
    /// The member `member=` names when only a member that exists can match: an id no member
    /// has (an openid pasted for a member id) would find nothing, ever; but an
    /// `unknown_member` output names just such an id.
    fn known_member(&self) -> Option<String> {
        (self.member.clone()).filter(|_| self.output.as_deref() != Some("unknown_member"))
    }

    fn filter(self) -> Result<OutputFilter, String> {
        let (from, limit) = self.page.bounds()?;
        if let Some(k) = self.output.as_deref().filter(|k| *k != "dead_letter") {
            omnistream_actors::output::check_kind(k)
                .map_err(|e| format!("output: {e}, or `dead_letter`"))?;
        }
        // an order is `channel:order`: a bare order id would only ever find nothing
        if let Some(o) = self.order.as_deref().filter(|o| !o.contains(':')) {
            return Err(format!(
                "order: `{o}` is not `channel:order` (order ids are unique per channel)"
            ));
        }
        // an order's or a campaign's points are ledger entries `about` it, and a member is
        // also a merge's `survivor` or `alias`
        if let Some(d) = self.decision.as_deref() {
            if !["allow", "review", "block", "duplicate"].contains(&d) {
                return Err(format!(
                    "decision: `{d}` is not one of allow, review, block, duplicate"
                ));
            }
        }
        let pending = flag_param("pending", self.pending.as_deref())?;
        // only reviews wait for a person: the two together could only ever find nothing
        if let (Some(_), Some(d)) = (pending, self.decision.as_deref()) {
            if d != "review" {
                return Err(format!(
                    "pending: only reviews wait for a person, and decision is `{d}`: \
                     leave one of them out"
                ));
            }
        }
        // a reason no decision (or, for dead letters, no refusal) has would only ever find
        // nothing
        let dead_letters = self.output.as_deref() == Some("dead_letter");
        // a ledger entry's reason is a field of its own (`reason=adjusted`: every adjustment)
        let ledger = self.output.as_deref() == Some("ledger");
        if let Some(r) = self.reason.as_deref() {
            let all: Vec<&str> = if ledger {
                omnistream_actors::output::LEDGER_REASONS.to_vec()
            } else if dead_letters {
                omnistream_schemas::Reason::ALL
                    .iter()
                    .map(|r| r.code())
                    .collect()
            } else {
                omnistream_actors::fraud::Reason::ALL
                    .map(|r| r.as_str())
                    .to_vec()
            };
            if !all.contains(&r) {
                return Err(format!("reason: `{r}` is none of {}", all.join(", ")));
            }
        }
        // only dead letters are found by the id they were sent with
        if self.id.is_some() && !dead_letters {
            return Err(
                "id: only with output=dead_letter (the other outputs name their event \
                        in `event`)"
                    .into(),
            );
        }
        if let Some(s) = self.scan_event.as_deref() {
            if uuid::Uuid::parse_str(s).is_err() {
                return Err(format!("scan_event: `{s}` is not an event id (a UUID)"));
            }
        }
        // a name with a `/` is a JSON pointer: a decision's scan is an object of its own
        let decisions = self.output.as_deref() == Some("decision");
        let sku: &'static [&'static str] = if decisions { &["/scan/sku"] } else { &["sku"] };
        let in_fields: [(&'static [&'static str], _); 13] = [
            (&["campaign", "about"], self.campaign),
            (sku, self.sku),
            (&["location"], self.location),
            // and the other side of a merge refused (`merge_conflict`'s `other`)
            (&["member", "survivor", "alias", "other"], self.member),
            (&["dealer"], self.dealer),
            (&["order", "about"], self.order),
            (&["decision"], self.decision),
            (&["/scan/device"], self.device),
            // as decisions write it: an IPv4 address written as IPv6 is the IPv4 address
            (
                &["/scan/ip"],
                self.ip.map(|s| match s.parse::<std::net::IpAddr>() {
                    Ok(a) => a.to_canonical().to_string(),
                    Err(_) => s,
                }),
            ),
            (&["code"], self.code),
            (
                if ledger {
                    &["reason"]
                } else {
                    &["/reasons/*/reason"]
                },
                self.reason,
            ),
            (&["id"], self.id),
            (
                // as outputs write it, whatever form of a UUID was given
                &["scan_event"],
                self.scan_event
                    .and_then(|s| uuid::Uuid::parse_str(&s).ok())
                    .map(|u| u.hyphenated().to_string()),
            ),
        ];
        let fields = in_fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        Ok(OutputFilter {
            from,
            limit,
            output: self.output,
            fields,
            pending,
        })
    }
}

/// Outputs in order from a sequence number, optionally of one kind (and campaign).
async fn get_outputs(st: web::Data<AppState>, q: web::Query<OutputQuery>) -> HttpResponse {
    answer_outputs(&st, q.into_inner()).await
}

/// Scan decisions; a review's also says whether it is `pending`: still holding its points
/// for a person to resolve (`POST /v1/reviews/{event}`), as the member's state says now.
async fn get_decisions(st: web::Data<AppState>, q: web::Query<OutputQuery>) -> HttpResponse {
    let mut q = q.into_inner();
    q.output = Some("decision".into());
    // a member's decisions are those of the person: also those written under an id merged
    // into it since (or into which it merged), matched by where each id leads now
    let member = q.member.take();
    let what = member_miss(&st.pii, member.as_deref().unwrap_or_default());
    if let Some(r) = not_ready(&st) {
        return r;
    }
    match q.filter() {
        Ok(f) => {
            let read = crate::shard::ReadReviewed(
                move |e: &Sharded,
                      s: &dyn Store,
                      resolution: &dyn Fn(uuid::Uuid) -> Option<Value>| {
                    let want = f.pending;
                    let mut members = Holders::default();
                    // an id no member has (an openid pasted for a member id) finds nothing
                    // ever: 404, as /v1/members/{id} answers it
                    if member.as_deref().is_some_and(|id| e.member(id).is_none()) {
                        return Ok(None);
                    }
                    let member = member.as_deref().map(|id| members.of(e, id).0.clone());
                    let keep = |v: &mut Value| {
                        if let Some(who) = &member {
                            let of = v.get("member").and_then(Value::as_str).unwrap_or("");
                            if members.of(e, of).0 != *who {
                                return false;
                            }
                        }
                        if v.get("decision").and_then(Value::as_str) != Some("review") {
                            // a block a person overturned says so, with what it paid
                            if v.get("decision").and_then(Value::as_str) == Some("block") {
                                if let Some(r) = scan_event(v).and_then(resolution) {
                                    v["resolution"] = r;
                                }
                            }
                            return want.is_none();
                        }
                        let scan = scan_event(v);
                        let pending = members.pending(e, v);
                        v["pending"] = json!(pending);
                        // what became of it, while the shard remembers the scan
                        if let Some(r) = scan.filter(|_| !pending).and_then(resolution) {
                            v["resolution"] = r;
                        }
                        want.is_none_or(|w| w == pending)
                    };
                    Ok(Some(outputs_page(s, f, keep)?))
                },
            );
            // the read finds nothing only for a member no one has
            read_answer(&what, st.shard.send(read).await)
        }
        Err(e) => bad_query(e),
    }
}

/// The scan a decision output is about.
fn scan_event(v: &Value) -> Option<uuid::Uuid> {
    v.get("scan_event")
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
}

/// What a page of decisions reads of the members it names, once each: the person an id
/// leads to now (through merges) and the scans whose rewards that person holds for review.
#[derive(Default)]
pub(crate) struct Holders(std::collections::HashMap<String, (String, Vec<u128>)>);

impl Holders {
    fn of(&mut self, e: &Sharded, id: &str) -> &(String, Vec<u128>) {
        self.0
            .entry(id.to_string())
            .or_insert_with(|| match e.member(id) {
                Some(m) => (m.id.to_string(), m.held.iter().map(|h| h.event).collect()),
                None => (id.to_string(), Vec::new()),
            })
    }

    /// Whether the review decision `v` still holds its points in its member's state.
    pub(crate) fn pending(&mut self, e: &Sharded, v: &Value) -> bool {
        let member = v.get("member").and_then(Value::as_str).unwrap_or("");
        scan_event(v).is_some_and(|s| self.of(e, member).1.contains(&s.as_u128()))
    }
}

/// A page of outputs as `q` asks, or 400 naming what is wrong with `q`. A merge refused
/// for two phones (`merge_conflict`, `different phone numbers`) says whether it is still
/// `pending`: the two still two members, for a person to merge or leave
/// (`POST /v1/members/{id}/merge`); with `output=merge_conflict`, `pending=true|false` lists
/// those that are or are not.
async fn answer_outputs(st: &AppState, mut q: OutputQuery) -> HttpResponse {
    let conflicts = q.output.as_deref() == Some("merge_conflict");
    // a person's refused merges are those of every id merged into it since, or it into: the
    // ids a refusal names are matched by where each leads now
    // 404 for a member no one is, as /v1/decisions answers it
    let asked = q.known_member();
    let person = if conflicts { q.member.take() } else { None };
    let what = member_miss(&st.pii, asked.as_deref().unwrap_or_default());
    match q.filter() {
        Ok(f) if f.pending.is_some() && !conflicts => bad_query(
            "pending: only with output=merge_conflict here (reviews waiting: \
             /v1/decisions?pending=true)"
                .into(),
        ),
        Ok(f) => {
            read_store(st, &what, move |e, s| {
                if asked.as_deref().is_some_and(|id| e.member(id).is_none()) {
                    return Ok(None);
                }
                let want = f.pending;
                let mut members = Holders::default();
                // every refusal listed says whether it waits (also on a page of all kinds)
                let keep = |v: &mut Value| {
                    if v.get("output").and_then(Value::as_str) != Some("merge_conflict") {
                        return true;
                    }
                    let id = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let (a, b) = (id("member"), id("other"));
                    if let Some(p) = &person {
                        let p = members.of(e, p).0.clone();
                        if members.of(e, &a).0 != p && members.of(e, &b).0 != p {
                            return false;
                        }
                    }
                    let phones = omnistream_actors::member::PHONES_DIFFER;
                    if v.get("reason").and_then(Value::as_str) != Some(phones) {
                        return want.is_none();
                    }
                    let pending = e.member(&a).is_some()
                        && e.member(&b).is_some()
                        && members.of(e, &a).0.clone() != members.of(e, &b).0;
                    v["pending"] = json!(pending);
                    want.is_none_or(|w| w == pending)
                };
                Ok(Some(outputs_page(s, f, keep)?))
            })
            .await
        }
        Err(e) => bad_query(e),
    }
}

/// Outputs as they become durable, pushed as server-sent events (`text/event-stream`): each
/// an event `output` whose `id` is its `seq` and whose `data` is `{"seq", "output"}` as
/// `/v1/outputs` lists them, with `/v1/outputs`' filters. It starts after the
/// `Last-Event-ID` a reconnecting client sends, else at `from`, else at the end: what
/// becomes durable from now on. Each durable commit wakes it. At the start and at least
/// every 15 s without an output it sends a comment and an `id` of where its reading has
/// come to, so a client reconnecting after a quiet spell misses nothing that came since;
/// it ends when the server stops.
async fn outputs_stream(
    st: web::Data<AppState>,
    q: web::Query<OutputQuery>,
    req: actix_web::HttpRequest,
) -> HttpResponse {
    if let Some(r) = not_ready(&st) {
        return r;
    }
    let q = q.into_inner();
    let given = q.page.from.is_some();
    let resume = match req.headers().get("last-event-id") {
        None => None,
        Some(v) => match v.to_str().ok().map(str::trim) {
            // the id a stream gives before the first output there is
            Some("-1") => Some(0),
            Some(s) => match s.parse::<u64>() {
                Ok(seq) => Some(seq.saturating_add(1)),
                Err(_) => return bad_query(format!("Last-Event-ID: `{s}` is not an output's seq")),
            },
            None => return bad_query("Last-Event-ID: not text".into()),
        },
    };
    let member = q.known_member();
    let mut f = match q.filter() {
        Ok(f) => f,
        Err(e) => return bad_query(e),
    };
    let end = match st
        .shard
        .send(Read(move |e: &Sharded, s: &dyn Store| {
            match member.as_deref().filter(|id| e.member(id).is_none()) {
                Some(id) => Ok(Err(id.to_string())),
                None => s.next_output().map(Ok),
            }
        }))
        .await
    {
        Ok(Ok(Ok(end))) => end,
        Ok(Ok(Err(id))) => {
            let what = member_miss(&st.pii, &id);
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such {what}"),
            );
        }
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shard_unavailable",
                e.to_string(),
            )
        }
    };
    // a position past the end (a client's guess, a store restored from an older backup)
    // starts at the end, as `/v1/outputs` answers it, and says so
    f.from = resume.or(given.then_some(f.from)).unwrap_or(end).min(end);
    f.limit = 1000;
    let first = web::Bytes::from(position(": outputs from", f.from));
    let follow = futures_util::stream::unfold(
        (
            (st.shard.clone(), st.output_rows.clone()),
            st.stopping.clone(),
            st.durable.clone(),
            f,
            tokio::time::Instant::now(),
        ),
        |((shard, rows), mut stopping, mut durable, mut f, sent)| async move {
            loop {
                if *stopping.borrow() {
                    return None;
                }
                // seen before reading: a commit from here on wakes the wait below
                durable.borrow_and_update();
                let page = f.clone();
                // on a thread of the blocking pool when the store has a reader of its own
                // (the embedded one): followers' filters then cost the shard nothing
                let read = match rows.clone() {
                    Some(r) => {
                        tokio::task::spawn_blocking(move || outputs_page(&*r, page, |_| true))
                            .await
                            .map_err(|e| e.to_string())
                    }
                    None => shard
                        .send(Read(move |_: &Sharded, s: &dyn Store| {
                            outputs_page(s, page, |_| true)
                        }))
                        .await
                        .map_err(|e| e.to_string()),
                };
                let v = match read {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "an outputs stream could not read; it ends");
                        return None;
                    }
                    Err(_) => return None,
                };
                let next = v["next"].as_u64().unwrap_or(f.from);
                let moved = next != f.from;
                f.from = next;
                let items = v["items"].as_array().map(Vec::as_slice).unwrap_or_default();
                if !items.is_empty() {
                    let mut chunk = String::new();
                    for item in items {
                        let seq = item["seq"].as_u64().unwrap_or_default();
                        chunk.push_str(&format!("id: {seq}\nevent: output\ndata: {item}\n\n"));
                    }
                    let frame = web::Bytes::from(chunk);
                    let now = tokio::time::Instant::now();
                    return Some((
                        Ok::<_, actix_web::Error>(frame),
                        ((shard, rows), stopping, durable, f, now),
                    ));
                }
                if moved {
                    // a filter that kept nothing of a long stretch: read on
                    continue;
                }
                // Some(true): a commit; Some(false): quiet for a while; None: the end
                // 15 s after the last frame, whatever woke the stream in between (commits
                // with nothing for this filter): a proxy's idle timeout, a client gone
                let quiet = sent + Duration::from_secs(15);
                let woke = tokio::select! {
                    changed = durable.changed() => changed.is_ok().then_some(true),
                    _ = tokio::time::sleep_until(quiet) => Some(false),
                    _ = stopping.wait_for(|s| *s) => None,
                };
                match woke {
                    Some(true) => {}
                    Some(false) => {
                        let frame = web::Bytes::from(position(": keep-alive, next", f.from));
                        let now = tokio::time::Instant::now();
                        return Some((Ok(frame), ((shard, rows), stopping, durable, f, now)));
                    }
                    None => return None,
                }
            }
        },
    );
    use futures_util::StreamExt as _;
    let stream =
        futures_util::stream::once(async move { Ok::<_, actix_web::Error>(first) }).chain(follow);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream)
}

/// An output stream's comment and where its reading has come to, `from`, as the id of an
/// event without data (a client takes it as its last event id, and resumes there when it
/// reconnects): the seq before `from`, -1 before the first output.
fn position(comment: &str, from: u64) -> String {
    let last = from.checked_sub(1).map_or(-1, i128::from);
    format!("{comment} seq {from}\nid: {last}\n\n")
}

/// The outputs from `q.from` that `q` selects and `keep` keeps (which may add to them).
/// Where [`outputs_page`] reads outputs: the store on the shard's thread, or a reader of
/// their own on another.
trait Rows {
    fn rows(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn end(&self) -> Result<u64, StoreError>;
}

impl Rows for dyn Store + '_ {
    fn rows(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.outputs(from, limit)
    }
    fn end(&self) -> Result<u64, StoreError> {
        self.next_output()
    }
}

impl Rows for dyn crate::store::OutputRows + '_ {
    fn rows(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.outputs(from, limit)
    }
    fn end(&self) -> Result<u64, StoreError> {
        self.next_output()
    }
}

fn outputs_page<S: Rows + ?Sized>(
    s: &S,
    q: OutputFilter,
    mut keep: impl FnMut(&mut Value) -> bool,
) -> Result<Value, StoreError> {
    let OutputFilter {
        mut from,
        limit,
        output,
        fields,
        pending: _,
    } = q;
    if limit == 0 {
        // nothing asked for: the end, where a follower that starts now begins
        return Ok(json!({"next": s.end()?, "items": []}));
    }
    // every value asked for is in a kept row as a JSON string: a row without one of them is
    // passed over before it is parsed (most rows, for a channel following one SKU). Only
    // values JSON writes as they are (no quote, backslash or control character) are looked
    // for so; the parsed row decides the rest.
    let needles: Vec<memchr::memmem::Finder<'static>> = output
        .iter()
        .chain(fields.iter().map(|(_, want)| want))
        .filter(|w| !w.chars().any(|c| c == '"' || c == '\\' || c.is_control()))
        .map(|w| memchr::memmem::Finder::new(format!("\"{w}\"").as_bytes()).into_owned())
        .collect();
    let mut found = Vec::new();
    // scan at most this many rows per request, so a rare filter cannot stall the shard
    let mut budget = 50_000usize;
    while found.len() < limit && budget > 0 {
        let rows = s.rows(from, 1000)?;
        if rows.is_empty() {
            break;
        }
        budget = budget.saturating_sub(rows.len());
        for (seq, row) in rows {
            from = seq + 1;
            if !needles.iter().all(|n| n.find(&row).is_some()) {
                continue;
            }
            let Ok(mut v) = serde_json::from_slice::<Value>(&row) else {
                continue;
            };
            let kind_ok = output
                .as_deref()
                .is_none_or(|k| v.get("output").and_then(Value::as_str) == Some(k));
            let fields_ok = fields
                .iter()
                .all(|(names, want)| names.iter().any(|f| field_is(&v, f, want)));
            if kind_ok && fields_ok && keep(&mut v) {
                found.push(json!({"seq": seq, "output": v}));
                if found.len() >= limit {
                    break;
                }
            }
        }
    }
    if found.is_empty() {
        // a cursor past the end (a client's guess, a store restored from an older backup)
        // comes back as the end: following `next` from there misses nothing written later
        from = from.min(s.end()?);
    }
    Ok(json!({"next": from, "items": found}))
}

/// Whether the output `v` holds `want` in its field `f`: a name, a JSON pointer (`/scan/sku`),
/// or a pointer through every element of an array (`/reasons/*/reason`: any of them).
fn field_is(v: &Value, f: &str, want: &str) -> bool {
    if let Some((list, each)) = f.split_once("/*") {
        return v.pointer(list).and_then(Value::as_array).is_some_and(|a| {
            a.iter()
                .any(|e| e.pointer(each).and_then(Value::as_str) == Some(want))
        });
    }
    let at = if f.starts_with('/') {
        v.pointer(f)
    } else {
        v.get(f)
    };
    at.and_then(Value::as_str) == Some(want)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    /// `allow` or `block`.
    decision: String,
    /// Who resolves it (recorded on the resolution).
    #[serde(default)]
    reviewer: Option<String>,
    /// Why (recorded on the resolution).
    #[serde(default)]
    note: Option<String>,
}

/// The longest reviewer name and note a resolution records, in characters.
const MAX_REVIEWER: usize = 64;
const MAX_NOTE: usize = 1000;

impl ReviewBody {
    /// The decision (`true`: allow) and who asked, or why the body is refused.
    fn read(
        body: &[u8],
        token: Option<&str>,
    ) -> Result<(bool, omnistream_actors::output::Resolver), String> {
        const FORM: &str =
            r#"expected {"decision": "allow"|"block", "reviewer"?: "name", "note"?: "why"}"#;
        let b: ReviewBody = serde_json::from_slice(body).map_err(|e| format!("{e}; {FORM}"))?;
        let allow = match b.decision.as_str() {
            "allow" => true,
            "block" => false,
            d => return Err(format!("decision: `{d}` is neither `allow` nor `block`")),
        };
        Ok((allow, resolver(b.reviewer, b.note, token)?))
    }
}

/// A text field of a person's request, trimmed: none, or why it is refused (empty, longer
/// than `max` characters, a control character; new lines and tabs only where `lines`).
fn checked_text(
    key: &str,
    v: Option<String>,
    max: usize,
    lines: bool,
) -> Result<Option<String>, String> {
    match v {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(format!("{key}: empty; leave it out instead")),
        Some(v) if v.chars().count() > max => Err(format!("{key}: longer than {max} characters")),
        Some(v)
            if v.chars()
                .any(|c| c.is_control() && !(lines && matches!(c, '\n' | '\r' | '\t'))) =>
        {
            Err(format!("{key}: holds a control character"))
        }
        Some(v) => Ok(Some(v.trim().to_string())),
    }
}

/// Who asked for a person's command, as the service records it: the `reviewer` and `note`
/// the request gave, the access token's name, and the service's clock now.
fn resolver(
    reviewer: Option<String>,
    note: Option<String>,
    token: Option<&str>,
) -> Result<omnistream_actors::output::Resolver, String> {
    Ok(omnistream_actors::output::Resolver {
        reviewer: checked_text("reviewer", reviewer, MAX_REVIEWER, false)?.map(Into::into),
        token: token.map(Into::into),
        note: checked_text("note", note, MAX_NOTE, true)?,
        at: crate::shard::wall_clock_text(),
    })
}

/// The largest adjustment one request makes, in points either way.
const MAX_ADJUST: i64 = 10_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    /// Points added (> 0) or taken (< 0).
    points: i64,
    /// The case it is recorded under.
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

impl AdjustBody {
    /// The points, the reference and who asked, or why the body is refused.
    fn read(
        body: &[u8],
        token: Option<&str>,
    ) -> Result<(i64, String, omnistream_actors::output::Resolver), String> {
        const FORM: &str = r#"expected {"points": n (not 0), "ref": "case id", "reviewer"?: "name", "note"?: "why"}"#;
        let b: AdjustBody = serde_json::from_slice(body).map_err(|e| format!("{e}; {FORM}"))?;
        if b.points == 0 || b.points.unsigned_abs() > MAX_ADJUST.unsigned_abs() {
            return Err(format!(
                "points: {} is not a change of 1 to {MAX_ADJUST} points either way",
                b.points
            ));
        }
        if b.reference.trim().is_empty() {
            return Err(
                "ref: empty; give the case or ticket the adjustment is recorded under".into(),
            );
        }
        let reference = checked_text("ref", Some(b.reference), 64, false)?.unwrap_or_default();
        Ok((b.points, reference, resolver(b.reviewer, b.note, token)?))
    }
}

/// A person's request to change a member: its body as `read` takes it (with the caller's
/// token, for who asked), or the answer refusing it (a body type not taken, or 400 with why).
fn persons_request<A>(
    req: &actix_web::HttpRequest,
    read: impl FnOnce(Option<&str>) -> Result<A, String>,
) -> Result<A, Box<HttpResponse>> {
    if let Some(r) = unsupported_type(req) {
        return Err(Box::new(r));
    }
    let token = req.extensions().get::<Caller>().map(|c| c.0.clone());
    read(token.as_deref()).map_err(|why| Box::new(error(StatusCode::BAD_REQUEST, "bad_body", why)))
}

/// Sends the shard the message `make` builds around a reply channel and waits for the reply
/// (given once what it did is durable), or answers 503 when the shard is gone.
async fn ask_shard<R, M>(
    st: &AppState,
    make: impl FnOnce(tokio::sync::oneshot::Sender<R>) -> M,
) -> Result<R, HttpResponse>
where
    M: actix::Message<Result = ()> + Send + 'static,
    Shard: actix::Handler<M>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    if st.shard.send(make(tx)).await.is_err() {
        return Err(shard_stopped());
    }
    rx.await.map_err(|_| shard_stopped())
}

/// A person adjusts a member's points: customer service's goodwill (> 0) or a claw-back
/// (< 0; what the balance cannot cover is owed from later points, never a negative balance),
/// recorded under a reference (one adjustment a member and reference: the same again is a
/// retry, another amount a 409), logged like an event so a replay repeats it.
async fn post_adjustment(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (points, reference, by) = match persons_request(&req, |t| AdjustBody::read(&body, t)) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let asked = id.into_inner();
    let answer = ask_shard(&st, |reply| crate::shard::Adjust {
        member: asked.clone(),
        points,
        reference: reference.clone(),
        by,
        reply,
    });
    use crate::shard::Adjusted;
    match answer.await {
        Err(stopped) => stopped,
        Ok(Ok(Adjusted::NoMember)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {}", member_miss(&st.pii, &asked)),
        ),
        Ok(Ok(Adjusted::Before { member, points: p })) if p == points => HttpResponse::Ok()
            .json(json!({"member": member, "ref": reference, "status": "duplicate", "points": p})),
        Ok(Ok(Adjusted::Before { member, points: p })) => error(
            StatusCode::CONFLICT,
            "ref_conflict",
            format!(
                "member {member} was adjusted by {p} points under `{reference}` already; a \
                 reference is one adjustment (give another for another)"
            ),
        ),
        Ok(Ok(Adjusted::Done { member, outputs })) => {
            let ledger: Vec<Value> = outputs
                .iter()
                .filter(|e| matches!(e.output, omnistream_actors::Output::Ledger { .. }))
                .filter_map(|e| serde_json::to_value(&e.output).ok())
                .collect();
            // what the member does not see as a change of balance: a claw-back past the
            // balance owed, or a goodwill paying a debt
            let mut warnings = Vec::new();
            for e in &outputs {
                if let omnistream_actors::Output::Ledger {
                    delta,
                    debt_delta,
                    reason,
                    ..
                } = &e.output
                {
                    if reason != "adjusted" {
                        continue;
                    }
                    if *debt_delta > 0 {
                        warnings.push(format!(
                            "owed: {debt_delta} of the {} points taken were more than the \
                             balance; the member owes them, and the next points earned (a \
                             goodwill too) pay them first",
                            -points
                        ));
                    } else if *debt_delta < 0 {
                        warnings.push(format!(
                            "debt: {} of the {points} points paid what the member owed; the \
                             balance rose by {delta}",
                            -debt_delta
                        ));
                    }
                }
            }
            let mut v = json!({
                "member": member, "ref": reference, "status": "accepted",
                "adjustment": outputs.iter()
                    .find(|e| matches!(e.output, omnistream_actors::Output::PointsAdjusted { .. }))
                    .and_then(|e| serde_json::to_value(&e.output).ok()),
                "ledger": ledger,
            });
            if !warnings.is_empty() {
                v["warnings"] = json!(warnings);
            }
            HttpResponse::Ok().json(v)
        }
        Ok(Err(e)) => store_unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneBody {
    /// The new phone, as the member gave it.
    phone: String,
    /// The case it is recorded under.
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

impl PhoneBody {
    /// The new phone as stored (hashed), the reference and who asked, or why the body is
    /// refused.
    fn read(
        body: &[u8],
        pii: &Pii,
        token: Option<&str>,
    ) -> Result<(String, String, omnistream_actors::output::Resolver), String> {
        const FORM: &str = r#"expected {"phone": "13800138000", "ref": "case id", "reviewer"?: "name", "note"?: "why"}"#;
        let b: PhoneBody = serde_json::from_slice(body).map_err(|e| format!("{e}; {FORM}"))?;
        let phone = pii
            .protect(&IdKind::Phone, &b.phone)
            .map_err(|e| format!("phone: {e}"))?;
        if b.reference.trim().is_empty() {
            return Err("ref: empty; give the case or ticket the change is recorded under".into());
        }
        let reference = checked_text("ref", Some(b.reference), 64, false)?.unwrap_or_default();
        Ok((
            phone.to_string(),
            reference,
            resolver(b.reviewer, b.note, token)?,
        ))
    }
}

/// A person replaces a member's phone (customer service, once the member proved the new
/// number; the old one is released), recorded under a reference and logged like an event so
/// a replay repeats it. A phone another member has is refused (409, naming that member):
/// the service never moves a phone from one person to another on its own.
async fn post_phone(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let read = persons_request(&req, |t| PhoneBody::read(&body, &st.pii, t));
    let (phone, reference, by) = match read {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let asked = id.into_inner();
    // a number a digit short (or five digits long) is taken as sent: said, not refused
    let warning = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v["phone"]
            .as_str()
            .and_then(|p| omnistream_schemas::unlikely_phone("phone", p))
    });
    let answer = ask_shard(&st, |reply| crate::shard::ReplacePhone {
        member: asked.clone(),
        phone,
        reference: reference.clone(),
        by,
        reply,
    });
    use crate::shard::PhoneReplaced as R;
    match answer.await {
        Err(stopped) => stopped,
        Ok(Ok(R::NoMember)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {}", member_miss(&st.pii, &asked)),
        ),
        Ok(Ok(R::Unchanged { member })) => HttpResponse::Ok()
            .json(json!({"member": member, "ref": reference, "status": "unchanged"})),
        Ok(Ok(R::RefConflict { member })) => error(
            StatusCode::CONFLICT,
            "ref_conflict",
            format!(
                "member {member}'s phone was replaced under `{reference}` already, with another \
                 number; a reference is one replacement (give another for another)"
            ),
        ),
        Ok(Ok(R::Done { member, outputs })) => {
            let replaced = outputs
                .iter()
                .find(|e| matches!(e.output, omnistream_actors::Output::PhoneReplaced { .. }));
            if let Some(e) = replaced {
                let mut v = json!({
                    "member": member, "ref": reference, "status": "replaced",
                    "phone_replaced": serde_json::to_value(&e.output).unwrap_or_default(),
                });
                if let Some(w) = warning {
                    v["warnings"] = json!([w]);
                }
                return HttpResponse::Ok().json(v);
            }
            let refused = outputs.iter().find_map(|e| match &e.output {
                omnistream_actors::Output::MergeConflict { other, reason, .. } => {
                    Some((other.clone(), reason.clone()))
                }
                _ => None,
            });
            match refused {
                Some((other, reason)) if other != "phone" => error(
                    StatusCode::CONFLICT,
                    "phone_taken",
                    format!(
                        "{reason}: {other} (GET /v1/members/{other}); a phone is one person's: \
                         if the number passed to this member, replace {other}'s phone first"
                    ),
                ),
                Some((_, reason)) => error(
                    StatusCode::CONFLICT,
                    "phone_refused",
                    format!("{reason}: the member holds `member.max-identities` already"),
                ),
                None => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no_outcome",
                    "the replacement produced no answer",
                ),
            }
        }
        Ok(Err(e)) => store_unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    /// The other member's id.
    with: String,
    /// Whose phone the person keeps when the two have different ones.
    #[serde(default)]
    keep_phone_of: Option<String>,
    /// The case it is recorded under.
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// What a merge request asks: the other member, whose phone stays, the reference and who.
type MergeAsked = (
    String,
    Option<String>,
    String,
    omnistream_actors::output::Resolver,
);

impl MergeBody {
    /// The request's parts, or why the body is refused.
    fn read(body: &[u8], token: Option<&str>) -> Result<MergeAsked, String> {
        const FORM: &str = r#"expected {"with": "member id", "keep_phone_of"?: "member id", "ref": "case id", "reviewer"?: "name", "note"?: "why"}"#;
        let b: MergeBody = serde_json::from_slice(body).map_err(|e| format!("{e}; {FORM}"))?;
        if b.with.trim().is_empty() {
            return Err("with: empty; give the id of the member to merge with".into());
        }
        if b.reference.trim().is_empty() {
            return Err("ref: empty; give the case or ticket the merge is recorded under".into());
        }
        let reference = checked_text("ref", Some(b.reference), 64, false)?.unwrap_or_default();
        let by = resolver(b.reviewer, b.note, token)?;
        // member ids are short: a long value is no member's, and is not echoed back
        let with = checked_text("with", Some(b.with), 64, false)?.unwrap_or_default();
        let keep = checked_text("keep_phone_of", b.keep_phone_of, 64, false)?;
        Ok((with, keep, reference, by))
    }
}

/// A person merges two members (customer service, once it knows they are one person: the
/// service refuses on its own to merge two members with different phones). With two
/// phones the request says whose stays (`keep_phone_of`); the other is released. Recorded
/// under a reference and logged like an event so a replay repeats it.
async fn post_merge(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let read = persons_request(&req, |t| MergeBody::read(&body, t));
    let (with, keep_phone_of, reference, by) = match read {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let asked = id.into_inner();
    if with == asked {
        let why = format!("with: `{with}` is the member merged ({{id}}); name the other member");
        return error(StatusCode::BAD_REQUEST, "bad_body", why);
    }
    let answer = ask_shard(&st, |reply| crate::shard::MergeMembers {
        member: asked.clone(),
        with: with.clone(),
        keep_phone_of,
        reference: reference.clone(),
        by,
        reply,
    });
    use crate::shard::MembersMerged as R;
    match answer.await {
        Err(stopped) => stopped,
        Ok(Ok(R::NoMember(which))) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {} ({which})", member_miss(&st.pii, &which)),
        ),
        Ok(Ok(R::Unchanged { member })) => HttpResponse::Ok().json(json!({
            "member": member, "ref": reference, "status": "unchanged",
            "detail": format!("{asked} and {with} are one member already: {member}"),
        })),
        Ok(Ok(R::PhonesDiffer {
            member,
            with: other,
        })) => error(
            StatusCode::CONFLICT,
            "phones_differ",
            format!(
                "members {member} and {other} have different phones; say whose the person \
                 keeps in `keep_phone_of` (`{asked}` or `{with}`): the other phone is released \
                 (bound to nobody)"
            ),
        ),
        Ok(Ok(R::Merging(busy))) => error(
            StatusCode::CONFLICT,
            "merging",
            format!(
                "member {busy} is in a merge that never finished (its cascade was cut at the \
                 engine's bound, counted as `runaway` in /v1/stats): a person cannot merge it"
            ),
        ),
        Ok(Ok(R::KeepNeither)) => error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!(
                "keep_phone_of: neither `{asked}` nor `{with}` (nor a member either was merged \
                 into): name the one whose phone stays"
            ),
        ),
        Ok(Ok(R::RefConflict { member })) => error(
            StatusCode::CONFLICT,
            "ref_conflict",
            format!(
                "member {member} was merged with another member under `{reference}` already; \
                 a reference is one merge of a member (give another for another)"
            ),
        ),
        Ok(Ok(R::Done {
            member,
            alias,
            outputs,
        })) => {
            let find = |f: fn(&omnistream_actors::Output) -> bool| {
                (outputs.iter().find(|e| f(&e.output)))
                    .and_then(|e| serde_json::to_value(&e.output).ok())
            };
            use omnistream_actors::Output as O;
            let merged = find(|o| matches!(o, O::Merged { .. }));
            let approved = find(|o| matches!(o, O::MergeApproved { .. }));
            if merged.is_none() {
                // approved and logged, but its cascade was cut at the engine's bound (a
                // guard against a logic loop): the two are not one, and it is said
                return HttpResponse::InternalServerError().json(json!({
                    "error": "merge_unfinished", "member": member, "alias": alias,
                    "ref": reference, "merge_approved": approved, "merged": null,
                    "detail": "the merge was approved and logged, but its cascade was cut at \
                               the engine's bound (`runaway` in /v1/stats): the two are not \
                               merged; report it",
                }));
            }
            let ledger: Vec<Value> = outputs
                .iter()
                .filter(|e| matches!(e.output, O::Ledger { .. }))
                .filter_map(|e| serde_json::to_value(&e.output).ok())
                .collect();
            HttpResponse::Ok().json(json!({
                "member": member, "alias": alias, "ref": reference, "status": "merged",
                "merge_approved": approved,
                "merged": merged,
                "ledger": ledger,
            }))
        }
        Ok(Err(e)) => store_unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    /// `member`, `device`, `ip` or `net`.
    on: String,
    /// The member id, device, address or prefix.
    value: String,
    /// The campaign (absent: every campaign).
    #[serde(default)]
    campaign: Option<String>,
    /// When it ends, RFC 3339 event time (absent: when lifted); a lift takes none.
    #[serde(default)]
    until: Option<String>,
    /// The case it is recorded under.
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// What a block request asks: on what, its command, and who.
type BlockAsked = (
    omnistream_actors::fraud::block::BlockOn,
    String,
    omnistream_actors::fraud::block::BlockCmd,
    omnistream_actors::output::Resolver,
);

impl BlockBody {
    /// The request's parts (`lift`: a lift), or why the body is refused.
    fn read(body: &[u8], token: Option<&str>, lift: bool) -> Result<BlockAsked, String> {
        use omnistream_actors::fraud::block::{BlockCmd, BlockOn};
        const FORM: &str = r#"expected {"on": "member" | "device" | "ip" | "net", "value": "what is blocked", "campaign"?: "campaign id", "until"?: "RFC 3339 time (not for a lift)", "ref": "case id", "reviewer"?: "name", "note"?: "why"}"#;
        let b: BlockBody = serde_json::from_slice(body).map_err(|e| format!("{e}; {FORM}"))?;
        let on = BlockOn::parse(&b.on).ok_or_else(|| {
            format!(
                "on: `{}` is none of member, device, ip, net",
                b.on.chars().take(32).collect::<String>()
            )
        })?;
        if b.reference.trim().is_empty() {
            return Err("ref: empty; give the case or ticket the block is recorded under".into());
        }
        let reference = checked_text("ref", Some(b.reference), 64, false)?.unwrap_or_default();
        let value = block_value(on, b.value)?;
        let campaign = checked_text("campaign", b.campaign, 128, false)?.map(Into::into);
        let until = match b.until {
            Some(_) if lift => {
                return Err("until: a lift takes none (it lifts the block now)".into())
            }
            Some(u) => Some(omnistream_schemas::EventTime::parse(&u).map_err(|e| {
                format!(
                    "until: {e}; give an RFC 3339 time with its offset, 2026-12-31T23:59:59+08:00"
                )
            })?),
            None => None,
        };
        let by = resolver(b.reviewer, b.note, token)?;
        let reference = reference.into();
        let cmd = if lift {
            BlockCmd::Lift {
                campaign,
                reference,
            }
        } else {
            BlockCmd::Set {
                campaign,
                until,
                reference,
            }
        };
        Ok((on, value, cmd, by))
    }
}

/// What is blocked, in the form scans carry it: an address as the service writes it
/// (`2408:8207::1`), a prefix as `a.b.c.0/24` or the /64 of an IPv6 address (any address
/// within it, or the address alone, gives the prefix); a member id or a device as given.
fn block_value(
    on: omnistream_actors::fraud::block::BlockOn,
    value: String,
) -> Result<String, String> {
    use omnistream_actors::fraud::block::BlockOn;
    let max = match on {
        BlockOn::Member => 64,
        _ => omnistream_schemas::decode::MAX_STR,
    };
    if value.trim().is_empty() {
        return Err(format!("value: empty; give the {} to block", on.as_str()));
    }
    let value = checked_text("value", Some(value), max, false)?.unwrap_or_default();
    // as scans are read: an IPv4 address written as IPv6 is the IPv4 address
    let addr = |s: &str| {
        (s.parse::<std::net::IpAddr>())
            .map(|a| a.to_canonical())
            .map_err(|_| format!("value: `{s}` is not an IP address"))
    };
    match on {
        BlockOn::Member | BlockOn::Device => Ok(value),
        BlockOn::Ip if value.contains('/') => Err(format!(
            "value: `{value}` is a prefix; block it with \"on\": \"net\" (an IPv4 /24 or an \
             IPv6 /64)"
        )),
        BlockOn::Ip => Ok(addr(&value)?.to_string()),
        BlockOn::Net => {
            let (a, len) = match value.split_once('/') {
                Some((a, len)) => (addr(a)?, Some(len)),
                None => (addr(&value)?, None),
            };
            let want = if a.is_ipv4() { "24" } else { "64" };
            if len.is_some_and(|l| l != want) {
                return Err(format!(
                    "value: a prefix is an IPv4 /24 or an IPv6 /64 (scans are counted so), not \
                     `{value}`"
                ));
            }
            Ok(omnistream_actors::fraud::net_prefix(&a).to_string())
        }
    }
}

/// The blocks in force on a member (by id: its survivor's), a device, an address or a prefix
/// (given as `POST /v1/blocks` takes it), at the service's event time now. A member never
/// seen is a 404; anything else never blocked has none.
async fn get_blocks(st: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    use omnistream_actors::fraud::block::BlockOn;
    let (on, value) = path.into_inner();
    let Some(on) = BlockOn::parse(&on) else {
        let why = format!(
            "`{}` is none of member, device, ip, net",
            on.chars().take(32).collect::<String>()
        );
        return error(StatusCode::BAD_REQUEST, "bad_path", why);
    };
    let value = match block_value(on, value) {
        Ok(v) => v,
        Err(why) => return error(StatusCode::BAD_REQUEST, "bad_path", why),
    };
    // only a member can be missing: a device never seen has no blocks
    read(&st, "member", move |e| blocks_view(e, on, &value)).await
}

/// The blocks in force on `value` (of kind `on`) at the service's event time now; an
/// address's with its prefix's (`net`), which its scans meet too. None: no such member.
pub(crate) fn blocks_view(
    e: &Sharded,
    on: omnistream_actors::fraud::block::BlockOn,
    value: &str,
) -> Result<Option<Value>, ReadError> {
    use omnistream_actors::fraud::block::BlockOn;
    let now = e.watermark();
    let in_force = |on, value: &str| {
        let (value, blocks) = e.blocks(on, value)?;
        let blocks: Vec<_> = blocks.into_iter().filter(|b| b.in_force(now)).collect();
        Some(json!({ "on": on.as_str(), "value": value, "blocks": blocks }))
    };
    let Some(mut v) = in_force(on, value) else {
        return Ok(None);
    };
    // an address's scans also meet its prefix's blocks
    if let (BlockOn::Ip, Ok(a)) = (on, value.parse::<std::net::IpAddr>()) {
        let net = omnistream_actors::fraud::net_prefix(&a);
        v["net"] = in_force(BlockOn::Net, &net).unwrap_or_default();
    }
    Ok(Some(v))
}

/// `GET /v1/blocks`' query.
#[derive(Deserialize, Default)]
struct BlocksQuery {
    on: Option<String>,
    campaign: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// Every block in force now, by what it is on (`on=` one kind) and holding in a campaign
/// (`campaign=`: its own blocks and those for every campaign), each with who set it and why:
/// a risk team's list of what is blocked.
async fn list_blocks(st: web::Data<AppState>, q: web::Query<BlocksQuery>) -> HttpResponse {
    use omnistream_actors::fraud::block::BlockOn;
    if let Some(r) = not_ready(&st) {
        return r;
    }
    let q = q.into_inner();
    let on = match q.on.as_deref().map(|o| (o, BlockOn::parse(o))) {
        None => None,
        Some((_, Some(on))) => Some(on),
        Some((o, None)) => {
            let why = format!(
                "on: `{}` is none of member, device, ip, net",
                o.chars().take(32).collect::<String>()
            );
            return error(StatusCode::BAD_REQUEST, "bad_query", why);
        }
    };
    let limit = match limit_param(q.limit.as_deref()) {
        Ok(l) => l,
        Err(why) => return bad_query(why),
    };
    let answer = ask_shard(&st, |reply| crate::shard::ListBlocks {
        on,
        campaign: q.campaign,
        after: q.after,
        limit,
        reply,
    });
    match answer.await {
        Err(stopped) => stopped,
        Ok(Ok(page)) => HttpResponse::Ok()
            .json(json!({"total": page.total, "items": page.items, "next": page.next})),
        Ok(Err(e)) => store_unavailable(e),
    }
}

/// [`get_blocks`] of a prefix written with its slash unencoded (`/v1/blocks/net/1.2.3.0/24`).
async fn get_blocks_prefix(
    st: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (on, addr, len) = path.into_inner();
    get_blocks(st, web::Path::from((on, format!("{addr}/{len}")))).await
}

/// A block request's answer: `v` (on, value, status) with what it said (`block_set` or
/// `block_lifted`), the blocks in force after it, and a warning when there is one.
fn blocks_answer(
    mut v: Value,
    said: Option<(&str, Option<Value>)>,
    blocks: &[omnistream_actors::fraud::block::Block],
    warning: Option<String>,
) -> HttpResponse {
    if let Some((kind, said)) = said {
        v[kind] = said.unwrap_or_default();
    }
    v["blocks"] = json!(blocks);
    if let Some(w) = warning {
        v["warning"] = json!(w);
    }
    HttpResponse::Ok().json(v)
}

/// A person blocks a member, a device, an IP address or a network prefix: its scans in the
/// campaign (or in every campaign) are blocked, reason `blocked`, until `until` or until
/// lifted. Recorded under a reference and logged like an event so a replay repeats it.
async fn post_block(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    set_block(st, req, body, false).await
}

/// A person lifts a block (the one for the campaign named, or the one for every campaign).
async fn post_block_lift(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    set_block(st, req, body, true).await
}

async fn set_block(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
    lift: bool,
) -> HttpResponse {
    let (on, value, block, by) = match persons_request(&req, |t| BlockBody::read(&body, t, lift)) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let asked = value.clone();
    let answer = ask_shard(&st, |reply| crate::shard::SetBlock {
        on,
        value,
        block,
        by,
        reply,
    });
    use crate::shard::BlockSet as R;
    match answer.await {
        Err(stopped) => stopped,
        Ok(Ok(R::NoMember)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {}", member_miss(&st.pii, &asked)),
        ),
        Ok(Ok(R::Merging { member })) => error(
            StatusCode::CONFLICT,
            "merging",
            format!(
                "member {member} is in a merge that never finished (its cascade was cut at the \
                 engine's bound, counted as `runaway` in /v1/stats): a person cannot block it"
            ),
        ),
        Ok(Ok(R::Ended { now })) => error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!(
                "until: not after the service's event time now ({now}): the block would block \
                 nothing"
            ),
        ),
        Ok(Ok(R::Unchanged {
            value,
            change,
            blocks,
            warning,
        })) => {
            let v = json!({"on": on.as_str(), "value": value, "status": change.as_str()});
            blocks_answer(v, None, &blocks, warning)
        }
        Ok(Ok(R::Done {
            value,
            change,
            outputs,
            blocks,
            warning,
        })) => {
            // the member's own outputs of the moment (points expiring, a tag) may come first
            use omnistream_actors::Output as O;
            let said = (outputs.iter())
                .find(|e| matches!(e.output, O::BlockSet { .. } | O::BlockLifted { .. }))
                .and_then(|e| serde_json::to_value(&e.output).ok());
            let kind = if lift { "block_lifted" } else { "block_set" };
            let v = json!({"on": on.as_str(), "value": value, "status": change.as_str()});
            blocks_answer(v, Some((kind, said)), &blocks, warning)
        }
        Ok(Err(e)) => store_unavailable(e),
    }
}

/// The answer to a resolution of a scan that holds no review, by what it was decided: a
/// block or an allowed scan is not a review (409, saying which and why), a review that held
/// nothing has nothing to resolve (404).
fn not_under_review(decision: Value) -> HttpResponse {
    let reasons: Vec<&str> = decision["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    let score = &decision["score"];
    match decision["decision"].as_str().unwrap_or("") {
        "block" if decision["no_reward"] == "unknown_member" => error(
            StatusCode::CONFLICT,
            "unknown_member",
            format!(
                "this scan named member_id {}, which this service never issued: nobody to \
                 pay, nothing to overturn; the channel sends the scan again (a new id) with \
                 the member's right id",
                decision["member"]
            ),
        ),
        "review" => error(
            StatusCode::NOT_FOUND,
            "no_review",
            format!(
                "this scan was sent to review but holds no points ({}): nothing to resolve",
                decision["no_reward"].as_str().unwrap_or("none held")
            ),
        ),
        "block" => error(
            StatusCode::CONFLICT,
            "not_under_review",
            format!(
                "this scan was blocked (score {score}: {}) already; `allow` overturns the \
                 block (its reward is granted and paid, within the campaign's budget and the \
                 daily cap)",
                reasons.join(", ")
            ),
        ),
        d => error(
            StatusCode::CONFLICT,
            "not_under_review",
            format!("this scan was decided `{d}` (score {score}), not sent to review: nothing to resolve"),
        ),
    }
}

/// The configured name of the token a request was let in with (access control on).
#[derive(Debug, Clone)]
struct Caller(String);

/// Resolves a scan under review: `{"decision": "allow"}` pays the held reward.
async fn post_review(
    st: web::Data<AppState>,
    req: actix_web::HttpRequest,
    event: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Ok(event) = uuid::Uuid::parse_str(&event) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_uuid",
            "the path must be the scan's event id",
        );
    };
    let token = req.extensions().get::<Caller>().map(|c| c.0.clone());
    let (allow, by) = match ReviewBody::read(&body, token.as_deref()) {
        Ok(read) => read,
        Err(why) => return error(StatusCode::BAD_REQUEST, "bad_body", why),
    };
    let answer = ask_shard(&st, |reply| crate::shard::Review {
        event,
        allow,
        by,
        reply,
    });
    match answer.await {
        Err(stopped) => stopped,
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no_review",
            "no review of this scan is pending: no scan with this id was decided among the \
             last 50,000 the service remembers",
        ),
        Ok(Some(Ok(mut o))) => match o.pop() {
            // the same shape as a retry's answer, with every output the resolution made
            Some(Outcome::Accepted { outputs, .. }) => HttpResponse::Ok().json(json!({
                "event": event, "status": "accepted",
                "resolution": first_of(&outputs, "review_resolved"), "outputs": outputs})),
            // resolved before: the same decision again is a retry, answered with the
            // resolution; the other decision is refused (a resolution is final)
            Some(Outcome::Duplicate { answered, .. }) => {
                let Some(resolution) = first_of(&answered, "review_resolved") else {
                    return not_under_review(first_of(&answered, "decision").unwrap_or_default());
                };
                if resolution["allow"].as_bool() == Some(allow) {
                    HttpResponse::Ok().json(
                        json!({"event": event, "status": "duplicate", "resolution": resolution}),
                    )
                } else if resolution["refused"] == true {
                    error(
                        StatusCode::CONFLICT,
                        "already_resolved",
                        "this scan's review was refused by the service: its member held more \
                         than `max-held-reviews` and this was the oldest; a resolution is final",
                    )
                } else {
                    let was = if allow { "block" } else { "allow" };
                    error(
                        StatusCode::CONFLICT,
                        "already_resolved",
                        format!("this scan's review was resolved `{was}` already; a resolution is final"),
                    )
                }
            }
            _ => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no_outcome",
                "the shard answered nothing",
            ),
        },
        Ok(Some(Err(e))) => store_unavailable(e),
    }
}

async fn get_stats(st: web::Data<AppState>) -> HttpResponse {
    // the inputs first: what they count as durable was applied before the shard's counters
    // are read next, so the answer never shows a file's lines durable and not applied
    let inputs = st.inputs.lock().map(|i| json!(*i)).unwrap_or_default();
    let shard = st.shard.send(GetStats).await.ok();
    let engine = st
        .shard
        .send(Read(|e: &Sharded, _: &dyn Store| {
            let mut v = serde_json::to_value(e.stats()).unwrap_or_default();
            v["shards"] = json!(e.shards());
            v["remembered_ids"] = json!(e.remembered_ids());
            // the earliest event time the id bound still answers for (0: it never forgot)
            v["remembered_from_us"] = json!(e.remembered_from_us());
            v
        }))
        .await
        .ok();
    HttpResponse::Ok().json(json!({
        "shard": shard, "engine": engine,
        "inflight_events": st.inflight.load(Ordering::SeqCst),
        "inputs": inputs,
        "latency_us": {
            "window": "the last 60 to 120 seconds",
            "ingest_to_decision": st.metrics.decision_window.percentiles(),
            "ingest_to_durable": st.metrics.durable_window.percentiles(),
        },
    }))
}

async fn metrics_text(st: web::Data<AppState>) -> HttpResponse {
    st.metrics
        .ready
        .set(i64::from(st.ready.load(Ordering::SeqCst)));
    // the events of HTTP requests taken and not yet answered (durable or refused), as
    // `/v1/stats` counts them: read at the scrape, never left stale by a request's last set
    st.metrics
        .inflight
        .set(i64::try_from(st.inflight.load(Ordering::SeqCst)).unwrap_or(i64::MAX));
    if st.metrics.enabled && st.ready.load(Ordering::SeqCst) {
        // the dealers' credit as the state holds it now, every dealer's (passivated ones,
        // and all after a restart from a checkpoint, are not resident); a shard too busy to
        // answer within a second, or a store that fails the read, leaves the gauges as the
        // last scrape set them
        let metrics = Arc::clone(&st.metrics);
        let read = crate::shard::Read(move |e: &Sharded, _: &dyn Store| {
            let mut totals = crate::metrics::DealerTotals::default();
            match e.each_dealer(&mut |_, d| totals.add(d)) {
                Ok(()) => metrics.dealer_totals(&totals),
                Err(why) => tracing::warn!(%why, "dealers' credit gauges not updated"),
            }
            // the configured campaigns' budgets, as /v1/campaigns/{id} shows them
            let rules = e.rules();
            metrics.campaign_budgets(rules.campaigns.iter().map(|(id, r)| {
                let spent = e.campaign(id).map_or(0, |c| c.view().spent);
                (id.as_str(), r.budget, spent)
            }));
        });
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), st.shard.send(read)).await;
        // the blocks in force, as GET /v1/blocks lists them
        let (tx, rx) = tokio::sync::oneshot::channel::<Vec<_>>();
        let counted = async {
            st.shard.send(crate::shard::CountBlocks(tx)).await.ok()?;
            rx.await.ok()
        };
        if let Ok(Some(counts)) =
            tokio::time::timeout(std::time::Duration::from_secs(1), counted).await
        {
            st.metrics.blocks_in_force(&counts);
        }
    }
    {
        // held while the counters are set: see Metrics::inputs
        let inputs = st
            .inputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.metrics.inputs(&inputs);
    }
    exposition(&st.metrics)
}

/// `/metrics` in the text exposition format, or 404 when metrics are off.
fn exposition(metrics: &Metrics) -> HttpResponse {
    if !metrics.enabled {
        return error(
            StatusCode::NOT_FOUND,
            "metrics_off",
            "metrics are turned off in the configuration (metrics = false)",
        );
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

async fn cluster_metrics(m: web::Data<Arc<Metrics>>) -> HttpResponse {
    exposition(&m)
}

async fn cluster_readyz(m: web::Data<Arc<Metrics>>) -> HttpResponse {
    readiness(
        m.ready.get() == 1,
        "the cluster process is starting or stopping",
    )
}

async fn cluster_no_route(req: actix_web::HttpRequest) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no route {} {}: a cluster process serves /healthz, /readyz and /metrics only \
             (its outputs are on the sink topics)",
            req.method(),
            req.path()
        ),
    )
}

/// The TLS server configuration of `[http]` (checked when the configuration was loaded),
/// `None` for plain HTTP; with it, a task on the current actix runtime reads the certificate
/// again when its files change (every `tls-reload-s`), the handshakes begun are counted, and
/// the counter of those completed comes with it, for the server's `on_connect`.
fn https(
    http: &crate::config::HttpConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<Option<(rustls::ServerConfig, prometheus::IntCounter)>> {
    let Some(tls) = http
        .tls_keys()
        .server_config()
        .map_err(|e| std::io::Error::other(format!("{}: {}", e.key, e.why)))?
    else {
        return Ok(None);
    };
    metrics.tls_expiry.set(tls.cert.not_after());
    let completed = metrics.tls_handshakes.with_label_values(&["completed"]);
    tls.handshakes.count_into(
        metrics.tls_handshakes.with_label_values(&["begun"]),
        metrics.tls_refused.clone(),
    );
    tracing::info!(
        file = %tls.cert.cert_file().display(),
        expires_unix_s = tls.cert.not_after(),
        client_certificates = if http.tls_ca_file.is_some() { "required" } else { "not asked for" },
        "https on"
    );
    if http.tls_reload_s > 0 {
        // both outcomes exported from the start: an alert on the first failure sees 0 → 1
        for outcome in ["reloaded", "failed"] {
            metrics.tls_reloads.with_label_values(&[outcome]);
        }
        let (cert, every) = (tls.cert, Duration::from_secs(http.tls_reload_s));
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match cert.reload() {
                    Ok(false) => {}
                    Ok(true) => {
                        metrics.tls_reloads.with_label_values(&["reloaded"]).inc();
                        metrics.tls_stale.set(0);
                        metrics.tls_expiry.set(cert.not_after());
                        tracing::info!(file = %cert.cert_file().display(), "https: the certificate's files changed; new connections get the new one");
                    }
                    Err(e) => {
                        metrics.tls_reloads.with_label_values(&["failed"]).inc();
                        metrics.tls_stale.set(1);
                        tracing::error!(key = %e.key, "https: the certificate's files changed but cannot be used ({}); the one in use is kept", e.why);
                    }
                }
            }
        });
    }
    Ok(Some((Arc::unwrap_or_clone(tls.config), completed)))
}

/// Serves `/healthz`, `/readyz` (ready while the process applies epochs) and `/metrics` of an
/// `omnistream cluster` process, behind the service's access guard (`[auth]`), on a thread
/// and actix system of its own that leaves the signals to the process. Returns a handle that
/// stops it.
pub fn serve_cluster(
    cfg: &Config,
    listener: TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let guard = Arc::new(Guard::new(&cfg.auth, cfg.max_body_bytes));
    let http = cfg.http.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let tls = match https(&http, metrics.clone()) {
                    Ok(tls) => tls,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(metrics.clone()))
                        .app_data(web::Data::new(guard.clone()))
                        .route("/healthz", web::get().to(healthz))
                        .route("/healthz", web::head().to(healthz))
                        .route("/readyz", web::get().to(cluster_readyz))
                        .route("/readyz", web::head().to(cluster_readyz))
                        .route("/metrics", web::get().to(cluster_metrics))
                        .default_service(web::to(cluster_no_route))
                        .wrap(actix_web::middleware::from_fn(access))
                })
                .workers(1)
                .tcp_nodelay(true)
                .disable_signals()
                .shutdown_timeout(2);
                let server = match tls {
                    // each connection served: a handshake completed
                    Some((c, completed)) => server
                        .on_connect(move |_, _| completed.inc())
                        .listen_rustls_0_23(listener, c),
                    None => server.listen(listener),
                };
                match server {
                    Ok(s) => {
                        let s = s.run();
                        let _ = tx.send(Ok(s.handle()));
                        let _ = s.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the HTTP thread ended before it served"))?
}

/// The board's view with the configured stores' name, region and kind on its stores.
fn board_named(mut v: Value, refs: &StoreRefs) -> Value {
    if let Some(rows) = v["stores_today"].as_array_mut() {
        for row in rows {
            let r = row["store"].as_str().and_then(|id| refs.get(id));
            with_ref(row, r);
        }
    }
    v
}

async fn board_json(st: web::Data<AppState>) -> HttpResponse {
    match st.shard.send(GetBoard).await {
        Ok(v) => HttpResponse::Ok().json(board_named(v, &st.cfg.stores)),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shard_unavailable",
            e.to_string(),
        ),
    }
}

/// Server-sent events: the board's view once a second.
async fn board_stream(st: web::Data<AppState>) -> HttpResponse {
    let shard = st.shard.clone();
    let stopping = st.stopping.clone();
    let cfg = st.cfg.clone();
    let stream = futures_util::stream::unfold(
        (shard, stopping, cfg, true),
        |(shard, mut stopping, cfg, first)| async move {
            if !first {
                // a frame a second, until the server stops (the browser reconnects later)
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopping.wait_for(|s| *s) => return None,
                }
            }
            if *stopping.borrow() {
                return None;
            }
            let v = board_named(shard.send(GetBoard).await.ok()?, &cfg.stores);
            let frame = web::Bytes::from(format!("data: {v}\n\n"));
            Some((
                Ok::<_, actix_web::Error>(frame),
                (shard, stopping, cfg, false),
            ))
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream)
}

async fn board_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("board.html"))
}

/// Every entity's state, sorted (large: for tests, audits and comparing two runs).
async fn snapshot(st: web::Data<AppState>) -> HttpResponse {
    if !st.ready.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store is not available",
        );
    }
    // straight to text: the state holds 128-bit ids that a JSON value tree cannot
    match st
        .shard
        .send(Read(|e: &Sharded, _: &dyn Store| {
            e.try_snapshot()
                .and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string()))
        }))
        .await
    {
        Ok(Ok(text)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(text),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "snapshot", e.to_string()),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shard_unavailable",
            e.to_string(),
        ),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(st: web::Data<AppState>) -> HttpResponse {
    if !st.shard.connected() {
        return readiness(false, "the shard stopped: the process exits for a restart");
    }
    readiness(
        st.ready.load(Ordering::SeqCst),
        "the store is not available",
    )
}

/// `/readyz`: 200 when ready, else 503 saying why not.
fn readiness(ready: bool, why_not: &str) -> HttpResponse {
    if ready {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            why_not.to_string(),
        )
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}

/// Any path or method no route takes.
async fn no_route(req: actix_web::HttpRequest) -> HttpResponse {
    let path = req.match_info().as_str();
    let mut allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|r| actix_web::dev::ResourceDef::new(r.path).is_match(path))
        .map(|r| r.method)
        .collect();
    if !allowed.is_empty() {
        allowed.sort_unstable();
        allowed.dedup();
        let allow = allowed.join(", ");
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not served on {}; it takes {allow}",
                req.method(),
                req.path()
            ),
        );
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow) {
            r.headers_mut().insert(actix_web::http::header::ALLOW, v);
        }
        r
    } else {
        error(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route {} {}", req.method(), req.path()),
        )
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A token carrying this scope.
    Scope(&'static str),
    /// `/metrics`: open when `auth.open-metrics`, else `read` or `admin`.
    Metrics,
    /// `/healthz`, `/readyz`: open when `auth.open-health`, else any valid token.
    Health,
    /// Any valid token, whatever its scopes (`/openapi.json`: a channel holding only an
    /// `ingest` token reads the API it sends to).
    AnyToken,
}

/// One route of the API and who may call it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The actix path pattern.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The query parameters it takes; any other is refused (400 `bad_query`), so a typo
    /// (`?campain=`) is not silently an unfiltered answer.
    pub query: &'static [&'static str],
}

/// Declares every route once: `ROUTES` (what the access guard and its test walk) and
/// `register` (what the App serves) come from the same list, so no route lacks a rule.
macro_rules! routes {
    ($($method:ident $path:literal $([$($q:ident),*])? => $handler:ident, $access:expr;)*) => {
        /// Every route of the API with its access rule.
        pub const ROUTES: &[Route] = &[$(Route {
            method: match stringify!($method).as_bytes() {
                b"get" => "GET",
                b"head" => "HEAD",
                _ => "POST",
            },
            path: $path,
            access: $access,
            query: &[$($(stringify!($q)),*)?],
        }),*];

        fn register(app: &mut web::ServiceConfig) {
            $(app.route($path, web::$method().to($handler));)*
        }
    };
}

const INGEST: Access = Access::Scope("ingest");
const READ: Access = Access::Scope("read");
const REVIEW: Access = Access::Scope("review");
const ADMIN: Access = Access::Scope("admin");
const POINTS: Access = Access::Scope("points");
const MEMBERS: Access = Access::Scope("members");

routes! {
    post "/v1/events" => post_events, INGEST;
    post "/v1/scan" => post_scan, INGEST;
    get "/v1/members" [tier, tag, channel, min_balance, after, limit] => get_members, READ;
    get "/v1/members/{id}" => get_member, READ;
    get "/v1/members/{id}/ledger" [from, limit] => get_ledger, READ;
    get "/v1/identities/{kind}/{value}" => get_identity, READ;
    get "/v1/skus/{sku}/stock" => get_stock, READ;
    get "/v1/locations/{id}/stock" => get_location_stock, READ;
    get "/v1/dealers" [held, over_limit, sort, limit] => get_dealers, READ;
    get "/v1/dealers/{id}/credit" => get_credit, READ;
    get "/v1/stores" [unvisited_days, region, day] => get_stores, READ;
    get "/v1/reps" => get_reps, READ;
    get "/v1/reps/{rep}" => get_rep, READ;
    get "/v1/stores/{id}/kpis" [day] => get_kpis, READ;
    get "/v1/orders/{channel}/{order}" => get_order, READ;
    get "/v1/outputs" [from, limit, output, campaign, sku, location, member, dealer, order, code, reason, id, pending] => get_outputs, READ;
    get "/v1/outputs/stream" [from, output, campaign, sku, location, member, dealer, order, code, reason, id] => outputs_stream, READ;
    get "/v1/decisions" [campaign, from, limit, decision, member, pending, sku, device, ip, code, reason, scan_event] => get_decisions, READ;
    get "/v1/campaigns" => get_campaigns, READ;
    get "/v1/loyalty" => get_loyalty, READ;
    get "/v1/campaigns/{id}" => get_campaign, READ;
    post "/v1/reviews/{event}" => post_review, REVIEW;
    post "/v1/members/{id}/adjustments" => post_adjustment, POINTS;
    post "/v1/members/{id}/phone" => post_phone, MEMBERS;
    post "/v1/members/{id}/merge" => post_merge, MEMBERS;
    post "/v1/blocks" => post_block, REVIEW;
    get "/v1/blocks" [on, campaign, after, limit] => list_blocks, READ;
    post "/v1/blocks/lift" => post_block_lift, REVIEW;
    get "/v1/blocks/{on}/{value}" => get_blocks, READ;
    get "/v1/blocks/{on}/{value}/{len}" => get_blocks_prefix, READ;
    get "/v1/stats" => get_stats, READ;
    get "/v1/admin/snapshot" => snapshot, ADMIN;
    post "/v1/admin/reload" => post_reload, ADMIN;
    get "/healthz" => healthz, Access::Health;
    get "/readyz" => readyz, Access::Health;
    // load balancers' probes often use HEAD
    head "/healthz" => healthz, Access::Health;
    head "/readyz" => readyz, Access::Health;
    get "/openapi.json" => openapi, Access::AnyToken;
    get "/metrics" => metrics_text, Access::Metrics;
    get "/v1/board" [token] => board_json, READ;
    get "/v1/board/stream" [token] => board_stream, READ;
    get "/" [token, poll] => board_page, READ;
}

/// Routes that take `?token=` on GET (the board page and what it fetches).
pub const BOARD_ROUTES: &[&str] = &["/", "/v1/board", "/v1/board/stream"];

/// The access guard's settings: token digests and which routes are open.
pub struct Guard {
    enabled: bool,
    open_metrics: bool,
    open_health: bool,
    board_query_token: bool,
    /// Swapped whole by a reload (tokens rotated or revoked without a restart).
    credentials: std::sync::RwLock<Arc<Vec<crate::config::Credential>>>,
    max_body: usize,
    /// `ROUTES`' patterns, compiled once, in registration order (the router's order).
    defs: Vec<actix_web::dev::ResourceDef>,
}

/// Why a request was refused.
enum Refusal {
    /// 401: no usable token.
    Unauthenticated(&'static str),
    /// 403: a valid token without the scope.
    Forbidden(String),
}

impl Guard {
    /// From the configuration (credentials already resolved at load time).
    pub fn new(auth: &crate::config::AuthConfig, max_body: usize) -> Guard {
        Guard {
            enabled: auth.enabled,
            open_metrics: auth.open_metrics,
            open_health: auth.open_health,
            board_query_token: auth.board_query_token,
            credentials: std::sync::RwLock::new(Arc::new(auth.credentials.clone())),
            max_body,
            defs: ROUTES
                .iter()
                .map(|r| actix_web::dev::ResourceDef::new(r.path))
                .collect(),
        }
    }

    /// The pattern the router will match `path` to: `path` must be the router's own (decoded)
    /// path, `match_info().as_str()`, not the raw URI, or `/v1/%61dmin/snapshot` would miss
    /// the admin rule and still reach the admin handler.
    fn pattern_of(&self, path: &str) -> Option<&'static str> {
        self.defs
            .iter()
            .position(|d| d.is_match(path))
            .map(|i| ROUTES[i].path)
    }

    /// Why the query is refused, when it names a parameter the route does not take, or one
    /// twice.
    fn unknown_query(
        &self,
        method: &actix_web::http::Method,
        path: &str,
        query: &str,
    ) -> Option<String> {
        if query.is_empty() {
            return None;
        }
        let pattern = self.pattern_of(path)?;
        let route = ROUTES
            .iter()
            .find(|r| r.path == pattern && r.method == method.as_str())?;
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query).ok()?;
        // one value each: which of two would win is not for the service to guess
        if let Some((k, _)) = pairs
            .iter()
            .enumerate()
            .find(|(i, (k, _))| pairs[..*i].iter().any(|(j, _)| j == k))
            .map(|(_, p)| p)
        {
            return Some(format!("{k}: given more than once; give one value"));
        }
        let unknown = pairs
            .iter()
            .find(|(k, _)| !route.query.contains(&k.as_str()))?;
        Some(if route.query.is_empty() {
            format!(
                "{}: unknown query parameter; {} takes none",
                unknown.0, route.path
            )
        } else {
            format!(
                "{}: unknown query parameter; {} takes {}",
                unknown.0,
                route.path,
                route.query.join(", ")
            )
        })
    }

    /// The tokens it takes now.
    pub fn credentials(&self) -> Arc<Vec<crate::config::Credential>> {
        let held = (self.credentials.read()).unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&held)
    }

    /// Takes these tokens from now on, in place of those it took.
    pub fn set_credentials(&self, credentials: Vec<crate::config::Credential>) {
        let mut held =
            (self.credentials.write()).unwrap_or_else(std::sync::PoisonError::into_inner);
        *held = Arc::new(credentials);
    }

    /// The scopes of the token whose digest equals `token`'s; every credential and every
    /// byte is compared (no early exit), so the time taken says nothing about a near miss.
    fn credential_of<'c>(
        credentials: &'c [crate::config::Credential],
        token: &[u8],
    ) -> Option<&'c crate::config::Credential> {
        let d = crate::config::token_digest(token);
        let mut found = None;
        for c in credentials {
            let diff = c
                .digest
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(c);
            }
        }
        found
    }

    /// Decides a request: `Ok` to serve it, with the name of the token it came with (none
    /// when access control is off or the route is open).
    fn check(
        &self,
        method: &actix_web::http::Method,
        path: &str,
        header: Option<&[u8]>,
        query: &str,
    ) -> Result<Option<String>, Refusal> {
        if !self.enabled {
            return Ok(None);
        }
        let pattern = self.pattern_of(path);
        let route = pattern.and_then(|p| {
            ROUTES
                .iter()
                .find(|r| r.path == p && r.method == method.as_str())
        });
        let access = route.map(|r| r.access);
        match access {
            Some(Access::Metrics) if self.open_metrics => return Ok(None),
            Some(Access::Health) if self.open_health => return Ok(None),
            _ => {}
        }
        let token: Vec<u8> = match header {
            Some(h) => {
                // the scheme is case-insensitive (RFC 9110)
                let t = (h.len() > 7 && h[..7].eq_ignore_ascii_case(b"bearer "))
                    .then(|| h[7..].trim_ascii())
                    .filter(|t| !t.is_empty());
                let Some(t) = t else {
                    return Err(Refusal::Unauthenticated(
                        "the Authorization header is not `Bearer <token>`",
                    ));
                };
                t.to_vec()
            }
            None => {
                let board = self.board_query_token
                    && method == actix_web::http::Method::GET
                    && pattern.is_some_and(|p| BOARD_ROUTES.contains(&p));
                let q = board
                    .then(|| {
                        web::Query::<std::collections::HashMap<String, String>>::from_query(query)
                            .ok()
                            .and_then(|q| q.get("token").cloned())
                    })
                    .flatten();
                match q {
                    Some(t) => t.into_bytes(),
                    None => {
                        return Err(Refusal::Unauthenticated(
                            "this route needs `Authorization: Bearer <token>`",
                        ))
                    }
                }
            }
        };
        let credentials = self.credentials();
        let Some(credential) = Self::credential_of(&credentials, &token) else {
            return Err(Refusal::Unauthenticated("the token is not valid"));
        };
        let has = |s: &str| credential.scopes.iter().any(|x| x == s);
        match access {
            Some(Access::Scope(s)) if !has(s) => Err(Refusal::Forbidden(format!(
                "this route needs the `{s}` scope"
            ))),
            Some(Access::Metrics) if !has("read") && !has("admin") => Err(Refusal::Forbidden(
                "this route needs the `read` or `admin` scope".into(),
            )),
            // any valid token may learn that a route does not exist (404/405)
            _ => Ok(Some(credential.name.clone())),
        }
    }
}

/// The middleware every request passes: access control, then a JSON body on the errors
/// actix answers by itself (unknown route, body too large, bad path or query).
/// Counts every answer by route (its pattern: `/v1/members/{id}`, bounded) and status, the
/// access guard's refusals and the 413s, 415s and 429s included.
async fn count_responses(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|st| Arc::clone(&st.metrics));
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        m.http_response(&route, res.status().as_u16());
    }
    Ok(res)
}

async fn access(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(guard) = req.app_data::<web::Data<Arc<Guard>>>().cloned() else {
        let r = error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no_guard",
            "the access guard is not configured",
        );
        return Ok(req.into_response(r));
    };
    // the router's path (unreserved characters decoded), not the raw URI
    let path = req.match_info().as_str().to_string();
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|h| h.as_bytes().to_vec());
    let verdict = guard.check(req.method(), &path, header.as_deref(), req.query_string());
    match verdict {
        Err(Refusal::Unauthenticated(why)) => {
            let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", why);
            r.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static("Bearer"),
            );
            return Ok(req.into_response(r));
        }
        Err(Refusal::Forbidden(why)) => {
            return Ok(req.into_response(error(StatusCode::FORBIDDEN, "forbidden", why)));
        }
        Ok(caller) => {
            if let Some(name) = caller {
                req.extensions_mut().insert(Caller(name));
            }
        }
    }
    if let Some(why) = guard.unknown_query(req.method(), &path, req.query_string()) {
        return Ok(req.into_response(bad_query(why)));
    }
    let res = next.call(req).await?;
    let status = res.status();
    let is_json = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (code, detail) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => (
                "body_too_large",
                format!("the body is larger than {} bytes", guard.max_body),
            ),
            StatusCode::NOT_FOUND => ("not_found", "no such resource, or a bad path".into()),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed".into()),
            s if s.is_client_error() => (
                "bad_request",
                format!("the request was refused ({s}): bad path, query or body"),
            ),
            s => ("internal", format!("the request failed ({s})")),
        };
        let (req, _) = res.into_parts();
        return Ok(actix_web::dev::ServiceResponse::new(
            req,
            error(status, code, detail),
        ));
    }
    Ok(res.map_into_boxed_body())
}

/// Opens the store, replays it, starts the shard and serves HTTP on `listener` (with the
/// Fluvio source and sinks when configured, and the `inputs` files) until SIGINT/SIGTERM, or
/// until every input file is durable when they are to stop it; then commits what waits and
/// returns.
pub async fn serve(
    cfg: Config,
    listener: TcpListener,
    pii_key: Vec<u8>,
    inputs: crate::files::Inputs,
    reload: Reloader,
) -> anyhow::Result<()> {
    // SIGHUP is taken first: its default action would end the process, and a start-up that
    // rebuilds a large store takes a while; one sent before the service answers reloads the
    // rules once it does
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(
        Metrics::new(cfg.metrics).with_campaigns(cfg.rules.campaigns.keys().map(|c| c.as_str())),
    );
    let listen = listener.local_addr()?;
    // the certificate files are read before anything starts consuming
    let tls = https(&cfg.http, metrics.clone())?;
    // and the input files are there before a store is opened (or a data directory made)
    let files = inputs.at_start().map_err(|e| anyhow::anyhow!(e))?;
    for f in &files {
        std::fs::File::open(f).map_err(|e| anyhow::anyhow!("--input {}: {e}", f.display()))?;
    }
    let open = || {
        Shard::new(
            crate::store::open(&cfg, listen)?,
            cfg.rules.clone(),
            &pii_key,
            crate::shard::ShardConfig::from(&cfg),
            ready.clone(),
            metrics.clone(),
        )
    };
    // a CQL store that does not answer yet (a node still booting), or whose writer lease
    // another process holds, is tried again for store-wait-s; nothing else runs here yet, so
    // the wait blocks this thread as the opening itself does
    let shard = crate::store::wait_for(cfg.store_wait_s, open)?;
    tracing::info!(
        checkpoint_at = shard.stats.restored_from,
        replayed = shard.stats.replayed,
        seconds = shard.stats.replay_seconds,
        "state rebuilt: the last checkpoint (at that log position; 0: none), then the log after it"
    );
    let arbiter = Arbiter::new();
    let shard = Shard::start_in_arbiter(&arbiter.handle(), move |_| shard);
    // the input files are checked before anything is served: a bad one stops start-up
    let planned = if inputs.any() {
        let mut planned = crate::files::stored_positions(&shard, &files, inputs.dir.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if inputs.dir.is_some() {
            crate::files::skip_done(&mut planned, !inputs.stop_at_end);
        }
        planned
    } else {
        Vec::new()
    };
    let progress = crate::files::progress(&planned);
    let pii = Pii::new(&pii_key);
    let (stop_streams, stopping) = tokio::sync::watch::channel(false);
    let stop_streams = Arc::new(stop_streams);
    let durable = shard.send(crate::shard::WatchDurable).await?;
    let output_rows = shard.send(crate::shard::GetOutputRows).await?;
    let state = AppState {
        durable,
        output_rows,
        stopping,
        inputs: progress.clone(),
        shard: shard.clone(),
        decoder: Decoder::new(pii.clone()),
        pii,
        inflight: Arc::new(AtomicUsize::new(0)),
        ready,
        cfg: Arc::new(cfg.clone()),
        metrics: metrics.clone(),
        reload,
        guard: Arc::new(Guard::new(&cfg.auth, cfg.max_body_bytes)),
    };
    // SIGHUP reloads the rules
    match hangup {
        Ok(hup) => drop(actix_web::rt::spawn(reload_on_hangup(state.clone(), hup))),
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP cannot be taken: rules reload by POST /v1/admin/reload only")
        }
    }
    let fluvio = if cfg.fluvio.enabled {
        let client = crate::fluvio::client::Client::connect(&cfg.fluvio).await?;
        let transport = crate::fluvio::client::FluvioTransport { client };
        let running = crate::fluvio::start(
            &transport,
            &cfg.fluvio,
            shard.clone(),
            &pii_key,
            cfg.max_future_s,
            &metrics,
        )
        .await?;
        tracing::info!(endpoint = %cfg.fluvio.endpoint, partitions = ?cfg.fluvio.owned(), "fluvio source and sinks started");
        Some(running)
    } else {
        None
    };
    let addr = listener.local_addr()?;
    let max_body = cfg.max_body_bytes;
    let guard = state.guard.clone();
    if cfg.auth.enabled {
        let names = token_names(&cfg.auth.credentials);
        tracing::info!(tokens = ?names, "access control on");
    } else if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "access control is off on a non-loopback address: anyone who reaches it can read members and post events ([auth] enabled = true)");
    }
    if cfg.auth.enabled && !cfg.http.tls && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "plain HTTP on a non-loopback address: bearer tokens and members' data cross the network in the clear ([http] tls = true, or a TLS proxy in front)");
    }
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::Data::new(guard.clone()))
            .configure(register)
            .default_service(web::to(no_route))
            .wrap(actix_web::middleware::from_fn(access))
            .wrap(actix_web::middleware::from_fn(count_responses))
    })
    .workers(2)
    // an answer goes out at once, whole: over TLS it is written as more than one segment,
    // and with Nagle's algorithm the last waited for the caller's delayed ACK (~40 ms)
    .tcp_nodelay(true)
    // SIGINT and SIGTERM alike drain (actix's own handling stops at once on SIGINT)
    .disable_signals()
    .shutdown_timeout(10);
    let server = match tls {
        Some((c, completed)) => server
            .on_connect(move |_, _| completed.inc())
            .listen_rustls_0_23(listener, c)?,
        None => server.listen(listener)?,
    }
    .run();
    // SIGTERM is taken before the address is printed: a stop sent as soon as the service
    // says it listens is a graceful stop, not the default action (the process killed)
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    actix_web::rt::spawn(stop_on_signals(server.handle(), stop_streams.clone(), term));
    // a shard that stopped (a panic in its handling, logged above) answers nothing again:
    // the process exits for its supervisor to start it again from what is durable
    let watchdog = {
        let shard = shard.clone();
        actix_web::rt::spawn(async move {
            until_stopped(&shard).await;
            tracing::error!("the shard stopped (see the panic above): exiting with code {EXIT_SHARD_STOPPED} for a restart (everything answered is durable)");
            std::process::exit(EXIT_SHARD_STOPPED);
        })
    };
    // not println!: it panics once standard output is closed, and the service goes on
    {
        use std::io::Write;
        let scheme = cfg.http.scheme();
        let _ = writeln!(
            std::io::stdout(),
            "omnistream listening on {scheme}://{addr}"
        );
    }
    let stop_at_end = inputs.stop_at_end;
    let input = inputs.any().then(|| {
        let (handle, shard) = (server.handle(), shard.clone());
        let (key, max_future_s) = (pii_key.clone(), cfg.max_future_s);
        actix_web::rt::spawn(async move {
            let read =
                crate::files::ingest(shard, planned, &inputs, progress, &key, max_future_s).await;
            match &read {
                Ok(()) if inputs.stop_at_end => {
                    tracing::info!("every input file is durable; stopping (--stop-after-input)")
                }
                Ok(()) => {}
                Err(e) => tracing::error!(error = %e, "reading the input files stopped"),
            }
            if inputs.stop_at_end {
                stop_streams.send_replace(true);
                handle.stop(true).await;
            }
            read
        })
    });
    server.await?;
    // a signal may have stopped the server first: the reading stops where it is (what it
    // handed over is answered), and the next start reads on from the durable position
    let read = match input {
        Some(task) if task.is_finished() => task.await.ok(),
        Some(task) => {
            task.abort();
            None
        }
        None => None,
    };
    if let Some(f) = fluvio {
        f.stop();
    }
    watchdog.abort();
    // the server drained its requests; commit whatever is still buffered, with a checkpoint
    if let Ok(Err(e)) = shard.send(Shutdown).await {
        tracing::error!(error = %e, "final commit failed");
    }
    arbiter.stop();
    // the shard, and the store it holds, are dropped on the arbiter's thread: wait for it,
    // so the store's files are closed cleanly before the process ends (redb otherwise
    // repairs them at the next open, a walk of the whole file)
    let _ = arbiter.join();
    match read {
        Some(Err(e)) if stop_at_end => Err(anyhow::anyhow!("reading the input files: {e}")),
        _ => Ok(()),
    }
}

/// The process's exit status when its shard stopped under it (a panic).
pub const EXIT_SHARD_STOPPED: i32 = 4;

/// Returns once `addr`'s actor has stopped (looked at every 200 ms).
async fn until_stopped<A: actix::Actor>(addr: &actix::Addr<A>) {
    while addr.connected() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The first SIGINT (Ctrl-C) or SIGTERM stops the server gracefully: it accepts nothing new,
/// answers the requests under way (they wait for their commit), and `serve` then takes the
/// final checkpoint. A second signal exits at once: what was answered is in the log, and the
/// next start replays it from the last checkpoint.
async fn stop_on_signals(
    server: actix_web::dev::ServerHandle,
    streams: Arc<tokio::sync::watch::Sender<bool>>,
    mut term: Option<tokio::signal::unix::Signal>,
) {
    use crate::next_stop_signal as next;
    if !next(&mut term).await {
        return;
    }
    tracing::info!(
        "stopping: answering the requests under way, then a final checkpoint (signal again to stop at once)"
    );
    // stopping waits for the requests: it runs beside this task, which listens on; the
    // board's streams end first, or it would wait for them
    streams.send_replace(true);
    actix_web::rt::spawn(async move { server.stop(true).await });
    if next(&mut term).await {
        tracing::warn!(
            "stopping at once, without the final checkpoint: the next start replays the log since the last one"
        );
        std::process::exit(130);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event answered `duplicate` is told its id was reused only against the first of
    /// the request's events with its id that was applied: not against one refused (which
    /// took no id), and not when it repeats the one applied.
    #[test]
    fn reuse_is_judged_against_the_event_applied() {
        let id = uuid::Uuid::from_u128(7);
        let accepted = Outcome::Accepted {
            id,
            outputs: Vec::new(),
        };
        let duplicate = || Outcome::Duplicate {
            id,
            answered: Vec::new(),
            about: None,
        };
        let rejected = Outcome::Rejected {
            id: Some(id.to_string()),
            reasons: Vec::new(),
        };
        // [A refused, B applied, B again]: the third repeats the second
        let outcomes = [rejected, accepted, duplicate()];
        let pairs = [(1, 0, true), (2, 0, true), (2, 1, false)];
        assert!(reused_after(&outcomes, &pairs).is_empty());
        // [A applied, B]: B is told
        let outcomes = [outcomes[1].clone(), duplicate()];
        assert_eq!(reused_after(&outcomes, &[(1, 0, true)]), [(1, 0)]);
        assert!(reused_after(&outcomes, &[(1, 0, false)]).is_empty());
    }

    /// The watchdog waits while the actor runs and returns once it panicked in a handler
    /// (its arbiter goes on: only its mailbox closes), as a shard would.
    #[test]
    fn the_watchdog_returns_when_the_actor_panicked() {
        struct Fragile;
        impl Actor for Fragile {
            type Context = Context<Self>;
        }
        #[derive(Message)]
        #[rtype(result = "()")]
        struct Break;
        impl Handler<Break> for Fragile {
            type Result = ();
            fn handle(&mut self, _: Break, _: &mut Context<Self>) {
                panic!("a handler's bug");
            }
        }
        actix::System::new().block_on(async {
            let arbiter = Arbiter::new();
            let addr = Fragile::start_in_arbiter(&arbiter.handle(), |_| Fragile);
            let waiting = until_stopped(&addr);
            let early = tokio::time::timeout(std::time::Duration::from_millis(500), waiting);
            assert!(early.await.is_err(), "returned while the actor ran");
            assert!(addr.send(Break).await.is_err());
            let stopped = until_stopped(&addr);
            assert!(
                tokio::time::timeout(std::time::Duration::from_secs(5), stopped)
                    .await
                    .is_ok(),
                "not returned after the panic"
            );
            arbiter.stop();
        });
    }

    #[test]
    fn a_body_is_an_array_one_object_over_lines_or_json_lines() {
        let texts = |b: &[u8]| -> Vec<String> {
            split(b)
                .0
                .into_iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect()
        };
        // pretty-printed, as `jq .` writes one event: one event, not five broken lines
        let pretty = b"{\n  \"id\": \"x\",\n  \"type\": \"click\"\n}\n";
        assert_eq!(
            texts(pretty),
            ["{\n  \"id\": \"x\",\n  \"type\": \"click\"\n}"]
        );
        // an array cut where an element ended: its elements, and said to be open
        assert_eq!(split(b"[{\"a\":1},").0, [br#"{"a":1}"#]);
        assert!(split(b"[{\"a\":1},").1 && split(b"[{\"a\":1}  ").1);
        assert!(!split(b"[{\"a\":1}]").1);
        assert!(
            !split(b"[{\"tags\":[\"x\"}]").1,
            "mismatched inside, closed"
        );
        assert!(
            !split(b"[{\"a\":1},{\"b\"").1,
            "cut inside an element: its own refusal"
        );
        // JSON lines, with a byte-order mark and CRLF
        let lines = b"\xEF\xBB\xBF{\"a\":1}\r\n{\"b\":2}\r\n";
        assert_eq!(texts(lines), [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(
            texts(b"\xEF\xBB\xBF[{\"a\":1}, {\"b\":2}]"),
            [r#"{"a":1}"#, r#"{"b":2}"#]
        );
        // a broken one among objects spread over lines: refused alone, the next stands
        let broken = b"{\n  \"a\": 1\n}\n{\n  \"b\": x\"\n}\n{\n  \"c\": 3\n}\n";
        assert_eq!(
            texts(broken),
            ["{\n  \"a\": 1\n}", "{\n  \"b\": x\"\n}", "{\n  \"c\": 3\n}"]
        );
        // an object line inside the broken one's string is not where the next one starts
        let inner = b"{\n \"b\": \"see\n{\"id\":1}\n\"\n}\n{\n \"c\": 3\n}\n";
        assert_eq!(
            texts(inner),
            ["{\n \"b\": \"see\n{\"id\":1}\n\"\n}", "{\n \"c\": 3\n}"]
        );
        // two objects spread over lines are two events
        assert_eq!(
            texts(b"{\n\"a\":1}\n{\n\"b\":2}"),
            ["{\n\"a\":1}", "{\n\"b\":2}"]
        );
        // a typo: what precedes it stands, the rest is one text (refused once, with the
        // error's line), not a dead letter for each of its lines
        let typo = b"{\n \"a\": 1\n}\n{\n \"b\": {\"c\": 2}\n \"d\": 3\n}\n";
        assert_eq!(
            texts(typo),
            ["{\n \"a\": 1\n}", "{\n \"b\": {\"c\": 2}\n \"d\": 3\n}"]
        );
        // an array with a broken element: the others are still events of their own; commas
        // and brackets inside strings do not split, an empty element is dropped
        assert_eq!(
            texts(br#" [{"a":1}, {"b":2,},, {"c":"],{\"}"}, [3]] "#),
            [r#"{"a":1}"#, r#"{"b":2,}"#, r#"{"c":"],{\"}"}"#, "[3]"]
        );
        // text after the array is one more (refused); a string left open ends at the next
        // boundary whose element parses, and the elements after it stand
        assert_eq!(texts(br#"[{"a":1}] x"#), [r#"{"a":1}"#, "x"]);
        assert_eq!(
            texts(br#"[{"a":1}, {"b":"x}, {"c":3}]"#),
            [r#"{"a":1}"#, r#"{"b":"x}"#, r#"{"c":3}"#]
        );
        // a quote closed in the wrong place flips every string after it: still found
        let flipped = br#"[{"id":"1","ts":"2026-12-05T22:00:00+08:00,"channel":"jd","x":1},{"id":"2","y":"a,b"},{"id":"3"}]"#;
        assert_eq!(
            texts(flipped),
            [
                r#"{"id":"1","ts":"2026-12-05T22:00:00+08:00,"channel":"jd","x":1}"#,
                r#"{"id":"2","y":"a,b"}"#,
                r#"{"id":"3"}"#
            ]
        );
        // no boundary starts an element that parses: the rest is one text, as before
        assert_eq!(
            texts(br#"[{"a":1}, {"b":"x}, {"c":"]"#),
            [r#"{"a":1}"#, r#"{"b":"x}, {"c":"]"#]
        );
        // cut short: what arrived whole stands, the piece cut is refused
        assert_eq!(texts(br#"[{"a":1}, {"b":"#), [r#"{"a":1}"#, r#"{"b":"#]);
        // a comma missed between two elements: two events, not one refused text
        assert_eq!(
            texts(br#"[{"a":1} {"b":[2]}, {"c":3}]"#),
            [r#"{"a":1}"#, r#"{"b":[2]}"#, r#"{"c":3}"#]
        );
        assert!(texts(b"[").is_empty());
    }

    /// A resolution of a blocked scan says it was blocked, with its score and reasons.
    #[test]
    fn a_block_is_not_under_review_and_says_why() {
        let d = json!({"decision": "block", "score": 85,
                       "reasons": [{"reason": "ring"}, {"reason": "device_shared"}]});
        let r = not_under_review(d);
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let body = actix_web::body::to_bytes(r.into_body());
        let body = futures_util::FutureExt::now_or_never(body)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "not_under_review");
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.contains("blocked (score 85: ring, device_shared)"),
            "{detail}"
        );
    }

    /// A store whose every read fails, as Cassandra does while it is down.
    struct Down;

    fn down() -> StoreError {
        StoreError::Io {
            op: "read",
            table: "outputs",
            why: "connection refused".into(),
        }
    }

    impl Store for Down {
        fn commit(&mut self, _: &crate::store::Batch) -> Result<(), StoreError> {
            Err(down())
        }
        fn replay(&self, _: u64, _: &mut dyn FnMut(u64, &[u8])) -> Result<u64, StoreError> {
            Err(down())
        }
        fn next_output(&self) -> Result<u64, StoreError> {
            Err(down())
        }
        fn ledger(&self, _: &str, _: u64, _: usize) -> Result<Vec<Vec<u8>>, StoreError> {
            Err(down())
        }
        fn outputs(&self, _: u64, _: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
            Err(down())
        }
        fn position(&self, _: &str) -> Result<Option<u64>, StoreError> {
            Err(down())
        }
    }

    #[test]
    fn a_failing_store_is_an_error_not_an_empty_page() {
        let e = outputs_page(
            &Down as &dyn Store,
            OutputFilter {
                from: 0,
                limit: 100,
                output: None,
                fields: Vec::new(),
                pending: None,
            },
            |_| true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("connection refused"), "{e}");
    }
}

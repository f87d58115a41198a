//! The shard: an actix actor on its own Arbiter that owns the deterministic engine and the
//! store. It applies events as they arrive, buffers what they produced, and group-commits:
//! the events, their outputs and ledger entries go to the store in one atomic write when the
//! mailbox is drained (or after `group-commit-ms` when that is set, or at
//! `group-commit-events`), and only then are the callers answered.
//!
//! Commits are pipelined when the store allows it (the embedded one): a thread of their own
//! writes and syncs a batch while the shard applies the next one, which goes to the store as
//! soon as the first is durable. One commit is written at a time, so the log stays in order;
//! a failed commit fails its callers and those of everything applied behind it, and the
//! engine is rebuilt from the store. A checkpoint is taken with the batch it follows and
//! written only once that batch is durable, so it never reflects an event that is not.
//!
//! Memory and restart time are bounded by checkpoints (stores that keep them: the embedded
//! one): every `checkpoint-every-events` events the engine's changed entity states, its own
//! state and the shard's (board, pending reviews) are written with the batch, atomically,
//! and the log before them is dropped; beyond `resident-entities` the least recently used
//! entities leave memory and load back from the store when needed. A restart restores the
//! last checkpoint and replays only the log after it.
//!
//! Today one shard hosts every entity (the engine's canonical order); hashing keys over
//! several shards with an exchange between them is the next step of issue #5.

use crate::board::Board;
use crate::metrics::Metrics;
use crate::store::{
    Batch, CheckpointWrite, Checkpointer, Committer, InFlight, InFlightSlot, Layered, Store,
    StoreError,
};
use actix::prelude::*;
use omnistream_actors::engine::{Applied, Emitted, Engine, Late};
use omnistream_actors::fraud::block::{Block, BlockCmd, BlockOn, Change};
use omnistream_actors::sharded::Sharded;
use omnistream_actors::{Output, Rules};
use omnistream_schemas::{Decoder, Event, Pii, Problem, Reason};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What happened to one item of an ingest request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Applied and durable; the outputs it produced.
    Accepted {
        /// Event id.
        id: uuid::Uuid,
        /// Outputs caused by this event (in order).
        outputs: Vec<Emitted>,
    },
    /// Its id was seen before: nothing changed.
    Duplicate {
        /// Event id.
        id: uuid::Uuid,
        /// For a scan sent again (a retry after a timeout), the decision it got and, once a
        /// person resolved its review, the resolution, while the shard remembers them (see
        /// [`RECENT_ANSWERS`]); empty otherwise.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        answered: Vec<Emitted>,
        /// For an order or a payment sent again, what it is about: the HTTP answer shows
        /// where that stands now, what a retry after a timeout needs to know.
        #[serde(skip_serializing_if = "Option::is_none")]
        about: Option<About>,
    },
    /// Refused by the contract; kept in the dead letters.
    Rejected {
        /// Event id when readable.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Every problem.
        reasons: Vec<Problem>,
    },
}

/// One item of an ingest request, decoded by the HTTP worker.
#[derive(Debug)]
pub enum Item {
    /// A valid event.
    Event(Box<Event>),
    /// A refused one.
    Rejected(Refused),
}

/// A refused event, with its redacted text for the dead letters.
#[derive(Debug)]
pub struct Refused {
    /// Its type's name when it names one, else `unknown` (the metrics' label).
    pub kind: &'static str,
    /// Event id when readable.
    pub id: Option<String>,
    /// Every problem.
    pub reasons: Vec<Problem>,
    /// The line with personal values hashed.
    pub raw: String,
}

impl Refused {
    /// An event that decoded and is refused for `why` (too late): its text is the event as
    /// decoded, personal values hashed already.
    fn decoded(ev: &Event, why: Problem) -> Refused {
        Refused {
            kind: ev.body.kind().name(),
            id: Some(ev.id.to_string()),
            reasons: vec![why],
            raw: serde_json::to_string(ev).unwrap_or_default(),
        }
    }
}

impl Item {
    /// The item for one raw event at live ingest: decoded by `decoder`, refused with its
    /// reasons (the line redacted by `pii` for the dead letters), and refused as
    /// `future_timestamp` when its time is more than `max_future_s` seconds ahead of `now_us`
    /// (this server's clock; 0 turns the check off). One event stamped years ahead would
    /// otherwise move the watermark there and fire every timer before it, so a bad clock on
    /// one device cannot expire every member's points.
    pub fn decode(
        decoder: &Decoder,
        pii: &Pii,
        raw: &[u8],
        now_us: i64,
        max_future_s: u64,
    ) -> Item {
        Item::decode_noting(decoder, pii, raw, now_us, max_future_s).0
    }

    /// [`Item::decode`], also telling whether [`omnistream_schemas::lint`] may have a
    /// warning for it (see [`Decoder::decode_noting`]).
    pub fn decode_noting(
        decoder: &Decoder,
        pii: &Pii,
        raw: &[u8],
        now_us: i64,
        max_future_s: u64,
    ) -> (Item, bool) {
        let (decoded, unusual) = decoder.decode_noting(raw);
        let item = match decoded {
            Ok(ev) => match too_far_ahead(ev.ts.unix_us, now_us, max_future_s) {
                None => Item::Event(Box::new(ev)),
                Some(p) => Item::Rejected(Refused {
                    kind: ev.body.kind().name(),
                    id: Some(ev.id.to_string()),
                    reasons: vec![p],
                    raw: pii.redact(raw),
                }),
            },
            Err(r) => Item::Rejected(Refused {
                kind: crate::metrics::kind_label(r.kind),
                id: r.id,
                reasons: r.problems,
                raw: pii.redact(raw),
            }),
        };
        (item, unusual)
    }
}

/// The problem with an event time more than `max_future_s` ahead of `now_us`, if any.
pub fn too_far_ahead(ts_us: i64, now_us: i64, max_future_s: u64) -> Option<Problem> {
    let max_us = secs_us(max_future_s);
    (max_future_s > 0 && ts_us > now_us.saturating_add(max_us)).then(|| {
        Problem::new(
            Reason::FutureTimestamp,
            "ts",
            format!(
                "{} s ahead of the clock of the server that took it in (in a cluster: process 0's); at most {max_future_s} s (max-future-s) are accepted",
                (ts_us - now_us) / 1_000_000
            ),
        )
    })
}

/// Why the engine refused an event as late (it answered [`Applied::Late`]): beyond the
/// lateness window, or older than the event ids kept under `max-remembered-ids` reach back.
pub fn too_late(ts_us: i64, engine: &Engine) -> Problem {
    let why = match engine.late(ts_us) {
        Some(Late::Forgotten) => format!(
            "before {}, the oldest event time whose ids are still remembered: ids older were \
             forgotten to stay under max-remembered-ids ({}), so a repeat could not be told",
            omnistream_schemas::EventTime::from_unix_ms(engine.remembered_from_us() / 1000),
            engine.rules.max_remembered_ids
        ),
        // the lateness window (the only other reason the engine refuses an event as late)
        _ => format!(
            "{} s before the watermark (the latest event time seen); at most {} s \
             (max-lateness-s) are accepted (an event sent again this late: if it was accepted \
             before, that stands; nothing is lost)",
            engine.watermark().saturating_sub(ts_us) / 1_000_000,
            engine.rules.max_lateness_s
        ),
    };
    Problem::new(Reason::TooLate, "ts", why)
}

/// A setting in seconds as microseconds, the unit of event times (saturating).
pub fn secs_us(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// This machine's clock in microseconds since the Unix epoch (live ingest only; the entity
/// logic never reads it).
pub fn wall_clock_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// This machine's clock as RFC 3339 text in UTC, to the millisecond: when the service took
/// a request or refused an item, for the people reading its outputs.
pub fn wall_clock_text() -> String {
    omnistream_schemas::EventTime {
        unix_us: wall_clock_us() / 1000 * 1000,
        offset_min: 0,
    }
    .to_string()
}

/// A commit slower than this (seconds), plus [`COMMIT_S_PER_EVENT`] for each of its events, is
/// logged at warn level with its size.
const SLOW_COMMIT_S: f64 = 0.02;

/// What a commit may take per event before it counts as slow: large batches (a backfill
/// through `run --input`, thousands of events a commit) take 20-30 µs an event here, so a
/// flat bound would log every one of them.
const COMMIT_S_PER_EVENT: f64 = 30e-6;

/// After a failed rebuild the shard tries again after this long, doubling up to
/// [`REBUILD_RETRY_MAX`] while the store stays away.
const REBUILD_RETRY_MIN: Duration = Duration::from_millis(500);
/// The longest wait between two rebuild attempts.
const REBUILD_RETRY_MAX: Duration = Duration::from_secs(5);

/// Batches smaller than this are committed on the shard's thread (see
/// [`ShardConfig::pipeline_min_events`]; BENCHMARKS.md has the measurement behind it).
pub const PIPELINE_MIN_EVENTS: usize = 16;

/// Why the shard could not take a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardError {
    /// The store refused the write; nothing of the request was kept.
    #[error("store write failed, nothing was applied: {0}")]
    Store(String),
    /// A commit failed and the state is not rebuilt from the store yet; nothing was applied.
    #[error("not ready: the store is unavailable; the state is rebuilt once it answers again, nothing was applied")]
    NotReady,
    /// The batch follows a position of its source other than the one applied (one sent
    /// before it failed); nothing was applied.
    #[error("source {name} is at position {at}, and this batch follows {after}: one before it failed; nothing was applied")]
    OutOfOrder {
        /// The source.
        name: String,
        /// Its position as applied.
        at: u64,
        /// The position the batch follows.
        after: u64,
    },
}

/// Where the answer to an ingest goes.
pub type Reply = oneshot::Sender<Result<Vec<Outcome>, ShardError>>;

/// Apply these items; answers once they are durable.
pub struct Ingest {
    /// Where they came from: the name its position is stored under (`http`,
    /// `fluvio:scans:0`).
    pub source: Arc<str>,
    /// The source's position after these items (a Fluvio partition's next offset); `None`
    /// stores the log's next sequence number (HTTP has no position of its own).
    pub position: Option<u64>,
    /// The position these items follow, for a source with several batches in flight: the
    /// batch is refused ([`ShardError::OutOfOrder`]) unless it is the source's position as
    /// applied, so a batch queued behind one that failed is not committed past it.
    pub after: Option<u64>,
    /// Other positions committed with these items, when applied: a file's identity beside
    /// its byte position (`file:<path>#inode`, `#head`), so a restart tells a rotated or
    /// replaced file from the one its position was in.
    pub also: Vec<(Arc<str>, u64)>,
    /// The items.
    pub items: Vec<Item>,
    /// The answer.
    pub reply: Reply,
    /// When the request arrived (for the ingest → decision latency).
    pub received: Instant,
}

impl Message for Ingest {
    type Result = ();
}

/// A read of current state, run between ingests.
pub struct Read<F>(pub F);

impl<F, R> Message for Read<F>
where
    F: FnOnce(&Sharded, &dyn Store) -> R + Send + 'static,
    R: Send + 'static,
{
    type Result = R;
}

/// A [`Read`] that also sees what became of recent scans' reviews: the resolution (as its
/// output's JSON) of a scan among the last [`RECENT_ANSWERS`] decisions, once resolved.
pub struct ReadReviewed<F>(pub F);

impl<F, R> Message for ReadReviewed<F>
where
    F: FnOnce(&Sharded, &dyn Store, &dyn Fn(uuid::Uuid) -> Option<serde_json::Value>) -> R
        + Send
        + 'static,
    R: Send + 'static,
{
    type Result = R;
}

/// Commit whatever waits now (used at shutdown).
pub struct FlushNow;

impl Message for FlushNow {
    type Result = Result<(), ShardError>;
}

/// Counters of the shard.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ShardStats {
    /// Events in the log when the shard started (replayed).
    pub replayed: u64,
    /// Seconds the replay took.
    pub replay_seconds: f64,
    /// Events applied since start.
    pub applied: u64,
    /// Duplicates dropped since start.
    pub duplicates: u64,
    /// Rejected items since start.
    pub rejected: u64,
    /// Commits since start.
    pub commits: u64,
    /// Failed commits since start.
    pub failed_commits: u64,
    /// Largest batch committed (events).
    pub max_batch: usize,
    /// Where the start-up began: the log seq of the checkpoint restored (0 without one).
    pub restored_from: u64,
    /// Checkpoints written since start.
    pub checkpoints: u64,
    /// Seconds the shard spent on the last checkpoint (encoding, not the write), spread over
    /// slices between requests but at shutdown.
    pub checkpoint_seconds: f64,
    /// The longest the shard stopped at once for the last checkpoint.
    pub checkpoint_longest_stop_seconds: f64,
    /// Entities passivated since start.
    pub passivated: u64,
    /// Event ids forgotten under `max-remembered-ids` (the engine's count at the last commit).
    pub forgotten_ids: u64,
    /// Entities resident now.
    pub resident: usize,
    /// The store's read cache of states (CQL): counters since start, size now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_cache: Option<crate::store::ReadCache>,
    /// The embedded store's code registry: runs, records, bytes on disk and in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_registry: Option<crate::codes::CodeStats>,
}

/// How the shard commits and checkpoints, from the configuration.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Wait this long before a commit (0: as soon as the mailbox is drained).
    pub commit_every: Duration,
    /// Commit at once when this many events wait.
    pub commit_events: usize,
    /// Pipelined commits from a thread of their own, when the store allows.
    pub commit_thread: bool,
    /// Smaller batches are committed on the shard's thread even so: with little to apply
    /// meanwhile, the hand-off between threads costs more than the overlap saves.
    pub pipeline_min_events: usize,
    /// Most resident entities (0: no bound); needs a store that keeps checkpoints.
    pub resident: usize,
    /// Checkpoint after this many events (0: only at shutdown).
    pub checkpoint_every: u64,
    /// Codes the code registry's filter is sized for.
    pub filter_codes: u64,
    /// Threads the entities run on, each owning the keys that hash to it.
    pub shards: usize,
    /// Exit the process (code 3) when the embedded store must be opened again before it
    /// writes, for its supervisor to start it again (see [`Shard::lose_store`]).
    pub exit_when_store_lost: bool,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig::from(&crate::config::Config::default())
    }
}

impl From<&crate::config::Config> for ShardConfig {
    fn from(c: &crate::config::Config) -> Self {
        ShardConfig {
            commit_every: Duration::from_millis(c.group_commit_ms),
            commit_events: c.group_commit_events,
            commit_thread: c.commit_thread,
            pipeline_min_events: PIPELINE_MIN_EVENTS,
            resident: c.resident_entities,
            checkpoint_every: c.checkpoint_every_events,
            filter_codes: c.code_filter_codes,
            shards: c.shards,
            exit_when_store_lost: true,
        }
    }
}

/// The shard's own state in a checkpoint.
#[derive(Serialize, serde::Deserialize)]
struct Extras {
    reviews: std::collections::HashMap<uuid::Uuid, String>,
    /// Points adjustments by member and reference (none in checkpoints written before).
    #[serde(default, skip_serializing_if = "std::collections::HashMap::is_empty")]
    adjusted: AdjustedRefs,
    /// What a person blocked (none in checkpoints written before).
    #[serde(default, skip_serializing_if = "BlockIndex::is_empty")]
    blocked: BlockIndex,
    board: serde_json::Value,
    /// The first output seq after the checkpoint: the outputs it follows (checkpoints
    /// written before builds kept it have none). A store whose outputs end before it holds
    /// a log and outputs older than its checkpoint: files copied at different moments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_output: Option<u64>,
    /// The rules the log after the checkpoint starts under (checkpoints written before
    /// builds kept them have none; rules this build cannot read count as none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "stored_rules"
    )]
    rules: Option<Rules>,
}

/// Rules as a checkpoint or the log stored them, or none when this build cannot read them
/// (a key renamed or removed since): the rest of what holds them still reads, and the
/// events after them run under the configured rules, as before rules were stored.
fn stored_rules<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rules>, D::Error> {
    let v = <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    Ok(v.and_then(|v| match serde_json::from_value(v) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "stored rules do not read in this build: the events after them replay under \
                 the configured rules"
            );
            None
        }
    }))
}

/// The shard actor.
pub struct Shard {
    engine: Sharded,
    /// The rules configured (at start-up, or reloaded since): what new events run under (a
    /// log written under others replays under those first).
    rules: Rules,
    shards: usize,
    store: Box<dyn Store>,
    stored_decoder: Decoder,
    next_seq: u64,
    next_output: u64,
    /// Each source's position as applied (durable or not yet); empty after a rebuild, when
    /// the store's positions are the applied ones.
    applied: std::collections::HashMap<String, u64>,
    batch: Batch,
    waiting: Vec<(Reply, Vec<Outcome>)>,
    flush_scheduled: bool,
    /// The store must be opened again before it writes: nothing more is applied.
    store_lost: bool,
    exit_when_store_lost: bool,
    commit_every: Duration,
    commit_events: usize,
    ready: Arc<AtomicBool>,
    reviews: Reviews,
    adjusted: Adjustments,
    blocked: BlockIndex,
    answers: Answers,
    /// The personal-data key's fingerprint row, written with every commit until one is
    /// durable (the store had none: see `store::pii_key_unrecorded`).
    key_check: Option<(String, u64)>,
    metrics: Arc<Metrics>,
    board: Board,
    /// Counts durable commits: followers of the outputs (`/v1/outputs/stream`) wake on it.
    durable: tokio::sync::watch::Sender<u64>,
    /// Whether the store keeps checkpoints (and so can hold passivated entities).
    checkpoints: bool,
    resident: usize,
    filter_codes: u64,
    checkpoint_every: u64,
    /// Events (and admin commands) applied since the last checkpoint.
    since_checkpoint: u64,
    /// Writes checkpoints on a thread of their own (None: the store keeps none).
    checkpointer: Option<Arc<dyn Checkpointer>>,
    /// The checkpoint being written, readable by the engine's cold tier meanwhile.
    inflight: InFlightSlot,
    /// The thread writing it; answers the log seq the checkpoint reflects.
    writer: Option<std::thread::JoinHandle<Result<u64, StoreError>>>,
    /// Drop the log below this seq with the next commit (a checkpoint reflects it).
    truncate_below: Option<u64>,
    /// A checkpoint begun and not yet handed to the writer: its states are encoded a slice
    /// at a time between the requests (see [`Spreading`]).
    spreading: Option<Spreading>,
    /// The last commit known durable (commits finish in the order of their ids).
    durable_id: u64,
    /// This actor, to queue the next slice of a checkpoint behind the requests waiting.
    me: Option<actix::WeakAddr<Shard>>,
    /// Commits on a thread of its own when the store allows it (None: on this thread).
    committer: Option<Arc<dyn Committer>>,
    /// Batches for the commit thread (started with the actor), and its answers.
    commit_jobs: Option<std::sync::mpsc::Sender<(u64, Batch)>>,
    commit_done: Option<std::sync::mpsc::Receiver<(u64, Result<(), StoreError>)>>,
    commit_thread: Option<std::thread::JoinHandle<()>>,
    /// The commit being written; what arrives meanwhile is applied and waits for the next.
    committing: Option<Committing>,
    /// When the shard last logged that event ids were forgotten under the id bound.
    forgot_logged: Option<Instant>,
    /// Numbers the commits, to match the commit thread's answers.
    commit_id: u64,
    pipeline_min_events: usize,
    /// Counters.
    pub stats: ShardStats,
}

/// A batch handed to the store, waiting to be durable.
struct Committing {
    id: u64,
    /// Its callers, answered when it is durable.
    waiting: Vec<(Reply, Vec<Outcome>)>,
    events: usize,
    outputs: usize,
    /// The log's next seq once it is durable.
    log_end: u64,
    started: Instant,
}

/// A checkpoint begun as of the last event of a commit, whose entity states are encoded a
/// slice at a time, each slice a message queued behind the requests already waiting, so no
/// request waits for more than one slice. Once all are encoded and that commit is durable,
/// the checkpoint goes to the writer thread. (Encoding all at once stopped the shard for
/// 0.1-0.5 s every 100,000 events; BENCHMARKS.md.)
struct Spreading {
    /// The log seq the checkpoint reflects (every event before it).
    seq: u64,
    /// The commit holding its last events: it is written once that one is durable.
    after: u64,
    /// The shard's own state as of the beginning.
    extras: Vec<u8>,
    began: Instant,
    /// Seconds the shard spent on it: the beginning, then every slice.
    busy: f64,
    /// The longest the shard stopped for it at once.
    longest: f64,
    /// Seconds its beginning took (the engine's own state encoded, the changed keys taken).
    beginning: f64,
    slices: u32,
    /// Every state is encoded: waiting for the commit `after`.
    encoded: bool,
}

/// Encode the next slice of the checkpoint begun (sent by the shard to itself).
struct EncodeSlice;

impl Message for EncodeSlice {
    type Result = ();
}

/// States encoded between two checks of the time a slice has taken.
const SLICE_STATES: usize = 128;
/// The time a slice of a checkpoint's encoding may take before the shard turns to the
/// requests queued: about one commit's sync (BENCHMARKS.md).
const SLICE: Duration = Duration::from_micros(1000);

/// The commit thread finished commit `0`.
struct Committed(u64);

impl Message for Committed {
    type Result = ();
}

/// A checkpoint that could not be taken, and why.
fn checkpoint_error(why: String) -> StoreError {
    StoreError::Io {
        op: "checkpoint",
        table: "states",
        why,
    }
}

/// What a commit fails with when the commit thread is gone.
fn commit_thread_stopped() -> StoreError {
    StoreError::Io {
        op: "commit",
        table: "all",
        why: "the commit thread stopped".into(),
    }
}

/// Answers callers: their outcomes once durable, or the error.
fn answer(waiting: Vec<(Reply, Vec<Outcome>)>, r: &Result<(), ShardError>) {
    for (tx, outcomes) in waiting {
        let _ = tx.send(r.clone().map(|()| outcomes));
    }
}

/// Log entries that are not events start with this (events start with `{"id"` or similar).
const ADMIN_PREFIX: &[u8] = b"{\"admin\"";

/// The start of the log entry that opens an epoch of several events (see
/// `omnistream_actors::sharded`): `{"admin":"epoch","events":N}`, written in the same commit
/// as the N events after it, which ran together and replay so, whatever the number of
/// shards then. Events outside an epoch ran one at a time (one shard, or one event).
const EPOCH_MARK: &[u8] = b"{\"admin\":\"epoch\"";

/// The start of the log entry that says which rules the entries after it ran under:
/// `{"admin":"rules","rules":{..}}`, logged when a start's rules differ from those the log
/// (or the checkpoint before it) was written under.
const RULES_MARK: &[u8] = b"{\"admin\":\"rules\"";

/// The rules from here on in the log.
#[derive(serde::Serialize, serde::Deserialize)]
struct RulesEntry {
    admin: String,
    /// None when this build cannot read them ([`stored_rules`]).
    #[serde(deserialize_with = "stored_rules")]
    rules: Option<Rules>,
}

/// The settings (as dotted paths, `stock.cancel-unpaid-after-s`) that differ between two
/// sets of rules.
fn rules_changed(old: &Rules, new: &Rules) -> Vec<String> {
    match (serde_json::to_value(old), serde_json::to_value(new)) {
        (Ok(a), Ok(b)) => crate::changed_paths(&a, &b),
        _ => Vec::new(),
    }
}

/// An epoch marker.
#[derive(serde::Serialize, serde::Deserialize)]
struct EpochMark {
    admin: String,
    events: usize,
}

/// A command from the admin API, logged like an event so a replay repeats it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AdminEntry {
    /// `review` (a review's resolution), `overturn` (a block overturned), `adjust` (a
    /// points adjustment), `phone` (a phone replaced), `merge` (two members merged), `block`
    /// (a person's block set on `on` `member`) or `unblock` (lifted).
    admin: String,
    /// The command's own id.
    id: uuid::Uuid,
    /// Event time it ran at (µs).
    at_us: i64,
    /// The scan under review (a review).
    #[serde(default, skip_serializing_if = "uuid::Uuid::is_nil")]
    event: uuid::Uuid,
    /// The member holding the reward, or whose points are adjusted.
    member: String,
    /// Pay or refuse (a review).
    #[serde(default)]
    allow: bool,
    /// Points added or taken (an adjustment).
    #[serde(default, skip_serializing_if = "is_zero")]
    points: i64,
    /// The case an adjustment is recorded under.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    /// The campaign of a scan whose block is overturned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    campaign: Option<String>,
    /// The UTC offset of the scan a review or an overturn resolves, in minutes: the command
    /// runs in its local day, which the campaign's daily cap counts (0 in entries logged
    /// before it was kept, and for adjustments).
    #[serde(default, skip_serializing_if = "is_zero_i16")]
    offset_min: i16,
    /// Who asked, when by the service's clock, and why (absent in entries logged before
    /// it was kept): copied onto the resolution it makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<omnistream_actors::output::Resolver>,
    /// The new phone of a replacement, or the phone a merge keeps, as stored (hashed: the
    /// plain number is never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    /// The member a merge joins `member` with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    with: Option<String>,
    /// What a block is on (`member` then names the member, device, address or prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on: Option<BlockOn>,
    /// When a block ends, event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<omnistream_schemas::EventTime>,
}

impl AdminEntry {
    /// A person's command `admin` on `member` under `reference`, at the shard's event time.
    fn persons(
        admin: &str,
        id: uuid::Uuid,
        shard: &Shard,
        member: &str,
        reference: String,
        by: omnistream_actors::output::Resolver,
    ) -> AdminEntry {
        AdminEntry {
            admin: admin.into(),
            id,
            at_us: shard.engine.watermark().max(0),
            member: member.into(),
            reference: Some(reference),
            by: Some(by),
            ..AdminEntry::default()
        }
    }

    /// Runs the command; the resolution it makes carries who asked for it.
    fn apply(&self, engine: &mut Sharded, out: &mut Vec<Emitted>) -> usize {
        let from = out.len();
        let n = self.run(engine, out);
        if let Some(who) = &self.by {
            for e in &mut out[from..] {
                match &mut e.output {
                    Output::ReviewResolved {
                        scan_event,
                        refused: false,
                        by,
                        ..
                    } if *scan_event == self.event
                        && (self.admin == "review" || self.admin == "overturn") =>
                    {
                        *by = Some(Box::new(who.clone()));
                    }
                    Output::PointsAdjusted { by, .. } if self.admin == "adjust" => {
                        *by = Some(Box::new(who.clone()));
                    }
                    Output::PhoneReplaced { by, .. } if self.admin == "phone" => {
                        *by = Some(Box::new(who.clone()));
                    }
                    Output::MergeApproved { by, .. } if self.admin == "merge" => {
                        *by = Some(Box::new(who.clone()));
                    }
                    Output::BlockSet { by, .. } if self.admin == "block" => {
                        *by = Some(Box::new(who.clone()));
                    }
                    Output::BlockLifted { by, .. } if self.admin == "unblock" => {
                        *by = Some(Box::new(who.clone()));
                    }
                    _ => {}
                }
            }
        }
        n
    }

    fn run(&self, engine: &mut Sharded, out: &mut Vec<Emitted>) -> usize {
        let at = omnistream_schemas::EventTime {
            unix_us: self.at_us,
            offset_min: self.offset_min,
        };
        use omnistream_actors::{Cmd, Key, MemberCmd};
        let member = Key::Member(self.member.as_str().into());
        let (key, cmd) = match self.admin.as_str() {
            "adjust" => (
                member,
                Cmd::Member(MemberCmd::Adjust {
                    points: self.points,
                    reference: self.reference.as_deref().unwrap_or_default().into(),
                }),
            ),
            "phone" => (
                member,
                Cmd::Member(MemberCmd::ReplacePhone {
                    phone: self.phone.as_deref().unwrap_or_default().into(),
                    reference: self.reference.as_deref().unwrap_or_default().into(),
                }),
            ),
            "merge" => (
                member,
                Cmd::Member(MemberCmd::Join {
                    with: self.with.as_deref().unwrap_or_default().into(),
                    keep: self.phone.as_deref().map(Into::into),
                    reference: self.reference.as_deref().unwrap_or_default().into(),
                }),
            ),
            "block" | "unblock" => {
                use omnistream_actors::fraud::block::BlockCmd;
                let on = self.on.unwrap_or(BlockOn::Member);
                let campaign = self.campaign.as_deref().map(Into::into);
                let reference = self.reference.as_deref().unwrap_or_default().into();
                let block = if self.admin == "block" {
                    BlockCmd::Set {
                        campaign,
                        until: self.until,
                        reference,
                    }
                } else {
                    BlockCmd::Lift {
                        campaign,
                        reference,
                    }
                };
                let value: omnistream_actors::Str = self.member.as_str().into();
                let cmd = match on {
                    BlockOn::Member => Cmd::Member(MemberCmd::Block(block)),
                    _ => Cmd::Crowd(omnistream_actors::CrowdCmd::Block {
                        value: value.clone(),
                        block,
                    }),
                };
                (on.key(&value), cmd)
            }
            // the campaign grants the reward from its budget, then the member is paid
            "overturn" => (
                Key::Campaign(self.campaign.as_deref().unwrap_or_default().into()),
                Cmd::Campaign(omnistream_actors::CampaignCmd::Overturn {
                    member: self.member.as_str().into(),
                    scan: self.event,
                }),
            ),
            _ => (
                member,
                Cmd::Member(MemberCmd::ReviewResolve {
                    event: self.event,
                    allow: self.allow,
                }),
            ),
        };
        engine.command(key, cmd, self.id, at, out)
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_i16(n: &i16) -> bool {
    *n == 0
}

/// The points adjustments made, by member and then reference, with their points: a request
/// under a reference used before is its retry (or a conflict). A merge hands the alias's to
/// its survivor, so a retry through either id finds it.
#[derive(Debug, Default)]
struct Adjustments(AdjustedRefs);

/// Member → reference → points; a phone replacement's reference is kept under
/// [`phone_ref`], with a digest of the phone ([`digest`]) for its points.
type AdjustedRefs = std::collections::HashMap<String, std::collections::HashMap<String, i64>>;

/// The key a phone replacement's reference is kept under beside the adjustments' (a
/// reference holds no control character, so the two never meet).
fn phone_ref(reference: &str) -> String {
    format!("phone\u{1f}{reference}")
}

/// The key a merge's reference is kept under (under the member that gave its phone up, or
/// that the merge ran at), with a digest of the other member's id ([`digest`]).
fn merge_ref(reference: &str) -> String {
    format!("merge\u{1f}{reference}")
}

/// A phone (as stored) or a member id in 64 bits: which number a reference replaced the
/// phone with, or which member a reference merged with.
fn digest(value: &str) -> i64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(value.as_bytes());
    i64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

impl Adjustments {
    fn get(&self, member: &str, reference: &str) -> Option<i64> {
        self.0.get(member)?.get(reference).copied()
    }

    /// Keeps what `member`'s person's command under `key` did.
    fn record(&mut self, member: &str, key: String, value: i64) {
        self.0
            .entry(member.to_string())
            .or_default()
            .insert(key, value);
    }

    fn observe(&mut self, out: &[Emitted]) {
        for e in out {
            match &e.output {
                Output::PointsAdjusted {
                    member,
                    reference,
                    points,
                    ..
                } => self.record(member, reference.to_string(), *points),
                Output::PhoneReplaced {
                    member,
                    reference,
                    phone,
                    ..
                } => self.record(member, phone_ref(reference), digest(phone)),
                Output::MergeApproved {
                    member,
                    with,
                    reference,
                    ..
                } => self.record(member, merge_ref(reference), digest(with)),
                Output::Merged { survivor, alias } => {
                    if let Some(moved) = self.0.remove(alias.as_str()) {
                        let into = self.0.entry(survivor.to_string()).or_default();
                        for (r, p) in moved {
                            into.entry(r).or_insert(p);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Scans waiting for a person's review, and the member holding each reward.
#[derive(Debug, Default)]
struct Reviews(std::collections::HashMap<uuid::Uuid, String>);

impl Reviews {
    fn observe(&mut self, out: &[Emitted]) {
        for e in out {
            match &e.output {
                // a review holding nothing (the budget could not pay, the campaign pays no
                // points) has nothing to resolve: it is no review to a reviewer (404)
                Output::Decision {
                    scan_event,
                    member,
                    decision: omnistream_actors::fraud::Decision::Review,
                    held,
                    ..
                } if *held > 0 => {
                    self.0.insert(*scan_event, member.to_string());
                }
                Output::ReviewResolved { scan_event, .. } => {
                    self.0.remove(scan_event);
                }
                _ => {}
            }
        }
    }
}

/// What a person blocked, for the list of blocks in force: `on:value` (a member under its
/// survivor) → campaign (`""`: every campaign) → each block's case and who set it (two, after
/// a merge brought two members' blocks together: the state says which one holds). The blocks
/// themselves live with what they block; this says where to look, and who asked. A block
/// that ended leaves when the index is next read ([`BlockIndex::each_in_force`]).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct BlockIndex(std::collections::BTreeMap<String, std::collections::BTreeMap<String, Setters>>);

/// The cases set for one campaign, with who set each.
type Setters = Vec<(String, Option<omnistream_actors::output::Resolver>)>;

impl BlockIndex {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn observe(&mut self, out: &[Emitted]) {
        for e in out {
            match &e.output {
                Output::BlockSet {
                    on,
                    value,
                    campaign,
                    reference,
                    by,
                    ..
                } => {
                    let held = self
                        .0
                        .entry(format!("{}:{value}", on.as_str()))
                        .or_default();
                    let setter = vec![(reference.to_string(), by.as_deref().cloned())];
                    held.insert(campaign.as_deref().unwrap_or_default().to_string(), setter);
                }
                Output::BlockLifted {
                    on,
                    value,
                    campaign,
                    ..
                } => {
                    let key = format!("{}:{value}", on.as_str());
                    if let Some(held) = self.0.get_mut(&key) {
                        held.remove(campaign.as_deref().unwrap_or_default());
                        if held.is_empty() {
                            self.0.remove(&key);
                        }
                    }
                }
                // a member's blocks follow it into its survivor
                Output::Merged { survivor, alias } => {
                    if let Some(moved) = self.0.remove(&format!("member:{alias}")) {
                        let into = self.0.entry(format!("member:{survivor}")).or_default();
                        for (c, setters) in moved {
                            into.entry(c).or_default().extend(setters);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Every block in force now, in key order, each with who set it. What no longer holds a
    /// block in force (ended: the state may keep it until its next change) leaves the index
    /// here; a state that cannot be read stays.
    fn each_in_force(
        &mut self,
        engine: &Sharded,
        mut f: impl FnMut(&str, BlockOn, &str, &Block, Option<&omnistream_actors::output::Resolver>),
    ) {
        let now = engine.watermark();
        self.0.retain(|key, held| {
            let Some((kind, value)) = key
                .split_once(':')
                .and_then(|(k, v)| Some((BlockOn::parse(k)?, v)))
            else {
                return true;
            };
            let Some((value, blocks)) = engine.blocks_found(kind, value) else {
                return true;
            };
            let blocks: Vec<_> = blocks.into_iter().filter(|b| b.in_force(now)).collect();
            held.retain(|c, _| {
                (blocks.iter()).any(|b| b.campaign.as_deref().unwrap_or_default() == c)
            });
            for b in &blocks {
                let setters = held.get(b.campaign.as_deref().unwrap_or_default());
                let by = (setters.into_iter().flatten())
                    .find(|(r, _)| *r == b.reference)
                    .and_then(|(_, by)| by.as_ref());
                f(key, kind, &value, b, by);
            }
            !held.is_empty()
        });
    }

    /// A page of the blocks in force (on `on`, holding in `campaign`, when given) of what is
    /// blocked past `after` (an `on:value`), never splitting one thing's blocks: at most
    /// `limit` items unless one thing has more.
    fn page(
        &mut self,
        engine: &Sharded,
        on: Option<BlockOn>,
        campaign: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> BlockPage {
        let mut page = BlockPage::default();
        // the blocks of the thing being read, until the next thing's come
        let mut open: Option<(String, Vec<serde_json::Value>)> = None;
        // the key of the last thing on the page, once it is full
        let (mut last, mut full) = (None, false);
        let mut close = |open: &mut Option<(String, Vec<serde_json::Value>)>,
                         page: &mut BlockPage| {
            let Some((key, items)) = open.take() else {
                return;
            };
            if full {
                return;
            }
            if !page.items.is_empty() && page.items.len() + items.len() > limit {
                full = true;
                page.next = last.take();
                return;
            }
            page.items.extend(items);
            last = Some(key);
        };
        self.each_in_force(engine, |key, kind, value, b, by| {
            if on.is_some_and(|o| o != kind)
                || campaign.is_some_and(|c| b.campaign.as_deref().is_some_and(|mine| mine != c))
            {
                return;
            }
            page.total += 1;
            if after.is_some_and(|a| key <= a) {
                return;
            }
            if open.as_ref().is_none_or(|(k, _)| k != key) {
                close(&mut open, &mut page);
            }
            let mut item = serde_json::json!({"on": kind.as_str(), "value": value});
            if let (Some(o), Ok(serde_json::Value::Object(block))) =
                (item.as_object_mut(), serde_json::to_value(b))
            {
                o.extend(block);
            }
            if let Some(by) = by {
                item["by"] = serde_json::to_value(by).unwrap_or_default();
            }
            open.get_or_insert_with(|| (key.to_string(), Vec::new()))
                .1
                .push(item);
        });
        close(&mut open, &mut page);
        page
    }

    /// How many blocks are in force on each kind.
    fn counts(&mut self, engine: &Sharded) -> Vec<(BlockOn, u64)> {
        let mut n: Vec<(BlockOn, u64)> = BlockOn::ALL.iter().map(|&on| (on, 0)).collect();
        self.each_in_force(engine, |_, kind, _, _, _| {
            if let Some((_, c)) = n.iter_mut().find(|(on, _)| *on == kind) {
                *c += 1;
            }
        });
        n
    }
}

/// A page of `GET /v1/blocks`.
#[derive(Debug, Default)]
pub struct BlockPage {
    /// The blocks in force the query matches, on every page.
    pub total: usize,
    /// This page's.
    pub items: Vec<serde_json::Value>,
    /// The `after` of the next page, when there is one.
    pub next: Option<String>,
}

/// The blocks in force (`GET /v1/blocks`).
pub struct ListBlocks {
    /// Only those on this kind.
    pub on: Option<BlockOn>,
    /// Only those holding in this campaign (its own and those for every campaign).
    pub campaign: Option<String>,
    /// Only those of what is blocked past this `on:value` (the previous page's `next`).
    pub after: Option<String>,
    /// About this many items (a thing's blocks are never split over two pages).
    pub limit: usize,
    /// The page.
    pub reply: oneshot::Sender<Result<BlockPage, ShardError>>,
}

impl Message for ListBlocks {
    type Result = ();
}

impl Handler<ListBlocks> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ListBlocks, _: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            let _ = msg.reply.send(Err(ShardError::NotReady));
            return;
        }
        let page = self.blocked.page(
            &self.engine,
            msg.on,
            msg.campaign.as_deref(),
            msg.after.as_deref(),
            msg.limit,
        );
        let _ = msg.reply.send(Ok(page));
    }
}

/// How many blocks are in force on each kind (the `omnistream_blocks_in_force` gauge).
pub struct CountBlocks(pub oneshot::Sender<Vec<(BlockOn, u64)>>);

impl Message for CountBlocks {
    type Result = ();
}

impl Handler<CountBlocks> for Shard {
    type Result = ();

    fn handle(&mut self, msg: CountBlocks, _: &mut Self::Context) {
        if self.ready.load(Ordering::SeqCst) {
            let _ = msg.0.send(self.blocked.counts(&self.engine));
        }
    }
}

/// Scans' decisions answered most recently are remembered up to this many (the oldest
/// forgotten first): a scan sent again is answered with the decision it got.
pub const RECENT_ANSWERS: usize = 50_000;

/// Recent scans' decisions by scan id, each with its review's resolution once there is one:
/// what a scan sent again (a consumer's retry after a timeout) is answered with.
#[derive(Debug, Default)]
struct Answers {
    by_scan: std::collections::HashMap<uuid::Uuid, Vec<Emitted>>,
    order: std::collections::VecDeque<uuid::Uuid>,
}

impl Answers {
    fn observe(&mut self, out: &[Emitted]) {
        for e in out {
            let (scan, resolution) = match &e.output {
                Output::Decision { scan_event, .. } => (*scan_event, false),
                Output::ReviewResolved { scan_event, .. } => (*scan_event, true),
                _ => continue,
            };
            match self.by_scan.get_mut(&scan) {
                Some(answer) if resolution => {
                    answer.truncate(1);
                    answer.push(e.clone());
                }
                Some(answer) => *answer = vec![e.clone()],
                // a resolution whose decision came before what is remembered (before a
                // restart's checkpoint) is kept alone
                None => {
                    self.by_scan.insert(scan, vec![e.clone()]);
                    self.order.push_back(scan);
                }
            }
        }
        while self.order.len() > RECENT_ANSWERS {
            if let Some(old) = self.order.pop_front() {
                self.by_scan.remove(&old);
            }
        }
    }

    fn get(&self, scan: uuid::Uuid) -> Vec<Emitted> {
        self.by_scan.get(&scan).cloned().unwrap_or_default()
    }

    /// The resolution of the scan's review, once there is one (while remembered).
    fn resolution(&self, scan: uuid::Uuid) -> Option<&Emitted> {
        self.by_scan
            .get(&scan)?
            .iter()
            .find(|e| matches!(e.output, Output::ReviewResolved { .. }))
    }

    /// The answers of the store's last [`RECENT_ANSWERS`] decisions (and their
    /// resolutions), read back from its outputs, newest first, at most [`ANSWERS_READ`]
    /// outputs back: what the shard answered before a restart is answered the same after it.
    /// A convenience, never a condition of starting: what cannot be read or decoded is
    /// skipped with a warning (those scans sent again are answered without their decision).
    fn from_outputs(store: &dyn Store) -> Answers {
        const CHUNK: u64 = 16_384;
        let finders = [
            memchr::memmem::Finder::new(br#""output":"decision""#),
            memchr::memmem::Finder::new(br#""output":"review_resolved""#),
        ];
        let mut chunks = Vec::new();
        let mut hi = match store.next_output() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "retried scans' decisions not read back");
                return Answers::default();
            }
        };
        let (floor, mut found, mut undecodable) = (hi.saturating_sub(ANSWERS_READ), 0usize, 0u64);
        while hi > floor && found < RECENT_ANSWERS {
            let lo = hi.saturating_sub(CHUNK).max(floor);
            let rows = match store.outputs(lo, (hi - lo) as usize) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, before = hi, "retried scans' decisions read back only after this output");
                    break;
                }
            };
            // a store reads from `lo` on: rows from `hi` were read already, and none below it
            // means those outputs expired (`outputs-ttl-s`), and every older one with them
            let mut any = false;
            let mut kept = Vec::new();
            for (_, json) in rows.iter().take_while(|(seq, _)| *seq < hi) {
                any = true;
                if !finders.iter().any(|f| f.find(json).is_some()) {
                    continue;
                }
                match serde_json::from_slice::<Emitted>(json) {
                    Ok(e) => {
                        found += usize::from(matches!(e.output, Output::Decision { .. }));
                        kept.push(e);
                    }
                    Err(_) => undecodable += 1,
                }
            }
            chunks.push(kept);
            if !any {
                break;
            }
            hi = lo;
        }
        if undecodable > 0 {
            tracing::warn!(
                undecodable,
                "stored decisions this build cannot read are not answered to retried scans"
            );
        }
        let mut answers = Answers::default();
        for chunk in chunks.iter().rev() {
            answers.observe(chunk);
        }
        answers
    }
}

/// How many of the store's last outputs a restart reads to find the [`RECENT_ANSWERS`]
/// decisions to remember (a stream of few scans may hold fewer in them).
const ANSWERS_READ: u64 = 250_000;

/// Resolve the review of a scan: pay its held reward or refuse it; answers once durable.
pub struct Review {
    /// The scan's event id.
    pub event: uuid::Uuid,
    /// Pay the reward.
    pub allow: bool,
    /// Who asked, when and why.
    pub by: omnistream_actors::output::Resolver,
    /// The answer: `None` when no review of that scan is pending; a
    /// [`Outcome::Duplicate`] with the remembered outputs when it was resolved already.
    pub reply: oneshot::Sender<Option<Result<Vec<Outcome>, ShardError>>>,
}

impl Message for Review {
    type Result = ();
}

/// A person's adjustment of a member's points (`POST /v1/members/{id}/adjustments`), logged
/// like an event so a replay repeats it; one per member and reference.
pub struct Adjust {
    /// The member (an id merged away adjusts its survivor).
    pub member: String,
    /// Points added (> 0) or taken (< 0).
    pub points: i64,
    /// The case it is recorded under: a second adjustment of the member under it is the
    /// first one's retry.
    pub reference: String,
    /// Who asked, when and why.
    pub by: omnistream_actors::output::Resolver,
    /// The answer, once durable.
    pub reply: oneshot::Sender<Result<Adjusted, ShardError>>,
}

impl Message for Adjust {
    type Result = ();
}

/// A person's replacement of a member's phone (`POST /v1/members/{id}/phone`), logged like
/// an event so a replay repeats it.
pub struct ReplacePhone {
    /// The member (an id merged away is its survivor).
    pub member: String,
    /// The new phone, as stored (hashed).
    pub phone: String,
    /// The case it is recorded under.
    pub reference: String,
    /// Who asked, when and why.
    pub by: omnistream_actors::output::Resolver,
    /// The answer, once durable.
    pub reply: oneshot::Sender<Result<PhoneReplaced, ShardError>>,
}

impl Message for ReplacePhone {
    type Result = ();
}

/// What became of a [`ReplacePhone`].
#[derive(Debug)]
pub enum PhoneReplaced {
    /// No member has that id.
    NoMember,
    /// The member has that phone already, or the reference replaced it with this one
    /// before (a retry): nothing logged.
    Unchanged {
        /// The member (the survivor).
        member: String,
    },
    /// The reference replaced the member's phone with another number before: nothing
    /// logged.
    RefConflict {
        /// The member (the survivor).
        member: String,
    },
    /// Run and durable: replaced (`phone_replaced`), or refused (`merge_conflict`).
    Done {
        /// The member (the survivor).
        member: String,
        /// What it produced.
        outputs: Vec<Emitted>,
    },
}

/// The rules reloaded from the configuration (SIGHUP, `POST /v1/admin/reload`): events from
/// here on run under them, and the log says so at this point, so a replay switches here too.
pub struct ReloadRules {
    /// The rules now configured.
    pub rules: Rules,
    /// The settings that changed (dotted paths; none: the same rules), once the switch is
    /// durable.
    pub reply: oneshot::Sender<Result<Vec<String>, ShardError>>,
}

impl Message for ReloadRules {
    type Result = ();
}

impl Handler<ReloadRules> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ReloadRules, ctx: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            let _ = msg.reply.send(Err(ShardError::NotReady));
            return;
        }
        if msg.rules == self.rules {
            return self.answer_once_durable(msg.reply, Vec::new(), ctx);
        }
        let changed = rules_changed(&self.rules, &msg.rules);
        tracing::info!(changed = %changed.join(", "), "rules reloaded: events from here on run under them");
        self.rules = msg.rules;
        self.engine.set_rules(&self.rules);
        self.board.set_low_atp(self.rules.stock.low_stock_atp);
        // in the order of the switches, before any event under them is counted
        let campaigns = self.rules.campaigns.keys().map(|c| c.as_str());
        self.metrics.set_campaigns(campaigns);
        let entry = RulesEntry {
            admin: "rules".into(),
            rules: Some(self.rules.clone()),
        };
        self.log_entry(serde_json::to_vec(&entry).unwrap_or_default(), &[]);
        self.answer_once_durable(msg.reply, changed, ctx);
    }
}

/// A person's block on a member, a device, an address or a prefix, set or lifted (`POST
/// /v1/blocks`, `POST /v1/blocks/lift`), logged like an event so a replay repeats it.
pub struct SetBlock {
    /// What it is on.
    pub on: BlockOn,
    /// The member id (an id merged away is its survivor), device, address or prefix, in the
    /// form scans carry it.
    pub value: String,
    /// Set (`Set`) or lift (`Lift`), with the campaign and the case.
    pub block: BlockCmd,
    /// Who asked, when and why.
    pub by: omnistream_actors::output::Resolver,
    /// The answer, once durable.
    pub reply: oneshot::Sender<Result<BlockSet, ShardError>>,
}

impl Message for SetBlock {
    type Result = ();
}

/// What became of a [`SetBlock`].
#[derive(Debug)]
pub enum BlockSet {
    /// No member has that id.
    NoMember,
    /// The member is in a merge that never finished (its cascade was cut at the engine's
    /// bound): nothing logged.
    Merging {
        /// The member (the survivor of the id given).
        member: String,
    },
    /// The block's `until` is not after the service's event time now (the time it would be
    /// set at): it would block nothing. Nothing logged.
    Ended {
        /// The service's event time now.
        now: omnistream_schemas::EventTime,
    },
    /// Nothing to change: the same block is set (a retry), or there is no block to lift.
    /// Nothing logged.
    Unchanged {
        /// The member (the survivor), device, address or prefix.
        value: String,
        /// `Unchanged` or `NotBlocked`.
        change: Change,
        /// The blocks on it now.
        blocks: Vec<Block>,
        /// What the person may have meant instead (see [`block_warning`]).
        warning: Option<String>,
    },
    /// Run and durable.
    Done {
        /// The member (the survivor), device, address or prefix.
        value: String,
        /// `Set`, `Updated` or `Lifted`.
        change: Change,
        /// What it said (`block_set` or `block_lifted`).
        outputs: Vec<Emitted>,
        /// The blocks on it now.
        blocks: Vec<Block>,
        /// What the person may have meant instead (see [`block_warning`]).
        warning: Option<String>,
    },
}

/// A person's merge of two members (`POST /v1/members/{id}/merge`), logged like an event so
/// a replay repeats it.
pub struct MergeMembers {
    /// The member (an id merged away is its survivor).
    pub member: String,
    /// The other member.
    pub with: String,
    /// Whose phone the person keeps when the two have different phones (`member` or `with`,
    /// as given, or the member either leads to).
    pub keep_phone_of: Option<String>,
    /// The case it is recorded under.
    pub reference: String,
    /// Who asked, when and why.
    pub by: omnistream_actors::output::Resolver,
    /// The answer, once durable.
    pub reply: oneshot::Sender<Result<MembersMerged, ShardError>>,
}

impl Message for MergeMembers {
    type Result = ();
}

/// What became of a [`MergeMembers`].
#[derive(Debug)]
pub enum MembersMerged {
    /// No member has that id (the one given, `member` or `with`).
    NoMember(String),
    /// The two are one member already (merged before: a retry, or identities did it).
    Unchanged {
        /// The member both lead to.
        member: String,
    },
    /// The two have different phones and the request did not say whose to keep: nothing
    /// logged.
    PhonesDiffer {
        /// The member (the survivor of the id given).
        member: String,
        /// The other member (the survivor of the id given).
        with: String,
    },
    /// One of the two (named) is in a merge that never finished (its cascade was cut at
    /// the engine's bound): nothing logged.
    Merging(String),
    /// `keep_phone_of` named neither member (nor a member merged into either).
    KeepNeither,
    /// The reference merged one of the two with a third member before: nothing logged.
    RefConflict {
        /// The member that reference merged.
        member: String,
    },
    /// Run and durable (`merge_approved`, `merged` and what the merge moved).
    Done {
        /// The member the two are now (the smaller id).
        member: String,
        /// The other, an alias of it now.
        alias: String,
        /// What it produced.
        outputs: Vec<Emitted>,
    },
}

/// What became of an [`Adjust`].
#[derive(Debug)]
pub enum Adjusted {
    /// No member has that id.
    NoMember,
    /// The member was adjusted under that reference before, by `points`.
    Before {
        /// The member (the survivor).
        member: String,
        /// Points of that adjustment.
        points: i64,
    },
    /// Applied and durable.
    Done {
        /// The member (the survivor).
        member: String,
        /// What it produced (its ledger entry and `points_adjusted`).
        outputs: Vec<Emitted>,
    },
}

impl Shard {
    /// Builds the shard: opens nothing itself, replays the store's log into a fresh engine.
    pub fn new(
        store: Box<dyn Store>,
        rules: Rules,
        pii_key: &[u8],
        sc: ShardConfig,
        ready: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Result<Shard, StoreError> {
        // the key's fingerprint, when the store has none yet, goes with the first commit
        let key_check = crate::store::pii_key_unrecorded(&*store, pii_key)?;
        let low_atp = rules.stock.low_stock_atp;
        let checkpointer = store.checkpointer();
        let committer = store.committer().filter(|_| sc.commit_thread);
        let mut s = Shard {
            committer,
            commit_jobs: None,
            commit_done: None,
            commit_thread: None,
            committing: None,
            forgot_logged: None,
            commit_id: 0,
            pipeline_min_events: sc.pipeline_min_events,
            checkpoints: checkpointer.is_some(),
            checkpointer,
            inflight: InFlightSlot::default(),
            writer: None,
            truncate_below: None,
            spreading: None,
            durable_id: 0,
            me: None,
            resident: sc.resident,
            filter_codes: sc.filter_codes,
            checkpoint_every: sc.checkpoint_every,
            since_checkpoint: 0,
            metrics,
            board: Board::new(low_atp),
            durable: tokio::sync::watch::Sender::new(0),
            engine: Sharded::new(rules.clone(), sc.shards),
            rules,
            shards: sc.shards.max(1),
            store,
            stored_decoder: Decoder::new(Pii::for_stored(pii_key)),
            next_seq: 0,
            next_output: 0,
            applied: std::collections::HashMap::new(),
            batch: Batch::default(),
            waiting: Vec::new(),
            flush_scheduled: false,
            store_lost: false,
            exit_when_store_lost: sc.exit_when_store_lost,
            commit_every: sc.commit_every,
            commit_events: sc.commit_events,
            ready,
            reviews: Reviews::default(),
            adjusted: Adjustments::default(),
            blocked: BlockIndex::default(),
            answers: Answers::default(),
            key_check,
            stats: ShardStats::default(),
        };
        s.rebuild()?;
        // ready as soon as the log is replayed: requests that arrive before the actor has
        // started wait in its mailbox, so HTTP must not answer 503 in that window
        s.ready.store(true, Ordering::SeqCst);
        Ok(s)
    }

    /// Restores the last checkpoint, if any, and replays the durable log after it: the
    /// state after a restart, or after a failed commit whose events must not count.
    fn rebuild(&mut self) -> Result<(), StoreError> {
        // not ready while the state is rebuilt: it reads the store, which may hang until its
        // timeouts (a frozen node), and meanwhile /readyz must not say ready, nor reads answer
        // from a state that is being replaced
        self.ready.store(false, Ordering::SeqCst);
        if self.store_lost {
            return Err(StoreError::Reopen {
                op: "rebuild",
                table: "all",
                why: "a write failed on the disk before".into(),
            });
        }
        let r = self.rebuild_from_store();
        match &r {
            Ok(()) => self.ready.store(true, Ordering::SeqCst),
            // the rebuild's own reads find the store refusing until it is opened again (a
            // write failed on the disk and the pages read were not cached)
            Err(e) if e.needs_reopen() => self.lose_store(e),
            Err(_) => {}
        }
        r
    }

    fn rebuild_from_store(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        // a checkpoint begun is of the engine being replaced, and what was applied of the
        // sources goes with it
        self.spreading = None;
        self.applied.clear();
        let low_atp = self.rules.stock.low_stock_atp;
        let restore_err = |why: String| StoreError::Io {
            op: "restore",
            table: "checkpoint",
            why,
        };
        // a commit in flight finishes first, and its callers hear how it went; what was
        // applied after it is not durable and goes with the engine
        if let Some(c) = self.committing.take() {
            let r = self
                .receive(c.id)
                .map_err(|e| ShardError::Store(e.to_string()));
            answer(c.waiting, &r);
            if r.is_ok() {
                self.durable.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        self.drop_queued(&ShardError::Store(
            "the state was rebuilt from the store before this was written".into(),
        ));
        // a checkpoint still being written finishes (or fails) before the store is read
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.set_inflight(None);
        // a cold tier for each shard, all reading the store's states
        let colds: Option<Vec<Box<dyn omnistream_actors::cold::Cold>>> = (0..self.shards)
            .map(|_| {
                self.store.cold().map(|base| {
                    Box::new(Layered {
                        inflight: Arc::clone(&self.inflight),
                        base,
                    }) as Box<dyn omnistream_actors::cold::Cold>
                })
            })
            .collect();
        let mut in_effect: Option<Rules> = None;
        let mut adjusted = Adjustments::default();
        let mut blocked = BlockIndex::default();
        // the first output seq after the checkpoint, when it says
        let mut checkpoint_outputs = None;
        let (mut engine, mut reviews, mut board, from) =
            match (colds, self.store.last_checkpoint()?) {
                (Some(colds), Some(cp)) => {
                    let saved = omnistream_actors::engine::Checkpoint {
                        states: Vec::new(),
                        global: cp.global,
                        seen: cp.seen,
                        filter: cp.filter,
                    };
                    let x: Extras = serde_json::from_slice(&cp.extras)
                        .map_err(|e| restore_err(format!("shard state: {e}")))?;
                    checkpoint_outputs = x.next_output;
                    // the log after the checkpoint runs under the rules it was written under
                    // (older checkpoints do not say: the configured ones)
                    in_effect = x.rules;
                    let engine = Sharded::restore(
                        in_effect.clone().unwrap_or_else(|| self.rules.clone()),
                        self.shards,
                        &saved,
                        colds,
                        self.resident,
                        self.filter_codes,
                    )
                    .map_err(restore_err)?;
                    let board = Board::load(low_atp, x.board)
                        .map_err(|e| restore_err(format!("board: {e}")))?;
                    adjusted = Adjustments(x.adjusted);
                    blocked = x.blocked;
                    (engine, Reviews(x.reviews), board, cp.seq)
                }
                (colds, _) => {
                    let mut engine = Sharded::new(self.rules.clone(), self.shards);
                    if let Some(colds) = colds {
                        engine.set_cold(colds, self.resident, self.filter_codes);
                    }
                    (engine, Reviews::default(), Board::new(low_atp), 0)
                }
            };
        let mut scratch = Vec::new();
        let mut n = 0u64;
        let mut bad = None;
        let decoder = &self.stored_decoder;
        // the events an epoch marker announced run together once all have been read; the
        // others ran, and replay, one at a time
        let mut epoch: Vec<omnistream_schemas::Event> = Vec::new();
        let mut awaited = 0usize;
        let next = self.store.replay(from, &mut |seq, bytes| {
            if bytes.starts_with(EPOCH_MARK) {
                match serde_json::from_slice::<EpochMark>(bytes) {
                    Ok(m) => awaited = m.events,
                    Err(e) => {
                        bad.get_or_insert((seq, e.to_string()));
                    }
                }
            } else if bytes.starts_with(RULES_MARK) {
                match serde_json::from_slice::<RulesEntry>(bytes) {
                    Ok(r) => {
                        engine.set_rules(r.rules.as_ref().unwrap_or(&self.rules));
                        in_effect = r.rules;
                    }
                    Err(e) => {
                        bad.get_or_insert((seq, e.to_string()));
                    }
                }
            } else if bytes.starts_with(ADMIN_PREFIX) {
                match serde_json::from_slice::<AdminEntry>(bytes) {
                    Ok(a) => {
                        a.apply(&mut engine, &mut scratch);
                    }
                    Err(e) => {
                        bad.get_or_insert((seq, e.to_string()));
                    }
                }
            } else {
                match decoder.decode(bytes) {
                    Ok(ev) if awaited > 0 => {
                        board.saw(&engine, &ev);
                        epoch.push(ev);
                        n += 1;
                        if epoch.len() == awaited {
                            engine.apply_epoch(&epoch, &mut scratch);
                            epoch.clear();
                            awaited = 0;
                        }
                    }
                    Ok(ev) => {
                        board.saw(&engine, &ev);
                        engine.apply(&ev, &mut scratch);
                        n += 1;
                    }
                    Err(r) => {
                        bad.get_or_insert((seq, r.to_string()));
                    }
                }
            }
            reviews.observe(&scratch);
            adjusted.observe(&scratch);
            blocked.observe(&scratch);
            board.observe(&engine, &scratch);
            scratch.clear();
        })?;
        if !epoch.is_empty() {
            // a marker and its events are one commit: fewer events than it announced means
            // the log is damaged
            bad.get_or_insert((
                next,
                format!("an epoch of {awaited} events ends after {}", epoch.len()),
            ));
        }
        if let Some((seq, why)) = bad {
            return Err(StoreError::Io {
                op: "replay",
                table: "events",
                why: format!("logged event {seq} does not decode: {why}"),
            });
        }
        if let Some(why) = engine.take_cold_error() {
            return Err(crate::store::load_error(why));
        }
        // outputs that end before the checkpoint's: the log and outputs are older than the
        // checkpoint (a copy of the files taken while the service ran); going on would hand
        // out the missing outputs' seqs again. Read once, after the replay (which writes no
        // output and, on CQL, first makes sure the writer lease is this process's)
        let outputs_end = self.store.next_output()?;
        if let Some(at) = checkpoint_outputs.filter(|at| outputs_end < *at) {
            return Err(StoreError::Io {
                op: "restore",
                table: "outputs",
                why: format!(
                    "the outputs end at seq {outputs_end}, before the checkpoint's {at}: the log \
                     and outputs are older than the checkpoint, as files copied at different \
                     moments while the service ran are; restore the data directory from one \
                     copy taken while it was stopped (README, Backups)"
                ),
            });
        }
        self.reviews = reviews;
        self.adjusted = adjusted;
        self.blocked = blocked;
        self.metrics.reviews_pending(self.reviews.0.len());
        // retried scans are answered from the stored outputs, the log's tail among them
        self.answers = Answers::from_outputs(&*self.store);
        self.board = board;
        self.engine = engine;
        self.since_checkpoint = next - from;
        self.stats.restored_from = from;
        // the log below the restored checkpoint may still be there (a crash after the
        // checkpoint was written, before the commit that drops it)
        self.truncate_below = (from > 0).then_some(from);
        self.next_seq = next;
        self.next_output = outputs_end;
        self.stats.replayed = n;
        self.stats.replay_seconds = started.elapsed().as_secs_f64();
        self.run_configured_rules(in_effect.as_ref(), n);
        // the gauges a commit or a checkpoint sets, from the state just rebuilt: an idle
        // service after a restart shows what it holds, not zeros until its first commit
        self.observe_held(next);
        if let Some(codes) = self.store.code_registry() {
            self.metrics.code_registry(&codes);
        }
        Ok(())
    }

    /// From the end of the replayed log on, runs the configured rules: when the log was
    /// written under others (or does not say), the log says so first, in an entry that goes
    /// with the next commit, so a replay switches there too and no event is ever replayed
    /// under rules other than those it ran under.
    fn run_configured_rules(&mut self, in_effect: Option<&Rules>, replayed: u64) {
        if in_effect == Some(&self.rules) {
            return;
        }
        if let Some(old) = in_effect {
            tracing::warn!(
                changed = %rules_changed(old, &self.rules).join(", "),
                replayed,
                "the rules differ from those the stored state was built under: the events \
                 replayed from the log after the last checkpoint ran under those, new events \
                 run under the configured ones"
            );
        }
        self.engine.set_rules(&self.rules);
        let entry = RulesEntry {
            admin: "rules".into(),
            rules: Some(self.rules.clone()),
        };
        self.log_entry(serde_json::to_vec(&entry).unwrap_or_default(), &[]);
    }

    /// The checkpoint to write with the batch being committed, when one is due.
    /// Whether a periodic checkpoint is due.
    fn checkpoint_due(&self) -> bool {
        // evicted states wait in memory, encoded, until a checkpoint writes them: keep them
        // under half the resident bound
        let due = (self.checkpoint_every > 0 && self.since_checkpoint >= self.checkpoint_every)
            || (self.resident > 0 && self.engine.spilled() >= self.resident / 2);
        self.checkpoints && due && self.since_checkpoint > 0
    }

    /// Takes a checkpoint of the engine and the shard as of every event applied (all of
    /// them durable: called after a commit), all at once: at shutdown. One begun and not
    /// complete becomes part of it.
    fn take_checkpoint(&mut self) -> Result<CheckpointWrite, StoreError> {
        let started = Instant::now();
        self.spreading = None;
        let cp = self.engine.checkpoint().map_err(checkpoint_error)?;
        let extras = self.extras()?;
        self.stats.checkpoint_seconds = started.elapsed().as_secs_f64();
        self.stats.checkpoint_longest_stop_seconds = self.stats.checkpoint_seconds;
        self.metrics
            .checkpoint_stop_seconds
            .observe(self.stats.checkpoint_seconds);
        self.since_checkpoint = 0;
        Ok(CheckpointWrite {
            seq: self.next_seq,
            states: cp.states,
            global: cp.global,
            seen: cp.seen,
            filter: cp.filter,
            extras,
        })
    }

    /// The shard's own state in a checkpoint.
    fn extras(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(&Extras {
            reviews: self.reviews.0.clone(),
            adjusted: self.adjusted.0.clone(),
            blocked: self.blocked.clone(),
            board: self.board.save(),
            next_output: Some(self.next_output),
            rules: Some(self.engine.rules().clone()),
        })
        .map_err(|e| checkpoint_error(e.to_string()))
    }

    /// Begins a checkpoint as of the batch handed to the store as commit `after`, when one
    /// is due and none is being encoded or written; its states are encoded by
    /// [`Shard::encode_slice`].
    fn begin_checkpoint(&mut self, after: u64) -> Result<(), StoreError> {
        if self.writer.is_some()
            || self.spreading.is_some()
            || self.checkpointer.is_none()
            || !self.checkpoint_due()
        {
            return Ok(());
        }
        let began = Instant::now();
        self.engine.begin_checkpoint().map_err(checkpoint_error)?;
        let extras = self.extras()?;
        let busy = began.elapsed().as_secs_f64();
        self.spreading = Some(Spreading {
            seq: self.next_seq,
            after,
            extras,
            began,
            busy,
            longest: busy,
            beginning: busy,
            slices: 0,
            encoded: false,
        });
        self.since_checkpoint = 0;
        match self.me.as_ref().and_then(actix::WeakAddr::upgrade) {
            Some(me) => me.do_send(EncodeSlice),
            // not running as an actor: no requests to interleave with, encode them all now
            None => {
                while self.spreading.as_ref().is_some_and(|sp| !sp.encoded) {
                    self.encode_slice();
                }
            }
        }
        Ok(())
    }

    /// Encodes a slice of the begun checkpoint's states, and queues the next slice behind
    /// the requests waiting; hands the checkpoint to the writer once all are encoded.
    fn encode_slice(&mut self) {
        let Some(sp) = self.spreading.as_mut().filter(|sp| !sp.encoded) else {
            return;
        };
        let started = Instant::now();
        let done = loop {
            match self.engine.advance_checkpoint(SLICE_STATES) {
                Ok(false) if started.elapsed() < SLICE => {}
                Ok(done) => break done,
                Err(why) => {
                    self.spreading = None;
                    self.checkpoint_failed(&checkpoint_error(why));
                    return;
                }
            }
        };
        let took = started.elapsed().as_secs_f64();
        sp.busy += took;
        sp.longest = sp.longest.max(took);
        sp.slices += 1;
        sp.encoded = done;
        if done {
            self.checkpoint_encoded();
        } else if let Some(me) = self.me.as_ref().and_then(actix::WeakAddr::upgrade) {
            me.do_send(EncodeSlice);
        }
    }

    /// The begun checkpoint goes to the writer once its states are encoded and the commit of
    /// its last events is durable; its states are readable in flight from then on.
    fn checkpoint_encoded(&mut self) {
        let Some(sp) = self
            .spreading
            .take_if(|sp| sp.encoded && sp.after <= self.durable_id)
        else {
            return;
        };
        let started = Instant::now();
        let flight = self.engine.complete_checkpoint().map(|cp| {
            Arc::new(InFlight::new(CheckpointWrite {
                seq: sp.seq,
                states: cp.states,
                global: cp.global,
                seen: cp.seen,
                filter: cp.filter,
                extras: sp.extras,
            }))
        });
        let flight = match flight {
            Ok(f) => f,
            Err(why) => return self.checkpoint_failed(&checkpoint_error(why)),
        };
        let took = started.elapsed().as_secs_f64();
        self.stats.checkpoint_seconds = sp.busy + took;
        self.stats.checkpoint_longest_stop_seconds = sp.longest.max(took);
        self.metrics
            .checkpoint_stop_seconds
            .observe(self.stats.checkpoint_longest_stop_seconds);
        tracing::debug!(
            states = flight.cp.states.len(),
            busy_seconds = self.stats.checkpoint_seconds,
            longest_stop_seconds = self.stats.checkpoint_longest_stop_seconds,
            beginning_seconds = sp.beginning,
            completing_seconds = took,
            slices = sp.slices,
            seconds = sp.began.elapsed().as_secs_f64(),
            "checkpoint taken"
        );
        self.set_inflight(Some(Arc::clone(&flight)));
        if let Err(e) = self.start_writer(flight) {
            self.checkpoint_failed(&e);
        }
    }

    /// After commit `id` is durable: starts writing a checkpoint that waited for it, or
    /// takes in a written one (the log below it can go). A failed checkpoint write leaves
    /// the engine's idea of what the store holds wrong, so the engine is rebuilt from the
    /// last good checkpoint and the log.
    fn after_commit(&mut self, id: u64) {
        self.durable_id = id;
        if self.spreading.is_some() {
            self.checkpoint_encoded();
        } else if self.writer.as_ref().is_some_and(|w| w.is_finished()) {
            self.finish_writer();
        }
    }

    /// Waits for the checkpoint being written, if any, and takes in its result.
    fn finish_writer(&mut self) {
        let Some(w) = self.writer.take() else {
            return;
        };
        let result = w.join().unwrap_or_else(|_| {
            Err(StoreError::Io {
                op: "checkpoint",
                table: "states",
                why: "the writer thread panicked".into(),
            })
        });
        match result {
            Ok(seq) => {
                self.set_inflight(None);
                self.truncate_below = Some(seq);
                self.stats.checkpoints += 1;
                self.metrics.checkpoints.inc();
                // the checkpoint's codes are in the registry's runs from now on
                if let Some(codes) = self.store.code_registry() {
                    self.metrics.code_registry(&codes);
                }
            }
            Err(e) => self.checkpoint_failed(&e),
        }
    }

    fn checkpoint_failed(&mut self, e: &StoreError) {
        tracing::error!(error = %e, "checkpoint failed; rebuilding state from the store");
        self.rebuild_after(e);
    }

    /// After a write failed with `e`: the state is rebuilt from the store (not ready while
    /// that fails: [`Shard::rebuild`] says so), or, when the store must be opened again, the
    /// store is lost ([`Shard::lose_store`]).
    fn rebuild_after(&mut self, e: &StoreError) {
        if e.needs_reopen() {
            return self.lose_store(e);
        }
        if let Err(e) = self.rebuild() {
            tracing::error!(error = %e, "rebuild failed; not ready");
        }
    }

    /// Hands a checkpoint whose events are all durable to a thread that writes it.
    fn start_writer(&mut self, flight: Arc<InFlight>) -> Result<(), StoreError> {
        let Some(writer) = self.checkpointer.clone() else {
            return Ok(());
        };
        let took = self.metrics.checkpoint_write_seconds.clone();
        let handle = std::thread::Builder::new()
            .name("omnistream-checkpoint".into())
            .spawn(move || {
                let started = Instant::now();
                let r = writer.write(&flight.cp).map(|()| flight.cp.seq);
                if r.is_ok() {
                    took.observe(started.elapsed().as_secs_f64());
                }
                tracing::debug!(
                    states = flight.cp.states.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    ok = r.is_ok(),
                    "checkpoint written"
                );
                r
            })
            .map_err(|e| StoreError::Io {
                op: "checkpoint",
                table: "states",
                why: format!("starting the writer thread: {e}"),
            })?;
        self.writer = Some(handle);
        Ok(())
    }

    /// At shutdown: the checkpoint being written finishes, and one more is written (here,
    /// synchronously) unless nothing changed since, so the next start replays nothing.
    fn final_checkpoint(&mut self) {
        self.finish_writer();
        // a checkpoint begun and not written is finished with this one
        let nothing_new = self.since_checkpoint == 0 && self.spreading.is_none();
        if !self.checkpoints || nothing_new || !self.ready.load(Ordering::SeqCst) {
            return;
        }
        let Some(writer) = self.checkpointer.clone() else {
            return;
        };
        let written = self.take_checkpoint().and_then(|cp| {
            let started = Instant::now();
            let r = writer.write(&cp);
            if r.is_ok() {
                self.metrics
                    .checkpoint_write_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            tracing::info!(
                states = cp.states.len(),
                encoding_seconds = self.stats.checkpoint_seconds,
                writing_seconds = started.elapsed().as_secs_f64(),
                ok = r.is_ok(),
                "final checkpoint"
            );
            crate::free_in_background(cp);
            r
        });
        match written {
            Ok(()) => {
                self.stats.checkpoints += 1;
                self.metrics.checkpoints.inc();
            }
            Err(e) => {
                tracing::error!(error = %e, "final checkpoint failed; the next start replays the log")
            }
        }
    }

    /// After the last commit and checkpoint: the entities' memory is given back on a thread
    /// of its own (see [`crate::free_in_background`]); the shard answers nothing after this.
    /// The engine's handles on the store close here first, so the store can be opened again
    /// as soon as the shard has stopped (a restart in the same process).
    fn let_go(&mut self) {
        let empty = Sharded::new(self.engine.rules().clone(), self.engine.shards());
        let mut engine = std::mem::replace(&mut self.engine, empty);
        drop(engine.take_colds());
        crate::free_in_background(engine);
    }

    /// Commits what waits, unless a commit is being written: then what waits goes with the
    /// next one, started when that commit is durable (so batches grow with the load).
    fn flush(&mut self) -> Result<(), ShardError> {
        self.flush_scheduled = false;
        if !self.ready.load(Ordering::SeqCst) {
            // a failed commit's events may still be in the engine: write nothing (above all
            // no checkpoint of that state) until a rebuild from the store succeeds
            self.drop_queued(&ShardError::NotReady);
            return Err(ShardError::NotReady);
        }
        if self.committing.is_some() || (self.waiting.is_empty() && self.batch.is_empty()) {
            return Ok(());
        }
        self.dispatch()
    }

    /// Commits what waits and waits for it (and for a commit already being written): at
    /// shutdown, and wherever everything applied must be durable before going on.
    fn flush_sync(&mut self) -> Result<(), ShardError> {
        let before = self.wait_commit();
        let r = self.flush().and_then(|()| self.wait_commit());
        before.and(r)
    }

    /// Answers the callers of everything applied but not handed to the store, and drops it:
    /// the engine is rebuilt from the store, or nothing may be written.
    fn drop_queued(&mut self, err: &ShardError) {
        self.batch = Batch::default();
        answer(std::mem::take(&mut self.waiting), &Err(err.clone()));
    }

    /// Hands the batch to the store: to the commit thread when there is one (the shard goes
    /// on applying), here otherwise. A checkpoint due now is taken with it.
    fn dispatch(&mut self) -> Result<(), ShardError> {
        let mut batch = std::mem::take(&mut self.batch);
        self.commit_id += 1;
        let mut c = Committing {
            id: self.commit_id,
            waiting: std::mem::take(&mut self.waiting),
            events: batch.event_count(),
            outputs: 0,
            log_end: self.next_seq,
            started: Instant::now(),
        };
        if let Some(row) = &self.key_check {
            batch.positions.push(row.clone());
        }
        // an entity that failed to load or encode leaves the engine untrustworthy: nothing
        // it produced is committed, and it is rebuilt from the store (in `finish`)
        if let Some(why) = self.engine.take_cold_error() {
            return self.finish(c, Err(crate::store::load_error(why)));
        }
        if let Err(e) = self.begin_checkpoint(c.id) {
            return self.finish(c, Err(e));
        }
        batch.truncate_below = self.truncate_below.take();
        c.outputs = batch.output_count();
        if let Some(jobs) = self
            .commit_jobs
            .as_ref()
            .filter(|_| c.events >= self.pipeline_min_events)
        {
            if jobs.send((c.id, batch)).is_ok() {
                self.committing = Some(c);
                return Ok(());
            }
            return self.finish(c, Err(commit_thread_stopped()));
        }
        batch.encode();
        let r = self.store.commit(&batch);
        self.finish(c, r)
    }

    /// The commit thread's answer to commit `id` (blocking until it comes).
    fn receive(&mut self, id: u64) -> Result<(), StoreError> {
        while let Some(Ok((done, r))) = self.commit_done.as_ref().map(|rx| rx.recv()) {
            if done == id {
                return r;
            }
        }
        Err(commit_thread_stopped())
    }

    /// Waits for the commit being written, if any, and answers its callers.
    fn wait_commit(&mut self) -> Result<(), ShardError> {
        match self.committing.take() {
            Some(c) => {
                let r = self.receive(c.id);
                self.finish(c, r)
            }
            None => Ok(()),
        }
    }

    /// A commit is over: answer its callers; after a failure, everything applied since the
    /// last durable commit is dropped and the engine is rebuilt from the store.
    fn finish(&mut self, c: Committing, result: Result<(), StoreError>) -> Result<(), ShardError> {
        let seconds = c.started.elapsed().as_secs_f64();
        let _span =
            tracing::debug_span!("commit", events = c.events, outputs = c.outputs).entered();
        if seconds > SLOW_COMMIT_S + COMMIT_S_PER_EVENT * c.events as f64 {
            // a slow commit holds every caller of its batch and everything queued behind
            tracing::warn!(
                ok = result.is_ok(),
                seconds,
                events = c.events,
                checkpoint_writing = self.writer.is_some(),
                "slow commit"
            );
        } else {
            tracing::debug!(ok = result.is_ok(), seconds, "committed");
        }
        self.metrics.commit_seconds.observe(seconds);
        match result {
            Ok(()) => {
                self.metrics.commit_events.observe(c.events as f64);
                self.observe_held(c.log_end);
                let passivated = self.engine.evicted();
                self.metrics
                    .passivated
                    .inc_by(passivated.saturating_sub(self.stats.passivated));
                self.stats.passivated = passivated;
                self.stats.resident = self.engine.resident();
                if let Some(cache) = self.store.read_cache() {
                    self.metrics.read_cache(&cache);
                }
                self.stats.commits += 1;
                self.stats.max_batch = self.stats.max_batch.max(c.events);
                // every commit carries the row while it is unrecorded: this one did
                self.key_check = None;
                answer(c.waiting, &Ok(()));
                self.durable.send_modify(|n| *n = n.wrapping_add(1));
                self.after_commit(c.id);
                Ok(())
            }
            Err(e) => {
                self.stats.failed_commits += 1;
                self.metrics.commit_failures.inc();
                tracing::error!(error = %e, events = c.events, "commit failed; rebuilding state from the store");
                let err = ShardError::Store(e.to_string());
                answer(c.waiting, &Err(err.clone()));
                // applied after it, so not durable either
                self.drop_queued(&err);
                // the engine applied events that are not durable: start again from the log
                self.rebuild_after(&e);
                Err(err)
            }
        }
    }

    /// The embedded store refuses every write until it is opened again (a write failed on
    /// the disk: redb's "previous I/O error"), which only a new start does: the shard applies
    /// nothing more and says not ready, and the process exits with code 3 so its supervisor
    /// (systemd, Kubernetes) starts it again. Everything answered is durable in the log; a
    /// restart replays it, once the disk has room, or stops at start-up saying why not.
    fn lose_store(&mut self, e: &StoreError) {
        self.store_lost = true;
        self.ready.store(false, Ordering::SeqCst);
        self.drop_queued(&ShardError::Store(e.to_string()));
        if self.exit_when_store_lost {
            tracing::error!(error = %e, "the store must be opened again: exiting with code 3 for a restart (everything answered is durable)");
            std::process::exit(3);
        }
        tracing::error!(error = %e, "the store must be opened again: not ready until a restart");
    }

    /// Starts the commit thread, when the store can commit from one.
    fn start_committer(&mut self, shard: actix::WeakAddr<Shard>) {
        let Some(committer) = self.committer.clone() else {
            return;
        };
        let (jobs, inbox) = std::sync::mpsc::channel::<(u64, Batch)>();
        let (done, answers) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("omnistream-commit".into())
            .spawn(move || {
                for (id, mut batch) in inbox {
                    batch.encode();
                    let r = committer.commit(&batch);
                    if done.send((id, r)).is_err() {
                        break;
                    }
                    if let Some(shard) = shard.upgrade() {
                        shard.do_send(Committed(id));
                    }
                }
            });
        match spawned {
            Ok(thread) => {
                self.commit_thread = Some(thread);
                self.commit_jobs = Some(jobs);
                self.commit_done = Some(answers);
            }
            Err(e) => {
                tracing::warn!(error = %e, "no commit thread; committing on the shard's thread")
            }
        }
    }

    /// Schedules the next commit unless one is already due. With `group-commit-ms = 0` the
    /// commit runs as soon as the mailbox is drained (actix polls the actor's spawned futures
    /// only after every message that is ready): under light load each request waits for one
    /// write, under heavy load the requests that queued during a write share the next one, so
    /// batches grow with the load without a timer adding latency. A positive value waits that
    /// long first, to gather larger batches.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled {
            return;
        }
        self.flush_scheduled = true;
        if self.commit_every.is_zero() {
            ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, _| {
                let _ = act.flush();
            }));
        } else {
            ctx.run_later(self.commit_every, |act, _| {
                let _ = act.flush();
            });
        }
    }

    /// Logs an applied entry (an event or an admin command) at the next seq in the batch being
    /// built, with what it produced, and lets the board, the reviews and the metrics see it.
    fn log_entry(&mut self, json: Vec<u8>, emitted: &[Emitted]) {
        self.batch.events.push((self.next_seq, json));
        self.logged(emitted);
    }

    /// [`Shard::log_entry`] for an event, held as it is: the thread that commits the batch
    /// encodes it.
    fn log_event(&mut self, ev: Box<Event>, emitted: &[Emitted]) {
        self.board.saw(&self.engine, &ev);
        self.batch.unencoded.events.push((self.next_seq, ev));
        self.logged(emitted);
    }

    /// What follows logging an entry: the observers, the seqs, its outputs.
    fn logged(&mut self, emitted: &[Emitted]) {
        self.metrics.observe(emitted);
        self.board.observe(&self.engine, emitted);
        self.reviews.observe(emitted);
        self.adjusted.observe(emitted);
        self.blocked.observe(emitted);
        self.metrics.reviews_pending(self.reviews.0.len());
        self.answers.observe(emitted);
        self.next_seq += 1;
        self.since_checkpoint += 1;
        self.push_outputs(emitted);
    }

    /// Sets (or clears) the checkpoint in flight the engine's cold tier reads first.
    fn set_inflight(&self, flight: Option<Arc<InFlight>>) {
        *self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = flight;
    }

    /// Adds outputs (and so ledger entries) to the batch being built, as values: the
    /// thread that commits the batch encodes them.
    fn push_outputs(&mut self, emitted: &[Emitted]) {
        let outputs = &mut self.batch.unencoded.outputs;
        outputs.reserve(emitted.len());
        for e in emitted {
            outputs.push((self.next_output, e.clone()));
            self.next_output += 1;
        }
    }

    fn apply(&mut self, source: &str, position: Option<u64>, items: Vec<Item>) -> Vec<Outcome> {
        if self.shards > 1 {
            return self.apply_epoch(source, position, items);
        }
        let mut outcomes = Vec::with_capacity(items.len());
        let mut emitted = Vec::new();
        for item in items {
            match item {
                Item::Event(ev) => {
                    // ids and types only: personal values never reach the logs
                    let _span =
                        tracing::debug_span!("event", id = %ev.id, kind = ev.body.kind().name())
                            .entered();
                    let applied = self.engine.apply(&ev, &mut emitted);
                    tracing::debug!(outputs = emitted.len(), ?applied, "applied");
                    match applied {
                        Applied::Duplicate => {
                            self.metrics.event(ev.body.kind().name(), "duplicate");
                            self.stats.duplicates += 1;
                            outcomes.push(duplicate(&ev, self.answers.get(ev.id)));
                        }
                        Applied::Done(_) => {
                            self.stats.applied += 1;
                            self.metrics.event(ev.body.kind().name(), "accepted");
                            let id = ev.id;
                            self.log_event(ev, &emitted);
                            outcomes.push(Outcome::Accepted {
                                id,
                                outputs: std::mem::take(&mut emitted),
                            });
                        }
                        Applied::Late => {
                            let why = too_late(ev.ts.unix_us, self.engine.coordinator());
                            let out = self.reject(source, Refused::decoded(&ev, why));
                            outcomes.push(out);
                        }
                    }
                }
                Item::Rejected(r) => {
                    let out = self.reject(source, r);
                    outcomes.push(out);
                }
            }
        }
        self.set_position(source, position.unwrap_or(self.next_seq));
        outcomes
    }

    /// [`Shard::apply`] on several shards: the request's events run as one epoch (see
    /// `omnistream_actors::sharded`), are logged in order and closed by an epoch marker so a
    /// replay runs them together again; their outputs follow, in the order they were made.
    fn apply_epoch(
        &mut self,
        source: &str,
        position: Option<u64>,
        items: Vec<Item>,
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
        let mut events = Vec::new();
        let mut slots = Vec::new();
        for item in items {
            match item {
                Item::Event(ev) => {
                    slots.push(outcomes.len());
                    outcomes.push(None);
                    events.push(*ev);
                }
                Item::Rejected(r) => {
                    let out = self.reject(source, r);
                    outcomes.push(Some(out));
                }
            }
        }
        if !events.is_empty() {
            let mut emitted = Vec::new();
            let mut owners = Vec::new();
            let results = self
                .engine
                .apply_epoch_owned(&events, &mut emitted, Some(&mut owners));
            let mut logged = Vec::new();
            for ((ev, (applied, _)), slot) in
                events.into_iter().zip(results).zip(slots.iter().copied())
            {
                let kind = ev.body.kind().name();
                let out = match applied {
                    Applied::Duplicate => {
                        self.metrics.event(kind, "duplicate");
                        self.stats.duplicates += 1;
                        duplicate(&ev, self.answers.get(ev.id))
                    }
                    Applied::Done(_) => {
                        self.stats.applied += 1;
                        self.metrics.event(kind, "accepted");
                        let id = ev.id;
                        // encoded by the thread that commits the batch
                        logged.push(Box::new(ev));
                        // its outputs are moved in once the batch has them (below)
                        Outcome::Accepted {
                            id,
                            outputs: Vec::new(),
                        }
                    }
                    Applied::Late => {
                        let why = too_late(ev.ts.unix_us, self.engine.coordinator());
                        self.reject(source, Refused::decoded(&ev, why))
                    }
                };
                outcomes[slot] = Some(out);
            }
            // the marker first, in the same commit: a replay then knows, whatever its number
            // of shards, which events ran together (one alone runs as one engine runs it)
            if logged.len() > 1 {
                let mark = EpochMark {
                    admin: "epoch".into(),
                    events: logged.len(),
                };
                let json = serde_json::to_vec(&mark).unwrap_or_default();
                self.batch.events.push((self.next_seq, json));
                self.next_seq += 1;
            }
            for ev in logged {
                self.board.saw(&self.engine, &ev);
                self.batch.unencoded.events.push((self.next_seq, ev));
                self.next_seq += 1;
                self.since_checkpoint += 1;
            }
            self.metrics.observe(&emitted);
            self.board.observe(&self.engine, &emitted);
            self.reviews.observe(&emitted);
            self.adjusted.observe(&emitted);
            self.blocked.observe(&emitted);
            self.metrics.reviews_pending(self.reviews.0.len());
            self.answers.observe(&emitted);
            self.push_outputs(&emitted);
            // each answer gets its own event's outputs and those of the timers it made due,
            // as with one shard; moved, not copied
            let mut own: Vec<Vec<Emitted>> = slots.iter().map(|_| Vec::new()).collect();
            for (e, i) in emitted.into_iter().zip(owners) {
                own[i].push(e);
            }
            for (outs, slot) in own.into_iter().zip(slots) {
                if let Some(Outcome::Accepted { outputs, .. }) = &mut outcomes[slot] {
                    *outputs = outs;
                }
            }
        }
        self.set_position(source, position.unwrap_or(self.next_seq));
        outcomes.into_iter().flatten().collect()
    }

    /// The gauges of what the shard holds: the durable log's end, resident entities, and the
    /// remembered event ids (after a commit, and after the state is rebuilt).
    fn observe_held(&mut self, log_end: u64) {
        self.metrics
            .log_events
            .set(i64::try_from(log_end).unwrap_or(i64::MAX));
        self.metrics.resident("0", &self.engine.counts());
        self.observe_remembered_ids();
    }

    /// After a commit: the remembered event ids in the metrics, and a warning (at most once a
    /// minute) while the id bound forgets ids, since the lateness window then shrinks.
    fn observe_remembered_ids(&mut self) {
        let ids = self.engine.remembered_ids();
        self.metrics
            .remembered_ids
            .set(i64::try_from(ids).unwrap_or(i64::MAX));
        let forgotten = self.engine.stats().forgotten;
        self.metrics
            .forgotten_ids
            .inc_by(forgotten.saturating_sub(self.stats.forgotten_ids));
        if forgotten > self.stats.forgotten_ids
            && self
                .forgot_logged
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.forgot_logged = Some(Instant::now());
            tracing::warn!(
                forgotten,
                remembered = ids,
                refused_before = %omnistream_schemas::EventTime::from_unix_ms(
                    self.engine.remembered_from_us() / 1000
                ),
                max_remembered_ids = self.engine.rules().max_remembered_ids,
                "event ids forgotten under max-remembered-ids: older events are refused as too_late"
            );
        }
        self.stats.forgotten_ids = forgotten;
    }

    /// Counts a refused item and writes it to the dead letters (with the batch being built).
    fn reject(&mut self, source: &str, r: Refused) -> Outcome {
        let Refused {
            kind,
            id,
            reasons,
            raw,
        } = r;
        self.stats.rejected += 1;
        self.metrics.refused(kind, &reasons);
        let dead = serde_json::json!({
            "output": "dead_letter", "source": source, "id": id,
            "reasons": reasons, "raw": raw, "received_at": wall_clock_text(),
        });
        self.batch.outputs.push((
            self.next_output,
            serde_json::to_vec(&dead).unwrap_or_default(),
        ));
        self.next_output += 1;
        Outcome::Rejected { id, reasons }
    }

    /// Records a source's position in the batch being built (committed with it).
    fn set_position(&mut self, source: &str, pos: u64) {
        match self.batch.positions.iter_mut().find(|(s, _)| s == source) {
            Some(p) => p.1 = pos,
            None => self.batch.positions.push((source.to_string(), pos)),
        }
        match self.applied.get_mut(source) {
            Some(p) => *p = pos,
            None => {
                self.applied.insert(source.to_string(), pos);
            }
        }
    }

    /// Whether a source's batch that follows position `after` follows what was applied of
    /// it: the error when another position was (a batch before it failed, and the state was
    /// rebuilt without it).
    fn follows(&self, source: &str, after: u64) -> Result<(), ShardError> {
        let at = match self.applied.get(source) {
            Some(p) => *p,
            None => self
                .store
                .position(source)
                .map_err(|e| ShardError::Store(e.to_string()))?
                .unwrap_or(0),
        };
        if at == after {
            Ok(())
        } else {
            Err(ShardError::OutOfOrder {
                name: source.to_string(),
                at,
                after,
            })
        }
    }
}

impl Drop for Shard {
    /// Stops the commit thread and waits for it: it holds the store's files open, and the
    /// next shard over the same directory must be able to open them.
    fn drop(&mut self) {
        self.commit_jobs = None;
        if let Some(t) = self.commit_thread.take() {
            let _ = t.join();
        }
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // bounded mailbox: senders wait (and HTTP answers 429 first, by its own count)
        ctx.set_mailbox_capacity(1024);
        self.me = Some(ctx.address().downgrade());
        self.start_committer(ctx.address().downgrade());
        self.ready.store(true, Ordering::SeqCst);
        // a failed rebuild leaves the shard not ready (ingest answers 503); the store usually
        // comes back by itself, so try again, backing off, rather than stay so until a restart
        let mut wait = REBUILD_RETRY_MIN;
        let mut next_try = Instant::now();
        ctx.run_interval(REBUILD_RETRY_MIN, move |act, _| {
            if act.ready.load(Ordering::SeqCst) {
                wait = REBUILD_RETRY_MIN;
                // a checkpoint written while no commit came: take it in now, not with the
                // next event (an idle service would otherwise keep its log and show none)
                if act.writer.as_ref().is_some_and(|w| w.is_finished()) {
                    act.finish_writer();
                }
                return;
            }
            if Instant::now() < next_try {
                return;
            }
            match act.rebuild() {
                Ok(()) => {
                    tracing::info!(
                        replayed = act.stats.replayed,
                        seconds = act.stats.replay_seconds,
                        "store answers again: state rebuilt from the log, ready"
                    );
                    act.ready.store(true, Ordering::SeqCst);
                    wait = REBUILD_RETRY_MIN;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "rebuild failed; still not ready");
                    next_try = Instant::now() + wait;
                    wait = (wait * 2).min(REBUILD_RETRY_MAX);
                }
            }
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        // a checkpoint at shutdown: the next start replays nothing
        let flushed = self.flush_sync();
        self.final_checkpoint();
        tracing::debug!(flushed = flushed.is_ok(), "shard stopping");
        self.let_go();
        Running::Stop
    }
}

impl Handler<Ingest> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Ingest, ctx: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            // the engine may still hold a failed commit's events: apply nothing on top of them
            let _ = msg.reply.send(Err(ShardError::NotReady));
            return;
        }
        if let Some(after) = msg.after {
            if let Err(e) = self.follows(&msg.source, after) {
                let _ = msg.reply.send(Err(e));
                return;
            }
        }
        let _span =
            tracing::debug_span!("ingest", source = %msg.source, items = msg.items.len()).entered();
        let outcomes = self.apply(&msg.source, msg.position, msg.items);
        for (source, pos) in &msg.also {
            self.set_position(source, *pos);
        }
        self.metrics.decided(msg.received.elapsed());
        self.waiting.push((msg.reply, outcomes));
        if self.batch.event_count() >= self.commit_events {
            let _ = self.flush();
        } else {
            self.schedule_flush(ctx);
        }
    }
}

impl<F, R> Handler<Read<F>> for Shard
where
    F: FnOnce(&Sharded, &dyn Store) -> R + Send + 'static,
    R: Send + 'static,
{
    type Result = MessageResult<Read<F>>;

    fn handle(&mut self, msg: Read<F>, _: &mut Self::Context) -> Self::Result {
        MessageResult((msg.0)(&self.engine, self.store.as_ref()))
    }
}

impl<F, R> Handler<ReadReviewed<F>> for Shard
where
    F: FnOnce(&Sharded, &dyn Store, &dyn Fn(uuid::Uuid) -> Option<serde_json::Value>) -> R
        + Send
        + 'static,
    R: Send + 'static,
{
    type Result = MessageResult<ReadReviewed<F>>;

    fn handle(&mut self, msg: ReadReviewed<F>, _: &mut Self::Context) -> Self::Result {
        let answers = &self.answers;
        let resolution = |scan: uuid::Uuid| {
            answers
                .resolution(scan)
                .and_then(|e| serde_json::to_value(&e.output).ok())
        };
        MessageResult((msg.0)(&self.engine, self.store.as_ref(), &resolution))
    }
}

impl Handler<Review> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Review, ctx: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            let _ = msg.reply.send(Some(Err(ShardError::NotReady)));
            return;
        }
        let Some(member) = self.reviews.0.get(&msg.event).cloned() else {
            // resolved before (a reviewer's retry after a lost answer): what it became; or
            // never held for review (blocked, allowed): what it was decided, so the answer
            // can say so
            let answered = self.answers.get(msg.event);
            let resolved = self.answers.resolution(msg.event).is_some();
            // a block a person allows is overturned: its reward granted and paid now, in the
            // scan's local day (not a scan of a member_id never issued: nobody to pay)
            let blocked = answered.iter().find_map(|e| match &e.output {
                Output::Decision {
                    decision: omnistream_actors::fraud::Decision::Block,
                    member,
                    campaign,
                    no_reward,
                    ..
                } if *no_reward != Some(omnistream_actors::fraud::NoReward::UnknownMember) => {
                    Some((member.to_string(), campaign.to_string(), e.at.offset_min))
                }
                _ => None,
            });
            if let Some((member, campaign, offset_min)) = blocked.filter(|_| msg.allow && !resolved)
            {
                let entry = AdminEntry {
                    admin: "overturn".into(),
                    id: uuid::Uuid::from_u64_pair(0x4f56_4552_5455, self.next_seq),
                    at_us: self.engine.watermark().max(0),
                    event: msg.event,
                    member,
                    allow: true,
                    points: 0,
                    reference: None,
                    campaign: Some(campaign),
                    offset_min,
                    by: Some(msg.by),
                    ..AdminEntry::default()
                };
                let rx = self.run_admin(&entry, ctx);
                actix::spawn(async move {
                    let _ = msg.reply.send(rx.await.ok());
                });
                return;
            }
            if !resolved && answered.is_empty() {
                let _ = msg.reply.send(None);
                return;
            }
            // a resolution just applied may not be durable yet: its retry is answered with it
            let rx = self.once_durable(
                vec![Outcome::Duplicate {
                    id: msg.event,
                    answered,
                    about: None,
                }],
                ctx,
            );
            actix::spawn(async move {
                let _ = msg.reply.send(rx.await.ok());
            });
            return;
        };
        let seq = self.next_seq;
        // a deterministic id for the command; it runs at the current event time
        let entry = AdminEntry {
            admin: "review".into(),
            id: uuid::Uuid::from_u64_pair(0x5245_5649_4557, seq),
            at_us: self.engine.watermark().max(0),
            event: msg.event,
            member,
            allow: msg.allow,
            points: 0,
            reference: None,
            campaign: None,
            // the scan's offset, while its decision is remembered: the daily cap's local day
            offset_min: self
                .answers
                .get(msg.event)
                .iter()
                .find(|e| matches!(e.output, Output::Decision { .. }))
                .map_or(0, |e| e.at.offset_min),
            by: Some(msg.by),
            ..AdminEntry::default()
        };
        let rx = self.run_admin(&entry, ctx);
        // the caller waits for the commit; forward its answer
        actix::spawn(async move {
            let _ = msg.reply.send(rx.await.ok());
        });
    }
}

impl Shard {
    /// The answer to a retry of something applied earlier, given once that is durable: at
    /// once when nothing applied waits for a commit, else with the next commit (which is
    /// written after those pending). A retry answered sooner could say `duplicate` of a
    /// command a failed commit then undoes.
    fn once_durable(
        &mut self,
        outcomes: Vec<Outcome>,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<Vec<Outcome>, ShardError>> {
        let (tx, rx) = oneshot::channel();
        if self.committing.is_none() && self.batch.is_empty() && self.waiting.is_empty() {
            let _ = tx.send(Ok(outcomes));
        } else {
            self.waiting.push((tx, outcomes));
            self.schedule_flush(ctx);
        }
        rx
    }

    /// Answers `reply` with `answer` once everything taken before is durable: a retry, whose
    /// first may not be durable yet.
    fn answer_once_durable<T: Send + 'static>(
        &mut self,
        reply: oneshot::Sender<Result<T, ShardError>>,
        answer: T,
        ctx: &mut Context<Self>,
    ) {
        let rx = self.once_durable(Vec::new(), ctx);
        actix::spawn(async move {
            let answer = match rx.await {
                Ok(Ok(_)) => Ok(answer),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ShardError::NotReady),
            };
            let _ = reply.send(answer);
        });
    }

    /// Runs a person's command and answers `reply`, once it is durable, with what `done`
    /// makes of its outputs.
    fn answer_admin<T: Send + 'static>(
        &mut self,
        entry: &AdminEntry,
        reply: oneshot::Sender<Result<T, ShardError>>,
        done: impl FnOnce(Vec<Emitted>) -> T + 'static,
        ctx: &mut Context<Self>,
    ) {
        let rx = self.run_admin(entry, ctx);
        actix::spawn(async move {
            let answer = match rx.await {
                Ok(Ok(mut o)) => match o.pop() {
                    Some(Outcome::Accepted { outputs, .. }) => Ok(done(outputs)),
                    _ => Err(ShardError::NotReady),
                },
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ShardError::NotReady),
            };
            let _ = reply.send(answer);
        });
    }

    /// Applies a command of the admin API, logs it like an event and schedules its commit:
    /// the outcome, once durable.
    fn run_admin(
        &mut self,
        entry: &AdminEntry,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<Vec<Outcome>, ShardError>> {
        let mut emitted = Vec::new();
        entry.apply(&mut self.engine, &mut emitted);
        self.log_entry(serde_json::to_vec(entry).unwrap_or_default(), &emitted);
        let (tx, rx) = oneshot::channel();
        self.waiting.push((
            tx,
            vec![Outcome::Accepted {
                id: entry.id,
                outputs: emitted,
            }],
        ));
        self.schedule_flush(ctx);
        rx
    }
}

impl Handler<Adjust> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Adjust, ctx: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            let _ = msg.reply.send(Err(ShardError::NotReady));
            return;
        }
        // the person the id leads to now: an id merged away adjusts its survivor
        let Some(member) = self.engine.member(&msg.member).map(|m| m.id.to_string()) else {
            let _ = msg.reply.send(Ok(Adjusted::NoMember));
            return;
        };
        if let Some(points) = self.adjusted.get(&member, &msg.reference) {
            let before = Adjusted::Before { member, points };
            return self.answer_once_durable(msg.reply, before, ctx);
        }
        let id = uuid::Uuid::from_u64_pair(0x4144_4a55_5354, self.next_seq);
        let entry = AdminEntry {
            points: msg.points,
            ..AdminEntry::persons("adjust", id, self, &member, msg.reference, msg.by)
        };
        self.answer_admin(
            &entry,
            msg.reply,
            |outputs| Adjusted::Done { member, outputs },
            ctx,
        );
    }
}

impl Handler<ReplacePhone> for Shard {
    type Result = ();

    fn handle(&mut self, msg: ReplacePhone, ctx: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            let _ = msg.reply.send(Err(ShardError::NotReady));
            return;
        }
        // the person the id leads to now, and whether that is its phone already
        let Some((member, same)) = self.engine.member(&msg.member).map(|m| {
            let same = m.ids.of_kind("phone") == Some(msg.phone.as_str());
            (m.id.to_string(), same)
        }) else {
            let _ = msg.reply.send(Ok(PhoneReplaced::NoMember));
            return;
        };
        // one replacement a member and reference: the same again is its retry, another
        // number under it a conflict (a late retry must not undo a later change)
        let before = self.adjusted.get(&member, &phone_ref(&msg.reference));
        if before.is_some_and(|d| d != digest(&msg.phone)) {
            let conflict = PhoneReplaced::RefConflict { member };
            return self.answer_once_durable(msg.reply, conflict, ctx);
        }
        if same || before.is_some() {
            let unchanged = PhoneReplaced::Unchanged { member };
            return self.answer_once_durable(msg.reply, unchanged, ctx);
        }
        let id = uuid::Uuid::from_u64_pair(0x0050_484f_4e45, self.next_seq);
        let entry = AdminEntry {
            phone: Some(msg.phone),
            ..AdminEntry::persons("phone", id, self, &member, msg.reference, msg.by)
        };
        self.answer_admin(
            &entry,
            msg.reply,
            |outputs| PhoneReplaced::Done { member, outputs },
            ctx,
        );
    }
}

impl Handler<SetBlock> for Shard {
    type Result = ();

    fn handle(&mut self, msg: SetBlock, ctx: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            let _ = msg.reply.send(Err(ShardError::NotReady));
            return;
        }
        let Some((value, blocks)) = self.engine.blocks(msg.on, &msg.value) else {
            return drop(msg.reply.send(Ok(BlockSet::NoMember)));
        };
        let value = value.to_string();
        // a member handing its state over in a merge that never finished would only stash
        // the block (the merge's own route refuses it so too)
        if msg.on == BlockOn::Member
            && self
                .engine
                .member(&value)
                .is_some_and(|m| m.merging.is_some())
        {
            return drop(msg.reply.send(Ok(BlockSet::Merging { member: value })));
        }
        // it runs at the service's event time, as the entry's `at_us` will say
        let now = omnistream_schemas::EventTime {
            unix_us: self.engine.watermark().max(0),
            offset_min: 0,
        };
        if let BlockCmd::Set { until: Some(u), .. } = &msg.block {
            if u.unix_us <= now.unix_us {
                return drop(msg.reply.send(Ok(BlockSet::Ended { now })));
            }
        }
        let change = omnistream_actors::fraud::block::plan(&blocks, &msg.block, now);
        let warning = block_warning(self, &msg.block, change, &blocks, now.unix_us);
        if matches!(change, Change::Unchanged | Change::NotBlocked) {
            let in_force = blocks.iter().filter(|b| b.in_force(now.unix_us));
            let same = BlockSet::Unchanged {
                value,
                change,
                blocks: in_force.cloned().collect(),
                warning,
            };
            return self.answer_once_durable(msg.reply, same, ctx);
        }
        // the blocks after it, as the entity will make them (the same pure step, at the same
        // time)
        let mut after = blocks;
        let mut fx = omnistream_actors::Effects::default();
        let v = value.as_str().into();
        omnistream_actors::fraud::block::apply(
            &mut after,
            msg.on,
            &v,
            msg.block.clone(),
            now,
            &mut fx,
        );
        let (admin, campaign, until, reference) = match msg.block {
            BlockCmd::Set {
                campaign,
                until,
                reference,
            } => ("block", campaign, until, reference),
            BlockCmd::Lift {
                campaign,
                reference,
            } => ("unblock", campaign, None, reference),
        };
        let id = uuid::Uuid::from_u64_pair(0x424c_4f43_4b00, self.next_seq);
        let entry = AdminEntry {
            on: Some(msg.on),
            campaign: campaign.map(|c| c.to_string()),
            until,
            ..AdminEntry::persons(admin, id, self, &value, reference.into(), msg.by)
        };
        let done = move |outputs| BlockSet::Done {
            value,
            change,
            outputs,
            blocks: after,
            warning,
        };
        self.answer_admin(&entry, msg.reply, done, ctx);
    }
}

/// What a person asking for a block may have meant instead: a campaign neither configured nor
/// named by any scan (a misspelt id blocks nothing), or a lift for every campaign of
/// something blocked in some campaigns only (those blocks stay).
fn block_warning(
    shard: &Shard,
    cmd: &BlockCmd,
    change: Change,
    blocks: &[Block],
    now_us: i64,
) -> Option<String> {
    let (BlockCmd::Set { campaign, .. } | BlockCmd::Lift { campaign, .. }) = cmd;
    match campaign.as_deref() {
        Some(c) if !shard.rules.campaigns.contains_key(c) && shard.engine.campaign(c).is_none() => {
            Some(format!(
                "campaign `{c}` is not configured and no scan has named it: a misspelt id \
                 blocks nothing (GET /v1/campaigns lists those known)"
            ))
        }
        _ if change == Change::Updated => {
            // a replacement that ends sooner than the block it replaces shortens a ban
            let BlockCmd::Set { until, .. } = cmd else {
                return None;
            };
            let end = |u: Option<omnistream_schemas::EventTime>| u.map_or(i64::MAX, |u| u.unix_us);
            let old = (blocks.iter()).find(|b| b.in_force(now_us) && b.campaign == *campaign)?;
            (end(*until) < end(old.until)).then(|| {
                let was = old
                    .until
                    .map_or("no end".to_string(), |u| format!("until {u}"));
                format!(
                    "this block replaces {} ({was}) and ends sooner: the ban is shortened",
                    old.reference
                )
            })
        }
        None if change == Change::NotBlocked => {
            let by_campaign: Vec<&str> = (blocks.iter())
                .filter(|b| b.in_force(now_us))
                .filter_map(|b| b.campaign.as_deref())
                .collect();
            (!by_campaign.is_empty()).then(|| {
                format!(
                    "nothing is blocked here in every campaign; it is blocked in {}, which \
                     stays: lift each with its `campaign`",
                    by_campaign.join(", ")
                )
            })
        }
        _ => None,
    }
}

impl Handler<MergeMembers> for Shard {
    type Result = ();

    fn handle(&mut self, msg: MergeMembers, ctx: &mut Self::Context) {
        if !self.ready.load(Ordering::SeqCst) {
            let _ = msg.reply.send(Err(ShardError::NotReady));
            return;
        }
        // each id's person now, its phone, and whether it is handing its state over in a
        // merge of its own (a state stored blank is no member)
        let person = |id: &str| {
            let m = self.engine.member(id).filter(|m| m.first_seen != 0)?;
            let phone = m.ids.of_kind("phone").map(str::to_string);
            Some((m.id.to_string(), phone, m.merging.is_some()))
        };
        let Some((a, phone_a, busy_a)) = person(&msg.member) else {
            return drop(msg.reply.send(Ok(MembersMerged::NoMember(msg.member))));
        };
        let Some((b, phone_b, busy_b)) = person(&msg.with) else {
            return drop(msg.reply.send(Ok(MembersMerged::NoMember(msg.with))));
        };
        if a == b {
            let unchanged = MembersMerged::Unchanged { member: a };
            return self.answer_once_durable(msg.reply, unchanged, ctx);
        }
        // a merge that never finished (its cascade cut at the engine's bound): who the person
        // is, and its phone, are not known
        if busy_a || busy_b {
            let busy = if busy_a { a } else { b };
            return drop(msg.reply.send(Ok(MembersMerged::Merging(busy))));
        }
        // a reference is one merge: used for another pair, a conflict (the same pair again
        // is one member now, answered above)
        for (m, other) in [(&a, &b), (&b, &a)] {
            let before = self.adjusted.get(m, &merge_ref(&msg.reference));
            if before.is_some_and(|d| d != digest(other)) {
                let conflict = MembersMerged::RefConflict { member: m.clone() };
                return self.answer_once_durable(msg.reply, conflict, ctx);
            }
        }
        // whose phone stays: either id as given, or the member it leads to now
        let keeper = match msg.keep_phone_of.as_deref().map(|k| (k, person(k))) {
            None => None,
            Some((k, p)) if k == msg.member || p.as_ref().is_some_and(|p| p.0 == a) => Some(true),
            Some((k, p)) if k == msg.with || p.as_ref().is_some_and(|p| p.0 == b) => Some(false),
            Some(_) => return drop(msg.reply.send(Ok(MembersMerged::KeepNeither))),
        };
        // two phones: the person says which stays, and the command runs at the member
        // giving its phone up; otherwise at the member named first
        let (member, with, keep) = match (phone_a, phone_b, keeper) {
            (Some(pa), Some(pb), _) if pa == pb => (a, b, None),
            (Some(_), Some(_), None) => {
                let differ = MembersMerged::PhonesDiffer { member: a, with: b };
                return drop(msg.reply.send(Ok(differ)));
            }
            (Some(pa), Some(_), Some(true)) => (b, a, Some(pa)),
            (Some(_), Some(pb), Some(false)) => (a, b, Some(pb)),
            _ => (a, b, None),
        };
        let id = uuid::Uuid::from_u64_pair(0x004d_4552_4745, self.next_seq);
        let entry = AdminEntry {
            phone: keep,
            with: Some(with.clone()),
            ..AdminEntry::persons("merge", id, self, &member, msg.reference, msg.by)
        };
        let (survivor, alias) = if member < with {
            (member, with)
        } else {
            (with, member)
        };
        self.answer_admin(
            &entry,
            msg.reply,
            move |outputs| MembersMerged::Done {
                member: survivor,
                alias,
                outputs,
            },
            ctx,
        );
    }
}

impl Handler<EncodeSlice> for Shard {
    type Result = ();

    fn handle(&mut self, _: EncodeSlice, _: &mut Self::Context) {
        self.encode_slice();
    }
}

impl Handler<FlushNow> for Shard {
    type Result = Result<(), ShardError>;

    fn handle(&mut self, _: FlushNow, _: &mut Self::Context) -> Self::Result {
        self.flush_sync()
    }
}

impl Handler<Committed> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Committed, _: &mut Self::Context) {
        // a commit waited for already (at shutdown, before a rebuild) is answered
        if self.committing.as_ref().is_none_or(|c| c.id != msg.0) {
            return;
        }
        let _ = self.wait_commit();
        // what was applied while it was written goes in the next commit, at once
        let _ = self.flush();
    }
}

/// Shutdown: commit what waits with a checkpoint (so the next start replays nothing), then
/// stop the actor.
pub struct Shutdown;

impl Message for Shutdown {
    type Result = Result<(), ShardError>;
}

impl Handler<Shutdown> for Shard {
    type Result = Result<(), ShardError>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let r = self.flush_sync();
        self.final_checkpoint();
        // the next process (a rolling restart) need not wait for this one's CQL writer lease
        self.store.close();
        ctx.stop();
        r
    }
}

/// Store a position that no event carries (a sink's cursor) with the next commit.
pub struct SetPosition {
    /// The name it is stored under.
    pub source: String,
    /// The position.
    pub position: u64,
}

impl Message for SetPosition {
    type Result = ();
}

impl Handler<SetPosition> for Shard {
    type Result = ();

    fn handle(&mut self, msg: SetPosition, ctx: &mut Self::Context) {
        self.set_position(&msg.source, msg.position);
        self.schedule_flush(ctx);
    }
}

/// What a repeated event is about, for its answer.
#[derive(Debug, Clone, Serialize)]
pub enum About {
    /// An order event's order (`channel:order`).
    Order(omnistream_actors::Str),
    /// A payment's dealer and reference.
    Payment {
        /// The dealer.
        dealer: omnistream_actors::Str,
        /// Its `ref`.
        reference: omnistream_actors::Str,
    },
    /// An `identify`'s identities (kind, value as stored).
    Identities(Vec<omnistream_actors::Id>),
    /// The id was first taken by another event (what the warning says).
    Reused(String),
}

/// A duplicate's outcome: a scan's remembered answer (or, when the decision remembered is of
/// another code, the id was taken by another scan: not its answer to give, only a warning),
/// or what an order event, a payment or an `identify` is about.
fn duplicate(ev: &Event, answered: Vec<Emitted>) -> Outcome {
    if let omnistream_schemas::Body::Scan(s) = &ev.body {
        let first = answered.iter().find_map(|e| match &e.output {
            Output::Decision { code, .. } => Some(code),
            _ => None,
        });
        if let Some(code) = first.filter(|c| **c != *s.code) {
            let warning = format!(
                "id_reused at id: an earlier scan took this id, of another code (`{}`); this \
                 scan of `{}` was not decided; send it with an id of its own",
                code.chars().take(64).collect::<String>(),
                s.code.chars().take(64).collect::<String>()
            );
            return Outcome::Duplicate {
                id: ev.id,
                answered: Vec::new(),
                about: Some(About::Reused(warning)),
            };
        }
    }
    Outcome::Duplicate {
        id: ev.id,
        answered,
        about: about(ev),
    }
}

/// What an order event, a payment or an `identify` is about.
fn about(ev: &Event) -> Option<About> {
    match &ev.body {
        omnistream_schemas::Body::Order(o) => {
            let channel = ev.channel.as_ref().map_or("", |c| c.as_str());
            Some(About::Order(omnistream_actors::router::order_key(
                channel, &o.order,
            )))
        }
        omnistream_schemas::Body::Payment(p) => Some(About::Payment {
            dealer: p.dealer.clone(),
            reference: p.reference.clone(),
        }),
        omnistream_schemas::Body::Identify(i) => {
            Some(About::Identities(omnistream_actors::router::ids(&i.member)))
        }
        _ => None,
    }
}

/// Ask for a reader of the outputs usable from other threads, if the store has one.
pub struct GetOutputRows;

impl Message for GetOutputRows {
    type Result = Option<Arc<dyn crate::store::OutputRows>>;
}

impl Handler<GetOutputRows> for Shard {
    type Result = MessageResult<GetOutputRows>;

    fn handle(&mut self, _: GetOutputRows, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.store.output_rows())
    }
}

/// Ask for a receiver that changes after every durable commit (new outputs may be readable).
pub struct WatchDurable;

impl Message for WatchDurable {
    type Result = tokio::sync::watch::Receiver<u64>;
}

impl Handler<WatchDurable> for Shard {
    type Result = MessageResult<WatchDurable>;

    fn handle(&mut self, _: WatchDurable, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.durable.subscribe())
    }
}

/// Ask for the board's current view as JSON.
pub struct GetBoard;

impl Message for GetBoard {
    type Result = serde_json::Value;
}

impl Handler<GetBoard> for Shard {
    type Result = MessageResult<GetBoard>;

    fn handle(&mut self, _: GetBoard, _: &mut Self::Context) -> Self::Result {
        MessageResult(serde_json::to_value(self.board.view(&self.engine)).unwrap_or_default())
    }
}

/// Ask for the shard's counters.
pub struct GetStats;

impl Message for GetStats {
    type Result = ShardStats;
}

impl Handler<GetStats> for Shard {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.read_cache = self.store.read_cache();
        stats.code_registry = self.store.code_registry();
        MessageResult(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(n: u128, d: omnistream_actors::fraud::Decision) -> Emitted {
        Emitted {
            event: uuid::Uuid::from_u128(n),
            at: omnistream_schemas::EventTime::from_unix_ms(0),
            output: Output::Decision {
                scan_event: uuid::Uuid::from_u128(n),
                code: "c".into(),
                member: "m1".into(),
                campaign: "cmp".into(),
                decision: d,
                score: 0,
                reasons: Vec::new(),
                reward: 0,
                held: 10,
                no_reward: None,
                shadow_decision: None,
                scan: None,
            },
        }
    }

    #[test]
    fn recent_answers_keep_the_decision_and_its_resolution_and_stay_bounded() {
        use omnistream_actors::fraud::Decision;
        let mut a = Answers::default();
        a.observe(&[decision(1, Decision::Review)]);
        let resolved = Emitted {
            event: uuid::Uuid::from_u128(99),
            at: omnistream_schemas::EventTime::from_unix_ms(1),
            output: Output::ReviewResolved {
                scan_event: uuid::Uuid::from_u128(1),
                member: "m1".into(),
                campaign: "cmp".into(),
                allow: true,
                reward: 10,
                refused: false,
                overturned: false,
                by: None,
            },
        };
        a.observe(std::slice::from_ref(&resolved));
        assert_eq!(a.get(uuid::Uuid::from_u128(1)).len(), 2);
        // a resolution whose decision is not remembered is kept alone
        let mut b = Answers::default();
        b.observe(&[resolved]);
        assert_eq!(b.get(uuid::Uuid::from_u128(1)).len(), 1);
        // past the bound the oldest go first
        let many: Vec<Emitted> = (2..RECENT_ANSWERS as u128 + 12)
            .map(|n| decision(n, Decision::Allow))
            .collect();
        a.observe(&many);
        assert_eq!(a.by_scan.len(), RECENT_ANSWERS);
        assert_eq!(a.order.len(), RECENT_ANSWERS);
        assert!(a.get(uuid::Uuid::from_u128(1)).is_empty());
        assert_eq!(
            a.get(uuid::Uuid::from_u128(RECENT_ANSWERS as u128 + 11))
                .len(),
            1
        );
        // 1 and 2..=11 were the oldest: forgotten; 12 is the oldest kept
        assert!(a.get(uuid::Uuid::from_u128(11)).is_empty());
        assert_eq!(a.get(uuid::Uuid::from_u128(12)).len(), 1);
    }

    #[test]
    fn recent_answers_are_read_back_from_the_stored_outputs_over_several_chunks() {
        use omnistream_actors::fraud::Decision;
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStore::open(dir.path()).unwrap();
        assert!(Answers::from_outputs(&store).by_scan.is_empty());
        let resolution = |scan: u128| Emitted {
            event: uuid::Uuid::from_u128(1 << 100 | scan),
            at: omnistream_schemas::EventTime::from_unix_ms(1),
            output: Output::ReviewResolved {
                scan_event: uuid::Uuid::from_u128(scan),
                member: "m1".into(),
                campaign: "cmp".into(),
                allow: false,
                reward: 0,
                refused: false,
                overturned: false,
                by: None,
            },
        };
        let other = |n: u128| Emitted {
            event: uuid::Uuid::from_u128(1 << 101 | n),
            at: omnistream_schemas::EventTime::from_unix_ms(1),
            output: Output::Ledger {
                member: "m1".into(),
                seq: n as u64,
                delta: 1,
                balance: n as i64,
                reason: "scan_reward".into(),
                about: None,
                debt_delta: 0,
                debt: 0,
            },
        };
        // 60,000 decisions, each after a ledger entry: 120,000 outputs, of which the newest 7 chunks are read
        let mut outputs = Vec::new();
        for n in 1..=60_000u128 {
            outputs.push(other(n));
            outputs.push(decision(n, Decision::Review));
        }
        // a resolution of a remembered scan, and one of a forgotten scan
        outputs.push(resolution(30_000));
        outputs.push(resolution(5));
        let mut batch = Batch::default();
        batch.unencoded.outputs = outputs
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i as u64, e))
            .collect();
        batch.encode();
        store.commit(&batch).unwrap();
        let a = Answers::from_outputs(&store);
        // the newest 50,000 answers: the resolution of 5 alone (the newest) and the decisions
        // on scans 10,002..=60,000
        assert_eq!(a.by_scan.len(), RECENT_ANSWERS);
        assert_eq!(
            a.get(uuid::Uuid::from_u128(10_002)),
            vec![decision(10_002, Decision::Review)]
        );
        assert!(a.get(uuid::Uuid::from_u128(10_001)).is_empty());
        assert_eq!(
            a.get(uuid::Uuid::from_u128(30_000)),
            vec![decision(30_000, Decision::Review), resolution(30_000)]
        );
        assert_eq!(a.get(uuid::Uuid::from_u128(5)), vec![resolution(5)]);
        assert_eq!(a.get(uuid::Uuid::from_u128(60_000)).len(), 1);

        // outputs whose oldest expired (they begin at 70,000 here): the chunks below read
        // the same live rows again from their start, which must neither count twice nor go
        // on; a stored decision this build cannot read is skipped
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStore::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        batch.unencoded.outputs = (1..=20_000u128)
            .map(|n| (69_999 + n as u64, decision(n, Decision::Allow)))
            .collect();
        batch.encode();
        batch
            .outputs
            .push((90_000, br#"{"output":"decision","scan_event":7}"#.to_vec()));
        store.commit(&batch).unwrap();
        let a = Answers::from_outputs(&store);
        assert_eq!(a.by_scan.len(), 20_000);
        assert_eq!(a.order.len(), 20_000);
        assert_eq!(a.get(uuid::Uuid::from_u128(1)).len(), 1);
    }
    use crate::store::gated::{Gate, Gated};
    use crate::store::RedbStore;

    fn click(n: u32) -> Item {
        let raw = format!(
            r#"{{"id":"00000000-0000-4000-8000-{n:012}","type":"click","ts":"2026-11-11T00:00:{:02}+08:00","channel":"mall","member":{{"openid":"o{n}"}},"target":"ad"}}"#,
            n % 60
        );
        let pii = Pii::new(b"k");
        Item::decode(&Decoder::new(pii.clone()), &pii, raw.as_bytes(), 0, 0)
    }

    type Answer = oneshot::Receiver<Result<Vec<Outcome>, ShardError>>;

    /// Sends one event; the receiver answers once it is durable (or failed).
    fn ingest(shard: &Addr<Shard>, n: u32) -> Answer {
        send(shard, "http", None, None, n)
    }

    /// Sends one event as a batch of source `file:a` that follows position `after`.
    fn ingest_after(shard: &Addr<Shard>, n: u32, after: u64, position: u64) -> Answer {
        send(shard, "file:a", Some(position), Some(after), n)
    }

    fn send(
        shard: &Addr<Shard>,
        source: &str,
        position: Option<u64>,
        after: Option<u64>,
        n: u32,
    ) -> Answer {
        let (reply, rx) = oneshot::channel();
        shard.do_send(Ingest {
            source: source.into(),
            position,
            after,
            also: Vec::new(),
            items: vec![click(n)],
            reply,
            received: Instant::now(),
        });
        rx
    }

    /// (the source's position as applied, the one the batch followed) of a refusal.
    fn out_of_order(e: &ShardError) -> Option<(u64, u64)> {
        match e {
            ShardError::OutOfOrder { at, after, .. } => Some((*at, *after)),
            _ => None,
        }
    }

    fn start(dir: &std::path::Path, gate: &Arc<Gate>) -> Addr<Shard> {
        spawn(dir, gate, ShardConfig::default()).0
    }

    /// A shard on the gated store in `dir`, pipelining every batch, with `sc`'s other
    /// settings; and its readiness.
    fn spawn(
        dir: &std::path::Path,
        gate: &Arc<Gate>,
        sc: ShardConfig,
    ) -> (Addr<Shard>, Arc<AtomicBool>) {
        let store = Gated(RedbStore::open(dir).unwrap(), Arc::clone(gate));
        let metrics = Arc::new(Metrics::default());
        let sc = ShardConfig {
            pipeline_min_events: 1,
            ..sc
        };
        let ready = Arc::new(AtomicBool::new(false));
        let shard = Shard::new(
            Box::new(store),
            Rules::default(),
            b"k",
            sc,
            Arc::clone(&ready),
            metrics,
        )
        .unwrap()
        .start();
        (shard, ready)
    }

    /// (events the engine applied, events in the store's log: not its other entries, such
    /// as the rules a first start logs)
    async fn counts(shard: &Addr<Shard>) -> (u64, u64) {
        shard
            .send(Read(|e: &Sharded, s: &dyn Store| {
                let mut events = 0;
                s.replay(0, &mut |_, v| {
                    events += u64::from(!v.starts_with(ADMIN_PREFIX));
                })
                .unwrap();
                (e.stats().events, events)
            }))
            .await
            .unwrap()
    }

    #[test]
    fn the_shard_applies_the_next_batch_while_one_is_written_and_answers_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        actix::System::new().block_on(async {
            let shard = start(dir.path(), &gate);
            let mut first = ingest(&shard, 1);
            gate.entered(1).await;
            let mut second = ingest(&shard, 2);
            // both applied while the first commit is held; neither answered
            assert_eq!(counts(&shard).await, (2, 0));
            assert!(first.try_recv().is_err() && second.try_recv().is_err());
            gate.set(true);
            assert!(first.await.unwrap().is_ok());
            assert!(second.await.unwrap().is_ok());
            assert_eq!(counts(&shard).await, (2, 2));
            // two commits: the second event waited for the first commit, not for a timer
            assert_eq!(shard.send(GetStats).await.unwrap().commits, 2);
        });
    }

    fn adjust(
        shard: &Addr<Shard>,
        member: &str,
    ) -> oneshot::Receiver<Result<Adjusted, ShardError>> {
        let (reply, rx) = oneshot::channel();
        shard.do_send(Adjust {
            member: member.into(),
            points: 5,
            reference: "case-1".into(),
            by: omnistream_actors::output::Resolver {
                reviewer: None,
                token: None,
                note: None,
                at: "2026-11-11T00:00:00Z".into(),
            },
            reply,
        });
        rx
    }

    #[test]
    fn a_retry_racing_the_commit_of_what_it_repeats_is_answered_once_that_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Gate::opened();
        actix::System::new().block_on(async {
            let shard = start(dir.path(), &gate);
            assert!(ingest(&shard, 1).await.unwrap().is_ok());
            let member = shard
                .send(Read(|e: &Sharded, _: &dyn Store| {
                    e.member_of("openid", "o1").map(|m| m.id.to_string())
                }))
                .await
                .unwrap()
                .unwrap();
            gate.set(false);
            let entered = gate.entered.load(Ordering::SeqCst);
            let first = adjust(&shard, &member);
            gate.entered(entered + 1).await;
            let mut retry = adjust(&shard, &member);
            // the retry is known for one, but the first is not durable: no answer yet
            tokio::time::sleep(Duration::from_millis(50)).await;
            let early = retry.try_recv();
            // (opened before asserting: a shard stopping behind a shut gate never stops)
            gate.set(true);
            assert!(early.is_err(), "answered before durable: {early:?}");
            assert!(matches!(first.await.unwrap(), Ok(Adjusted::Done { .. })));
            assert!(matches!(
                retry.await.unwrap(),
                Ok(Adjusted::Before { points: 5, .. })
            ));
            // with nothing waiting for a commit, a retry is answered at once
            let again = adjust(&shard, &member);
            assert!(matches!(
                again.await.unwrap(),
                Ok(Adjusted::Before { points: 5, .. })
            ));
        });
    }

    /// A store that must be opened again before it writes (redb after a full disk): the
    /// shard says not ready and stays so (a rebuild from it would say ready and every write
    /// after fail), applying nothing; the process would exit for a restart.
    #[test]
    fn a_store_that_must_be_opened_again_leaves_the_shard_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Gate::opened();
        actix::System::new().block_on(async {
            let sc = ShardConfig {
                exit_when_store_lost: false,
                ..ShardConfig::default()
            };
            let (shard, ready) = spawn(dir.path(), &gate, sc);
            assert!(ingest(&shard, 1).await.unwrap().is_ok());
            gate.lost.store(true, Ordering::SeqCst);
            let e = ingest(&shard, 2).await.unwrap().unwrap_err().to_string();
            assert!(e.contains("opened again"), "{e}");
            assert!(!ready.load(Ordering::SeqCst));
            // the retries do not make it ready again, and nothing more is applied
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            assert!(!ready.load(Ordering::SeqCst));
            assert!(matches!(
                ingest(&shard, 3).await.unwrap(),
                Err(ShardError::NotReady)
            ));
        });
    }

    #[test]
    fn a_failed_commit_fails_the_batch_queued_behind_it_and_keeps_nothing_of_either() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        actix::System::new().block_on(async {
            let shard = start(dir.path(), &gate);
            gate.fail_next.store(true, Ordering::SeqCst);
            let first = ingest(&shard, 1);
            gate.entered(1).await;
            let second = ingest(&shard, 2);
            assert_eq!(counts(&shard).await, (2, 0));
            gate.set(true);
            let e = first.await.unwrap().unwrap_err().to_string();
            assert!(e.contains("injected"), "{e}");
            let e = second.await.unwrap().unwrap_err().to_string();
            assert!(e.contains("injected"), "{e}");
            // rebuilt from the store: neither event counts
            assert_eq!(counts(&shard).await, (0, 0));
            // and the shard goes on
            assert!(ingest(&shard, 3).await.unwrap().is_ok());
            assert_eq!(counts(&shard).await, (1, 1));
            // the repeat of a failed event is new, not a duplicate
            let again = ingest(&shard, 2).await.unwrap().unwrap();
            assert!(matches!(again[0], Outcome::Accepted { .. }), "{again:?}");
        });
    }

    #[test]
    fn a_batch_that_does_not_follow_what_was_applied_of_its_source_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        actix::System::new().block_on(async {
            let shard = start(dir.path(), &gate);
            gate.set(true);
            let position = || {
                shard.send(Read(|_: &Sharded, s: &dyn Store| {
                    s.position("file:a").unwrap()
                }))
            };
            // a new source is at 0
            let e = ingest_after(&shard, 1, 5, 10).await.unwrap().unwrap_err();
            assert_eq!(out_of_order(&e), Some((0, 5)), "{e}");
            assert!(ingest_after(&shard, 1, 0, 10).await.unwrap().is_ok());
            // two in flight: the second follows the first as applied, before it is durable
            gate.set(false);
            let first = ingest_after(&shard, 2, 10, 20);
            gate.entered(2).await;
            let second = ingest_after(&shard, 3, 20, 30);
            gate.set(true);
            assert!(first.await.unwrap().is_ok() && second.await.unwrap().is_ok());
            assert_eq!(position().await.unwrap(), Some(30));
            // a failed commit takes its batch and the one behind it; the source is back at
            // its durable position, so a batch sent after them is refused, not committed
            // past the lost ones
            gate.set(false);
            gate.fail_next.store(true, Ordering::SeqCst);
            let lost = ingest_after(&shard, 4, 30, 40);
            gate.entered(gate.entered.load(Ordering::SeqCst) + 1).await;
            let behind = ingest_after(&shard, 5, 40, 50);
            gate.set(true);
            assert!(lost.await.unwrap().is_err() && behind.await.unwrap().is_err());
            let e = ingest_after(&shard, 6, 50, 60).await.unwrap().unwrap_err();
            assert_eq!(out_of_order(&e), Some((30, 50)), "{e}");
            assert!(e.to_string().contains("file:a is at position 30"), "{e}");
            assert_eq!(position().await.unwrap(), Some(30));
            // read again from the durable position, it goes on
            assert!(ingest_after(&shard, 4, 30, 40).await.unwrap().is_ok());
            assert_eq!(position().await.unwrap(), Some(40));
            assert_eq!(counts(&shard).await, (4, 4));
        });
    }

    #[test]
    fn rules_read_back_from_the_log_equal_those_written_and_a_change_is_named_by_its_key() {
        let mut r: Rules = toml::from_str(
            "watermark-lag-s = 300\n[points]\nfen-per-point = 50\n\
             [points.channel-multiplier]\ntmall = 1.5\n\
             [campaigns.cny.fraud]\nreview-at = 40\n",
        )
        .unwrap();
        let entry = serde_json::to_vec(&RulesEntry {
            admin: "rules".into(),
            rules: Some(r.clone()),
        })
        .unwrap();
        assert!(entry.starts_with(RULES_MARK) && entry.starts_with(ADMIN_PREFIX));
        let back: RulesEntry = serde_json::from_slice(&entry).unwrap();
        // equal as read back: a restart under the same rules logs nothing
        let back = back.rules.unwrap();
        assert_eq!(back, r);
        assert!(rules_changed(&back, &r).is_empty());
        // rules this build cannot read (a key renamed since) are none, not an error
        let renamed = String::from_utf8(entry)
            .unwrap()
            .replace("fen-per-point", "fen-a-point");
        let unreadable: RulesEntry = serde_json::from_str(&renamed).unwrap();
        assert!(unreadable.rules.is_none());
        let x: Extras = serde_json::from_str(
            r#"{"reviews":{},"board":null,"rules":{"points":{"fen-a-point":5}}}"#,
        )
        .unwrap();
        assert!(x.rules.is_none());
        r.stock.cancel_unpaid_after_s = 600;
        r.points.channel_multiplier.insert("jd".into(), 2.0);
        assert_eq!(
            rules_changed(&back, &r),
            [
                "points.channel-multiplier.jd",
                "stock.cancel-unpaid-after-s"
            ]
        );
    }

    #[test]
    fn only_times_beyond_the_skew_are_refused_and_zero_turns_the_check_off() {
        let now = 1_800_000_000_000_000;
        assert!(too_far_ahead(now, now, 300).is_none());
        assert!(too_far_ahead(now + 300_000_000, now, 300).is_none());
        let p = too_far_ahead(now + 300_000_001, now, 300).unwrap();
        assert_eq!(p.reason, Reason::FutureTimestamp);
        assert_eq!(p.path, "ts");
        assert!(too_far_ahead(i64::MAX, now, 0).is_none());
        assert!(too_far_ahead(i64::MAX, now, u64::MAX).is_none());
        assert!(too_far_ahead(now - 86_400_000_000, now, 300).is_none());
    }
}

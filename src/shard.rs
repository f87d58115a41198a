//! The shard: an actix actor on its own Arbiter that owns the deterministic engine and the
//! store. It applies events as they arrive, buffers what they produced, and group-commits:
//! the events, their outputs and ledger entries go to the store in one atomic write when the
//! mailbox is drained (or after `group-commit-ms` when that is set, or at
//! `group-commit-events`), and only then are the callers answered.
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
    Batch, CheckpointWrite, Checkpointer, InFlight, InFlightSlot, Layered, Store, StoreError,
};
use actix::prelude::*;
use omnistream_actors::engine::{Applied, Emitted, Engine};
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
    /// A refused one, with its redacted text for the dead letters.
    Rejected {
        /// Event id when readable.
        id: Option<String>,
        /// Every problem.
        reasons: Vec<Problem>,
        /// The line with personal values hashed.
        raw: String,
    },
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
        match decoder.decode(raw) {
            Ok(ev) => match too_far_ahead(ev.ts.unix_us, now_us, max_future_s) {
                None => Item::Event(Box::new(ev)),
                Some(p) => Item::Rejected {
                    id: Some(ev.id.to_string()),
                    reasons: vec![p],
                    raw: pii.redact(raw),
                },
            },
            Err(r) => Item::Rejected {
                id: r.id,
                reasons: r.problems,
                raw: pii.redact(raw),
            },
        }
    }
}

/// The problem with an event time more than `max_future_s` ahead of `now_us`, if any.
pub fn too_far_ahead(ts_us: i64, now_us: i64, max_future_s: u64) -> Option<Problem> {
    let max_us = i64::try_from(max_future_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    (max_future_s > 0 && ts_us > now_us.saturating_add(max_us)).then(|| {
        Problem::new(
            Reason::FutureTimestamp,
            "ts",
            format!(
                "{} s ahead of this server's clock; at most {max_future_s} s (max-future-s) are accepted",
                (ts_us - now_us) / 1_000_000
            ),
        )
    })
}

/// This machine's clock in microseconds since the Unix epoch (live ingest only; the entity
/// logic never reads it).
pub fn wall_clock_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A commit slower than this (seconds) is logged at warn level with its size.
const SLOW_COMMIT_S: f64 = 0.02;

/// After a failed rebuild the shard tries again after this long, doubling up to
/// [`REBUILD_RETRY_MAX`] while the store stays away.
const REBUILD_RETRY_MIN: Duration = Duration::from_millis(500);
/// The longest wait between two rebuild attempts.
const REBUILD_RETRY_MAX: Duration = Duration::from_secs(5);

/// Why the shard could not take a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardError {
    /// The store refused the write; nothing of the request was kept.
    #[error("store write failed, nothing was applied: {0}")]
    Store(String),
    /// A commit failed and the state is not rebuilt from the store yet; nothing was applied.
    #[error("not ready: the store is unavailable; the state is rebuilt once it answers again, nothing was applied")]
    NotReady,
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
    F: FnOnce(&Engine, &dyn Store) -> R + Send + 'static,
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
    /// Seconds the last checkpoint took to take (encoding, not the write).
    pub checkpoint_seconds: f64,
    /// Entities passivated since start.
    pub passivated: u64,
    /// Entities resident now.
    pub resident: usize,
}

/// How the shard commits and checkpoints, from the configuration.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Wait this long before a commit (0: as soon as the mailbox is drained).
    pub commit_every: Duration,
    /// Commit at once when this many events wait.
    pub commit_events: usize,
    /// Most resident entities (0: no bound); needs a store that keeps checkpoints.
    pub resident: usize,
    /// Checkpoint after this many events (0: only at shutdown).
    pub checkpoint_every: u64,
    /// Codes the code registry's filter is sized for.
    pub filter_codes: u64,
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
            resident: c.resident_entities,
            checkpoint_every: c.checkpoint_every_events,
            filter_codes: c.code_filter_codes,
        }
    }
}

/// The shard's own state in a checkpoint.
#[derive(Serialize, serde::Deserialize)]
struct Extras {
    reviews: std::collections::HashMap<uuid::Uuid, String>,
    board: serde_json::Value,
}

/// The shard actor.
pub struct Shard {
    engine: Engine,
    store: Box<dyn Store>,
    stored_decoder: Decoder,
    next_seq: u64,
    next_output: u64,
    batch: Batch,
    waiting: Vec<(Reply, Vec<Outcome>)>,
    flush_scheduled: bool,
    commit_every: Duration,
    commit_events: usize,
    ready: Arc<AtomicBool>,
    reviews: Reviews,
    metrics: Arc<Metrics>,
    board: Board,
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
    /// Counters.
    pub stats: ShardStats,
}

/// Log entries that are not events start with this (events start with `{"id"` or similar).
const ADMIN_PREFIX: &[u8] = b"{\"admin\"";

/// A command from the admin API, logged like an event so a replay repeats it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AdminEntry {
    /// Always `review` today.
    admin: String,
    /// The command's own id.
    id: uuid::Uuid,
    /// Event time it ran at (µs).
    at_us: i64,
    /// The scan under review.
    event: uuid::Uuid,
    /// The member holding the reward.
    member: String,
    /// Pay or refuse.
    allow: bool,
}

impl AdminEntry {
    fn apply(&self, engine: &mut Engine, out: &mut Vec<Emitted>) -> usize {
        let at = omnistream_schemas::EventTime {
            unix_us: self.at_us,
            offset_min: 0,
        };
        let cmd = omnistream_actors::Cmd::Member(omnistream_actors::MemberCmd::ReviewResolve {
            event: self.event,
            allow: self.allow,
        });
        let key = omnistream_actors::Key::Member(self.member.as_str().into());
        engine.command(key, cmd, self.id, at, out)
    }
}

/// Scans waiting for a person's review, and the member holding each reward.
#[derive(Debug, Default)]
struct Reviews(std::collections::HashMap<uuid::Uuid, String>);

impl Reviews {
    fn observe(&mut self, out: &[Emitted]) {
        for e in out {
            match &e.output {
                Output::Decision {
                    scan_event,
                    member,
                    decision: omnistream_actors::fraud::Decision::Review,
                    ..
                } => {
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

/// Resolve the review of a scan: pay its held reward or refuse it; answers once durable.
pub struct Review {
    /// The scan's event id.
    pub event: uuid::Uuid,
    /// Pay the reward.
    pub allow: bool,
    /// The answer: `None` when no review of that scan is pending.
    pub reply: oneshot::Sender<Option<Result<Vec<Outcome>, ShardError>>>,
}

impl Message for Review {
    type Result = ();
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
        let low_atp = rules.stock.low_stock_atp;
        let checkpointer = store.checkpointer();
        let mut s = Shard {
            checkpoints: checkpointer.is_some(),
            checkpointer,
            inflight: InFlightSlot::default(),
            writer: None,
            truncate_below: None,
            resident: sc.resident,
            filter_codes: sc.filter_codes,
            checkpoint_every: sc.checkpoint_every,
            since_checkpoint: 0,
            metrics,
            board: Board::new(low_atp),
            engine: Engine::new(rules),
            store,
            stored_decoder: Decoder::new(Pii::for_stored(pii_key)),
            next_seq: 0,
            next_output: 0,
            batch: Batch::default(),
            waiting: Vec::new(),
            flush_scheduled: false,
            commit_every: sc.commit_every,
            commit_events: sc.commit_events,
            ready,
            reviews: Reviews::default(),
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
        let started = Instant::now();
        let rules = self.engine.rules.clone();
        let low_atp = rules.stock.low_stock_atp;
        let restore_err = |why: String| StoreError::Io {
            op: "restore",
            table: "checkpoint",
            why,
        };
        // a checkpoint still being written finishes (or fails) before the store is read
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.set_inflight(None);
        let cold = self.store.cold().map(|base| {
            Box::new(Layered {
                inflight: Arc::clone(&self.inflight),
                base,
            }) as Box<dyn omnistream_actors::cold::Cold>
        });
        let (mut engine, mut reviews, mut board, from) = match (cold, self.store.last_checkpoint()?)
        {
            (Some(cold), Some(cp)) => {
                let saved = omnistream_actors::engine::Checkpoint {
                    states: Vec::new(),
                    global: cp.global,
                    seen: cp.seen,
                    filter: cp.filter,
                };
                let engine = Engine::restore(rules, &saved, cold, self.resident, self.filter_codes)
                    .map_err(restore_err)?;
                let x: Extras = serde_json::from_slice(&cp.extras)
                    .map_err(|e| restore_err(format!("shard state: {e}")))?;
                let board = Board::load(low_atp, x.board)
                    .map_err(|e| restore_err(format!("board: {e}")))?;
                (engine, Reviews(x.reviews), board, cp.seq)
            }
            (cold, _) => {
                let mut engine = Engine::new(rules);
                if let Some(cold) = cold {
                    engine.set_cold(cold, self.resident, self.filter_codes);
                }
                (engine, Reviews::default(), Board::new(low_atp), 0)
            }
        };
        let mut scratch = Vec::new();
        let mut n = 0u64;
        let mut bad = None;
        let decoder = &self.stored_decoder;
        let next = self.store.replay(from, &mut |seq, bytes| {
            if bytes.starts_with(ADMIN_PREFIX) {
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
                    Ok(ev) => {
                        engine.apply(&ev, &mut scratch);
                        n += 1;
                    }
                    Err(r) => {
                        bad.get_or_insert((seq, r.to_string()));
                    }
                }
            }
            reviews.observe(&scratch);
            board.observe(&engine, &scratch);
            scratch.clear();
        })?;
        if let Some((seq, why)) = bad {
            return Err(StoreError::Io {
                op: "replay",
                table: "events",
                why: format!("logged event {seq} does not decode: {why}"),
            });
        }
        if let Some(why) = engine.take_cold_error() {
            return Err(StoreError::Io {
                op: "load",
                table: "states",
                why,
            });
        }
        self.reviews = reviews;
        self.board = board;
        self.engine = engine;
        self.since_checkpoint = next - from;
        self.stats.restored_from = from;
        // the log below the restored checkpoint may still be there (a crash after the
        // checkpoint was written, before the commit that drops it)
        self.truncate_below = (from > 0).then_some(from);
        self.next_seq = next;
        self.next_output = self.store.next_output()?;
        self.stats.replayed = n;
        self.stats.replay_seconds = started.elapsed().as_secs_f64();
        Ok(())
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
    /// them durable: called after a commit).
    fn take_checkpoint(&mut self) -> Result<CheckpointWrite, StoreError> {
        let started = Instant::now();
        let err = |why: String| StoreError::Io {
            op: "checkpoint",
            table: "states",
            why,
        };
        let cp = self.engine.checkpoint().map_err(err)?;
        let extras = serde_json::to_vec(&Extras {
            reviews: self.reviews.0.clone(),
            board: self.board.save(),
        })
        .map_err(|e| err(e.to_string()))?;
        self.stats.checkpoint_seconds = started.elapsed().as_secs_f64();
        tracing::debug!(
            states = cp.states.len(),
            seconds = self.stats.checkpoint_seconds,
            "checkpoint taken"
        );
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

    /// After a commit: takes in a finished checkpoint (the log below it can go), and starts
    /// the next one when due. A failed checkpoint write leaves the engine's idea of what the
    /// store holds wrong, so the engine is rebuilt from the last good checkpoint and the log.
    fn after_commit(&mut self) {
        if self.writer.as_ref().is_some_and(|w| w.is_finished()) {
            self.finish_writer();
        }
        if self.writer.is_none() && self.checkpoint_due() {
            if let Err(e) = self.start_checkpoint() {
                self.checkpoint_failed(&e);
            }
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
            }
            Err(e) => self.checkpoint_failed(&e),
        }
    }

    fn checkpoint_failed(&mut self, e: &StoreError) {
        tracing::error!(error = %e, "checkpoint failed; rebuilding state from the store");
        if let Err(e) = self.rebuild() {
            tracing::error!(error = %e, "rebuild failed; not ready");
            self.ready.store(false, Ordering::SeqCst);
        }
    }

    /// Takes a checkpoint and hands it to a thread that writes it; its states stay readable
    /// through the engine's cold tier until they are durable.
    fn start_checkpoint(&mut self) -> Result<(), StoreError> {
        let Some(writer) = self.checkpointer.clone() else {
            return Ok(());
        };
        let flight = Arc::new(InFlight::new(self.take_checkpoint()?));
        self.set_inflight(Some(Arc::clone(&flight)));
        let handle = std::thread::Builder::new()
            .name("omnistream-checkpoint".into())
            .spawn(move || {
                let started = Instant::now();
                let r = writer.write(&flight.cp).map(|()| flight.cp.seq);
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
        if !self.checkpoints || self.since_checkpoint == 0 || !self.ready.load(Ordering::SeqCst) {
            return;
        }
        let Some(writer) = self.checkpointer.clone() else {
            return;
        };
        match self.take_checkpoint().and_then(|cp| writer.write(&cp)) {
            Ok(()) => {
                self.stats.checkpoints += 1;
                self.metrics.checkpoints.inc();
            }
            Err(e) => {
                tracing::error!(error = %e, "final checkpoint failed; the next start replays the log")
            }
        }
    }

    fn flush(&mut self) -> Result<(), ShardError> {
        self.flush_scheduled = false;
        if !self.ready.load(Ordering::SeqCst) {
            // a failed commit's events may still be in the engine: write nothing (above all
            // no checkpoint of that state) until a rebuild from the store succeeds
            self.batch = Batch::default();
            for (tx, _) in std::mem::take(&mut self.waiting) {
                let _ = tx.send(Err(ShardError::NotReady));
            }
            return Err(ShardError::NotReady);
        }
        if self.waiting.is_empty() && self.batch.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.batch);
        let waiting = std::mem::take(&mut self.waiting);
        let started = Instant::now();
        // an entity that failed to load or encode leaves the engine untrustworthy: nothing
        // it produced is committed, and it is rebuilt from the store (below)
        let prepared = match self.engine.take_cold_error() {
            Some(why) => Err(StoreError::Io {
                op: "load",
                table: "states",
                why,
            }),
            None => Ok(()),
        };
        batch.truncate_below = self.truncate_below.take();
        let result = if let Err(e) = prepared {
            Err(e)
        } else {
            let _span = tracing::debug_span!(
                "commit",
                events = batch.events.len(),
                outputs = batch.outputs.len()
            )
            .entered();
            let r = self.store.commit(&batch);
            let seconds = started.elapsed().as_secs_f64();
            if seconds > SLOW_COMMIT_S {
                // a slow commit holds every caller of its batch and everything queued behind
                tracing::warn!(
                    ok = r.is_ok(),
                    seconds,
                    events = batch.events.len(),
                    checkpoint_writing = self.writer.is_some(),
                    "slow commit"
                );
            } else {
                tracing::debug!(ok = r.is_ok(), seconds, "committed");
            }
            r
        };
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.metrics
                    .commit_events
                    .observe(batch.events.len() as f64);
                self.metrics
                    .log_events
                    .set(i64::try_from(self.next_seq).unwrap_or(i64::MAX));
                self.metrics.resident("0", &self.engine.counts());
                let passivated = self.engine.evicted();
                self.metrics
                    .passivated
                    .inc_by(passivated.saturating_sub(self.stats.passivated));
                self.stats.passivated = passivated;
                self.stats.resident = self.engine.resident();
                self.stats.commits += 1;
                self.stats.max_batch = self.stats.max_batch.max(batch.events.len());
                for (tx, outcomes) in waiting {
                    let _ = tx.send(Ok(outcomes));
                }
                self.after_commit();
                Ok(())
            }
            Err(e) => {
                self.stats.failed_commits += 1;
                self.metrics.commit_failures.inc();
                tracing::error!(error = %e, events = batch.events.len(), "commit failed; rebuilding state from the store");
                let err = ShardError::Store(e.to_string());
                for (tx, _) in waiting {
                    let _ = tx.send(Err(err.clone()));
                }
                // the engine applied events that are not durable: start again from the log
                if let Err(e) = self.rebuild() {
                    tracing::error!(error = %e, "rebuild failed; not ready");
                    self.ready.store(false, Ordering::SeqCst);
                }
                Err(err)
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
        self.metrics.observe(emitted);
        self.board.observe(&self.engine, emitted);
        self.reviews.observe(emitted);
        self.batch.events.push((self.next_seq, json));
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

    /// Adds outputs (and ledger entries) to the batch being built.
    fn push_outputs(&mut self, emitted: &[Emitted]) {
        for e in emitted {
            let json = serde_json::to_vec(e).unwrap_or_default();
            if let Output::Ledger { member, seq, .. } = &e.output {
                self.batch
                    .ledger
                    .push((member.to_string(), *seq, json.clone()));
            }
            self.batch.outputs.push((self.next_output, json));
            self.next_output += 1;
        }
    }

    fn apply(&mut self, source: &str, position: Option<u64>, items: Vec<Item>) -> Vec<Outcome> {
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
                            outcomes.push(Outcome::Duplicate { id: ev.id });
                        }
                        Applied::Done(_) => {
                            self.stats.applied += 1;
                            self.metrics.event(ev.body.kind().name(), "accepted");
                            self.log_entry(serde_json::to_vec(&ev).unwrap_or_default(), &emitted);
                            outcomes.push(Outcome::Accepted {
                                id: ev.id,
                                outputs: std::mem::take(&mut emitted),
                            });
                        }
                    }
                }
                Item::Rejected { id, reasons, raw } => {
                    self.stats.rejected += 1;
                    self.metrics.event("unknown", "rejected");
                    let primary = reasons.first().map_or("bad_json", |p| p.reason.code());
                    self.metrics.dead_letter(primary);
                    let dead = serde_json::json!({
                        "output": "dead_letter", "source": source, "id": id,
                        "reasons": reasons, "raw": raw,
                    });
                    self.batch.outputs.push((
                        self.next_output,
                        serde_json::to_vec(&dead).unwrap_or_default(),
                    ));
                    self.next_output += 1;
                    outcomes.push(Outcome::Rejected { id, reasons });
                }
            }
        }
        self.set_position(source, position.unwrap_or(self.next_seq));
        outcomes
    }

    /// Records a source's position in the batch being built (committed with it).
    fn set_position(&mut self, source: &str, pos: u64) {
        match self.batch.positions.iter_mut().find(|(s, _)| s == source) {
            Some(p) => p.1 = pos,
            None => self.batch.positions.push((source.to_string(), pos)),
        }
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // bounded mailbox: senders wait (and HTTP answers 429 first, by its own count)
        ctx.set_mailbox_capacity(1024);
        self.ready.store(true, Ordering::SeqCst);
        // a failed rebuild leaves the shard not ready (ingest answers 503); the store usually
        // comes back by itself, so try again, backing off, rather than stay so until a restart
        let mut wait = REBUILD_RETRY_MIN;
        let mut next_try = Instant::now();
        ctx.run_interval(REBUILD_RETRY_MIN, move |act, _| {
            if act.ready.load(Ordering::SeqCst) {
                wait = REBUILD_RETRY_MIN;
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
        let _ = self.flush();
        self.final_checkpoint();
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
        let _span =
            tracing::debug_span!("ingest", source = %msg.source, items = msg.items.len()).entered();
        let outcomes = self.apply(&msg.source, msg.position, msg.items);
        self.metrics.decided(msg.received.elapsed());
        self.waiting.push((msg.reply, outcomes));
        if self.batch.events.len() >= self.commit_events {
            let _ = self.flush();
        } else {
            self.schedule_flush(ctx);
        }
    }
}

impl<F, R> Handler<Read<F>> for Shard
where
    F: FnOnce(&Engine, &dyn Store) -> R + Send + 'static,
    R: Send + 'static,
{
    type Result = MessageResult<Read<F>>;

    fn handle(&mut self, msg: Read<F>, _: &mut Self::Context) -> Self::Result {
        MessageResult((msg.0)(&self.engine, self.store.as_ref()))
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
            let _ = msg.reply.send(None);
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
        };
        let mut emitted = Vec::new();
        entry.apply(&mut self.engine, &mut emitted);
        self.log_entry(serde_json::to_vec(&entry).unwrap_or_default(), &emitted);
        let (tx, rx) = oneshot::channel();
        self.waiting.push((
            tx,
            vec![Outcome::Accepted {
                id: entry.id,
                outputs: emitted,
            }],
        ));
        // the caller waits for the commit; forward its answer
        actix::spawn(async move {
            let _ = msg.reply.send(rx.await.ok());
        });
        self.schedule_flush(ctx);
    }
}

impl Handler<FlushNow> for Shard {
    type Result = Result<(), ShardError>;

    fn handle(&mut self, _: FlushNow, _: &mut Self::Context) -> Self::Result {
        self.flush()
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
        let r = self.flush();
        self.final_checkpoint();
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

/// Ask for the board's current view as JSON.
pub struct GetBoard;

impl Message for GetBoard {
    type Result = serde_json::Value;
}

impl Handler<GetBoard> for Shard {
    type Result = MessageResult<GetBoard>;

    fn handle(&mut self, _: GetBoard, _: &mut Self::Context) -> Self::Result {
        MessageResult(serde_json::to_value(self.board.view()).unwrap_or_default())
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
        MessageResult(self.stats.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

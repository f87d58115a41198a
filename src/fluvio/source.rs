//! The source: consumes one partition of an input topic into the shard, exactly once.
//!
//! The authoritative position is the store's: each batch of records is handed to the shard
//! with the partition's next offset as the position of source `fluvio:<topic>:<partition>`,
//! and the shard commits it atomically with the events. On start the partition is read from
//! that position; event ids make a replayed tail a no-op.
//!
//! Fluvio's own consumer offsets are only a mirror for operators, and committing them has a
//! known trap: with the fluvio 0.50 client against a 0.50.2 server, an `offset_commit()` that
//! follows a `next()` dropped mid-poll (by a timeout or a `select!`) never returns. So one
//! task owns each stream ([`read_partition`]): it only ever awaits `next()` to completion,
//! forwards each record through a bounded channel (backpressure), and commits the offset of
//! the record it last yielded only between records, once the store reports that record
//! durable (a watch channel from [`ingest_partition`]). [`OffsetTracker`] makes that decision
//! and is tested without a server.

use super::align::Turn;
use super::log::{LogError, PartitionedLog, Record};
use crate::shard::{Ingest, Item, Shard};
use actix::Addr;
use omnistream_schemas::{Decoder, Pii};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The store's name of a partition's position.
pub fn source_name(topic: &str, partition: u32) -> String {
    format!("fluvio:{topic}:{partition}")
}

/// One partition's records in order, owned by one task.
pub trait RecordStream {
    /// The next record; `None` when the stream ended. Always awaited to completion.
    fn next(&mut self) -> impl Future<Output = Result<Option<Record>, LogError>>;
    /// Commits (and flushes) the position just after the record `next` last yielded.
    fn commit_yielded(&mut self) -> impl Future<Output = Result<(), LogError>>;
}

/// What the owner of a stream does after yielding a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Forward it and read on.
    Forward,
    /// Forward it, wait until the store holds this position durably, then commit it.
    Checkpoint(u64),
}

/// Decides when the consumer offset may be committed: only the position right after the
/// record last yielded (the only one Fluvio's `offset_commit` can commit), only once the
/// store holds it durably, and at most every `every_records` records or `every` time.
#[derive(Debug, Clone)]
pub struct OffsetTracker {
    every_records: u64,
    every: Duration,
    since_commit: u64,
    last_commit: Instant,
    committed: Option<u64>,
}

impl OffsetTracker {
    /// A tracker that checkpoints after `every_records` records or `every`, from `now`.
    pub fn new(every_records: u64, every: Duration, now: Instant) -> OffsetTracker {
        OffsetTracker {
            every_records: every_records.max(1),
            every,
            since_commit: 0,
            last_commit: now,
            committed: None,
        }
    }

    /// Called once per yielded record (offset `offset`) at `now`.
    pub fn on_record(&mut self, offset: u64, now: Instant) -> Step {
        self.since_commit += 1;
        if self.since_commit >= self.every_records
            || now.duration_since(self.last_commit) >= self.every
        {
            Step::Checkpoint(offset + 1)
        } else {
            Step::Forward
        }
    }

    /// Whether the position after `last_yielded` may be committed, given the store's durable
    /// position: only when that record is durable and the position is new.
    pub fn may_commit(&self, last_yielded: u64, durable: u64) -> bool {
        durable > last_yielded && self.committed.is_none_or(|c| c < last_yielded + 1)
    }

    /// Notes that `position` was committed at `now`.
    pub fn committed(&mut self, position: u64, now: Instant) {
        self.committed = Some(position);
        self.since_commit = 0;
        self.last_commit = now;
    }

    /// Notes that a commit failed at `now`: the next one waits for the next checkpoint
    /// instead of being tried (and waited for) after every record.
    pub fn commit_failed(&mut self, now: Instant) {
        self.since_commit = 0;
        self.last_commit = now;
    }

    /// The last position committed to the transport.
    pub fn last_committed(&self) -> Option<u64> {
        self.committed
    }
}

/// Why a partition's reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The transport failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The shard stopped (the service is shutting down).
    #[error("the shard stopped")]
    ShardGone,
}

/// The owner of one stream: reads records to completion, forwards them, and commits the
/// consumer offset between records once the store reports them durable. Returns when the
/// stream ends or the ingest side stopped.
pub async fn read_partition<S: RecordStream>(
    mut stream: S,
    tx: mpsc::Sender<Record>,
    mut durable: watch::Receiver<u64>,
    mut tracker: OffsetTracker,
) -> Result<(), SourceError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        // never inside a timeout or select!: see the module documentation
        let rec = match stream.next().await {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(()),
            Err(e) => {
                // the stream reports a failed fetch and goes on (fluvio retries the
                // connection); pausing between two completed calls is safe
                tracing::warn!(error = %e, "reading a partition failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let offset = rec.offset;
        let step = tracker.on_record(offset, Instant::now());
        if watched("handing a record over", offset, tx.send(rec))
            .await
            .is_err()
        {
            return Err(SourceError::ShardGone);
        }
        if let Step::Checkpoint(pos) = step {
            // the ingest side hands the record to the shard and reports the position durable
            let reached = watched(
                "its position durable",
                offset,
                durable.wait_for(|d| *d >= pos),
            )
            .await
            .map(|d| *d);
            let Ok(d) = reached else {
                return Err(SourceError::ShardGone);
            };
            if tracker.may_commit(offset, d) {
                match watched(
                    "the consumer offset commit",
                    offset,
                    stream.commit_yielded(),
                )
                .await
                {
                    Ok(()) => tracker.committed(pos, Instant::now()),
                    // the store holds the position; the consumer offset is only a mirror
                    Err(e) => {
                        tracing::warn!(error = %e, position = pos, "consumer offset commit failed");
                        tracker.commit_failed(Instant::now());
                    }
                }
            }
        }
    }
}

/// Awaits `f` to completion (never dropping it), saying every 10 s under the target
/// `omnistream::fluvio::wait` (debug) how long a partition's reader has waited for `what`:
/// where a reader that stopped is waiting.
async fn watched<F: Future>(what: &str, offset: u64, f: F) -> F::Output {
    use std::task::Poll;
    let mut f = std::pin::pin!(f);
    // the common case, ready at once, arms no timer (this is on every record's path)
    let first = std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        return out;
    }
    let started = Instant::now();
    loop {
        tokio::select! {
            biased;
            out = &mut f => return out,
            () = tokio::time::sleep(Duration::from_secs(10)) => tracing::debug!(
                target: "omnistream::fluvio::wait",
                waited_s = started.elapsed().as_secs(),
                offset,
                "a partition's reader waits for {what}"
            ),
        }
    }
}

/// Batches of one partition handed to the shard and not yet durable, at most: the next one
/// is decoded and applied while the one before it is written.
pub const IN_FLIGHT: usize = 4;

/// How long a batch waits for the other partitions (see [`super::align`]) while batches
/// of its own are in flight, before it steps back so their answers are taken.
const ANSWERS_WAIT: Duration = Duration::from_millis(50);

/// Puts records and their decoded items back at the front of the queue to hand over, in
/// order: `decoded` lines up with the first records of `again`.
fn put_back(
    records: Vec<Record>,
    items: Vec<Item>,
    again: &mut std::collections::VecDeque<Record>,
    decoded: &mut std::collections::VecDeque<Item>,
) {
    for (r, i) in records.into_iter().zip(items).rev() {
        again.push_front(r);
        decoded.push_front(i);
    }
}

/// A batch handed to the shard, until its answer.
struct Sent {
    records: Vec<Record>,
    position: u64,
    answer: tokio::sync::oneshot::Receiver<
        Result<Vec<crate::shard::Outcome>, crate::shard::ShardError>,
    >,
}

/// What came first while batches were in flight.
enum Next {
    /// The oldest batch's answer.
    Answer(
        Result<
            Result<Vec<crate::shard::Outcome>, crate::shard::ShardError>,
            tokio::sync::oneshot::error::RecvError,
        >,
    ),
    /// A record (None: the reader stopped).
    Record(Option<Record>),
}

/// Hands one partition's records to the shard in batches of at most `max_batch`, each with
/// the partition's next offset as its position and naming the position it follows, up to
/// [`IN_FLIGHT`] of them not yet durable; publishes each durable position on `durable`, in
/// order. When one is not made durable (the store refused it; the shard then refuses the
/// ones behind it, which follow a position it no longer holds), its records and those of
/// every batch behind it are handed over again after a pause (ids make a repeat a no-op).
///
/// A batch goes only when `turn` lets it (event-time alignment with the other partitions,
/// see [`super::align`]); a partition without a record for `idle` holds the others back no
/// longer.
#[allow(clippy::too_many_arguments)]
pub async fn ingest_partition(
    shard: Addr<Shard>,
    source: Arc<str>,
    decoder: Decoder,
    pii: Pii,
    mut rx: mpsc::Receiver<Record>,
    durable: watch::Sender<u64>,
    max_batch: usize,
    max_future_s: u64,
    consumed: prometheus::IntCounter,
    mut turn: Turn,
    idle: Duration,
    (waits, waited_s): (prometheus::IntCounter, prometheus::Counter),
) -> Result<(), SourceError> {
    let max_batch = max_batch.max(1);
    let mut inflight = std::collections::VecDeque::<Sent>::new();
    // records to hand over again, before any new one
    let mut again = std::collections::VecDeque::<Record>::new();
    // the decoded items of the first records of `again` (the rest of a batch cut by the
    // alignment: decoded once)
    let mut decoded = std::collections::VecDeque::<Item>::new();
    // the position the next batch follows (None: whatever the shard holds)
    let mut after: Option<u64> = None;
    let mut reading = true;
    let mut backoff = Duration::from_millis(50);
    // a batch waiting for the other partitions was put back: take an answer first
    let mut held = false;
    // when the batch put back began to wait (its wait is counted once, when it goes)
    let mut waiting_since: Option<Instant> = None;
    loop {
        let first = if !again.is_empty()
            && inflight.len() < IN_FLIGHT
            && (!held || inflight.is_empty())
        {
            again.pop_front()
        } else if inflight.is_empty() {
            if !reading {
                return Ok(());
            }
            // (a channel's recv is cancel-safe: a timeout loses no record)
            let next = match tokio::time::timeout(idle, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    turn.idle();
                    rx.recv().await
                }
            };
            match next {
                Some(r) => Some(r),
                // (the turn, dropped, holds nothing back)
                None => return Ok(()),
            }
        } else {
            let room = reading && again.is_empty() && inflight.len() < IN_FLIGHT;
            let next = {
                let oldest = inflight.front_mut().expect("not empty");
                tokio::select! {
                    biased;
                    a = &mut oldest.answer => Next::Answer(a),
                    r = rx.recv(), if room => Next::Record(r),
                }
            };
            match next {
                Next::Record(Some(r)) => Some(r),
                Next::Record(None) => {
                    reading = false;
                    None
                }
                Next::Answer(Ok(Ok(_))) => {
                    held = false;
                    let done = inflight.pop_front().expect("not empty");
                    consumed.inc_by(done.records.len() as u64);
                    let _ = durable.send(done.position);
                    backoff = Duration::from_millis(50);
                    None
                }
                Next::Answer(Ok(Err(e))) => {
                    tracing::warn!(source = %source, error = %e, in_flight = inflight.len(), "batch not durable; handing it and those behind it over again");
                    // wait out the answers behind it (none may still be on its way when the
                    // records go again), and queue the records in offset order: the failed
                    // batch, those behind it, then what waited to go again from before
                    let failed = inflight.pop_front().expect("not empty");
                    let mut records: std::collections::VecDeque<Record> = failed.records.into();
                    for s in inflight.drain(..) {
                        let _ = s.answer.await;
                        records.extend(s.records);
                    }
                    records.extend(again.drain(..));
                    again = records;
                    decoded.clear();
                    held = false;
                    waiting_since = None;
                    after = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    None
                }
                Next::Answer(Err(_)) => return Err(SourceError::ShardGone),
            }
        };
        let Some(first) = first else { continue };
        // a batch: what waits to go again first, then what the reader has ready
        let mut batch = Vec::with_capacity(max_batch);
        let mut items: Vec<Item> = Vec::with_capacity(max_batch);
        // `first` came from `again` when it holds anything, and `decoded` lines up with it
        batch.push(first);
        items.extend(decoded.pop_front());
        while batch.len() < max_batch {
            match again.pop_front() {
                Some(r) => {
                    batch.push(r);
                    items.extend(decoded.pop_front());
                }
                None => break,
            }
        }
        while again.is_empty() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let now = crate::shard::wall_clock_us();
        let undecoded = &batch[items.len()..];
        items.extend(
            undecoded
                .iter()
                .map(|r| Item::decode(&decoder, &pii, &r.value, now, max_future_s)),
        );
        let at = |i: &Item| match i {
            Item::Event(e) => Some(e.ts.unix_us),
            Item::Rejected(_) => None,
        };
        let first_at = items.iter().find_map(at);
        // a batch that stepped back waits on from when it first waited
        let stepped_back = waiting_since.is_some();
        let started = waiting_since.take().unwrap_or_else(Instant::now);
        let count = |blocked: bool| {
            if blocked {
                let waited = started.elapsed();
                let ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
                waits.inc();
                waited_s.inc_by(waited.as_secs_f64());
                if ms >= 1_000 {
                    tracing::info!(source = %source, waited_ms = ms, "a batch waited for the other input partitions to catch up in event time (max-skew-s)");
                }
            }
        };
        let bound = if inflight.is_empty() {
            let (bound, blocked) = turn.wait(first_at).await;
            count(blocked || stepped_back);
            bound
        } else {
            // batches in flight: their answers (durable positions, a refusal) are not left
            // waiting behind this one, which goes back to the front of the queue meanwhile
            match tokio::time::timeout(ANSWERS_WAIT, turn.wait(first_at)).await {
                Ok((bound, blocked)) => {
                    count(blocked || stepped_back);
                    bound
                }
                Err(_) => {
                    waiting_since = Some(started);
                    put_back(batch, items, &mut again, &mut decoded);
                    held = true;
                    continue;
                }
            }
        };
        // what is further ahead than the other partitions allow goes in a later batch
        let keep = items
            .iter()
            .position(|i| at(i).is_some_and(|t| t > bound))
            .unwrap_or(items.len())
            .max(1);
        put_back(
            batch.split_off(keep),
            items.split_off(keep),
            &mut again,
            &mut decoded,
        );
        let last = items.iter().rev().find_map(at);
        let position = batch.last().map_or(0, |r| r.offset + 1);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let msg = Ingest {
            source: source.clone(),
            position: Some(position),
            after,
            also: Vec::new(),
            items,
            reply,
            received: Instant::now(),
        };
        if shard.send(msg).await.is_err() {
            return Err(SourceError::ShardGone);
        }
        turn.handed(last);
        after = Some(position);
        inflight.push_back(Sent {
            records: batch,
            position,
            answer,
        });
    }
}

/// A [`RecordStream`] over a [`PartitionedLog`] partition (polls when it is at the end).
pub struct LogStream<L: PartitionedLog> {
    log: L,
    group: String,
    topic: String,
    partition: u32,
    next: u64,
    yielded: Option<u64>,
    buf: std::collections::VecDeque<Record>,
}

impl<L: PartitionedLog> LogStream<L> {
    /// Reads `topic`/`partition` from offset `from`, committing as consumer `group`.
    pub fn new(log: L, group: &str, topic: &str, partition: u32, from: u64) -> Self {
        LogStream {
            log,
            group: group.into(),
            topic: topic.into(),
            partition,
            next: from,
            yielded: None,
            buf: Default::default(),
        }
    }
}

impl<L: PartitionedLog> RecordStream for LogStream<L> {
    async fn next(&mut self) -> Result<Option<Record>, LogError> {
        let appended = self.log.appended();
        loop {
            if let Some(r) = self.buf.pop_front() {
                self.next = r.offset + 1;
                self.yielded = Some(r.offset);
                return Ok(Some(r));
            }
            // registered before the read, so an append between the two still wakes it
            let woken = appended.as_ref().map(|n| n.notified());
            tokio::pin!(woken);
            if let Some(w) = woken.as_mut().as_pin_mut() {
                w.enable();
            }
            let recs = self.log.read(&self.topic, self.partition, self.next, 256)?;
            if recs.is_empty() {
                match woken.as_mut().as_pin_mut() {
                    // an append to any topic wakes every reader; a late one polls
                    Some(w) => {
                        let _ = tokio::time::timeout(Duration::from_millis(50), w).await;
                    }
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            self.buf.extend(recs);
        }
    }

    async fn commit_yielded(&mut self) -> Result<(), LogError> {
        if let Some(o) = self.yielded {
            self.log
                .commit(&self.group, &self.topic, self.partition, o + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fluvio::log::MemLog;

    #[test]
    fn a_watched_wait_gives_what_it_waited_for_ready_or_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(watched("x", 0, async { 7 })), 7);
        let later = rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                tx.send(8).unwrap();
            });
            watched("x", 0, rx).await
        });
        assert_eq!(later.unwrap(), 8);
    }

    #[test]
    fn commits_only_what_is_durable_and_not_twice() {
        let t0 = Instant::now();
        let mut t = OffsetTracker::new(3, Duration::from_secs(60), t0);
        assert_eq!(t.on_record(0, t0), Step::Forward);
        assert_eq!(t.on_record(1, t0), Step::Forward);
        assert_eq!(t.on_record(2, t0), Step::Checkpoint(3));
        assert!(!t.may_commit(2, 0), "nothing durable");
        assert!(!t.may_commit(2, 2), "record 2 not durable yet");
        assert!(t.may_commit(2, 3));
        assert!(t.may_commit(2, 10), "durable beyond is fine: 3 is durable");
        t.committed(3, t0);
        assert_eq!(t.last_committed(), Some(3));
        assert!(!t.may_commit(2, 10), "already committed");
        assert_eq!(t.on_record(3, t0), Step::Forward, "count restarts");
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            t.on_record(4, later),
            Step::Checkpoint(5),
            "time also checkpoints"
        );
    }

    #[test]
    fn a_failed_commit_waits_for_the_next_checkpoint() {
        let t0 = Instant::now();
        let mut t = OffsetTracker::new(2, Duration::from_secs(60), t0);
        assert_eq!(t.on_record(0, t0), Step::Forward);
        assert_eq!(t.on_record(1, t0), Step::Checkpoint(2));
        t.commit_failed(t0);
        assert_eq!(t.last_committed(), None);
        assert_eq!(
            t.on_record(2, t0),
            Step::Forward,
            "not a checkpoint per record"
        );
        assert_eq!(t.on_record(3, t0), Step::Checkpoint(4));
        assert!(t.may_commit(3, 4));
    }

    /// A stream that records the calls made to it, to check their order.
    struct Spy {
        inner: LogStream<MemLog>,
        calls: Arc<std::sync::Mutex<Vec<String>>>,
        durable: watch::Receiver<u64>,
    }

    impl RecordStream for Spy {
        async fn next(&mut self) -> Result<Option<Record>, LogError> {
            let r = self.inner.next().await?;
            if let Some(r) = &r {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("next {}", r.offset));
            }
            Ok(r)
        }
        async fn commit_yielded(&mut self) -> Result<(), LogError> {
            let y = self.inner.yielded.unwrap();
            let d = *self.durable.borrow();
            self.calls
                .lock()
                .unwrap()
                .push(format!("commit {} durable {d}", y + 1));
            self.inner.commit_yielded().await
        }
    }

    #[test]
    fn the_reader_commits_between_records_after_durability_only() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let log = MemLog::new();
            log.create_topic("t", 1).unwrap();
            for i in 0..5 {
                log.append("t", b"k", format!("v{i}").as_bytes()).unwrap();
            }
            let (dtx, drx) = watch::channel(0u64);
            let (tx, mut rx) = mpsc::channel(2);
            let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
            let spy = Spy {
                inner: LogStream::new(log.clone(), "g", "t", 0, 0),
                calls: calls.clone(),
                durable: drx.clone(),
            };
            let tracker = OffsetTracker::new(2, Duration::from_secs(60), Instant::now());
            let reader = tokio::task::spawn_local(read_partition(spy, tx, drx, tracker));
            // a slow ingest side: records become durable one at a time, after a pause
            for want in 0..5u64 {
                let r = rx.recv().await.unwrap();
                assert_eq!(r.offset, want);
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert!(
                    log.committed("g", "t", 0)
                        .unwrap()
                        .is_none_or(|c| c <= want),
                    "committed past what is durable"
                );
                dtx.send(want + 1).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            reader.abort();
            let calls = calls.lock().unwrap().clone();
            assert_eq!(
                calls,
                [
                    "next 0",
                    "next 1",
                    "commit 2 durable 2",
                    "next 2",
                    "next 3",
                    "commit 4 durable 4",
                    "next 4"
                ]
            );
            assert_eq!(log.committed("g", "t", 0).unwrap(), Some(4));
        });
    }

    /// Fails its first read, then yields two records and ends.
    struct Flaky(Vec<Result<Option<Record>, LogError>>);

    impl RecordStream for Flaky {
        async fn next(&mut self) -> Result<Option<Record>, LogError> {
            if self.0.is_empty() {
                return Ok(None);
            }
            self.0.remove(0)
        }
        async fn commit_yielded(&mut self) -> Result<(), LogError> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_read_is_retried_not_the_end_of_the_partition() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let rec = |o| Record {
            offset: o,
            key: vec![],
            value: vec![],
        };
        let flaky = Flaky(vec![
            Err(LogError::Failed {
                topic: "t".into(),
                why: "connection reset".into(),
            }),
            Ok(Some(rec(0))),
            Ok(Some(rec(1))),
        ]);
        let (tx, mut rx) = mpsc::channel(4);
        let (_dtx, drx) = watch::channel(0u64);
        let tracker = OffsetTracker::new(100, Duration::from_secs(60), Instant::now());
        let ended = rt.block_on(read_partition(flaky, tx, drx, tracker));
        assert!(ended.is_ok(), "{ended:?}");
        assert_eq!(rx.try_recv().unwrap().offset, 0);
        assert_eq!(rx.try_recv().unwrap().offset, 1);
        assert!(rx.try_recv().is_err());
    }
}

//! Scale-out (issue #7): several processes divide the shards and run as one.
//!
//! - Process 0's [`sequencer`] cuts the input partitions into epochs and appends each cut to
//!   the control topic.
//! - Every process reads the control topic and, for each cut, the records it names from every
//!   input partition, and applies the epoch with [`Sharded`] hosting only its own shards
//!   (shard `s` runs on process `s % processes`). Commands for other processes' shards travel
//!   through the exchange topic ([`trade`]), one round at a time.
//! - So every process admits every event alike (deduplication, lateness, the watermark) and
//!   the union of their states and outputs is what one process with every shard reaches.
//! - Each process checkpoints its shards to its own store every few epochs, with its place
//!   in the control topic and in its exchange partition; after a restart it applies the
//!   epochs after its checkpoint again, reading what the others sent it from its partition,
//!   while the others wait at the round they need from it.
//!
//! The transport is anything behind [`Transport`]: Fluvio, or the in-memory log in tests.

pub mod sequencer;
pub mod trade;

use crate::config::FluvioTopics;
use crate::fluvio::log::{LogError, MemLog, PartitionedLog};
use crate::fluvio::mapping::Stream;
use crate::fluvio::source::{source_name, RecordStream};
use crate::fluvio::Transport;
use crate::store::{Batch, CheckpointWrite, Store, StoreError};
use omnistream_actors::cold::Cold;
use omnistream_actors::engine::{Applied, Checkpoint, Emitted, Snapshot};
use omnistream_actors::sharded::Sharded;
use omnistream_actors::{Output, Rules};
use omnistream_schemas::{Decoder, Event, Pii};
use sequencer::{Control, Cut};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use trade::LogLink;

/// Why a process of the cluster stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The transport failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record of the control or exchange topic, or the checkpoint, does not read.
    #[error("{0}")]
    Corrupt(String),
    /// The process was stopped, or a task it needs ended.
    #[error("stopped: {0}")]
    Stopped(String),
    /// An epoch could not finish (a link failure or a stop in the middle of it): its state
    /// is dropped, and a restart applies it again from the last checkpoint.
    #[error("epoch {epoch} was aborted: {why}")]
    Aborted {
        /// The epoch.
        epoch: u64,
        /// Why.
        why: String,
    },
    /// The configuration is wrong.
    #[error("cluster.{key}: {why}")]
    Config {
        /// The key.
        key: &'static str,
        /// The problem.
        why: String,
    },
}

/// How the processes divide the work (the `[cluster]` section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct ClusterConfig {
    /// Processes in the cluster.
    pub processes: u32,
    /// This process's number, from 0 (process 0 also cuts the epochs).
    pub process: u32,
    /// Shards in the whole cluster; shard `s` runs on process `s % processes`; 0 (the
    /// default): one per process. Every process must be given the same number.
    pub shards: u32,
    /// Records an epoch takes at most (a fair share from each input partition).
    pub epoch_records: usize,
    /// Checkpoint after this many epochs (and whenever the process has caught up).
    pub commit_epochs: u64,
    /// Epochs the sequencer cuts ahead of process 0.
    pub ahead_epochs: u64,
    /// The topic of the cuts (one partition).
    pub control_topic: String,
    /// The topic of the rounds' commands (one partition per process).
    pub exchange_topic: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            processes: 1,
            process: 0,
            shards: 0,
            epoch_records: 512,
            commit_epochs: 32,
            ahead_epochs: 8,
            control_topic: "omnistream-epochs".into(),
            exchange_topic: "omnistream-exchange".into(),
        }
    }
}

impl ClusterConfig {
    /// Shards in the whole cluster.
    pub fn shard_count(&self) -> usize {
        if self.shards == 0 {
            self.processes.max(1) as usize
        } else {
            self.shards as usize
        }
    }

    /// The shards this process runs.
    pub fn hosted(&self) -> Vec<usize> {
        (0..self.shard_count())
            .filter(|s| *s % self.processes.max(1) as usize == self.process as usize)
            .collect()
    }

    /// Refuses a configuration that cannot work, naming the key.
    pub fn check(&self) -> Result<(), ClusterError> {
        let bad = |key, why: String| Err(ClusterError::Config { key, why });
        if self.processes == 0 || self.processes > 64 {
            return bad("processes", format!("{} is not in 1..=64", self.processes));
        }
        if self.process >= self.processes {
            return bad(
                "process",
                format!(
                    "{} is not below processes ({})",
                    self.process, self.processes
                ),
            );
        }
        if self.shards != 0 && (self.shards < self.processes || self.shards > 256) {
            return bad(
                "shards",
                format!(
                    "{} must be 0 (one per process), or at least processes ({}) and at most 256",
                    self.shards, self.processes
                ),
            );
        }
        if self.epoch_records == 0 {
            return bad("epoch-records", "must be at least 1".into());
        }
        if self.commit_epochs == 0 {
            return bad("commit-epochs", "must be at least 1".into());
        }
        if self.ahead_epochs == 0 {
            return bad("ahead-epochs", "must be at least 1".into());
        }
        for (key, name) in [
            ("control-topic", &self.control_topic),
            ("exchange-topic", &self.exchange_topic),
        ] {
            if let Some(why) = crate::config::not_a_topic_name(name) {
                return bad(key, why);
            }
        }
        if self.control_topic == self.exchange_topic {
            return bad(
                "exchange-topic",
                format!(
                    "`{}` is the control topic too: epochs and commands need a topic each",
                    self.exchange_topic
                ),
            );
        }
        Ok(())
    }
}

/// What a process needs besides its transport and store.
#[derive(Clone)]
pub struct Setup {
    /// The rules (the same on every process).
    pub rules: Rules,
    /// The key personal values are hashed with (the same on every process).
    pub pii_key: Vec<u8>,
    /// The input topics.
    pub topics: FluvioTopics,
    /// Partitions of each input topic.
    pub partitions: u32,
    /// The cluster.
    pub cluster: ClusterConfig,
    /// Codes the code registry's filter is sized for.
    pub codes: u64,
    /// Produce every stored output to its sink topic (at least once).
    pub sinks: bool,
    /// Most entities this process holds in memory (0: no bound); beyond, the least recently
    /// used are passivated to its store, and a checkpoint is written whenever half the bound
    /// waits to be (as `resident-entities` does for `run`).
    pub resident: usize,
    /// Where the process counts what it does (`/metrics` of `omnistream cluster`): epochs,
    /// checkpoints, the outputs it owns, and on process 0 the events and dead letters (every
    /// process admits every event; process 0 alone counts them, so sums over processes hold).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// How process 0's sequencer aligns the input partitions in event time (`[fluvio]
    /// max-skew-s`, `idle-ms`, and `max-future-s`); only process 0's counts.
    pub align: sequencer::Aligning,
}

/// How processes read a cut: 2 since each cut carries process 0's clock, by which every
/// process refuses events too far ahead (a build that ignores it would admit what the others
/// refuse, so the two must not share a cluster); 3 since values with control characters are
/// refused, and the commands exchanged between processes grew (`MemberCmd::Phones`,
/// `MergeRefused`, `SkuCmd::Check`), which an older build cannot read; 4 since an event
/// naming its member by `member_id` asks that member first whether it exists
/// (`MemberCmd::Given`, `OrderCmd::UnknownMember`).
pub const CUT_FORMAT: u32 = 4;

impl Setup {
    /// A hash of what every process must share for their epochs to agree: the rules, the
    /// personal-data key (through a keyed hash, never the key), the shard and process counts,
    /// the input partitions, this build's version and how it reads a cut ([`CUT_FORMAT`]).
    /// Process 0 writes it into every cut; a process whose own differs refuses the cut
    /// instead of diverging in silence.
    pub fn fingerprint(&self) -> u64 {
        let rules = serde_json::to_string(&self.rules).unwrap_or_default();
        let key =
            Pii::new(&self.pii_key).hash(&omnistream_schemas::IdKind::MemberId, "fingerprint");
        let text = format!(
            "{rules}|{key}|{}|{}|{}|{}|{CUT_FORMAT}",
            self.cluster.shard_count(),
            self.cluster.processes,
            self.partitions,
            env!("CARGO_PKG_VERSION")
        );
        crate::fluvio::mapping::stable_hash(text.as_bytes()).max(1)
    }
}

/// How a caller stops a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep running.
    Run,
    /// Stop after the epoch being applied, with a checkpoint. The epoch must finish on every
    /// process, so when all drain at once they all finish it; while another process is down
    /// this waits for it (abandon instead).
    Drain,
    /// Stop at once, without a checkpoint (as a crash would): an epoch waiting for another
    /// process is aborted, and a restart applies again what came after the last checkpoint.
    Abandon,
}

/// What a process did until it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The epoch it resumed at (0 on a fresh store).
    pub resumed_at: u64,
    /// Epochs applied.
    pub epochs: u64,
    /// Events applied.
    pub events: u64,
    /// Events dropped as repeats.
    pub duplicates: u64,
    /// Records dead-lettered (undecodable or late; counted on process 0, which writes them).
    pub rejected: u64,
    /// Outputs stored.
    pub outputs: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Outputs produced to the sink topics (a restart may produce some again).
    pub produced: u64,
    /// The epoch a stop cut short, if any: it was dropped, and the next start applies it
    /// again from the last checkpoint.
    pub abandoned: Option<u64>,
    /// Entities passivated to the store (with `resident`).
    pub passivated: u64,
}

/// How long a drain waits for the epoch under way to finish on every process before it
/// abandons it (another process stopped first, or is down).
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A process's own place, kept in its checkpoint with the state it belongs to.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Place {
    /// The next epoch to apply.
    epoch: u64,
    /// The control topic's offset of that epoch's cut (or before it).
    control: u64,
    /// Where to read this process's exchange partition from.
    exchange: u64,
    /// The next output's sequence number.
    next_output: u64,
    /// Whose store this is. A store holds one process's shards, so another process, or
    /// another cluster shape, refuses it. Absent in checkpoints written before it was
    /// recorded.
    #[serde(default)]
    owner: Option<Owner>,
}

/// The process a store belongs to, in the cluster shape it was written by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    process: u32,
    processes: u32,
    shards: u32,
}

impl Owner {
    fn of(cfg: &ClusterConfig) -> Owner {
        Owner {
            process: cfg.process,
            processes: cfg.processes,
            shards: cfg.shard_count() as u32,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "process {} of {} with {} shards",
            self.process, self.processes, self.shards
        )
    }
}

/// The CQL keyspace of one cluster process: `{keyspace}_p{process}`. Each process keeps its
/// own checkpoints, states and outputs, as each keeps its own `data-dir` on the embedded
/// store; `omnistream migrate --cluster` creates all of them.
pub fn process_keyspace(keyspace: &str, process: u32) -> String {
    format!("{keyspace}_p{process}")
}

/// An epoch as read from the topics: its cut, its records (each with the index of its range
/// and its offset), and the offset after its cut.
struct Fed {
    cut: Cut,
    records: Vec<(usize, u64, Vec<u8>)>,
    next_control: u64,
}

/// How long the feeder waits for a record a cut names before it reads the partition again.
const STALL: std::time::Duration = std::time::Duration::from_secs(5);

/// Where an epoch's event came from: its range in the cut, its offset, and (on process 0,
/// which writes the dead letters) its line.
type Source = (usize, u64, Vec<u8>);

/// The store's name of the sinks' cursor: outputs before it were produced.
pub const SINK_POSITION: &str = "cluster:sink";

/// Every input partition, in the order a cut lists them.
pub fn inputs(topics: &FluvioTopics, partitions: u32) -> Vec<(String, u32)> {
    Stream::ALL
        .iter()
        .flat_map(|s| {
            let t = s.topic(topics).to_string();
            (0..partitions).map(move |p| (t.clone(), p))
        })
        .collect()
}

/// An in-memory log holding every topic a cluster of `processes` processes uses (the input
/// and sink topics with `setup.partitions` partitions, the control topic, the exchange topic)
/// and `lines` on the input topics, routed and keyed as `omnistream produce` does: the
/// cluster without a Fluvio server, for tests and benchmarks.
pub fn mem_log(setup: &Setup, processes: u32, lines: &[Vec<u8>]) -> Result<MemLog, LogError> {
    let log = MemLog::new();
    let cfg = crate::config::FluvioConfig {
        topics: setup.topics.clone(),
        partitions: setup.partitions,
        ..crate::config::FluvioConfig::default()
    };
    for t in crate::fluvio::client::all_topics(&cfg) {
        log.create_topic(&t, setup.partitions)?;
    }
    log.create_topic(&setup.cluster.control_topic, 1)?;
    log.create_topic(&setup.cluster.exchange_topic, processes)?;
    let decoder = Decoder::new(Pii::new(&setup.pii_key));
    for l in lines {
        let (topic, key) = crate::fluvio::client::route_line(l, None, &cfg, &decoder);
        log.append(&topic, key.as_bytes(), l)?;
    }
    Ok(log)
}

fn colds(store: &dyn Store, n: usize) -> Result<Vec<Box<dyn Cold>>, ClusterError> {
    (0..n)
        .map(|_| {
            store.cold().ok_or_else(|| ClusterError::Config {
                key: "store",
                why: "a cluster process needs a store that keeps checkpoints".into(),
            })
        })
        .collect()
}

/// The shards as this process's last checkpoint left them (all of them present, the other
/// processes' empty), and its place; a fresh start when there is none.
fn restore(store: &dyn Store, setup: &Setup) -> Result<(Sharded, Place), ClusterError> {
    let n = setup.cluster.shard_count();
    let colds = colds(store, n)?;
    match store.last_checkpoint()? {
        Some(cp) => {
            let mut place: Place = serde_json::from_slice(&cp.extras).map_err(|e| {
                ClusterError::Corrupt(format!("the checkpoint's place does not read: {e}"))
            })?;
            let me = Owner::of(&setup.cluster);
            match place.owner {
                Some(owner) if owner != me => {
                    return Err(ClusterError::Config {
                        key: "process",
                        why: format!(
                            "this store holds the checkpoint of {owner}, not of {me}: give \
                             each process a store of its own (its data-dir, or on CQL the \
                             keyspace {}); a new assignment (processes or shards) starts on \
                             empty stores",
                            process_keyspace("<keyspace>", me.process)
                        ),
                    })
                }
                _ => place.owner = Some(me),
            }
            let saved = Checkpoint {
                states: Vec::new(),
                global: cp.global,
                seen: cp.seen,
                filter: cp.filter,
            };
            let s = Sharded::restore(
                setup.rules.clone(),
                n,
                &saved,
                colds,
                setup.resident,
                setup.codes,
            )
            .map_err(|e| ClusterError::Corrupt(format!("restoring the checkpoint: {e}")))?;
            Ok((s, place))
        }
        None => {
            let mut s = Sharded::new(setup.rules.clone(), n);
            s.set_cold(colds, setup.resident, setup.codes);
            let place = Place {
                owner: Some(Owner::of(&setup.cluster)),
                ..Place::default()
            };
            Ok((s, place))
        }
    }
}

/// The state a process's store holds as of its last checkpoint: its shards' entities (and,
/// on process 0, the reference data).
pub fn snapshot(store: &dyn Store, setup: &Setup) -> Result<Snapshot, ClusterError> {
    let (s, _) = restore(store, setup)?;
    s.try_snapshot().map_err(ClusterError::Corrupt)
}

/// Reads the cuts from `from` and the records each names, in the cut's order, and hands each
/// epoch to the process; expects epoch `epoch` first and skips repeated cuts.
#[allow(clippy::too_many_arguments)]
async fn feed<T: Transport>(
    transport: T,
    control_topic: String,
    from: u64,
    mut epoch: u64,
    fingerprint: u64,
    tx: mpsc::Sender<Fed>,
    mut halt: watch::Receiver<bool>,
    mut stop: watch::Receiver<Stop>,
) -> Result<(), ClusterError> {
    let mut control = transport.open_stream(&control_topic, 0, from).await?;
    let mut streams: HashMap<(String, u32), (T::Stream, u64)> = HashMap::new();
    // where each partition's last accepted cut ended
    let mut ends: HashMap<(String, u32), u64> = HashMap::new();
    loop {
        let rec = tokio::select! {
            r = control.next() => r?,
            _ = halt.wait_for(|h| *h) => return Ok(()),
            // a drain takes no new epoch
            _ = stop.wait_for(|s| *s != Stop::Run) => return Ok(()),
        };
        let Some(rec) = rec else { return Ok(()) };
        let control: Control = serde_json::from_slice(&rec.value).map_err(|e| {
            ClusterError::Corrupt(format!(
                "{control_topic} offset {}: a record does not parse: {e}",
                rec.offset
            ))
        })?;
        let Control::Cut(cut) = control else {
            continue;
        };
        if cut.epoch < epoch {
            continue;
        }
        if cut.fingerprint != 0 && cut.fingerprint != fingerprint {
            return Err(ClusterError::Config {
                key: "process",
                why: format!(
                    "epoch {} was cut by a process 0 with other rules, personal-data key, \
                     shard or process count, input partitions or version than this one's: \
                     every process must be given the same",
                    cut.epoch
                ),
            });
        }
        if cut.epoch > epoch {
            return Err(ClusterError::Corrupt(format!(
                "{control_topic} offset {}: epoch {} follows epoch {}",
                rec.offset,
                cut.epoch,
                epoch.saturating_sub(1)
            )));
        }
        let mut records = Vec::with_capacity(usize::try_from(cut.records()).unwrap_or(0));
        for (i, r) in cut.ranges.iter().enumerate() {
            if r.to <= r.from {
                continue;
            }
            let key = (r.topic.clone(), r.partition);
            if let Some(end) = ends.get(&key).filter(|end| **end != r.from) {
                // cuts follow each other: two sequencers, or one that lost its place
                return Err(ClusterError::Corrupt(format!(
                    "{control_topic} offset {}: epoch {} starts {} partition {} at {}, where \
                     the epoch before ended at {end}",
                    rec.offset, cut.epoch, r.topic, r.partition, r.from
                )));
            }
            ends.insert(key.clone(), r.to);
            if streams.get(&key).is_none_or(|(_, next)| *next != r.from) {
                let s = transport.open_stream(&r.topic, r.partition, r.from).await?;
                streams.insert(key.clone(), (s, r.from));
            }
            let mut reopened = 0;
            while let Some((stream, next)) = streams.get_mut(&key) {
                if *next >= r.to {
                    break;
                }
                // the records of a cut exist: one that does not come in a while was dropped by
                // the client (as the last of a backlog can be), so the stream is opened again
                // (no offsets are committed on it, so cutting `next()` short is harmless)
                let got = tokio::select! {
                    g = tokio::time::timeout(STALL, stream.next()) => g,
                    _ = halt.wait_for(|h| *h) => return Ok(()),
                };
                // every process must take exactly the cut's records: a record the client
                // skipped, or one that does not come, is read again, and a process never goes
                // on without it
                let skipped = match &got {
                    Ok(Ok(Some(g))) => (g.offset > *next).then_some(g.offset),
                    Err(_) => Some(r.to),
                    Ok(_) => None,
                };
                if let Some(seen) = skipped {
                    reopened += 1;
                    if reopened > 5 {
                        return Err(ClusterError::Stopped(format!(
                            "{} partition {}: offsets from {} cannot be read (the cut needs \
                             them up to {})",
                            r.topic, r.partition, next, r.to
                        )));
                    }
                    tracing::warn!(topic = %r.topic, partition = r.partition, expected = *next,
                        seen, "records of a cut did not come; reading them again");
                    let at = *next;
                    let s = transport.open_stream(&r.topic, r.partition, at).await?;
                    streams.insert(key.clone(), (s, at));
                    continue;
                }
                let Ok(got) = got else { continue };
                let Some(got) = got? else {
                    return Err(ClusterError::Stopped(format!(
                        "{} partition {} ended before offset {}",
                        r.topic, r.partition, r.to
                    )));
                };
                *next = got.offset + 1;
                if got.offset >= r.from && got.offset < r.to {
                    records.push((i, got.offset, got.value));
                }
            }
        }
        let fed = Fed {
            cut,
            records,
            next_control: rec.offset + 1,
        };
        if tx.send(fed).await.is_err() {
            return Ok(());
        }
        epoch += 1;
    }
}

/// The ends of the channels between the process's thread and its transport tasks.
struct Io {
    /// Rounds to trade, from the link.
    requests: mpsc::Receiver<trade::Request>,
    /// Epochs read, to the process.
    fed: mpsc::Sender<Fed>,
    /// The next epoch the process will apply (the sequencer stays near it).
    applied: watch::Receiver<u64>,
    /// Durable outputs to produce, and how far they were produced.
    rows: mpsc::UnboundedReceiver<Vec<(u64, Vec<u8>)>>,
    produced: watch::Sender<u64>,
    /// Stops every task.
    halt: Arc<watch::Sender<bool>>,
    /// The caller's stop: the feeder takes no new epoch once it is not `Run`.
    stop: watch::Receiver<Stop>,
    /// The first task's failure.
    failure: Arc<Mutex<Option<ClusterError>>>,
}

/// Produces the rows it is handed to the sink topics, retrying until each batch is flushed
/// (never dropping one), and reports how far it got.
async fn produce<K: crate::fluvio::sink::RecordSink>(
    mut sink: K,
    topics: FluvioTopics,
    mut rows: mpsc::UnboundedReceiver<Vec<(u64, Vec<u8>)>>,
    produced: watch::Sender<u64>,
    mut halt: watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    let counter = |name: &str| prometheus::IntCounter::new(name, name).ok();
    let (Some(p), Some(f), Some(s)) = (counter("produced"), counter("failed"), counter("skipped"))
    else {
        return Err(ClusterError::Stopped("no counters".into()));
    };
    let counters = crate::fluvio::sink::SinkCounters {
        produced: p,
        failed: f,
        skipped: s,
    };
    // ends when the process drops its end, after producing what it was handed (a drained
    // process waits for that); a halt only cuts the retries short
    while let Some(batch) = rows.recv().await {
        let Some(next) = batch.last().map(|(seq, _)| seq + 1) else {
            continue;
        };
        let halted = async {
            // a dropped sender halts too
            let _ = halt.wait_for(|h| *h).await;
        };
        let retried =
            crate::fluvio::sink::produce_retrying(&mut sink, &topics, &batch, &counters, halted);
        if retried.await.is_none() {
            return Ok(());
        }
        let _ = produced.send(next);
    }
    Ok(())
}

/// The tasks' thread: runs them on a runtime of its own until all end; the first error,
/// if any, halts the others.
fn spawn_io<T: Transport + Clone + Send + 'static>(
    transport: T,
    setup: &Setup,
    place: &Place,
    io: Io,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let Io {
        requests,
        fed,
        applied,
        rows,
        produced,
        halt,
        stop,
        failure,
    } = io;
    let cfg = setup.cluster.clone();
    let (topics, sinks) = (setup.topics.clone(), setup.sinks);
    let fingerprint = setup.fingerprint();
    let cutting = sequencer::Cutting {
        fingerprint,
        align: setup.align,
        max_lateness_s: setup.rules.max_lateness_s,
        watermark_lag_s: setup.rules.watermark_lag_s,
        waits: setup.metrics.as_ref().map(|m| {
            (
                m.fluvio_align_waits.clone(),
                m.fluvio_align_wait_seconds.clone(),
            )
        }),
    };
    let inputs = inputs(&setup.topics, setup.partitions);
    let place = place.clone();
    std::thread::Builder::new()
        .name(format!("cluster-io-{}", cfg.process))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(ClusterError::Stopped(format!("no runtime: {e}")));
                    let _ = halt.send(true);
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let mut set = tokio::task::JoinSet::new();
                let t = transport.clone();
                let (h, c) = (halt.subscribe(), cfg.clone());
                set.spawn_local(async move {
                    let (control, at, epoch) = (c.control_topic, place.control, place.epoch);
                    feed(t, control, at, epoch, fingerprint, fed, h, stop).await
                });
                let t = transport.clone();
                let (h, c) = (halt.subscribe(), cfg.clone());
                set.spawn_local(async move {
                    // parts are keyed for one partition per process
                    let n = t.partitions(&c.exchange_topic).await?;
                    if n != c.processes {
                        return Err(ClusterError::Config {
                            key: "exchange-topic",
                            why: format!(
                                "{} has {n} partitions; a cluster of {} processes needs one \
                                 each (create a topic with {} and name it here)",
                                c.exchange_topic, c.processes, c.processes
                            ),
                        });
                    }
                    let stream = t
                        .open_stream(&c.exchange_topic, c.process, place.exchange)
                        .await?;
                    let sink = t.open_sink().await?;
                    trade::run(
                        stream,
                        place.exchange,
                        sink,
                        c.exchange_topic,
                        c.process,
                        c.processes,
                        requests,
                        h,
                    )
                    .await
                });
                if sinks {
                    let (t, h) = (transport.clone(), halt.subscribe());
                    set.spawn_local(async move {
                        produce(t.open_sink().await?, topics, rows, produced, h).await
                    });
                }
                if cfg.process == 0 {
                    let h = halt.subscribe();
                    set.spawn_local(sequencer::run(transport, cfg, inputs, applied, h, cutting));
                }
                while let Some(done) = set.join_next().await {
                    let err = match done {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => e,
                        Err(e) => ClusterError::Stopped(format!("a task failed: {e}")),
                    };
                    tracing::error!(error = %err, "a cluster task stopped");
                    failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(err);
                    let _ = halt.send(true);
                }
            });
        })
}

/// Runs one process of the cluster until `stop` says so or a task fails: restores its
/// checkpoint, then applies the epochs the control topic lists. Blocks the calling thread
/// (the shards run on it and on threads of their own; the transport's tasks on another).
pub fn run_process<T: Transport + Clone + Send + 'static>(
    transport: T,
    mut store: Box<dyn Store>,
    setup: &Setup,
    mut stop: watch::Receiver<Stop>,
    progress: Option<watch::Sender<u64>>,
) -> Result<Report, ClusterError> {
    setup.cluster.check()?;
    let cfg = &setup.cluster;
    let (mut sharded, place) = restore(&*store, setup)?;
    let (req_tx, req_rx) = mpsc::channel(16);
    let link = Arc::new(LogLink::new(req_tx));
    sharded
        .host(&cfg.hosted(), link.clone())
        .map_err(|why| ClusterError::Config { key: "shards", why })?;
    let (fed_tx, mut fed_rx) = mpsc::channel::<Fed>(4);
    let (applied_tx, applied_rx) = watch::channel(place.epoch);
    let halt = Arc::new(watch::channel(false).0);
    let failure = Arc::new(Mutex::new(None));
    // outputs stored but maybe not produced: from the stored cursor to the checkpoint's end
    let (rows_tx, rows_rx) = mpsc::unbounded_channel();
    let cursor = store.position(SINK_POSITION)?.unwrap_or(0);
    let (produced_tx, produced) = watch::channel(cursor);
    if setup.sinks && cursor < place.next_output {
        let rows = store.outputs(cursor, usize::MAX)?;
        let _ = rows_tx.send(
            rows.into_iter()
                .take_while(|(seq, _)| *seq < place.next_output)
                .collect(),
        );
    }
    let io = Io {
        requests: req_rx,
        fed: fed_tx,
        applied: applied_rx,
        rows: rows_rx,
        produced: produced_tx,
        halt: halt.clone(),
        stop: stop.clone(),
        failure: failure.clone(),
    };
    let io = spawn_io(transport, setup, &place, io)
        .map_err(|e| ClusterError::Stopped(format!("no thread for the transport: {e}")))?;
    let sinks = Sinks {
        on: setup.sinks,
        rows: rows_tx,
        produced,
    };
    // abandoning wakes the tasks, so a round waiting for another process gives up; so does a
    // drain whose epoch has not finished after the grace period
    let stopper = {
        let halt = halt.clone();
        let (mut s, mut d) = (stop.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let mut h = halt.subscribe();
                    tokio::select! {
                        _ = s.wait_for(|s| *s == Stop::Abandon) => {}
                        _ = async {
                            let _ = d.wait_for(|s| *s == Stop::Drain).await;
                            tokio::time::sleep(DRAIN_GRACE).await;
                        } => {}
                        _ = h.wait_for(|h| *h) => {}
                    }
                });
            }
            let _ = halt.send(true);
        })
    };
    let decoder = Decoder::new(Pii::new(&setup.pii_key));
    let pii = Pii::new(&setup.pii_key);
    let mut report = Report {
        resumed_at: place.epoch,
        ..Report::default()
    };
    let mut place = place;
    let m = setup
        .metrics
        .clone()
        .unwrap_or_else(|| Arc::new(crate::metrics::Metrics::new(false)));
    m.cluster_next_epoch.set(place.epoch as i64);
    m.ready.set(1);
    let (mut counted_produced, mut counted_evicted) = (*sinks.produced.borrow(), 0u64);
    let mut batch = Batch::default();
    let mut since = 0u64;
    let mut out: Vec<Emitted> = Vec::new();
    let mut logged = std::time::Instant::now();
    // a checkpoint of everything applied so far (in the loop and in the drain alike),
    // counted in the report and the metrics
    macro_rules! checkpoint {
        () => {{
            let t = std::time::Instant::now();
            let r = commit(
                &mut *store,
                &mut sharded,
                &link,
                &sinks,
                &mut batch,
                &mut place,
            );
            if r.is_ok() {
                m.commit_seconds.observe(t.elapsed().as_secs_f64());
                m.checkpoints.inc();
                report.checkpoints += 1;
            }
            r
        }};
    }
    let result = loop {
        if *stop.borrow_and_update() != Stop::Run {
            break Ok(());
        }
        // a checkpoint every `commit-epochs`, and whenever the process has caught up with what
        // the feeder has read (so a restart has little to apply again)
        // passivated states wait in memory, encoded, until a checkpoint writes them
        let spilled = setup.resident > 0 && sharded.spilled() >= setup.resident / 2;
        if since > 0 && (since >= cfg.commit_epochs || fed_rx.is_empty() || spilled) {
            if let Err(e) = checkpoint!() {
                break Err(e);
            }
            since = 0;
        }
        let Some(fed) = fed_rx.blocking_recv() else {
            break Ok(());
        };
        let epoch = fed.cut.epoch;
        let primary = cfg.process == 0;
        // decoded events, in time order (then in the cut's order); what does not decode is
        // dead-lettered by process 0
        // (with each its range, offset, and on process 0 its line, should it turn out late)
        let mut events: Vec<(Event, Source)> = Vec::with_capacity(fed.records.len());
        for (i, offset, bytes) in fed.records {
            // an event further ahead of process 0's clock than it allows is refused as
            // `run` refuses it (by every process alike: the clock is the cut's)
            let decoded =
                decoder
                    .decode(&bytes)
                    .and_then(|ev| match fed.cut.too_far_ahead(ev.ts.unix_us) {
                        None => Ok(ev),
                        Some(p) => Err(omnistream_schemas::Rejection {
                            id: Some(ev.id.to_string()),
                            problems: vec![p],
                            kind: Some(ev.body.kind()),
                        }),
                    });
            match decoded {
                Ok(ev) => {
                    let raw = if primary { bytes } else { Vec::new() };
                    events.push((ev, (i, offset, raw)));
                }
                Err(rej) if primary => {
                    report.rejected += 1;
                    m.refused(crate::metrics::kind_label(rej.kind), &rej.problems);
                    let r = &fed.cut.ranges[i];
                    dead_letter(
                        &mut batch,
                        &mut place,
                        &source_name(&r.topic, r.partition),
                        offset,
                        rej.id,
                        serde_json::to_value(&rej.problems).unwrap_or_default(),
                        pii.redact(&bytes),
                    );
                }
                Err(_) => {}
            }
        }
        events.sort_by_key(|(ev, _)| ev.ts.unix_us);
        let (evs, sources): (Vec<Event>, Vec<Source>) = events.into_iter().unzip();
        link.begin(epoch);
        let started = std::time::Instant::now();
        m.cluster_epoch_started.set(unix_seconds());
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sharded.apply_epoch(&evs, &mut out)
        }));
        let results = match applied {
            Ok(r) => r,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "a shard panicked".into());
                break Err(ClusterError::Aborted { epoch, why });
            }
        };
        for ((ev, (i, offset, raw)), (applied, _)) in evs.iter().zip(&sources).zip(&results) {
            // events are counted by process 0 alone (every process admits every event)
            match applied {
                Applied::Done(_) => {
                    report.events += 1;
                    if primary {
                        m.event(ev.body.kind().name(), "accepted");
                    }
                }
                Applied::Duplicate => {
                    report.duplicates += 1;
                    if primary {
                        m.event(ev.body.kind().name(), "duplicate");
                    }
                }
                Applied::Late if primary => {
                    report.rejected += 1;
                    let why = crate::shard::too_late(ev.ts.unix_us, sharded.coordinator());
                    m.refused(ev.body.kind().name(), std::slice::from_ref(&why));
                    let r = &fed.cut.ranges[*i];
                    dead_letter(
                        &mut batch,
                        &mut place,
                        &source_name(&r.topic, r.partition),
                        *offset,
                        Some(ev.id.to_string()),
                        serde_json::to_value(vec![why]).unwrap_or_default(),
                        pii.redact(raw),
                    );
                }
                Applied::Late => {}
            }
        }
        m.cluster_epoch_seconds
            .observe(started.elapsed().as_secs_f64());
        m.cluster_epoch_started.set(0);
        m.observe(&out);
        for e in out.drain(..) {
            let json = serde_json::to_vec(&e).unwrap_or_default();
            if let Output::Ledger { member, seq, .. } = &e.output {
                batch.ledger.push((member.to_string(), *seq, json.clone()));
            }
            batch.outputs.push((place.next_output, json));
            place.next_output += 1;
            report.outputs += 1;
        }
        report.epochs += 1;
        place.epoch = epoch + 1;
        place.control = fed.next_control;
        since += 1;
        let _ = applied_tx.send(place.epoch);
        m.cluster_epochs.inc();
        m.cluster_next_epoch.set(place.epoch as i64);
        m.cluster_waiting_epochs.set(fed_rx.len() as i64);
        let produced = *sinks.produced.borrow();
        m.fluvio_produced
            .inc_by(produced.saturating_sub(counted_produced));
        counted_produced = counted_produced.max(produced);
        let evicted = sharded.evicted();
        m.passivated.inc_by(evicted.saturating_sub(counted_evicted));
        counted_evicted = evicted;
        if let Some(p) = &progress {
            let _ = p.send(place.epoch);
        }
        if logged.elapsed() >= std::time::Duration::from_secs(10) {
            logged = std::time::Instant::now();
            tracing::info!(
                epoch = place.epoch,
                events = report.events,
                outputs = report.outputs,
                "cluster process applied"
            );
        }
    };
    // stopping (or failed): no longer ready, though a drain may still checkpoint
    m.ready.set(0);
    m.cluster_epoch_started.set(0);
    // an epoch a stop cut short is no failure: it is dropped and applied again next time
    let result = match result {
        Err(ClusterError::Aborted { epoch, .. }) if *stop.borrow() != Stop::Run => {
            report.abandoned = Some(epoch);
            since = 0;
            Ok(())
        }
        r => r,
    };
    let drain = *stop.borrow() != Stop::Abandon;
    let result = result.and_then(|()| {
        if since > 0 && drain {
            checkpoint!()?;
        }
        Ok(())
    });
    if drain && sinks.on && result.is_ok() && report.abandoned.is_none() {
        // a drained process leaves nothing for its next start to produce, if it can (an
        // abandoned epoch's outputs were never committed: nothing to wait for)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while *sinks.produced.borrow() < place.next_output && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let produced = *sinks.produced.borrow();
    report.produced = produced.saturating_sub(cursor);
    if drain && sinks.on && result.is_ok() && report.abandoned.is_none() {
        // the cursor as the sinks left it, so the next start does not produce them again
        let cursor = Batch {
            positions: vec![(SINK_POSITION.to_string(), produced)],
            ..Batch::default()
        };
        if let Err(e) = store.commit(&cursor) {
            tracing::warn!(error = %e, "storing the sinks' cursor failed");
        }
    }
    drop(sinks);
    report.passivated = sharded.evicted();
    let _ = halt.send(true);
    drop(fed_rx);
    drop(link);
    drop(sharded);
    let _ = io.join();
    let _ = stopper.join();
    let failed = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (result, failed) {
        // the task's failure is the cause of an epoch cut short or a feed that ended
        (Err(ClusterError::Aborted { .. } | ClusterError::Stopped(_)), Some(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), Some(e)) if *stop.borrow() == Stop::Run => Err(e),
        (Ok(()), _) => Ok(report),
    }
}

/// Seconds since the Unix epoch, now (a wall-clock gauge for operators; never in the
/// entity logic).
fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The process's end of the sink task.
struct Sinks {
    on: bool,
    rows: mpsc::UnboundedSender<Vec<(u64, Vec<u8>)>>,
    produced: watch::Receiver<u64>,
}

/// Writes the outputs gathered since the last checkpoint and a checkpoint of the shards with
/// this process's place (positions in the control topic and in its exchange partition), then
/// hands the outputs to the sinks.
fn commit(
    store: &mut dyn Store,
    sharded: &mut Sharded,
    link: &LogLink,
    sinks: &Sinks,
    batch: &mut Batch,
    place: &mut Place,
) -> Result<(), ClusterError> {
    place.exchange = link.resume(place.epoch.saturating_sub(1))?;
    let cp = sharded
        .checkpoint()
        .map_err(|e| ClusterError::Corrupt(format!("checkpoint: {e}")))?;
    if let Some(why) = sharded.take_cold_error() {
        return Err(ClusterError::Corrupt(format!("loading a state: {why}")));
    }
    let extras = serde_json::to_vec(&*place).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
    // the place (control and exchange offsets) rides in the checkpoint's extras, atomically
    // with the states; the sinks' cursor is a position of its own, as the sinks move it
    batch.positions = Vec::new();
    if sinks.on {
        batch
            .positions
            .push((SINK_POSITION.to_string(), *sinks.produced.borrow()));
    }
    batch.checkpoint = Some(CheckpointWrite {
        seq: 0,
        states: cp.states,
        global: cp.global,
        seen: cp.seen,
        filter: cp.filter,
        extras,
    });
    // the outputs first, then the checkpoint that names the next output: a crash between
    // the two applies the epochs again and writes the same outputs at the same numbers
    store.commit(batch)?;
    let outputs = std::mem::take(&mut batch.outputs);
    *batch = Batch::default();
    if sinks.on && !outputs.is_empty() {
        let _ = sinks.rows.send(outputs);
    }
    Ok(())
}

/// A dead letter, as the service writes them.
fn dead_letter(
    batch: &mut Batch,
    place: &mut Place,
    source: &str,
    offset: u64,
    id: Option<String>,
    reasons: serde_json::Value,
    raw: String,
) {
    let dead = serde_json::json!({
        "output": "dead_letter", "source": source, "offset": offset, "id": id,
        "reasons": reasons, "raw": raw,
    });
    batch.outputs.push((
        place.next_output,
        serde_json::to_vec(&dead).unwrap_or_default(),
    ));
    place.next_output += 1;
}

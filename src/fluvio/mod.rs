//! Fluvio topics as a source and as sinks (issue #7), behind small traits so the same code
//! runs over a real cluster ([`client`]) and over the in-memory log ([`log::MemLog`]) in tests.
//!
//! - [`mapping`]: event ↔ record, keys, topics, partition choice (pure).
//! - [`log`]: the partitioned-log trait and the in-memory log.
//! - [`source`]: one reader task and one ingest task per owned partition; positions are
//!   stored atomically with the events; consumer offsets follow durability.
//! - [`sink`]: durable outputs to the sink topics, retried, at least once.
//!
//! Several processes running as one are [`crate::cluster`]'s: it uses this module's
//! transport. (`own-partitions` splits the input between processes that do not exchange
//! commands: each then holds only the state its own events built.)

pub mod align;
pub mod client;
pub mod log;
pub mod mapping;
pub mod sink;
pub mod source;

use crate::config::FluvioConfig;
use crate::metrics::Metrics;
use crate::shard::{Read, Shard};
use crate::store::Store;
use actix::Addr;
use log::{LogError, MemLog, PartitionedLog};
use mapping::Stream;
use omnistream_actors::sharded::Sharded;
use omnistream_schemas::{Decoder, Pii};
use sink::{RecordSink, SinkCounters};
use source::{OffsetTracker, RecordStream, SourceError};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What the service needs from a transport: a stream per partition from an offset, and a
/// sink for outputs.
pub trait Transport {
    /// A partition's records.
    type Stream: RecordStream + 'static;
    /// Where outputs go.
    type Sink: RecordSink + 'static;
    /// Opens `topic`/`partition` from offset `from` (the store's position).
    fn open_stream(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> impl Future<Output = Result<Self::Stream, LogError>>;
    /// Opens the producers of the sink topics.
    fn open_sink(&self) -> impl Future<Output = Result<Self::Sink, LogError>>;
    /// The offset the next record appended to `topic`/`partition` will get (the log end).
    fn end_offset(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<u64, LogError>>;
    /// How many partitions `topic` has.
    fn partitions(&self, topic: &str) -> impl Future<Output = Result<u32, LogError>>;
}

/// The in-memory log as a transport, consuming as group `group`.
#[derive(Clone)]
pub struct MemTransport {
    /// The log.
    pub log: MemLog,
    /// The consumer group whose offsets are committed.
    pub group: String,
}

impl Transport for MemTransport {
    type Stream = source::LogStream<MemLog>;
    type Sink = MemLog;

    async fn open_stream(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Self::Stream, LogError> {
        self.log.partitions(topic)?;
        Ok(source::LogStream::new(
            self.log.clone(),
            &self.group,
            topic,
            partition,
            from,
        ))
    }

    async fn open_sink(&self) -> Result<MemLog, LogError> {
        Ok(self.log.clone())
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.log.end_offset(topic, partition)
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.log.partitions(topic)
    }
}

/// How often the source lag is measured.
pub const LAG_EVERY: Duration = Duration::from_secs(5);

/// Sets `omnistream_source_lag_records{topic, partition}` every `every`: the log end of each
/// owned partition minus the next offset whose records are durable in the store. A failed
/// lookup leaves the gauge as it was (and is logged at debug level).
async fn measure_lag<T: Transport>(
    transport: T,
    parts: Vec<(String, u32, watch::Receiver<u64>)>,
    gauge: prometheus::IntGaugeVec,
    every: Duration,
) -> Result<(), SourceError> {
    loop {
        for (topic, partition, durable) in &parts {
            match transport.end_offset(topic, *partition).await {
                Ok(end) => {
                    let lag = end.saturating_sub(*durable.borrow());
                    gauge
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
                Err(e) => tracing::debug!(%topic, partition, error = %e, "source lag unknown"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The tasks of the Fluvio source and sinks, running on the current actix/tokio thread.
pub struct Running {
    /// One per task; aborting them stops the source and sinks.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops every task (a reader stopped mid-`next()` never commits afterwards).
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Tasks spawned so far, aborted if start-up fails part way (a dropped handle would leave
/// them running, waiting on partitions that never start).
struct Spawned(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Spawned {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn spawn_logged<F>(what: String, f: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = Result<(), SourceError>> + 'static,
{
    use tracing::Instrument;
    let span = tracing::info_span!("fluvio", task = %what);
    actix::spawn(
        async move {
            match f.await {
                Ok(()) => tracing::info!("fluvio task ended"),
                Err(e) => tracing::error!(error = %e, "fluvio task stopped"),
            }
        }
        .instrument(span),
    )
}

/// Starts one reader and one ingest task per input topic and owned partition, from the
/// positions the store holds, and the sink task when `sinks` is on. Must run inside an actix
/// system (the tasks are spawned on the current thread).
pub async fn start<T: Transport + Clone + 'static>(
    transport: &T,
    cfg: &FluvioConfig,
    shard: Addr<Shard>,
    pii_key: &[u8],
    max_future_s: u64,
    metrics: &Metrics,
) -> Result<Running, LogError> {
    let pii = Pii::new(pii_key);
    let decoder = Decoder::new(pii.clone());
    let mut tasks = Spawned(Vec::new());
    let mut lag = Vec::new();
    let align = align::Align::new(Stream::ALL.len() * cfg.owned().len(), cfg.max_skew_s);
    for stream in Stream::ALL {
        let topic = stream.topic(&cfg.topics).to_string();
        for partition in cfg.owned() {
            let name = source::source_name(&topic, partition);
            let key = name.clone();
            let stored = shard
                .send(Read(move |_: &Sharded, s: &dyn Store| s.position(&key)))
                .await
                .map_err(|e| LogError::Failed {
                    topic: topic.clone(),
                    why: format!("the shard stopped: {e}"),
                })?
                .map_err(|e| LogError::Failed {
                    topic: topic.clone(),
                    why: format!("reading the stored position of {name}: {e}"),
                })?;
            let from = stored.unwrap_or(0);
            tracing::info!(source = %name, from, "fluvio source starts");
            let turn = align.turn(lag.len());
            // nothing to read: it holds nothing back (unknown: until its first batch or idle)
            if transport
                .end_offset(&topic, partition)
                .await
                .is_ok_and(|end| end <= from)
            {
                turn.idle();
            }
            let s = transport.open_stream(&topic, partition, from).await?;
            let (tx, rx) = mpsc::channel(cfg.channel_records);
            let (dtx, drx) = watch::channel(from);
            lag.push((topic.clone(), partition, dtx.subscribe()));
            let tracker = OffsetTracker::new(
                cfg.commit_every_records,
                Duration::from_millis(cfg.commit_every_ms),
                Instant::now(),
            );
            tasks.0.push(spawn_logged(
                format!("read {name}"),
                source::read_partition(s, tx, drx, tracker),
            ));
            tasks.0.push(spawn_logged(
                format!("ingest {name}"),
                source::ingest_partition(
                    shard.clone(),
                    Arc::from(name.as_str()),
                    decoder.clone(),
                    pii.clone(),
                    rx,
                    dtx,
                    cfg.max_batch_records,
                    max_future_s,
                    metrics.fluvio_consumed.clone(),
                    turn,
                    Duration::from_millis(cfg.idle_ms),
                    (
                        metrics.fluvio_align_waits.clone(),
                        metrics.fluvio_align_wait_seconds.clone(),
                    ),
                ),
            ));
        }
    }
    if metrics.enabled {
        tasks.0.push(spawn_logged(
            "source lag".into(),
            measure_lag(
                transport.clone(),
                lag,
                metrics.source_lag.clone(),
                LAG_EVERY,
            ),
        ));
    }
    if cfg.sinks {
        let sink = transport.open_sink().await?;
        let counters = SinkCounters {
            produced: metrics.fluvio_produced.clone(),
            failed: metrics.fluvio_produce_failures.clone(),
            skipped: metrics.fluvio_skipped.clone(),
        };
        tasks.0.push(spawn_logged(
            "sinks".into(),
            sink::run_sinks(
                shard,
                sink,
                cfg.topics.clone(),
                counters,
                Duration::from_millis(20),
            ),
        ));
    }
    Ok(Running {
        tasks: std::mem::take(&mut tasks.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FluvioConfig;
    use crate::shard::{FlushNow, GetStats};
    use crate::store::gated::{Gate, Gated};
    use crate::store::RedbStore;
    use actix::Actor;
    use mapping::{event_key, partition_of, raw_key, raw_stream, stored_output_route, Sink};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering::SeqCst;

    const KEY: &[u8] = b"test-key";

    fn generated(events: u64, seed: u64) -> Vec<Vec<u8>> {
        let mut sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
        sc.events = events;
        sc.seed = seed;
        omnistream_loadtest::generated_lines(&sc).unwrap()
    }

    /// What `omnistream produce --topic auto` does, into the in-memory log.
    fn produce(log: &MemLog, cfg: &FluvioConfig, lines: &[Vec<u8>]) {
        let d = Decoder::new(Pii::new(KEY));
        for l in lines {
            let key = d.decode(l).map_or_else(|_| raw_key(l), |e| event_key(&e));
            log.append(raw_stream(l).topic(&cfg.topics), key.as_bytes(), l)
                .unwrap();
        }
    }

    /// What one run of the service's Fluvio path did.
    struct RunResult {
        /// Records the shard took (applied, duplicate or rejected) in this run.
        seen: u64,
        /// Of which duplicates.
        duplicates: u64,
        /// Of which refused (malformed, or too late).
        rejected: u64,
        /// Batches that waited for the other partitions in event time.
        align_waits: u64,
        /// Every stored output row.
        outputs: Vec<Vec<u8>>,
        /// Stored positions by source name.
        positions: HashMap<String, Option<u64>>,
        /// Failed produce attempts.
        produce_failures: u64,
        /// Store commits failed on purpose.
        failed_commits: usize,
        /// The ids of the events in the store's log, in log order.
        logged: Vec<String>,
    }

    /// Runs the service's Fluvio path over `log` until `records` records are durable and
    /// the sinks produced every stored output, or (with `stop_after`) until that many records
    /// are durable, wherever the readers and sinks are then. With `fail_after`, the first
    /// store commit after that many records are durable fails.
    fn run(
        dir: &std::path::Path,
        log: &MemLog,
        cfg: &FluvioConfig,
        records: u64,
        stop_after: Option<u64>,
        fail_after: Option<u64>,
    ) -> RunResult {
        let (cfg, log, dir) = (cfg.clone(), log.clone(), dir.to_path_buf());
        let (result, arbiter) = actix::System::new().block_on(async move {
            let metrics = Arc::new(Metrics::default());
            let gate = Gate::opened();
            let shard = Shard::new(
                Box::new(Gated(RedbStore::open(&dir).unwrap(), gate.clone())),
                omnistream_actors::Rules::default(),
                KEY,
                crate::shard::ShardConfig {
                    commit_every: Duration::from_millis(5),
                    commit_events: 256,
                    ..crate::shard::ShardConfig::default()
                },
                Arc::new(AtomicBool::new(false)),
                metrics.clone(),
            )
            .unwrap();
            // on a thread of its own, as in the service
            let arbiter = actix::Arbiter::new();
            let shard = Shard::start_in_arbiter(&arbiter.handle(), move |_| shard);
            let transport = MemTransport {
                log: log.clone(),
                group: cfg.consumer.clone(),
            };
            let sink_total = |log: &MemLog| -> u64 {
                Sink::ALL
                    .iter()
                    .map(|s| log.all(s.topic(&cfg.topics)).len() as u64)
                    .sum()
            };
            let at_start = sink_total(&log);
            let running = start(&transport, &cfg, shard.clone(), KEY, 300, &metrics)
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let st = shard.send(GetStats).await.unwrap();
                // in this order: records durable (not just applied), so every output they
                // made is stored; then what is stored; then what the sinks produced
                let durable = metrics.fluvio_consumed.get();
                if fail_after.is_some_and(|k| durable >= k) && gate.failed.load(SeqCst) == 0 {
                    gate.fail_next.store(true, SeqCst);
                }
                let stored = shard
                    .send(Read(|_: &Sharded, s: &dyn Store| s.next_output().unwrap()))
                    .await
                    .unwrap();
                let produced = sink_total(&log);
                if stop_after.is_some_and(|k| durable >= k)
                    || (durable >= records && produced == stored)
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out: {st:?}, produced {produced} (from {at_start}), stored {stored}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            running.stop();
            shard.send(FlushNow).await.unwrap().unwrap();
            let st = shard.send(GetStats).await.unwrap();
            let names: Vec<String> = Stream::ALL
                .iter()
                .flat_map(|s| {
                    let t = s.topic(&cfg.topics).to_string();
                    cfg.owned()
                        .into_iter()
                        .map(move |p| source::source_name(&t, p))
                })
                .chain([sink::SINK_CURSOR.to_string()])
                .collect();
            let (outputs, positions, logged) = shard
                .send(Read(move |_: &Sharded, s: &dyn Store| {
                    let mut logged = Vec::new();
                    s.replay(0, &mut |_, entry| {
                        let v: serde_json::Value = serde_json::from_slice(entry).unwrap();
                        logged.push(v["id"].as_str().unwrap_or("-").to_string());
                    })
                    .unwrap();
                    let o: Vec<Vec<u8>> = s
                        .outputs(0, usize::MAX)
                        .unwrap()
                        .into_iter()
                        .map(|r| r.1)
                        .collect();
                    let p: HashMap<String, Option<u64>> = names
                        .into_iter()
                        .map(|n| {
                            let v = s.position(&n).unwrap();
                            (n, v)
                        })
                        .collect();
                    (o, p, logged)
                }))
                .await
                .unwrap();
            assert_eq!(metrics.fluvio_skipped.get(), 0);
            if stop_after.is_none() {
                // produced in this run: what was stored beyond what the topics held at start
                assert_eq!(
                    metrics.fluvio_produced.get(),
                    outputs.len() as u64 - at_start
                );
            }
            let result = RunResult {
                seen: st.applied + st.duplicates + st.rejected,
                duplicates: st.duplicates,
                rejected: st.rejected,
                align_waits: metrics.fluvio_align_waits.get(),
                outputs,
                positions,
                produce_failures: metrics.fluvio_produce_failures.get(),
                failed_commits: gate.failed.load(SeqCst),
                logged,
            };
            arbiter.stop();
            (result, arbiter)
        });
        // the shard, and with it the store, is gone once its thread is
        assert!(arbiter.join().is_ok());
        result
    }

    /// Checks the sink topics against the stored outputs and the positions against the log.
    fn check(log: &MemLog, cfg: &FluvioConfig, r: &RunResult) {
        // every stored output is in its sink topic exactly once, keyed by its entity, in the
        // partition its key owns
        let mut want: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for o in &r.outputs {
            let (s, _) = stored_output_route(o).unwrap();
            want.entry(s.topic(&cfg.topics).to_string())
                .or_default()
                .push(o.clone());
        }
        assert!(
            !want.get("decisions").is_none_or(Vec::is_empty),
            "no decisions"
        );
        for s in Sink::ALL {
            let topic = s.topic(&cfg.topics);
            let got = log.all(topic);
            for (p, rec) in &got {
                let (_, key) = stored_output_route(&rec.value).unwrap();
                assert_eq!(rec.key, key.as_bytes(), "{topic}");
                assert_eq!(*p, partition_of(&key, cfg.partitions), "{topic} {key}");
            }
            let mut got: Vec<Vec<u8>> = got.into_iter().map(|(_, r)| r.value).collect();
            let mut w = want.remove(topic).unwrap_or_default();
            got.sort();
            w.sort();
            assert_eq!(got.len(), w.len(), "{topic}");
            assert!(
                got == w,
                "{topic}: the produced records differ from the stored outputs"
            );
        }
        // positions: each partition's next offset, stored with the events; the consumer
        // offsets never pass them
        for s in Stream::ALL {
            let topic = s.topic(&cfg.topics);
            for p in cfg.owned() {
                let name = source::source_name(topic, p);
                let len = log.read(topic, p, 0, usize::MAX).unwrap().len() as u64;
                assert_eq!(r.positions[&name].unwrap_or(0), len, "{name}");
                let c = log.committed(&cfg.consumer, topic, p).unwrap();
                assert!(c.is_none_or(|c| c <= len), "{name}: committed {c:?}");
            }
        }
        assert_eq!(
            r.positions[sink::SINK_CURSOR],
            Some(r.outputs.len() as u64),
            "the sink cursor is stored"
        );
    }

    #[test]
    fn the_lag_gauge_is_the_log_end_minus_the_durable_offset() {
        let log = MemLog::new();
        log.create_topic("scans", 2).unwrap();
        let mut per_partition = [0u64; 2];
        for i in 0..40 {
            let (p, _) = log
                .append("scans", format!("k{i}").as_bytes(), b"{}")
                .unwrap();
            per_partition[p as usize] += 1;
        }
        let metrics = Metrics::default();
        let (tx0, rx0) = watch::channel(3u64);
        let (_tx1, rx1) = watch::channel(0u64);
        let transport = MemTransport {
            log: log.clone(),
            group: "g".into(),
        };
        let parts = vec![("scans".to_string(), 0, rx0), ("scans".to_string(), 1, rx1)];
        let gauge = metrics.source_lag.clone();
        let value = |p: &str| gauge.with_label_values(&["scans", p]).get();
        actix::System::new().block_on(async {
            let task = actix::spawn(measure_lag(
                transport,
                parts,
                metrics.source_lag.clone(),
                Duration::from_millis(5),
            ));
            // polled until measured (at most 2 s), so a busy machine cannot fail it
            let until = |want: [i64; 2]| async move {
                for _ in 0..400 {
                    if [value("0"), value("1")] == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                panic!("lag {:?}, expected {want:?}", [value("0"), value("1")]);
            };
            let all = |n: u64| i64::try_from(n).unwrap();
            until([all(per_partition[0] - 3), all(per_partition[1])]).await;
            // the store catches up: the lag falls to zero
            tx0.send(per_partition[0]).unwrap();
            until([0, all(per_partition[1])]).await;
            task.abort();
        });
        assert!(per_partition.iter().all(|n| *n > 3), "{per_partition:?}");
    }

    #[test]
    fn a_generated_stream_flows_through_the_log_to_the_sinks_and_resumes_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = MemLog::new();
        let cfg = FluvioConfig {
            enabled: true,
            partitions: 2,
            commit_every_records: 50,
            ..FluvioConfig::default()
        };
        for t in client::all_topics(&cfg) {
            log.create_topic(&t, cfg.partitions).unwrap();
        }
        let first = generated(600, 7);
        produce(&log, &cfg, &first);
        // a producer that is briefly down: the sinks retry, nothing is lost or doubled
        log.fail_next_appends(3);
        let r1 = run(dir.path(), &log, &cfg, first.len() as u64, None, None);
        assert_eq!(r1.seen, first.len() as u64);
        assert_eq!(r1.produce_failures, 3);
        check(&log, &cfg, &r1);
        let committed: u64 = (0..2)
            .filter_map(|p| log.committed(&cfg.consumer, "scans", p).unwrap())
            .sum();
        assert!(committed > 0, "consumer offsets follow durability");

        // a restart with more input: only the new records are read, outputs are not produced
        // twice
        let second = generated(300, 8);
        produce(&log, &cfg, &second);
        let r2 = run(dir.path(), &log, &cfg, second.len() as u64, None, None);
        assert_eq!(
            r2.seen,
            second.len() as u64,
            "resumed from the stored positions"
        );
        assert!(r2.outputs.len() > r1.outputs.len());
        check(&log, &cfg, &r2);
    }

    #[test]
    fn a_backfill_in_one_topic_is_read_in_step_with_the_others_and_nothing_is_refused_late() {
        // the members' history (a click each over the 28 days before) and the scenario's
        // own events in every topic (the 30 minutes after): read each partition as fast as
        // it goes, the other topics' events ran the watermark weeks past the history's,
        // which was then refused as too_late (max-lateness-s is 6 days)
        let mut sc = omnistream_loadtest::Scenario::load("smoke").unwrap();
        sc.events = 1_500;
        sc.history.days = 28;
        sc.history.share = 0.8;
        let lines = omnistream_loadtest::generated_lines(&sc).unwrap();
        let ts = |l: &Vec<u8>| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            omnistream_schemas::EventTime::parse(v["ts"].as_str().unwrap())
                .unwrap()
                .unix_us
        };
        let (oldest, newest) = (ts(&lines[0]), ts(&lines[lines.len() - 1]));
        assert!(
            newest - oldest > 20 * omnistream_actors::DAY_US,
            "no backfill"
        );
        // batches of 50: a batch of the history spans days and is cut; of 3 within a minute:
        // batches wait with others of their partition in flight, and step back for their
        // answers
        for (batch, skew) in [(50, FluvioConfig::default().max_skew_s), (3, 60)] {
            let dir = tempfile::tempdir().unwrap();
            let log = MemLog::new();
            let cfg = FluvioConfig {
                enabled: true,
                partitions: 2,
                max_batch_records: batch,
                max_skew_s: skew,
                ..FluvioConfig::default()
            };
            for t in client::all_topics(&cfg) {
                log.create_topic(&t, cfg.partitions).unwrap();
            }
            produce(&log, &cfg, &lines);
            let r = run(dir.path(), &log, &cfg, lines.len() as u64, None, None);
            assert_eq!(r.seen, lines.len() as u64);
            assert_eq!(
                r.rejected, 0,
                "batches of {batch}: the partitions were not aligned"
            );
            assert!(r.align_waits > 0, "batches of {batch}: nothing waited");
            check(&log, &cfg, &r);
        }
    }

    #[test]
    fn a_stop_mid_stream_resumes_where_the_store_says_without_loss_or_double_counting() {
        let dir = tempfile::tempdir().unwrap();
        let log = MemLog::new();
        // one record per batch: every record waits for a group commit, so the stop below
        // lands mid-stream with records read but not yet handed to the shard
        let cfg = FluvioConfig {
            enabled: true,
            partitions: 2,
            max_batch_records: 1,
            channel_records: 8,
            commit_every_records: 10,
            ..FluvioConfig::default()
        };
        for t in client::all_topics(&cfg) {
            log.create_topic(&t, cfg.partitions).unwrap();
        }
        let events = generated(600, 11);
        let n = events.len() as u64;
        produce(&log, &cfg, &events);
        let r1 = run(dir.path(), &log, &cfg, n, Some(100), None);
        assert!(
            r1.seen >= 100 && r1.seen < n,
            "stopped mid-stream: {}",
            r1.seen
        );
        let r2 = run(dir.path(), &log, &cfg, n - r1.seen, None, None);
        assert_eq!(r1.seen + r2.seen, n, "every record taken once");
        assert_eq!(
            r2.duplicates, 0,
            "nothing taken before the stop is read again"
        );
        check(&log, &cfg, &r2);
    }
    #[test]
    fn a_failed_commit_with_batches_in_flight_loses_nothing_and_takes_nothing_twice() {
        // small batches and a backlog: several batches of each partition are in flight
        // whenever a commit fails
        let cfg = FluvioConfig {
            enabled: true,
            partitions: 2,
            max_batch_records: 8,
            commit_every_records: 10,
            ..FluvioConfig::default()
        };
        let events = generated(600, 13);
        let n = events.len() as u64;
        // the same records in two logs, one for each run (the sinks write to the log too)
        let logs = [MemLog::new(), MemLog::new()];
        for log in &logs {
            for t in client::all_topics(&cfg) {
                log.create_topic(&t, cfg.partitions).unwrap();
            }
            produce(log, &cfg, &events);
        }
        let (clean, failed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let want = run(clean.path(), &logs[0], &cfg, n, None, None);
        let (log, got) = (
            &logs[1],
            run(failed.path(), &logs[1], &cfg, n, None, Some(120)),
        );
        assert_eq!(got.failed_commits, 1, "the commit failed once");
        check(log, &cfg, &got);
        // every record that is an event is in the log once, as in a run without the failure
        let mut ids = got.logged.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), got.logged.len(), "an event logged twice");
        let mut clean_ids = want.logged.clone();
        clean_ids.sort();
        assert_eq!(ids, clean_ids, "events lost or added by the failure");
        assert!(ids.len() as u64 > n * 9 / 10, "{} of {n} logged", ids.len());
    }
    /// The rate of the Fluvio path over the in-memory log, for BENCHMARKS.md (not a test):
    /// `OMNISTREAM_RATE_EVENTS=100000 cargo test --release --lib fluvio_ingest_rate --
    /// --ignored --nocapture` (`OMNISTREAM_RATE_SKEW_S` sets `max-skew-s`: 0 times the path
    /// without the event-time alignment).
    #[test]
    #[ignore]
    fn fluvio_ingest_rate() {
        let n: u64 = std::env::var("OMNISTREAM_RATE_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let every = std::env::var("OMNISTREAM_RATE_COMMIT_EVERY")
            .ok()
            .and_then(|v| v.parse().ok());
        let skew = std::env::var("OMNISTREAM_RATE_SKEW_S")
            .ok()
            .and_then(|v| v.parse().ok());
        let cfg = FluvioConfig {
            enabled: true,
            partitions: 2,
            commit_every_records: every.unwrap_or(FluvioConfig::default().commit_every_records),
            max_skew_s: skew.unwrap_or(FluvioConfig::default().max_skew_s),
            ..FluvioConfig::default()
        };
        let log = MemLog::new();
        for t in client::all_topics(&cfg) {
            log.create_topic(&t, cfg.partitions).unwrap();
        }
        let events = generated(n, 5);
        produce(&log, &cfg, &events);
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let r = run(dir.path(), &log, &cfg, n, Some(events.len() as u64), None);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fluvio path over the in-memory log: {} records durable in {secs:.2} s: {:.0} records/s",
            r.seen,
            r.seen as f64 / secs
        );
    }
}

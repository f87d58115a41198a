//! The sinks: produce every durable output to its topic, keyed by its entity.
//!
//! The task tails the store's output table (so only committed outputs leave, whatever source
//! they came from), produces each row to the topic [`super::mapping::stored_output_route`]
//! picks, retries a failed produce with backoff until it succeeds (never drops a record), and
//! then stores its cursor (`fluvio-sink`, the next output seq) through the shard with the next
//! commit. Delivery is at least once: after a crash the rows after the last stored cursor are
//! produced again.

use super::log::{LogError, MemLog, PartitionedLog};
use super::mapping::{stored_output_route, Sink};
use crate::config::FluvioTopics;
use crate::shard::{Read, SetPosition, Shard};
use crate::store::Store;
use actix::Addr;
use omnistream_actors::sharded::Sharded;
use std::future::Future;
use std::time::Duration;

/// The store's name of the sinks' cursor.
pub const SINK_CURSOR: &str = "fluvio-sink";

/// Where outputs are produced to.
pub trait RecordSink {
    /// Queues one record for a topic (may batch).
    fn send(
        &mut self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> impl Future<Output = Result<(), LogError>>;
    /// Waits until every queued record is acknowledged; an error means some may be lost and
    /// everything since the last successful flush is sent again.
    fn flush(&mut self) -> impl Future<Output = Result<(), LogError>>;
    /// Forgets what was queued and the connections it went through, after a failure: the
    /// next send opens them again (a partition whose leader moved is then reached at its
    /// new leader).
    fn reopen(&mut self) {}
}

impl RecordSink for MemLog {
    async fn send(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), LogError> {
        self.append(topic, key, value).map(|_| ())
    }

    async fn flush(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}

/// Counters of the sinks.
#[derive(Clone)]
pub struct SinkCounters {
    /// Records produced and acknowledged.
    pub produced: prometheus::IntCounter,
    /// Produce attempts that failed (each is retried).
    pub failed: prometheus::IntCounter,
    /// Stored rows that are not outputs (logged and skipped).
    pub skipped: prometheus::IntCounter,
}

/// Rows read from the store at a time (on the shard's thread: short reads).
const READ_ROWS: usize = 512;

/// Most rows produced between two waits for acknowledgement. A flush waits for every
/// in-sync replica (`fluvio.isolation = read-committed`): with replication 2 on the local
/// test cluster one took long enough that the sinks, flushing every 512 rows, put out about
/// 1,000 outputs a second and ended 88 s behind the input (BENCHMARKS.md, session 31). A
/// backlog now goes out in batches up to this size; a sink that keeps up still flushes
/// what there is at once.
const SINK_BATCH: usize = 8192;

/// Tails the store's outputs from the stored cursor and produces them, forever (until the
/// shard stops).
pub async fn run_sinks<K: RecordSink>(
    shard: Addr<Shard>,
    mut sink: K,
    topics: FluvioTopics,
    counters: SinkCounters,
    idle: Duration,
) -> Result<(), super::source::SourceError> {
    use super::source::SourceError;
    let cursor = shard
        .send(Read(|_: &Sharded, s: &dyn Store| s.position(SINK_CURSOR)))
        .await
        .map_err(|_| SourceError::ShardGone)?;
    let mut from = match cursor {
        Ok(c) => c.unwrap_or(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the sink cursor; producing from the start");
            0
        }
    };
    loop {
        let mut rows: Vec<(u64, Vec<u8>)> = Vec::new();
        // what is there, up to a batch, in short reads
        while rows.len() < SINK_BATCH {
            let at = rows.last().map_or(from, |(seq, _)| seq + 1);
            let read = shard
                .send(Read(move |_: &Sharded, s: &dyn Store| {
                    s.outputs(at, READ_ROWS)
                }))
                .await
                .map_err(|_| SourceError::ShardGone)?;
            match read {
                Ok(r) => {
                    let more = r.len() == READ_ROWS;
                    rows.extend(r);
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading outputs failed; retrying");
                    if rows.is_empty() {
                        tokio::time::sleep(idle).await;
                    }
                    break;
                }
            }
        }
        let Some(next) = rows.last().map(|(seq, _)| seq + 1) else {
            tokio::time::sleep(idle).await;
            continue;
        };
        // without a halt it returns only once the rows are acknowledged
        let retried =
            produce_retrying(&mut sink, &topics, &rows, &counters, std::future::pending());
        let Some(n) = retried.await else {
            return Ok(());
        };
        counters.produced.inc_by(n);
        from = next;
        shard.do_send(SetPosition {
            source: SINK_CURSOR.into(),
            position: from,
        });
    }
}

/// Produces stored output rows to their topics and flushes, trying again (all the rows,
/// through a sink opened again: [`RecordSink::reopen`]) after a failure, backing off from
/// 50 ms to 5 s, until they are acknowledged; returns how many were outputs. `None`: `halt`
/// came first (`run`'s sinks have none: they never give up on a row).
pub(crate) async fn produce_retrying<K: RecordSink>(
    sink: &mut K,
    topics: &FluvioTopics,
    rows: &[(u64, Vec<u8>)],
    counters: &SinkCounters,
    halt: impl Future<Output = ()>,
) -> Option<u64> {
    // routed once: a row that is not an output is counted and logged once, not per try
    let routed: Vec<(&str, String, &[u8])> = rows
        .iter()
        .filter_map(|(seq, row)| match stored_output_route(row) {
            Some((which, key)) => Some((Sink::topic(which, topics), key, row.as_slice())),
            None => {
                counters.skipped.inc();
                tracing::error!(seq, "stored output is not an output; skipped");
                None
            }
        })
        .collect();
    let mut halt = std::pin::pin!(halt);
    let mut backoff = Duration::from_millis(50);
    loop {
        match send_rows(sink, &routed).await {
            Ok(()) => return Some(routed.len() as u64),
            Err(e) => {
                sink.reopen();
                counters.failed.inc();
                let from = rows.first().map_or(0, |(seq, _)| *seq);
                tracing::warn!(error = %e, from, "producing outputs failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut halt => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn send_rows<K: RecordSink>(
    sink: &mut K,
    routed: &[(&str, String, &[u8])],
) -> Result<(), LogError> {
    for (topic, key, row) in routed {
        sink.send(topic, key.as_bytes(), row).await?;
    }
    sink.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that fails its first `fails` flushes, losing what was queued.
    #[derive(Default)]
    struct Failing {
        fails: u32,
        queued: Vec<(String, String)>,
        delivered: Vec<(String, String)>,
        reopened: u32,
    }

    impl RecordSink for Failing {
        async fn send(&mut self, topic: &str, key: &[u8], _: &[u8]) -> Result<(), LogError> {
            let key = String::from_utf8_lossy(key).into_owned();
            self.queued.push((topic.to_string(), key));
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), LogError> {
            if self.fails > 0 {
                self.fails -= 1;
                return Err(LogError::Failed {
                    topic: "t".into(),
                    why: "no leader".into(),
                });
            }
            self.delivered.append(&mut self.queued);
            Ok(())
        }

        fn reopen(&mut self) {
            self.queued.clear();
            self.reopened += 1;
        }
    }

    fn counters() -> SinkCounters {
        let c = |n: &str| prometheus::IntCounter::new(n, n).unwrap();
        SinkCounters {
            produced: c("produced"),
            failed: c("failed"),
            skipped: c("skipped"),
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn rows() -> Vec<(u64, Vec<u8>)> {
        let dead = |id: &str| format!(r#"{{"output":"dead_letter","id":"{id}"}}"#).into_bytes();
        vec![(7, dead("a")), (8, b"[]".to_vec()), (9, dead("b"))]
    }

    #[test]
    fn failed_rows_are_sent_again_through_a_reopened_sink_until_acknowledged() {
        let mut sink = Failing {
            fails: 2,
            ..Failing::default()
        };
        let c = counters();
        let topics = FluvioTopics::default();
        let n = block_on(produce_retrying(
            &mut sink,
            &topics,
            &rows(),
            &c,
            std::future::pending(),
        ));
        assert_eq!(n, Some(2));
        let dl = topics.dead_letter.clone();
        assert_eq!(
            sink.delivered,
            vec![
                (dl.clone(), "event/a".to_string()),
                (dl, "event/b".to_string())
            ]
        );
        assert_eq!((sink.reopened, c.failed.get(), c.skipped.get()), (2, 2, 1));
    }

    #[test]
    fn a_halt_ends_the_retries_without_the_rows() {
        let mut sink = Failing {
            fails: u32::MAX,
            ..Failing::default()
        };
        let c = counters();
        let n = block_on(produce_retrying(
            &mut sink,
            &FluvioTopics::default(),
            &rows(),
            &c,
            async {},
        ));
        assert_eq!(n, None);
        assert!(sink.delivered.is_empty());
        assert_eq!(c.failed.get(), 1);
    }
}

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
        let rows = shard
            .send(Read(move |_: &Sharded, s: &dyn Store| s.outputs(from, 512)))
            .await
            .map_err(|_| SourceError::ShardGone)?;
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading outputs failed; retrying");
                tokio::time::sleep(idle).await;
                continue;
            }
        };
        let Some(next) = rows.last().map(|(seq, _)| seq + 1) else {
            tokio::time::sleep(idle).await;
            continue;
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            match produce_rows(&mut sink, &topics, &rows, &counters).await {
                Ok(n) => {
                    counters.produced.inc_by(n);
                    break;
                }
                Err(e) => {
                    counters.failed.inc();
                    tracing::warn!(error = %e, from, "producing outputs failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        from = next;
        shard.do_send(SetPosition {
            source: SINK_CURSOR.into(),
            position: from,
        });
    }
}

/// Produces stored output rows to their topics and flushes; returns how many were outputs.
/// After a failure the sink is opened again ([`RecordSink::reopen`]) for the caller's retry,
/// which sends all the rows again.
pub(crate) async fn produce_rows<K: RecordSink>(
    sink: &mut K,
    topics: &FluvioTopics,
    rows: &[(u64, Vec<u8>)],
    counters: &SinkCounters,
) -> Result<u64, LogError> {
    let produced = send_rows(sink, topics, rows, counters).await;
    if produced.is_err() {
        sink.reopen();
    }
    produced
}

async fn send_rows<K: RecordSink>(
    sink: &mut K,
    topics: &FluvioTopics,
    rows: &[(u64, Vec<u8>)],
    counters: &SinkCounters,
) -> Result<u64, LogError> {
    let mut n = 0;
    for (seq, row) in rows {
        let Some((which, key)) = stored_output_route(row) else {
            counters.skipped.inc();
            tracing::error!(seq, "stored output is not an output; skipped");
            continue;
        };
        sink.send(Sink::topic(which, topics), key.as_bytes(), row)
            .await?;
        n += 1;
    }
    sink.flush().await?;
    Ok(n)
}

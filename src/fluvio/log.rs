//! The transport seen from omnistream: a partitioned log of keyed records with committed
//! offsets per consumer group ([`PartitionedLog`]), and [`MemLog`], an in-memory one for tests
//! and for running the Fluvio code paths without a server. Fluvio is the real one
//! ([`super::client`]); this is not a network broker.

use super::mapping::partition_of;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its offset in the partition.
    pub offset: u64,
    /// Its key (empty when it has none).
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// A transport failure: the topic and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    NoTopic(String),
    /// The partition does not exist.
    #[error("topic {topic} has no partition {partition}")]
    NoPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },
    /// The transport refused or failed (retryable).
    #[error("topic {topic}: {why}")]
    Failed {
        /// The topic.
        topic: String,
        /// Why.
        why: String,
    },
}

/// A partitioned log of keyed records: topics of partitions, offsets from 0, and offsets
/// committed per consumer group.
pub trait PartitionedLog: Send + Sync {
    /// Creates a topic with this many partitions (no-op when it exists with the same count).
    fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError>;
    /// The partition count of a topic.
    fn partitions(&self, topic: &str) -> Result<u32, LogError>;
    /// Appends a record to `partition_of(key)`; returns `(partition, offset)`.
    fn append(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(u32, u64), LogError>;
    /// Up to `max` records of one partition from `from` on.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, LogError>;
    /// Records `offset` (the next offset to read) as the group's position in a partition.
    fn commit(&self, group: &str, topic: &str, partition: u32, offset: u64)
        -> Result<(), LogError>;
    /// The group's committed position in a partition, if any.
    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, LogError>;
    /// Woken after every append, when the log can tell (readers at the end wait on it
    /// instead of polling).
    fn appended(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

#[derive(Default)]
struct Inner {
    topics: HashMap<String, Vec<Vec<Record>>>,
    committed: HashMap<(String, String, u32), u64>,
    /// When set, the next this many appends fail (to test the sinks' retries).
    fail_appends: u32,
}

/// An in-memory [`PartitionedLog`]: cheap to clone (shared), safe across threads.
#[derive(Clone, Default)]
pub struct MemLog {
    inner: Arc<Mutex<Inner>>,
    appended: Arc<tokio::sync::Notify>,
}

impl MemLog {
    /// An empty log.
    pub fn new() -> MemLog {
        MemLog::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding the lock leaves plain data behind: keep using it
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `n` appends fail, as a broker that is briefly down would.
    pub fn fail_next_appends(&self, n: u32) {
        self.lock().fail_appends = n;
    }

    /// The offset the next record of `topic`/`partition` will get.
    pub fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(part(&self.lock(), topic, partition)?.len() as u64)
    }

    /// Every record of a topic, partition by partition.
    pub fn all(&self, topic: &str) -> Vec<(u32, Record)> {
        let g = self.lock();
        let mut out = Vec::new();
        if let Some(parts) = g.topics.get(topic) {
            for (p, recs) in parts.iter().enumerate() {
                let p = u32::try_from(p).unwrap_or(u32::MAX);
                out.extend(recs.iter().cloned().map(|r| (p, r)));
            }
        }
        out
    }
}

fn topic_err(topic: &str) -> LogError {
    LogError::NoTopic(topic.to_string())
}

/// The records of one partition.
fn part<'a>(g: &'a Inner, topic: &str, partition: u32) -> Result<&'a Vec<Record>, LogError> {
    let parts = g.topics.get(topic).ok_or_else(|| topic_err(topic))?;
    parts
        .get(partition as usize)
        .ok_or_else(|| LogError::NoPartition {
            topic: topic.to_string(),
            partition,
        })
}

impl PartitionedLog for MemLog {
    fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        let mut g = self.lock();
        let parts = g.topics.entry(topic.to_string()).or_default();
        if parts.is_empty() {
            parts.resize_with(partitions.max(1) as usize, Vec::new);
        } else if parts.len() != partitions as usize {
            return Err(LogError::Failed {
                topic: topic.to_string(),
                why: format!("exists with {} partitions, not {partitions}", parts.len()),
            });
        }
        Ok(())
    }

    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        let g = self.lock();
        let n = g.topics.get(topic).ok_or_else(|| topic_err(topic))?.len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn append(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(u32, u64), LogError> {
        let mut g = self.lock();
        if g.fail_appends > 0 {
            g.fail_appends -= 1;
            return Err(LogError::Failed {
                topic: topic.to_string(),
                why: "injected failure".into(),
            });
        }
        let parts = g.topics.get_mut(topic).ok_or_else(|| topic_err(topic))?;
        let n = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let p = partition_of(&String::from_utf8_lossy(key), n);
        let part = parts.get_mut(p as usize).ok_or_else(|| topic_err(topic))?;
        let offset = part.len() as u64;
        part.push(Record {
            offset,
            key: key.to_vec(),
            value: value.to_vec(),
        });
        drop(g);
        self.appended.notify_waiters();
        Ok((p, offset))
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>, LogError> {
        let g = self.lock();
        let part = part(&g, topic, partition)?;
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(part.len());
        Ok(part[from..].iter().take(max).cloned().collect())
    }

    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        let mut g = self.lock();
        if !g.topics.contains_key(topic) {
            return Err(topic_err(topic));
        }
        g.committed
            .insert((group.to_string(), topic.to_string(), partition), offset);
        Ok(())
    }

    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, LogError> {
        let g = self.lock();
        Ok(g.committed
            .get(&(group.to_string(), topic.to_string(), partition))
            .copied())
    }

    fn appended(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.appended.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_records_land_in_their_partition_in_order() {
        let log = MemLog::new();
        log.create_topic("t", 3).unwrap();
        assert_eq!(log.partitions("t").unwrap(), 3);
        let (p, o0) = log.append("t", b"sku/S1", b"a").unwrap();
        let (p2, o1) = log.append("t", b"sku/S1", b"b").unwrap();
        assert_eq!((p, o0), (p2, 0));
        assert_eq!(o1, 1);
        assert_eq!(p, partition_of("sku/S1", 3));
        let recs = log.read("t", p, 1, 10).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].value, b"b");
        assert_eq!(log.read("t", p, 5, 10).unwrap(), vec![]);
        assert!(log.read("t", 7, 0, 1).is_err());
        assert_eq!(
            log.append("x", b"k", b"v"),
            Err(LogError::NoTopic("x".into()))
        );
        assert!(
            log.create_topic("t", 2).is_err(),
            "a different count is refused"
        );
    }

    #[test]
    fn committed_offsets_are_per_group_and_partition() {
        let log = MemLog::new();
        log.create_topic("t", 2).unwrap();
        assert_eq!(log.committed("g", "t", 0).unwrap(), None);
        log.commit("g", "t", 0, 5).unwrap();
        log.commit("h", "t", 0, 2).unwrap();
        assert_eq!(log.committed("g", "t", 0).unwrap(), Some(5));
        assert_eq!(log.committed("h", "t", 0).unwrap(), Some(2));
        assert_eq!(log.committed("g", "t", 1).unwrap(), None);
        log.fail_next_appends(1);
        assert!(log.append("t", b"k", b"v").is_err());
        assert!(log.append("t", b"k", b"v").is_ok());
    }
}

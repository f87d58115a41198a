//! The exchange between processes: the [`Link`] a process's shards call after every round,
//! and the task that carries it over the internal exchange topic.
//!
//! The topic has one partition per process. A process's part of round `r` of epoch `e` for
//! process `q` is one record in `q`'s partition: the commands for `q`'s shards and how many
//! commands this process sent in the round in all; it doubles as the end-of-round marker, so
//! `q` knows it has everything from this process when it has the record. A process that
//! restarts re-runs the epochs after its checkpoint and sends their records again; they are
//! the same records (the epochs are deterministic), and a receiver keeps the first of each
//! `(epoch, round, sender)` and skips those of rounds it has passed.
//!
//! The task owns the partition's stream and only stops a `next()` mid-poll when the process
//! stops; it never commits consumer offsets (the process's position in its partition is part
//! of its checkpoint: [`Request::Resume`]).

use super::ClusterError;
use crate::fluvio::log::LogError;
use crate::fluvio::mapping::partition_of;
use crate::fluvio::sink::RecordSink;
use crate::fluvio::source::RecordStream;
use omnistream_actors::sharded::{Link, Remote};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

/// One process's part of a round for another process, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// The epoch.
    pub epoch: u64,
    /// The round within it.
    pub round: usize,
    /// The sending process.
    pub from: u32,
    /// Commands the sender's shards sent in the round, to any shard.
    pub sent: usize,
    /// The commands for the receiver's shards.
    pub cmds: Vec<Remote>,
}

/// What the shards and the node ask of the exchange task.
pub enum Request {
    /// Trade a round (from [`Link::exchange`]).
    Round {
        /// The epoch.
        epoch: u64,
        /// The round.
        round: usize,
        /// Commands for the other processes' shards.
        out: Vec<Remote>,
        /// Commands this process sent in the round.
        sent: usize,
        /// Where the answer goes.
        reply: std::sync::mpsc::Sender<Result<(Vec<Remote>, usize), String>>,
    },
    /// The offset of this process's partition to read from after a restart that resumes
    /// with the epoch after `done`.
    Resume {
        /// The last epoch the checkpoint reflects.
        done: u64,
        /// Where the answer goes.
        reply: std::sync::mpsc::Sender<u64>,
    },
}

/// The [`Link`] of one process: hands each round to the exchange task and waits for it.
pub struct LogLink {
    tx: mpsc::Sender<Request>,
    epoch: AtomicU64,
}

impl LogLink {
    /// A link whose rounds go to the task behind `tx`.
    pub fn new(tx: mpsc::Sender<Request>) -> LogLink {
        LogLink {
            tx,
            epoch: AtomicU64::new(0),
        }
    }

    /// Sets the epoch the next rounds belong to.
    pub fn begin(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Release);
    }

    /// The offset to resume this process's partition from when the epochs after `done` run
    /// again (blocking: call from outside the runtime).
    pub fn resume(&self, done: u64) -> Result<u64, ClusterError> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.tx
            .blocking_send(Request::Resume { done, reply })
            .map_err(|_| ClusterError::Stopped("the exchange task ended".into()))?;
        answer
            .recv()
            .map_err(|_| ClusterError::Stopped("the exchange task ended".into()))
    }
}

impl Link for LogLink {
    fn exchange(
        &self,
        round: usize,
        out: Vec<Remote>,
        sent: usize,
    ) -> Result<(Vec<Remote>, usize), String> {
        let (reply, answer) = std::sync::mpsc::channel();
        let epoch = self.epoch.load(Ordering::Acquire);
        self.tx
            .blocking_send(Request::Round {
                epoch,
                round,
                out,
                sent,
                reply,
            })
            .map_err(|_| "the exchange task ended".to_string())?;
        answer
            .recv()
            .map_err(|_| "the exchange task ended".to_string())?
    }
}

/// A record key that lands in `partition` of `partitions` (the partitioner hashes keys, so
/// the key is searched for): `process-<partition>-<i>` for the smallest such `i`.
pub fn key_for(partition: u32, partitions: u32) -> String {
    (0u64..)
        .map(|i| format!("process-{partition}-{i}"))
        .find(|k| partition_of(k, partitions) == partition)
        .unwrap_or_default()
}

/// Parts received and not yet taken, by `(epoch, round)` and sender, with the offset of each.
#[derive(Debug, Default)]
pub struct Inbox {
    parts: BTreeMap<(u64, usize), BTreeMap<u32, (u64, Part)>>,
}

impl Inbox {
    /// Keeps a part read at `offset` unless it belongs to a round before `(epoch, round)`
    /// (a restarted sender's repeat) or repeats one held.
    pub fn put(&mut self, offset: u64, part: Part, now: (u64, usize)) {
        if (part.epoch, part.round) < now {
            return;
        }
        self.parts
            .entry((part.epoch, part.round))
            .or_default()
            .entry(part.from)
            .or_insert((offset, part));
    }

    /// Whether every one of `others` senders' parts of `(epoch, round)` is here.
    pub fn complete(&self, at: (u64, usize), others: usize) -> bool {
        self.parts.get(&at).map_or(0, BTreeMap::len) >= others
    }

    /// Takes the round's parts: their commands, in sender order, and their counts' sum.
    /// Drops anything held for earlier rounds.
    pub fn take(&mut self, at: (u64, usize)) -> (Vec<Remote>, usize) {
        let mut keep = self.parts.split_off(&at);
        let parts = keep.remove(&at).unwrap_or_default();
        self.parts = keep;
        let mut cmds = Vec::new();
        let mut sent = 0;
        for (_, (_, p)) in parts {
            sent += p.sent;
            cmds.extend(p.cmds);
        }
        (cmds, sent)
    }

    /// The offset to read from again so that every part of the epochs after `done` is seen:
    /// the first held part of such an epoch, else `next` (the next unread offset).
    pub fn resume(&self, done: u64, next: u64) -> u64 {
        self.parts
            .range((done + 1, 0)..)
            .flat_map(|(_, by)| by.values().map(|(o, _)| *o))
            .min()
            .unwrap_or(next)
            .min(next)
    }
}

/// The exchange task of process `me` of `processes`: answers [`Request`]s, writing parts to
/// the other processes' partitions of `topic` through `sink` and reading its own from
/// `stream` (which starts at `from`). Ends when the requests end; `stop` fails a round that
/// waits for another process.
#[allow(clippy::too_many_arguments)]
pub async fn run<S: RecordStream, K: RecordSink>(
    mut stream: S,
    from: u64,
    mut sink: K,
    topic: String,
    me: u32,
    processes: u32,
    mut requests: mpsc::Receiver<Request>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    let keys: Vec<String> = (0..processes).map(|q| key_for(q, processes)).collect();
    let others = (processes - 1) as usize;
    let mut inbox = Inbox::default();
    let mut next = from;
    // ends when the process drops the link (after its last checkpoint, which asks where to
    // resume); a stop only cuts short a round waiting for another process
    while let Some(req) = requests.recv().await {
        let (epoch, round, out, sent, reply) = match req {
            Request::Resume { done, reply } => {
                let _ = reply.send(inbox.resume(done, next));
                continue;
            }
            Request::Round {
                epoch,
                round,
                out,
                sent,
                reply,
            } => (epoch, round, out, sent, reply),
        };
        let mut by_process: Vec<Vec<Remote>> = (0..processes).map(|_| Vec::new()).collect();
        for r in out {
            by_process[(r.to % processes) as usize].push(r);
        }
        for (q, cmds) in by_process.into_iter().enumerate() {
            if q as u32 == me {
                continue;
            }
            let part = Part {
                epoch,
                round,
                from: me,
                sent,
                cmds,
            };
            let bytes = serde_json::to_vec(&part).map_err(|e| bad(&topic, e))?;
            send(&mut sink, &topic, keys[q].as_bytes(), &bytes).await?;
        }
        flush(&mut sink).await?;
        let at = (epoch, round);
        while !inbox.complete(at, others) {
            let rec = tokio::select! {
                r = stream.next() => r,
                // the stream is dropped after this, and never committed: safe mid-poll
                _ = stop.wait_for(|s| *s) => {
                    let _ = reply.send(Err("the process is stopping".into()));
                    return Ok(());
                }
            };
            let rec = match rec {
                Ok(Some(rec)) => rec,
                Ok(None) => return Err(ClusterError::Stopped("the exchange topic ended".into())),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the exchange partition failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            next = rec.offset + 1;
            let part: Part = serde_json::from_slice(&rec.value).map_err(|e| bad(&topic, e))?;
            inbox.put(rec.offset, part, at);
        }
        let _ = reply.send(Ok(inbox.take(at)));
    }
    Ok(())
}

fn bad(topic: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Log(LogError::Failed {
        topic: topic.into(),
        why: format!("an exchange record does not parse: {e}"),
    })
}

/// Sends with retries: a part must not be lost (the other processes wait for it).
async fn send<K: RecordSink>(
    sink: &mut K,
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> Result<(), ClusterError> {
    let mut tries = 0;
    loop {
        match sink.send(topic, key, value).await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 20 => {
                tries += 1;
                tracing::warn!(error = %e, tries, "sending an exchange record failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn flush<K: RecordSink>(sink: &mut K) -> Result<(), ClusterError> {
    sink.flush().await.map_err(ClusterError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(epoch: u64, round: usize, from: u32, sent: usize) -> Part {
        Part {
            epoch,
            round,
            from,
            sent,
            cmds: Vec::new(),
        }
    }

    #[test]
    fn a_key_for_each_partition_lands_in_it() {
        for n in 1..9 {
            for p in 0..n {
                assert_eq!(partition_of(&key_for(p, n), n), p);
            }
        }
    }

    #[test]
    fn the_inbox_keeps_the_first_of_each_part_and_skips_rounds_it_has_passed() {
        let mut inbox = Inbox::default();
        inbox.put(10, part(3, 0, 1, 5), (3, 0));
        // a restarted sender's repeat of the same part, and of an earlier epoch
        inbox.put(11, part(3, 0, 1, 99), (3, 0));
        inbox.put(12, part(2, 4, 1, 7), (3, 0));
        assert!(!inbox.complete((3, 0), 2));
        // a part of a later round arrives before the other sender's part of this one
        inbox.put(13, part(3, 1, 1, 0), (3, 0));
        inbox.put(14, part(3, 0, 2, 1), (3, 0));
        assert!(inbox.complete((3, 0), 2));
        assert_eq!(inbox.take((3, 0)), (Vec::new(), 6));
        assert!(inbox.complete((3, 1), 1));
        // a checkpoint after epoch 2 must read the part of epoch 3 round 1 again
        assert_eq!(inbox.resume(2, 15), 13);
        assert_eq!(inbox.resume(3, 15), 15);
    }
}

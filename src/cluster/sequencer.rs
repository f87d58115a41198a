//! The sequencer: process 0 cuts the input partitions into epochs and appends each cut to the
//! control topic, which every process reads, so all apply the same events in the same order.
//!
//! A cut names, for every input partition, the offsets it covers (`from..to`, empty when the
//! partition has nothing new), so the last record alone tells where the next cut starts, and
//! a restarted sequencer reads only that. A cut takes a fair share of the epoch's budget from
//! each partition that has records, so every stream advances.
//!
//! The sequencer learns what each partition holds by reading it (a watcher task per
//! partition that keeps only the offsets), not from the cluster's metadata: Fluvio's
//! reported log end lags by seconds, and a cut must only name records a reader can fetch.
//! So process 0 fetches every input record twice (here and in its feeder); the watchers
//! decode nothing but the offsets.
//! Cutting as soon as anything is there keeps epochs small under a light load; under a heavy
//! one the sequencer waits for the processes (`ahead-epochs`) while records pile up, so the
//! next cut is bigger: the epoch grows with the load, as a group commit does.

use super::{ClusterConfig, ClusterError};
use crate::fluvio::sink::RecordSink;
use crate::fluvio::source::RecordStream;
use crate::fluvio::Transport;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::rc::Rc;
use tokio::sync::{watch, Notify};

/// One input partition's share of an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The first offset.
    pub from: u64,
    /// One past the last offset.
    pub to: u64,
}

/// An epoch as the control topic holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// Its number, from 0.
    pub epoch: u64,
    /// Every input partition, in the order the epoch's records are taken.
    pub ranges: Vec<Range>,
    /// What the processes must agree on, as process 0 has it (see
    /// [`super::Setup::fingerprint`]); 0: not checked.
    #[serde(default)]
    pub fingerprint: u64,
}

/// A record of the control topic: a cut, or a fence a starting sequencer appends to find the
/// topic's end (readers skip it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Control {
    /// An epoch.
    Cut(Cut),
    /// A sequencer's start.
    Fence {
        /// Its nonce.
        fence: u64,
    },
}

/// The cuts among a control topic's record values, in order (fences left out; a record that
/// does not parse is an error).
pub fn cuts<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Cut>, ClusterError> {
    let mut out = Vec::new();
    for v in values {
        match serde_json::from_slice::<Control>(v) {
            Ok(Control::Cut(c)) => out.push(c),
            Ok(Control::Fence { .. }) => {}
            Err(e) => return Err(ClusterError::Corrupt(format!("a control record: {e}"))),
        }
    }
    Ok(out)
}

impl Cut {
    /// Records it covers.
    pub fn records(&self) -> u64 {
        self.ranges.iter().map(|r| r.to - r.from).sum()
    }
}

/// The next cut after positions `at` (topic, partition, next offset) given each partition's
/// end: a fair share of `budget` records from each partition that has any (the share of
/// those with fewer goes to none: a cut may stay under the budget), or None when no partition
/// has a record.
pub fn cut(epoch: u64, at: &[(String, u32, u64)], ends: &[u64], budget: usize) -> Option<Cut> {
    let waiting = at
        .iter()
        .zip(ends)
        .filter(|((_, _, pos), end)| *end > pos)
        .count();
    if waiting == 0 {
        return None;
    }
    let share = (budget.max(1)).div_ceil(waiting) as u64;
    let ranges = at
        .iter()
        .zip(ends)
        .map(|((topic, partition, pos), end)| Range {
            topic: topic.clone(),
            partition: *partition,
            from: *pos,
            to: (*end).max(*pos).min(pos + share),
        })
        .collect();
    Some(Cut {
        epoch,
        ranges,
        fingerprint: 0,
    })
}

/// Where the sequencer starts: the epoch after the last cut and the positions it left, or
/// epoch 0 at offset 0 of every partition.
pub fn resume_from(last: Option<&Cut>, inputs: &[(String, u32)]) -> (u64, Vec<(String, u32, u64)>) {
    let at = inputs
        .iter()
        .map(|(t, p)| {
            let pos = last
                .and_then(|c| c.ranges.iter().find(|r| &r.topic == t && r.partition == *p))
                .map_or(0, |r| r.to);
            (t.clone(), *p, pos)
        })
        .collect();
    (last.map_or(0, |c| c.epoch + 1), at)
}

/// How long a watcher waits without a record before it asks the cluster for the partition's
/// end, and re-opens its stream when that end is past what it read.
const WATCH_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads a partition from `from` on, keeping only how far it goes (`end`: the offset after
/// the last record read), and wakes the sequencer after each batch of records. A client that
/// drops the last records of a backlog (fluvio 0.50.1 can, see `fluvio::client::on_offset`)
/// shows no gap until the next record comes, so after [`WATCH_CHECK`] without records the
/// watcher compares its end with the cluster's and reads again from its end when behind.
async fn watch_partition<T: Transport>(
    transport: T,
    topic: String,
    partition: u32,
    end: Rc<Cell<u64>>,
    moved: Rc<Notify>,
) -> Result<(), ClusterError> {
    let mut s = transport.open_stream(&topic, partition, end.get()).await?;
    loop {
        // the watcher commits no offsets, so a `next()` cut short by the timer is harmless
        let next = tokio::time::timeout(WATCH_CHECK, s.next()).await;
        match next {
            Ok(Ok(Some(rec))) => {
                end.set(end.get().max(rec.offset + 1));
                moved.notify_one();
            }
            Ok(Ok(None)) | Err(_) => {
                let reported = transport.end_offset(&topic, partition).await.unwrap_or(0);
                if reported > end.get() {
                    tracing::info!(%topic, partition, read = end.get(), reported,
                        "the partition holds records the watcher has not seen; reading again");
                    s = transport.open_stream(&topic, partition, end.get()).await?;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(%topic, partition, error = %e, "watching a partition failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Cuts epochs until `stop`: at most `cfg.ahead_epochs` ahead of the epochs process 0 has
/// applied (`applied`: the next epoch it will apply), as soon as a partition has a record
/// past the last cut. Must run inside a `LocalSet` (the watchers are local tasks).
pub async fn run<T: Transport + Clone + 'static>(
    transport: T,
    cfg: ClusterConfig,
    inputs: Vec<(String, u32)>,
    mut applied: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    fingerprint: u64,
) -> Result<(), ClusterError> {
    let topic = cfg.control_topic.clone();
    let mut sink = transport.open_sink().await?;
    let key = b"epochs";
    // the last cut: the end the cluster reports may lag (Fluvio's by seconds), so append a
    // fence and read from before that end up to the fence; the last cut before it is the
    // last there is
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let fence = serde_json::to_vec(&Control::Fence { fence: nonce })
        .map_err(|e| ClusterError::Corrupt(e.to_string()))?;
    let lower = transport.end_offset(&topic, 0).await?.saturating_sub(1);
    sink.send(&topic, key, &fence).await?;
    sink.flush().await?;
    let mut s = transport.open_stream(&topic, 0, lower).await?;
    let mut last = None;
    loop {
        let rec = tokio::select! {
            r = s.next() => r?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let Some(rec) = rec else {
            return Err(ClusterError::Stopped("the control topic ended".into()));
        };
        match serde_json::from_slice::<Control>(&rec.value) {
            Ok(Control::Cut(c)) => last = Some(c),
            Ok(Control::Fence { fence }) if fence == nonce => break,
            Ok(Control::Fence { .. }) => {}
            Err(e) => {
                return Err(ClusterError::Corrupt(format!(
                    "{topic} offset {}: a record does not parse: {e}",
                    rec.offset
                )))
            }
        }
    }
    drop(s);
    let (mut epoch, mut at) = resume_from(last.as_ref(), &inputs);
    tracing::info!(epoch, "the sequencer starts");
    let moved = Rc::new(Notify::new());
    let mut watchers = tokio::task::JoinSet::new();
    let ends: Vec<Rc<Cell<u64>>> = at
        .iter()
        .map(|(t, p, pos)| {
            let end = Rc::new(Cell::new(*pos));
            watchers.spawn_local(watch_partition(
                transport.clone(),
                t.clone(),
                *p,
                end.clone(),
                moved.clone(),
            ));
            end
        })
        .collect();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let next_applied = *applied.borrow();
        if epoch >= next_applied + cfg.ahead_epochs {
            tokio::select! {
                r = applied.changed() => if r.is_err() { return Ok(()) },
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            continue;
        }
        let now: Vec<u64> = ends.iter().map(|e| e.get()).collect();
        let Some(mut c) = cut(epoch, &at, &now, cfg.epoch_records) else {
            tokio::select! {
                _ = moved.notified() => {}
                Some(done) = watchers.join_next() => {
                    done.map_err(|e| ClusterError::Stopped(format!("a watcher failed: {e}")))??;
                }
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            continue;
        };
        c.fingerprint = fingerprint;
        let bytes = serde_json::to_vec(&c).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
        // a failed send or flush leaves it unknown whether the cut was appended: the
        // sequencer stops (and reads the last cut again when it restarts)
        sink.send(&topic, key, &bytes).await?;
        sink.flush().await?;
        for (a, r) in at.iter_mut().zip(&c.ranges) {
            a.2 = r.to;
        }
        epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pos: &[u64]) -> Vec<(String, u32, u64)> {
        pos.iter()
            .enumerate()
            .map(|(i, p)| ("t".to_string(), i as u32, *p))
            .collect()
    }

    #[test]
    fn a_cut_shares_the_budget_among_the_partitions_that_have_records() {
        assert_eq!(cut(0, &at(&[0, 0]), &[0, 0], 100), None);
        let c = cut(4, &at(&[0, 5, 9]), &[1000, 5, 30], 100).unwrap();
        assert_eq!(c.epoch, 4);
        let spans: Vec<(u64, u64)> = c.ranges.iter().map(|r| (r.from, r.to)).collect();
        // two partitions have records: 50 each, the second of them has only 21
        assert_eq!(spans, vec![(0, 50), (5, 5), (9, 30)]);
        assert_eq!(c.records(), 71);
        // the next cut starts where this one ended, for every partition
        let inputs: Vec<(String, u32)> = (0..3).map(|p| ("t".to_string(), p)).collect();
        let (epoch, next) = resume_from(Some(&c), &inputs);
        assert_eq!(epoch, 5);
        assert_eq!(next, at(&[50, 5, 30]));
        assert_eq!(resume_from(None, &inputs), (0, at(&[0, 0, 0])));
    }
}

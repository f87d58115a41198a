//! The sequencer: process 0 cuts the input partitions into epochs and appends each cut to the
//! control topic, which every process reads, so all apply the same events in the same order.
//!
//! A cut names, for every input partition, the offsets it covers (`from..to`, empty when the
//! partition has nothing new), so the last record alone tells where the next cut starts, and
//! a restarted sequencer reads only that. A cut takes a fair share of the epoch's budget from
//! each partition that may give records (see the alignment below), so every stream advances.
//!
//! The sequencer learns what each partition holds by reading it (a watcher task per
//! partition that keeps the offsets and event times of the records no cut names yet), not
//! from the cluster's metadata: Fluvio's reported log end lags by seconds, and a cut must
//! only name records a reader can fetch. So process 0 fetches every input record twice
//! (here and in its feeder); the watchers read nothing of a record but its `ts`.
//! Cutting as soon as anything is there keeps epochs small under a light load; under a heavy
//! one the sequencer waits for the processes (`ahead-epochs`) while records pile up, so the
//! next cut is bigger: the epoch grows with the load, as a group commit does.
//!
//! Cuts are aligned in event time, as one process aligns its partitions
//! ([`crate::fluvio::align`]): every process's watermark is the latest event time it has
//! applied, so a cut that took a fair share of records from a partition holding today and from
//! one holding a backfill of last month would run the watermark past the backfill, whose
//! events the shards then refuse as late. So the watchers also read each record's `ts`, and a
//! cut takes from a partition only events at most `max-skew-s` ahead of every other partition
//! (of its first pending event, or, with nothing pending, of the last event cut from it, until
//! it has read nothing for `idle-ms`). What the shards will refuse anyway (no `ts`, a `ts` too
//! far behind the events cut or ahead of the clock) holds nothing back. The partition furthest
//! behind can always be cut, so the sequencer never waits in a circle.

use super::{ClusterConfig, ClusterError};
use crate::fluvio::sink::RecordSink;
use crate::fluvio::source::RecordStream;
use crate::fluvio::Transport;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};
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
    /// Process 0's clock when it cut (µs since 1970; 0: no check, as in cuts written before
    /// this field): every process refuses an event more than `max_future_s` ahead of it
    /// (`future_timestamp`), alike, as `run` refuses one ahead of its own clock; otherwise one
    /// device's wrong clock would move every process's watermark years ahead.
    #[serde(default)]
    pub clock_us: i64,
    /// Process 0's `max-future-s` (0: no limit).
    #[serde(default)]
    pub max_future_s: u64,
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
    /// Why every process refuses an event at `ts_us` in this epoch: more than `max_future_s`
    /// ahead of process 0's clock when it cut (None: accepted, or a cut without a clock).
    pub fn too_far_ahead(&self, ts_us: i64) -> Option<omnistream_schemas::Problem> {
        if self.clock_us == 0 {
            return None;
        }
        crate::shard::too_far_ahead(ts_us, self.clock_us, self.max_future_s)
    }

    /// Records it covers.
    pub fn records(&self) -> u64 {
        self.ranges.iter().map(|r| r.to - r.from).sum()
    }
}

/// A record the sequencer has read and no cut names yet: its offset and its event time (µs;
/// None: it has none the shards will go by).
pub type Pending = (u64, Option<i64>);

/// One input partition as the sequencer sees it when it cuts.
#[derive(Debug, Clone, Copy)]
pub struct Ahead<'a> {
    /// What its watcher read that no cut names yet, in offset order.
    pub pending: &'a VecDeque<Pending>,
    /// Where it is in event time when none of `pending` has a time to go by: the last event
    /// cut from it, `Some(i64::MIN)` before its first, None once it is idle.
    pub quiet: Option<i64>,
}

/// The event times the shards will go by in a cut: an event older than `late_before` is
/// refused as late, one past `horizon` as ahead of the clock; neither holds back nor is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The earliest event time (µs) the shards accept ([`i64::MIN`]: any).
    pub late_before: i64,
    /// The latest event time (µs) the shards accept ([`i64::MAX`]: any).
    pub horizon: i64,
}

impl Window {
    /// Any time.
    pub const ALL: Window = Window {
        late_before: i64::MIN,
        horizon: i64::MAX,
    };

    /// `t` when the shards go by it.
    pub fn usable(&self, t: Option<i64>) -> Option<i64> {
        t.filter(|t| (self.late_before..=self.horizon).contains(t))
    }
}

/// The next cut after positions `at` (topic, partition, next offset): from each partition
/// with records pending, those that may go now, up to a fair share of `budget` among the
/// partitions that have any (the share of those with fewer goes to none: a cut may stay
/// under the budget). When `skew_us` is not 0, records may go up to the first event more
/// than `skew_us` ahead of another partition's place (the first event pending there, else
/// its `quiet` place); a partition whose first event is that far ahead waits.
/// An event outside `window` (the shards will refuse it) neither holds back nor is held.
/// None when no partition has anything to cut now.
pub fn cut(
    epoch: u64,
    at: &[(String, u32, u64)],
    ahead: &[Ahead<'_>],
    budget: usize,
    skew_us: i64,
    window: Window,
) -> Option<Cut> {
    let budget = budget.max(1);
    // without alignment no partition has a place, so nothing bounds another
    let places: Vec<Option<i64>> = if skew_us == 0 {
        Vec::new()
    } else {
        ahead
            .iter()
            .map(|a| {
                a.pending
                    .iter()
                    .find_map(|&(_, t)| window.usable(t))
                    .or(a.quiet)
            })
            .collect()
    };
    // how many records each partition may give now (up to the budget)
    let may: Vec<usize> = ahead
        .iter()
        .enumerate()
        .map(|(me, a)| {
            let bound = crate::fluvio::align::bound(&places, me, skew_us);
            a.pending
                .iter()
                .take(budget)
                .take_while(|&&(_, t)| window.usable(t).is_none_or(|t| t <= bound))
                .count()
        })
        .collect();
    let giving = may.iter().filter(|n| **n > 0).count();
    if giving == 0 {
        return None;
    }
    // the budget is shared among the partitions that may give (those waiting take none)
    let share = budget.div_ceil(giving);
    let ranges = at
        .iter()
        .zip(ahead)
        .zip(may)
        .map(|(((topic, partition, pos), a), may)| {
            let to = match may.min(share).checked_sub(1) {
                Some(last) => (a.pending[last].0 + 1).max(*pos),
                None => *pos,
            };
            Range {
                topic: topic.clone(),
                partition: *partition,
                from: *pos,
                to,
            }
        })
        .collect();
    Some(Cut {
        epoch,
        ranges,
        fingerprint: 0,
        clock_us: 0,
        max_future_s: 0,
    })
}

/// The event time (µs) of a record's value, an event's JSON line: its `ts`, or None when it
/// has none that parses (the shards dead-letter such a record).
pub fn event_time(value: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Ts<'a> {
        #[serde(borrow)]
        ts: Option<Cow<'a, str>>,
    }
    let ts = serde_json::from_slice::<Ts<'_>>(value).ok()?.ts?;
    omnistream_schemas::EventTime::parse(&ts)
        .ok()
        .map(|t| t.unix_us)
}

/// After a cut took `taken` from a partition: where the partition is now when nothing of it
/// is pending (`last`: its last event the shards go by; None when it gave records but none
/// such, so that records the shards refuse never hold the others back), and the latest
/// event time cut from any (`latest`, the processes' watermark before its lag).
fn after_cut(
    taken: impl Iterator<Item = Pending>,
    window: Window,
    last: &mut Option<i64>,
    latest: &mut i64,
) {
    let mut gave = false;
    let mut usable = None;
    for (_, t) in taken {
        gave = true;
        if let Some(t) = window.usable(t) {
            usable = Some(t);
            *latest = (*latest).max(t);
        }
    }
    if gave {
        *last = usable;
    }
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
const WATCH_CHECK: Duration = Duration::from_secs(2);

/// Records a watcher keeps pending before it stops reading until a cut takes some (a
/// partition far ahead in event time waits for the others this way, in bounded memory).
const PENDING_MAX: usize = 65_536;

/// How the sequencer aligns the input partitions in event time (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aligning {
    /// `[fluvio] max-skew-s`: how far (s) a cut may take a partition ahead of the others in
    /// event time; 0: no alignment.
    pub max_skew_s: u64,
    /// `[fluvio] idle-ms`: a partition that has read nothing for this long and has nothing
    /// pending holds nothing back.
    pub idle: Duration,
    /// `max-future-s`: an event further ahead of the sequencer's clock holds nothing back,
    /// and every process refuses it (see [`Cut::clock_us`]); 0: no limit.
    pub max_future_s: u64,
}

impl Default for Aligning {
    fn default() -> Self {
        let f = crate::config::FluvioConfig::default();
        Aligning {
            max_skew_s: f.max_skew_s,
            idle: Duration::from_millis(f.idle_ms),
            max_future_s: crate::config::Config::default().max_future_s,
        }
    }
}

/// What the sequencer puts into and goes by in every cut, beside the cluster's settings.
#[derive(Debug, Clone)]
pub struct Cutting {
    /// What the processes must agree on (see [`super::Setup::fingerprint`]).
    pub fingerprint: u64,
    /// The alignment in event time.
    pub align: Aligning,
    /// The rules' `max-lateness-s` and `watermark-lag-s`: events further behind the latest
    /// cut than both are refused by the shards (`Engine::late`), so they hold nothing back.
    pub max_lateness_s: i64,
    /// See `max_lateness_s`.
    pub watermark_lag_s: i64,
    /// Where cuts that waited for a partition behind are counted (waits, seconds).
    pub waits: Option<(prometheus::IntCounter, prometheus::Counter)>,
}

/// A partition's watcher and the sequencer share this.
#[derive(Debug)]
struct Watched {
    /// Records read that no cut names yet.
    pending: RefCell<VecDeque<Pending>>,
    /// The offset after the last record read.
    end: Cell<u64>,
    /// When the watcher last read a record (or started); None: it had nothing to read at
    /// the start.
    seen: Cell<Option<Instant>>,
    /// Wakes a watcher that stopped at [`PENDING_MAX`].
    room: Notify,
}

impl Watched {
    /// Whether the partition holds nothing back for now: nothing pending, nothing read for
    /// `idle`.
    fn idle(&self, idle: Duration, now: Instant) -> bool {
        self.pending.borrow().is_empty()
            && self
                .seen
                .get()
                .is_none_or(|s| now.saturating_duration_since(s) >= idle)
    }
}

/// Reads a partition from `from` on, keeping each record's offset and (when `timed`: the
/// alignment is on) event time until a cut names it, and wakes the sequencer after each record. A client that
/// drops the last records of a backlog (fluvio 0.50.1 can, see `fluvio::client::on_offset`)
/// shows no gap until the next record comes, so after [`WATCH_CHECK`] without records the
/// watcher compares its end with the cluster's and reads again from its end when behind.
async fn watch_partition<T: Transport>(
    transport: T,
    topic: String,
    partition: u32,
    w: Rc<Watched>,
    moved: Rc<Notify>,
    timed: bool,
) -> Result<(), ClusterError> {
    let mut s = transport
        .open_stream(&topic, partition, w.end.get())
        .await?;
    loop {
        while w.pending.borrow().len() >= PENDING_MAX {
            w.room.notified().await;
        }
        // the watcher commits no offsets, so a `next()` cut short by the timer is harmless
        let next = tokio::time::timeout(WATCH_CHECK, s.next()).await;
        match next {
            Ok(Ok(Some(rec))) => {
                if rec.offset >= w.end.get() {
                    let at = if timed { event_time(&rec.value) } else { None };
                    w.pending.borrow_mut().push_back((rec.offset, at));
                    w.end.set(rec.offset + 1);
                }
                w.seen.set(Some(Instant::now()));
                moved.notify_one();
            }
            Ok(Ok(None)) | Err(_) => {
                let reported = transport.end_offset(&topic, partition).await.unwrap_or(0);
                if reported > w.end.get() {
                    tracing::info!(%topic, partition, read = w.end.get(), reported,
                        "the partition holds records the watcher has not seen; reading again");
                    s = transport
                        .open_stream(&topic, partition, w.end.get())
                        .await?;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(%topic, partition, error = %e, "watching a partition failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Cuts epochs until `stop`: at most `cfg.ahead_epochs` ahead of the epochs process 0 has
/// applied (`applied`: the next epoch it will apply), as soon as a partition has a record
/// past the last cut that may go. Must run inside a `LocalSet` (the watchers are local tasks).
pub async fn run<T: Transport + Clone + 'static>(
    transport: T,
    cfg: ClusterConfig,
    inputs: Vec<(String, u32)>,
    mut applied: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    cutting: Cutting,
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
    let align = cutting.align;
    let skew_us = crate::shard::secs_us(align.max_skew_s);
    let lateness_us = cutting.max_lateness_s.saturating_mul(1_000_000);
    let lag_us = cutting.watermark_lag_s.saturating_mul(1_000_000);
    let future_us = crate::shard::secs_us(align.max_future_s);
    let moved = Rc::new(Notify::new());
    let mut watchers = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut watched = Vec::with_capacity(at.len());
    for (t, p, pos) in &at {
        // a partition with nothing to read at the start holds nothing back until its first
        // record (the end the cluster reports may lag: records produced just before the
        // start may then be cut behind the others' by up to the lateness window)
        let empty = transport
            .end_offset(t, *p)
            .await
            .is_ok_and(|end| end <= *pos);
        let w = Rc::new(Watched {
            pending: RefCell::new(VecDeque::new()),
            end: Cell::new(*pos),
            seen: Cell::new((!empty).then_some(started)),
            room: Notify::new(),
        });
        watchers.spawn_local(watch_partition(
            transport.clone(),
            t.clone(),
            *p,
            w.clone(),
            moved.clone(),
            skew_us != 0,
        ));
        watched.push(w);
    }
    // where each partition is when nothing of it is pending: the last event cut from it
    // (before the first: behind everything), and the latest event cut from any
    let mut last_at: Vec<Option<i64>> = vec![Some(i64::MIN); at.len()];
    let mut latest = i64::MIN;
    // since when each partition's records have waited for a partition behind
    let mut held: Vec<Option<Instant>> = vec![None; at.len()];
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
        let now = Instant::now();
        let made = {
            let pending: Vec<std::cell::Ref<'_, VecDeque<Pending>>> =
                watched.iter().map(|w| w.pending.borrow()).collect();
            let ahead: Vec<Ahead<'_>> = pending
                .iter()
                .zip(&watched)
                .zip(&last_at)
                .map(|((p, w), last)| Ahead {
                    pending: p,
                    quiet: if w.idle(align.idle, now) { None } else { *last },
                })
                .collect();
            // what the shards refuse, as the engine judges it (`Engine::late`) and with the
            // clock this cut carries
            let clock = crate::shard::wall_clock_us();
            let window = Window {
                late_before: if lateness_us == 0 {
                    i64::MIN
                } else {
                    latest.saturating_sub(lag_us).saturating_sub(lateness_us)
                },
                horizon: if future_us == 0 {
                    i64::MAX
                } else {
                    clock.saturating_add(future_us)
                },
            };
            cut(epoch, &at, &ahead, cfg.epoch_records, skew_us, window).map(|mut c| {
                c.fingerprint = cutting.fingerprint;
                c.clock_us = clock;
                c.max_future_s = align.max_future_s;
                (c, window)
            })
        };
        // a partition with records that gave none waits from now (or on)
        for (i, ((h, w), (topic, partition, _))) in
            held.iter_mut().zip(&watched).zip(&at).enumerate()
        {
            let gave = made
                .as_ref()
                .is_some_and(|(c, _)| c.ranges[i].to > c.ranges[i].from);
            if !gave && !w.pending.borrow().is_empty() {
                h.get_or_insert(now);
            } else if let Some(since) = h.take().filter(|_| gave) {
                let elapsed = since.elapsed();
                let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                if let Some((waits, waited)) = &cutting.waits {
                    waits.inc();
                    waited.inc_by(elapsed.as_secs_f64());
                }
                if ms >= 1_000 {
                    tracing::info!(
                        epoch,
                        %topic,
                        partition,
                        waited_ms = ms,
                        "a partition's records waited for partitions behind in event time (max-skew-s)"
                    );
                }
            }
        }
        let Some((c, window)) = made else {
            let waiting = watched.iter().any(|w| !w.pending.borrow().is_empty());
            // records wait for a partition behind: until it reads or turns idle
            let turns_idle = watched
                .iter()
                .filter(|w| !w.idle(align.idle, now))
                .filter(|w| w.pending.borrow().is_empty())
                .filter_map(|w| w.seen.get())
                .map(|s| (s + align.idle).saturating_duration_since(now))
                .min()
                .filter(|_| waiting)
                .unwrap_or(align.idle.max(Duration::from_secs(1)));
            tokio::select! {
                _ = moved.notified() => {}
                _ = tokio::time::sleep(turns_idle) => {}
                Some(done) = watchers.join_next() => {
                    done.map_err(|e| ClusterError::Stopped(format!("a watcher failed: {e}")))??;
                }
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            continue;
        };
        let bytes = serde_json::to_vec(&c).map_err(|e| ClusterError::Corrupt(e.to_string()))?;
        // a failed send or flush leaves it unknown whether the cut was appended: the
        // sequencer stops (and reads the last cut again when it restarts)
        sink.send(&topic, key, &bytes).await?;
        sink.flush().await?;
        for (((a, r), w), last) in at.iter_mut().zip(&c.ranges).zip(&watched).zip(&mut last_at) {
            a.2 = r.to;
            let mut pending = w.pending.borrow_mut();
            let before = pending.len();
            let taken = pending
                .iter()
                .take_while(|(offset, _)| *offset < r.to)
                .count();
            after_cut(pending.drain(..taken), window, last, &mut latest);
            if before >= PENDING_MAX && pending.len() < PENDING_MAX {
                w.room.notify_one();
            }
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

    /// Records `from..to` pending, each with the time `time` gives its offset.
    fn pending(from: u64, to: u64, time: impl Fn(u64) -> Option<i64>) -> VecDeque<Pending> {
        (from..to).map(|o| (o, time(o))).collect()
    }

    fn spans(c: &Cut) -> Vec<(u64, u64)> {
        c.ranges.iter().map(|r| (r.from, r.to)).collect()
    }

    fn ahead(pending: &[VecDeque<Pending>], quiet: &[Option<i64>]) -> Vec<Ahead<'static>> {
        // (leaked: the tests' queues live to the end of the test anyway)
        let pending: &'static [VecDeque<Pending>] = Box::leak(pending.to_vec().into_boxed_slice());
        pending
            .iter()
            .zip(quiet)
            .map(|(p, q)| Ahead {
                pending: p,
                quiet: *q,
            })
            .collect()
    }

    const H: i64 = 3_600_000_000;

    fn late(before: i64) -> Window {
        Window {
            late_before: before,
            ..Window::ALL
        }
    }

    #[test]
    fn a_cut_shares_the_budget_among_the_partitions_that_have_records() {
        let none = |_| None;
        let empty = [VecDeque::new(), VecDeque::new()];
        assert_eq!(
            cut(
                0,
                &at(&[0, 0]),
                &ahead(&empty, &[None; 2]),
                100,
                0,
                Window::ALL
            ),
            None
        );
        let queues = [
            pending(0, 1000, none),
            VecDeque::new(),
            pending(9, 30, none),
        ];
        let c = cut(
            4,
            &at(&[0, 5, 9]),
            &ahead(&queues, &[None; 3]),
            100,
            0,
            Window::ALL,
        )
        .unwrap();
        assert_eq!(c.epoch, 4);
        // two partitions have records: 50 each, the second of them has only 21
        assert_eq!(spans(&c), vec![(0, 50), (5, 5), (9, 30)]);
        assert_eq!(c.records(), 71);
        // the next cut starts where this one ended, for every partition
        let inputs: Vec<(String, u32)> = (0..3).map(|p| ("t".to_string(), p)).collect();
        let (epoch, next) = resume_from(Some(&c), &inputs);
        assert_eq!(epoch, 5);
        assert_eq!(next, at(&[50, 5, 30]));
        assert_eq!(resume_from(None, &inputs), (0, at(&[0, 0, 0])));
    }

    #[test]
    fn a_partition_ahead_in_event_time_waits_for_the_one_behind() {
        // partition 0: a backfill, an event an hour over 100 hours; partition 1: today
        let today = 1000 * H;
        let queues = [
            pending(0, 100, |o| Some(o as i64 * H)),
            pending(0, 100, |o| Some(today + o as i64)),
        ];
        let c = cut(
            0,
            &at(&[0, 0]),
            &ahead(&queues, &[Some(i64::MIN); 2]),
            200,
            6 * H,
            Window::ALL,
        )
        .unwrap();
        assert_eq!(spans(&c), vec![(0, 100), (0, 0)], "today waits");
        // with a smaller budget the backfill goes in shares, today still waits
        let c = cut(
            0,
            &at(&[0, 0]),
            &ahead(&queues, &[Some(i64::MIN); 2]),
            20,
            6 * H,
            Window::ALL,
        )
        .unwrap();
        assert_eq!(spans(&c), vec![(0, 20), (0, 0)], "the whole budget");
        // the backfill read, nothing of it pending: until it is idle, it is where its last
        // event was, and today waits; once idle, today goes
        let rest = [VecDeque::new(), queues[1].clone()];
        assert_eq!(
            cut(
                1,
                &at(&[100, 0]),
                &ahead(&rest, &[Some(99 * H), None]),
                200,
                6 * H,
                Window::ALL
            ),
            None
        );
        let c = cut(
            1,
            &at(&[100, 0]),
            &ahead(&rest, &[None, None]),
            200,
            6 * H,
            Window::ALL,
        )
        .unwrap();
        assert_eq!(spans(&c), vec![(100, 100), (0, 100)]);
        // a backfill within the skew of today: both go, the one ahead up to 6 hours past
        // the other's first event
        let near = [
            pending(0, 10, |o| Some(today - 8 * H + o as i64 * H)),
            pending(0, 10, |o| Some(today + o as i64 * H)),
        ];
        let c = cut(
            0,
            &at(&[0, 0]),
            &ahead(&near, &[None; 2]),
            100,
            6 * H,
            Window::ALL,
        )
        .unwrap();
        // partition 1 may go to today - 8 h + 6 h = today - 2 h: none of it
        assert_eq!(spans(&c), vec![(0, 10), (0, 0)]);
        // without alignment everything goes
        let c = cut(
            0,
            &at(&[0, 0]),
            &ahead(&near, &[None; 2]),
            100,
            0,
            Window::ALL,
        )
        .unwrap();
        assert_eq!(spans(&c), vec![(0, 10), (0, 10)]);
    }

    #[test]
    fn what_the_shards_refuse_holds_nothing_back_and_is_not_held() {
        let today = 1000 * H;
        // partition 0's next event is years behind: refused as late, it holds nothing back
        let queues = [
            pending(0, 2, |o| Some(if o == 0 { 5 } else { today })),
            pending(0, 3, |o| (o != 0).then_some(today + o as i64 * 7 * H)),
        ];
        let c = cut(
            0,
            &at(&[0, 0]),
            &ahead(&queues, &[None; 2]),
            100,
            6 * H,
            late(today - 6 * 24 * H),
        )
        .unwrap();
        // partition 0 holds today; partition 1 goes to today + 6 h: its record without a
        // time, then the one at today + 7 h waits
        assert_eq!(spans(&c), vec![(0, 2), (0, 1)]);
        // a starting partition (nothing read yet) holds every other back: only what the
        // shards refuse goes
        let starting = [queues[0].clone(), VecDeque::new()];
        let quiet = [None, Some(i64::MIN)];
        let c = cut(
            0,
            &at(&[0, 0]),
            &ahead(&starting, &quiet),
            100,
            6 * H,
            late(today - 6 * 24 * H),
        );
        assert_eq!(c.map(|c| spans(&c)), Some(vec![(0, 1), (0, 0)]));
    }

    #[test]
    fn the_partition_furthest_behind_can_always_be_cut() {
        // random places and queues: whenever the partition with the earliest place has
        // records pending, some cut is made, and no cut takes an event past the bound
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..2_000 {
            let n = 1 + next(4) as usize;
            let mut queues = Vec::new();
            let mut quiet = Vec::new();
            for _ in 0..n {
                let len = next(5);
                let base = next(100) as i64 * H;
                queues.push(pending(0, len, |o| {
                    (o % 4 != 3).then_some(base + o as i64 * H)
                }));
                quiet.push(match next(3) {
                    0 => None,
                    1 => Some(i64::MIN),
                    _ => Some(next(100) as i64 * H),
                });
            }
            let skew = 1 + next(10) as i64 * H;
            let a = ahead(&queues, &quiet);
            let places: Vec<Option<i64>> = a
                .iter()
                .map(|a| a.pending.iter().find_map(|p| p.1).or(a.quiet))
                .collect();
            let behind = places
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.map(|p| (p, i)))
                .min();
            let c = cut(0, &at(&vec![0; n]), &a, 8, skew, Window::ALL);
            if let Some((_, i)) = behind {
                if !queues[i].is_empty() {
                    assert!(c.is_some(), "stuck: {queues:?} {quiet:?}");
                }
            } else if queues.iter().any(|q| !q.is_empty()) {
                assert!(c.is_some(), "nothing holds back, yet no cut");
            }
            for (me, r) in c.iter().flat_map(|c| c.ranges.iter().enumerate()) {
                let bound = crate::fluvio::align::bound(&places, me, skew);
                for &(_, t) in queues[me].iter().take(r.to as usize) {
                    assert!(
                        t.is_none_or(|t| t <= bound),
                        "an event past the bound was cut"
                    );
                }
            }
        }
    }

    #[test]
    fn a_partition_that_gave_only_what_the_shards_refuse_holds_nothing_back() {
        let window = Window {
            late_before: 10 * H,
            horizon: 20 * H,
        };
        let (mut last, mut latest) = (Some(12 * H), 15 * H);
        // no ts, too late, too far ahead: none of it is a place
        after_cut(
            [(0, None), (1, Some(H)), (2, Some(30 * H))].into_iter(),
            window,
            &mut last,
            &mut latest,
        );
        assert_eq!((last, latest), (None, 15 * H));
        // the last usable one is the place, and the latest moves
        after_cut(
            [(3, Some(16 * H)), (4, None), (5, Some(30 * H))].into_iter(),
            window,
            &mut last,
            &mut latest,
        );
        assert_eq!((last, latest), (Some(16 * H), 16 * H));
        // a partition that gave nothing stays where it was
        after_cut(std::iter::empty(), window, &mut last, &mut latest);
        assert_eq!(last, Some(16 * H));
        // and in a cut, records the shards refuse do not hold another partition back
        let queues = [
            pending(0, 3, |_| None),
            pending(0, 3, |o| Some(25 * H + o as i64)),
        ];
        let c = cut(0, &at(&[0, 0]), &ahead(&queues, &[None; 2]), 10, H, window).unwrap();
        assert_eq!(spans(&c), vec![(0, 3), (0, 3)]);
    }

    #[test]
    fn every_process_judges_the_future_by_the_clock_the_cut_carries() {
        let mut c = cut(
            0,
            &at(&[0]),
            &ahead(&[pending(0, 1, |_| None)], &[None]),
            1,
            0,
            Window::ALL,
        )
        .unwrap();
        // a cut written before cuts carried a clock: no check
        let old =
            r#"{"epoch":0,"ranges":[{"topic":"t","partition":0,"from":0,"to":1}],"fingerprint":7}"#;
        let read: Cut = serde_json::from_str(old).unwrap();
        assert_eq!((read.clock_us, read.max_future_s), (0, 0));
        assert!(read.too_far_ahead(i64::MAX).is_none());
        // the cut's clock, not the reader's: a cut made in 2020 refuses an event of 2021
        c.clock_us = 1_577_836_800_000_000;
        c.max_future_s = 300;
        assert!(c.too_far_ahead(c.clock_us + 299_000_000).is_none());
        let p = c.too_far_ahead(c.clock_us + 365 * 24 * H).expect("refused");
        assert_eq!(p.reason, omnistream_schemas::Reason::FutureTimestamp);
        c.max_future_s = 0;
        assert!(c.too_far_ahead(i64::MAX).is_none(), "0: no limit");
    }

    #[test]
    fn a_watcher_stops_reading_at_its_bound_until_a_cut_makes_room() {
        use crate::fluvio::log::{MemLog, PartitionedLog};
        let log = MemLog::new();
        log.create_topic("t", 1).unwrap();
        let line = br#"{"ts":"2026-11-11T20:15:03.120+08:00"}"#;
        for _ in 0..PENDING_MAX + 100 {
            log.append("t", b"k", line).unwrap();
        }
        let transport = crate::fluvio::MemTransport {
            log,
            group: "g".into(),
        };
        let w = Rc::new(Watched {
            pending: RefCell::new(VecDeque::new()),
            end: Cell::new(0),
            seen: Cell::new(None),
            room: Notify::new(),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let moved = Rc::new(Notify::new());
            let task = tokio::task::spawn_local(watch_partition(
                transport,
                "t".into(),
                0,
                w.clone(),
                moved,
                true,
            ));
            let until = |n: u64| {
                let w = w.clone();
                async move {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while w.end.get() < n {
                        assert!(Instant::now() < deadline, "read {} of {n}", w.end.get());
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // and no further
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            until(PENDING_MAX as u64).await;
            assert_eq!(w.pending.borrow().len(), PENDING_MAX, "read past its bound");
            assert_eq!(w.end.get(), PENDING_MAX as u64);
            assert_eq!(w.pending.borrow()[0], (0, Some(1_794_399_303_120_000)));
            // a cut takes ten: it reads ten more
            w.pending.borrow_mut().drain(..10);
            w.room.notify_one();
            until(PENDING_MAX as u64 + 10).await;
            assert_eq!(w.pending.borrow().len(), PENDING_MAX);
            assert_eq!(w.end.get(), PENDING_MAX as u64 + 10);
            task.abort();
        });
    }

    #[test]
    fn a_records_event_time_is_its_ts() {
        let line = br#"{"type":"click","id":"x","ts":"2026-11-11T20:15:03.120+08:00","member":{"id":"m"}}"#;
        assert_eq!(event_time(line), Some(1_794_399_303_120_000));
        assert_eq!(event_time(br#"{"type":"click","id":"x"}"#), None);
        assert_eq!(event_time(br#"{"ts":"yesterday"}"#), None);
        assert_eq!(event_time(br#"{"ts":12}"#), None);
        assert_eq!(event_time(b"{not json"), None);
    }
}

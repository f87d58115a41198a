//! Event-time alignment of the input partitions one process reads.
//!
//! Each partition is read by a task of its own, and the engine's watermark is the latest
//! event time it has seen. When the partitions hold different stretches of time (a backlog
//! after downtime, a backfill of history into one topic while another holds today), the
//! partition read fastest moves the watermark ahead of the others: their events then arrive
//! behind it, timers fire before them, and beyond `max-lateness-s` they are refused as
//! `too_late`. So, as stream processors align their splits on watermarks, a partition hands
//! the shard only events at most `max-skew-s` ahead of every other partition that still has
//! records to give: a batch waits until its first event is, and is cut before its first
//! event that is not (the rest goes in a later batch: a batch of a sparse topic can span
//! days). A partition is where its last batch ended, or, while waiting, where its waiting
//! batch starts; one that has had no record for `idle-ms` holds nothing back (a quiet topic
//! does not stop the others), nor does one whose batch held only refused records or whose
//! task ended. The partition furthest behind may always go, so the partitions never wait on
//! each other in a circle.
//!
//! Alignment changes only the order in which the partitions' batches reach the shard; what
//! the shard then does is logged in that order, so a replay gives the same state.

use std::sync::Arc;
use tokio::sync::watch;

/// Where each partition is in event time (µs): `None` when it holds nothing back.
type Places = Vec<Option<i64>>;

/// The alignment shared by the partitions of one process.
#[derive(Debug)]
pub struct Align {
    places: watch::Sender<Places>,
    skew_us: i64,
}

/// Whether a batch starting at `first` (µs) may go from partition `me`: it is at most
/// `skew_us` ahead of every other partition that holds something back.
pub fn may_go(places: &[Option<i64>], me: usize, first: i64, skew_us: i64) -> bool {
    first <= bound(places, me, skew_us)
}

/// The latest event time partition `me` may hand over now: `skew_us` past the other
/// partitions that hold something back (none: no bound). The partition furthest behind is
/// always at or under it, so one of them can always go.
pub fn bound(places: &[Option<i64>], me: usize, skew_us: i64) -> i64 {
    places
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != me)
        .filter_map(|(_, p)| *p)
        .min()
        .map_or(i64::MAX, |behind| behind.saturating_add(skew_us))
}

impl Align {
    /// Alignment of `partitions` partitions, none more than `skew_s` seconds ahead of the
    /// others (0: no alignment). Each starts as holding the others back until it gives its
    /// first batch or is idle: at start-up, a partition whose first record has not come yet
    /// may hold the oldest events.
    pub fn new(partitions: usize, skew_s: u64) -> Arc<Align> {
        let start = if skew_s == 0 { None } else { Some(i64::MIN) };
        Arc::new(Align {
            places: watch::channel(vec![start; partitions]).0,
            skew_us: crate::shard::secs_us(skew_s),
        })
    }

    /// The handle of partition `me`.
    pub fn turn(self: &Arc<Self>, me: usize) -> Turn {
        Turn {
            align: Arc::clone(self),
            places: self.places.subscribe(),
            me,
        }
    }

    fn set(&self, me: usize, at: Option<i64>) {
        self.places.send_if_modified(|p| match p.get_mut(me) {
            Some(old) if *old != at => {
                *old = at;
                true
            }
            _ => false,
        });
    }
}

/// One partition's part in the alignment.
#[derive(Debug)]
pub struct Turn {
    align: Arc<Align>,
    places: watch::Receiver<Places>,
    me: usize,
}

impl Turn {
    /// Waits until a batch whose first event is at `first` (µs) may go, and says up to
    /// which event time it may go: the batch is cut before its first event past that (the
    /// rest waits for the others). `None` (no event could be decoded) goes at once, whole.
    /// While it waits, the partition is at `first`. Also says whether it had to wait.
    pub async fn wait(&mut self, first: Option<i64>) -> (i64, bool) {
        if self.align.skew_us == 0 {
            return (i64::MAX, false);
        }
        let Some(first) = first else {
            // only refused records: nothing to place it by, and nothing it could hold back
            self.idle();
            return (i64::MAX, false);
        };
        self.align.set(self.me, Some(first));
        let (me, skew) = (self.me, self.align.skew_us);
        let blocked = !may_go(&self.places.borrow(), me, first, skew);
        // the sender lives in `align`, which this turn holds: the wait ends only by a change
        match self.places.wait_for(|p| may_go(p, me, first, skew)).await {
            Ok(p) => (bound(&p, me, skew), blocked),
            Err(_) => (i64::MAX, blocked),
        }
    }

    /// The batch is handed over and its last event was at `last` (µs).
    pub fn handed(&self, last: Option<i64>) {
        if self.align.skew_us > 0 {
            if let Some(last) = last {
                self.align.set(self.me, Some(last));
            }
        }
    }

    /// The partition has had no record for a while: it holds nothing back until its next
    /// batch waits.
    pub fn idle(&self) {
        self.align.set(self.me, None);
    }
}

impl Drop for Turn {
    /// A partition whose task ended (its stream ended, the shard stopped, an abort) holds
    /// nothing back.
    fn drop(&mut self) {
        self.idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_goes_when_no_other_partition_with_records_is_more_than_the_skew_behind() {
        let s = 10;
        assert!(may_go(&[None, None], 0, 1_000, s));
        assert!(may_go(&[Some(5), Some(990)], 0, 1_000, s));
        assert!(!may_go(&[Some(5), Some(989)], 0, 1_000, s));
        // an idle partition holds nothing back; one starting holds everything back
        assert!(may_go(&[None, Some(0), None], 1, i64::MAX, s));
        assert!(!may_go(&[Some(i64::MIN), Some(0)], 1, 0, s));
        // the partition furthest behind may always go
        let places = [Some(100), Some(50), Some(300)];
        assert!(may_go(&places, 1, 50, s));
        assert!(!may_go(&places, 0, 100, s));
        // how far a batch may reach: the skew past the others
        assert_eq!(bound(&places, 1, s), 110);
        assert_eq!(bound(&places, 0, s), 60);
        assert_eq!(bound(&[None, Some(7)], 1, s), i64::MAX);
    }

    #[tokio::test]
    async fn the_partition_ahead_waits_until_the_one_behind_catches_up_or_goes_idle() {
        let align = Align::new(2, 10);
        let (mut old, mut new) = (align.turn(0), align.turn(1));
        // both starting: the one ahead waits, the one behind goes
        let ahead = tokio::spawn(async move {
            let (_, blocked) = new.wait(Some(1_000_000_000)).await;
            assert!(blocked, "said it went at once");
            new
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !ahead.is_finished(),
            "went before the partition behind was known"
        );
        // the one behind may go up to the skew past the one ahead, which waits at 1,000 s
        assert_eq!(old.wait(Some(0)).await, (1_010_000_000, false));
        old.handed(Some(500_000_000));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !ahead.is_finished(),
            "went 500 s ahead of the partition behind"
        );
        old.handed(Some(990_000_000));
        let new = tokio::time::timeout(Duration::from_secs(5), ahead)
            .await
            .expect("still waiting within the skew")
            .unwrap();
        // the other way round, ended by idleness
        new.handed(Some(2_000_000_000));
        let far = tokio::spawn(async move {
            old.wait(Some(3_000_000_000)).await;
            old
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!far.is_finished());
        new.idle();
        tokio::time::timeout(Duration::from_secs(5), far)
            .await
            .expect("an idle partition holds nothing back")
            .unwrap();
    }

    #[tokio::test]
    async fn a_partition_gone_or_with_only_refused_records_holds_nothing_back() {
        let align = Align::new(3, 10);
        let (mut a, mut b, c) = (align.turn(0), align.turn(1), align.turn(2));
        assert_eq!(b.wait(None).await, (i64::MAX, false), "nothing to cut by");
        drop(c);
        // a is the only one left with a place
        let to = tokio::time::timeout(Duration::from_secs(1), a.wait(Some(i64::MAX - 1)))
            .await
            .expect("held back by a partition without events or gone");
        assert_eq!(to, (i64::MAX, false));
    }

    #[tokio::test]
    async fn without_a_skew_nothing_waits() {
        let align = Align::new(2, 0);
        let (mut a, b) = (align.turn(0), align.turn(1));
        b.handed(Some(0));
        let to = tokio::time::timeout(Duration::from_secs(1), a.wait(Some(i64::MAX)))
            .await
            .expect("no alignment");
        assert_eq!(to, (i64::MAX, false), "and no cut");
    }
}

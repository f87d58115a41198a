//! Sliding event-time windows with bounded state: scan rates in minute, hour and day windows
//! (bucketed), distinct members in a window (a bounded set of hashes), and recent batch
//! scans. Everything is pruned by event time as it goes, so state never grows with traffic.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

const SEC: i64 = 1_000_000;

/// `(bucket width, window length)` in µs of the minute, hour and day windows. A count is
/// exact to within one bucket at the window's far edge: 5 s in a minute, 5 min in an hour,
/// 1 h in a day; that is the price of at most 12 + 12 + 24 buckets per entity.
pub const WINDOWS: [(i64, i64); 3] = [
    (5 * SEC, 60 * SEC),
    (300 * SEC, 3_600 * SEC),
    (3_600 * SEC, 86_400 * SEC),
];

/// Event counts in one sliding window, as `(bucket number, count)` in bucket order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets(pub VecDeque<(i64, u32)>);

impl Buckets {
    /// Counts one event at `ts` and returns the count in the window ending at the newest
    /// event seen (late events count, and never revive pruned buckets).
    pub fn add(&mut self, ts: i64, width: i64, span: i64) -> u32 {
        let b = ts.div_euclid(width);
        let q = &mut self.0;
        match q.iter().rposition(|(x, _)| *x <= b) {
            Some(i) if q[i].0 == b => q[i].1 = q[i].1.saturating_add(1),
            Some(i) => q.insert(i + 1, (b, 1)),
            None => q.push_front((b, 1)),
        }
        let newest = q.back().map_or(b, |(x, _)| *x);
        let first = newest - span / width + 1;
        while q.front().is_some_and(|(x, _)| *x < first) {
            q.pop_front();
        }
        q.iter().map(|(_, n)| *n).fold(0u32, u32::saturating_add)
    }

    /// Events in the buckets covering the last `span` before the newest bucket's end.
    pub fn recent(&self, width: i64, span: i64) -> u32 {
        let Some(&(newest, _)) = self.0.back() else {
            return 0;
        };
        let first = newest - (span / width).max(1) + 1;
        self.0
            .iter()
            .rev()
            .take_while(|(b, _)| *b >= first)
            .map(|(_, n)| *n)
            .fold(0, u32::saturating_add)
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes in another window's counts (a merged member's): bucket by bucket, pruned to
    /// the window ending at the newest bucket of the two. The same whichever side takes in
    /// the other.
    pub fn absorb(&mut self, other: &Buckets, width: i64, span: i64) {
        let mut all: Vec<(i64, u32)> = self.0.iter().chain(other.0.iter()).copied().collect();
        all.sort_unstable_by_key(|(b, _)| *b);
        let mut q: VecDeque<(i64, u32)> = VecDeque::with_capacity(all.len());
        for (b, n) in all {
            match q.back_mut() {
                Some((x, m)) if *x == b => *m = m.saturating_add(n),
                _ => q.push_back((b, n)),
            }
        }
        if let Some(&(newest, _)) = q.back() {
            let first = newest - span / width + 1;
            while q.front().is_some_and(|(x, _)| *x < first) {
                q.pop_front();
            }
        }
        self.0 = q;
    }
}

/// Scan counts in the minute, hour and day windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate(pub [Buckets; 3]);

impl Rate {
    /// Counts one scan at `ts`; returns the minute, hour and day counts including it.
    pub fn add(&mut self, ts: i64) -> [u32; 3] {
        let mut out = [0; 3];
        for (i, (width, span)) in WINDOWS.iter().enumerate() {
            out[i] = self.0[i].add(ts, *width, *span);
        }
        out
    }

    /// Scans in roughly the last `span` (µs, at most an hour), counted in the hour window's
    /// 5-minute buckets.
    pub fn recent(&self, span: i64) -> u32 {
        self.0[1].recent(WINDOWS[1].0, span)
    }

    /// Whether no scan is counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Buckets::is_empty)
    }

    /// Takes in a merged member's scan counts, window by window.
    pub fn absorb(&mut self, other: &Rate) {
        for (i, (width, span)) in WINDOWS.iter().enumerate() {
            self.0[i].absorb(&other.0[i], *width, *span);
        }
    }
}

/// Distinct members seen in a sliding window, at most `cap` of them (the oldest go first), so
/// counts saturate at `cap`: limits must stay below it (the rules check that).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distinct(pub VecDeque<Seen>);

/// One member in a [`Distinct`] set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Hash of the member id.
    pub member: u64,
    /// Its latest scan (µs).
    pub at: i64,
    /// It was a fresh account at that scan.
    pub fresh: bool,
}

/// What a [`Distinct`] set holds after an add.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DistinctCount {
    /// Distinct members in the window.
    pub members: u32,
    /// Of those, fresh accounts.
    pub fresh: u32,
    /// The member was not in the set before.
    pub new: bool,
}

impl Distinct {
    /// Records `member` at `ts`; prunes what left the window before `ts`.
    pub fn add(
        &mut self,
        member: u64,
        ts: i64,
        fresh: bool,
        window: i64,
        cap: usize,
    ) -> DistinctCount {
        let q = &mut self.0;
        let new = match q.iter().position(|s| s.member == member) {
            Some(i) => {
                let mut s = q.remove(i).unwrap_or_default();
                s.at = s.at.max(ts);
                s.fresh |= fresh;
                q.push_back(s);
                false
            }
            None => {
                q.push_back(Seen {
                    member,
                    at: ts,
                    fresh,
                });
                true
            }
        };
        // the deque is in order of latest scan (up to late events): prune from the front
        let newest = q.iter().map(|s| s.at).max().unwrap_or(ts);
        while q.len() > cap.max(1) || q.front().is_some_and(|s| s.at <= newest - window) {
            q.pop_front();
        }
        DistinctCount {
            members: u32::try_from(q.len()).unwrap_or(u32::MAX),
            fresh: u32::try_from(q.iter().filter(|s| s.fresh).count()).unwrap_or(u32::MAX),
            new,
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fresh accounts whose latest scan is later than `span` before `ts`.
    pub fn fresh_within(&self, ts: i64, span: i64) -> u32 {
        let n = self
            .0
            .iter()
            .filter(|s| s.fresh && s.at > ts - span)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Drops the members in `merged` (ids that merged into the one about to be added: one
    /// person, not several); returns whether any of them was fresh, for the survivor.
    pub fn forget(&mut self, merged: &[u64]) -> bool {
        let mut fresh = false;
        self.0.retain(|s| {
            let gone = merged.contains(&s.member);
            fresh |= gone && s.fresh;
            !gone
        });
        fresh
    }
}

/// Recent scans by batch: `(batch hash, time)`, at most `cap`, for batch-harvesting counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchScans(pub VecDeque<(u64, i64)>);

impl BatchScans {
    /// Records a scan of `batch` at `ts`; returns the scans of that batch within `window`.
    pub fn add(&mut self, batch: u64, ts: i64, window: i64, cap: usize) -> u32 {
        let q = &mut self.0;
        q.push_back((batch, ts));
        while q.len() > cap.max(1) {
            q.pop_front();
        }
        let newest = q.iter().map(|(_, t)| *t).max().unwrap_or(ts);
        while q.front().is_some_and(|(_, t)| *t <= newest - window) {
            q.pop_front();
        }
        let n = q
            .iter()
            .filter(|(b, t)| *b == batch && *t > ts - window)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes in a merged member's batch scans: both in time order (batch breaking ties), the
    /// newest `cap` within `window` of the newest kept. The same whichever side takes in the
    /// other.
    pub fn absorb(&mut self, other: &BatchScans, window: i64, cap: usize) {
        let mut all: Vec<(u64, i64)> = self.0.iter().chain(other.0.iter()).copied().collect();
        all.sort_unstable_by_key(|(b, t)| (*t, *b));
        let keep = all.len().saturating_sub(cap.max(1));
        let mut q: VecDeque<(u64, i64)> = all.into_iter().skip(keep).collect();
        if let Some(newest) = q.back().map(|(_, t)| *t) {
            while q.front().is_some_and(|(_, t)| *t <= newest - window) {
                q.pop_front();
            }
        }
        self.0 = q;
    }

    /// Scans of `batch` later than `ts - span` (the scan just added included): how many caps
    /// of one batch came within, say, the last minute.
    pub fn within(&self, batch: u64, ts: i64, span: i64) -> u32 {
        let n = self
            .0
            .iter()
            .rev()
            .filter(|(b, t)| *b == batch && *t > ts - span)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_slide_and_prune_by_event_time() {
        let mut r = Rate::default();
        let t0 = 1_800_000_000 * SEC;
        for i in 0..6 {
            r.add(t0 + i * 5 * SEC);
        }
        assert_eq!(r.add(t0 + 30 * SEC), [7, 7, 7]);
        // two minutes later the minute window is empty but the hour still counts all
        assert_eq!(r.add(t0 + 150 * SEC), [1, 8, 8]);
        // a day and an hour later everything old is gone, and so are its buckets
        assert_eq!(r.add(t0 + 90_000 * SEC), [1, 1, 1]);
        assert!(r.0.iter().all(|b| b.0.len() == 1));
    }

    #[test]
    fn recent_counts_only_the_newest_buckets() {
        let mut r = Rate::default();
        let t0 = 1_800_000_000 * SEC;
        for i in 0..12 {
            r.add(t0 + i * 150 * SEC); // one every 2.5 minutes for half an hour
        }
        assert_eq!(
            r.recent(600 * SEC),
            4,
            "two 5-minute buckets, two scans each"
        );
        assert_eq!(Rate::default().recent(600 * SEC), 0);
    }

    #[test]
    fn a_late_event_counts_without_reviving_old_buckets() {
        let mut b = Buckets::default();
        let w = 5 * SEC;
        b.add(100 * SEC, w, 60 * SEC);
        assert_eq!(b.add(90 * SEC, w, 60 * SEC), 2);
        assert_eq!(b.0.front().map(|x| x.0), Some(18), "inserted in order");
        assert_eq!(b.add(10 * SEC, w, 60 * SEC), 2, "too late for the window");
    }

    #[test]
    fn distinct_members_are_bounded_and_expire() {
        let mut d = Distinct::default();
        let h = 3_600 * SEC;
        for m in 0..10u64 {
            d.add(m, m as i64 * SEC, m % 2 == 0, h, 8);
        }
        let c = d.add(3, 20 * SEC, false, h, 8);
        assert_eq!(
            (c.members, c.new),
            (8, false),
            "capped at 8, member 3 already in"
        );
        let c = d.add(100, 2 * h, false, h, 8);
        assert_eq!(
            (c.members, c.fresh, c.new),
            (1, 0, true),
            "an hour later only the new one"
        );
    }

    #[test]
    fn batch_scans_count_one_batch_in_the_window() {
        let mut b = BatchScans::default();
        let h = 3_600 * SEC;
        assert_eq!(b.add(1, 0, h, 64), 1);
        assert_eq!(b.add(2, SEC, h, 64), 1);
        assert_eq!(b.add(1, 2 * SEC, h, 64), 2);
        assert_eq!(b.add(1, 2 * h, h, 64), 1, "the first two left the window");
    }

    #[test]
    fn a_merged_member_counts_once_and_keeps_its_freshness() {
        let mut d = Distinct::default();
        let h = 3_600 * SEC;
        d.add(1, 0, true, h, 8);
        d.add(2, SEC, false, h, 8);
        // member 1 merged into 3 (One-ID): one person, not two
        let fresh = d.forget(&[1]);
        assert!(fresh);
        let c = d.add(3, 2 * SEC, fresh, h, 8);
        assert_eq!((c.members, c.fresh), (2, 1));
        assert!(!d.forget(&[9]), "nothing to forget");
    }

    #[test]
    fn batch_scans_within_a_minute() {
        let mut b = BatchScans::default();
        for i in 0..4 {
            b.add(7, i * 30 * SEC, 600 * SEC, 64);
        }
        b.add(8, 95 * SEC, 600 * SEC, 64);
        assert_eq!(b.within(7, 95 * SEC, 60 * SEC), 2);
        assert_eq!(b.within(8, 95 * SEC, 60 * SEC), 1);
        assert_eq!(b.within(7, 95 * SEC, 600 * SEC), 4);
    }
}

//! Pending timers: at most one per key, fired in (time, key) order.
//!
//! A member re-arms its timer on almost every command (its next inactivity or expiry moment
//! moves with each event), so arming must be cheap. A sorted set pays a removal and an
//! insertion, each a walk down a tree comparing keys, for every re-arm. Here a map holds each
//! key's current time and a binary heap holds, for every pending key, at least one entry at or
//! before that time (its anchor). A re-arm to a later time, the common case, only updates the
//! map: the anchor still comes up in time. When an entry reaches the top before its key's
//! time it is pushed again at that time; an entry of a key that fired or moved earlier is
//! stale and dropped there. Only a re-arm to an earlier time adds an entry beside the old
//! one, so the heap stays near one entry per pending timer without a periodic rebuild (an
//! earlier version pushed on every re-arm and rebuilt the whole heap once stale entries
//! outnumbered live ones: a pause proportional to the pending timers, inside one command).
//! The rebuild remains as a bound on memory for the rare run of earlier re-arms. The order
//! of firing is the sorted set's: a key's entry at its current time is the only one that
//! fires, and the heap orders `(time, key)` the same way.
//!
//! Neither structure pauses to grow: the map moves a few entries per insert when it grows
//! ([`crate::GrowMap`]), and the heap's storage grows in chunks ([`ChunkHeap`]), so no arm
//! moves what is already stored.
//!
//! Both hold a key in 16 bytes ([`Tk`]: a member id as the engine issues them, `m` and 16
//! hex digits, as its number; any other key boxed as its kind and string), where a [`Key`]
//! takes 48: a member that is passivated keeps its pending timer in memory, so at 10 million
//! members known these entries are a large part of what is not bounded. The order is the
//! same: kinds in [`Key`]'s order, then the string (an identity's `kind NUL value` sorts as
//! its `(kind, value)` pair for kinds without a NUL; members and orders arm timers).

use crate::chunkheap::ChunkHeap;
use crate::cold::Kind;
use crate::engine::{join_key, split_key};
use crate::identity::{member_id_of, member_number};
use crate::{Key, Str};
use std::cmp::Ordering;

/// A timer's key in 16 bytes. `Member` holds the ids [`crate::identity::member_id_for`]
/// issues ([`member_id_of`]: `m` + 16 lowercase hex digits) as their number, which orders
/// them as their strings do (same length, digits in ASCII order); every other key is
/// `Other`, boxed, and never holds such an id, so equal keys are always the same variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Tk {
    Member(u64),
    Other(Box<(Kind, Str)>),
}

impl Tk {
    fn of(key: Key) -> Tk {
        let (kind, id) = split_key(key);
        match kind {
            Kind::Member => match member_number(&id) {
                Some(n) => Tk::Member(n),
                None => Tk::Other(Box::new((kind, id))),
            },
            _ => Tk::Other(Box::new((kind, id))),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Tk::Member(_) => Kind::Member,
            Tk::Other(b) => b.0,
        }
    }

    fn id(&self) -> Str {
        match self {
            Tk::Member(n) => member_id_of(*n),
            Tk::Other(b) => b.1.clone(),
        }
    }

    fn key(self) -> Key {
        match self {
            Tk::Member(n) => Key::Member(member_id_of(n)),
            Tk::Other(b) => join_key(b.0, b.1),
        }
    }
}

impl Ord for Tk {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Tk::Member(a), Tk::Member(b)) => a.cmp(b),
            (Tk::Other(a), Tk::Other(b)) => a.cmp(b),
            _ => self
                .kind()
                .cmp(&other.kind())
                .then_with(|| self.id().cmp(&other.id())),
        }
    }
}

impl PartialOrd for Tk {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

type HashMap<K, V> = crate::GrowMap<K, V>;

/// Entries below which the heap is never rebuilt (a rebuild of a small heap buys nothing).
const REBUILD_FLOOR: usize = 1_024;

/// The pending timers, one per key.
#[derive(Debug, Default)]
pub struct Timers {
    heap: ChunkHeap<(i64, Tk)>,
    at: HashMap<Tk, i64>,
}

impl Timers {
    /// Sets `key`'s timer to `t`, replacing any earlier request.
    pub fn arm(&mut self, key: Key, t: i64) {
        let key = Tk::of(key);
        match self.at.insert(key.clone(), t) {
            // the anchor, at or before the old time, is at or before the new one
            Some(old) if old <= t => return,
            _ => self.heap.push((t, key)),
        }
        if self.heap.len() > REBUILD_FLOOR.max(2 * self.at.len()) {
            self.rebuild();
        }
    }

    /// Drops the stale entries: the heap then holds one entry per pending timer.
    fn rebuild(&mut self) {
        self.heap = self.at.iter().map(|(k, t)| (*t, k.clone())).collect();
    }

    /// Settles the top up to `to_us`: moves an anchor that came up early to its key's time
    /// and drops stale entries, until the top is a key's current time (returned: the earliest
    /// pending) or lies past `to_us` (None: nothing is due, since every key's anchor is at or
    /// before its time). Anchors past `to_us` are left for a later call, so a look for due
    /// timers never settles ahead of the watermark: after many keys were re-armed beyond every
    /// old time, settling them all at once took 1.6-2.5 s at 2 M timers (`benches/timers.rs`).
    fn first_due(&mut self, to_us: i64) -> Option<i64> {
        loop {
            let (t, k) = self.heap.peek()?;
            if *t > to_us {
                return None;
            }
            match self.at.get(k) {
                Some(now) if now == t => return Some(*t),
                Some(&now) if now > *t => {
                    let (_, k) = self.heap.pop()?;
                    self.heap.push((now, k));
                }
                // fired, retained away, or moved earlier (that entry is below this one)
                _ => {
                    self.heap.pop();
                }
            }
        }
    }

    /// Drops `key`'s pending timer, if any. Its heap entries go stale (dropped when they come
    /// up, or by a rebuild once stale entries outnumber live ones).
    pub fn remove(&mut self, key: Key) {
        if self.at.remove(&Tk::of(key)).is_some()
            && self.heap.len() > REBUILD_FLOOR.max(2 * self.at.len())
        {
            self.rebuild();
        }
    }

    /// The time `key`'s timer is set for, if one is pending.
    pub fn due(&self, key: Key) -> Option<i64> {
        self.at.get(&Tk::of(key)).copied()
    }

    /// The earliest pending timer if it is at or before `to_us`, removed.
    pub fn pop_due(&mut self, to_us: i64) -> Option<(i64, Key)> {
        self.first_due(to_us)?;
        let (t, k) = self.heap.pop()?;
        self.at.remove(&k);
        Some((t, k.key()))
    }

    /// Every pending timer in firing order, as `(time, kind, key string)`.
    pub(crate) fn sorted(&self) -> Vec<(i64, Kind, Str)> {
        let mut v: Vec<_> = self.at.iter().map(|(k, t)| (*t, k)).collect();
        v.sort_unstable();
        v.into_iter().map(|(t, k)| (t, k.kind(), k.id())).collect()
    }

    /// Moves every pending timer of `kind` `by_us` earlier, but not before `floor`.
    pub(crate) fn advance_kind(&mut self, kind: Kind, by_us: i64, floor: i64) {
        let mut moved = false;
        for (k, t) in self.at.iter_mut() {
            if k.kind() == kind {
                *t = (*t).min(t.saturating_sub(by_us).max(floor));
                moved = true;
            }
        }
        if moved {
            self.rebuild();
        }
    }

    /// Keeps the timers of the keys `keep` takes.
    pub(crate) fn retain(&mut self, keep: impl Fn(&Key) -> bool) {
        self.at.retain(|k, _| keep(&k.clone().key()));
        self.rebuild();
    }

    /// Pending timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Members, (8 to 11) identities of kinds that are prefixes of each other, (12 to 15)
    /// member ids of the engine's form, held as numbers, and (16 to 19) ids that miss that
    /// form by a little and sort among them as strings.
    fn key(i: u8) -> Key {
        match i {
            0..8 => Key::Member(format!("m{i}").into()),
            8..12 => Key::Identity(
                ["a", "ab", "a-b"][usize::from(i % 3)].into(),
                format!("{}", i % 2).into(),
            ),
            12..16 => {
                let n = [0, 0xff, 0x0123_4567_89ab_cdef, u64::MAX][usize::from(i - 12)];
                Key::Member(format!("m{n:016x}").into())
            }
            _ => Key::Member(
                [
                    "m00000000000000FF",
                    "m0123456789abcde",
                    "m0123456789abcdef0",
                    "mffffffffffffffff ",
                ][usize::from(i % 4)]
                .into(),
            ),
        }
    }

    #[test]
    fn compact_keys_round_trip_and_order_as_kind_and_string() {
        for a in 0..20 {
            let tk = Tk::of(key(a));
            assert_eq!(
                matches!(tk, Tk::Member(_)),
                (12..16).contains(&a),
                "{}",
                key(a)
            );
            assert_eq!(tk.clone().key(), key(a));
            for b in 0..20 {
                assert_eq!(
                    tk.cmp(&Tk::of(key(b))),
                    split_key(key(a)).cmp(&split_key(key(b))),
                    "{} against {}",
                    key(a),
                    key(b)
                );
            }
        }
        assert_eq!(std::mem::size_of::<Tk>(), 16);
    }

    #[test]
    fn a_rearmed_key_fires_once_at_its_last_time() {
        let mut t = Timers::default();
        t.arm(key(1), 50);
        t.arm(key(2), 20);
        t.arm(key(1), 10);
        t.arm(key(1), 30);
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(25), Some((20, key(2))));
        assert_eq!(t.pop_due(25), None);
        assert_eq!(t.pop_due(100), Some((30, key(1))));
        assert_eq!(t.pop_due(100), None);
    }

    #[test]
    fn a_removed_key_does_not_fire_and_armed_again_fires_once() {
        let mut t = Timers::default();
        t.arm(key(1), 10);
        t.arm(key(2), 20);
        t.remove(key(1));
        t.remove(key(3)); // none pending: nothing happens
        assert_eq!((t.len(), t.due(key(1)), t.due(key(2))), (1, None, Some(20)));
        assert_eq!(t.pop_due(15), None);
        t.arm(key(1), 30);
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(100)).collect();
        assert_eq!(fired, vec![(20, key(2)), (30, key(1))]);
        // many removals leave no more stale entries than live ones (past the floor)
        for i in 0..(2 * REBUILD_FLOOR as i64) {
            t.arm(key(5), i);
            t.arm(key(6), i);
            t.remove(key(5));
        }
        assert!(t.heap.len() <= REBUILD_FLOOR.max(2 * t.len()) + 1);
    }

    #[test]
    fn equal_times_fire_by_key() {
        let mut t = Timers::default();
        t.arm(key(3), 5);
        t.arm(key(1), 5);
        t.arm(key(2), 5);
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(5)).collect();
        assert_eq!(fired, vec![(5, key(1)), (5, key(2)), (5, key(3))]);
    }

    #[test]
    fn a_rearm_to_a_later_time_adds_no_entry() {
        let mut t = Timers::default();
        for round in 0..10_000 {
            t.arm(key(round as u8 % 4), round);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.heap.len(), 4);
        // the anchors at 0..=3 come up early, move to 9,996..=9,999 and fire there
        assert_eq!(t.pop_due(9_995), None);
        assert_eq!(t.heap.len(), 4);
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(10_000)).collect();
        assert_eq!(
            fired,
            vec![
                (9_996, key(0)),
                (9_997, key(1)),
                (9_998, key(2)),
                (9_999, key(3))
            ]
        );
    }

    #[test]
    fn stale_entries_of_earlier_rearms_are_dropped_when_they_outnumber_the_live_ones() {
        let mut t = Timers::default();
        for round in 0..10_000 {
            t.arm(key(round as u8 % 4), 100_000 - round);
        }
        assert_eq!(t.len(), 4);
        assert!(t.heap.len() <= REBUILD_FLOOR + 1, "{}", t.heap.len());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Arm(u8, i64),
        Pop(i64),
        Retain(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..20, 0i64..40).prop_map(|(k, t)| Op::Arm(k, t)),
            2 => (0i64..40).prop_map(Op::Pop),
            1 => (2u8..4).prop_map(Op::Retain),
        ]
    }

    proptest! {
        /// The heap fires exactly what the sorted set of one timer per key fires, in its order.
        #[test]
        fn it_fires_as_a_sorted_set_of_one_timer_per_key(ops in proptest::collection::vec(op(), 0..300)) {
            let mut t = Timers::default();
            let mut set: BTreeSet<(i64, Key)> = BTreeSet::new();
            let mut of: BTreeMap<Key, i64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Arm(k, at) => {
                        t.arm(key(k), at);
                        if let Some(old) = of.insert(key(k), at) {
                            set.remove(&(old, key(k)));
                        }
                        set.insert((at, key(k)));
                    }
                    Op::Pop(to) => loop {
                        let want = match set.first() {
                            Some((at, _)) if *at <= to => set.pop_first(),
                            _ => None,
                        };
                        if let Some((_, k)) = &want {
                            of.remove(k);
                        }
                        prop_assert_eq!(t.pop_due(to), want.clone());
                        if want.is_none() {
                            break;
                        }
                    },
                    Op::Retain(m) => {
                        let keep = |k: &Key| k.owner(usize::from(m)) == 0;
                        t.retain(keep);
                        set.retain(|(_, k)| keep(k));
                        of.retain(|k, _| keep(k));
                    }
                }
                let sorted: Vec<_> = t.sorted().into_iter().map(|(at, kind, id)| (at, join_key(kind, id))).collect();
                prop_assert_eq!(sorted, set.iter().cloned().collect::<Vec<_>>());
            }
        }
    }
}

//! The event ids the engine remembers so that a repeat is dropped, with a bound on how many.
//!
//! Each id is kept twice: in a hash set, for the check every event makes, and in a queue of
//! its second of event time (`u32`, seconds since the Unix epoch, clamped), in the order the
//! ids came, which says which ids to forget next without a pass over the set. About 54 bytes
//! an id measured at 10 million (16 in the set's slots, which are 44-88% full, 16 in its
//! second's queue, and the queues' spare room), where the earlier version took 44. An earlier
//! version kept one table of id → second (20 bytes a slot) and forgot by a pass over the whole
//! table: about 3 ms a million ids, inside one event, each time the horizon swept or the bound
//! shed (BENCHMARKS.md, issue #5). Now each forgetting is one id, a few per event.
//!
//! Ids leave in two ways, oldest second first, in arrival order within a second:
//! - **horizon**: ids older than the deduplication horizon behind the watermark are forgotten,
//!   up to [`SWEEP_STEP`] each time the watermark moves (more than the one id an event adds,
//!   so any backlog drains); the lateness window (shorter than the horizon) refuses their
//!   repeats. An id kept a little longer only turns a would-be refusal into a duplicate.
//! - **bound**: past `max-remembered-ids`, each new id makes the oldest one go, and the floor
//!   rises past that id's second: an event stamped before the floor is then refused as too
//!   late, because its id may have been one of those forgotten. The lateness window shrinks
//!   under id pressure; an event is never applied twice.
//!
//! Everything here follows from the input alone (no clock, no hash order), so a replay and a
//! restore from a checkpoint keep the same ids and refuse the same events: a checkpoint
//! stores the queues in their order, so a restored set forgets what the live one would.

use std::collections::BTreeMap;
use uuid::Uuid;

/// Ids forgotten behind the horizon at most, each time the watermark moves.
pub const SWEEP_STEP: usize = 8;

/// The remembered ids.
#[derive(Debug, Default)]
pub struct Seen {
    ids: crate::GrowMap<Uuid, ()>,
    /// The ids of each second, in arrival order; those before `next` are forgotten.
    by_sec: BTreeMap<u32, Queue>,
    /// Ids stamped before this second may have been forgotten under the bound.
    floor: u32,
    /// Most ids kept (0: no bound).
    cap: usize,
}

/// One second's ids.
#[derive(Debug, Default)]
struct Queue {
    ids: Vec<Uuid>,
    next: usize,
}

/// The second an event time (µs) is remembered under.
fn second(ts_us: i64) -> u32 {
    u32::try_from(ts_us.div_euclid(1_000_000).max(0)).unwrap_or(u32::MAX)
}

impl Seen {
    /// An empty set keeping at most `cap` ids (0: no bound).
    pub fn new(cap: usize) -> Seen {
        Seen {
            cap,
            ..Seen::default()
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &Uuid) -> bool {
        self.ids.contains_key(id)
    }

    /// Most ids kept (0: no bound).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether an event at `ts_us` is older than what the bound let the set keep: its id may
    /// have been forgotten, so it cannot be told from a repeat.
    pub fn below_floor(&self, ts_us: i64) -> bool {
        second(ts_us) < self.floor
    }

    /// The first event time (µs) the set still answers for; 0 when the bound never forgot.
    pub fn floor_us(&self) -> i64 {
        i64::from(self.floor) * 1_000_000
    }

    /// Remembers `id` at `ts_us` (an id already remembered keeps its first second); answers
    /// how many ids the bound made it forget.
    pub fn insert(&mut self, id: Uuid, ts_us: i64) -> u64 {
        if self.ids.insert(id, ()).is_some() {
            return 0;
        }
        self.by_sec.entry(second(ts_us)).or_default().ids.push(id);
        self.trim()
    }

    /// Changes the bound (0: none); a lower one forgets the oldest ids at once, as
    /// [`Seen::decode`] does. Returns how many were forgotten.
    pub fn set_cap(&mut self, cap: usize) -> u64 {
        self.cap = cap;
        self.trim()
    }

    /// Past the bound: forgets the oldest ids until it holds, raising the floor past each one's
    /// second. Answers how many went.
    fn trim(&mut self) -> u64 {
        let mut forgotten = 0;
        while self.cap > 0 && self.ids.len() > self.cap {
            let Some(s) = self.forget_oldest(u32::MAX) else {
                break;
            };
            self.floor = self.floor.max(s.saturating_add(1));
            forgotten += 1;
        }
        forgotten
    }

    /// Forgets up to [`SWEEP_STEP`] ids stamped at or before `until_us` (the horizon behind
    /// the watermark), oldest first.
    pub fn expire(&mut self, until_us: i64) {
        let until = second(until_us);
        for _ in 0..SWEEP_STEP {
            if self.forget_oldest(until).is_none() {
                return;
            }
        }
    }

    /// Forgets the oldest id if its second is at or before `through`; answers that second.
    fn forget_oldest(&mut self, through: u32) -> Option<u32> {
        let mut first = self.by_sec.first_entry()?;
        let s = *first.key();
        if s > through {
            return None;
        }
        let q = first.get_mut();
        let id = q.ids[q.next];
        q.next += 1;
        if q.next == q.ids.len() {
            first.remove();
        }
        self.ids.remove(&id);
        Some(s)
    }

    /// The ids as a checkpoint stores them: 24 bytes each, the second's start in µs (LE) and
    /// the id, oldest second first and in arrival order within a second, the order in which
    /// they will be forgotten.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ids.len() * 24);
        for (s, q) in &self.by_sec {
            for id in &q.ids[q.next..] {
                out.extend_from_slice(&(i64::from(*s) * 1_000_000).to_le_bytes());
                out.extend_from_slice(id.as_bytes());
            }
        }
        out
    }

    /// Rebuilds the set from [`Seen::encode`]'s bytes and the floor a checkpoint kept.
    /// (Checkpoints written before ids were queued hold them in (time, id) order, which this
    /// reads the same way.)
    pub fn decode(bytes: &[u8], floor_us: i64, cap: usize) -> Result<Seen, String> {
        if !bytes.len().is_multiple_of(24) {
            return Err(format!("{} bytes of event ids", bytes.len()));
        }
        let mut s = Seen::new(0);
        for c in bytes.chunks_exact(24) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let mut id = [0u8; 16];
            id.copy_from_slice(&c[8..]);
            s.insert(Uuid::from_bytes(id), i64::from_le_bytes(t));
        }
        s.floor = second(floor_us);
        s.cap = cap;
        // a bound lowered since the checkpoint applies at once
        s.trim();
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Uuid {
        Uuid::from_u64_pair(7, n)
    }

    #[test]
    fn the_bound_forgets_the_oldest_seconds_and_raises_the_floor() {
        let mut s = Seen::new(80);
        let mut forgotten = 0;
        // ten ids a second for ten seconds: the 81st id sheds
        for n in 0..100u64 {
            forgotten += s.insert(id(n), (n / 10) as i64 * 1_000_000 + 5);
        }
        assert_eq!(s.len(), 80, "one forgotten for each id past the bound");
        assert_eq!(forgotten, 20);
        assert_eq!(
            s.floor_us(),
            2_000_000,
            "past the seconds of the forgotten ids"
        );
        assert_eq!(forgotten as usize + s.len(), 100);
        // whole seconds go, oldest first: every kept id is newer than every forgotten one
        assert!(!s.contains(&id(0)) && s.contains(&id(99)));
        let floor = s.floor_us();
        assert!(floor > 0 && floor % 1_000_000 == 0);
        assert!(s.below_floor(floor - 1) && !s.below_floor(floor));
        for n in 0..100u64 {
            let ts = (n / 10) as i64 * 1_000_000 + 5;
            assert!(
                s.contains(&id(n)) || s.below_floor(ts),
                "id {n}: neither remembered nor refused"
            );
        }
    }

    #[test]
    fn the_horizon_forgets_a_few_ids_each_time_oldest_first() {
        let mut s = Seen::new(0);
        for n in 0..20u64 {
            s.insert(id(n), 1_000_005);
        }
        s.insert(id(100), 10_000_000);
        s.expire(999_999);
        assert_eq!(s.len(), 21, "nothing at or before the horizon");
        s.expire(1_000_000);
        assert_eq!(s.len(), 21 - SWEEP_STEP, "a step at a time");
        assert!(
            !s.contains(&id(0)) && s.contains(&id(SWEEP_STEP as u64)),
            "in arrival order"
        );
        s.expire(1_000_000);
        s.expire(1_000_000);
        assert_eq!(s.len(), 1, "stops at the horizon");
        assert!(s.contains(&id(100)));
        s.expire(10_000_000);
        assert!(s.is_empty() && s.by_sec.is_empty());
        assert_eq!(s.floor_us(), 0, "the horizon is not the bound's floor");
    }

    #[test]
    fn a_checkpoint_round_trip_keeps_ids_floor_and_bytes() {
        let mut s = Seen::new(50);
        for n in 0..60u64 {
            // three ids a second, in falling id order
            s.insert(id(1000 - n), (n / 3) as i64 * 1_000_000);
        }
        // the bound forgot seconds 0-2 and one id of second 3: the restore must forget what
        // the live set forgets next
        assert_eq!((s.len(), s.floor_us()), (50, 4_000_000));
        let bytes = s.encode();
        let mut r = Seen::decode(&bytes, s.floor_us(), 50).unwrap();
        assert_eq!(r.len(), s.len());
        assert_eq!(r.floor_us(), s.floor_us());
        assert_eq!(r.encode(), bytes, "the same set encodes to the same bytes");
        for n in 0..30u64 {
            let ts = 40_000_000 + n as i64;
            assert_eq!(r.insert(id(n), ts), s.insert(id(n), ts));
            r.expire(7_000_000);
            s.expire(7_000_000);
            assert_eq!(r.encode(), s.encode(), "after {n} more ids");
            assert_eq!(r.floor_us(), s.floor_us());
        }
        assert!(Seen::decode(&bytes[..23], 0, 0).is_err());
        // a lower bound applies on restore
        let small = Seen::decode(&bytes, s.floor_us(), 10).unwrap();
        assert!(small.len() <= 10 && small.floor_us() > s.floor_us());
    }

    #[test]
    fn times_before_1970_and_after_2106_clamp() {
        assert_eq!(second(-5), 0);
        assert_eq!(second(i64::MAX), u32::MAX);
        let mut s = Seen::new(0);
        s.insert(id(1), i64::MAX);
        s.insert(id(2), -5);
        s.expire(i64::MAX);
        assert!(s.is_empty() && s.by_sec.is_empty());
    }
}

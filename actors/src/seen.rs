//! The event ids the engine remembers so that a repeat is dropped, with a bound on how many.
//!
//! Each id is kept with the second of its event time (`u32`, seconds since the Unix epoch,
//! clamped): 20 bytes a slot in one hash table, where an id in a set plus a time-ordered queue
//! took 65-90 bytes an accepted event. A histogram of ids per second says, without a scan, which
//! seconds to drop.
//!
//! Ids leave in two ways, both by whole seconds of event time, oldest first:
//! - **horizon**: ids older than the deduplication horizon behind the watermark are forgotten;
//!   the lateness window (shorter than the horizon) refuses their repeats. The sweep runs when
//!   the oldest second is an hour overdue, so it costs one pass over the table per hour of
//!   event time; an id kept that hour longer only turns a would-be refusal into a duplicate.
//! - **bound**: past `max-remembered-ids`, the oldest seconds are forgotten until an eighth of
//!   the bound is free, and the floor rises past them: an event stamped before the floor is
//!   then refused as too late, because its id may have been one of those forgotten. The
//!   lateness window shrinks under id pressure; an event is never applied twice.
//!
//! Everything here follows from the input alone (no clock, no hash order), so a replay and a
//! restore from a checkpoint keep the same ids and refuse the same events.

use std::collections::BTreeMap;
use uuid::Uuid;

type HashMap<K, V> = crate::GrowMap<K, V>;

/// How overdue (seconds) the oldest remembered second may be before a horizon sweep runs.
const SWEEP_SLACK_S: u32 = 3_600;

/// The remembered ids.
#[derive(Debug, Default)]
pub struct Seen {
    ids: HashMap<Uuid, u32>,
    per_sec: BTreeMap<u32, u32>,
    /// Ids stamped before this second may have been forgotten under the bound.
    floor: u32,
    /// Most ids kept (0: no bound).
    cap: usize,
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

    /// Remembers `id` at `ts_us`; answers how many ids the bound made it forget.
    pub fn insert(&mut self, id: Uuid, ts_us: i64) -> u64 {
        let s = second(ts_us);
        if let Some(old) = self.ids.insert(id, s) {
            // the caller checks `contains` first; keep the histogram true regardless
            self.uncount(old, 1);
        }
        *self.per_sec.entry(s).or_insert(0) += 1;
        if self.cap > 0 && self.ids.len() > self.cap {
            self.shed()
        } else {
            0
        }
    }

    /// Forgets ids stamped at or before `until_us` (the horizon behind the watermark), once the
    /// oldest of them is [`SWEEP_SLACK_S`] overdue.
    pub fn expire(&mut self, until_us: i64) {
        let until = second(until_us);
        match self.per_sec.first_key_value() {
            Some((&oldest, _)) if oldest.saturating_add(SWEEP_SLACK_S) <= until => {
                self.drop_through(until);
            }
            _ => {}
        }
    }

    /// Past the bound: forgets the oldest seconds until an eighth of the bound is free, and
    /// raises the floor past them. Answers the ids forgotten.
    fn shed(&mut self) -> u64 {
        let target = self.ids.len() - (self.cap - self.cap / 8);
        let mut cut = 0;
        let mut n = 0usize;
        for (&s, &c) in &self.per_sec {
            cut = s;
            n += c as usize;
            if n >= target {
                break;
            }
        }
        let before = self.ids.len();
        self.drop_through(cut);
        self.floor = self.floor.max(cut.saturating_add(1));
        (before - self.ids.len()) as u64
    }

    /// Forgets every id stamped at or before second `cut`.
    fn drop_through(&mut self, cut: u32) {
        self.ids.retain(|_, s| *s > cut);
        self.per_sec = self.per_sec.split_off(&cut.saturating_add(1));
        if cut == u32::MAX {
            self.per_sec.clear();
        }
    }

    fn uncount(&mut self, s: u32, n: u32) {
        if let Some(c) = self.per_sec.get_mut(&s) {
            *c -= n.min(*c);
            if *c == 0 {
                self.per_sec.remove(&s);
            }
        }
    }

    /// The ids as a checkpoint stores them: 24 bytes each, the second's start in µs (LE) and
    /// the id, in (time, id) order so that the same set always encodes to the same bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut all: Vec<(u32, &Uuid)> = self.ids.iter().map(|(id, s)| (*s, id)).collect();
        all.sort_unstable();
        let mut out = Vec::with_capacity(all.len() * 24);
        for (s, id) in all {
            out.extend_from_slice(&(i64::from(s) * 1_000_000).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    /// Rebuilds the set from [`Seen::encode`]'s bytes and the floor a checkpoint kept.
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
        if cap > 0 && s.ids.len() > cap {
            s.shed();
        }
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
        assert!(s.len() <= 80, "{}", s.len());
        assert!(forgotten > 0);
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
    fn the_horizon_sweeps_once_the_oldest_second_is_an_hour_overdue() {
        let mut s = Seen::new(0);
        s.insert(id(1), 0);
        s.insert(id(2), 10_000_000);
        s.expire(3_000_000_000);
        assert_eq!(s.len(), 2, "under an hour overdue: no sweep yet");
        s.expire(3_600_000_000);
        assert_eq!(s.len(), 0, "both at or before the horizon");
        assert_eq!(s.floor_us(), 0, "the horizon is not the bound's floor");
        assert!(s.per_sec.is_empty());
    }

    #[test]
    fn a_checkpoint_round_trip_keeps_ids_floor_and_bytes() {
        let mut s = Seen::new(50);
        for n in 0..60u64 {
            s.insert(id(n), n as i64 * 1_000_000);
        }
        let bytes = s.encode();
        let r = Seen::decode(&bytes, s.floor_us(), 50).unwrap();
        assert_eq!(r.len(), s.len());
        assert_eq!(r.floor_us(), s.floor_us());
        assert_eq!(r.encode(), bytes, "the same set encodes to the same bytes");
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
        s.drop_through(u32::MAX);
        assert!(s.is_empty() && s.per_sec.is_empty());
    }
}

//! omnistream's business logic as pure, deterministic state machines, one per entity kind:
//! `(state, command, event time) -> (new state, effects)`. No I/O, no clock, no randomness:
//! the runtime hosts them and the [`engine`] runs them in one deterministic order.
//!
//! Every handler has the shape `fn handle(&mut self, me: &Str, cmd, &Ctx, &mut Effects)`:
//! it mutates its own state only, and asks for everything else through [`Effects`]: commands
//! to other entities, outputs, and timers on event time.

pub mod campaign;
mod chunkheap;
pub mod cmd;
pub mod cold;
pub mod config;
pub mod dealer;
pub mod engine;
pub mod fraud;
pub mod identity;
pub mod inorder;
pub mod key;
pub mod keymap;
pub mod member;
pub mod order;
pub mod output;
pub mod packed;
pub mod refdata;
pub mod router;
pub mod seen;
pub mod sharded;
pub mod shown;
pub mod sku;
pub mod store;
pub mod timers;
pub mod vecmap;

/// The hash map of the engine's large tables (entities, remembered event ids, timers).
///
/// It grows incrementally: when full, it allocates the larger table and moves a few entries
/// on each later insert, where a standard map moves every entry inside the one insert that
/// crossed the threshold. In the engine that was one event taking 20-40 ms at each growth
/// of a table of a few hundred thousand entries (BENCHMARKS.md, issue #5); reads look in both
/// tables while a move is under way. Iteration order is not relied on anywhere.
pub(crate) type GrowMap<K, V> = griddle::HashMap<K, V, foldhash::fast::RandomState>;

pub use cmd::*;
/// The string type of entity keys and ids (inline up to 24 bytes).
pub use compact_str::CompactString as Str;
pub use config::Rules;
pub use engine::Engine;
pub use key::Key;
pub use output::Output;

use omnistream_schemas::EventTime;

/// Microseconds per day, for windows in days.
pub const DAY_US: i64 = 86_400 * 1_000_000;

/// What a handler may read besides its own state: the event time, the source event, the
/// rules, and the replicated reference data.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Event time of the input event this command descends from.
    pub at: EventTime,
    /// The input event's id.
    pub event: uuid::Uuid,
    /// The rules.
    pub rules: &'a Rules,
    /// Code batches and dealer regions, as of this event.
    pub refs: &'a refdata::RefData,
}

impl Ctx<'_> {
    /// Event time in microseconds since the epoch.
    pub fn ts(&self) -> i64 {
        self.at.unix_us
    }

    /// The sender's local day number.
    pub fn day(&self) -> i64 {
        self.at.local_day()
    }
}

/// The time of a timer request that drops the key's pending timer instead ([`Effects::disarm`]).
pub const DISARM: i64 = i64::MIN;

/// What a handler asks the runtime to do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Commands to other entities (or to itself), delivered in this order.
    pub sends: Vec<(Key, Cmd)>,
    /// Outputs, in this order.
    pub outputs: Vec<Output>,
    /// Timers: deliver `Cmd::Tick` to the key when the watermark reaches the time (µs).
    pub timers: Vec<(Key, i64)>,
    /// Sends that descend from another event than the one running: `(index in sends,
    /// event id, event time)` (a merging member's stash, handed on after the merge).
    pub origins: Vec<(usize, uuid::Uuid, EventTime)>,
    /// Outputs that descend from another event than the one running, likewise.
    pub out_origins: Vec<(usize, uuid::Uuid, EventTime)>,
}

/// The event a command descends from, when it is not the one its sender ran under.
pub type Origin = Option<(uuid::Uuid, EventTime)>;

impl Effects {
    /// Sends a command.
    pub fn send(&mut self, to: Key, cmd: Cmd) {
        self.sends.push((to, cmd));
    }

    /// Sends a command on behalf of another event than the running one: the receiver runs
    /// it under that event's id and time (so its duplicate guard and its clock are the
    /// original event's).
    pub fn send_from(&mut self, to: Key, cmd: Cmd, event: uuid::Uuid, at: EventTime) {
        self.origins.push((self.sends.len(), event, at));
        self.sends.push((to, cmd));
    }

    /// Takes the sends, each with its origin when it has one.
    pub fn take_sends(&mut self, mut f: impl FnMut(Key, Cmd, Origin)) {
        let mut origins = self.origins.drain(..).peekable();
        for (i, (key, cmd)) in self.sends.drain(..).enumerate() {
            let origin = origins.next_if(|o| o.0 == i).map(|(_, e, at)| (e, at));
            f(key, cmd, origin);
        }
    }

    /// Takes the outputs, each with its origin when it has one.
    pub fn take_outputs(&mut self, mut f: impl FnMut(Output, Origin)) {
        let mut origins = self.out_origins.drain(..).peekable();
        for (i, o) in self.outputs.drain(..).enumerate() {
            let origin = origins.next_if(|x| x.0 == i).map(|(_, e, at)| (e, at));
            f(o, origin);
        }
    }

    /// How many sends and outputs there are so far (see [`Effects::mark_origin`]).
    pub fn mark(&self) -> (usize, usize) {
        (self.sends.len(), self.outputs.len())
    }

    /// Gives the sends and outputs made since `mark` that have no origin yet the origin
    /// `(event, at)`: a command run on behalf of another event (a merging member's stash)
    /// sends and emits on that event's behalf.
    pub fn mark_origin(&mut self, mark: (usize, usize), event: uuid::Uuid, at: EventTime) {
        fn fill(
            origins: &mut Vec<(usize, uuid::Uuid, EventTime)>,
            range: std::ops::Range<usize>,
            event: uuid::Uuid,
            at: EventTime,
        ) {
            for i in range {
                if !origins.iter().any(|o| o.0 == i) {
                    origins.push((i, event, at));
                }
            }
            origins.sort_by_key(|o| o.0);
        }
        fill(&mut self.origins, mark.0..self.sends.len(), event, at);
        fill(&mut self.out_origins, mark.1..self.outputs.len(), event, at);
    }

    /// Emits an output.
    pub fn out(&mut self, o: Output) {
        self.outputs.push(o);
    }

    /// Asks for a `Tick` at event time `at_us`.
    pub fn timer(&mut self, key: Key, at_us: i64) {
        self.timers.push((key, at_us));
    }

    /// Drops `key`'s pending timer, if any (a request for a tick at [`DISARM`]).
    pub fn disarm(&mut self, key: Key) {
        self.timers.push((key, DISARM));
    }

    /// Empties all three lists, keeping their capacity.
    pub fn clear(&mut self) {
        self.sends.clear();
        self.outputs.clear();
        self.timers.clear();
        self.origins.clear();
        self.out_origins.clear();
    }
}

/// Drops the entries of `map` whose time in the index `by_at` is older than the order window
/// (`points.order-days` before the event time), oldest first: records kept for returns leave
/// it without a scan of the whole map.
pub fn prune_order_window<V>(
    map: &mut keymap::KeyMap<V>,
    by_at: &mut std::collections::BTreeSet<(i64, compact_str::CompactString)>,
    ctx: &Ctx,
) {
    let cutoff = ctx
        .ts()
        .saturating_sub(ctx.rules.points.order_days.saturating_mul(DAY_US));
    while by_at.first().is_some_and(|(at, _)| *at < cutoff) {
        if let Some((_, key)) = by_at.pop_first() {
            map.remove(&key);
        }
    }
}

/// A bounded list of recently seen ids, so a command delivered twice is applied once. Each id
/// is kept as a 64-bit fingerprint (the two halves of the UUID folded together): half the
/// memory of the full id, and for two different events of one entity to be taken for the
/// same, their fingerprints would have to collide among the few kept, about one chance in
/// 10^18 per event. The list is a boxed slice, oldest first, with no spare room (a deque
/// held up to twice the ids it kept, and 16 bytes more in every entity).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recent(pub Box<[u64]>);

impl Recent {
    /// The fingerprint an id is kept as.
    pub fn fingerprint(id: u128) -> u64 {
        (id >> 64) as u64 ^ id as u64
    }

    /// Whether `id` is recorded.
    pub fn contains(&self, id: u128) -> bool {
        self.0.contains(&Self::fingerprint(id))
    }

    /// Records `id`; returns false when it was already recorded.
    pub fn insert(&mut self, id: u128, cap: usize) -> bool {
        self.insert_fingerprint(Self::fingerprint(id), cap)
    }

    /// Records an id by its fingerprint (merging two lists); false when already recorded.
    pub fn insert_fingerprint(&mut self, id: u64, cap: usize) -> bool {
        if self.0.contains(&id) {
            return false;
        }
        if !self.0.is_empty() && self.0.len() >= cap {
            // full: the oldest goes, the rest move up one
            self.0.rotate_left(1);
            if let Some(last) = self.0.last_mut() {
                *last = id;
            }
        } else {
            packed::edit_boxed(&mut self.0, |v| v.push(id));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    proptest! {
        /// The boxed list keeps what a deque popped at the front and pushed at the back kept,
        /// in the same order, caps below and above its length included.
        #[test]
        fn recent_keeps_what_a_deque_kept(ops in proptest::collection::vec((0u64..24, 0usize..6), 0..80)) {
            let mut r = Recent::default();
            let mut q: VecDeque<u64> = VecDeque::new();
            for (id, cap) in ops {
                let want = if q.contains(&id) {
                    false
                } else {
                    if q.len() >= cap {
                        q.pop_front();
                    }
                    q.push_back(id);
                    true
                };
                prop_assert_eq!(r.insert_fingerprint(id, cap), want);
                prop_assert_eq!(r.0.to_vec(), q.iter().copied().collect::<Vec<_>>());
            }
            prop_assert_eq!(serde_json::to_string(&r).unwrap(), serde_json::to_string(&q).unwrap());
        }
    }
}

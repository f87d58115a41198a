//! Several engines, each owning the keys that hash to it, run an *epoch* of events together
//! on their own threads and exchange the commands their entities send each other.
//!
//! # The order, and why it does not depend on the number of shards
//!
//! An epoch runs in *rounds*. Round 0 holds, for each event of the epoch in turn, the
//! timers its watermark makes due (by time, then key) and the event's first commands (in the
//! router's order). Round `d + 1` holds the commands sent in round `d`. Every command carries
//! a *tag*: the event's place in the epoch, its root (a timer or the router's n-th command)
//! and its path (the index of each send from the root down). In a round each shard runs the
//! commands of its keys sorted by tag, then every shard waits for the others (a barrier) and
//! takes the commands sent to it. The epoch ends with a round in which no shard sent any.
//!
//! So each key sees its commands in the order `(round, event, root, path)`, which names
//! every command uniquely and does not mention shards; a command's content depends only on
//! its sender's state, which by induction is the same; hence **N shards reach exactly the
//! state and outputs of one** for the same epochs. Outputs are merged in the order the
//! commands ran, `(round, event, root, path, index)`, so each key's outputs (a member's
//! ledger entries, a SKU's stock changes) keep the order its state changed in.
//!
//! With one event per epoch that order is the single engine's breadth-first cascade, so
//! epochs of one event reproduce [`Engine::apply`] exactly (timers too, as long as a timer's
//! command sends nothing, which holds for every entity today: a member's tick only changes
//! itself). Longer epochs trade that for throughput: within an epoch, a command `d` hops from
//! its event runs after the commands fewer hops from theirs, and every event's reference
//! data is known from the epoch's start. The result is still a function of the input and the
//! epoch cuts alone, so a host that logs its cuts replays to the same state. Entities must
//! then bear other events' commands between the messages of one event's protocol (a member
//! merge's hand-over): `actors/tests/properties.rs` checks the invariants under such epochs.
//!
//! Deduplication, the lateness check and the watermark are the coordinator's (shard 0's
//! engine, before the epoch runs), so they judge each event exactly as one engine would.

use crate::cmd::Cmd;
use crate::engine::{Applied, Emitted, Engine, Snapshot, Stats};
use crate::member::Member;
use crate::router::route;
use crate::{Key, Origin, Rules};
use omnistream_schemas::{Event, EventTime};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, PoisonError};
use uuid::Uuid;

/// Most rounds an epoch may take; beyond it the rest of the cascade is dropped and counted as
/// a runaway (a guard against a logic loop, never reached by correct handlers: the deepest
/// cascade, an identity merge, takes a few dozen hops).
pub const MAX_ROUNDS: usize = 4096;

/// Where a cascade starts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Root {
    /// A timer due before the event: its time and key.
    Timer(i64, Key),
    /// The router's n-th command for the event.
    Event(u32),
}

/// A command's place in the epoch's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Tag {
    /// The event's index in the epoch.
    seq: u32,
    root: Root,
    /// The index of the send at each hop from the root.
    path: Vec<u32>,
}

impl Tag {
    fn child(&self, k: usize) -> Tag {
        let mut path = Vec::with_capacity(self.path.len() + 1);
        path.extend_from_slice(&self.path);
        path.push(u32::try_from(k).unwrap_or(u32::MAX));
        Tag {
            seq: self.seq,
            root: self.root.clone(),
            path,
        }
    }
}

type Msg = (Tag, Key, Cmd, Origin);

/// An admitted event of the epoch, as every shard needs it.
struct Admitted<'a> {
    ev: &'a Event,
    /// The watermark after it.
    watermark: i64,
}

/// What the shards share while an epoch runs.
struct Exchange {
    shards: usize,
    /// Each admitted event's place in the epoch, by id: an output made on behalf of another
    /// event than its command's (see [`crate::Effects::mark_origin`]) counts as that event's.
    seq_of: std::collections::HashMap<Uuid, u32>,
    barrier: Barrier,
    /// `boxes[round % 2][from * shards + to]`: two sets, so a shard that runs ahead into the
    /// next round never writes where a slower one is still reading.
    boxes: [Vec<Mutex<Vec<Msg>>>; 2],
    /// Commands sent in each round, by all shards.
    sent: Vec<AtomicUsize>,
}

impl Exchange {
    fn new(shards: usize, admitted: &[Admitted<'_>]) -> Exchange {
        let boxes = || {
            (0..shards * shards)
                .map(|_| Mutex::new(Vec::new()))
                .collect()
        };
        Exchange {
            shards,
            seq_of: admitted
                .iter()
                .enumerate()
                .map(|(i, a)| (a.ev.id, u32::try_from(i).unwrap_or(u32::MAX)))
                .collect(),
            barrier: Barrier::new(shards),
            boxes: [boxes(), boxes()],
            sent: (0..MAX_ROUNDS).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn post(&self, round: usize, from: usize, to: usize, msgs: &mut Vec<Msg>) {
        if msgs.is_empty() {
            return;
        }
        self.boxes[round % 2][from * self.shards + to]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(msgs);
    }

    fn take(&self, round: usize, from: usize, to: usize, into: &mut Vec<Msg>) {
        into.append(
            &mut self.boxes[round % 2][from * self.shards + to]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

/// An output with its place in the order commands ran (round, event, root, path, index), and
/// the event it belongs to (its command's, or the one it was made on behalf of).
type Placed = ((u32, u32, Root, Vec<u32>, u32), u32, Emitted);

/// One shard's part of an epoch: its outputs with their places, the commands it ran for
/// each admitted event, and whether the cascade was cut at [`MAX_ROUNDS`].
struct Part {
    placed: Vec<Placed>,
    ran: Vec<usize>,
    runaway: bool,
}

/// Engines that divide the keys among them and run epochs of events together.
#[derive(Debug)]
pub struct Sharded {
    /// `engines[i]` owns the keys `k` with `k.owner(n) == i`; engine 0 also admits events.
    engines: Vec<Engine>,
    /// Cascades cut at [`MAX_ROUNDS`].
    runaway: u64,
}

impl Sharded {
    /// `shards` engines (at least one) with these rules and no state.
    pub fn new(rules: Rules, shards: usize) -> Sharded {
        Sharded {
            engines: (0..shards.max(1))
                .map(|_| Engine::new(rules.clone()))
                .collect(),
            runaway: 0,
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.engines.len()
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.engines[0].rules
    }

    /// The engine that owns `key`.
    pub fn engine_of(&self, key: &Key) -> &Engine {
        &self.engines[key.owner(self.engines.len())]
    }

    /// The watermark (µs).
    pub fn watermark(&self) -> i64 {
        self.engines[0].watermark()
    }

    /// Runs one epoch: the events in order, each admitted or refused as one engine would,
    /// the admitted ones' cascades over all shards. Outputs are appended to `out` in the order
    /// their commands ran; each carries its event's id (nil for a timer's). Returns each
    /// event's outcome and how many of the outputs are its own (with the timers it made due,
    /// as [`Engine::apply`] counts them); `Done` counts the commands of its cascade. With one
    /// event per epoch, `out` is exactly what [`Engine::apply`] appends.
    pub fn apply_epoch(
        &mut self,
        events: &[Event],
        out: &mut Vec<Emitted>,
    ) -> Vec<(Applied, usize)> {
        let n = self.engines.len();
        let mut results: Vec<(Applied, usize)> = Vec::with_capacity(events.len());
        let mut admitted = Vec::with_capacity(events.len());
        // which event of the epoch each admitted one is
        let mut index = Vec::with_capacity(events.len());
        {
            let coordinator = &mut self.engines[0];
            for (i, ev) in events.iter().enumerate() {
                match coordinator.admit(ev) {
                    Err(refused) => results.push((refused, 0)),
                    Ok(()) => {
                        let watermark = coordinator.watermark_after(ev.ts.unix_us);
                        coordinator.set_watermark(watermark);
                        admitted.push(Admitted { ev, watermark });
                        index.push(i);
                        results.push((Applied::Done(0), 0));
                    }
                }
            }
        }
        if admitted.is_empty() {
            return results;
        }
        // the routers' first commands, for each shard
        let mut roots: Vec<Vec<Msg>> = (0..n).map(|_| Vec::new()).collect();
        for (seq, a) in admitted.iter().enumerate() {
            for (r, (key, cmd)) in route(a.ev).into_iter().enumerate() {
                let tag = Tag {
                    seq: u32::try_from(seq).unwrap_or(u32::MAX),
                    root: Root::Event(u32::try_from(r).unwrap_or(u32::MAX)),
                    path: Vec::new(),
                };
                roots[key.owner(n)].push((tag, key, cmd, None));
            }
        }
        let ex = Exchange::new(n, &admitted);
        let admitted = &admitted;
        let mut parts: Vec<Part> = Vec::with_capacity(n);
        let (first, rest) = self.engines.split_at_mut(1);
        if rest.is_empty() {
            parts.push(run_shard(
                0,
                &mut first[0],
                roots.pop().unwrap_or_default(),
                admitted,
                &ex,
            ));
        } else {
            std::thread::scope(|s| {
                let ex = &ex;
                let handles: Vec<_> = rest
                    .iter_mut()
                    .zip(roots.drain(1..))
                    .enumerate()
                    .map(|(i, (engine, roots))| {
                        s.spawn(move || run_shard(i + 1, engine, roots, admitted, ex))
                    })
                    .collect();
                let own = roots.pop().unwrap_or_default();
                parts.push(run_shard(0, &mut first[0], own, admitted, ex));
                for h in handles {
                    match h.join() {
                        Ok(part) => parts.push(part),
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
            });
        }
        let mut ran = vec![0usize; admitted.len()];
        let mut all: Vec<Placed> = Vec::new();
        for part in parts {
            self.runaway += u64::from(part.runaway);
            for (r, p) in ran.iter_mut().zip(part.ran) {
                *r += p;
            }
            all.extend(part.placed);
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (_, seq, emitted) in all {
            let i = index[seq as usize];
            results[i].1 += 1;
            out.push(emitted);
        }
        for (k, &i) in index.iter().enumerate() {
            results[i].0 = Applied::Done(ran[k]);
        }
        for e in &mut self.engines {
            e.set_watermark(admitted.last().map_or(i64::MIN, |a| a.watermark));
            e.trim_now();
        }
        results
    }

    /// Counters, summed over the shards (events, repeats and late ones are the
    /// coordinator's).
    pub fn stats(&self) -> Stats {
        let mut s = self.engines[0].stats.clone();
        for e in &self.engines[1..] {
            s.commands += e.stats.commands;
            s.timers += e.stats.timers;
        }
        s.runaway += self.runaway;
        s
    }

    /// All state, sorted by key: the union of the shards' (their keys are disjoint).
    pub fn try_snapshot(&self) -> Result<Snapshot, String> {
        let mut all = self.engines[0].try_snapshot()?;
        for e in &self.engines[1..] {
            let s = e.try_snapshot()?;
            all.identities.extend(s.identities);
            all.members.extend(s.members);
            all.orders.extend(s.orders);
            all.skus.extend(s.skus);
            all.dealers.extend(s.dealers);
            all.stores.extend(s.stores);
            all.campaigns.extend(s.campaigns);
            all.codes.extend(s.codes);
            all.devices.extend(s.devices);
            all.ips.extend(s.ips);
            all.nets.extend(s.nets);
            all.rings.extend(s.rings);
        }
        Ok(all)
    }

    /// The member an id refers to, following aliases (which may live on other shards).
    pub fn member(&self, id: &str) -> Option<Cow<'_, Member>> {
        let mut id: crate::Str = id.into();
        for _ in 0..16 {
            let key = Key::Member(id);
            let m = self.engine_of(&key).member_here(match &key {
                Key::Member(id) => id,
                _ => return None,
            })?;
            match &m.alias_of {
                Some(next) => id = (**next).clone(),
                None => return Some(m),
            }
        }
        None
    }
}

/// One shard's part of an epoch.
fn run_shard(
    me: usize,
    engine: &mut Engine,
    roots: Vec<Msg>,
    admitted: &[Admitted<'_>],
    ex: &Exchange,
) -> Part {
    let n = ex.shards;
    // every shard knows the epoch's reference data (code batches, dealer regions)
    for a in admitted {
        engine.observe_refs(a.ev);
    }
    let mut inbox: Vec<Msg> = Vec::with_capacity(roots.len());
    // round 0: before each event, the timers its watermark makes due, then its first commands
    let mut roots = roots.into_iter().peekable();
    for (seq, a) in admitted.iter().enumerate() {
        let seq = u32::try_from(seq).unwrap_or(u32::MAX);
        while let Some((at, key)) = engine.pop_due(a.watermark) {
            let tag = Tag {
                seq,
                root: Root::Timer(at, key.clone()),
                path: Vec::new(),
            };
            inbox.push((tag, key, Cmd::Tick, None));
        }
        while let Some(m) = roots.next_if(|m| m.0.seq == seq) {
            inbox.push(m);
        }
    }
    let mut ran = vec![0; admitted.len()];
    let mut placed = Vec::new();
    let mut sends = Vec::new();
    let mut emitted = Vec::new();
    let mut local = Vec::new();
    let mut remote: Vec<Vec<Msg>> = (0..n).map(|_| Vec::new()).collect();
    let mut round = 0;
    loop {
        inbox.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let depth = u32::try_from(round).unwrap_or(u32::MAX);
        let mut count = 0;
        for (tag, key, cmd, own) in inbox.drain(..) {
            let (id, at) = own.unwrap_or_else(|| match &tag.root {
                Root::Timer(t, _) => (Uuid::nil(), EventTime::from_unix_ms(t.div_euclid(1000))),
                Root::Event(_) => {
                    let ev = admitted[tag.seq as usize].ev;
                    (ev.id, ev.ts)
                }
            });
            engine.run_one(key, cmd, id, at, &mut sends, &mut emitted);
            if let Root::Event(_) = tag.root {
                ran[tag.seq as usize] += 1;
            }
            for (k, e) in emitted.drain(..).enumerate() {
                let place = (
                    depth,
                    tag.seq,
                    tag.root.clone(),
                    tag.path.clone(),
                    u32::try_from(k).unwrap_or(u32::MAX),
                );
                let owner = ex.seq_of.get(&e.event).copied().unwrap_or(tag.seq);
                placed.push((place, owner, e));
            }
            for (k, (key, cmd, origin)) in sends.drain(..).enumerate() {
                let to = key.owner(n);
                // what a command run on behalf of another event sends is on its behalf too
                let msg = (tag.child(k), key, cmd, origin.or(own));
                count += 1;
                if to == me {
                    local.push(msg);
                } else {
                    remote[to].push(msg);
                }
            }
        }
        if round + 1 >= MAX_ROUNDS {
            // a runaway: drop what was sent (every shard is at this round, none waits)
            return Part {
                placed,
                ran,
                runaway: count > 0,
            };
        }
        for (to, msgs) in remote.iter_mut().enumerate() {
            ex.post(round, me, to, msgs);
        }
        ex.sent[round].fetch_add(count, Ordering::AcqRel);
        ex.barrier.wait();
        if ex.sent[round].load(Ordering::Acquire) == 0 {
            return Part {
                placed,
                ran,
                runaway: false,
            };
        }
        inbox.append(&mut local);
        for from in 0..n {
            if from != me {
                ex.take(round, from, me, &mut inbox);
            }
        }
        round += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Str;

    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn a_key_is_owned_by_the_hash_of_its_display_form() {
        // the form Fluvio's partition choice hashes, so shards and partitions can agree
        let keys = [
            Key::Member(Str::from("m0123456789abcdef")),
            Key::Identity("phone".into(), "hAbC".into()),
            Key::Sku("SKU-1".into()),
            Key::Ring("".into()),
        ];
        for k in keys {
            assert_eq!(k.stable_hash(), fnv(k.to_string().as_bytes()), "{k}");
            assert_eq!(k.owner(1), 0);
            assert_eq!(k.owner(7), (fnv(k.to_string().as_bytes()) % 7) as usize);
        }
        // pinned: a change would move every key to another shard
        assert_eq!(Key::Sku("SKU-1".into()).owner(16), 0xa);
    }

    #[test]
    fn an_epoch_without_events_changes_nothing() {
        let mut s = Sharded::new(Rules::default(), 3);
        let mut out = Vec::new();
        assert!(s.apply_epoch(&[], &mut out).is_empty());
        assert!(out.is_empty());
        assert_eq!(s.stats(), Stats::default());
        assert_eq!(s.shards(), 3);
    }
}

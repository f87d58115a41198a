//! Several engines, each owning the keys that hash to it, run an *epoch* of events together
//! on their own threads and exchange the commands their entities send each other.
//!
//! # The order, and why it does not depend on the number of shards
//!
//! An epoch runs in *rounds*. Round 0 holds, for each event of the epoch in turn, the
//! timers its watermark makes due (by time, then key, with those their own ticks set within
//! it, as [`Engine::advance`] fires them) and the event's first commands (in the router's
//! order). Round `d + 1` holds the commands sent in round `d`. Every command carries
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
//! epochs of one event reproduce [`Engine::apply`] exactly, timers included: the engine runs
//! the ticks an event makes due at once and queues what they send after the event's first
//! commands, as this round 0 does (an unpaid order's tick sends to its SKUs and member; when
//! the engine ran each tick's whole cascade before the event, a property test found the
//! outputs in another order). Longer epochs trade that for throughput: within an epoch, a command `d` hops from
//! its event runs after the commands fewer hops from theirs, and every event's reference
//! data is known from the epoch's start. The result is still a function of the input and the
//! epoch cuts alone, so a host that logs its cuts replays to the same state. Entities must
//! then bear other events' commands between the messages of one event's protocol (a member
//! merge's hand-over): `actors/tests/properties.rs` checks the invariants under such epochs.
//!
//! Deduplication, the lateness check and the watermark are the coordinator's (shard 0's
//! engine, before the epoch runs), so they judge each event exactly as one engine would.
//!
//! # Several processes
//!
//! Nothing above needs the shards to share memory, only to agree on the epochs and to swap
//! a round's commands at its barrier. So a cluster of processes can run one `Sharded` each,
//! every one applying the same epochs (the same events in the same order, agreed outside this
//! crate), each *hosting* some of the shards ([`Sharded::host`]). Every process keeps the
//! coordinator's admission state (it sees every event) and routes every event, but runs only
//! the commands of its own shards; after each round a [`Link`] carries the commands for
//! other processes' shards and brings back theirs, with each process's count of commands
//! sent, so every process sees the same end of the epoch. The union of the processes' states
//! and outputs is then exactly what one process with all the shards reaches. This is the
//! deterministic-database design of Calvin (Thomson et al., SIGMOD 2012): agree on the input
//! order first, then every partition executes its share of it without further coordination
//! than the data it must receive.

use crate::campaign::Campaign;
use crate::cmd::Cmd;
use crate::cold::Cold;
use crate::dealer::Dealer;
use crate::engine::{Applied, Checkpoint, Emitted, Engine, Snapshot, Stats};
use crate::fraud::code::Code;
use crate::member::Member;
use crate::order::Order;
use crate::router::route;
use crate::sku::Sku;
use crate::store::Store;
use crate::{Key, Origin, Rules};
use omnistream_schemas::{Event, EventTime};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
    path: Path,
}

impl Tag {
    fn child(&self, k: usize) -> Tag {
        let mut path = self.path.clone();
        path.push(u32::try_from(k).unwrap_or(u32::MAX));
        Tag {
            seq: self.seq,
            root: self.root.clone(),
            path,
        }
    }
}

/// The send indices from a command's root: inline up to a cascade 12 hops deep (a scan's
/// fraud chain takes 8-9), so a command's tag costs no allocation.
type Path = smallvec::SmallVec<[u32; 12]>;

type Msg = (Tag, Key, Cmd, Origin);

/// A command on its way from a shard of one process to a shard of another (see
/// [`Link`]): the command with its key, its place in the epoch's order and the event it runs
/// on behalf of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    /// The shard that sent it.
    pub from: u32,
    /// The shard that owns its key.
    pub to: u32,
    seq: u32,
    /// The timer its cascade started from (time, key), or none: the router's `root`-th
    /// command.
    timer: Option<(i64, Key)>,
    root: u32,
    path: Vec<u32>,
    key: Key,
    cmd: Cmd,
    /// The event it runs on behalf of: id, time (µs) and UTC offset (minutes).
    origin: Option<(Uuid, i64, i16)>,
}

impl Remote {
    fn new(from: usize, to: usize, (tag, key, cmd, origin): Msg) -> Remote {
        let (timer, root) = match tag.root {
            Root::Timer(t, k) => (Some((t, k)), 0),
            Root::Event(r) => (None, r),
        };
        Remote {
            from: u32::try_from(from).unwrap_or(u32::MAX),
            to: u32::try_from(to).unwrap_or(u32::MAX),
            seq: tag.seq,
            timer,
            root,
            path: tag.path.to_vec(),
            key,
            cmd,
            origin: origin.map(|(id, at)| (id, at.unix_us, at.offset_min)),
        }
    }

    fn open(self) -> (usize, usize, Msg) {
        let tag = Tag {
            seq: self.seq,
            root: match self.timer {
                Some((t, k)) => Root::Timer(t, k),
                None => Root::Event(self.root),
            },
            path: Path::from_vec(self.path),
        };
        let origin = self.origin.map(|(id, unix_us, offset_min)| {
            (
                id,
                EventTime {
                    unix_us,
                    offset_min,
                },
            )
        });
        (
            self.from as usize,
            self.to as usize,
            (tag, self.key, self.cmd, origin),
        )
    }
}

/// Carries a round's commands between the processes of a cluster that run the same epochs
/// with different shards (see the module documentation).
///
/// After each round of an epoch, one thread of every process calls [`Link::exchange`] with
/// the commands its shards sent to shards of other processes and the number of commands its
/// shards sent in that round in all (to any shard). It returns once it has every other
/// process's part of the round: the commands they sent to this process's shards, and the sum
/// of their counts. The epoch ends after the first round whose grand total is zero, on every
/// process alike. The link knows which epoch it is in from its host (not from here): the
/// host tells it before each [`Sharded::apply_epoch`].
pub trait Link: Send + Sync {
    /// Trades round `round`'s commands. An error aborts the epoch with a panic, leaving the
    /// shards half-way through it: the host must drop them and restore from its last
    /// checkpoint.
    fn exchange(
        &self,
        round: usize,
        out: Vec<Remote>,
        sent: usize,
    ) -> Result<(Vec<Remote>, usize), String>;
}

/// The shards a process runs when it is one of several, and its link to the others.
struct Linked {
    hosted: Vec<bool>,
    link: Arc<dyn Link>,
}

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linked")
            .field("hosted", &self.hosted)
            .finish_non_exhaustive()
    }
}

/// A slot of the epoch, as every shard needs it: an admitted event, or (to move the
/// watermark alone, see [`Sharded::advance`]) none.
struct Admitted<'a> {
    ev: Option<&'a Event>,
    /// A command from outside the streams (the admin API), with its id and time.
    command: Option<(Key, Cmd, Uuid, EventTime)>,
    /// The watermark after it.
    watermark: i64,
    /// The UTC offset the timers it fires run in: the event's, or the time's given to
    /// [`Sharded::advance`].
    offset_min: i16,
    /// Whether it moved the watermark, and so fires the timers due: as in
    /// [`Engine::advance`], a timer at or before a watermark that does not move waits for
    /// the next move (and a command from outside the streams fires none).
    fires: bool,
}

/// A barrier for the shards' rounds that spins briefly before it yields: a round is often
/// a few microseconds of work, and a sleeping thread takes longer than that to wake.
struct Meet {
    shards: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    /// A shard panicked: the others must not wait for it forever.
    broken: std::sync::atomic::AtomicBool,
    /// Waits may be long (the lead trades with other processes over the network): after a
    /// while a waiting shard sleeps instead of yielding in a loop.
    patient: bool,
}

impl Meet {
    fn new(shards: usize, patient: bool) -> Meet {
        Meet {
            shards,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            broken: std::sync::atomic::AtomicBool::new(false),
            patient,
        }
    }

    /// Waits until every shard has called it (once per round).
    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.shards {
            self.arrived.store(0, Ordering::Release);
            self.generation.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.broken.load(Ordering::Acquire) {
                // unwinds this shard too; the epoch's caller re-raises the first panic
                panic!("another shard panicked during the epoch");
            }
            if spins < 2_000 {
                spins += 1;
                std::hint::spin_loop();
            } else if self.patient && spins >= 2_200 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            } else {
                spins += 1;
                std::thread::yield_now();
            }
        }
    }
}

/// Marks the barrier broken when the shard holding it unwinds from a panic, so the others
/// stop waiting for it.
struct BreakOnPanic<'a>(&'a Meet);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Release);
        }
    }
}

/// What the shards share while an epoch runs.
struct Exchange<'a> {
    shards: usize,
    /// The shards this process runs, and the first of them, which trades with the other
    /// processes through `link` (when there are others).
    hosted: &'a [bool],
    lead: usize,
    link: Option<&'a dyn Link>,
    /// Each admitted event's place in the epoch, by id: an output made on behalf of another
    /// event than its command's (see [`crate::Effects::mark_origin`]) counts as that event's.
    seq_of: std::collections::HashMap<Uuid, u32>,
    barrier: Meet,
    /// `boxes[round % 2][from * shards + to]`: two sets, so a shard that runs ahead into the
    /// next round never writes where a slower one is still reading.
    boxes: [Vec<Mutex<Vec<Msg>>>; 2],
    /// Commands sent in round `r`, by all shards, at `r % 3`: a shard that runs ahead adds to
    /// the next round's count while a slower one still reads this one's, and the one before
    /// is read by all (each reads before it reaches the next barrier), so shard 0 clears it
    /// for reuse after that barrier.
    sent: [AtomicUsize; 3],
}

impl<'a> Exchange<'a> {
    fn new(
        shards: usize,
        admitted: &[Admitted<'_>],
        hosted: &'a [bool],
        link: Option<&'a dyn Link>,
    ) -> Exchange<'a> {
        let boxes = || {
            (0..shards * shards)
                .map(|_| Mutex::new(Vec::new()))
                .collect()
        };
        Exchange {
            shards,
            hosted,
            lead: hosted.iter().position(|h| *h).unwrap_or(0),
            link,
            seq_of: admitted
                .iter()
                .enumerate()
                .filter_map(|(i, a)| Some((a.ev?.id, u32::try_from(i).unwrap_or(u32::MAX))))
                .collect(),
            barrier: Meet::new(hosted.iter().filter(|h| **h).count(), link.is_some()),
            boxes: [boxes(), boxes()],
            sent: [
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ],
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

    /// The lead's step after a round's barrier when other processes run the other shards:
    /// hands them what this process's shards sent theirs, and posts what they sent here in
    /// the boxes of their shards, adding their count to the round's.
    fn trade(&self, link: &dyn Link, round: usize) {
        let n = self.shards;
        let mut out = Vec::new();
        let mut msgs = Vec::new();
        for from in (0..n).filter(|s| self.hosted[*s]) {
            for to in (0..n).filter(|s| !self.hosted[*s]) {
                self.take(round, from, to, &mut msgs);
                out.extend(msgs.drain(..).map(|m| Remote::new(from, to, m)));
            }
        }
        let sent = self.sent[round % 3].load(Ordering::Acquire);
        let (incoming, others) = match link.exchange(round, out, sent) {
            Ok(r) => r,
            // unwinds this shard and breaks the barrier for the others (see `Link`)
            Err(e) => panic!("the link to the other processes failed in round {round}: {e}"),
        };
        for r in incoming {
            let (from, to, msg) = r.open();
            assert!(
                from < n && to < n && !self.hosted[from] && self.hosted[to],
                "a command from shard {from} to shard {to} reached a process that does not \
                 run shard {to} (do the processes agree on the shard count?)"
            );
            self.boxes[round % 2][from * n + to]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(msg);
        }
        self.sent[round % 3].fetch_add(others, Ordering::AcqRel);
    }
}

/// An output with its place in the order commands ran (round, event, root, path, index), and
/// the event it belongs to (its command's, or the one it was made on behalf of).
type Placed = ((u32, u32, Root, Path, u32), u32, Emitted);

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
    /// When this is one process of several: the shards it runs and its link to the others.
    linked: Option<Linked>,
}

impl Sharded {
    /// `shards` engines (at least one) with these rules and no state.
    pub fn new(rules: Rules, shards: usize) -> Sharded {
        Sharded {
            engines: (0..shards.max(1))
                .map(|_| Engine::new(rules.clone()))
                .collect(),
            linked: None,
        }
    }

    /// From now on runs only the shards in `hosted` here: other processes, applying the same
    /// epochs, run the others, and `link` carries the commands between them (see the module
    /// documentation). Every process still admits every event (the coordinator's state is
    /// kept by all). Commands from outside the streams ([`Sharded::command`]) must then reach
    /// every process in the same place of the epochs, so a host must sequence them with the
    /// events. Refused when `hosted` is empty or names a shard that does not exist.
    pub fn host(&mut self, hosted: &[usize], link: Arc<dyn Link>) -> Result<(), String> {
        let n = self.engines.len();
        if hosted.is_empty() {
            return Err("a process must run at least one shard".into());
        }
        let mut mine = vec![false; n];
        for &s in hosted {
            *mine
                .get_mut(s)
                .ok_or_else(|| format!("shard {s} does not exist: there are {n}"))? = true;
        }
        self.linked = Some(Linked { hosted: mine, link });
        Ok(())
    }

    /// Whether this process runs shard `s` (all do when it is alone).
    pub fn hosts(&self, s: usize) -> bool {
        self.linked.as_ref().is_none_or(|l| l.hosted[s])
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.engines.len()
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.engines[0].rules
    }

    /// Runs what comes next under `rules` on every shard ([`Engine::set_rules`]).
    pub fn set_rules(&mut self, rules: &Rules) {
        let watermark = self.watermark();
        for e in &mut self.engines {
            e.switch_rules(rules.clone(), watermark);
        }
    }

    /// The engine that owns `key`.
    pub fn engine_of(&self, key: &Key) -> &Engine {
        &self.engines[key.owner(self.engines.len())]
    }

    /// The coordinator's engine: it admits events, so it knows why one is late.
    pub fn coordinator(&self) -> &Engine {
        &self.engines[0]
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
        self.apply_epoch_owned(events, out, None)
    }

    /// [`Sharded::apply_epoch`], also telling, for each output appended to `out`, the index in
    /// `events` of the event it belongs to: its own event, or for a timer's output the event
    /// whose time made the timer due (the one whose answer [`Engine::apply`] would give it).
    pub fn apply_epoch_owned(
        &mut self,
        events: &[Event],
        out: &mut Vec<Emitted>,
        owners: Option<&mut Vec<usize>>,
    ) -> Vec<(Applied, usize)> {
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
                        let fires = watermark > coordinator.watermark();
                        coordinator.set_watermark(watermark);
                        admitted.push(Admitted {
                            ev: Some(ev),
                            command: None,
                            watermark,
                            offset_min: ev.ts.offset_min,
                            fires,
                        });
                        index.push(i);
                        results.push((Applied::Done(0), 0));
                    }
                }
            }
        }
        if admitted.is_empty() {
            return results;
        }
        let mut emitted = Vec::new();
        let mut slots = Vec::new();
        let (ran, counts) = self.run_slots(
            &admitted,
            &mut emitted,
            owners.is_some().then_some(&mut slots),
        );
        out.append(&mut emitted);
        if let Some(owners) = owners {
            owners.extend(slots.into_iter().map(|s| index[s as usize]));
        }
        for (k, &i) in index.iter().enumerate() {
            results[i] = (Applied::Done(ran[k]), counts[k]);
        }
        results
    }

    /// Moves the watermark to `to` (never back), firing every timer at or before it in
    /// `to`'s offset, as [`Engine::advance`] does.
    pub fn advance(&mut self, to: EventTime, out: &mut Vec<Emitted>) {
        if to.unix_us <= self.watermark() {
            return;
        }
        self.engines[0].set_watermark(to.unix_us);
        let slot = [Admitted {
            ev: None,
            command: None,
            watermark: to.unix_us,
            offset_min: to.offset_min,
            fires: true,
        }];
        self.run_slots(&slot, out, None);
    }

    /// Processes one event to the end of its cascade, as [`Engine::apply`] does (with one
    /// shard it is that call).
    pub fn apply(&mut self, ev: &Event, out: &mut Vec<Emitted>) -> Applied {
        if self.engines.len() == 1 {
            return self.engines[0].apply(ev, out);
        }
        self.apply_epoch(std::slice::from_ref(ev), out)
            .first()
            .map_or(Applied::Duplicate, |r| r.0)
    }

    /// Runs one command from outside the event streams to the end of its cascade, as
    /// [`Engine::command`] does (the watermark does not move).
    pub fn command(
        &mut self,
        key: Key,
        cmd: Cmd,
        id: Uuid,
        at: EventTime,
        out: &mut Vec<Emitted>,
    ) -> usize {
        if self.engines.len() == 1 {
            return self.engines[0].command(key, cmd, id, at, out);
        }
        let slot = [Admitted {
            ev: None,
            command: Some((key, cmd, id, at)),
            watermark: self.watermark(),
            offset_min: at.offset_min,
            fires: false,
        }];
        let (ran, _) = self.run_slots(&slot, out, None);
        ran.first().copied().unwrap_or(0)
    }

    /// Gives each engine its cold tier (one per shard, `colds.len()` must be the number of
    /// shards; extra ones are dropped) and a share of the bound on resident entities.
    pub fn set_cold(&mut self, colds: Vec<Box<dyn Cold>>, bound: usize, codes: u64) {
        let n = self.engines.len();
        let share = if bound == 0 { 0 } else { bound.div_ceil(n) };
        for (e, cold) in self.engines.iter_mut().zip(colds) {
            e.set_cold(cold, share, codes);
        }
    }

    /// Takes every engine's cold tier away (see [`Engine::take_cold`]).
    pub fn take_colds(&mut self) -> Vec<Box<dyn Cold>> {
        self.engines
            .iter_mut()
            .filter_map(Engine::take_cold)
            .collect()
    }

    /// Shards as a checkpoint left them (written by any number of shards, or by one
    /// engine): each engine loads its own keys from its cold tier as commands need them.
    pub fn restore(
        rules: Rules,
        shards: usize,
        cp: &Checkpoint,
        colds: Vec<Box<dyn Cold>>,
        bound: usize,
        codes: u64,
    ) -> Result<Sharded, String> {
        let n = shards.max(1);
        if colds.len() < n {
            return Err(format!("{} cold tiers for {n} shards", colds.len()));
        }
        let share = if bound == 0 { 0 } else { bound.div_ceil(n) };
        let mut engines = Vec::with_capacity(n);
        for (i, cold) in colds.into_iter().take(n).enumerate() {
            let mut e = Engine::restore(rules.clone(), cp, cold, share, codes)?;
            e.keep_own(i, n);
            engines.push(e);
        }
        Ok(Sharded {
            engines,
            linked: None,
        })
    }

    /// A checkpoint of every shard, in the form one engine writes (see
    /// [`Engine::checkpoint`]).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, String> {
        self.merged(Engine::checkpoint)
    }

    /// Every shard's checkpoint from `take`, merged into the form one engine writes.
    fn merged(
        &mut self,
        take: fn(&mut Engine) -> Result<Checkpoint, String>,
    ) -> Result<Checkpoint, String> {
        if self.engines.len() == 1 {
            return take(&mut self.engines[0]);
        }
        let parts = self
            .engines
            .iter_mut()
            .map(take)
            .collect::<Result<Vec<_>, _>>()?;
        Engine::merge_checkpoints(parts)
    }

    /// Begins a checkpoint of every shard (see [`Engine::begin_checkpoint`]).
    pub fn begin_checkpoint(&mut self) -> Result<(), String> {
        self.engines
            .iter_mut()
            .try_for_each(Engine::begin_checkpoint)
    }

    /// Encodes up to `budget` more states of the begun checkpoint, shared among the shards;
    /// true once all are (see [`Engine::advance_checkpoint`]).
    pub fn advance_checkpoint(&mut self, budget: usize) -> Result<bool, String> {
        let each = budget.div_ceil(self.engines.len());
        let mut done = true;
        for e in &mut self.engines {
            done &= e.advance_checkpoint(each)?;
        }
        Ok(done)
    }

    /// The begun checkpoint of every shard, once all its states are encoded, in the form one
    /// engine writes.
    pub fn complete_checkpoint(&mut self) -> Result<Checkpoint, String> {
        // no shard hands over its part unless every one can
        if !self.advance_checkpoint(0)? {
            return Err("a checkpoint completed before its states were encoded".into());
        }
        self.merged(Engine::complete_checkpoint)
    }

    /// The first failure of any shard's cold tier since the last call (see
    /// [`Engine::take_cold_error`]).
    pub fn take_cold_error(&mut self) -> Option<String> {
        self.engines
            .iter_mut()
            .filter_map(Engine::take_cold_error)
            .next()
    }

    /// Resident entities, all shards.
    pub fn resident(&self) -> usize {
        self.engines.iter().map(Engine::resident).sum()
    }

    /// Evicted entities whose state awaits the next checkpoint, all shards.
    pub fn spilled(&self) -> usize {
        self.engines.iter().map(Engine::spilled).sum()
    }

    /// Entities passivated since start, all shards.
    pub fn evicted(&self) -> u64 {
        self.engines.iter().map(Engine::evicted).sum()
    }

    /// Every store, resident or not, all shards, sorted by id.
    pub fn stores(
        &self,
    ) -> Result<std::collections::BTreeMap<crate::Str, crate::store::Store>, String> {
        let n = self.engines.len();
        let mut all = std::collections::BTreeMap::new();
        for (i, e) in self.engines.iter().enumerate() {
            all.extend(e.stores_owned(i, n)?);
        }
        Ok(all)
    }

    /// Visits every member, resident or passivated, aliases included, once each, in no
    /// order, holding one stored state at a time.
    pub fn each_member(
        &self,
        f: &mut dyn FnMut(&str, &crate::member::Member),
    ) -> Result<(), String> {
        self.each_shard(|e, i, n| e.each_member_owned(i, n, f))
    }

    /// Runs `visit` on every shard's engine with its index and the shard count: a walk over
    /// the keys each owns, so a cold tier the shards share is read once for each key.
    fn each_shard(
        &self,
        mut visit: impl FnMut(&Engine, usize, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        let n = self.engines.len();
        for (i, e) in self.engines.iter().enumerate() {
            visit(e, i, n)?;
        }
        Ok(())
    }

    /// Visits every dealer, resident or not, one stored state at a time, in no order.
    pub fn each_dealer(
        &self,
        f: &mut dyn FnMut(&str, &crate::dealer::Dealer),
    ) -> Result<(), String> {
        self.each_shard(|e, i, n| e.each_dealer_owned(i, n, f))
    }

    /// Visits every SKU, resident or not, one stored state at a time, in no order.
    pub fn each_sku(&self, f: &mut dyn FnMut(&str, &crate::sku::Sku)) -> Result<(), String> {
        self.each_shard(|e, i, n| e.each_sku_owned(i, n, f))
    }

    /// Every campaign any scan named, resident or passivated, by id.
    pub fn campaigns(
        &self,
    ) -> Result<std::collections::BTreeMap<crate::Str, crate::campaign::Campaign>, String> {
        let n = self.engines.len();
        let mut all = std::collections::BTreeMap::new();
        for (i, e) in self.engines.iter().enumerate() {
            all.extend(e.campaigns_owned(i, n)?);
        }
        Ok(all)
    }

    /// Resident entities per kind, all shards.
    pub fn counts(&self) -> [(&'static str, usize); 12] {
        let mut all = self.engines[0].counts();
        for e in &self.engines[1..] {
            for (a, (_, n)) in all.iter_mut().zip(e.counts()) {
                a.1 += n;
            }
        }
        all
    }

    /// Runs the slots' cascades over all shards; returns the commands each slot's event ran
    /// and the outputs that are each slot's.
    fn run_slots(
        &mut self,
        admitted: &[Admitted<'_>],
        out: &mut Vec<Emitted>,
        mut owners: Option<&mut Vec<u32>>,
    ) -> (Vec<usize>, Vec<usize>) {
        let n = self.engines.len();
        let hosted: Vec<bool> = (0..n).map(|s| self.hosts(s)).collect();
        // the routers' first commands, for each shard (other processes route the events to
        // theirs themselves)
        let mut roots: Vec<Vec<Msg>> = (0..n).map(|_| Vec::new()).collect();
        for (seq, a) in admitted.iter().enumerate() {
            if let Some((key, cmd, ..)) = &a.command {
                let tag = Tag {
                    seq: u32::try_from(seq).unwrap_or(u32::MAX),
                    root: Root::Event(0),
                    path: Path::new(),
                };
                if hosted[key.owner(n)] {
                    roots[key.owner(n)].push((tag, key.clone(), cmd.clone(), None));
                }
            }
            let Some(ev) = a.ev else { continue };
            for (r, (key, cmd)) in route(ev).into_iter().enumerate() {
                let tag = Tag {
                    seq: u32::try_from(seq).unwrap_or(u32::MAX),
                    root: Root::Event(u32::try_from(r).unwrap_or(u32::MAX)),
                    path: Path::new(),
                };
                let owner = key.owner(n);
                if hosted[owner] {
                    roots[owner].push((tag, key, cmd, None));
                }
            }
        }
        if !hosted[0] {
            // the coordinator's engine keeps the reference data for checkpoints and
            // snapshots, as it does when it runs its shard (see `run_shard`)
            for ev in admitted.iter().filter_map(|a| a.ev) {
                self.engines[0].observe_refs(ev);
            }
        }
        let link = self.linked.as_ref().map(|l| &*l.link);
        let ex = Exchange::new(n, admitted, &hosted, link);
        let mut parts: Vec<Part> = Vec::with_capacity(n);
        // this process's shards: the first runs on this thread, the others on their own
        let mut mine = self
            .engines
            .iter_mut()
            .zip(roots)
            .enumerate()
            .filter(|(s, _)| hosted[*s]);
        let Some((lead, (first, own))) = mine.next() else {
            return (vec![0; admitted.len()], vec![0; admitted.len()]);
        };
        let rest: Vec<_> = mine.collect();
        if rest.is_empty() {
            parts.push(run_shard(lead, first, own, admitted, &ex));
        } else {
            std::thread::scope(|s| {
                let ex = &ex;
                let handles: Vec<_> = rest
                    .into_iter()
                    .map(|(i, (engine, roots))| {
                        s.spawn(move || run_shard(i, engine, roots, admitted, ex))
                    })
                    .collect();
                parts.push(run_shard(lead, first, own, admitted, ex));
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
        // one cut cascade counts once, however many shards were still sending
        if parts.iter().any(|p| p.runaway) {
            self.engines[0].count_runaway();
        }
        for part in parts {
            for (r, p) in ran.iter_mut().zip(part.ran) {
                *r += p;
            }
            all.extend(part.placed);
        }
        // each shard's outputs are already in its order: the stable sort merges the runs in
        // about linear time
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut counts = vec![0usize; admitted.len()];
        for (_, seq, emitted) in all {
            counts[seq as usize] += 1;
            out.push(emitted);
            if let Some(o) = owners.as_deref_mut() {
                o.push(seq);
            }
        }
        for e in &mut self.engines {
            e.set_watermark(admitted.last().map_or(i64::MIN, |a| a.watermark));
            e.trim_now();
        }
        (ran, counts)
    }

    /// Counters, summed over the shards (events, repeats and late ones are the
    /// coordinator's).
    pub fn stats(&self) -> Stats {
        let mut s = self.engines[0].stats.clone();
        for e in &self.engines[1..] {
            s.commands += e.stats.commands;
            s.timers += e.stats.timers;
            s.runaway += e.stats.runaway;
        }
        s
    }

    /// All state, sorted by key: the union of what each shard owns. (The cold tier is shared
    /// by all shards: each takes only its own keys' stored states, and decodes no other.)
    pub fn try_snapshot(&self) -> Result<Snapshot, String> {
        let n = self.engines.len();
        if n == 1 {
            return self.engines[0].try_snapshot();
        }
        let mut all = self.engines[0].try_snapshot_owned(0, n)?;
        for (i, e) in self.engines.iter().enumerate().skip(1) {
            all.absorb(e.try_snapshot_owned(i, n)?);
        }
        Ok(all)
    }

    /// The member an identity belongs to (value already hashed for personal kinds); a
    /// `member_id` names its member itself (no identity entity is kept for it), following
    /// merges as every lookup does.
    pub fn member_of(&self, kind: &str, value: &str) -> Option<Cow<'_, Member>> {
        if kind == "member_id" {
            return self.member(value);
        }
        let key = Key::Identity(kind.into(), value.into());
        let id = self.engine_of(&key).identity(kind, value)?.member.clone()?;
        self.member(&id)
    }

    /// The blocks a person set on a member, a device, an address or a prefix, with what they
    /// are on: a member id leads to its survivor (whose blocks they are; None when no member
    /// has the id); a device, address or prefix never seen has none.
    pub fn blocks(
        &self,
        on: crate::fraud::block::BlockOn,
        value: &str,
    ) -> Option<(crate::Str, Vec<crate::fraud::block::Block>)> {
        match self.blocks_found(on, value) {
            None if on != crate::fraud::block::BlockOn::Member => Some((value.into(), Vec::new())),
            found => found,
        }
    }

    /// [`Sharded::blocks`] of a state found: None also for a device, address or prefix never
    /// seen (or whose stored state could not be read).
    pub fn blocks_found(
        &self,
        on: crate::fraud::block::BlockOn,
        value: &str,
    ) -> Option<(crate::Str, Vec<crate::fraud::block::Block>)> {
        use crate::fraud::block::BlockOn;
        if on == BlockOn::Member {
            // a state stored blank is no member
            let m = self.member(value).filter(|m| m.first_seen != 0)?;
            let blocks = m.scan.get().map(|s| s.blocks.clone()).unwrap_or_default();
            return Some((m.id.clone(), blocks));
        }
        let e = self.engine_of(&on.key(&value.into()));
        let crowd = match on {
            BlockOn::Member => None, // answered above
            BlockOn::Device => e.device(value),
            BlockOn::Ip => e.ip(value),
            BlockOn::Net => e.net(value),
        }?;
        Some((value.into(), crowd.blocks.clone()))
    }

    /// A SKU's state.
    pub fn sku(&self, id: &str) -> Option<Cow<'_, Sku>> {
        self.engine_of(&Key::Sku(id.into())).sku(id)
    }

    /// A dealer's state.
    pub fn dealer(&self, id: &str) -> Option<Cow<'_, Dealer>> {
        self.engine_of(&Key::Dealer(id.into())).dealer(id)
    }

    /// A store's state.
    pub fn store(&self, id: &str) -> Option<Cow<'_, Store>> {
        self.engine_of(&Key::Store(id.into())).store(id)
    }

    /// An order's coordinator state.
    pub fn order(&self, key: &str) -> Option<Cow<'_, Order>> {
        self.engine_of(&Key::Order(key.into())).order(key)
    }

    /// The time (µs) an entity's pending timer is set for, on the shard that owns it.
    pub fn timer_of(&self, key: Key) -> Option<i64> {
        self.engine_of(&key).timer_of(key)
    }

    /// A campaign's state.
    pub fn campaign(&self, id: &str) -> Option<Cow<'_, Campaign>> {
        self.engine_of(&Key::Campaign(id.into())).campaign(id)
    }

    /// A code's registry entry.
    pub fn code(&self, code: &str) -> Option<Cow<'_, Code>> {
        self.engine_of(&Key::Code(code.into())).code(code)
    }

    /// Why an event at `ts_us` would be refused as late, if it would (see [`Engine::late`]).
    pub fn late(&self, ts_us: i64) -> Option<crate::engine::Late> {
        self.engines[0].late(ts_us)
    }

    /// Event ids remembered for deduplication.
    pub fn remembered_ids(&self) -> usize {
        self.engines[0].remembered_ids()
    }

    /// The earliest event time (µs) the id bound still answers for.
    pub fn remembered_from_us(&self) -> i64 {
        self.engines[0].remembered_from_us()
    }

    /// The state kept under member id `id` itself, an alias (merged away) too.
    pub fn member_as_kept(&self, id: &str) -> Option<Cow<'_, Member>> {
        self.engine_of(&Key::Member(id.into())).member_here(id)
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

/// One shard's state while it runs its part of an epoch.
struct Worker<'e, 'x> {
    me: usize,
    engine: &'e mut Engine,
    ex: &'x Exchange<'x>,
    /// Commands each slot's event ran here.
    ran: Vec<usize>,
    placed: Vec<Placed>,
    sends: Vec<(Key, Cmd, Origin)>,
    emitted: Vec<Emitted>,
    /// Commands for the next round: for this shard, and for each other one.
    local: Vec<Msg>,
    remote: Vec<Vec<Msg>>,
    /// Commands sent this round.
    count: usize,
}

impl Worker<'_, '_> {
    /// Runs one command in round `depth` under its event (or the event it is on behalf of).
    fn run(&mut self, (tag, key, cmd, own): Msg, depth: u32, admitted: &[Admitted<'_>]) {
        let (id, at) = own.unwrap_or_else(|| match &tag.root {
            // in the offset of the event that made it due, as the single engine's ticks
            Root::Timer(t, _) => {
                let offset_min = admitted[tag.seq as usize].offset_min;
                let at = EventTime::from_unix_ms(t.div_euclid(1000));
                (Uuid::nil(), EventTime { offset_min, ..at })
            }
            Root::Event(_) => {
                let slot = &admitted[tag.seq as usize];
                match (slot.ev, &slot.command) {
                    (Some(ev), _) => (ev.id, ev.ts),
                    (None, Some((_, _, id, at))) => (*id, *at),
                    (None, None) => (Uuid::nil(), EventTime::from_unix_ms(0)),
                }
            }
        });
        self.engine
            .run_one(key, cmd, id, at, &mut self.sends, &mut self.emitted);
        if let Root::Event(_) = tag.root {
            self.ran[tag.seq as usize] += 1;
        }
        for (k, e) in self.emitted.drain(..).enumerate() {
            let place = (
                depth,
                tag.seq,
                tag.root.clone(),
                tag.path.clone(),
                u32::try_from(k).unwrap_or(u32::MAX),
            );
            let owner = self.ex.seq_of.get(&e.event).copied().unwrap_or(tag.seq);
            self.placed.push((place, owner, e));
        }
        let n = self.ex.shards;
        for (k, (key, cmd, origin)) in self.sends.drain(..).enumerate() {
            let to = key.owner(n);
            // what a command run on behalf of another event sends is on its behalf too
            let msg = (tag.child(k), key, cmd, origin.or(own));
            self.count += 1;
            if to == self.me {
                self.local.push(msg);
            } else {
                self.remote[to].push(msg);
            }
        }
    }
}

/// One shard's part of an epoch.
fn run_shard(
    me: usize,
    engine: &mut Engine,
    roots: Vec<Msg>,
    admitted: &[Admitted<'_>],
    ex: &Exchange<'_>,
) -> Part {
    let n = ex.shards;
    let _guard = BreakOnPanic(&ex.barrier);
    // every shard knows the epoch's reference data (code batches, dealer regions)
    for ev in admitted.iter().filter_map(|a| a.ev) {
        engine.observe_refs(ev);
    }
    let mut w = Worker {
        me,
        engine,
        ex,
        ran: vec![0; admitted.len()],
        placed: Vec::new(),
        sends: Vec::new(),
        emitted: Vec::new(),
        local: Vec::new(),
        remote: (0..n).map(|_| Vec::new()).collect(),
        count: 0,
    };
    // round 0, slot by slot: the timers the slot's watermark makes due, in time order and
    // including those their own ticks set within it (as the single engine's advance fires
    // them), then the slot's first commands in the router's order
    let mut roots = roots.into_iter().peekable();
    for (seq, a) in admitted.iter().enumerate() {
        let seq = u32::try_from(seq).unwrap_or(u32::MAX);
        while let Some((at, key)) = a.fires.then(|| w.engine.pop_due(a.watermark)).flatten() {
            let tag = Tag {
                seq,
                root: Root::Timer(at, key.clone()),
                path: Path::new(),
            };
            w.run((tag, key, Cmd::Tick, None), 0, admitted);
        }
        while let Some(m) = roots.next_if(|m| m.0.seq == seq) {
            w.run(m, 0, admitted);
        }
    }
    let mut inbox: Vec<Msg> = Vec::new();
    let mut round = 0;
    loop {
        if round + 1 >= MAX_ROUNDS {
            // a runaway: drop what was sent (every shard is at this round, none waits)
            return Part {
                placed: w.placed,
                ran: w.ran,
                runaway: w.count > 0,
            };
        }
        for (to, msgs) in w.remote.iter_mut().enumerate() {
            ex.post(round, me, to, msgs);
        }
        ex.sent[round % 3].fetch_add(w.count, Ordering::AcqRel);
        ex.barrier.wait();
        if me == ex.lead {
            ex.sent[(round + 2) % 3].store(0, Ordering::Release);
            if let Some(link) = ex.link {
                ex.trade(link, round);
            }
        }
        if ex.link.is_some() {
            // the others read the round's total and take their boxes once the lead traded
            ex.barrier.wait();
        }
        if ex.sent[round % 3].load(Ordering::Acquire) == 0 {
            return Part {
                placed: w.placed,
                ran: w.ran,
                runaway: false,
            };
        }
        inbox.append(&mut w.local);
        for from in 0..n {
            if from != me {
                ex.take(round, from, me, &mut inbox);
            }
        }
        round += 1;
        w.count = 0;
        // the inbox is sorted runs (this shard's own sends, then each other shard's, each in
        // the order they were made, which is tag order): the stable sort merges them in about
        // linear time
        inbox.sort_by(|a, b| a.0.cmp(&b.0));
        let depth = u32::try_from(round).unwrap_or(u32::MAX);
        for m in inbox.drain(..) {
            w.run(m, depth, admitted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Str;
    use omnistream_schemas::{Decoder, Pii};

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
    fn a_shard_that_panics_breaks_the_barrier_instead_of_leaving_the_others_waiting() {
        let meet = Meet::new(2, false);
        let (failed, waited) = std::thread::scope(|s| {
            let failing = s.spawn(|| {
                let _guard = BreakOnPanic(&meet);
                panic!("a handler bug");
            });
            let waiting = s.spawn(|| meet.wait());
            (failing.join(), waiting.join())
        });
        // the waiting shard unwound too (it did not hang)
        assert!(failed.is_err() && waited.is_err());
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

    /// Two orders for the last unit in one epoch, the first redeeming points its member does
    /// not have: the member is asked before any stock is reserved, so the first never holds
    /// the unit while the second asks for it (it did, and both were refused), and no stock
    /// output speaks of the refused order.
    #[test]
    fn an_order_refused_for_points_takes_no_stock_from_another_in_its_epoch() {
        let d = Decoder::new(Pii::new(b"k"));
        let order = |n: u32, who: &str, redeem: u32| {
            format!(
                r#"{{"id":"00000000-0000-7000-8000-00000000000{n}","ts":"2026-11-11T09:00:00+08:00","type":"order","channel":"douyin","order":"o{n}","status":"placed","kind":"consumer","member":{{"openid":"{who}"}},"lines":[{{"sku":"S1","qty":1,"unit_price":100}}],"location":"wh","points_redeemed":{redeem}}}"#
            )
        };
        let events: Vec<Event> = [
            r#"{"id":"00000000-0000-7000-8000-000000000001","ts":"2026-11-11T08:00:00+08:00","type":"stock","sku":"S1","location":"wh","op":"receive","qty":1}"#.to_string(),
            order(2, "poor", 50),
            order(3, "rich", 0),
        ]
        .iter()
        .map(|j| d.decode(j.as_bytes()).unwrap())
        .collect();
        let mut s = Sharded::new(Rules::default(), 2);
        let mut out = Vec::new();
        s.apply_epoch(&events, &mut out);
        let said = |o: &str| {
            out.iter()
                .filter_map(|e| match &e.output {
                    crate::Output::OrderAccepted { order, .. } if order == o => Some("accepted"),
                    crate::Output::OrderRejected { order, reason, .. } if order == o => {
                        Some(reason.as_str())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(said("douyin:o2"), ["insufficient_points"], "{out:?}");
        assert_eq!(said("douyin:o3"), ["accepted"], "{out:?}");
        assert!(!out.iter().any(|e| matches!(&e.output,
            crate::Output::Stock { order: Some(o), .. } if o == "douyin:o2")));
    }

    /// A status event that arrives in the epoch of its order's placement waits in the order
    /// until placement settles; what it then causes is still its own: the same outputs, under
    /// the same event ids and times, as when the events run one at a time.
    #[test]
    fn a_status_deferred_behind_placement_keeps_its_own_event_and_time() {
        let d = Decoder::new(Pii::new(b"k"));
        let events: Vec<Event> = [
            r#"{"id":"00000000-0000-7000-8000-000000000001","ts":"2026-11-11T08:00:00+08:00","type":"stock","sku":"S1","location":"wh","op":"receive","qty":100}"#,
            r#"{"id":"00000000-0000-7000-8000-000000000002","ts":"2026-11-11T09:00:00+08:00","type":"order","channel":"mall","order":"o1","status":"placed","kind":"consumer","member":{"openid":"oa"},"lines":[{"sku":"S1","qty":2,"unit_price":10000}],"location":"wh"}"#,
            r#"{"id":"00000000-0000-7000-8000-000000000003","ts":"2026-11-11T10:00:00+08:00","type":"order","channel":"mall","order":"o1","status":"fulfilled","kind":"consumer","member":{"openid":"oa"}}"#,
        ]
        .iter()
        .map(|j| d.decode(j.as_bytes()).unwrap())
        .collect();
        let mut e = Engine::new(Rules::default());
        let mut one = Vec::new();
        for ev in &events {
            e.apply(ev, &mut one);
        }
        let mut s = Sharded::new(Rules::default(), 2);
        let mut epoch = Vec::new();
        s.apply_epoch(&events, &mut epoch);
        let sorted = |v: &[Emitted]| {
            let mut v: Vec<String> = v
                .iter()
                .map(|o| serde_json::to_string(o).unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&one), sorted(&epoch));
        let fulfilled = epoch
            .iter()
            .find(|o| matches!(&o.output, crate::Output::Ledger { .. }))
            .expect("points earned on fulfilment");
        assert_eq!(fulfilled.event, events[2].id);
        assert_eq!(fulfilled.at, events[2].ts);
    }

    /// The stores of every shard are listed, each once, as the snapshot holds them.
    #[test]
    fn stores_are_listed_from_every_shard() {
        let d = Decoder::new(Pii::new(b"k"));
        let events: Vec<Event> = (1..=12)
            .map(|i| {
                let j = format!(
                    r#"{{"id":"00000000-0000-7000-8000-{i:012}","ts":"2026-11-11T08:00:00+08:00","type":"visit","channel":"store","store":"st-{i}","visitor":"rep","rep":"r1"}}"#
                );
                d.decode(j.as_bytes()).unwrap()
            })
            .collect();
        let mut s = Sharded::new(Rules::default(), 3);
        let mut out = Vec::new();
        s.apply_epoch(&events, &mut out);
        let listed = s.stores().unwrap();
        assert_eq!(listed.len(), 12);
        assert_eq!(listed, s.try_snapshot().unwrap().stores);
    }

    /// A shorter points expiry taken in between brings the members' timers forward alike on
    /// one engine and on shards (whose own watermarks lag the coordinator's).
    #[test]
    fn a_rules_switch_moves_the_timers_as_the_engine_does() {
        let d = Decoder::new(Pii::new(b"k"));
        let events: Vec<Event> = (1..=6u32)
            .map(|n| {
                d.decode(format!(r#"{{"id":"00000000-0000-7000-8000-{n:012}","ts":"2026-01-0{n}T08:00:00+08:00","type":"order","channel":"mall","order":"o{n}","status":"placed","kind":"consumer","member":{{"openid":"o{n}"}},"lines":[{{"sku":"S1","qty":1,"unit_price":10000}}],"location":"wh"}}"#).as_bytes())
                    .unwrap()
            })
            .collect();
        let stock = d
            .decode(br#"{"id":"00000000-0000-7000-8000-000000000100","ts":"2026-01-01T07:00:00+08:00","type":"stock","sku":"S1","location":"wh","op":"receive","qty":100}"#)
            .unwrap();
        let fulfil = |n: u32| {
            d.decode(format!(r#"{{"id":"00000000-0000-7000-8000-{:012}","ts":"2026-01-0{n}T09:00:00+08:00","type":"order","channel":"mall","order":"o{n}","status":"fulfilled","kind":"consumer","member":{{"openid":"o{n}"}}}}"#, 200 + n).as_bytes())
                .unwrap()
        };
        let mut all = vec![stock];
        for (n, ev) in (1..=6).zip(events) {
            all.push(ev);
            all.push(fulfil(n));
        }
        let mut e = Engine::new(Rules::default());
        let mut s = Sharded::new(Rules::default(), 3);
        let (mut oe, mut os) = (Vec::new(), Vec::new());
        for ev in &all {
            e.apply(ev, &mut oe);
            s.apply_epoch(std::slice::from_ref(ev), &mut os);
        }
        let mut shorter = Rules::default();
        shorter.points.expiry_days = 3;
        e.set_rules(shorter.clone());
        s.set_rules(&shorter);
        let later = EventTime::parse("2026-01-20T08:00:00+08:00").unwrap();
        e.advance(later, &mut oe);
        s.advance(later, &mut os);
        assert!(
            oe.iter().any(
                |o| matches!(&o.output, crate::Output::Ledger { reason, .. } if reason == "expired")
            ),
            "nothing expired"
        );
        assert_eq!(
            serde_json::to_string(&oe).unwrap(),
            serde_json::to_string(&os).unwrap()
        );
    }

    #[test]
    fn advance_fires_the_timers_the_engine_fires() {
        let d = Decoder::new(Pii::new(b"k"));
        let ev = d
            .decode(br#"{"id":"00000000-0000-7000-8000-000000000001","ts":"2026-01-01T08:00:00+08:00","type":"click","channel":"mall","target":"ad1","member":{"openid":"o1"}}"#)
            .unwrap();
        let mut e = Engine::new(Rules::default());
        let mut oe = Vec::new();
        e.apply(&ev, &mut oe);
        let mut s = Sharded::new(Rules::default(), 2);
        let mut os = Vec::new();
        s.apply_epoch(std::slice::from_ref(&ev), &mut os);
        let later = ev.ts.unix_us + 100 * 86_400_000_000;
        let later = EventTime::from_unix_ms(later / 1000);
        e.advance(later, &mut oe);
        s.advance(later, &mut os);
        assert_eq!(
            serde_json::to_string(&oe).unwrap(),
            serde_json::to_string(&os).unwrap()
        );
    }
}

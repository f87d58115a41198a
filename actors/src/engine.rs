//! The deterministic engine: hosts every entity in one thread and defines the canonical order
//! of processing. An input event is routed to its first commands; the commands' effects are
//! queued and run first-in first-out until the cascade is done; then the next event. Timers
//! fire, in (time, key) order, when the watermark (latest event time minus a lag) passes them:
//! their ticks run before the event that moved it, and what the ticks send is queued after the
//! event's first commands (round 0 of a sharded epoch, see `crate::sharded`). The same input in the same order therefore gives the same
//! states and the same outputs, byte for byte. The actix runtime (issue #5) shards this work
//! and must preserve per-key order; this engine is the reference it is tested against.

use crate::campaign::Campaign;
use crate::cmd::{Cmd, MemberCmd};
use crate::cold::{Cold, Io, Kind, Listed, Table};
use crate::dealer::Dealer;
use crate::fraud::code::Code;
use crate::fraud::crowd::{Crowd, CrowdKind};
use crate::fraud::filter::CodeFilter;
use crate::fraud::ring::Ring;
use crate::identity::Identity;
use crate::inorder::{render_in_order, Rendered, Spread};
use crate::member::Member;
use crate::order::Order;
use crate::output::Output;
use crate::refdata::RefData;
use crate::router::route;
use crate::seen::Seen;
use crate::sku::Sku;
use crate::store::Store;
use crate::timers::Timers;
use crate::{Ctx, Effects, Key, Origin, Rules};
use compact_str::CompactString as Str;
use omnistream_schemas::{Event, EventTime};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use uuid::Uuid;

/// Most commands one event may cascade into, and as many again for each timer it makes due;
/// beyond it the cascade stops and is counted (a guard against a logic loop, never reached by
/// correct handlers).
pub const MAX_CASCADE: usize = 100_000;

/// How long event ids are remembered to drop duplicates, behind the watermark.
pub const DEDUP_HORIZON_US: i64 = 7 * crate::DAY_US;

/// One output with the event that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emitted {
    /// The input event (nil for timer outputs).
    pub event: Uuid,
    /// Event time of the cause (the timer's time for timer outputs).
    pub at: EventTime,
    /// The output.
    #[serde(flatten)]
    pub output: Output,
}

/// What happened to one input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Processed; this many commands ran.
    Done(usize),
    /// Its id was seen before: nothing changed.
    Duplicate,
    /// Older than the lateness window allows (`max-lateness-s` before the watermark):
    /// nothing changed, and its id is not remembered.
    Late,
}

/// Why an event is too late to apply (see [`Engine::late`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    /// Older than `max-lateness-s` before the watermark.
    Window,
    /// Older than the event ids kept under `max-remembered-ids` reach back.
    Forgotten,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Events dropped as repeats.
    pub duplicates: u64,
    /// Commands run.
    pub commands: u64,
    /// Timers fired.
    pub timers: u64,
    /// Cascades cut at [`MAX_CASCADE`].
    pub runaway: u64,
    /// Events refused as too late.
    #[serde(default)]
    pub late: u64,
    /// Event ids forgotten before the horizon to stay under `max-remembered-ids`.
    #[serde(default)]
    pub forgotten: u64,
}

/// Every entity's state, sorted by key: what `replay` writes and tests compare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Identities: `kind/value` → member.
    pub identities: BTreeMap<String, Identity>,
    /// Members by id.
    pub members: BTreeMap<Str, Member>,
    /// Orders by key.
    pub orders: BTreeMap<Str, Order>,
    /// SKUs.
    pub skus: BTreeMap<Str, Sku>,
    /// Dealers.
    pub dealers: BTreeMap<Str, Dealer>,
    /// Stores.
    pub stores: BTreeMap<Str, Store>,
    /// Campaigns.
    pub campaigns: BTreeMap<Str, Campaign>,
    /// Code registry entries.
    #[serde(default)]
    pub codes: BTreeMap<Str, Code>,
    /// Devices.
    #[serde(default)]
    pub devices: BTreeMap<Str, Crowd>,
    /// IP addresses.
    #[serde(default)]
    pub ips: BTreeMap<Str, Crowd>,
    /// Network prefixes.
    #[serde(default)]
    pub nets: BTreeMap<Str, Crowd>,
    /// Rings of linked members.
    #[serde(default)]
    pub rings: BTreeMap<Str, Ring>,
    /// Reference data: code batches and dealer regions.
    #[serde(default)]
    pub refs: RefData,
}

impl Snapshot {
    /// Adds another part's entities (of other keys: a shard's, a process's); the reference
    /// data stays this one's.
    pub fn absorb(&mut self, other: Snapshot) {
        self.identities.extend(other.identities);
        self.members.extend(other.members);
        self.orders.extend(other.orders);
        self.skus.extend(other.skus);
        self.dealers.extend(other.dealers);
        self.stores.extend(other.stores);
        self.campaigns.extend(other.campaigns);
        self.codes.extend(other.codes);
        self.devices.extend(other.devices);
        self.ips.extend(other.ips);
        self.nets.extend(other.nets);
        self.rings.extend(other.rings);
    }
}

/// The single-threaded deterministic host of all entities.
#[derive(Debug)]
pub struct Engine {
    /// The rules handlers read.
    pub rules: Rules,
    identities: Table<Identity>,
    members: Table<Member>,
    orders: Table<Order>,
    skus: Table<Sku>,
    dealers: Table<Dealer>,
    stores: Table<Store>,
    campaigns: Table<Campaign>,
    codes: Table<Code>,
    devices: Table<Crowd>,
    ips: Table<Crowd>,
    nets: Table<Crowd>,
    rings: Table<Ring>,
    refs: RefData,
    /// Commands to run, each with its origin and whether a timer's tick (not the event being
    /// applied) is at the root of its cascade.
    queue: VecDeque<(Key, Cmd, Origin, bool)>,
    /// The one pending timer of each key: a new request replaces the old one.
    timers: Timers,
    watermark: i64,
    seen: Seen,
    fx: Effects,
    /// Counters.
    pub stats: Stats,
    /// Where passivated entities live; None keeps every entity resident.
    cold: Option<ColdTier>,
    /// The first failure to load or encode an entity: the engine's state is then not to be
    /// trusted, and its owner must discard it (see [`Engine::take_cold_error`]).
    cold_error: Option<String>,
    /// Most resident entities before the least recently used are passivated (0: no bound).
    bound: usize,
    /// Commands run so far: the last-use stamp of entities.
    clock: u64,
    stamps: Vec<u64>,
    evicted: u64,
    /// A begun checkpoint's own part, encoded when it began (its entity states are encoded
    /// by [`Engine::advance_checkpoint`]): the states left out of a [`Checkpoint`].
    begun: Option<Checkpoint>,
}

/// The cold tier, boxed.
struct ColdTier(Box<dyn Cold>);

impl std::fmt::Debug for ColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ColdTier")
    }
}

/// Everything a checkpoint writes: the states changed since the previous one, and the
/// engine's own state (watermark, timers, reference data, counters, remembered event ids).
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Entity states as `(kind, key, encoded state)`: from [`Engine::complete_checkpoint`], a
    /// run of each kind (of each shard, from [`crate::Sharded`]) sorted by key; from
    /// [`Engine::checkpoint`], in no order.
    pub states: Vec<(Kind, Str, Vec<u8>)>,
    /// The engine's own state (versioned JSON).
    pub global: Vec<u8>,
    /// Event ids remembered for deduplication: 24 bytes each (time µs LE, id).
    pub seen: Vec<u8>,
    /// The code registry's Bloom filter (empty without one).
    pub filter: Vec<u8>,
}

/// The engine's own state as a checkpoint stores it.
#[derive(Serialize, Deserialize)]
struct Global {
    version: u8,
    watermark: i64,
    clock: u64,
    /// Pending timers as `(time, kind, key)`.
    timers: Vec<(i64, u8, Str)>,
    refs: RefData,
    stats: Stats,
    /// The id bound's floor ([`Seen::floor_us`]); absent in checkpoints before the bound.
    #[serde(default)]
    seen_floor_us: i64,
}

impl Global {
    /// As a checkpoint stores it: [`crate::cold::encode`]'s form, like the states.
    fn encode(&self) -> Result<Vec<u8>, String> {
        crate::cold::encode(self).map_err(|e| format!("engine state: {e}"))
    }

    /// Reads it back; a checkpoint written before states were stored in postcard holds it
    /// as bare JSON (its first byte `{`, never a version byte).
    fn decode(b: &[u8]) -> Result<Global, String> {
        let g = if b.first() == Some(&b'{') {
            serde_json::from_slice(b).map_err(|e| e.to_string())
        } else {
            crate::cold::decode(b)
        };
        g.map_err(|e| format!("engine checkpoint: {e}"))
    }
}

/// One entity's state, as [`Engine::each_state`] hands it over; serialised as the state
/// itself.
#[derive(Debug, Clone, Copy)]
pub enum State<'a> {
    /// An identity.
    Identity(&'a Identity),
    /// A member.
    Member(&'a Member),
    /// An order.
    Order(&'a Order),
    /// A SKU.
    Sku(&'a Sku),
    /// A dealer.
    Dealer(&'a Dealer),
    /// A store.
    Store(&'a Store),
    /// A campaign.
    Campaign(&'a Campaign),
    /// A code registry entry.
    Code(&'a Code),
    /// A device, an IP address or a network prefix.
    Crowd(&'a Crowd),
    /// A ring.
    Ring(&'a Ring),
}

impl Serialize for State<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            State::Identity(v) => v.serialize(s),
            State::Member(v) => v.serialize(s),
            State::Order(v) => v.serialize(s),
            State::Sku(v) => v.serialize(s),
            State::Dealer(v) => v.serialize(s),
            State::Store(v) => v.serialize(s),
            State::Campaign(v) => v.serialize(s),
            State::Code(v) => v.serialize(s),
            State::Crowd(v) => v.serialize(s),
            State::Ring(v) => v.serialize(s),
        }
    }
}

/// Renders the caller's view of one entity (see [`Engine::write_snapshot`]) into a buffer.
pub type View<'v> = dyn Fn(Kind, &str, State<'_>, &mut Vec<u8>) -> Result<(), String> + Sync + 'v;

/// Takes the views of a chunk of entities of one kind (see [`Engine::write_snapshot`]).
pub type Side<'v> = dyn FnMut(Kind, &[u8]) -> Result<(), String> + 'v;

/// Where [`Engine::write_snapshot`] writes, and how.
struct Out<'o, 'v> {
    w: &'o mut dyn std::io::Write,
    spread: Spread,
    view: &'o View<'v>,
    side: &'o mut Side<'v>,
    cold: Option<&'o dyn Cold>,
}

impl Out<'_, '_> {
    /// Writes one kind's entities, `"key":state` separated by commas, in the listing's order.
    fn kind<V>(
        &mut self,
        kind: Kind,
        table: &Table<V>,
        shown: fn(&str) -> Cow<'_, str>,
        state: fn(&V) -> State<'_>,
    ) -> Result<(), String>
    where
        V: Default + Clone + Serialize + serde::de::DeserializeOwned + Sync,
    {
        let mut stored = Vec::new();
        let listed = table.listed(self.cold, shown, &mut stored)?;
        let (cold, view) = (self.cold, self.view);
        let render = |items: &[Listed<'_, V>], (json, mine): &mut Rendered| {
            for item in items {
                let v = table.state_of(cold, item)?;
                let s = state(&v);
                json.push(b',');
                serde_json::to_writer(&mut *json, &*item.0).map_err(state_error)?;
                json.push(b':');
                serde_json::to_writer(&mut *json, &s).map_err(state_error)?;
                view(kind, &item.0, s, mine)?;
            }
            Ok(())
        };
        let mut first = true;
        let (w, side) = (&mut *self.w, &mut *self.side);
        render_in_order(&listed, self.spread, &render, &mut |(json, mine)| {
            // each entity comes with the comma before it, which the first one has not
            let json = if first {
                json.get(1..).unwrap_or_default()
            } else {
                json
            };
            first = false;
            w.write_all(json).map_err(state_error)?;
            match mine.is_empty() {
                true => Ok(()),
                false => side(kind, mine),
            }
        })
    }
}

/// A failure to write the state (of the writer, or of serde_json).
fn state_error(e: impl std::fmt::Display) -> String {
    format!("writing the state: {e}")
}

/// A key as a [`Snapshot`] shows it: as it is (all but identities).
fn as_is(k: &str) -> Cow<'_, str> {
    Cow::Borrowed(k)
}

/// An identity key as a [`Snapshot`] shows (and sorts) it: `kind/value`, the stored NUL read
/// as `/` (two keys that look alike are then kept apart by the stored key).
fn identity_shown(k: &str) -> Cow<'_, str> {
    match k.contains('\0') {
        true => k.replacen('\0', "/", 1).into(),
        false => k.into(),
    }
}

/// The key string of an identity entity: kind, NUL, value.
fn identity_key(kind: &str, value: &str) -> Str {
    let mut s = Str::with_capacity(kind.len() + 1 + value.len());
    s.push_str(kind);
    s.push('\0');
    s.push_str(value);
    s
}

/// An entity key as `(kind, key string)` (taken whole: its string moves, uncopied).
pub(crate) fn split_key(key: Key) -> (Kind, Str) {
    match key {
        Key::Identity(k, v) => (Kind::Identity, identity_key(&k, &v)),
        Key::Member(id) => (Kind::Member, id),
        Key::Order(id) => (Kind::Order, id),
        Key::Sku(id) => (Kind::Sku, id),
        Key::Dealer(id) => (Kind::Dealer, id),
        Key::Store(id) => (Kind::Store, id),
        Key::Campaign(id) => (Kind::Campaign, id),
        Key::Code(id) => (Kind::Code, id),
        Key::Device(id) => (Kind::Device, id),
        Key::Ip(id) => (Kind::Ip, id),
        Key::Net(id) => (Kind::Net, id),
        Key::Ring(id) => (Kind::Ring, id),
    }
}

/// Whether a stored key belongs to shard `me` of `n` (every key does with one shard): the
/// filter of the readers that walk a cold tier the shards share.
fn owned(me: usize, n: usize) -> impl Fn(Kind, &str) -> bool {
    move |kind, k| n <= 1 || join_key(kind, k.into()).owner(n) == me
}

/// The inverse of [`split_key`].
pub(crate) fn join_key(kind: Kind, id: Str) -> Key {
    match kind {
        Kind::Identity => {
            let (k, v) = id.split_once('\0').unwrap_or((id.as_str(), ""));
            Key::Identity(k.into(), v.into())
        }
        Kind::Member => Key::Member(id),
        Kind::Order => Key::Order(id),
        Kind::Sku => Key::Sku(id),
        Kind::Dealer => Key::Dealer(id),
        Kind::Store => Key::Store(id),
        Kind::Campaign => Key::Campaign(id),
        Kind::Code => Key::Code(id),
        Kind::Device => Key::Device(id),
        Kind::Ip => Key::Ip(id),
        Kind::Net => Key::Net(id),
        Kind::Ring => Key::Ring(id),
    }
}

/// Runs `$body` with `$t` bound to each entity table in turn.
macro_rules! each_table {
    ($self:ident, $($mut:ident)? |$t:ident| $body:expr) => {{
        {
            let $t = & $($mut)? $self.identities;
            $body;
        }
        {
            let $t = & $($mut)? $self.members;
            $body;
        }
        {
            let $t = & $($mut)? $self.orders;
            $body;
        }
        {
            let $t = & $($mut)? $self.skus;
            $body;
        }
        {
            let $t = & $($mut)? $self.dealers;
            $body;
        }
        {
            let $t = & $($mut)? $self.stores;
            $body;
        }
        {
            let $t = & $($mut)? $self.campaigns;
            $body;
        }
        {
            let $t = & $($mut)? $self.codes;
            $body;
        }
        {
            let $t = & $($mut)? $self.devices;
            $body;
        }
        {
            let $t = & $($mut)? $self.ips;
            $body;
        }
        {
            let $t = & $($mut)? $self.nets;
            $body;
        }
        {
            let $t = & $($mut)? $self.rings;
            $body;
        }
    }};
}

impl Engine {
    /// An engine with these rules and no state.
    pub fn new(rules: Rules) -> Self {
        let cap = usize::try_from(rules.max_remembered_ids).unwrap_or(usize::MAX);
        Engine {
            rules,
            identities: Table::new(Kind::Identity),
            members: Table::new(Kind::Member),
            orders: Table::new(Kind::Order),
            skus: Table::new(Kind::Sku),
            dealers: Table::new(Kind::Dealer),
            stores: Table::new(Kind::Store),
            campaigns: Table::new(Kind::Campaign),
            codes: Table::new(Kind::Code),
            devices: Table::new(Kind::Device),
            ips: Table::new(Kind::Ip),
            nets: Table::new(Kind::Net),
            rings: Table::new(Kind::Ring),
            refs: RefData::default(),
            queue: VecDeque::new(),
            timers: Timers::default(),
            watermark: i64::MIN,
            seen: Seen::new(cap),
            fx: Effects::default(),
            stats: Stats::default(),
            cold: None,
            cold_error: None,
            bound: 0,
            clock: 0,
            stamps: Vec::new(),
            evicted: 0,
            begun: None,
        }
    }

    /// Runs what comes next under `rules`, as a restart with them would: the state stays,
    /// and a lower `max-remembered-ids` forgets the oldest ids at once.
    pub fn set_rules(&mut self, rules: Rules) {
        self.switch_rules(rules, self.watermark);
    }

    /// [`Engine::set_rules`] at `watermark` (a shard's own may lag the coordinator's).
    pub(crate) fn switch_rules(&mut self, rules: Rules, watermark: i64) {
        let cap = usize::try_from(rules.max_remembered_ids).unwrap_or(usize::MAX);
        if cap != self.seen.cap() {
            self.stats.forgotten += self.seen.set_cap(cap);
        }
        // points that now expire sooner, a tier's downgrade grace that now ends sooner, or a
        // tier period that lets days go sooner: each member's timer, set for its oldest
        // lot's expiry, its grace's end or a day leaving the period under the old rules (or
        // for something else, later), comes that much earlier (the most of the three), but
        // not before now (just after the watermark); its tick acts on what is due under the
        // new rules (points already past it at the switch's time, a grace already over) and
        // sets the next timer for the rest (an early tick of a member only re-evaluates it)
        let (old, new) = (&self.rules, &rules);
        // other tiers or tag rules: every member with a timer is reckoned again at once (a
        // lowered silver threshold moves members up without waiting for their next event)
        let reckon = old.tiers != new.tiers || old.tags != new.tags;
        let sooner = if reckon {
            i64::MAX
        } else {
            [
                old.points.expiry_days - new.points.expiry_days,
                old.tiers.downgrade_grace_days - new.tiers.downgrade_grace_days,
                old.tiers.period_days - new.tiers.period_days,
            ]
            .into_iter()
            .max()
            .unwrap_or(0)
            .saturating_mul(crate::DAY_US)
        };
        if sooner > 0 {
            let now = watermark.saturating_add(1);
            self.timers.advance_kind(Kind::Member, sooner, now);
        }
        self.rules = rules;
    }

    /// The watermark (µs): timers at or before it have fired.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Processes one event to the end of its cascade; outputs are appended to `out`.
    pub fn apply(&mut self, ev: &Event, out: &mut Vec<Emitted>) -> Applied {
        if let Err(refused) = self.admit(ev) {
            return refused;
        }
        let to = ev.ts.unix_us - self.rules.watermark_lag_s * 1_000_000;
        let (fired, ticks) = self.fire_due(to, ev.ts.offset_min, out);
        self.refs.observe(ev);
        self.queue
            .extend(route(ev).into_iter().map(|(k, c)| (k, c, None, false)));
        // what the timers' ticks sent runs after the event's first commands, as the next
        // round of a sharded epoch (see `fire_due`)
        self.queue.extend(ticks);
        let ran = self.drain(ev.id, ev.ts, fired, out);
        self.trim();
        Applied::Done(ran)
    }

    /// The checks before an event runs: a repeat or a late event is refused (and counted);
    /// otherwise its id is remembered and it is counted as processed.
    pub(crate) fn admit(&mut self, ev: &Event) -> Result<(), Applied> {
        if self.seen.contains(&ev.id) {
            self.stats.duplicates += 1;
            return Err(Applied::Duplicate);
        }
        if self.late(ev.ts.unix_us).is_some() {
            self.stats.late += 1;
            return Err(Applied::Late);
        }
        self.remember(ev.id, ev.ts.unix_us);
        self.stats.events += 1;
        Ok(())
    }

    /// The watermark after an event at `ts_us`.
    pub(crate) fn watermark_after(&self, ts_us: i64) -> i64 {
        self.watermark
            .max(ts_us - self.rules.watermark_lag_s * 1_000_000)
    }

    /// Moves the watermark without firing timers (a sharded host pops them itself, see
    /// [`Engine::pop_due`]), forgetting ids beyond the horizon.
    pub(crate) fn set_watermark(&mut self, to_us: i64) {
        if to_us > self.watermark {
            self.watermark = to_us;
            self.seen.expire(to_us - DEDUP_HORIZON_US);
        }
    }

    /// The first pending timer at or before `to_us`, removed and counted.
    pub(crate) fn pop_due(&mut self, to_us: i64) -> Option<(i64, Key)> {
        let (at, key) = self.timers.pop_due(to_us)?;
        self.stats.timers += 1;
        Some((at, key))
    }

    /// Updates the reference data with an event (a sharded host gives every shard every
    /// event's reference data).
    pub(crate) fn observe_refs(&mut self, ev: &Event) {
        self.refs.observe(ev);
    }

    /// Runs one command without a queue: the commands it sends are appended to `sends` for
    /// the host to deliver, its outputs to `out`, and its timers are armed here.
    pub(crate) fn run_one(
        &mut self,
        key: Key,
        cmd: Cmd,
        event: Uuid,
        at: EventTime,
        sends: &mut Vec<(Key, Cmd, Origin)>,
        out: &mut Vec<Emitted>,
    ) {
        self.dispatch(key, cmd, event, at);
        self.stats.commands += 1;
        self.fx.take_sends(|k, c, o| sends.push((k, c, o)));
        self.arm_timers();
        self.fx.take_outputs(|output, o| {
            let (event, at) = o.unwrap_or((event, at));
            out.push(Emitted { event, at, output });
        });
    }

    /// Passivates entities over the bound (a sharded host calls it after an epoch).
    pub(crate) fn trim_now(&mut self) {
        self.trim();
    }

    /// Adds the timers the last command asked for, one per key.
    fn arm_timers(&mut self) {
        for (k, t) in self.fx.timers.drain(..) {
            if t == crate::DISARM {
                self.timers.remove(k);
            } else {
                self.timers.arm(k, t);
            }
        }
    }

    /// Runs one command from outside the event streams (the admin API: a review resolution,
    /// see [`crate::cmd::MemberCmd::ReviewResolve`]) to the end of its cascade, under the
    /// caller's id and event time. The watermark does not move; repeats are the entities'
    /// business (a resolved review is gone, so resolving it again changes nothing).
    pub fn command(
        &mut self,
        key: Key,
        cmd: Cmd,
        id: Uuid,
        at: EventTime,
        out: &mut Vec<Emitted>,
    ) -> usize {
        self.queue.push_back((key, cmd, None, false));
        self.drain(id, at, 0, out)
    }

    /// Moves the watermark to `to` (never back), firing every timer at or before it and
    /// running what their ticks send to the end; the ticks run in `to`'s UTC offset, as
    /// those an event makes due run in its offset.
    pub fn advance(&mut self, to: EventTime, out: &mut Vec<Emitted>) {
        let (fired, ticks) = self.fire_due(to.unix_us, to.offset_min, out);
        self.queue.extend(ticks);
        self.drain(Uuid::nil(), EventTime::from_unix_ms(0), fired, out);
    }

    /// Moves the watermark to `to_us` (never back) and runs the tick of every timer at or
    /// before it, in (time, key) order, each at once (so a timer a tick sets that is already
    /// due fires in the same pass); returns how many fired and what their ticks sent, on
    /// behalf of their timers
    /// (nil id, the timer's time) unless a tick named another origin. The caller queues them
    /// after the first commands of the event that moved the watermark: the ticks and those
    /// commands are round 0 of a sharded epoch (`crate::sharded`), and what they send runs
    /// breadth first from there, so one event at a time on one engine gives exactly the
    /// state and outputs of epochs of one event on any number of shards, timers that send
    /// commands included (an unpaid order's timer cancels it at its SKUs and member). A tick
    /// runs at its timer's time, in the UTC offset of the event that made it due
    /// (`offset_min`; that of the time given to [`Engine::advance`]), so what it books on a day or an hour (a store's
    /// refund, a member's windows) lands on that sender's local one.
    fn fire_due(
        &mut self,
        to_us: i64,
        offset_min: i16,
        out: &mut Vec<Emitted>,
    ) -> (usize, Vec<(Key, Cmd, Origin, bool)>) {
        let (mut fired, mut sent) = (0, Vec::new());
        if to_us <= self.watermark {
            return (fired, sent);
        }
        self.watermark = to_us;
        while let Some((at, key)) = self.timers.pop_due(to_us) {
            self.stats.timers += 1;
            fired += 1;
            let at = EventTime {
                offset_min,
                ..EventTime::from_unix_ms(at.div_euclid(1000))
            };
            let origin = Some((Uuid::nil(), at));
            self.dispatch(key, Cmd::Tick, Uuid::nil(), at);
            self.stats.commands += 1;
            self.fx
                .take_sends(|k, c, o| sent.push((k, c, o.or(origin), true)));
            self.arm_timers();
            self.fx.take_outputs(|output, o| {
                let (event, at) = o.unwrap_or((Uuid::nil(), at));
                out.push(Emitted { event, at, output });
            });
        }
        // forget ids beyond the horizon: the lateness window refuses their repeats (with the
        // window off, the entities' own guards catch them: order states, ledgers per order,
        // recent-event lists)
        self.seen.expire(to_us - DEDUP_HORIZON_US);
        (fired, sent)
    }

    fn remember(&mut self, id: Uuid, ts: i64) {
        self.stats.forgotten += self.seen.insert(id, ts);
    }

    /// Whether, and why, an event at `ts_us` is refused as late: older than the lateness
    /// window behind the watermark, or older than the ids kept under `max-remembered-ids`
    /// reach back (its id may have been forgotten, so a repeat could not be told).
    pub fn late(&self, ts_us: i64) -> Option<Late> {
        let window = self.rules.max_lateness_s.saturating_mul(1_000_000);
        if window > 0 && ts_us < self.watermark.saturating_sub(window) {
            Some(Late::Window)
        } else if self.seen.below_floor(ts_us) {
            Some(Late::Forgotten)
        } else {
            None
        }
    }

    /// The earliest event time (µs) the id bound still answers for (0: it never forgot ids).
    pub fn remembered_from_us(&self) -> i64 {
        self.seen.floor_us()
    }

    /// Event ids remembered for deduplication.
    pub fn remembered_ids(&self) -> usize {
        self.seen.len()
    }

    /// Runs the queue to its end (at most [`MAX_CASCADE`] commands for the event and as many
    /// for each of the `timers` it made due); returns how many of the commands were the
    /// event's own cascade (not a timer's).
    fn drain(
        &mut self,
        event: Uuid,
        at: EventTime,
        timers: usize,
        out: &mut Vec<Emitted>,
    ) -> usize {
        let (mut all, mut ran) = (0, 0);
        let most = MAX_CASCADE.saturating_mul(timers.saturating_add(1));
        while let Some((key, cmd, origin, by_timer)) = self.queue.pop_front() {
            if all >= most {
                self.stats.runaway += 1;
                self.queue.clear();
                break;
            }
            all += 1;
            ran += usize::from(!by_timer);
            let (event, at) = origin.unwrap_or((event, at));
            self.dispatch(key, cmd, event, at);
            let queue = &mut self.queue;
            // what a command run on behalf of another event sends is on that event's behalf
            self.fx
                .take_sends(|k, c, o| queue.push_back((k, c, o.or(origin), by_timer)));
            self.arm_timers();
            self.fx.take_outputs(|output, o| {
                let (event, at) = o.unwrap_or((event, at));
                out.push(Emitted { event, at, output });
            });
        }
        self.stats.commands += all as u64;
        ran
    }

    fn dispatch(&mut self, key: Key, cmd: Cmd, event: Uuid, at: EventTime) {
        self.clock += 1;
        let ctx = Ctx {
            at,
            event,
            rules: &self.rules,
            refs: &self.refs,
        };
        let fx = &mut self.fx;
        let mut io = Io {
            cold: self.cold.as_ref().map(|c| &*c.0),
            clock: self.clock,
            err: &mut self.cold_error,
        };
        // the entity a command is for, loaded (or created when `new`)
        macro_rules! on {
            ($table:expr, $id:expr, $new:expr, |$s:ident| $body:expr) => {
                if let Some($s) = $table.get_mut($id, $new, &mut io) {
                    $body
                }
            };
        }
        match (key, cmd) {
            (Key::Identity(k, v), Cmd::Identity(c)) => {
                on!(self.identities, identity_key(&k, &v), true, |s| s
                    .handle(c, &ctx, fx))
            }
            // an event naming its member by `member_id` starts no member: one never seen
            // refuses it
            (Key::Member(id), Cmd::Member(MemberCmd::Given(r))) => {
                match self.members.get_mut(id.clone(), false, &mut io) {
                    Some(m) => m.handle(&id, MemberCmd::Given(r), &ctx, fx),
                    None => crate::member::unknown(&id, r.then, &ctx, fx),
                }
            }
            (Key::Member(id), Cmd::Member(c)) => {
                on!(self.members, id.clone(), true, |m| m
                    .handle(&id, c, &ctx, fx))
            }
            (Key::Member(id), Cmd::Tick) => on!(self.members, id, false, |m| m.tick(&ctx, fx)),
            (Key::Order(id), Cmd::Order(c)) => {
                on!(self.orders, id.clone(), true, |o| o
                    .handle(&id, c, &ctx, fx))
            }
            (Key::Order(id), Cmd::Tick) => {
                on!(self.orders, id.clone(), false, |o| o.tick(&id, &ctx, fx))
            }
            (Key::Sku(id), Cmd::Sku(c)) => {
                on!(self.skus, id.clone(), true, |s| s.handle(&id, c, &ctx, fx))
            }
            (Key::Dealer(id), Cmd::Dealer(c)) => {
                on!(self.dealers, id.clone(), true, |d| d
                    .handle(&id, c, &ctx, fx))
            }
            (Key::Store(id), Cmd::Store(c)) => {
                on!(self.stores, id.clone(), true, |s| s
                    .handle(&id, c, &ctx, fx))
            }
            (Key::Campaign(id), Cmd::Campaign(c)) => {
                on!(self.campaigns, id.clone(), true, |s| s
                    .handle(&id, c, &ctx, fx))
            }
            (Key::Code(id), Cmd::Code(c)) => {
                on!(self.codes, id.clone(), true, |s| s.handle(&id, c, &ctx, fx))
            }
            (Key::Device(id), Cmd::Crowd(c)) => on!(self.devices, id, true, |s| s.handle(
                CrowdKind::Device,
                c,
                &ctx,
                fx
            )),
            (Key::Ip(id), Cmd::Crowd(c)) => {
                on!(self.ips, id, true, |s| s.handle(CrowdKind::Ip, c, &ctx, fx))
            }
            (Key::Net(id), Cmd::Crowd(c)) => {
                on!(self.nets, id, true, |s| s.handle(
                    CrowdKind::Net,
                    c,
                    &ctx,
                    fx
                ))
            }
            (Key::Ring(id), Cmd::Ring(c)) => {
                on!(self.rings, id.clone(), true, |s| s.handle(&id, c, &ctx, fx))
            }
            // a tick for an entity kind without timers, or a command sent to the wrong kind
            // of key (a logic error the tests would show): nothing to do
            _ => {}
        }
    }

    /// Gives the engine a cold tier and a bound on resident entities (0: none): beyond it the
    /// least recently used are passivated after an event. Set before the first event. The
    /// code registry gets a Bloom filter sized for `codes` codes at 1% false positives
    /// (about 1.2 bytes a code): a code never scanned, most scans, is then known to be new
    /// without a read of the cold tier. More codes than that only raise the rate. A kind of
    /// which the cold tier holds no state is not read until a checkpoint writes some (a
    /// store that cannot tell is read).
    pub fn set_cold(&mut self, cold: Box<dyn Cold>, bound: usize, codes: u64) {
        each_table!(self, mut |t| t.cold_holds = cold.holds(t.kind).unwrap_or(true));
        self.cold = Some(ColdTier(cold));
        self.bound = bound;
        self.codes.filter = CodeFilter::for_rate(codes.max(1024), 0.01).ok();
    }

    /// Takes the cold tier away, and with it the bound: the engine then holds every entity
    /// resident and reads nothing back. For an owner that must close the store (a file lock,
    /// a session) now but lets the engine's memory be freed later.
    pub fn take_cold(&mut self) -> Option<Box<dyn Cold>> {
        self.bound = 0;
        self.cold.take().map(|c| c.0)
    }

    /// Reads of the cold tier, and reads the code filter or an empty kind saved, since start.
    pub fn cold_reads(&self) -> (u64, u64) {
        let mut n = (0, 0);
        each_table!(self, |t| {
            n.0 += t.loads;
            n.1 += t.skipped;
        });
        n
    }

    /// The first failure to load or encode an entity since the last call. After one, the
    /// engine's state may be wrong: its owner must not commit what it produced and must
    /// rebuild it from the store.
    pub fn take_cold_error(&mut self) -> Option<String> {
        self.cold_error.take()
    }

    /// Resident entities, all kinds.
    pub fn resident(&self) -> usize {
        self.counts().iter().map(|(_, n)| n).sum()
    }

    /// Evicted entities whose state awaits the next checkpoint.
    pub fn spilled(&self) -> usize {
        let mut n = 0;
        each_table!(self, |t| n += t.spilled());
        n
    }

    /// Entities passivated since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Passivates the least recently used tenth of the bound when over it.
    fn trim(&mut self) {
        if self.bound == 0 || self.cold.is_none() {
            return;
        }
        let resident = self.resident();
        if resident <= self.bound {
            return;
        }
        let evict = resident - (self.bound - self.bound / 10);
        let mut stamps = std::mem::take(&mut self.stamps);
        stamps.clear();
        each_table!(self, mut |t| t.stamps(&mut stamps));
        let (_, &mut cutoff, _) = stamps.select_nth_unstable(evict - 1);
        let mut gone = 0;
        let err = &mut self.cold_error;
        each_table!(self, mut |t| gone += t.evict(cutoff, err));
        self.evicted += gone as u64;
        self.stamps = stamps;
    }

    /// Takes a checkpoint: every entity state changed since the last one, and the engine's
    /// own state. Written atomically with the log position it reflects, it lets a restart
    /// resume from there ([`Engine::restore`]) instead of replaying the whole log.
    pub fn checkpoint(&mut self) -> Result<Checkpoint, String> {
        let mut cp = self.own_state()?;
        cp.states = self.changed_states()?;
        self.begun = None;
        Ok(cp)
    }

    /// Begins a checkpoint as of now without encoding the entity states it holds: they are
    /// encoded by [`Engine::advance_checkpoint`], a slice at a time between commands (or by
    /// the command about to change one, first), so a host answering requests never stops
    /// for all of them at once. Commands may run meanwhile; the checkpoint stays as of its
    /// beginning. The engine's own state (timers, remembered ids, ...) is encoded here.
    /// Beginning again before [`Engine::complete_checkpoint`] makes one checkpoint, as of
    /// the later beginning.
    pub fn begin_checkpoint(&mut self) -> Result<(), String> {
        each_table!(self, mut |t| t.begin());
        self.begun = Some(self.own_state()?);
        Ok(())
    }

    /// A checkpoint of the engine's own state, without entity states.
    fn own_state(&self) -> Result<Checkpoint, String> {
        let global = Global {
            version: crate::cold::STATE_VERSION,
            watermark: self.watermark,
            clock: self.clock,
            timers: self
                .timers
                .sorted()
                .into_iter()
                .map(|(t, kind, id)| (t, kind as u8, id))
                .collect(),
            refs: self.refs.clone(),
            stats: self.stats.clone(),
            seen_floor_us: self.seen.floor_us(),
        };
        Ok(Checkpoint {
            states: Vec::new(),
            global: global.encode()?,
            seen: self.seen.encode(),
            filter: self
                .codes
                .filter
                .as_ref()
                .map(CodeFilter::to_bytes)
                .unwrap_or_default(),
        })
    }

    /// Encodes up to `budget` more of the begun checkpoint's entity states; true once all
    /// are (then [`Engine::complete_checkpoint`] hands the checkpoint over).
    pub fn advance_checkpoint(&mut self, budget: usize) -> Result<bool, String> {
        let mut left = budget;
        let err = &mut self.cold_error;
        let threads = crate::inorder::Spread::cores().threads;
        each_table!(self, mut |t| {
            if left > 0 {
                left -= t.advance(left, err, threads);
            }
        });
        debug_assert!(left <= budget);
        if let Some(e) = self.cold_error.take() {
            return Err(e);
        }
        let mut encoding = false;
        each_table!(self, |t| encoding |= t.encoding());
        Ok(!encoding)
    }

    /// The begun checkpoint, once [`Engine::advance_checkpoint`] has encoded all its states;
    /// they then count as written (what the engine reads from its cold tier next).
    pub fn complete_checkpoint(&mut self) -> Result<Checkpoint, String> {
        if !self.advance_checkpoint(0)? {
            return Err("a checkpoint completed before its states were encoded".into());
        }
        let Some(mut cp) = self.begun.take() else {
            return Err("no checkpoint was begun".into());
        };
        each_table!(self, mut |t| t.complete(&mut cp.states));
        Ok(cp)
    }

    /// The states of a checkpoint alone, as `(kind, key, encoded state)`: every entity changed
    /// since the last one, which then counts as written. For a cold tier that is only a spill
    /// store (`replay` with a resident bound, which never restarts from it), where the
    /// engine's own state would be encoded for nothing: its timers and remembered ids grow
    /// with the entities known, not with those changed.
    pub fn changed_states(&mut self) -> Result<Vec<(Kind, Str, Vec<u8>)>, String> {
        let mut states = Vec::new();
        let err = &mut self.cold_error;
        let threads = crate::inorder::Spread::cores().threads;
        each_table!(self, mut |t| t.checkpoint(&mut states, err, threads));
        match self.cold_error.take() {
            Some(e) => Err(e),
            None => Ok(states),
        }
    }

    /// An engine as a checkpoint left it: its own state from `global` and `seen`, entity
    /// states loaded from `cold` as commands need them.
    pub fn restore(
        rules: Rules,
        cp: &Checkpoint,
        cold: Box<dyn Cold>,
        bound: usize,
        codes: u64,
    ) -> Result<Engine, String> {
        let (global, seen) = (&cp.global, &cp.seen);
        let g = Global::decode(global)?;
        if !(crate::cold::OLDEST_VERSION..=crate::cold::STATE_VERSION).contains(&g.version) {
            return Err(format!(
                "engine checkpoint encoding {} is not one this binary reads ({} to {})",
                g.version,
                crate::cold::OLDEST_VERSION,
                crate::cold::STATE_VERSION
            ));
        }
        let mut e = Engine::new(rules);
        e.set_cold(cold, bound, codes);
        match CodeFilter::from_bytes(&cp.filter) {
            Some(f) => e.codes.filter = Some(f),
            // a checkpoint without a filter: every stored code goes into a new one
            None => {
                if let (Some(f), Some(c)) = (e.codes.filter.as_mut(), e.cold.as_ref()) {
                    c.0.scan(Kind::Code, &mut |k, _| {
                        f.insert(k.as_bytes());
                    })?;
                }
            }
        }
        e.watermark = g.watermark;
        e.clock = g.clock;
        e.refs = g.refs;
        e.stats = g.stats;
        for (t, kind, id) in g.timers {
            let kind = Kind::from_u8(kind).ok_or_else(|| format!("timer of kind {kind}"))?;
            e.timers.arm(join_key(kind, id), t);
        }
        e.seen = Seen::decode(seen, g.seen_floor_us, e.seen.cap())
            .map_err(|why| format!("engine checkpoint: {why}"))?;
        Ok(e)
    }

    /// One checkpoint of the engines of a [`crate::sharded::Sharded`] (the coordinator's
    /// first): their states (disjoint keys), the coordinator's own state and remembered ids
    /// with every engine's timers and counters, and the union of their code filters. It reads
    /// like a single engine's, so any number of shards restores it.
    pub(crate) fn merge_checkpoints(parts: Vec<Checkpoint>) -> Result<Checkpoint, String> {
        let mut parts = parts.into_iter();
        let Some(mut all) = parts.next() else {
            return Ok(Checkpoint::default());
        };
        let mut g = Global::decode(&all.global)?;
        for p in parts {
            all.states.extend(p.states);
            let o = Global::decode(&p.global)?;
            g.timers.extend(o.timers);
            g.stats.commands += o.stats.commands;
            g.stats.timers += o.stats.timers;
            g.stats.runaway += o.stats.runaway;
            g.clock = g.clock.max(o.clock);
            // the filters have one size (one `codes` setting): a code is in the union when in
            // any; filters of another size are left out, and a restore rebuilds from the store
            if p.filter.len() == all.filter.len() {
                for (a, b) in all.filter.iter_mut().zip(&p.filter) {
                    *a |= b;
                }
            } else {
                all.filter.clear();
            }
        }
        g.timers.sort();
        all.global = g.encode()?;
        Ok(all)
    }

    /// Keeps only what shard `me` of `n` owns after a restore from a whole checkpoint: its
    /// keys' timers; the counters and remembered ids stay with the coordinator (shard 0).
    pub(crate) fn keep_own(&mut self, me: usize, n: usize) {
        self.timers.retain(|k| k.owner(n) == me);
        if me > 0 {
            self.stats = Stats::default();
            self.seen = Seen::new(self.seen.cap());
        }
    }

    /// Counts a runaway cascade (a sharded host cut it).
    pub(crate) fn count_runaway(&mut self) {
        self.stats.runaway += 1;
    }

    fn cold_ref(&self) -> Option<&dyn Cold> {
        self.cold.as_ref().map(|c| &*c.0)
    }

    /// The member an id refers to, following aliases.
    pub fn member(&self, id: &str) -> Option<Cow<'_, Member>> {
        let cold = self.cold_ref();
        let mut m = self.members.get(id, cold)?;
        for _ in 0..16 {
            let next = match &m.alias_of {
                Some(next) => next.clone(),
                None => return Some(m),
            };
            m = self.members.get(&next, cold)?;
        }
        None
    }

    /// A member's own state, an alias or not (aliases not followed).
    pub(crate) fn member_here(&self, id: &str) -> Option<Cow<'_, Member>> {
        self.members.get(id, self.cold_ref())
    }

    /// An identity entity (value already hashed for personal kinds).
    pub fn identity(&self, kind: &str, value: &str) -> Option<Cow<'_, Identity>> {
        self.identities
            .get(&identity_key(kind, value), self.cold_ref())
    }

    /// The member an identity belongs to (value already hashed for personal kinds).
    pub fn member_of(&self, kind: &str, value: &str) -> Option<Cow<'_, Member>> {
        let ident = self
            .identities
            .get(&identity_key(kind, value), self.cold_ref())?;
        let id = ident.member.as_ref()?;
        self.member(id)
    }

    /// A SKU's state.
    pub fn sku(&self, id: &str) -> Option<Cow<'_, Sku>> {
        self.skus.get(id, self.cold_ref())
    }

    /// A dealer's state.
    pub fn dealer(&self, id: &str) -> Option<Cow<'_, Dealer>> {
        self.dealers.get(id, self.cold_ref())
    }

    /// A store's state.
    pub fn store(&self, id: &str) -> Option<Cow<'_, Store>> {
        self.stores.get(id, self.cold_ref())
    }

    /// An order's coordinator state.
    pub fn order(&self, key: &str) -> Option<Cow<'_, Order>> {
        self.orders.get(key, self.cold_ref())
    }

    /// The time (µs) an entity's pending timer is set for, if one is.
    pub fn timer_of(&self, key: Key) -> Option<i64> {
        self.timers.due(key)
    }

    /// A campaign's state.
    pub fn campaign(&self, id: &str) -> Option<Cow<'_, Campaign>> {
        self.campaigns.get(id, self.cold_ref())
    }

    /// A code's registry entry.
    pub fn code(&self, code: &str) -> Option<Cow<'_, Code>> {
        self.codes.get(code, self.cold_ref())
    }

    /// A device's counts.
    pub fn device(&self, id: &str) -> Option<Cow<'_, Crowd>> {
        self.devices.get(id, self.cold_ref())
    }

    /// An IP's counts.
    pub fn ip(&self, ip: &str) -> Option<Cow<'_, Crowd>> {
        self.ips.get(ip, self.cold_ref())
    }

    /// A network prefix's counts.
    pub fn net(&self, net: &str) -> Option<Cow<'_, Crowd>> {
        self.nets.get(net, self.cold_ref())
    }

    /// A ring, by label.
    pub fn ring(&self, label: &str) -> Option<Cow<'_, Ring>> {
        self.rings.get(label, self.cold_ref())
    }

    /// The reference data as of the latest event.
    pub fn refs(&self) -> &RefData {
        &self.refs
    }

    /// Resident entities per kind, for gauges: `(kind, count)`.
    pub fn counts(&self) -> [(&'static str, usize); 12] {
        [
            ("identity", self.identities.len()),
            ("member", self.members.len()),
            ("order", self.orders.len()),
            ("sku", self.skus.len()),
            ("dealer", self.dealers.len()),
            ("store", self.stores.len()),
            ("campaign", self.campaigns.len()),
            ("code", self.codes.len()),
            ("device", self.devices.len()),
            ("ip", self.ips.len()),
            ("net", self.nets.len()),
            ("ring", self.rings.len()),
        ]
    }

    /// Every resident SKU (all of them without a cold tier).
    pub fn skus(&self) -> impl Iterator<Item = (&Str, &Sku)> {
        self.skus.resident()
    }

    /// Every resident dealer (all of them without a cold tier).
    pub fn dealers(&self) -> impl Iterator<Item = (&Str, &Dealer)> {
        self.dealers.resident()
    }

    /// Every store, resident or not, of the keys shard `me` of `n` owns (all: `n` = 1),
    /// sorted by id. Fails only when the cold tier does.
    pub fn stores_owned(&self, me: usize, n: usize) -> Result<BTreeMap<Str, Store>, String> {
        self.stores.all(self.cold_ref(), &owned(me, n))
    }

    /// Visits every member, resident or not, of the keys shard `me` of `n` owns, one stored
    /// state at a time, in no order.
    pub fn each_member_owned(
        &self,
        me: usize,
        n: usize,
        f: &mut dyn FnMut(&str, &Member),
    ) -> Result<(), String> {
        self.members.each(self.cold_ref(), &owned(me, n), f)
    }

    /// Visits every SKU, resident or not, of the keys shard `me` of `n` owns, one stored state
    /// at a time, in no order.
    pub fn each_sku_owned(
        &self,
        me: usize,
        n: usize,
        f: &mut dyn FnMut(&str, &Sku),
    ) -> Result<(), String> {
        self.skus.each(self.cold_ref(), &owned(me, n), f)
    }

    /// Visits every dealer, resident or not, of the keys shard `me` of `n` owns, one stored
    /// state at a time, in no order.
    pub fn each_dealer_owned(
        &self,
        me: usize,
        n: usize,
        f: &mut dyn FnMut(&str, &Dealer),
    ) -> Result<(), String> {
        self.dealers.each(self.cold_ref(), &owned(me, n), f)
    }

    /// Every campaign's state, resident or not, of the keys shard `me` of `n` owns.
    pub fn campaigns_owned(
        &self,
        me: usize,
        n: usize,
    ) -> Result<BTreeMap<Str, crate::campaign::Campaign>, String> {
        self.campaigns.all(self.cold_ref(), &owned(me, n))
    }

    /// Every resident member, alias or not (all of them without a cold tier).
    pub fn members(&self) -> impl Iterator<Item = (&Str, &Member)> {
        self.members.resident()
    }

    /// All state, sorted by key, resident or not. Fails only when the cold tier does.
    pub fn try_snapshot(&self) -> Result<Snapshot, String> {
        self.try_snapshot_where(&|_, _| true)
    }

    /// [`Engine::try_snapshot`] of the keys shard `me` of `n` owns, for an engine that shares
    /// its cold tier with the other shards: the stored states of other shards' keys are not
    /// even decoded.
    pub fn try_snapshot_owned(&self, me: usize, n: usize) -> Result<Snapshot, String> {
        self.try_snapshot_where(&owned(me, n))
    }

    fn try_snapshot_where(&self, keep: &dyn Fn(Kind, &str) -> bool) -> Result<Snapshot, String> {
        let cold = self.cold_ref();
        Ok(Snapshot {
            identities: self
                .identities
                .all(cold, keep)?
                .into_iter()
                .map(|(k, s)| (identity_shown(&k).into_owned(), s))
                .collect(),
            members: self.members.all(cold, keep)?,
            orders: self.orders.all(cold, keep)?,
            skus: self.skus.all(cold, keep)?,
            dealers: self.dealers.all(cold, keep)?,
            stores: self.stores.all(cold, keep)?,
            campaigns: self.campaigns.all(cold, keep)?,
            codes: self.codes.all(cold, keep)?,
            devices: self.devices.all(cold, keep)?,
            ips: self.ips.all(cold, keep)?,
            nets: self.nets.all(cold, keep)?,
            rings: self.rings.all(cold, keep)?,
            refs: self.refs.clone(),
        })
    }

    /// Writes what `serde_json::to_writer(w, &engine.try_snapshot()?)` writes, byte for byte,
    /// without holding the snapshot: kind by kind in the order of [`Snapshot`]'s fields, each
    /// kind sorted by key as there (identities as `kind/value`), only one kind's keys are
    /// gathered and a passivated state is read back when its turn comes. The entities are
    /// serialised on `spread`'s threads, a chunk at a time, and written in order; `view`
    /// renders the caller's own view of each entity (on the same threads) into a buffer
    /// that `side` is then given, a chunk of one kind at a time, in key order. Fails when the
    /// cold tier, `w`, `view` or `side` does.
    pub fn write_snapshot(
        &self,
        w: &mut dyn std::io::Write,
        spread: Spread,
        view: &View<'_>,
        side: &mut Side<'_>,
    ) -> Result<(), String> {
        fn field(kind: Kind) -> &'static str {
            match kind {
                Kind::Identity => "identities",
                Kind::Member => "members",
                Kind::Order => "orders",
                Kind::Sku => "skus",
                Kind::Dealer => "dealers",
                Kind::Store => "stores",
                Kind::Campaign => "campaigns",
                Kind::Code => "codes",
                Kind::Device => "devices",
                Kind::Ip => "ips",
                Kind::Net => "nets",
                Kind::Ring => "rings",
            }
        }
        let mut out = Out {
            w,
            spread,
            view,
            side,
            cold: self.cold_ref(),
        };
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            let open = if i == 0 { "{" } else { "}," };
            write!(out.w, "{open}\"{}\":{{", field(kind)).map_err(state_error)?;
            match kind {
                Kind::Identity => out.kind(kind, &self.identities, identity_shown, |v| {
                    State::Identity(v)
                }),
                Kind::Member => out.kind(kind, &self.members, as_is, |v| State::Member(v)),
                Kind::Order => out.kind(kind, &self.orders, as_is, |v| State::Order(v)),
                Kind::Sku => out.kind(kind, &self.skus, as_is, |v| State::Sku(v)),
                Kind::Dealer => out.kind(kind, &self.dealers, as_is, |v| State::Dealer(v)),
                Kind::Store => out.kind(kind, &self.stores, as_is, |v| State::Store(v)),
                Kind::Campaign => out.kind(kind, &self.campaigns, as_is, |v| State::Campaign(v)),
                Kind::Code => out.kind(kind, &self.codes, as_is, |v| State::Code(v)),
                Kind::Device => out.kind(kind, &self.devices, as_is, |v| State::Crowd(v)),
                Kind::Ip => out.kind(kind, &self.ips, as_is, |v| State::Crowd(v)),
                Kind::Net => out.kind(kind, &self.nets, as_is, |v| State::Crowd(v)),
                Kind::Ring => out.kind(kind, &self.rings, as_is, |v| State::Ring(v)),
            }?;
        }
        out.w.write_all(b"},\"refs\":").map_err(state_error)?;
        serde_json::to_writer(&mut *out.w, &self.refs).map_err(state_error)?;
        out.w.write_all(b"}").map_err(state_error)
    }

    /// All state, sorted by key, of an engine without a cold tier (with one, use
    /// [`Engine::try_snapshot`]: this one would be empty if the tier failed).
    pub fn snapshot(&self) -> Snapshot {
        self.try_snapshot().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose
    use super::*;

    /// The engine's own state round-trips in the stored form, and a checkpoint of a binary
    /// before it (bare JSON) still reads.
    #[test]
    fn the_engine_state_reads_in_both_encodings() {
        let g = Global {
            version: crate::cold::STATE_VERSION,
            watermark: 1_794_000_000_000_000,
            clock: 42,
            timers: vec![(7, Kind::Member as u8, "m00000000000000ff".into())],
            refs: RefData::default(),
            stats: Stats {
                commands: 9,
                ..Stats::default()
            },
            seen_floor_us: 5,
        };
        let stored = g.encode().unwrap();
        assert_eq!(stored[0], crate::cold::STATE_VERSION);
        let old = serde_json::to_vec(&Global { version: 1, ..g }).unwrap();
        for b in [stored, old] {
            let back = Global::decode(&b).unwrap();
            assert_eq!(
                (back.watermark, back.clock, &back.timers, back.seen_floor_us),
                (
                    1_794_000_000_000_000,
                    42,
                    &vec![(7, 2, "m00000000000000ff".into())],
                    5
                )
            );
            assert_eq!(back.stats.commands, 9);
        }
        assert!(Global::decode(b"{not json").is_err());
        assert!(Global::decode(&[9, 1, 2]).is_err());
    }
}

//! The deterministic engine: hosts every entity in one thread and defines the canonical order
//! of processing. An input event is routed to its first commands; the commands' effects are
//! queued and run first-in first-out until the cascade is done; then the next event. Timers
//! fire, in (time, key) order, when the watermark (latest event time minus a lag) passes them,
//! before the event that moved it. The same input in the same order therefore gives the same
//! states and the same outputs, byte for byte. The actix runtime (issue #5) shards this work
//! and must preserve per-key order; this engine is the reference it is tested against.

use crate::campaign::Campaign;
use crate::cmd::Cmd;
use crate::dealer::Dealer;
use crate::fraud::code::Code;
use crate::fraud::crowd::{Crowd, CrowdKind};
use crate::fraud::ring::Ring;
use crate::identity::Identity;
use crate::member::Member;
use crate::order::Order;
use crate::output::Output;
use crate::refdata::RefData;
use crate::router::route;
use crate::sku::Sku;
use crate::store::Store;
use crate::{Ctx, Effects, Key, Rules};
use compact_str::CompactString as Str;
use omnistream_schemas::{Event, EventTime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Hash maps of entity state: foldhash is several times faster than SipHash on short string
/// keys and keeps a random per-process seed, so crafted keys cannot force collisions.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// Hash sets, likewise.
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use uuid::Uuid;

/// Most commands one event may cascade into; beyond it the cascade stops and is counted (a
/// guard against a logic loop, never reached by correct handlers).
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
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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

/// The single-threaded deterministic host of all entities.
#[derive(Debug, Default)]
pub struct Engine {
    /// The rules handlers read.
    pub rules: Rules,
    identities: HashMap<(Str, Str), Identity>,
    members: HashMap<Str, Member>,
    orders: HashMap<Str, Order>,
    skus: HashMap<Str, Sku>,
    dealers: HashMap<Str, Dealer>,
    stores: HashMap<Str, Store>,
    campaigns: HashMap<Str, Campaign>,
    codes: HashMap<Str, Code>,
    devices: HashMap<Str, Crowd>,
    ips: HashMap<Str, Crowd>,
    nets: HashMap<Str, Crowd>,
    rings: HashMap<Str, Ring>,
    refs: RefData,
    queue: VecDeque<(Key, Cmd)>,
    timers: BTreeSet<(i64, Key)>,
    /// The one pending timer of each key: a new request replaces the old one, so the set
    /// holds at most one entry per entity instead of one per command that re-armed it.
    timer_of: HashMap<Key, i64>,
    watermark: i64,
    seen: HashSet<Uuid>,
    seen_order: VecDeque<(i64, Uuid)>,
    fx: Effects,
    /// Counters.
    pub stats: Stats,
}

impl Engine {
    /// An engine with these rules and no state.
    pub fn new(rules: Rules) -> Self {
        Engine {
            rules,
            watermark: i64::MIN,
            ..Engine::default()
        }
    }

    /// The watermark (µs): timers at or before it have fired.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Processes one event to the end of its cascade; outputs are appended to `out`.
    pub fn apply(&mut self, ev: &Event, out: &mut Vec<Emitted>) -> Applied {
        if self.seen.contains(&ev.id) {
            self.stats.duplicates += 1;
            return Applied::Duplicate;
        }
        self.remember(ev.id, ev.ts.unix_us);
        self.advance(ev.ts.unix_us - self.rules.watermark_lag_s * 1_000_000, out);
        self.stats.events += 1;
        self.refs.observe(ev);
        self.queue.extend(route(ev));
        let ran = self.drain(ev.id, ev.ts, out);
        Applied::Done(ran)
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
        self.queue.push_back((key, cmd));
        self.drain(id, at, out)
    }

    /// Moves the watermark to `to_us` (never back), firing every timer at or before it.
    pub fn advance(&mut self, to_us: i64, out: &mut Vec<Emitted>) {
        if to_us <= self.watermark {
            return;
        }
        self.watermark = to_us;
        while let Some((at, key)) = self.timers.first().cloned() {
            if at > to_us {
                break;
            }
            self.timers.pop_first();
            self.timer_of.remove(&key);
            self.stats.timers += 1;
            self.queue.push_back((key, Cmd::Tick));
            self.drain(
                Uuid::nil(),
                EventTime::from_unix_ms(at.div_euclid(1000)),
                out,
            );
        }
        // forget ids beyond the horizon: a repeat that late is caught by the entities' own
        // guards (order states, ledgers per order, recent-event lists)
        while let Some(&(t, id)) = self.seen_order.front() {
            if t > to_us - DEDUP_HORIZON_US {
                break;
            }
            self.seen_order.pop_front();
            self.seen.remove(&id);
        }
    }

    fn remember(&mut self, id: Uuid, ts: i64) {
        self.seen.insert(id);
        self.seen_order.push_back((ts, id));
    }

    fn drain(&mut self, event: Uuid, at: EventTime, out: &mut Vec<Emitted>) -> usize {
        let mut ran = 0;
        while let Some((key, cmd)) = self.queue.pop_front() {
            if ran >= MAX_CASCADE {
                self.stats.runaway += 1;
                self.queue.clear();
                break;
            }
            ran += 1;
            self.dispatch(key, cmd, event, at);
            let fx = &mut self.fx;
            self.queue.extend(fx.sends.drain(..));
            for (k, t) in fx.timers.drain(..) {
                if let Some(old) = self.timer_of.insert(k.clone(), t) {
                    if old != t {
                        self.timers.remove(&(old, k.clone()));
                    }
                }
                self.timers.insert((t, k));
            }
            out.extend(
                fx.outputs
                    .drain(..)
                    .map(|output| Emitted { event, at, output }),
            );
        }
        self.stats.commands += ran as u64;
        ran
    }

    fn dispatch(&mut self, key: Key, cmd: Cmd, event: Uuid, at: EventTime) {
        let ctx = Ctx {
            at,
            event,
            rules: &self.rules,
            refs: &self.refs,
        };
        let fx = &mut self.fx;
        match (key, cmd) {
            (Key::Identity(k, v), Cmd::Identity(c)) => self
                .identities
                .entry((k, v))
                .or_default()
                .handle(c, &ctx, fx),
            (Key::Member(id), Cmd::Member(c)) => {
                let m = self.members.entry(id.clone()).or_default();
                m.handle(&id, c, &ctx, fx);
            }
            (Key::Member(id), Cmd::Tick) => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.tick(&ctx, fx);
                }
            }
            (Key::Order(id), Cmd::Order(c)) => {
                let o = self.orders.entry(id.clone()).or_default();
                o.handle(&id, c, &ctx, fx);
            }
            (Key::Sku(id), Cmd::Sku(c)) => {
                let s = self.skus.entry(id.clone()).or_default();
                s.handle(&id, c, &ctx, fx);
            }
            (Key::Dealer(id), Cmd::Dealer(c)) => {
                let d = self.dealers.entry(id.clone()).or_default();
                d.handle(&id, c, &ctx, fx);
            }
            (Key::Store(id), Cmd::Store(c)) => {
                let s = self.stores.entry(id.clone()).or_default();
                s.handle(&id, c, &ctx, fx);
            }
            (Key::Campaign(id), Cmd::Campaign(c)) => {
                let s = self.campaigns.entry(id.clone()).or_default();
                s.handle(&id, c, &ctx, fx);
            }
            (Key::Code(id), Cmd::Code(c)) => {
                let s = self.codes.entry(id.clone()).or_default();
                s.handle(&id, c, &ctx, fx);
            }
            (Key::Device(id), Cmd::Crowd(c)) => {
                self.devices
                    .entry(id)
                    .or_default()
                    .handle(CrowdKind::Device, c, &ctx, fx)
            }
            (Key::Ip(id), Cmd::Crowd(c)) => {
                self.ips
                    .entry(id)
                    .or_default()
                    .handle(CrowdKind::Ip, c, &ctx, fx)
            }
            (Key::Net(id), Cmd::Crowd(c)) => {
                self.nets
                    .entry(id)
                    .or_default()
                    .handle(CrowdKind::Net, c, &ctx, fx)
            }
            (Key::Ring(id), Cmd::Ring(c)) => {
                let s = self.rings.entry(id.clone()).or_default();
                s.handle(&id, c, &ctx, fx);
            }
            // a tick for an entity kind without timers, or a command sent to the wrong kind
            // of key (a logic error the tests would show): nothing to do
            _ => {}
        }
    }

    /// The member an id refers to, following aliases.
    pub fn member(&self, id: &str) -> Option<&Member> {
        let mut m = self.members.get(id)?;
        for _ in 0..16 {
            match &m.alias_of {
                Some(next) => m = self.members.get(next.as_str())?,
                None => return Some(m),
            }
        }
        None
    }

    /// The member an identity belongs to (value already hashed for personal kinds).
    pub fn member_of(&self, kind: &str, value: &str) -> Option<&Member> {
        let id = self
            .identities
            .get(&(Str::from(kind), Str::from(value)))?
            .member
            .as_ref()?;
        self.member(id)
    }

    /// A SKU's state.
    pub fn sku(&self, id: &str) -> Option<&Sku> {
        self.skus.get(id)
    }

    /// A dealer's state.
    pub fn dealer(&self, id: &str) -> Option<&Dealer> {
        self.dealers.get(id)
    }

    /// A store's state.
    pub fn store(&self, id: &str) -> Option<&Store> {
        self.stores.get(id)
    }

    /// An order's coordinator state.
    pub fn order(&self, key: &str) -> Option<&Order> {
        self.orders.get(key)
    }

    /// A campaign's state.
    pub fn campaign(&self, id: &str) -> Option<&Campaign> {
        self.campaigns.get(id)
    }

    /// A code's registry entry.
    pub fn code(&self, code: &str) -> Option<&Code> {
        self.codes.get(code)
    }

    /// A device's counts.
    pub fn device(&self, id: &str) -> Option<&Crowd> {
        self.devices.get(id)
    }

    /// An IP's counts.
    pub fn ip(&self, ip: &str) -> Option<&Crowd> {
        self.ips.get(ip)
    }

    /// A ring, by label.
    pub fn ring(&self, label: &str) -> Option<&Ring> {
        self.rings.get(label)
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

    /// Every SKU.
    pub fn skus(&self) -> impl Iterator<Item = (&Str, &Sku)> {
        self.skus.iter()
    }

    /// Every dealer.
    pub fn dealers(&self) -> impl Iterator<Item = (&Str, &Dealer)> {
        self.dealers.iter()
    }

    /// Every member, alias or not.
    pub fn members(&self) -> impl Iterator<Item = (&Str, &Member)> {
        self.members.iter()
    }

    /// All state, sorted by key.
    pub fn snapshot(&self) -> Snapshot {
        fn sorted<V: Clone>(m: &HashMap<Str, V>) -> BTreeMap<Str, V> {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Snapshot {
            identities: self
                .identities
                .iter()
                .map(|((k, v), s)| (format!("{k}/{v}"), s.clone()))
                .collect(),
            members: sorted(&self.members),
            orders: sorted(&self.orders),
            skus: sorted(&self.skus),
            dealers: sorted(&self.dealers),
            stores: sorted(&self.stores),
            campaigns: sorted(&self.campaigns),
            codes: sorted(&self.codes),
            devices: sorted(&self.devices),
            ips: sorted(&self.ips),
            nets: sorted(&self.nets),
            rings: sorted(&self.rings),
            refs: self.refs.clone(),
        }
    }
}

//! Member actors: one per person (One-ID). A member keeps its identities, profile and X-RFM
//! activity, tags, tier, and the points ledger every channel sees at once.
//!
//! Points: the balance is a list of lots (earned at, points left) so the oldest points expire
//! and are spent first; every change of the balance is one ledger output with the balance
//! after it, so the ledger sums to the balance. Reversals never drive the balance below zero:
//! what cannot be taken is owed (`debt`) and paid from the next points earned.
//!
//! Merges: the member with the larger id sends its whole state to the survivor (`Absorb`) and
//! waits, holding back its commands; the survivor either takes everything (then the other
//! becomes an alias that forwards) or refuses because the two have different phones.

use crate::cmd::{
    CampaignCmd, Cmd, CodeCmd, Id, IdentityCmd, LineV, MemberCmd, OrderCmd, StoreCmd,
};
use crate::config::{Rules, TagCond};
use crate::fraud::profile::ScanProfile;
use crate::fraud::ring;
use crate::fraud::{Decision, NoReward, Scanned, Verdict};
use crate::output::Output;
use crate::packed::{
    edit_boxed, get_bytes, get_fields, get_i, get_str, get_time, get_u, put_fields, put_i, put_str,
    put_time, put_u, skip_u, Compact, Pack, Packed, PACKED_MAX,
};
use crate::vecmap::VecMap;
use crate::{Ctx, Effects, Key, Recent, DAY_US};
use compact_str::CompactString as Str;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Event ids remembered per member to drop a repeated event.
const RECENT_EVENTS: usize = 16;

/// A scan passes its member twice (features first, reward last); the first pass is recorded
/// under the event id with this bit flipped, so the two do not look like a repeat.
const FIRST_PASS: u128 = 1 << 127;

/// What a member remembers of a merge with `other` refused for event `event` (beside the
/// event ids, in [`Member::recent`]): the event's id with a bit of its own flipped (as
/// [`FIRST_PASS`] does) and the other member's id mixed in.
fn refusal_mark(event: uuid::Uuid, other: &str) -> u128 {
    event.as_u128() ^ (1 << 126) ^ u128::from(crate::fraud::hash64(other))
}

/// One member's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// This member's id.
    pub id: Str,
    /// Set when this member merged into another: everything is forwarded there. Boxed, like
    /// the other parts most members never use, so it costs a pointer, not a whole string.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub alias_of: Option<Box<Str>>,
    /// A merge in flight: commands wait here until the survivor answers.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub merging: Option<Box<Merging>>,
    /// Identities bound to this member.
    pub ids: Ids,
    /// First activity (µs; 0 before any).
    pub first_seen: i64,
    /// Latest activity (µs).
    pub last_seen: i64,
    /// The store of the member's first activity, when it was at a store.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub first_store: Option<Box<Str>>,
    /// Channels used, sorted.
    pub channels: Packed<Str>,
    /// Stores visited or bought at, with the latest time, most recent last.
    pub stores: Packed<(Str, i64)>,
    /// Activity per local day, only days with activity (newest first in memory, oldest
    /// first in the state).
    pub days: Days,
    /// Latest order time (µs; 0 before any).
    pub last_order: i64,
    /// Watched SKUs (in a `bought-any` tag rule) bought, with the latest time.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub bought: Packed<(Str, i64)>,
    /// Tags on, sorted.
    pub tags: Packed<Str>,
    /// Current tier.
    pub tier: Str,
    /// When the member last qualified for its current tier (µs).
    pub tier_at: i64,
    /// Points.
    pub points: Points,
    /// Points bookkeeping per order.
    pub orders: Orders,
    /// Rewarded scans per campaign on one local day: `(campaign, day, count)`.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub caps: Packed<(Str, i64, u32)>,
    /// Recent event ids (for dropping a repeated event).
    pub recent: Recent,
    /// Merges or bindings refused for conflicts.
    pub conflicts: u32,
    /// The timer last asked for (µs; 0 none).
    pub timer_at: i64,
    /// The local day old orders were last pruned.
    #[serde(default)]
    pub pruned_day: i64,
    /// When the orders' pruning pass can next remove one (not part of the state: rebuilt by
    /// the first pass after loading, see [`OrdersDue`]). Change orders through
    /// `Member::set_order` only, which keeps it.
    #[serde(skip)]
    pub orders_due: OrdersDue,
    /// What the member's scans say for fraud checks.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub scan: Boxed<ScanProfile>,
    /// Scan rewards held for review, oldest first.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub held: Box<[HeldReward]>,
    /// The UTC offset (minutes) of the member's latest event: its timer counts days in it, so
    /// a windowed tag drops at the member's midnight whatever the offset of the event that
    /// makes the timer due (None: a state stored before it was kept, until its next event).
    /// Added by encoding 4: not in the states stored before.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<4, _, _>"
    )]
    pub offset_min: Option<i16>,
    /// When the member stopped qualifying for its tier (µs; 0: it qualifies): the downgrade
    /// grace runs from here. Added by encoding 14: a member stored before starts its grace at
    /// its next evaluation.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<14, _, _>"
    )]
    pub grace_since: i64,
}

/// A lower bound on the time of every order the pruning pass could remove (those without
/// pending points), in whole seconds, so the pass, which reads every order, runs only when
/// an order can go: 0 when not known (a state just loaded, or an order time before 1970),
/// `u32::MAX` when no order can go before 2106. Kept by every change to an order (which sets
/// its time and pending points), made exact by every pass. Four bytes, which the member's
/// layout had as padding; it never changes what the member is: it compares equal always and
/// is not serialized.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersDue(u32);

impl PartialEq for OrdersDue {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl OrdersDue {
    /// A bound at or before `at` (µs).
    fn secs(at: i64) -> u32 {
        if at < 1_000_000 {
            0
        } else {
            u32::try_from(at / 1_000_000).unwrap_or(u32::MAX)
        }
    }

    /// An order now stands at `at` with `pending` points.
    fn note(&mut self, at: i64, pending: i64) {
        if pending <= 0 {
            self.0 = self.0.min(Self::secs(at));
        }
    }

    /// Whether no order at or before `keep` (µs) can be pruned.
    fn none_by(self, keep: i64) -> bool {
        self.0 != 0 && i64::from(self.0) * 1_000_000 > keep
    }
}

/// A part most members never use (the scan profile): nothing but a null pointer while it is
/// its default, boxed once it is not. It compares and serializes as the value itself.
#[derive(Debug, Clone, Default)]
pub struct Boxed<T>(Option<Box<T>>);

impl<T: Default + PartialEq> Boxed<T> {
    /// The value, when it was ever set.
    pub fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }

    /// The value to change (boxed now if it was not).
    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }

    /// Whether the value is its default (then it is left out of the state).
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(|v| *v == T::default())
    }
}

impl<T: Default + PartialEq> PartialEq for Boxed<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self.get(), other.get()) {
            (Some(a), Some(b)) => a == b,
            (Some(v), None) | (None, Some(v)) => *v == T::default(),
            (None, None) => true,
        }
    }
}

impl<T: Default + PartialEq + Serialize> Serialize for Boxed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.get() {
            Some(v) => v.serialize(s),
            None => T::default().serialize(s),
        }
    }
}

impl<'de, T: Default + PartialEq + Deserialize<'de>> Deserialize<'de> for Boxed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = T::deserialize(d)?;
        Ok(Boxed((v != T::default()).then(|| Box::new(v))))
    }
}

/// A member's identities `(kind, value)`, in one exact-size buffer of length-prefixed
/// strings: a hashed phone alone is 64 characters, which a `(Str, Str)` pair keeps in an
/// allocation of its own besides the pair's 48 bytes. It serializes as the list of pairs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Ids(Box<[u8]>);

impl Ids {
    /// The identities, in their order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let b = &self.0;
        let mut pos = 0;
        std::iter::from_fn(move || {
            (pos < b.len()).then(|| (get_str(b, &mut pos), get_str(b, &mut pos)))
        })
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `(kind, value)` is bound.
    pub fn contains(&self, kind: &str, value: &str) -> bool {
        self.iter().any(|(k, v)| k == kind && v == value)
    }

    /// The value of the first identity of `kind`.
    pub fn of_kind(&self, kind: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }

    /// The identities as owned pairs.
    pub fn to_vec(&self) -> Vec<Id> {
        self.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    /// Replaces the identities.
    pub fn set(&mut self, ids: &[Id]) {
        let mut out = Vec::new();
        for (k, v) in ids {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        self.0 = out.into_boxed_slice();
    }

    /// Whether they are in order.
    fn is_sorted(&self) -> bool {
        self.iter().is_sorted()
    }
}

impl std::fmt::Debug for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Ids {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cold::seq(s, || self.len(), self.iter())
    }
}

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<Id> = Deserialize::deserialize(d)?;
        let mut ids = Ids::default();
        ids.set(&v);
        Ok(ids)
    }
}

/// A scan reward waiting for a review's resolution (its points are taken from the budget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldReward {
    /// The scan's event id.
    pub event: u128,
    /// Campaign.
    pub campaign: Str,
    /// Points granted by the budget.
    pub points: i64,
    /// The campaign's daily cap, applied when paid.
    pub daily_cap: u32,
    /// When it was held (µs).
    pub at: i64,
}

/// A merge waiting for the survivor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merging {
    /// The survivor.
    pub into: Str,
    /// Commands received meanwhile.
    pub stash: Vec<MemberCmd>,
    /// The event each stashed command descends from (absent in states from before it was
    /// kept: those commands run under the event that ends the merge). A merge begun by one
    /// event can meet other events' commands only when shards run epochs of several events.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub origins: Vec<(uuid::Uuid, omnistream_schemas::EventTime)>,
}

/// A member's days of activity, kept newest first: the record a command changes (today's)
/// and the short windows are at the front, so a command decodes one record to change today's
/// and the windows are read in one pass. The state lists them oldest first, as it always did.
/// Beside them, the sums of the days after the newest ([`Rest`], not part of the state).
#[derive(Clone, Default)]
pub struct Days(Compact<Day>, Rest);

impl PartialEq for Days {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Days {}

/// The sums, over the days after the newest, of the counts the tag and tier conditions read
/// (not visits), and how many days before the newest the oldest is: a command changes only
/// the newest day, so when every day is in every window (a member whose days span less than
/// the shortest window, as nearly every member's do) the windows are these sums plus the
/// newest day, and the other days are not read. Kept by `Days::change` when it changes or
/// adds the newest day, forgotten by any other change, and found again by the next
/// evaluation; known only while the days are in order. Sixteen bytes: amounts and points in
/// `i32`, the counts and the span in bit fields of one `u64` (orders, orders paid partly
/// with points and scans 12 bits, clicks and the span 14); sums that do not fit are not kept
/// (`UNFIT`: the days are read, until a change that forgets the sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rest {
    amount: i32,
    earned: i32,
    fields: u64,
}

impl Default for Rest {
    fn default() -> Self {
        Rest::UNKNOWN
    }
}

/// The bit fields of [`Rest::fields`]: (count, first bit, bits); the span is [`SPAN`].
const REST_FIELDS: [(usize, u32, u32); 4] = [
    (ORDERS, 0, 12),
    (REDEEM_ORDERS, 12, 12),
    (CLICKS, 24, 14),
    (SCANS, 38, 12),
];

/// Where [`Rest::fields`] keeps the days from the oldest to the newest: (first bit, bits).
const SPAN: (u32, u32) = (50, 14);

impl Rest {
    /// Not known: the next evaluation reads the days to find them.
    const UNKNOWN: Rest = Rest::marked(i32::MIN);
    /// Too large to keep (or the days out of order): the days are read for every window.
    const UNFIT: Rest = Rest::marked(i32::MIN + 1);
    /// One day (the newest alone).
    const ZERO: Rest = Rest::marked(0);

    const fn marked(amount: i32) -> Rest {
        Rest {
            amount,
            earned: 0,
            fields: 0,
        }
    }

    /// Whether the sums are known.
    fn known(self) -> bool {
        self.amount > i32::MIN + 1
    }

    fn get(self, (at, bits): (u32, u32)) -> i64 {
        ((self.fields >> at) & ((1 << bits) - 1)) as i64
    }

    /// Field `(at, bits)` plus `v`, None when it does not fit.
    fn add(self, (at, bits): (u32, u32), v: i64) -> Option<Rest> {
        let n = u64::try_from(self.get((at, bits)) + v).ok()?;
        if n >> bits != 0 {
            return None;
        }
        Some(Rest {
            fields: self.fields & !(((1 << bits) - 1) << at) | n << at,
            ..self
        })
    }

    /// The sums plus a day's counts, with the span `later` days longer (UNFIT when they do
    /// not fit; UNKNOWN and UNFIT stay so).
    fn plus(self, c: &Counts, later: i64) -> Rest {
        if !self.known() {
            return self;
        }
        let add32 = |a: i32, b: i64| {
            i32::try_from(i64::from(a) + b)
                .ok()
                .filter(|v| *v > i32::MIN + 1)
        };
        let r = (|| {
            let mut r = Rest {
                amount: add32(self.amount, c[AMOUNT])?,
                earned: add32(self.earned, c[EARNED])?,
                fields: self.fields,
            };
            for (i, at, bits) in REST_FIELDS {
                r = r.add((at, bits), c[i])?;
            }
            r.add(SPAN, later)
        })();
        r.unwrap_or(Rest::UNFIT)
    }

    /// Days from the oldest to the newest.
    fn span(self) -> i64 {
        self.get(SPAN)
    }

    /// The sums plus the newest day's counts, as [`Days::totals`] gives them (visits 0).
    fn with(self, c: &Counts) -> Counts {
        let mut out = [0; COUNTS];
        out[AMOUNT] = i64::from(self.amount) + c[AMOUNT];
        out[EARNED] = i64::from(self.earned) + c[EARNED];
        for (i, at, bits) in REST_FIELDS {
            out[i] = self.get((at, bits)) + c[i];
        }
        out
    }
}

impl Days {
    /// The records, newest first.
    pub fn iter(&self) -> impl Iterator<Item = Day> + '_ {
        self.0.iter()
    }

    /// The newest record.
    pub fn newest(&self) -> Option<Day> {
        self.0.first()
    }

    /// Number of days.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The records oldest first, as the state lists them.
    pub fn oldest_first(&self) -> Vec<Day> {
        let mut v = self.0.to_vec();
        v.reverse();
        v
    }

    /// Calls `f` with the records as a slice, newest first.
    pub fn with_slice<R>(&self, f: impl FnOnce(&[Day]) -> R) -> R {
        self.0.with_slice(f)
    }

    /// Whether the record of `day` counts an order (and one paid with points, when
    /// `with_points`).
    fn counts(&self, day: i64, with_points: bool) -> bool {
        self.iter()
            .take_while(|d| d.day >= day)
            .any(|d| d.day == day && d.orders >= 1 && (!with_points || d.redeem_orders >= 1))
    }

    /// Changes the record of `day` (created if there is none) through `f`.
    fn change(&mut self, day: i64, f: impl FnOnce(&mut Day)) {
        // nearly always today: the newest record, or a new one before it; only the front is
        // decoded and written
        if let Compact::Packed(p) = &mut self.0 {
            let b = p.as_bytes();
            let mut pos = 0;
            // the newest day is written whole, the next as the difference from it
            let newest = get_i(b, &mut pos);
            let day_end = pos;
            let mut counts = [0; COUNTS];
            get_fields(b, &mut pos, 0, &mut counts);
            if !b.is_empty() && newest == day {
                // the next record does not change: only this one is written (and the sums of
                // the others stay)
                let mut d = Day::with_counts(day, &counts);
                f(&mut d);
                let mut head = Vec::with_capacity(16);
                d.pack(None, &mut head);
                p.splice_front(pos, &head);
                return;
            }
            if b.is_empty() || newest < day {
                // a new newest record: the one before it now follows it, its day written as
                // the difference; only a list that grew can be too long to stay packed
                let mut d = Day {
                    day,
                    ..Day::default()
                };
                f(&mut d);
                let mut head = Vec::with_capacity(16);
                d.pack(None, &mut head);
                let was_empty = b.is_empty();
                if !was_empty {
                    put_i(&mut head, newest.wrapping_sub(day));
                }
                p.splice_front(day_end, &head);
                // the newest before joins the others
                self.1 = if was_empty {
                    Rest::ZERO
                } else {
                    self.1.plus(&counts, day - newest)
                };
                if Self::count_over(p.as_bytes(), PACKED_MAX) {
                    let v = p.to_vec();
                    self.0.set(v);
                }
                return;
            }
        }
        match self.0.first() {
            Some(mut d) if d.day == day => {
                f(&mut d);
                self.0.replace_front(1, &[d]);
            }
            Some(d) if d.day > day => {
                // an older day changes: its sums are forgotten
                self.1 = Rest::UNKNOWN;
                self.change_older(day, f);
            }
            newest => {
                self.1 = match newest {
                    Some(d) => self.1.plus(&d.counts(), day - d.day),
                    None => Rest::ZERO,
                };
                let mut d = Day {
                    day,
                    ..Day::default()
                };
                f(&mut d);
                self.0.replace_front(0, &[d]);
            }
        }
    }

    /// Changes the record of `day`, which is not the newest.
    fn change_older(&mut self, day: i64, f: impl FnOnce(&mut Day)) {
        self.0.edit(|days| {
            let i = match days.binary_search_by(|d| day.cmp(&d.day)) {
                Ok(i) => i,
                Err(i) => {
                    days.insert(
                        i,
                        Day {
                            day,
                            ..Day::default()
                        },
                    );
                    i
                }
            };
            if let Some(d) = days.get_mut(i) {
                f(d);
            }
        });
    }

    /// Whether packed days `b` are more than `max` records (counted without reading them).
    fn count_over(b: &[u8], max: usize) -> bool {
        let (mut pos, mut n) = (0, 0);
        while pos < b.len() {
            if n == max {
                return true;
            }
            skip_u(b, &mut pos);
            let mask = get_u(b, &mut pos) & ((1 << COUNTS) - 1);
            for _ in 0..mask.count_ones() {
                skip_u(b, &mut pos);
            }
            n += 1;
        }
        false
    }

    /// Keeps the days after `oldest`.
    fn prune(&mut self, oldest: i64) {
        self.0.edit(|days| days.retain(|d| d.day > oldest));
        self.1 = Rest::UNKNOWN;
    }

    /// Finds the sums of the days after the newest when they are not known (one pass).
    fn know_rest(&mut self) {
        if self.1 != Rest::UNKNOWN {
            return;
        }
        let mut rest = Rest::ZERO;
        let mut prev = None;
        self.each(|day, c| {
            if let Some(p) = prev {
                // newest first, each day before the one before it
                rest = if day < p {
                    rest.plus(c, p - day)
                } else {
                    Rest::UNFIT
                };
            }
            prev = Some(day);
        });
        self.1 = rest;
    }

    /// Calls `f` with each record's day and counts, newest first.
    fn each(&self, mut f: impl FnMut(i64, &Counts)) {
        match &self.0 {
            Compact::Packed(p) => {
                let b = p.as_bytes();
                let (mut pos, mut day) = (0, 0i64);
                while pos < b.len() {
                    day = get_i(b, &mut pos).wrapping_add(day);
                    let mut c = [0; COUNTS];
                    get_fields(b, &mut pos, 0, &mut c);
                    f(day, &c);
                }
            }
            Compact::Plain(v) => v.iter().for_each(|d| f(d.day, &d.counts())),
        }
    }

    /// [`Days::totals`] without reading the days after the newest, from their sums, when
    /// they are known and every day is in every window; visits are not summed (left 0: no
    /// condition reads them). None when the days must be read.
    fn condition_totals(
        &self,
        today: i64,
        windows: &[i64],
        out: &mut [Counts],
    ) -> Option<Option<i64>> {
        if !self.1.known() {
            return None;
        }
        let (newest, counts) = match &self.0 {
            Compact::Packed(p) => {
                let b = p.as_bytes();
                if b.is_empty() {
                    return None;
                }
                let mut pos = 0;
                let day = get_i(b, &mut pos);
                let mut c = [0; COUNTS];
                get_fields(b, &mut pos, 0, &mut c);
                (day, c)
            }
            Compact::Plain(v) => {
                let d = v.first()?;
                (d.day, d.counts())
            }
        };
        if newest > today {
            return None;
        }
        // the days are in order, so the oldest is the earliest
        let oldest = newest - self.1.span();
        if windows.iter().any(|&w| w > 0 && oldest <= today - w) {
            return None;
        }
        let all = self.1.with(&counts);
        for (w, o) in windows.iter().zip(out.iter_mut()) {
            // a window of no days (a condition that reads none) sums nothing
            *o = if *w > 0 { all } else { [0; COUNTS] };
        }
        Some(Some(oldest))
    }

    /// Sums every count over each of the `windows` (in days, at most [`WINDOWS`]) ending
    /// `today` into `out` (one per window), in one pass over the days, read straight from
    /// the packed bytes; answers the oldest day. A window holds the days from the first at or
    /// before `today` on, while they are after `today - days` (for days in order: those in
    /// `(today - days, today]`).
    fn totals(&self, today: i64, windows: &[i64], out: &mut [Counts]) -> Option<i64> {
        let mut sum = Summer::new(today, windows);
        let mut oldest = None;
        match &self.0 {
            Compact::Packed(p) => {
                let b = p.as_bytes();
                let (mut pos, mut day) = (0, 0i64);
                while pos < b.len() {
                    // what `Day::unpack` reads: the day, the mask, the counts not 0
                    day = get_i(b, &mut pos).wrapping_add(day);
                    let mut set = get_u(b, &mut pos) & ((1 << COUNTS) - 1);
                    let mut c = [0; 8];
                    while set != 0 {
                        c[set.trailing_zeros() as usize & 7] = get_i(b, &mut pos);
                        set &= set - 1;
                    }
                    sum.day(day, &c, out);
                    oldest = Some(day);
                }
            }
            Compact::Plain(v) => {
                for d in v {
                    let mut c = [0; 8];
                    c[..COUNTS].copy_from_slice(&d.counts());
                    sum.day(d.day, &c, out);
                }
                oldest = v.last().map(|d| d.day);
            }
        }
        sum.finish(out);
        oldest
    }
}

/// Windows summed in one pass by [`Days::totals`].
const WINDOWS: usize = 16;

/// Sums windows over days newest first with one running total: a window ends at the first
/// day (past those after today) before it, and the shorter a window the sooner it ends, so
/// each window's sums are the running total when it ends.
struct Summer<'a> {
    today: i64,
    windows: &'a [i64],
    /// The windows, shortest first.
    order: [u8; WINDOWS],
    /// Windows ended so far (in `order`).
    ended: usize,
    /// Whether a day at or before today was seen (the days before it are not counted).
    started: bool,
    /// The counts summed so far (and an eighth, always 0, so a day's are added in one go).
    total: [i64; 8],
}

impl<'a> Summer<'a> {
    fn new(today: i64, windows: &'a [i64]) -> Self {
        let windows = windows.get(..WINDOWS).unwrap_or(windows);
        let mut order = [0u8; WINDOWS];
        for (i, o) in order.iter_mut().enumerate() {
            *o = i as u8;
        }
        let n = windows.len();
        order[..n].sort_unstable_by_key(|&k| windows.get(usize::from(k)).copied());
        Summer {
            today,
            windows,
            order,
            ended: 0,
            started: false,
            total: [0; 8],
        }
    }

    /// A day comes with its counts (the eighth 0): the windows it is before end, and it is
    /// added when it is in the others.
    #[inline]
    fn day(&mut self, day: i64, c: &[i64; 8], out: &mut [Counts]) {
        if !self.started {
            if day > self.today {
                return;
            }
            self.started = true;
        }
        while let Some(&k) = self.order[..self.windows.len()].get(self.ended) {
            let k = usize::from(k);
            match self.windows.get(k) {
                Some(&w) if day > self.today - w => break,
                _ => {
                    if let Some(o) = out.get_mut(k) {
                        o.copy_from_slice(&self.total[..COUNTS]);
                    }
                    self.ended += 1;
                }
            }
        }
        // past the longest window nothing is summed any more
        if self.ended < self.windows.len() {
            for (t, v) in self.total.iter_mut().zip(c) {
                *t += v;
            }
        }
    }

    /// The windows still open take the running total.
    fn finish(self, out: &mut [Counts]) {
        for &k in self.order[..self.windows.len()]
            .get(self.ended..)
            .unwrap_or_default()
        {
            if let Some(o) = out.get_mut(usize::from(k)) {
                o.copy_from_slice(&self.total[..COUNTS]);
            }
        }
    }
}

/// How many counts a day has ([`Day::counts`]).
const COUNTS: usize = 7;

/// A day's counts as numbers, in the order they are packed (see [`Day::counts`]).
type Counts = [i64; COUNTS];

/// Where each count is in [`Counts`].
const ORDERS: usize = 0;
const AMOUNT: usize = 1;
const REDEEM_ORDERS: usize = 2;
const CLICKS: usize = 3;
const SCANS: usize = 4;
const VISITS: usize = 5;
const EARNED: usize = 6;

impl std::fmt::Debug for Days {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.oldest_first()).finish()
    }
}

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.oldest_first().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut v = Vec::<Day>::deserialize(d)?;
        v.reverse();
        let mut c = Compact::default();
        c.set(v);
        Ok(Days(c, Rest::UNKNOWN))
    }
}

/// A member's activity on one local day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    /// Local day number.
    pub day: i64,
    /// Orders placed.
    pub orders: u32,
    /// Order value (fen).
    pub amount: i64,
    /// Orders paid partly with points.
    pub redeem_orders: u32,
    /// Ad clicks.
    pub clicks: u32,
    /// Campaign scans.
    pub scans: u32,
    /// Store visits.
    pub visits: u32,
    /// Points earned (for tiers).
    pub earned: i64,
}

/// The balance and where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Points {
    /// Available points (never negative).
    pub balance: i64,
    /// Points waiting for orders' fulfilment.
    pub pending: i64,
    /// Points owed from reversals that found too little balance.
    pub debt: i64,
    /// Lots `(earned at µs, points left)`, oldest first; their sum is the balance.
    pub lots: Compact<(i64, i64)>,
    /// Ledger entries written so far.
    pub seq: u64,
}

/// Where an order stands for points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPoints {
    /// Order value (fen).
    pub value: i64,
    /// Points waiting for fulfilment.
    pub pending: i64,
    /// Points credited at fulfilment.
    pub earned: i64,
    /// Of those, taken back by returns or cancellation.
    pub reversed: i64,
    /// Points paid with.
    pub redeemed: i64,
    /// Of those, given back.
    pub refunded: i64,
    /// Value returned so far (fen).
    pub returned: i64,
    /// Whether the placement was recorded.
    pub placed: bool,
    /// Whether the order was cancelled.
    pub cancelled: bool,
    /// Last change (µs), for pruning.
    pub at: i64,
    /// The lots the redemption took and not given back yet, `(earned at µs, points)`, oldest
    /// first: a refund puts them back with their own dates, so points refunded expire when
    /// they would have had they never been spent (encoding 15 on).
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<15, _, _>"
    )]
    pub taken: Vec<(i64, i64)>,
    /// When the points were credited (µs; 0 before fulfilment, and for orders fulfilled
    /// under encoding 15 or before): a return or cancellation takes them back from that lot
    /// first, so the member keeps the points the order did not bring (encoding 16 on).
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<16, _, _>"
    )]
    pub earned_at: i64,
}

impl Day {
    /// The record of `day` with `counts` (as [`Day::counts`] gives them; they were u32s).
    fn with_counts(day: i64, c: &Counts) -> Day {
        Day {
            day,
            orders: c[ORDERS] as u32,
            amount: c[AMOUNT],
            redeem_orders: c[REDEEM_ORDERS] as u32,
            clicks: c[CLICKS] as u32,
            scans: c[SCANS] as u32,
            visits: c[VISITS] as u32,
            earned: c[EARNED],
        }
    }

    /// The counts: orders, amount, orders paid partly with points, clicks, scans, visits,
    /// points earned.
    fn counts(&self) -> Counts {
        [
            i64::from(self.orders),
            self.amount,
            i64::from(self.redeem_orders),
            i64::from(self.clicks),
            i64::from(self.scans),
            i64::from(self.visits),
            self.earned,
        ]
    }
}

impl Pack for Day {
    /// The day number as the difference from the day before, then the counts that are not 0.
    fn pack(&self, prev: Option<&Self>, out: &mut Vec<u8>) {
        put_i(out, self.day.wrapping_sub(prev.map_or(0, |p| p.day)));
        put_fields(out, 0, 0, &self.counts());
    }
    fn unpack(prev: Option<&Self>, b: &[u8], pos: &mut usize) -> Self {
        let day = get_i(b, pos).wrapping_add(prev.map_or(0, |p| p.day));
        let mut counts = [0; COUNTS];
        get_fields(b, pos, 0, &mut counts);
        Day::with_counts(day, &counts)
    }
}

impl OrderPoints {
    /// Appends the flags, the time and the pending points (all pruning reads), then the
    /// amounts that are not 0, those most orders have first so a settled order's mask is one
    /// byte.
    fn pack(&self, out: &mut Vec<u8>) {
        let has_pending = self.pending != 0;
        let has_taken = !self.taken.is_empty();
        let has_earned_at = self.earned_at != 0;
        put_u(
            out,
            u64::from(self.placed)
                | u64::from(self.cancelled) << 1
                | u64::from(has_pending) << 2
                | u64::from(has_taken) << 3
                | u64::from(has_earned_at) << 4,
        );
        put_time(out, self.at);
        if has_pending {
            put_i(out, self.pending);
        }
        put_fields(
            out,
            0,
            0,
            &[
                self.value,
                self.earned,
                self.reversed,
                self.redeemed,
                self.refunded,
                self.returned,
            ],
        );
        if has_taken {
            put_u(out, self.taken.len() as u64);
            for &(at, points) in &self.taken {
                put_time(out, at);
                put_i(out, points);
            }
        }
        if has_earned_at {
            put_time(out, self.earned_at);
        }
    }

    /// Reads the flags, the time and the pending points; `pos` is left after them.
    fn unpack_head(b: &[u8], pos: &mut usize) -> (u64, i64, i64) {
        let flags = get_u(b, pos);
        let at = get_time(b, pos);
        let pending = if flags & 4 != 0 { get_i(b, pos) } else { 0 };
        (flags, at, pending)
    }

    /// Reads what `pack` wrote.
    fn unpack(b: &[u8]) -> OrderPoints {
        let mut pos = 0;
        let (flags, at, pending) = OrderPoints::unpack_head(b, &mut pos);
        let mut v = [0; 6];
        get_fields(b, &mut pos, 0, &mut v);
        let taken = if flags & 8 != 0 {
            let n = get_u(b, &mut pos) as usize;
            (0..n)
                .map(|_| (get_time(b, &mut pos), get_i(b, &mut pos)))
                .collect()
        } else {
            Vec::new()
        };
        let earned_at = if flags & 16 != 0 {
            get_time(b, &mut pos)
        } else {
            0
        };
        OrderPoints {
            value: v[0],
            pending,
            earned: v[1],
            reversed: v[2],
            redeemed: v[3],
            refunded: v[4],
            returned: v[5],
            placed: flags & 1 != 0,
            cancelled: flags & 2 != 0,
            at,
            taken,
            earned_at,
        }
    }
}

/// Orders' points bookkeeping by order key, in key order: packed while there are at most
/// [`PACKED_MAX`] orders, as for nearly every member, and a sorted vector beyond, where
/// lookups by binary search beat scanning the buffer. Which form it is in depends only on the
/// number of orders. It serializes as a map, the way the `BTreeMap` and then the `VecMap` it
/// replaces did.
#[derive(Clone, PartialEq, Eq)]
pub enum Orders {
    /// A few orders, packed.
    Packed(PackedOrders),
    /// Many orders.
    Map(VecMap<Str, OrderPoints>),
}

impl Default for Orders {
    fn default() -> Self {
        Orders::Packed(PackedOrders::default())
    }
}

impl Orders {
    /// The bookkeeping of `order`.
    pub fn get(&self, order: &str) -> Option<OrderPoints> {
        match self {
            Orders::Packed(p) => p.get(order),
            Orders::Map(m) => m.get(order).cloned(),
        }
    }

    /// Sets the bookkeeping of `order`.
    pub fn insert(&mut self, order: Str, o: OrderPoints) {
        match self {
            Orders::Packed(p) => {
                p.insert(order, o);
                if p.len() > PACKED_MAX {
                    *self = Orders::Map(p.iter().collect());
                }
            }
            Orders::Map(m) => {
                m.insert(order, o);
            }
        }
    }

    /// Keeps the orders whose `(time, pending points)` `f` approves of.
    pub fn retain_by_time(&mut self, mut f: impl FnMut(i64, i64) -> bool) {
        match self {
            Orders::Packed(p) => p.retain_by_time(f),
            Orders::Map(m) => {
                m.retain(|_, o| f(o.at, o.pending));
                if m.len() <= PACKED_MAX {
                    let mut p = PackedOrders::default();
                    for (k, o) in std::mem::take(m) {
                        p.insert(k, o);
                    }
                    *self = Orders::Packed(p);
                }
            }
        }
    }

    /// Orders and their bookkeeping, in key order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (Str, OrderPoints)> + '_> {
        match self {
            Orders::Packed(p) => Box::new(p.iter()),
            Orders::Map(m) => Box::new(m.iter().map(|(k, o)| (k.clone(), o.clone()))),
        }
    }

    /// Number of orders.
    pub fn len(&self) -> usize {
        match self {
            Orders::Packed(p) => p.len(),
            Orders::Map(m) => m.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        match self {
            Orders::Packed(p) => p.is_empty(),
            Orders::Map(m) => m.is_empty(),
        }
    }
}

/// A few orders' bookkeeping in one exact-size buffer, in key order: each order is its key
/// and its bookkeeping ([`OrderPoints::pack`]), both length-prefixed, so a lookup skips the
/// orders before it without decoding them and a change rewrites one order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PackedOrders(Box<[u8]>);

/// One order in [`Orders`]: its key (UTF-8, checked only when it is read out), its packed
/// bookkeeping, and where it lies in the buffer.
struct Slot<'a> {
    key: &'a [u8],
    body: &'a [u8],
    range: std::ops::Range<usize>,
}

impl PackedOrders {
    fn slots(&self) -> impl Iterator<Item = Slot<'_>> {
        let b = &self.0;
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= b.len() {
                return None;
            }
            let start = pos;
            let key = get_bytes(b, &mut pos);
            let body = get_bytes(b, &mut pos);
            Some(Slot {
                key,
                body,
                range: start..pos,
            })
        })
    }

    /// The bookkeeping of `order`.
    pub fn get(&self, order: &str) -> Option<OrderPoints> {
        self.slots()
            .find(|s| s.key == order.as_bytes())
            .map(|s| OrderPoints::unpack(s.body))
    }

    /// Sets the bookkeeping of `order`.
    pub fn insert(&mut self, order: Str, o: OrderPoints) {
        let mut body = Vec::with_capacity(32);
        o.pack(&mut body);
        // the first order not before this one: replaced when it is this one
        // (string order is byte order)
        let (at, end) = self.slots().find(|s| s.key >= order.as_bytes()).map_or(
            (self.0.len(), self.0.len()),
            |s| {
                let end = if s.key == order.as_bytes() {
                    s.range.end
                } else {
                    s.range.start
                };
                (s.range.start, end)
            },
        );
        // the entry (key and body, length-prefixed) written straight into the new buffer
        let varint_len = |n: usize| (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize;
        let entry = varint_len(order.len()) + order.len() + varint_len(body.len()) + body.len();
        let mut out = Vec::with_capacity(self.0.len() - (end - at) + entry);
        out.extend_from_slice(self.0.get(..at).unwrap_or_default());
        put_str(&mut out, &order);
        put_u(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        out.extend_from_slice(self.0.get(end..).unwrap_or_default());
        self.0 = out.into_boxed_slice();
    }

    /// Keeps the orders whose `(time, pending points)` `f` approves of (writes only when one
    /// goes).
    pub fn retain_by_time(&mut self, mut f: impl FnMut(i64, i64) -> bool) {
        let keep = |s: &Slot, f: &mut dyn FnMut(i64, i64) -> bool| {
            let (_, at, pending) = OrderPoints::unpack_head(s.body, &mut 0);
            f(at, pending)
        };
        if self.slots().all(|s| keep(&s, &mut f)) {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len());
        for s in self.slots() {
            if keep(&s, &mut f) {
                out.extend_from_slice(self.0.get(s.range).unwrap_or_default());
            }
        }
        self.0 = out.into_boxed_slice();
    }

    /// Orders and their bookkeeping, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Str, OrderPoints)> + '_ {
        self.slots().map(|s| {
            let key = std::str::from_utf8(s.key).unwrap_or_default();
            (Str::from(key), OrderPoints::unpack(s.body))
        })
    }

    /// Number of orders.
    pub fn len(&self) -> usize {
        self.slots().count()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Orders {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cold::map(s, || self.len(), self.iter())
    }
}

impl<'de> Deserialize<'de> for Orders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // through the map the state was written from: sorted, the last of equal keys wins
        let m: VecMap<Str, OrderPoints> = Deserialize::deserialize(d)?;
        if m.len() > PACKED_MAX {
            return Ok(Orders::Map(m));
        }
        let mut p = PackedOrders::default();
        for (k, o) in m {
            p.insert(k, o);
        }
        Ok(Orders::Packed(p))
    }
}

/// A member in a list (`GET /v1/members`): enough to pick out a segment, the profile for more.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberSummary {
    /// Id.
    pub id: Str,
    /// Current tier.
    pub tier: Str,
    /// Tags on.
    pub tags: Vec<Str>,
    /// Channels used.
    pub channels: Vec<Str>,
    /// Points held.
    pub balance: i64,
    /// Latest activity (RFC 3339, UTC).
    #[serde(with = "crate::shown::instant")]
    pub last_seen: i64,
}

/// A member as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    /// Id.
    pub id: Str,
    /// Identity kinds and values (personal values hashed).
    pub identities: Vec<Id>,
    /// First activity (RFC 3339, UTC).
    #[serde(with = "crate::shown::instant")]
    pub first_seen: i64,
    /// Latest activity (RFC 3339, UTC).
    #[serde(with = "crate::shown::instant")]
    pub last_seen: i64,
    /// Channels used.
    pub channels: Vec<Str>,
    /// Stores, most recent last.
    pub stores: Vec<Str>,
    /// X-RFM per configured window.
    pub xrfm: Vec<Xrfm>,
    /// Tags on.
    pub tags: Vec<Str>,
    /// Tier.
    pub tier: Str,
    /// Available points.
    pub balance: i64,
    /// Pending points.
    pub pending: i64,
    /// Points owed.
    pub debt: i64,
    /// Conflicts recorded.
    pub conflicts: u32,
    /// Scan rewards held for a person's review, oldest first (left out when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held_reviews: Vec<HeldView>,
    /// Where the member stands against the tiers now.
    pub tier_progress: TierProgress,
    /// Points of the balance that expire within 30 days of now.
    pub expiring_30d: i64,
    /// When the oldest points expire, and how many expire then (null: none held).
    pub next_expiry: Option<ExpiryView>,
    /// When each of the balance's points expire, soonest first: one entry a time (points
    /// earned, or given back, at one time expire together); their sum is the balance.
    pub expiries: Vec<ExpiryView>,
}

/// A member against the tiers, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierProgress {
    /// Points earned in the tier period (`tiers.period-days`) up to today.
    pub earned: i64,
    /// The tier period in days.
    pub period_days: i64,
    /// The tier those points qualify for now.
    pub qualifies_for: Str,
    /// The tier above the member's (null at the top).
    pub next: Option<Str>,
    /// Points more to earn within the period to reach `next` (null at the top).
    pub needed: Option<i64>,
    /// When a member whose points no longer qualify for its tier drops to the one they do
    /// (`tiers.downgrade-grace-days` after it stopped qualifying; null: it still qualifies).
    #[serde(with = "crate::shown::instant_opt")]
    pub kept_until: Option<i64>,
    /// While in that grace: points more to earn within the period to qualify for its tier
    /// again and keep it (`needed` is the way to the tier above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed_to_keep: Option<i64>,
}

/// Points due to expire, as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpiryView {
    /// When (RFC 3339, UTC).
    #[serde(with = "crate::shown::instant")]
    pub at: i64,
    /// How many.
    pub points: i64,
}

/// A scan reward held for review, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldView {
    /// The scan's event id (resolve it with `POST /v1/reviews/{scan_event}`).
    pub scan_event: uuid::Uuid,
    /// Campaign.
    pub campaign: Str,
    /// Points held.
    pub points: i64,
    /// When it was held (the scan's time, RFC 3339, UTC).
    #[serde(with = "crate::shown::instant")]
    pub at: i64,
}

/// X-RFM over one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Xrfm {
    /// Window in days.
    pub days: i64,
    /// Local days since the newest day with an order that still counts (a cancelled one
    /// does not); None: no such order.
    pub recency_days: Option<i64>,
    /// Orders in the window (net of cancellations, never below 0).
    pub frequency: u32,
    /// Order value in the window (fen), net of what was returned in it, never below 0 (a
    /// window that holds a return but not its purchase reads 0, not less).
    pub monetary: i64,
    /// Ad clicks in the window.
    pub clicks: u32,
    /// Campaign scans in the window.
    pub scans: u32,
    /// Store visits in the window.
    pub visits: u32,
}

/// Why a merge of two members was refused (a `merge_conflict`'s `reason`): they have
/// different phones, so two people as far as the service can tell (a person may merge them,
/// `MemberCmd::Join`).
pub const PHONES_DIFFER: &str = "different phone numbers";

/// Why a person's phone replacement was refused (a `merge_conflict`'s `reason`): the phone
/// is another member's.
pub const PHONE_TAKEN: &str = "the phone belongs to another member";

/// Why a person's phone replacement was refused: the member, without a phone, holds
/// `member.max-identities` identities already.
pub const PHONE_NO_ROOM: &str = "too many identities for a new phone";

/// What an event asked of member `id`, which its `member_id` named, when this system never
/// issued that id (no member of it was ever seen: a mistyped digit, another store's id):
/// nothing of it applies and no member is started; it is said instead. A scan is blocked
/// (nothing checked, nothing paid, its code left unclaimed); an order's points check or
/// redemption rejects the order; an order's sale still counts at its store, as a sale
/// without a member.
pub(crate) fn unknown(id: &Str, then: MemberCmd, ctx: &Ctx, fx: &mut Effects) {
    let (about, order) = match then {
        MemberCmd::Scan(check) => {
            let mut check = *check;
            return fx.out(Output::Decision {
                scan_event: ctx.event,
                code: std::mem::take(&mut check.code),
                member: id.clone(),
                campaign: std::mem::take(&mut check.campaign),
                decision: Decision::Block,
                score: 0,
                reasons: Vec::new(),
                reward: 0,
                held: 0,
                no_reward: Some(NoReward::UnknownMember),
                shadow_decision: None,
                scan: Some(check.scanned()),
            });
        }
        MemberCmd::HasPoints { order, .. } | MemberCmd::Redeem { order, .. } => {
            let answer = OrderCmd::UnknownMember { member: id.clone() };
            return fx.send(Key::Order(order), Cmd::Order(answer));
        }
        MemberCmd::OrderPlaced {
            order,
            store,
            lines,
            ..
        } => {
            if let Some(s) = store {
                let amount = lines
                    .iter()
                    .map(|l| l.qty.saturating_mul(l.unit_price))
                    .sum();
                let sale = StoreCmd::Sale {
                    order: order.clone(),
                    member: None,
                    amount,
                    new_member: false,
                };
                fx.send(Key::Store(s), Cmd::Store(sale));
            }
            // the order then takes the member a later status of it names
            let notice = OrderCmd::UnknownMember { member: id.clone() };
            fx.send(Key::Order(order.clone()), Cmd::Order(notice));
            ("order_placed", Some(order))
        }
        MemberCmd::OrderFulfilled { order } => ("order_fulfilled", Some(order)),
        MemberCmd::OrderCancelled { order } | MemberCmd::OrderCancelledPlaced { order, .. } => {
            ("order_cancelled", Some(order))
        }
        MemberCmd::OrderReturned { order, .. } => ("order_returned", Some(order)),
        MemberCmd::Click { .. } => ("click", None),
        MemberCmd::Visit { .. } => ("visit", None),
        MemberCmd::Identify => ("identify", None),
        // what a resolution carries is one of the above (a scan's reward is resolved after
        // its scan passed the member)
        _ => ("event", None),
    };
    fx.out(Output::UnknownMember {
        member: id.clone(),
        about: about.into(),
        order,
    });
}

impl Member {
    /// Handles one command.
    pub fn handle(&mut self, me: &Str, cmd: MemberCmd, ctx: &Ctx, fx: &mut Effects) {
        if self.id.is_empty() {
            self.id = me.clone();
        }
        if let Some(to) = self.alias_of.clone() {
            return self.forward(me, &to, cmd, fx);
        }
        if let Some(m) = self.merging.as_mut() {
            match cmd {
                // the one answer to the one state handed over: from the survivor asked, or from
                // the member it had meanwhile merged into (an alias forwards the hand-over),
                // so the answer is taken from whoever gives it (waiting for the first
                // survivor's name only would stash it, and the merge would never end)
                MemberCmd::Absorbed { into } => self.become_alias(into, ctx, fx),
                MemberCmd::AbsorbRefused { .. } => {
                    let stash = std::mem::take(&mut m.stash);
                    let mut origins = std::mem::take(&mut m.origins).into_iter();
                    self.merging = None;
                    for c in stash {
                        match origins.next() {
                            Some((event, at)) => {
                                let own = Ctx { at, event, ..*ctx };
                                let mark = fx.mark();
                                self.handle(me, c, &own, fx);
                                if event != ctx.event {
                                    fx.mark_origin(mark, event, at);
                                }
                            }
                            None => self.handle(me, c, ctx, fx),
                        }
                    }
                    // a tick that came while merging was ignored: what it was for happens
                    // now, and the next one is armed
                    self.expire(ctx, fx);
                    self.evaluate(ctx.at, ctx.rules, fx);
                }
                other => {
                    // a stash saved before origins were kept has none: its commands, and any
                    // added to it, keep running under the event that ends the merge
                    if m.origins.len() == m.stash.len() {
                        m.origins.push((ctx.event, ctx.at));
                    }
                    m.stash.push(other);
                }
            }
            return;
        }
        // an event's command that waited for a merge (see `identity::decide`): at its home it
        // runs; anywhere else it goes home, which forwards it here when home merged into this
        // member, or runs it there when the merge was refused
        if let MemberCmd::Via { home, seen } = cmd {
            if home == *me {
                return self.handle(me, *seen, ctx, fx);
            }
            return fx.send(Key::Member(home), Cmd::Member(*seen));
        }
        // a merge of several asks each member's phone first (`identity::decide`): nothing here
        // changes
        if let MemberCmd::Phones(probe) = cmd {
            let phone = self.ids.of_kind("phone").map(Str::from);
            return crate::identity::probed(*probe, me.clone(), phone, fx);
        }
        // an event named this member by its `member_id` (`identity::resolve`): a member never
        // seen was never issued (a state stored blank is none either); one seen goes on with
        // the resolution, at the event's other identities or, with none, here
        if let MemberCmd::Given(r) = cmd {
            if self.first_seen == 0 {
                return unknown(me, r.then, ctx, fx);
            }
            return match crate::identity::first_hop(r) {
                Ok((key, cmd)) => fx.send(key, cmd),
                Err(r) => {
                    let seen = MemberCmd::Seen {
                        bind: Vec::new(),
                        then: Box::new(r.then),
                    };
                    self.handle(me, seen, ctx, fx)
                }
            };
        }
        // the member's own offset, from the events that name it (they come resolved, `Seen`):
        // not a reviewer's resolution or another member's ring label, which run in the
        // service's or another sender's offset, nor a cancellation, which may be an order's
        // timer running in the offset of whatever event made it due
        if let MemberCmd::Seen { then, .. } = &cmd {
            if !matches!(
                **then,
                MemberCmd::OrderCancelled { .. } | MemberCmd::OrderCancelledPlaced { .. }
            ) {
                self.offset_min = Some(ctx.at.offset_min);
            }
        }
        self.expire(ctx, fx);
        match cmd {
            MemberCmd::Seen { bind, then } => {
                let new_member = self.first_seen == 0;
                self.bind(bind, ctx, fx);
                self.touch(ctx);
                self.apply(*then, new_member, ctx, fx);
            }
            // without resolution (a direct send or a forward): no new identities
            other => {
                let new_member = self.first_seen == 0;
                self.apply(other, new_member, ctx, fx);
            }
        }
        // a merge can bring lots already past their expiry (the other member's tick fell
        // while it was handing its state over, and a merging member ignores ticks): their
        // time is behind, so no timer would come for them; they expire now
        self.expire(ctx, fx);
        self.evaluate(ctx.at, ctx.rules, fx);
    }

    /// Forwards a command that reached an alias to the survivor.
    fn forward(&mut self, me: &Str, to: &Str, cmd: MemberCmd, fx: &mut Effects) {
        match cmd {
            MemberCmd::MergeInto { survivor } => {
                if survivor == *to || survivor == *me {
                    return;
                }
                // the survivor of the survivor: the two remaining ids merge, larger into smaller
                let (small, large) = if survivor < *to {
                    (survivor, to.clone())
                } else {
                    (to.clone(), survivor)
                };
                fx.send(
                    Key::Member(large),
                    Cmd::Member(MemberCmd::MergeInto { survivor: small }),
                );
            }
            MemberCmd::Absorbed { .. } | MemberCmd::AbsorbRefused { .. } => {}
            other => fx.send(Key::Member(to.clone()), Cmd::Member(other)),
        }
    }

    /// Applies one command to a member that is neither an alias nor merging.
    fn apply(&mut self, cmd: MemberCmd, new_member: bool, ctx: &Ctx, fx: &mut Effects) {
        let me = self.id.clone();
        let ts = ctx.ts();
        match cmd {
            MemberCmd::Seen { bind, then } => {
                self.bind(bind, ctx, fx);
                self.apply(*then, new_member, ctx, fx);
            }
            // handled in `handle`, before a command is applied
            MemberCmd::Identify
            | MemberCmd::Via { .. }
            | MemberCmd::Phones(_)
            | MemberCmd::Given(_) => {}
            MemberCmd::MergeRefused { other } => self.phones_differ(other, ctx, fx),
            MemberCmd::ReplacePhone { phone, reference } => {
                if self.ids.of_kind("phone") == Some(phone.as_str()) {
                    return; // the member's phone already
                }
                let full = self.ids.len() >= ctx.rules.member.max_identities;
                if full && self.ids.of_kind("phone").is_none() {
                    return self.not_bound(phone, PHONE_NO_ROOM, None, fx);
                }
                let claim = IdentityCmd::Claim {
                    member: me,
                    phone: phone.clone(),
                    reference,
                };
                fx.send(Key::Identity("phone".into(), phone), Cmd::Identity(claim));
            }
            MemberCmd::PhoneClaimed {
                phone,
                reference,
                taken_by,
            } => self.phone_claimed(phone, reference, taken_by, fx),
            MemberCmd::Join {
                with,
                keep,
                reference,
            } => {
                if with == me {
                    return; // one member already
                }
                // a phone other than the one kept is given up
                let mine = self.ids.of_kind("phone");
                let gives_up = matches!((mine, keep.as_deref()), (Some(p), Some(k)) if p != k);
                let released = if gives_up {
                    self.swap_phone(None, fx)
                } else {
                    None
                };
                fx.out(Output::MergeApproved {
                    member: me,
                    with: with.clone(),
                    phone: keep,
                    released,
                    reference,
                    by: None,
                });
                // then as identities would merge them: the larger id into the smaller
                let merge = MemberCmd::MergeInto { survivor: with };
                self.apply(merge, new_member, ctx, fx);
            }
            MemberCmd::Block(block) => {
                let lift = matches!(block, crate::fraud::block::BlockCmd::Lift { .. });
                if lift && self.scan.is_empty() {
                    return; // nothing blocked, no scan profile to start
                }
                let blocks = &mut self.scan.get_mut().blocks;
                let on = crate::fraud::block::BlockOn::Member;
                crate::fraud::block::apply(blocks, on, &me, block, ctx.at, fx);
            }
            MemberCmd::Click { channel, .. } => {
                if self.first_event(ctx) {
                    self.add_channel(&channel);
                    self.day(ctx.day(), |d| d.clicks += 1);
                }
            }
            MemberCmd::Visit {
                store,
                duration_s,
                channel,
            } => {
                if self.first_event(ctx) {
                    if !channel.is_empty() {
                        self.add_channel(&channel);
                    }
                    self.day(ctx.day(), |d| d.visits += 1);
                    self.at_store(&store, ts, new_member, ctx.rules);
                    self.scan.get_mut().visited(&store, ts, duration_s);
                    fx.send(
                        Key::Store(store),
                        Cmd::Store(StoreCmd::MemberVisit {
                            member: me,
                            duration_s,
                            new_member,
                        }),
                    );
                }
            }
            MemberCmd::ScanReward {
                campaign,
                code,
                points,
                daily_cap,
                store,
                verdict,
            } => {
                if !self.first_event(ctx) {
                    return;
                }
                self.scanned(store.as_ref(), ts, new_member, ctx);
                match verdict {
                    // the unchecked path (`CampaignCmd::Claim`): pay, no decision output
                    None => {
                        self.pay(campaign, points, daily_cap, ctx, fx);
                    }
                    // as stored by builds before `ScanDecided`: why nothing was granted is
                    // judged under the rules now
                    Some(v) => {
                        let not_granted = (points <= 0)
                            .then(|| NoReward::not_granted(ctx.rules.campaign(&campaign).points));
                        let v = *v;
                        self.decided(
                            campaign,
                            code,
                            points,
                            daily_cap,
                            v,
                            None,
                            not_granted,
                            ctx,
                            fx,
                        )
                    }
                }
            }
            MemberCmd::ScanDecided(d) => {
                if !self.first_event(ctx) {
                    return;
                }
                let d = *d;
                self.scanned(d.scanned.store.as_ref(), ts, new_member, ctx);
                self.decided(
                    d.campaign,
                    d.code,
                    d.points,
                    d.daily_cap,
                    d.verdict,
                    Some(d.scanned),
                    d.not_granted,
                    ctx,
                    fx,
                );
            }
            MemberCmd::Scan(mut check) => {
                if !self
                    .recent
                    .insert(ctx.event.as_u128() ^ FIRST_PASS, RECENT_EVENTS)
                {
                    return;
                }
                let first_seen = self.first_seen;
                self.scan
                    .get_mut()
                    .observe(&me, first_seen, &mut check, ctx);
                fx.send(
                    Key::Code(check.code.clone()),
                    Cmd::Code(CodeCmd::Check(check)),
                );
            }
            MemberCmd::ReviewResolve { event, allow } => {
                let id = event.as_u128();
                let Some(i) = self.held.iter().position(|h| h.event == id) else {
                    return; // resolved before, or never held here
                };
                let h = edit_boxed(&mut self.held, |held| held.remove(i));
                let reward = if allow {
                    self.pay(h.campaign.clone(), h.points, h.daily_cap, ctx, fx)
                } else {
                    self.refund(&h.campaign, h.points, fx);
                    0
                };
                fx.out(Output::ReviewResolved {
                    scan_event: event,
                    member: me,
                    campaign: h.campaign,
                    allow,
                    reward,
                    refused: false,
                    overturned: false,
                    by: None,
                });
            }
            MemberCmd::RingLabel { label } => {
                let epoch = ring::epoch(ts, ctx.rules.fraud.ring_epoch_days);
                let own = ring::ring_key(&me, epoch);
                let current = self
                    .scan
                    .get()
                    .and_then(|s| s.ring.clone())
                    .filter(|r| ring::epoch_of(r) == Some(epoch))
                    .unwrap_or(own);
                if ring::epoch_of(&label) == Some(epoch) && label < current {
                    self.scan.get_mut().ring = Some(label);
                }
            }
            MemberCmd::RingSize { ring: key, size } => {
                let epoch = ring::epoch(ts, ctx.rules.fraud.ring_epoch_days);
                if ring::epoch_of(&key) != Some(epoch) {
                    return; // a past epoch's flag
                }
                let scan = self.scan.get_mut();
                if scan
                    .ring
                    .as_ref()
                    .is_none_or(|r| ring::epoch_of(r) != Some(epoch) || key <= *r)
                {
                    scan.ring = Some(key);
                }
                scan.ring_size = scan.ring_size.max(size);
            }
            MemberCmd::OrderPlaced {
                order,
                channel,
                store,
                lines,
                points_redeemed,
            } => {
                let mut entry = self.orders.get(&order).unwrap_or_default();
                if entry.placed || entry.cancelled {
                    return; // placed once already
                }
                entry.placed = true;
                let value: i64 = lines
                    .iter()
                    .map(|l| l.qty.saturating_mul(l.unit_price))
                    .sum();
                let earn = earn_points(&lines, &channel, ctx.at, ctx.rules);
                entry.value = value;
                entry.pending = earn;
                entry.at = ts;
                self.set_order(order.clone(), entry);
                self.points.pending += earn;
                self.day(ctx.day(), |d| {
                    d.orders += 1;
                    d.amount += value;
                    if points_redeemed > 0 {
                        d.redeem_orders += 1;
                    }
                });
                self.last_order = self.last_order.max(ts);
                self.add_channel(&channel);
                self.watch_skus(&lines, ts, ctx.rules);
                fx.out(Output::Pending {
                    member: me.clone(),
                    order: order.clone(),
                    points: earn,
                    total: self.points.pending,
                });
                if let Some(s) = store {
                    self.at_store(&s, ts, new_member, ctx.rules);
                    fx.send(
                        Key::Store(s),
                        Cmd::Store(StoreCmd::Sale {
                            order,
                            member: Some(me),
                            amount: value,
                            new_member,
                        }),
                    );
                }
            }
            MemberCmd::HasPoints { order, points } => {
                let done = self.orders.get(&order).is_some_and(|o| o.redeemed > 0);
                let balance = self.points.balance;
                let ok = done || points <= balance;
                let answer = OrderCmd::PointsChecked { ok, balance };
                fx.send(Key::Order(order), Cmd::Order(answer));
            }
            MemberCmd::Redeem { order, points } => {
                let done = self.orders.get(&order).is_some_and(|o| o.redeemed > 0);
                let ok = done || points <= 0 || self.points.balance >= points;
                if ok && !done && points > 0 {
                    let (taken, lots) = self.take_lots_noting(points);
                    self.entry(-taken, 0, "redeemed", Some(order.clone()), fx);
                    let mut o = self.orders.get(&order).unwrap_or_default();
                    o.redeemed = points;
                    o.taken = lots;
                    o.at = ts;
                    self.set_order(order.clone(), o);
                }
                fx.send(
                    Key::Order(order),
                    Cmd::Order(OrderCmd::Redeemed {
                        ok,
                        balance: self.points.balance,
                    }),
                );
            }
            MemberCmd::OrderFulfilled { order } => {
                let Some(mut o) = self.orders.get(&order) else {
                    return;
                };
                if o.pending <= 0 || o.cancelled {
                    return;
                }
                let p = std::mem::take(&mut o.pending);
                o.earned = p;
                o.at = ts;
                o.earned_at = ts;
                self.set_order(order.clone(), o);
                self.points.pending -= p;
                self.day(ctx.day(), |d| d.earned += p);
                fx.out(Output::Pending {
                    member: me,
                    order: order.clone(),
                    points: 0,
                    total: self.points.pending,
                });
                self.credit(p, "earned", Some(order), ts, fx);
            }
            MemberCmd::OrderCancelled { order } => self.cancelled(me, order, None, ctx, fx),
            MemberCmd::OrderCancelledPlaced { order, placed } => {
                self.cancelled(me, order, Some(placed), ctx, fx);
            }
            MemberCmd::OrderReturned { order, value } => {
                let Some(mut o) = self.orders.get(&order) else {
                    return;
                };
                // the order coordinator only sends returns after fulfilment
                if o.cancelled || o.value <= 0 || value <= 0 || o.pending > 0 {
                    return;
                }
                let before = o.returned;
                o.returned = (o.returned + value).min(o.value);
                o.at = ts;
                // reversal rounds up and refund rounds down: a full return takes back every
                // point, and returns in many small parts never keep a point
                let want_reversed =
                    ceil_div(o.earned as i128 * o.returned as i128, o.value as i128);
                let take = want_reversed - o.reversed;
                o.reversed = want_reversed;
                let want_refunded =
                    (o.redeemed as i128 * o.returned as i128 / o.value as i128) as i64;
                let refund = want_refunded - o.refunded;
                o.refunded = want_refunded;
                let lots = give_back(&mut o.taken, refund, ts);
                let back = o.returned - before;
                let earned_at = o.earned_at;
                self.set_order(order.clone(), o);
                self.unday(ctx.day(), back, take);
                // the points paid with come back before the reversal takes any: a lot past
                // its expiry has gone by then, as it would have had it never been spent
                self.refund_lots(lots, order.clone(), ctx, fx);
                self.reverse(take, Some(order), earned_at, fx);
            }
            MemberCmd::MergeInto { survivor } => {
                if survivor == me {
                    return;
                }
                if survivor > me {
                    // merges go from the larger id to the smaller one, whoever asks
                    fx.send(
                        Key::Member(survivor),
                        Cmd::Member(MemberCmd::MergeInto { survivor: me }),
                    );
                    return;
                }
                fx.send(
                    Key::Member(survivor.clone()),
                    Cmd::Member(MemberCmd::Absorb {
                        from: me,
                        state: Box::new(self.clone()),
                    }),
                );
                self.merging = Some(Box::new(Merging {
                    into: survivor,
                    stash: Vec::new(),
                    origins: Vec::new(),
                }));
            }
            MemberCmd::Absorb { from, state } => self.absorb(from, *state, ctx, fx),
            MemberCmd::Absorbed { .. } | MemberCmd::AbsorbRefused { .. } => {}
            MemberCmd::Overturn {
                event,
                campaign,
                points,
                daily_cap,
            } => {
                if !self.first_event(ctx) {
                    return;
                }
                let reward = self.pay(campaign.clone(), points, daily_cap, ctx, fx);
                fx.out(Output::ReviewResolved {
                    scan_event: event,
                    member: me,
                    campaign,
                    allow: true,
                    reward,
                    refused: false,
                    overturned: true,
                    by: None,
                });
            }
            MemberCmd::Adjust { points, reference } => {
                if !self.first_event(ctx) {
                    return;
                }
                if points > 0 {
                    // paying what the member owes first, as any points earned do
                    self.credit(points, "adjusted", Some(reference.clone()), ts, fx);
                } else if points < 0 {
                    // never below zero: what the balance cannot cover is owed
                    let want = points.saturating_neg();
                    let take = self.take_lots(want);
                    let owed = want - take;
                    self.entry(-take, owed, "adjusted", Some(reference.clone()), fx);
                    if owed > 0 {
                        fx.out(Output::PointsDebt {
                            member: me.clone(),
                            debt: self.points.debt,
                        });
                    }
                }
                fx.out(Output::PointsAdjusted {
                    member: me,
                    reference,
                    points,
                    balance: self.points.balance,
                    debt: self.points.debt,
                    by: None,
                });
            }
        }
    }

    /// Pays a scan reward within the campaign's daily cap; points over the cap go back to the
    /// budget. Returns the points credited.
    fn pay(
        &mut self,
        campaign: Str,
        points: i64,
        daily_cap: u32,
        ctx: &Ctx,
        fx: &mut Effects,
    ) -> i64 {
        if points <= 0 {
            return 0;
        }
        let day = ctx.day();
        let mut caps = self.caps.to_vec();
        caps.retain(|(_, d, _)| *d == day);
        let used = caps.iter().position(|(c, _, _)| *c == campaign);
        let count = used.map_or(0, |i| caps[i].2);
        if count >= daily_cap {
            self.caps.set(&caps);
            fx.out(Output::RewardCapped {
                member: self.id.clone(),
                campaign: campaign.clone(),
            });
            self.refund(&campaign, points, fx);
            return 0;
        }
        match used {
            Some(i) => caps[i].2 += 1,
            None => caps.push((campaign.clone(), day, 1)),
        }
        self.caps.set(&caps);
        self.day(day, |d| d.earned += points);
        self.credit(points, "scan_reward", Some(campaign), ctx.ts(), fx);
        points
    }

    /// Gives points granted by a campaign's budget back to it.
    fn refund(&mut self, campaign: &Str, points: i64, fx: &mut Effects) {
        if points > 0 {
            fx.send(
                Key::Campaign(campaign.clone()),
                Cmd::Campaign(CampaignCmd::Refund { points }),
            );
        }
    }

    /// Refuses the oldest holds beyond `max-held-reviews` (an unbounded hold list is a state
    /// leak): their points go back to their campaigns.
    fn refuse_over_limit(&mut self, ctx: &Ctx, fx: &mut Effects) {
        let max = ctx.rules.fraud.max_held_reviews;
        let over: Vec<HeldReward> = edit_boxed(&mut self.held, |held| {
            let n = held.len().saturating_sub(max);
            held.drain(..n).collect()
        });
        for old in over {
            self.refund(&old.campaign, old.points, fx);
            fx.out(Output::ReviewResolved {
                scan_event: uuid::Uuid::from_u128(old.event),
                member: self.id.clone(),
                campaign: old.campaign,
                allow: false,
                reward: 0,
                refused: true,
                overturned: false,
                by: None,
            });
        }
    }

    /// A campaign scan counted on the member: its channel, the day's scans, the store.
    fn scanned(&mut self, store: Option<&Str>, ts: i64, new_member: bool, ctx: &Ctx) {
        self.add_channel("campaign");
        self.day(ctx.day(), |d| d.scans += 1);
        if let Some(s) = store {
            self.at_store(s, ts, new_member, ctx.rules);
        }
    }

    /// The end of a checked scan: pay, hold or refuse, and write its one decision output.
    #[allow(clippy::too_many_arguments)] // the fields of one command, unpacked
    fn decided(
        &mut self,
        campaign: Str,
        code: Str,
        points: i64,
        daily_cap: u32,
        v: Verdict,
        scanned: Option<Scanned>,
        not_granted: Option<NoReward>,
        ctx: &Ctx,
        fx: &mut Effects,
    ) {
        let (mut reward, mut held) = (0, 0);
        match v.decision {
            Decision::Allow => reward = self.pay(campaign.clone(), points, daily_cap, ctx, fx),
            Decision::Review if points > 0 => {
                held = points;
                let hold = HeldReward {
                    event: ctx.event.as_u128(),
                    campaign: campaign.clone(),
                    points,
                    daily_cap,
                    at: ctx.ts(),
                };
                edit_boxed(&mut self.held, |held| held.push(hold));
                self.refuse_over_limit(ctx, fx);
            }
            Decision::Review => {}
            Decision::Block | Decision::Duplicate => self.refund(&campaign, points, fx),
        }
        // granted points that paid nothing met the daily cap; none granted, the campaign's why
        let no_reward = match v.decision {
            Decision::Allow | Decision::Review if reward == 0 && held == 0 => {
                if points > 0 {
                    Some(NoReward::DailyCap)
                } else {
                    not_granted
                }
            }
            _ => None,
        };
        fx.out(Output::Decision {
            scan_event: ctx.event,
            code,
            member: self.id.clone(),
            campaign,
            decision: v.decision,
            score: v.score,
            reasons: v.reasons,
            reward,
            held,
            no_reward,
            shadow_decision: v.shadow_decision,
            scan: scanned,
        });
    }

    /// Whether this event is new to this member (records it).
    fn first_event(&mut self, ctx: &Ctx) -> bool {
        self.recent.insert(ctx.event.as_u128(), RECENT_EVENTS)
    }

    /// Binds identities that belonged to nobody, unless a second phone or the bound limit.
    fn bind(&mut self, ids: Vec<Id>, ctx: &Ctx, fx: &mut Effects) {
        // the new ones are bound after the loop, in one write
        let mut added: Vec<Id> = Vec::new();
        for id in ids {
            if self.ids.contains(&id.0, &id.1) || added.contains(&id) {
                continue;
            }
            let phone_clash = id.0 == "phone"
                && (self.ids.of_kind("phone").is_some() || added.iter().any(|(k, _)| k == "phone"));
            let full = self.ids.len() + added.len() >= ctx.rules.member.max_identities;
            if phone_clash || full {
                self.conflicts += 1;
                fx.out(Output::MergeConflict {
                    member: self.id.clone(),
                    other: id.0.clone(),
                    reason: if phone_clash {
                        "a second phone number".into()
                    } else {
                        "too many identities".into()
                    },
                    value: Some(id.1.clone()),
                });
                continue;
            }
            fx.send(
                Key::Identity(id.0.clone(), id.1.clone()),
                Cmd::Identity(IdentityCmd::Bind {
                    member: self.id.clone(),
                }),
            );
            added.push(id);
        }
        if !added.is_empty() || !self.ids.is_sorted() {
            let mut all = self.ids.to_vec();
            all.extend(added);
            all.sort();
            self.ids.set(&all);
        }
    }

    /// The new phone's answer to a replacement: bound to this member now, it replaces the
    /// phone the member has (which is released); another member's, nothing changes.
    fn phone_claimed(
        &mut self,
        phone: Str,
        reference: Str,
        taken_by: Option<Str>,
        fx: &mut Effects,
    ) {
        if let Some(other) = taken_by {
            return self.not_bound(phone, PHONE_TAKEN, Some(other), fx);
        }
        if self.ids.of_kind("phone") == Some(phone.as_str()) {
            return;
        }
        let previous = self.swap_phone(Some(phone.clone()), fx);
        fx.out(Output::PhoneReplaced {
            member: self.id.clone(),
            phone,
            previous,
            reference,
            by: None,
        });
    }

    /// Binds `phone` as the member's phone in place of the one it has (None: no phone any
    /// more), and releases that one: answers it.
    fn swap_phone(&mut self, phone: Option<Str>, fx: &mut Effects) -> Option<Str> {
        let previous = self.ids.of_kind("phone").map(Str::from);
        let mut all: Vec<Id> = (self.ids.to_vec().into_iter())
            .filter(|(k, _)| k != "phone")
            .collect();
        all.extend(phone.map(|p| ("phone".into(), p)));
        all.sort();
        self.ids.set(&all);
        if let Some(old) = &previous {
            let release = IdentityCmd::Release {
                member: self.id.clone(),
            };
            let key = Key::Identity("phone".into(), old.clone());
            fx.send(key, Cmd::Identity(release));
        }
        previous
    }

    /// A phone a person asked to bind that was not: counted and said, naming the member it
    /// belongs to when that is why.
    fn not_bound(&mut self, phone: Str, why: &str, other: Option<Str>, fx: &mut Effects) {
        self.conflicts += 1;
        fx.out(Output::MergeConflict {
            member: self.id.clone(),
            other: other.unwrap_or_else(|| "phone".into()),
            reason: why.into(),
            value: Some(phone),
        });
    }

    /// Records activity at `ts`.
    fn touch(&mut self, ctx: &Ctx) {
        let ts = ctx.ts();
        if self.first_seen == 0 || ts < self.first_seen {
            self.first_seen = ts;
        }
        self.last_seen = self.last_seen.max(ts);
    }

    fn add_channel(&mut self, c: &str) {
        if self.channels.has(c) {
            return;
        }
        self.channels.edit(|channels| {
            if let Err(i) = channels.binary_search_by(|x| x.as_str().cmp(c)) {
                if channels.len() < 32 {
                    channels.insert(i, Str::from(c));
                }
            }
        });
    }

    fn at_store(&mut self, store: &Str, ts: i64, new_member: bool, rules: &Rules) {
        if new_member && self.first_store.is_none() {
            self.first_store = Some(Box::new(store.clone()));
        }
        self.stores.edit(|stores| {
            stores.retain(|(s, _)| s != store);
            stores.push((store.clone(), ts));
            stores.sort_by_key(|(s, t)| (*t, s.clone()));
            let extra = stores.len().saturating_sub(rules.member.max_stores);
            stores.drain(..extra);
        });
    }

    fn watch_skus(&mut self, lines: &[LineV], ts: i64, rules: &Rules) {
        for l in lines {
            let watched = rules.tags.iter().any(
                |t| matches!(&t.when, TagCond::BoughtAny { skus, .. } if skus.contains(&l.sku)),
            );
            if watched {
                self.bought.edit(|bought| {
                    bought.retain(|(s, _)| *s != l.sku);
                    bought.push((l.sku.clone(), ts));
                });
            }
        }
    }

    /// Changes the activity record of a local day.
    fn day(&mut self, day: i64, f: impl FnOnce(&mut Day)) {
        self.days.change(day, f);
    }

    /// A cancelled order: pending points dropped, redeemed points refunded, earned points
    /// reversed. The windows (X-RFM, tags, tiers) count orders net: the points it still
    /// counted for come off on the day it is cancelled; the order itself (its count, its
    /// value, its use of points) comes off the day it was placed when `placed` says which
    /// and that day still counts it, and not at all when that day is no longer kept (no
    /// window holds it); an order placed before the time was kept (`placed` None) takes its
    /// value off the day it is cancelled.
    fn cancelled(
        &mut self,
        me: Str,
        order: Str,
        placed: Option<omnistream_schemas::EventTime>,
        ctx: &Ctx,
        fx: &mut Effects,
    ) {
        let ts = ctx.ts();
        let Some(mut o) = self.orders.get(&order) else {
            return;
        };
        if o.cancelled {
            return;
        }
        o.cancelled = true;
        o.at = ts;
        let pending = std::mem::take(&mut o.pending);
        let take = o.earned - o.reversed;
        let value = o.value - o.returned;
        let with_points = o.redeemed > 0;
        let placed_day = placed.map(omnistream_schemas::EventTime::local_day);
        let counted_on = placed_day.filter(|&d| o.placed && self.days.counts(d, with_points));
        o.reversed = o.earned;
        let refund = o.redeemed - o.refunded;
        o.refunded = o.redeemed;
        let lots = give_back(&mut o.taken, refund, ts);
        let earned_at = o.earned_at;
        self.set_order(order.clone(), o);
        if pending > 0 {
            self.points.pending -= pending;
            fx.out(Output::Pending {
                member: me,
                order: order.clone(),
                points: 0,
                total: self.points.pending,
            });
        }
        if let Some(day) = counted_on {
            self.day(day, |d| {
                d.orders -= 1;
                d.redeem_orders -= u32::from(with_points);
                d.amount -= value.max(0);
            });
        }
        // the value comes off today only when the placement's day is not known; known and
        // not counting it (pruned: no window holds it any more), nothing comes off
        let value_today = if placed_day.is_some() { 0 } else { value };
        self.unday(ctx.day(), value_today, take);
        // (given back first, as for a return)
        self.refund_lots(lots, order.clone(), ctx, fx);
        self.reverse(take, Some(order), earned_at, fx);
    }

    /// Takes a cancelled or returned order's value and points off the windows, on the day of
    /// the cancellation or return (the day's sums may go below 0: a window that holds the
    /// return but not the purchase reads lower).
    fn unday(&mut self, day: i64, value: i64, points: i64) {
        if value > 0 || points > 0 {
            self.day(day, |d| {
                d.amount -= value.max(0);
                d.earned -= points.max(0);
            });
        }
    }

    /// Adds points, paying debt first; one ledger entry says what reached the balance and what
    /// paid debt.
    fn credit(&mut self, points: i64, reason: &str, about: Option<Str>, ts: i64, fx: &mut Effects) {
        if points <= 0 {
            return;
        }
        let pay = self.debt_paid_by(points, fx);
        let add = points - pay;
        if add > 0 {
            // lots stay in time order (an older event time lands before newer lots), so the
            // oldest points expire and are spent first; usually this appends
            match self.points.lots.last_pair() {
                // usually this appends: only the end is written
                Some(l) if l.record.0 <= ts => {
                    let end = self.points.lots.end();
                    self.points
                        .lots
                        .replace_from(end, l.index + 1, Some(&l.record), &[(ts, add)]);
                }
                None => self.points.lots.set(vec![(ts, add)]),
                Some(_) => self.points.lots.edit(|lots| {
                    let at = lots.iter().rposition(|l| l.0 <= ts).map_or(0, |i| i + 1);
                    lots.insert(at, (ts, add));
                }),
            }
        }
        self.entry(add, -pay, reason, about, fx);
    }

    /// Of `points` coming in, what pays debt (said when it does); the caller writes the entry.
    fn debt_paid_by(&mut self, points: i64, fx: &mut Effects) -> i64 {
        let pay = points.min(self.points.debt);
        if pay > 0 {
            fx.out(Output::PointsDebt {
                member: self.id.clone(),
                debt: self.points.debt - pay,
            });
        }
        pay
    }

    /// Gives back an order's redeemed points as the lots [`give_back`] chose, each with its
    /// own date: debt is paid first from the oldest of them still alive, the rest join the
    /// lots in time order, and a lot already past its expiry (which pays no debt) expires at
    /// once (as it would have had it never been spent), in an `expired` entry after the
    /// `redeem_refund` one.
    fn refund_lots(&mut self, mut lots: Vec<(i64, i64)>, order: Str, ctx: &Ctx, fx: &mut Effects) {
        let points: i64 = lots.iter().map(|l| l.1).sum();
        if points <= 0 {
            return;
        }
        // only points still alive pay debt: those past their expiry come back and go
        let limit = expiry_limit(ctx);
        let alive = |earned: i64| whole_ms(earned) > limit;
        let alive_points: i64 = lots.iter().filter(|l| alive(l.0)).map(|l| l.1).sum();
        let pay = self.debt_paid_by(alive_points, fx);
        let mut left = pay;
        for lot in lots.iter_mut().filter(|l| alive(l.0)) {
            let t = lot.1.min(left);
            lot.1 -= t;
            left -= t;
        }
        lots.retain(|l| l.1 > 0);
        let add = points - pay;
        let past = lots.first().is_some_and(|l| whole_ms(l.0) <= limit);
        if !lots.is_empty() {
            self.points.lots.edit(|mine| {
                mine.extend(lots);
                mine.sort_by_key(|l| l.0);
                // a lot given back joins what is left of the lot it came from
                mine.dedup_by(|later, kept| {
                    let same = later.0 == kept.0;
                    if same {
                        kept.1 += later.1;
                    }
                    same
                });
            });
        }
        self.entry(add, -pay, "redeem_refund", Some(order), fx);
        if past {
            self.expire(ctx, fx);
        }
    }

    /// Takes up to `points` (no more than the balance) from the lots earned at `at` (none
    /// left when they were spent or expired); what it took. The caller writes the entry.
    fn take_lots_at(&mut self, at: i64, points: i64) -> i64 {
        let mut left = points.min(self.points.balance);
        let mut taken = 0;
        if left > 0 && self.points.lots.iter().any(|l| l.0 == at) {
            self.points.lots.edit(|lots| {
                for lot in lots.iter_mut().filter(|l| l.0 == at) {
                    let t = lot.1.min(left);
                    lot.1 -= t;
                    left -= t;
                    taken += t;
                }
                lots.retain(|l| l.1 > 0);
            });
        }
        taken
    }

    /// Takes up to `points` from the oldest lots (no more than the balance); what it took.
    /// The caller writes the ledger entry.
    fn take_lots(&mut self, points: i64) -> i64 {
        self.take_lots_from(points, None)
    }

    /// As [`Member::take_lots`], and which lots it took from, `(earned at, points)`, oldest
    /// first.
    fn take_lots_noting(&mut self, points: i64) -> (i64, Vec<(i64, i64)>) {
        let mut from = Vec::new();
        let taken = self.take_lots_from(points, Some(&mut from));
        (taken, from)
    }

    fn take_lots_from(&mut self, points: i64, mut from: Option<&mut Vec<(i64, i64)>>) -> i64 {
        let mut left = points.min(self.points.balance);
        let taken = left;
        if left > 0 {
            self.points.lots.edit(|lots| {
                let mut spent = 0;
                for lot in lots.iter_mut() {
                    if left <= 0 {
                        break;
                    }
                    let t = lot.1.min(left);
                    lot.1 -= t;
                    left -= t;
                    if let Some(from) = from.as_deref_mut() {
                        // lots of one (UTC) day noted as one, at the earliest: a redemption
                        // of many scan rewards keeps a day's entry, not one a scan, and what
                        // it gives back never outlives the lots it came from
                        match from.last_mut() {
                            Some(last) if last.0.div_euclid(DAY_US) == lot.0.div_euclid(DAY_US) => {
                                last.1 += t;
                            }
                            _ => from.push((lot.0, t)),
                        }
                    }
                    if lot.1 == 0 {
                        spent += 1;
                    }
                }
                lots.drain(..spent).for_each(drop);
            });
        }
        taken
    }

    /// Takes back points an order earned: first from the lot it credited (earned at
    /// `earned_at`, 0 when not known), so the member keeps the points the order did not
    /// bring and their dates, then from the oldest lots; what the balance cannot cover
    /// becomes debt, in the same ledger entry.
    fn reverse(&mut self, points: i64, about: Option<Str>, earned_at: i64, fx: &mut Effects) {
        if points <= 0 {
            return;
        }
        let own = if earned_at != 0 {
            self.take_lots_at(earned_at, points)
        } else {
            0
        };
        // (the balance moves with the entry: what the own lot gave is not there any more)
        let rest = (points - own).min(self.points.balance - own);
        let take = own + self.take_lots(rest);
        let owed = points - take;
        self.entry(-take, owed, "reversed", about, fx);
        if owed > 0 {
            fx.out(Output::PointsDebt {
                member: self.id.clone(),
                debt: self.points.debt,
            });
        }
    }

    /// Applies a change of the balance and of the debt and writes its ledger entry (none when
    /// both are 0).
    fn entry(
        &mut self,
        delta: i64,
        debt_delta: i64,
        reason: &str,
        about: Option<Str>,
        fx: &mut Effects,
    ) {
        if delta == 0 && debt_delta == 0 {
            return;
        }
        self.points.balance += delta;
        self.points.debt += debt_delta;
        self.points.seq += 1;
        fx.out(Output::Ledger {
            member: self.id.clone(),
            seq: self.points.seq,
            delta,
            balance: self.points.balance,
            reason: Str::from(reason),
            about,
            debt_delta,
            debt: self.points.debt,
        });
    }

    /// Expires lots older than the expiry period, oldest first.
    fn expire(&mut self, ctx: &Ctx, fx: &mut Effects) {
        let limit = expiry_limit(ctx);
        let (mut gone, mut n) = (0, 0);
        for (at, left) in self.points.lots.iter() {
            // (at the millisecond, as a tick runs: see [`whole_ms`])
            if whole_ms(at) > limit {
                break;
            }
            gone += left;
            n += 1;
        }
        if n > 0 {
            self.points.lots.edit(|lots| lots.drain(..n).for_each(drop));
        }
        self.entry(-gone, 0, "expired", None, fx);
    }

    /// A merge with member `other` refused, their phones differing: counted and said, once
    /// an event (each command of an event resolves its identities again: a redeeming order
    /// asks for the points, redeems and places, and would refuse the same merge three times).
    fn phones_differ(&mut self, other: Str, ctx: &Ctx, fx: &mut Effects) {
        if !self
            .recent
            .insert(refusal_mark(ctx.event, &other), RECENT_EVENTS)
        {
            return;
        }
        self.conflicts += 1;
        fx.out(Output::MergeConflict {
            member: self.id.clone(),
            other,
            reason: PHONES_DIFFER.into(),
            value: None,
        });
    }

    /// Survivor's side of a merge: take everything, or refuse for different phones.
    fn absorb(&mut self, from: Str, other: Member, ctx: &Ctx, fx: &mut Effects) {
        if let (Some(a), Some(b)) = (self.ids.of_kind("phone"), other.ids.of_kind("phone")) {
            if a != b {
                self.phones_differ(from.clone(), ctx, fx);
                fx.send(
                    Key::Member(from),
                    Cmd::Member(MemberCmd::AbsorbRefused {
                        by: self.id.clone(),
                    }),
                );
                return;
            }
        }
        let me = self.id.clone();
        let mut ids = self.ids.to_vec();
        for id in other.ids.to_vec() {
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
            fx.send(
                Key::Identity(id.0.clone(), id.1.clone()),
                Cmd::Identity(IdentityCmd::Rebind {
                    from: from.clone(),
                    to: me.clone(),
                }),
            );
        }
        ids.sort();
        self.ids.set(&ids);
        if other.first_seen != 0 && (self.first_seen == 0 || other.first_seen < self.first_seen) {
            self.first_seen = other.first_seen;
            self.first_store = other.first_store.clone();
        }
        self.last_seen = self.last_seen.max(other.last_seen);
        self.last_order = self.last_order.max(other.last_order);
        self.offset_min = self.offset_min.or(other.offset_min);
        for c in other.channels.iter() {
            self.add_channel(&c);
        }
        for (s, t) in other.stores.iter() {
            // the store remembers the other's visits under its id: they are this member's
            fx.send(
                Key::Store(s.clone()),
                Cmd::Store(StoreCmd::Renamed {
                    from: from.clone(),
                    to: me.clone(),
                }),
            );
            if !self.stores.iter().any(|(x, u)| x == s && u >= t) {
                self.at_store(&s, t, false, ctx.rules);
            }
        }
        for d in other.days.oldest_first() {
            self.day(d.day, |mine| {
                mine.orders += d.orders;
                mine.amount += d.amount;
                mine.redeem_orders += d.redeem_orders;
                mine.clicks += d.clicks;
                mine.scans += d.scans;
                mine.visits += d.visits;
                mine.earned += d.earned;
            });
        }
        for (s, t) in other.bought.iter() {
            self.bought.edit(|bought| {
                bought.retain(|(x, u)| !(*x == s && *u <= t));
                if !bought.iter().any(|(x, _)| *x == s) {
                    bought.push((s, t));
                }
            });
        }
        for (k, o) in other.orders.iter() {
            if self.orders.get(&k).is_none() {
                self.set_order(k, o);
            }
        }
        for (c, d, n) in other.caps.iter() {
            self.caps.edit(
                |caps| match caps.iter_mut().find(|(x, e, _)| *x == c && *e == d) {
                    Some(u) => u.2 += n,
                    None => caps.push((c, d, n)),
                },
            );
        }
        for &id in other.recent.0.iter() {
            self.recent.insert_fingerprint(id, RECENT_EVENTS);
        }
        self.conflicts += other.conflicts;
        // held reviews follow the person; the alias forwards their resolutions here
        edit_boxed(&mut self.held, |held| {
            held.extend(other.held);
            held.sort_by_key(|h| h.at);
        });
        // the person holds no more than one member may
        self.refuse_over_limit(ctx, fx);
        // the person's scans on both sides count for its next scan (see ScanProfile::absorb)
        let scan = self.scan.get_mut();
        let other_merged = match other.scan.get() {
            Some(s) => {
                scan.absorb(s, &ctx.rules.fraud);
                &s.merged[..]
            }
            None => &[][..],
        };
        scan.merged_in(&from, other_merged);
        self.tier_at = self.tier_at.max(other.tier_at);
        // in grace for the same tier on both sides: from the later (the person qualified
        // until then); another tier's grace is not this one's (the survivor's evaluation after
        // the merge starts its own when the person falls short)
        if other.tier == self.tier && other.grace_since > 0 {
            self.grace_since = match self.grace_since {
                0 => other.grace_since,
                mine => mine.max(other.grace_since),
            };
        }
        // points: the other's lots join ours, keeping their dates (they expire as they would)
        self.points.pending += other.points.pending;
        if other.points.balance > 0 {
            self.points.lots.edit(|lots| {
                lots.extend(other.points.lots.iter());
                lots.sort_by_key(|l| l.0);
            });
        }
        let (balance, debt) = (other.points.balance, other.points.debt);
        self.entry(balance, debt, "merged_in", Some(from.clone()), fx);
        // one side's points pay the other's debt at once: a member never holds points it
        // owes (they could be spent while the debt stands)
        let pay = self.points.debt.min(self.points.balance);
        if pay > 0 {
            let taken = self.take_lots(pay);
            self.entry(-taken, -taken, "debt_paid", Some(from.clone()), fx);
            fx.out(Output::PointsDebt {
                member: self.id.clone(),
                debt: self.points.debt,
            });
        }
        fx.out(Output::Merged {
            survivor: me.clone(),
            alias: from.clone(),
        });
        fx.send(
            Key::Member(from),
            Cmd::Member(MemberCmd::Absorbed { into: me }),
        );
    }

    /// The merged-away side: hand over, forward what waited, keep only the alias.
    fn become_alias(&mut self, into: Str, _ctx: &Ctx, fx: &mut Effects) {
        let (stash, origins) = self
            .merging
            .take()
            .map(|m| (m.stash, m.origins))
            .unwrap_or_default();
        let (b, d) = (self.points.balance, self.points.debt);
        self.entry(-b, -d, "merged_out", Some(into.clone()), fx);
        // the id merged away holds no tag any more (the survivor evaluates its own): said, as
        // its points leaving are, so a follower of `tag` outputs does not keep it tagged
        for tag in self.tags.to_vec() {
            fx.out(Output::Tag {
                member: self.id.clone(),
                tag,
                on: false,
            });
        }
        let id = std::mem::take(&mut self.id);
        let seq = self.points.seq;
        *self = Member {
            id,
            alias_of: Some(Box::new(into.clone())),
            ..Member::default()
        };
        self.points.seq = seq;
        let mut origins = origins.into_iter();
        for c in stash {
            let to = Key::Member(into.clone());
            match origins.next() {
                Some((event, at)) => fx.send_from(to, Cmd::Member(c), event, at),
                None => fx.send(to, Cmd::Member(c)),
            }
        }
    }

    /// Sets the bookkeeping of `order` (and when the orders can next be pruned).
    fn set_order(&mut self, order: Str, o: OrderPoints) {
        self.orders_due.note(o.at, o.pending);
        self.orders.insert(order, o);
    }

    /// Re-evaluates tags and tier at `now`, prunes old history, and sets the next timer.
    fn evaluate(&mut self, at: omnistream_schemas::EventTime, rules: &Rules, fx: &mut Effects) {
        if self.alias_of.is_some() || self.merging.is_some() || self.first_seen == 0 {
            return;
        }
        // the days as the member's own events count them, whoever's event made a tick due
        let at = omnistream_schemas::EventTime {
            offset_min: self.offset_min.unwrap_or(at.offset_min),
            ..at
        };
        let (now, today) = (at.unix_us, at.local_day());
        let oldest = today - rules.member.history_days;
        let keep_orders = now - rules.points.order_days * DAY_US;
        // the pass reads every order: only when one can go, and then it finds when the next can
        if !self.orders_due.none_by(keep_orders) {
            let mut due = OrdersDue(u32::MAX);
            self.orders.retain_by_time(|at, pending| {
                let keep = at > keep_orders || pending > 0;
                if keep {
                    due.note(at, pending);
                }
                keep
            });
            self.orders_due = due;
        }
        // the days read once for every window (or only the newest, with the sums of the
        // others), and for the oldest day (the last: newest first), which is pruned when it
        // is too old, then the days read again
        self.days.know_rest();
        let judged = match self.judge(now, today, oldest, rules) {
            Some(j) => j,
            None => {
                self.days.prune(oldest);
                self.judge(now, today, oldest, rules).unwrap_or_default()
            }
        };
        let (mut tags, earned, first_day) = judged;
        tags.sort();
        tags.dedup();
        if !self.tags.is(&tags) {
            let current = self.tags.to_vec();
            for t in tags.iter().filter(|t| !current.contains(t)) {
                fx.out(Output::Tag {
                    member: self.id.clone(),
                    tag: t.clone(),
                    on: true,
                });
            }
            for t in current.iter().filter(|t| !tags.contains(t)) {
                fx.out(Output::Tag {
                    member: self.id.clone(),
                    tag: t.clone(),
                    on: false,
                });
            }
            self.tags.set(&tags);
        }
        self.update_tier(earned, now, rules, fx);
        // the start of today where the days are counted (the sender's local midnight)
        let today_start = today * DAY_US - i64::from(at.offset_min) * 60_000_000;
        self.arm_timer(now, today, today_start, first_day, rules, fx);
    }

    /// The tags that hold at `now` (in the rules' order), the points earned in the tier
    /// period and the oldest day; None when the oldest day is at or before `oldest` (to be
    /// pruned first). The days are read once for the tier period and up to 15 tags' windows.
    fn judge(
        &self,
        now: i64,
        today: i64,
        oldest: i64,
        rules: &Rules,
    ) -> Option<(Vec<Str>, i64, Option<i64>)> {
        // a long history (more than 32 days, kept plain): each window summed over the slice,
        // the field it needs only, which beats one pass adding every count of ~400 days
        if let Compact::Plain(days) = &self.days.0 {
            let first_day = days.last().map(|d| d.day);
            if first_day.is_some_and(|d| d <= oldest) {
                return None;
            }
            let tags = rules
                .tags
                .iter()
                .filter(|t| self.holds_in(days, &t.when, now, today))
                .map(|t| t.name.clone())
                .collect();
            let earned = sum_days(days, today, rules.tiers.period_days, |d| d.earned);
            return Some((tags, earned, first_day));
        }
        const PASS: usize = WINDOWS;
        let mut windows = [0i64; PASS];
        let mut totals = [[0i64; COUNTS]; PASS];
        let (mut tags, mut earned, mut first_day) = (Vec::new(), 0, None);
        // the first pass has the tier period in slot 0; rules with more tags take more passes
        let mut rest = &rules.tags[..];
        let mut first = true;
        loop {
            let skip = usize::from(first);
            let (chunk, after) = rest.split_at(rest.len().min(PASS - skip));
            let n = skip + chunk.len();
            if first {
                windows[0] = rules.tiers.period_days;
            }
            for (w, t) in windows[skip..n].iter_mut().zip(chunk) {
                *w = t.when.day_window().unwrap_or(0);
            }
            // the days after the newest are read only when their sums do not answer
            let (w, t) = (&windows[..n], &mut totals[..n]);
            let day_of_oldest = match first.then(|| self.days.condition_totals(today, w, t)) {
                Some(Some(oldest)) => oldest,
                _ => self.days.totals(today, w, t),
            };
            if first {
                if day_of_oldest.is_some_and(|d| d <= oldest) {
                    return None;
                }
                first_day = day_of_oldest;
                earned = totals[0][EARNED];
            }
            for (t, sums) in chunk.iter().zip(&totals[skip..n]) {
                if self.holds_on(&t.when, sums, now) {
                    tags.push(t.name.clone());
                }
            }
            if after.is_empty() {
                return Some((tags, earned, first_day));
            }
            rest = after;
            first = false;
        }
    }

    /// Whether a tag condition holds at `now`.
    pub fn holds(&self, cond: &TagCond, now: i64, today: i64) -> bool {
        let mut sums = [[0; COUNTS]; 1];
        if let Some(w) = cond.day_window() {
            self.days.totals(today, &[w], &mut sums);
        }
        self.holds_on(cond, &sums[0], now)
    }

    /// [`Member::holds`] over days kept plain.
    fn holds_in(&self, days_kept: &[Day], cond: &TagCond, now: i64, today: i64) -> bool {
        let sums = |f: fn(&Day) -> i64| sum_days(days_kept, today, cond.days(), f);
        match cond {
            TagCond::MonetaryOver { fen, .. } => sums(|d| d.amount) > *fen,
            TagCond::OrdersAtLeast { count, .. } => {
                sums(|d| i64::from(d.orders)) >= i64::from(*count)
            }
            TagCond::ScansAtLeast { count, .. } => {
                sums(|d| i64::from(d.scans)) >= i64::from(*count)
            }
            TagCond::ClicksAtLeast { count, .. } => {
                sums(|d| i64::from(d.clicks)) >= i64::from(*count)
            }
            TagCond::RedeemShareOver { days, .. } => {
                // one pass for both sums
                let (orders, redeemed) = window(days_kept, today, *days)
                    .fold((0, 0), |(o, r), d| {
                        (o + i64::from(d.orders), r + i64::from(d.redeem_orders))
                    });
                let mut s = [0; COUNTS];
                s[ORDERS] = orders;
                s[REDEEM_ORDERS] = redeemed;
                self.holds_on(cond, &s, now)
            }
            TagCond::InactiveFor { .. } | TagCond::BoughtAny { .. } => {
                self.holds_on(cond, &[0; COUNTS], now)
            }
        }
    }

    /// [`Member::holds`] with the condition's window's sums (from [`Days::totals`]).
    fn holds_on(&self, cond: &TagCond, sums: &Counts, now: i64) -> bool {
        match cond {
            TagCond::MonetaryOver { fen, .. } => sums[AMOUNT] > *fen,
            TagCond::OrdersAtLeast { count, .. } => sums[ORDERS] >= i64::from(*count),
            TagCond::InactiveFor { days } => {
                self.last_seen > 0 && now - whole_ms(self.last_seen) >= days * DAY_US
            }
            TagCond::BoughtAny { days, skus } => self
                .bought
                .iter()
                .any(|(s, t)| skus.contains(&s) && whole_ms(t) > now - days * DAY_US),
            TagCond::ScansAtLeast { count, .. } => sums[SCANS] >= i64::from(*count),
            TagCond::ClicksAtLeast { count, .. } => sums[CLICKS] >= i64::from(*count),
            TagCond::RedeemShareOver {
                share, min_orders, ..
            } => {
                let (orders, redeemed) = (sums[ORDERS], sums[REDEEM_ORDERS]);
                orders >= i64::from(*min_orders)
                    && orders > 0
                    && redeemed as f64 / orders as f64 >= *share
            }
        }
    }

    /// Sets the tier for the points `earned` in the tier period.
    fn update_tier(&mut self, earned: i64, now: i64, rules: &Rules, fx: &mut Effects) {
        let level = |name: &str| {
            rules
                .tiers
                .levels
                .iter()
                .position(|l| l.name == name)
                .map_or(0, |i| i + 1)
        };
        let qualified = rules
            .tiers
            .levels
            .iter()
            .rposition(|l| earned >= l.min_earned)
            .map_or(0, |i| i + 1);
        let current = level(&self.tier);
        if self.tier.is_empty() {
            self.tier = rules.tiers.base.clone();
        }
        let name_of = |i: usize| {
            if i == 0 {
                rules.tiers.base.clone()
            } else {
                rules.tiers.levels[i - 1].name.clone()
            }
        };
        // up at once; down only after the grace period since the member stopped qualifying
        // (the evaluation that first found it short: an event taking points back, or a day
        // leaving the tier period, whose timer runs at that day's midnight)
        let grace = rules.tiers.downgrade_grace_days * DAY_US;
        if qualified < current && self.grace_since == 0 {
            // (at the millisecond, as the tick that ends it runs: see [`whole_ms`])
            self.grace_since = whole_ms(now);
        }
        let next = if qualified < current && now - self.grace_since < grace {
            current
        } else {
            self.grace_since = 0;
            self.tier_at = now;
            qualified
        };
        let name = name_of(next);
        if name != self.tier {
            fx.out(Output::Tier {
                member: self.id.clone(),
                tier: name.clone(),
                from: std::mem::replace(&mut self.tier, name),
                earned: Some(earned),
            });
        }
    }

    /// Asks for a tick at the next time something changes without an event: a dormant tag,
    /// a lot expiring, a windowed tag or tier losing a day, a bought SKU's tag running out.
    /// Only times still ahead count: a member already dormant has its dormant time behind
    /// it, and that must not hide the lots' expiry and the windows' ends that come later.
    fn arm_timer(
        &mut self,
        now: i64,
        today: i64,
        today_start: i64,
        first_day: Option<i64>,
        rules: &Rules,
        fx: &mut Effects,
    ) {
        let mut next = i64::MAX;
        let mut ahead = |at: i64| {
            if at > now {
                next = next.min(at);
            }
        };
        for t in &rules.tags {
            match &t.when {
                // (each at the millisecond, as the tick runs: see [`whole_ms`])
                TagCond::InactiveFor { days } => ahead(whole_ms(self.last_seen) + days * DAY_US),
                TagCond::BoughtAny { days, skus } => {
                    for (s, at) in self.bought.iter() {
                        if skus.contains(&s) {
                            ahead(whole_ms(at) + days * DAY_US);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some((at, _)) = self.points.lots.first() {
            ahead(whole_ms(at) + rules.points.expiry_days * DAY_US + 1);
        }
        if let Some(first) = first_day {
            // a day leaves a window of `w` days at the start of its day + `w`, the midnight
            // where the days are counted; the soonest over every window is when a windowed
            // tag or the tier may change with no event. A window's oldest day is the oldest
            // of all while the days span less than the window (nearly every member's do);
            // the days are read only for the windows the oldest day has left already
            let windows = || {
                rules
                    .tags
                    .iter()
                    .filter_map(|t| t.when.day_window())
                    .chain([rules.tiers.period_days])
                    .filter(|&w| w > 0)
            };
            let mut leaves = i64::MAX;
            let mut left = 0;
            for w in windows() {
                if first + w > today {
                    leaves = leaves.min(first + w);
                } else {
                    left = left.max(w);
                }
            }
            if left > 0 {
                for d in self.days.iter().map(|d| d.day) {
                    if d <= today - left {
                        break; // newest first: the rest are in no window read here
                    }
                    for w in windows().filter(|&w| d + w > today) {
                        leaves = leaves.min(d + w);
                    }
                }
            }
            if leaves != i64::MAX {
                ahead(today_start + (leaves - today) * DAY_US);
            }
        }
        if rules.tiers.downgrade_grace_days > 0 && self.grace_since > 0 {
            ahead(self.grace_since + rules.tiers.downgrade_grace_days * DAY_US);
        }
        if next != i64::MAX && next != self.timer_at {
            self.timer_at = next;
            fx.timer(Key::Member(self.id.clone()), next);
        }
    }

    /// A timer is due: expire points and re-evaluate tags and tier at `ctx.at`.
    pub fn tick(&mut self, ctx: &Ctx, fx: &mut Effects) {
        if self.alias_of.is_some() || self.merging.is_some() {
            return;
        }
        // the member's one timer fired (the engine keeps one per key), whenever it was set
        // for: a timer brought forward by a rules change fires before `timer_at`
        self.timer_at = 0;
        self.expire(ctx, fx);
        self.evaluate(ctx.at, ctx.rules, fx);
    }

    /// What a member list shows of this member.
    pub fn summary(&self) -> MemberSummary {
        MemberSummary {
            id: self.id.clone(),
            tier: self.tier.clone(),
            tags: self.tags.to_vec(),
            channels: self.channels.to_vec(),
            balance: self.points.balance,
            last_seen: self.last_seen,
        }
    }

    /// The member as the API shows it, with X-RFM at `now`.
    pub fn view(&self, now: i64, today: i64, rules: &Rules) -> MemberView {
        // local days since the newest day with an order that still counts (a cancellation
        // takes its order off the day it was placed, so a cancelled order is no purchase);
        // an order older than the days kept (`member.history-days`) by 24-hour periods
        let recency_days = match self.days.iter().find(|d| d.orders > 0) {
            Some(d) => Some((today - d.day).max(0)),
            None => {
                let since = (now - self.last_order).max(0) / DAY_US;
                (self.last_order > 0 && since >= rules.member.history_days).then_some(since)
            }
        };
        let xrfm = rules
            .member
            .rfm_windows_days
            .iter()
            .map(|&w| {
                let mut sums = [[0; COUNTS]; 1];
                self.days.totals(today, &[w], &mut sums);
                let s = sums[0];
                Xrfm {
                    days: w,
                    recency_days,
                    frequency: s[ORDERS].max(0) as u32,
                    monetary: s[AMOUNT].max(0),
                    clicks: s[CLICKS] as u32,
                    scans: s[SCANS] as u32,
                    visits: s[VISITS] as u32,
                }
            })
            .collect();
        let mut sums = [[0; COUNTS]; 1];
        self.days
            .totals(today, &[rules.tiers.period_days], &mut sums);
        let earned = sums[0][EARNED];
        let levels = &rules.tiers.levels;
        let current = levels
            .iter()
            .position(|l| l.name == self.tier)
            .map_or(0, |i| i + 1);
        let qualified = levels
            .iter()
            .rposition(|l| earned >= l.min_earned)
            .map_or(0, |i| i + 1);
        let tier_progress = TierProgress {
            earned,
            period_days: rules.tiers.period_days,
            qualifies_for: match qualified {
                0 => rules.tiers.base.clone(),
                i => levels[i - 1].name.clone(),
            },
            next: levels.get(current).map(|l| l.name.clone()),
            needed: levels.get(current).map(|l| (l.min_earned - earned).max(0)),
            // (a member not reckoned since it stopped qualifying: its grace starts at its next
            // reckoning, its timer at the latest)
            kept_until: (qualified < current).then(|| {
                let since = if self.grace_since > 0 {
                    self.grace_since
                } else if self.timer_at > 0 {
                    whole_ms(self.timer_at)
                } else {
                    whole_ms(now)
                };
                since + rules.tiers.downgrade_grace_days * DAY_US
            }),
            // (`current` counts the levels up to the member's: 1 or more when it is above)
            needed_to_keep: (qualified < current)
                .then(|| (levels[current - 1].min_earned - earned).max(0)),
        };
        let expiry = rules.points.expiry_days * DAY_US;
        let mut expiries: Vec<ExpiryView> = Vec::new();
        for (at, points) in self.points.lots.iter() {
            match expiries.last_mut() {
                Some(last) if last.at == at + expiry => last.points += points,
                _ => expiries.push(ExpiryView {
                    at: at + expiry,
                    points,
                }),
            }
        }
        let next_expiry = expiries.first().cloned();
        let expiring_30d = expiries
            .iter()
            .take_while(|e| e.at <= now + 30 * DAY_US)
            .map(|e| e.points)
            .sum();
        MemberView {
            id: self.id.clone(),
            identities: self.ids.to_vec(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            channels: self.channels.to_vec(),
            stores: self.stores.iter().map(|(s, _)| s).collect(),
            xrfm,
            tags: self.tags.to_vec(),
            tier: self.tier.clone(),
            balance: self.points.balance,
            pending: self.points.pending,
            debt: self.points.debt,
            conflicts: self.conflicts,
            held_reviews: self
                .held
                .iter()
                .map(|h| HeldView {
                    scan_event: uuid::Uuid::from_u128(h.event),
                    campaign: h.campaign.clone(),
                    points: h.points,
                    at: h.at,
                })
                .collect(),
            tier_progress,
            expiring_30d,
            next_expiry,
            expiries,
        }
    }
}

/// The newest time a lot may have been earned at (at the millisecond, see [`whole_ms`]) and
/// be expired at `ctx`'s time.
fn expiry_limit(ctx: &Ctx) -> i64 {
    ctx.ts() - ctx.rules.points.expiry_days * DAY_US
}

/// `us` down to its whole millisecond. A timer runs its tick at the millisecond of the time it
/// was set for (the engine's ticks are whole milliseconds), so a time the member's timers
/// wait for is compared at the millisecond: a lot earned, a last visit or a purchase stamped
/// to the microsecond would otherwise still be short of its end when the tick runs, arm the
/// same timer again, and fire it for ever.
fn whole_ms(us: i64) -> i64 {
    us.div_euclid(1000) * 1000
}

/// Points an order's lines earn in a channel, placed at `at`: per line, value × channel, SKU
/// and promotion multipliers ÷ fen per point, rounded down.
pub fn earn_points(
    lines: &[LineV],
    channel: &str,
    at: omnistream_schemas::EventTime,
    rules: &Rules,
) -> i64 {
    let p = &rules.points;
    let cm = p.channel_multiplier.get(channel).copied().unwrap_or(1.0) * p.promotion(at, channel);
    lines
        .iter()
        .map(|l| {
            let sm = p.sku_multiplier.get(&l.sku).copied().unwrap_or(1.0);
            let value = l.qty.saturating_mul(l.unit_price) as f64;
            (value * cm * sm / p.fen_per_point as f64).floor() as i64
        })
        .sum()
}

/// The sum of `f` over the days in the `days`-long window ending `today`; `kept` is newest
/// first, so the window is at its front. (For days kept plain; [`Days::totals`] sums the same
/// windows over packed days.)
fn sum_days(kept: &[Day], today: i64, days: i64, f: impl Fn(&Day) -> i64) -> i64 {
    window(kept, today, days).map(f).sum()
}

/// The days of `kept` (newest first) in the `days`-long window ending `today`.
fn window(kept: &[Day], today: i64, days: i64) -> impl Iterator<Item = &Day> {
    kept.iter()
        .skip_while(move |d| d.day > today)
        .take_while(move |d| d.day > today - days)
}

/// Of the lots a redemption took (`taken`, oldest first), the `points` a refund gives back,
/// oldest first: the youngest first, so what stays taken is what a smaller redemption
/// would have taken (the oldest lots). Points beyond what `taken` holds (an order redeemed
/// before encoding 15 noted its lots) come back as a lot of `now`.
fn give_back(taken: &mut Vec<(i64, i64)>, points: i64, now: i64) -> Vec<(i64, i64)> {
    let mut left = points.max(0);
    let mut back = Vec::new();
    while left > 0 {
        let Some(last) = taken.last_mut() else {
            back.push((now, left));
            break;
        };
        let t = last.1.min(left);
        back.push((last.0, t));
        last.1 -= t;
        left -= t;
        if last.1 <= 0 {
            taken.pop();
        }
    }
    back.sort_by_key(|l| l.0);
    back
}

fn ceil_div(a: i128, b: i128) -> i64 {
    if b == 0 {
        return 0;
    }
    ((a + b - 1) / b) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TagCond;
    use crate::fraud::{Features, ScanCheck};
    use crate::refdata::NO_REFS;
    use omnistream_schemas::EventTime;
    use uuid::Uuid;

    /// A context `min` minutes after a fixed instant, with event id `min + 1`.
    fn ctx(rules: &Rules, min: i64) -> Ctx<'_> {
        Ctx {
            at: EventTime::from_unix_ms(1_794_000_000_000 + min * 60_000),
            event: Uuid::from_u128(min as u128 + 1),
            rules,
            refs: &NO_REFS,
        }
    }

    /// The member keeps the offset of the events that name it: not a reviewer's resolution
    /// (run in the service's offset), nor a cancellation (an order's timer runs in the
    /// offset of whatever event made it due).
    #[test]
    fn the_offset_kept_is_the_members_own_events() {
        let rules = rules();
        let me = Str::from("m3");
        let mut m = Member::default();
        let seen = |then| MemberCmd::Seen {
            bind: vec![("openid".into(), "o3".into())],
            then: Box::new(then),
        };
        let shanghai = Ctx {
            at: EventTime {
                offset_min: 480,
                ..ctx(&rules, 0).at
            },
            ..ctx(&rules, 0)
        };
        let mut fx = Effects::default();
        m.handle(&me, seen(MemberCmd::Identify), &shanghai, &mut fx);
        assert_eq!(m.offset_min, Some(480));
        let resolve = MemberCmd::ReviewResolve {
            event: Uuid::from_u128(9),
            allow: true,
        };
        m.handle(&me, resolve, &ctx(&rules, 10), &mut fx);
        let cancel = MemberCmd::OrderCancelled {
            order: "mall:O1".into(),
        };
        m.handle(&me, seen(cancel), &ctx(&rules, 20), &mut fx);
        assert_eq!(m.offset_min, Some(480));
        let click = MemberCmd::Click {
            channel: "mall".into(),
            campaign: None,
        };
        m.handle(&me, seen(click), &ctx(&rules, 30), &mut fx);
        assert_eq!(m.offset_min, Some(0));
    }

    /// A member named by id is asked first: a state stored blank (never seen) refuses the
    /// event and stays blank; a seen one goes on at the event's identities, or with none runs
    /// the command itself.
    #[test]
    fn a_given_member_never_seen_refuses_and_a_seen_one_goes_on() {
        let rules = rules();
        let me = Str::from("m3");
        let given = |ids: Vec<Id>| {
            MemberCmd::Given(Box::new(crate::cmd::Resolve {
                found: Vec::new(),
                ids,
                given: Some(me.clone()),
                then: MemberCmd::Identify,
                first_released: 0,
            }))
        };
        let (mut m, mut fx) = (Member::default(), Effects::default());
        m.handle(&me, given(Vec::new()), &ctx(&rules, 0), &mut fx);
        assert_eq!(m.first_seen, 0, "no member started");
        assert!(fx.sends.is_empty());
        assert!(
            matches!(&fx.outputs[..], [Output::UnknownMember { member, about, order: None }] if member == "m3" && about == "identify"),
            "{:?}",
            fx.outputs
        );
        // seen: its identities next, or the command here
        let seen = MemberCmd::Seen {
            bind: vec![("openid".into(), "o3".into())],
            then: Box::new(MemberCmd::Identify),
        };
        m.handle(&me, seen, &ctx(&rules, 1), &mut fx);
        let mut fx = Effects::default();
        m.handle(
            &me,
            given(vec![("tmall".into(), "t3".into())]),
            &ctx(&rules, 2),
            &mut fx,
        );
        assert!(fx.outputs.is_empty());
        assert!(
            matches!(&fx.sends[..], [(Key::Identity(k, v), Cmd::Identity(_))] if k == "tmall" && v == "t3")
        );
        let last = m.last_seen;
        m.handle(&me, given(Vec::new()), &ctx(&rules, 3), &mut fx);
        assert!(m.last_seen > last, "the event ran here");
    }

    /// An unchecked scan reward of 5 points in campaign `c1` (the properties' scan).
    fn scan_reward() -> MemberCmd {
        MemberCmd::ScanReward {
            campaign: "c1".into(),
            code: "K".into(),
            points: 5,
            daily_cap: 9,
            store: None,
            verdict: None,
        }
    }

    /// [`rules`] with these tag rules added.
    fn rules_with_tags<const N: usize>(tags: [(&str, TagCond); N]) -> Rules {
        let mut r = rules();
        for (name, when) in tags {
            r.tags.push(crate::config::TagRule {
                name: name.into(),
                when,
            });
        }
        r
    }

    fn rules() -> Rules {
        let mut r = Rules::default();
        for t in &mut r.tags {
            if let TagCond::BoughtAny { skus, .. } = &mut t.when {
                skus.push("SKU-NEW".into());
            }
        }
        r
    }

    fn order(m: &mut Member, me: &Str, min: i64, n: u32, redeem: i64, rules: &Rules) {
        let c = ctx(rules, min);
        let mut fx = Effects::default();
        let order = compact_str::format_compact!("mall:O{n}");
        if redeem > 0 {
            m.handle(
                me,
                MemberCmd::Redeem {
                    order: order.clone(),
                    points: redeem,
                },
                &c,
                &mut fx,
            );
        }
        m.handle(
            me,
            MemberCmd::OrderPlaced {
                order,
                channel: "mall".into(),
                store: n.is_multiple_of(2).then(|| "st-002".into()),
                lines: vec![
                    LineV {
                        sku: "SKU-COLA-500".into(),
                        qty: 2,
                        unit_price: 350 + i64::from(n) * 1_000,
                    },
                    LineV {
                        sku: "SKU-NEW".into(),
                        qty: 1,
                        unit_price: 1_999,
                    },
                ],
                points_redeemed: redeem,
            },
            &c,
            &mut fx,
        );
    }

    fn scan_check(code: &str) -> ScanCheck {
        ScanCheck {
            campaign: "cny-2027".into(),
            code: code.into(),
            sku: "SKU-COLA-500".into(),
            device: "dev-1".into(),
            ip: "10.1.2.3".into(),
            net: "10.1.2.0/24".into(),
            geo: Some((31.23, 121.47)),
            store: None,
            member: Str::default(),
            ring: Str::default(),
            fresh: false,
            merged: Vec::new(),
            batch: None,
            dealer: None,
            features: Features::default(),
        }
    }

    /// A member whose every part is in use: first store, orders placed, fulfilled, returned,
    /// cancelled and pending, redeemed points, watched SKUs, caps, held rewards, a scan
    /// profile, a ring, and another member absorbed.
    fn full_member(rules: &Rules) -> Member {
        let me = Str::from("m0123456789abcdef");
        let mut m = Member::default();
        let mut fx = Effects::default();
        m.handle(
            &me,
            MemberCmd::Seen {
                bind: vec![
                    (
                        "phone".into(),
                        "9f2c4d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d".into(),
                    ),
                    ("openid".into(), "oX7f_2kq9ZLmA81bC3dEfGhIjK".into()),
                ],
                then: Box::new(MemberCmd::Visit {
                    store: "st-001".into(),
                    duration_s: Some(600),
                    channel: Default::default(),
                }),
            },
            &ctx(rules, 0),
            &mut fx,
        );
        for n in 0..6u32 {
            let min = i64::from(n) * 8_640;
            order(&mut m, &me, min, n, if n == 4 { 20 } else { 0 }, rules);
            if n != 5 {
                let c = ctx(rules, min + 1);
                let order = compact_str::format_compact!("mall:O{n}");
                m.handle(&me, MemberCmd::OrderFulfilled { order }, &c, &mut fx);
            }
            m.handle(
                &me,
                MemberCmd::Click {
                    channel: "douyin".into(),
                    campaign: None,
                },
                &ctx(rules, min + 2),
                &mut fx,
            );
        }
        let c = ctx(rules, 50_000);
        m.handle(
            &me,
            MemberCmd::OrderReturned {
                order: "mall:O4".into(),
                value: 1_000,
            },
            &c,
            &mut fx,
        );
        m.handle(
            &me,
            MemberCmd::OrderCancelled {
                order: "mall:O3".into(),
            },
            &ctx(rules, 50_001),
            &mut fx,
        );
        for i in 0..3 {
            let mut check = scan_check(&format!("C{i}"));
            check.geo = Some((31.23 + f64::from(i), 121.47));
            m.handle(
                &me,
                MemberCmd::Scan(Box::new(check)),
                &ctx(rules, 50_010 + i64::from(i)),
                &mut fx,
            );
            let verdict = (i == 1).then(|| {
                Box::new(Verdict {
                    decision: Decision::Review,
                    score: 60,
                    reasons: Vec::new(),
                    shadow_decision: None,
                })
            });
            m.handle(
                &me,
                MemberCmd::ScanReward {
                    campaign: "cny-2027".into(),
                    code: format!("C{i}").into(),
                    points: 10,
                    daily_cap: 3,
                    store: Some("st-003".into()),
                    verdict,
                },
                &ctx(rules, 50_010 + i64::from(i)),
                &mut fx,
            );
        }
        let epoch = ring::epoch(ctx(rules, 50_020).ts(), rules.fraud.ring_epoch_days);
        m.handle(
            &me,
            MemberCmd::RingSize {
                ring: ring::ring_key("m0000", epoch),
                size: 5,
            },
            &ctx(rules, 50_020),
            &mut fx,
        );
        // another member with its own history merges into this one
        let other_id = Str::from("m9");
        let mut other = Member::default();
        other.handle(
            &other_id,
            MemberCmd::Seen {
                bind: vec![("openid".into(), "o-other".into())],
                then: Box::new(MemberCmd::Visit {
                    store: "st-009".into(),
                    duration_s: None,
                    channel: Default::default(),
                }),
            },
            &ctx(rules, -20_000),
            &mut fx,
        );
        order(&mut other, &other_id, -20_000, 7, 0, rules);
        other.handle(
            &other_id,
            MemberCmd::OrderFulfilled {
                order: "mall:O7".into(),
            },
            &ctx(rules, -19_999),
            &mut fx,
        );
        m.handle(
            &me,
            MemberCmd::Absorb {
                from: other_id,
                state: Box::new(other),
            },
            &ctx(rules, 50_030),
            &mut fx,
        );
        m
    }

    /// JSON of `full_member`, as the layout before the compact one (commit f2fde8e) wrote it.
    const FULL_JSON: &str = r#"{"id":"m0123456789abcdef","ids":[["openid","o-other"],["openid","oX7f_2kq9ZLmA81bC3dEfGhIjK"],["phone","9f2c4d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"]],"first_seen":1792800000000000,"last_seen":1794000000000000,"first_store":"st-009","channels":["campaign","douyin","mall"],"stores":[["st-009",1792800000000000],["st-001",1794000000000000],["st-002",1796073600000000],["st-003",1797000720000000]],"days":[{"day":20750,"orders":1,"amount":16699,"redeem_orders":0,"clicks":0,"scans":0,"visits":1,"earned":166},{"day":20763,"orders":1,"amount":2699,"redeem_orders":0,"clicks":1,"scans":0,"visits":1,"earned":26},{"day":20769,"orders":1,"amount":4699,"redeem_orders":0,"clicks":1,"scans":0,"visits":0,"earned":46},{"day":20775,"orders":1,"amount":6699,"redeem_orders":0,"clicks":1,"scans":0,"visits":0,"earned":66},{"day":20781,"orders":1,"amount":8699,"redeem_orders":0,"clicks":1,"scans":0,"visits":0,"earned":86},{"day":20787,"orders":1,"amount":10699,"redeem_orders":1,"clicks":1,"scans":0,"visits":0,"earned":106},{"day":20793,"orders":1,"amount":12699,"redeem_orders":0,"clicks":1,"scans":0,"visits":0,"earned":0},{"day":20798,"orders":0,"amount":-9699,"redeem_orders":0,"clicks":0,"scans":3,"visits":0,"earned":-76}],"last_order":1796592000000000,"bought":[["SKU-NEW",1796592000000000]],"tags":["new_product_fan"],"tier":"member","tier_at":1797001800000000,"points":{"balance":401,"pending":126,"debt":0,"lots":[[1792800060000000,166],[1794000060000000,7],[1794518460000000,46],[1795036860000000,66],[1796073660000000,96],[1797000600000000,10],[1797000720000000,10]],"seq":12},"orders":{"mall:O0":{"value":2699,"pending":0,"earned":26,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1794000060000000,"earned_at":1794000060000000},"mall:O1":{"value":4699,"pending":0,"earned":46,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1794518460000000,"earned_at":1794518460000000},"mall:O2":{"value":6699,"pending":0,"earned":66,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1795036860000000,"earned_at":1795036860000000},"mall:O3":{"value":8699,"pending":0,"earned":86,"reversed":86,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":true,"at":1797000060000000,"earned_at":1795555260000000},"mall:O4":{"value":10699,"pending":0,"earned":106,"reversed":10,"redeemed":20,"refunded":1,"returned":1000,"placed":true,"cancelled":false,"at":1797000000000000,"taken":[[1794000060000000,19]],"earned_at":1796073660000000},"mall:O5":{"value":12699,"pending":126,"earned":0,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1796592000000000},"mall:O7":{"value":16699,"pending":0,"earned":166,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1792800060000000,"earned_at":1792800060000000}},"caps":[["cny-2027",20798,2]],"recent":[1,3,8643,17283,25923,34563,43203,9223372036854825819,50011,9223372036854825820,50012,9223372036854825821,50013,19998],"conflicts":0,"timer_at":1799184000000000,"pruned_day":0,"scan":{"rate":[[[359400144,1]],[[5990002,3]],[[499166,3]]],"last_geo":[33.230000000000004,121.47,1797000720000000],"batches":[[8461818871936413217,1797000600000000],[8461818871936413217,1797000660000000],[8461818871936413217,1797000720000000]],"ring":"m0000@2971","ring_size":5,"addrs":[[3853945448803498574,5899124329930544746,1797000720000000]],"merged":[624174092497489363],"visit":[2668674956576408028,1793999400000000,1794000600000000]},"held":[{"event":50012,"campaign":"cny-2027","points":10,"daily_cap":3,"at":1797000660000000}],"offset_min":0}"#;
    /// JSON of a member waiting for a merge's answer, with a command stashed (same origin).
    const MERGING_JSON: &str = r#"{"id":"m5","merging":{"into":"m1","stash":[{"click":{"channel":"mall","campaign":null}}],"origins":[["00000000-0000-0000-0000-000000000003","2026-11-06T21:22:00.000Z"]]},"ids":[["openid","o5"]],"first_seen":1794000000000000,"last_seen":1794000000000000,"channels":["douyin"],"stores":[],"days":[{"day":20763,"orders":0,"amount":0,"redeem_orders":0,"clicks":1,"scans":0,"visits":0,"earned":0}],"last_order":0,"tags":[],"tier":"member","tier_at":1794000000000000,"points":{"balance":0,"pending":0,"debt":0,"lots":[],"seq":0},"orders":{},"recent":[1],"conflicts":0,"timer_at":1799184000000000,"pruned_day":0,"offset_min":0}"#;
    /// JSON of a member merged away (an alias), same origin.
    const ALIAS_JSON: &str = r#"{"id":"m5","alias_of":"m1","ids":[],"first_seen":0,"last_seen":0,"channels":[],"stores":[],"days":[],"last_order":0,"tags":[],"tier":"","tier_at":0,"points":{"balance":0,"pending":0,"debt":0,"lots":[],"seq":0},"orders":{},"recent":[],"conflicts":0,"timer_at":0,"pruned_day":0}"#;

    fn merging_and_alias(rules: &Rules) -> (Member, Member) {
        let me = Str::from("m5");
        let mut m = Member::default();
        let mut fx = Effects::default();
        m.handle(
            &me,
            MemberCmd::Seen {
                bind: vec![("openid".into(), "o5".into())],
                then: Box::new(MemberCmd::Click {
                    channel: "douyin".into(),
                    campaign: None,
                }),
            },
            &ctx(rules, 0),
            &mut fx,
        );
        m.handle(
            &me,
            MemberCmd::MergeInto {
                survivor: "m1".into(),
            },
            &ctx(rules, 1),
            &mut fx,
        );
        m.handle(
            &me,
            MemberCmd::Click {
                channel: "mall".into(),
                campaign: None,
            },
            &ctx(rules, 2),
            &mut fx,
        );
        let merging = m.clone();
        m.handle(
            &me,
            MemberCmd::Absorbed { into: "m1".into() },
            &ctx(rules, 3),
            &mut fx,
        );
        (merging, m)
    }

    proptest::proptest! {
        /// Days changed in any order (today, a new day, a late event for an older day), past
        /// the packed limit and back under it by pruning, hold what a plain sorted map holds,
        /// newest first in memory and oldest first in the state, and every window sums the
        /// same as over the map.
        #[test]
        fn days_match_a_sorted_map(
            ops in proptest::collection::vec((0i64..60, 0u32..3, -5i64..500), 0..120),
            prune in 0i64..60,
            today in 0i64..70,
            window in 1i64..80,
        ) {
            let mut days = Days::default();
            let mut model = std::collections::BTreeMap::<i64, Day>::new();
            for (day, clicks, amount) in ops {
                let day = 20_000 + day;
                let f = |d: &mut Day| {
                    d.clicks += clicks;
                    d.amount += amount;
                };
                days.change(day, f);
                f(model.entry(day).or_insert(Day { day, ..Day::default() }));
            }
            let want: Vec<Day> = model.values().copied().collect();
            proptest::prop_assert_eq!(days.oldest_first(), want.clone());
            let json = serde_json::to_string(&days).unwrap();
            proptest::prop_assert_eq!(&json, &serde_json::to_string(&want).unwrap());
            let back: Days = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(&back, &days);
            let today = 20_000 + today;
            let sum = |kept: &[Day]| sum_days(kept, today, window, |d| d.amount);
            let direct: i64 = want
                .iter()
                .filter(|d| d.day > today - window && d.day <= today)
                .map(|d| d.amount)
                .sum();
            proptest::prop_assert_eq!(days.with_slice(sum), direct);
            // the sums of the days after the newest, kept by the changes, are those found by
            // reading the days; with them the windows sum what reading the days sums
            let mut fresh = days.clone();
            fresh.1 = Rest::UNKNOWN;
            fresh.know_rest();
            proptest::prop_assert!(fresh.1.known() || days.is_empty());
            if days.1.known() {
                proptest::prop_assert_eq!(days.1, fresh.1);
            }
            let windows = [window, 0, 1, 70];
            let mut fast = [[0; COUNTS]; 4];
            let mut read = [[0; COUNTS]; 4];
            let read_oldest = days.totals(today, &windows, &mut read);
            if let Some(oldest) = fresh.condition_totals(today, &windows, &mut fast) {
                proptest::prop_assert_eq!(oldest, read_oldest);
                for r in &mut read {
                    r[VISITS] = 0;
                }
                proptest::prop_assert_eq!(fast, read);
            }
            let mut sums = [[0; COUNTS]; 2];
            days.totals(today, &[window, 1], &mut sums);
            proptest::prop_assert_eq!(sums[0][AMOUNT], direct);
            proptest::prop_assert_eq!(sums[1][CLICKS], sum_days(&days.iter().collect::<Vec<_>>(), today, 1, |d| i64::from(d.clicks)));
            days.prune(20_000 + prune);
            let kept: Vec<Day> = want.into_iter().filter(|d| d.day > 20_000 + prune).collect();
            proptest::prop_assert_eq!(days.oldest_first(), kept.clone());
            let mut again = Days::default();
            for d in kept.iter().rev() {
                again.change(d.day, |x| *x = *d);
            }
            proptest::prop_assert_eq!(again, days);
        }
    }

    proptest::proptest! {
        /// The windows' sums read in one pass over the packed bytes (or the plain vector past
        /// 32 days) are what summing each window over the decoded days gives, for every count
        /// and any windows, days out of order included (a state loaded from elsewhere), and
        /// the oldest day is the last.
        #[test]
        fn totals_match_the_windows_over_the_decoded_days(
            records in proptest::collection::vec(
                (-3i64..40, 0u32..3, -2_000i64..90_000, 0u32..2, 0u32..4, 0u32..3, 0u32..2, -50i64..900),
                0..45,
            ),
            today in 0i64..40,
            windows in proptest::collection::vec(-2i64..50, 0..=WINDOWS),
        ) {
            let list: Vec<Day> = records
                .iter()
                .map(|&(day, orders, amount, redeem_orders, clicks, scans, visits, earned)| Day {
                    day: 20_000 + day,
                    orders,
                    amount,
                    redeem_orders,
                    clicks,
                    scans,
                    visits,
                    earned,
                })
                .collect();
            let mut days = Days::default();
            days.0.set(list.clone());
            let today = 20_000 + today;
            let mut sums = vec![[0; COUNTS]; windows.len()];
            let oldest = days.totals(today, &windows, &mut sums);
            proptest::prop_assert_eq!(oldest, list.last().map(|d| d.day));
            for (w, got) in windows.iter().zip(&sums) {
                for (i, got) in got.iter().enumerate() {
                    let want = sum_days(&list, today, *w, |d| d.counts()[i]);
                    proptest::prop_assert_eq!(*got, want, "window {} count {}", w, i);
                }
            }
        }
    }

    proptest::proptest! {
        /// Windows from the kept sums of the days after the newest change nothing: clicks,
        /// visits, scans and orders placed, fulfilled and redeemed, with time going back and
        /// forth across the windows (90, 180 and 365 days and the 400 kept) and days pruned,
        /// give the same state and effects as a member that reads its days on every command,
        /// under rules whose tags read every count.
        #[test]
        fn kept_day_sums_change_nothing(
            ops in proptest::collection::vec((0u8..6, 0u32..30, -60_000i64..140_000), 1..150),
        ) {
            let rules = rules_with_tags([
                ("buyer", TagCond::OrdersAtLeast { days: 30, count: 3 }),
                ("clicker", TagCond::ClicksAtLeast { days: 7, count: 2 }),
                ("scanner", TagCond::ScansAtLeast { days: 120, count: 2 }),
            ]);
            let reset = |m: &mut Member| m.days.1 = Rest::UNFIT;
            same_as_reset(&rules, ("m8", "o8"), ops, reset, |kind, n, order| match kind {
                    0 => placed(order, n, i64::from(n % 2)),
                    1 => MemberCmd::OrderFulfilled { order },
                    2 => MemberCmd::Click { channel: "douyin".into(), campaign: None },
                    3 => MemberCmd::Visit { store: "st-1".into(), duration_s: None, channel: "store".into() },
                    4 => scan_reward(),
                    _ => MemberCmd::Redeem { order, points: 1 },
            })?;
        }
    }

    proptest::proptest! {
        /// No tag or tier changes between the member's timers: after commands on days
        /// spread over months (orders, fulfilments, returns, clicks, scans, visits), its
        /// timer fired whenever due up to a later time, the tags and tier it holds are those
        /// an evaluation at that time finds. (The timer went by the oldest day alone, so a
        /// short window's tag stayed on once an older day was kept.)
        #[test]
        fn no_tag_changes_between_the_members_timers(
            ops in proptest::collection::vec((0u8..6, 0u32..12, 0i64..30_000), 1..60),
            wait in 0i64..600_000,
        ) {
            let rules = rules_with_tags([
                ("buyer", TagCond::OrdersAtLeast { days: 30, count: 2 }),
                ("clicker", TagCond::ClicksAtLeast { days: 7, count: 1 }),
                ("scanner", TagCond::ScansAtLeast { days: 14, count: 2 }),
            ]);
            let me = Str::from("m7");
            let mut m = identified(&me, "o7", &rules);
            let mut min = 0i64;
            // runs the member's timer while it is due at or before `until` (in minutes)
            let fire = |m: &mut Member, until: i64| {
                for _ in 0..10_000 {
                    let due = m.timer_at;
                    if due == 0 || due > ctx(&rules, until).ts() {
                        return;
                    }
                    let at = Ctx {
                        at: EventTime { unix_us: due, offset_min: 0 },
                        event: Uuid::nil(),
                        rules: &rules,
                        refs: &NO_REFS,
                    };
                    m.tick(&at, &mut Effects::default());
                }
                panic!("the timer keeps firing");
            };
            for (i, (kind, n, step)) in ops.into_iter().enumerate() {
                min += step;
                fire(&mut m, min);
                let order = compact_str::format_compact!("mall:O{n}");
                let cmd = match kind {
                    0 => placed(order, n, 0),
                    1 => MemberCmd::OrderFulfilled { order },
                    2 => MemberCmd::OrderReturned { order, value: 700 },
                    3 => MemberCmd::Click { channel: "douyin".into(), campaign: None },
                    4 => MemberCmd::Visit { store: "st-1".into(), duration_s: None, channel: "store".into() },
                    _ => scan_reward(),
                };
                let c = Ctx { event: Uuid::from_u128(1_000 + i as u128), ..ctx(&rules, min) };
                m.handle(&me, cmd, &c, &mut Effects::default());
            }
            let end = min + wait;
            fire(&mut m, end);
            let held = (m.tags.to_vec(), m.tier.clone());
            let mut fresh = m.clone();
            fresh.tick(&ctx(&rules, end), &mut Effects::default());
            proptest::prop_assert_eq!(held, (fresh.tags.to_vec(), fresh.tier.clone()));
        }

        /// The orders' pruning pass skipped while `orders_due` says nothing can go changes
        /// nothing: orders placed, fulfilled, cancelled, returned and redeemed on, with time
        /// going back and forth across the 120 days orders are kept, give the same state and
        /// effects as a member whose bound is forgotten before every command (so the pass runs
        /// every time, as after loading a state), past the packed limit of orders and back.
        #[test]
        fn skipping_the_orders_pass_changes_nothing(
            ops in proptest::collection::vec((0u8..6, 0u32..40, -50_000i64..120_000), 1..150),
        ) {
            let rules = rules();
            let reset = |m: &mut Member| m.orders_due = OrdersDue::default();
            same_as_reset(&rules, ("m9", "o9"), ops, reset, |kind, n, order| match kind {
                    0 => placed(order, n, 0),
                    1 => MemberCmd::OrderFulfilled { order },
                    2 => MemberCmd::OrderCancelled { order },
                    // placed some day of the first month (whichever the order really was)
                    5 => MemberCmd::OrderCancelledPlaced {
                        order,
                        placed: ctx(&rules, i64::from(n) * 1_000).at,
                    },
                    3 => MemberCmd::OrderReturned { order, value: 700 },
                    _ => MemberCmd::Redeem { order, points: 1 },
            })?;
        }
    }

    /// Order `order` placed at the mall: 1-3 colas (by `n`) at 20 yuan, `redeemed` points.
    fn placed(order: Str, n: u32, redeemed: i64) -> MemberCmd {
        MemberCmd::OrderPlaced {
            order,
            channel: "mall".into(),
            store: None,
            lines: vec![LineV {
                sku: "SKU-COLA-500".into(),
                qty: 1 + i64::from(n % 3),
                unit_price: 2_000,
            }],
            points_redeemed: redeemed,
        }
    }

    /// A member `me` known by the open id `openid`, as after its first event.
    fn identified(me: &Str, openid: &str, rules: &Rules) -> Member {
        let mut m = Member::default();
        m.handle(
            me,
            MemberCmd::Seen {
                bind: vec![("openid".into(), openid.into())],
                then: Box::new(MemberCmd::Identify),
            },
            &ctx(rules, 0),
            &mut Effects::default(),
        );
        m
    }

    /// Runs the commands `cmd(kind, n, "mall:O{n}")` of `ops` (kind, n, minutes forward or
    /// back; time never before 0) on two copies of a fresh member, `reset` applied to the
    /// second before each command, and fails unless both give the same effects and the
    /// same state (as JSON) after every command: the state `reset` drops is derived.
    fn same_as_reset(
        rules: &Rules,
        (me, openid): (&str, &str),
        ops: Vec<(u8, u32, i64)>,
        reset: impl Fn(&mut Member),
        cmd: impl Fn(u8, u32, Str) -> MemberCmd,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let me = Str::from(me);
        let mut live = identified(&me, openid, rules);
        let mut other = live.clone();
        let mut min = 0i64;
        for (i, (kind, n, step)) in ops.into_iter().enumerate() {
            min = (min + step).max(0);
            let c = Ctx {
                event: Uuid::from_u128(1_000 + i as u128),
                ..ctx(rules, min)
            };
            let cmd = cmd(kind, n, compact_str::format_compact!("mall:O{n}"));
            let (mut fa, mut fb) = (Effects::default(), Effects::default());
            live.handle(&me, cmd.clone(), &c, &mut fa);
            reset(&mut other);
            other.handle(&me, cmd, &c, &mut fb);
            proptest::prop_assert_eq!(&fa, &fb);
            proptest::prop_assert_eq!(
                serde_json::to_string(&live).unwrap(),
                serde_json::to_string(&other).unwrap()
            );
        }
        Ok(())
    }

    /// A member with a long history: 45 orders on 45 days, their lots, then a return
    /// months later, after which the oldest orders are pruned (lists past 32 records and back).
    fn long_member(rules: &Rules) -> Member {
        let me = Str::from("m77");
        let mut m = identified(&me, "o77", rules);
        let mut fx = Effects::default();
        for n in 0..45u32 {
            let min = i64::from(n) * 4_000;
            order(&mut m, &me, min, n, 0, rules);
            let order = compact_str::format_compact!("mall:O{n}");
            m.handle(
                &me,
                MemberCmd::OrderFulfilled { order },
                &ctx(rules, min + 5),
                &mut fx,
            );
        }
        m.handle(
            &me,
            MemberCmd::OrderReturned {
                order: "mall:O44".into(),
                value: 700,
            },
            &ctx(rules, 45 * 4_000 + 100_000),
            &mut fx,
        );
        m
    }

    /// JSON of `long_member` (same origin as `FULL_JSON`).
    const LONG_JSON: &str = r#"{"id":"m77","ids":[["openid","o77"]],"first_seen":1794000000000000,"last_seen":1794000000000000,"channels":["mall"],"stores":[["st-002",1804560000000000]],"days":[{"day":20763,"orders":1,"amount":2699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":26},{"day":20766,"orders":1,"amount":4699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":46},{"day":20769,"orders":1,"amount":6699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":66},{"day":20772,"orders":1,"amount":8699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":86},{"day":20775,"orders":1,"amount":10699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":106},{"day":20777,"orders":1,"amount":12699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":126},{"day":20780,"orders":1,"amount":14699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":146},{"day":20783,"orders":1,"amount":16699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":166},{"day":20786,"orders":1,"amount":18699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":186},{"day":20788,"orders":1,"amount":20699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":206},{"day":20791,"orders":1,"amount":22699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":226},{"day":20794,"orders":1,"amount":24699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":246},{"day":20797,"orders":1,"amount":26699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":266},{"day":20800,"orders":1,"amount":28699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":286},{"day":20802,"orders":1,"amount":30699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":306},{"day":20805,"orders":1,"amount":32699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":326},{"day":20808,"orders":1,"amount":34699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":346},{"day":20811,"orders":1,"amount":36699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":366},{"day":20813,"orders":1,"amount":38699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":386},{"day":20816,"orders":1,"amount":40699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":406},{"day":20819,"orders":1,"amount":42699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":426},{"day":20822,"orders":1,"amount":44699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":446},{"day":20825,"orders":1,"amount":46699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":466},{"day":20827,"orders":1,"amount":48699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":486},{"day":20830,"orders":1,"amount":50699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":506},{"day":20833,"orders":1,"amount":52699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":526},{"day":20836,"orders":1,"amount":54699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":546},{"day":20838,"orders":1,"amount":56699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":566},{"day":20841,"orders":1,"amount":58699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":586},{"day":20844,"orders":1,"amount":60699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":606},{"day":20847,"orders":1,"amount":62699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":626},{"day":20850,"orders":1,"amount":64699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":646},{"day":20852,"orders":1,"amount":66699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":666},{"day":20855,"orders":1,"amount":68699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":686},{"day":20858,"orders":1,"amount":70699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":706},{"day":20861,"orders":1,"amount":72699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":726},{"day":20863,"orders":1,"amount":74699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":746},{"day":20866,"orders":1,"amount":76699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":766},{"day":20869,"orders":1,"amount":78699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":786},{"day":20872,"orders":1,"amount":80699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":806},{"day":20875,"orders":1,"amount":82699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":826},{"day":20877,"orders":1,"amount":84699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":846},{"day":20880,"orders":1,"amount":86699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":866},{"day":20883,"orders":1,"amount":88699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":886},{"day":20886,"orders":1,"amount":90699,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":906},{"day":20958,"orders":0,"amount":-700,"redeem_orders":0,"clicks":0,"scans":0,"visits":0,"earned":-7}],"last_order":1804560000000000,"bought":[["SKU-NEW",1804560000000000]],"tags":["dormant","high_value"],"tier":"platinum","tier_at":1810800000000000,"points":{"balance":20963,"pending":0,"debt":0,"lots":[[1794000300000000,26],[1794240300000000,46],[1794480300000000,66],[1794720300000000,86],[1794960300000000,106],[1795200300000000,126],[1795440300000000,146],[1795680300000000,166],[1795920300000000,186],[1796160300000000,206],[1796400300000000,226],[1796640300000000,246],[1796880300000000,266],[1797120300000000,286],[1797360300000000,306],[1797600300000000,326],[1797840300000000,346],[1798080300000000,366],[1798320300000000,386],[1798560300000000,406],[1798800300000000,426],[1799040300000000,446],[1799280300000000,466],[1799520300000000,486],[1799760300000000,506],[1800000300000000,526],[1800240300000000,546],[1800480300000000,566],[1800720300000000,586],[1800960300000000,606],[1801200300000000,626],[1801440300000000,646],[1801680300000000,666],[1801920300000000,686],[1802160300000000,706],[1802400300000000,726],[1802640300000000,746],[1802880300000000,766],[1803120300000000,786],[1803360300000000,806],[1803600300000000,826],[1803840300000000,846],[1804080300000000,866],[1804320300000000,886],[1804560300000000,899]],"seq":46},"orders":{"mall:O27":{"value":56699,"pending":0,"earned":566,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1800480300000000,"earned_at":1800480300000000},"mall:O28":{"value":58699,"pending":0,"earned":586,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1800720300000000,"earned_at":1800720300000000},"mall:O29":{"value":60699,"pending":0,"earned":606,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1800960300000000,"earned_at":1800960300000000},"mall:O30":{"value":62699,"pending":0,"earned":626,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1801200300000000,"earned_at":1801200300000000},"mall:O31":{"value":64699,"pending":0,"earned":646,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1801440300000000,"earned_at":1801440300000000},"mall:O32":{"value":66699,"pending":0,"earned":666,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1801680300000000,"earned_at":1801680300000000},"mall:O33":{"value":68699,"pending":0,"earned":686,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1801920300000000,"earned_at":1801920300000000},"mall:O34":{"value":70699,"pending":0,"earned":706,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1802160300000000,"earned_at":1802160300000000},"mall:O35":{"value":72699,"pending":0,"earned":726,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1802400300000000,"earned_at":1802400300000000},"mall:O36":{"value":74699,"pending":0,"earned":746,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1802640300000000,"earned_at":1802640300000000},"mall:O37":{"value":76699,"pending":0,"earned":766,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1802880300000000,"earned_at":1802880300000000},"mall:O38":{"value":78699,"pending":0,"earned":786,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1803120300000000,"earned_at":1803120300000000},"mall:O39":{"value":80699,"pending":0,"earned":806,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1803360300000000,"earned_at":1803360300000000},"mall:O40":{"value":82699,"pending":0,"earned":826,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1803600300000000,"earned_at":1803600300000000},"mall:O41":{"value":84699,"pending":0,"earned":846,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1803840300000000,"earned_at":1803840300000000},"mall:O42":{"value":86699,"pending":0,"earned":866,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1804080300000000,"earned_at":1804080300000000},"mall:O43":{"value":88699,"pending":0,"earned":886,"reversed":0,"redeemed":0,"refunded":0,"returned":0,"placed":true,"cancelled":false,"at":1804320300000000,"earned_at":1804320300000000},"mall:O44":{"value":90699,"pending":0,"earned":906,"reversed":7,"redeemed":0,"refunded":0,"returned":700,"placed":true,"cancelled":false,"at":1810800000000000,"earned_at":1804560300000000}},"recent":[],"conflicts":0,"timer_at":1810857600000000,"pruned_day":0,"offset_min":0}"#;

    /// The checkpoint format does not depend on how a member is laid out in memory: a member
    /// built by its handlers serializes exactly as before, and reads back to the same state.
    #[test]
    fn json_is_unchanged_and_round_trips() {
        let rules = rules();
        let (merging, alias) = merging_and_alias(&rules);
        let cases = [
            ("full", full_member(&rules), FULL_JSON),
            ("merging", merging, MERGING_JSON),
            ("alias", alias, ALIAS_JSON),
            ("long", long_member(&rules), LONG_JSON),
        ];
        // a merging member saved before stashed commands kept their events still reads
        let before = MERGING_JSON.replace(
            r#","origins":[["00000000-0000-0000-0000-000000000003","2026-11-06T21:22:00.000Z"]]"#,
            "",
        );
        let old: Member = serde_json::from_str(&before).unwrap();
        let stash = old
            .merging
            .as_ref()
            .map(|m| (m.stash.len(), m.origins.len()));
        assert_eq!(stash, Some((1, 0)));
        for (name, m, want) in cases {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, want, "{name}");
            let back: Member = serde_json::from_str(want).unwrap();
            assert_eq!(back, m, "{name}");
            assert_eq!(serde_json::to_string(&back).unwrap(), want, "{name}");
            // the stored form: every field kept (postcard has no names to skip by), read
            // back to the same state, and a state stored as JSON (version 1) still reads
            let stored = crate::cold::encode(&m).unwrap();
            assert_eq!(stored[0], crate::cold::STATE_VERSION);
            assert_eq!(crate::cold::decode::<Member>(&stored).unwrap(), m, "{name}");
            assert!(
                stored.len() * 2 < want.len(),
                "{name}: {} bytes",
                stored.len()
            );
            let v1 = [&[1u8][..], want.as_bytes()].concat();
            assert_eq!(crate::cold::decode::<Member>(&v1).unwrap(), m, "{name}");
            // JSON is unchanged by an encoding before it on the same thread
            assert_eq!(serde_json::to_string(&m).unwrap(), want, "{name}");
            // nothing is read past the end, and a cut state is refused
            let longer = [&stored[..], &[0u8][..]].concat();
            assert!(crate::cold::decode::<Member>(&longer).is_err(), "{name}");
            let cut = crate::cold::decode::<Member>(&stored[..stored.len() - 1]);
            assert!(cut.is_err(), "{name}");
        }
        assert!(crate::cold::decode::<Member>(&[9, 0]).is_err());
    }

    /// A merge that brings the survivor more held reviews than `max-held-reviews` refuses
    /// the oldest of the person's holds at once, giving their points back.
    #[test]
    fn a_merge_over_the_hold_limit_refuses_the_oldest_holds() {
        let mut rules = rules();
        rules.fraud.max_held_reviews = 2;
        let hold = |event: u128, at: i64| HeldReward {
            event,
            campaign: "c1".into(),
            points: 10,
            daily_cap: 3,
            at,
        };
        let mut m = Member {
            id: "m1".into(),
            held: vec![hold(1, 10), hold(3, 30)].into_boxed_slice(),
            ..Member::default()
        };
        let other = Member {
            id: "m2".into(),
            held: vec![hold(2, 20)].into_boxed_slice(),
            ..Member::default()
        };
        let mut fx = Effects::default();
        m.handle(
            &"m1".into(),
            MemberCmd::Absorb {
                from: "m2".into(),
                state: Box::new(other),
            },
            &ctx(&rules, 100),
            &mut fx,
        );
        let kept: Vec<u128> = m.held.iter().map(|h| h.event).collect();
        assert_eq!(kept, [2, 3]);
        let refused: Vec<_> = fx
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::ReviewResolved {
                    scan_event,
                    refused: true,
                    allow: false,
                    ..
                } => Some(scan_event.as_u128()),
                _ => None,
            })
            .collect();
        assert_eq!(refused, [1]);
        let refunds = fx
            .sends
            .iter()
            .filter(|(k, c)| {
                *k == Key::Campaign("c1".into())
                    && matches!(c, Cmd::Campaign(CampaignCmd::Refund { points: 10 }))
            })
            .count();
        assert_eq!(refunds, 1);
    }

    /// A merging member's stash holding a checked scan whose optional fields are empty (the
    /// usual scan: no store, no registered batch) stores and reads back whole: postcard has no
    /// names, so a field left out would shift every byte after it.
    #[test]
    fn a_stashed_scan_decision_stores_and_reads_back() {
        let rules = rules();
        let (mut m, _) = merging_and_alias(&rules);
        let scanned = Scanned {
            sku: "S1".into(),
            device: "d1".into(),
            ip: "10.0.0.1".into(),
            store: None,
            batch: None,
            dealer: None,
            blocked: None,
        };
        let decided = |points, not_granted, scanned| {
            MemberCmd::ScanDecided(Box::new(crate::cmd::ScanDecided {
                campaign: "c1".into(),
                code: "K1".into(),
                points,
                daily_cap: 3,
                verdict: Verdict {
                    decision: Decision::Allow,
                    score: 0,
                    reasons: Vec::new(),
                    shadow_decision: None,
                },
                scanned,
                not_granted,
            }))
        };
        let mut full = scanned.clone();
        full.store = Some("st-1".into());
        full.batch = Some("B1".into());
        full.dealer = Some("dl-1".into());
        for (n, cmd) in [
            decided(0, Some(NoReward::BudgetExhausted), scanned),
            decided(10, None, full),
        ]
        .into_iter()
        .enumerate()
        {
            let mut fx = Effects::default();
            m.handle(&"m5".into(), cmd, &ctx(&rules, 3 + n as i64), &mut fx);
        }
        assert_eq!(m.merging.as_ref().map(|g| g.stash.len()), Some(3));
        let stored = crate::cold::encode(&m).unwrap();
        assert_eq!(crate::cold::decode::<Member>(&stored).unwrap(), m);
    }

    /// A merging member stored in encoding 3 whose stash holds another member's whole state
    /// (an `Absorb` of a merge cascading through it, stored when a checkpoint cut the cascade)
    /// reads: both members lack `offset_min`, not only the outer one.
    #[test]
    fn a_stashed_member_of_encoding_3_reads() {
        let rules = rules();
        let (mut m, _) = merging_and_alias(&rules);
        m.offset_min = None;
        let inner = Member {
            offset_min: None,
            ..untaken(full_member(&rules))
        };
        if let Some(g) = m.merging.as_mut() {
            g.stash.push(MemberCmd::Absorb {
                from: "m9".into(),
                state: Box::new(inner.clone()),
            });
        }
        let stored = crate::cold::encode(&m).unwrap();
        assert_eq!(crate::cold::decode::<Member>(&stored).unwrap(), m);
        // encoding 3: each member's last byte (its offset's `None`) taken out, and each
        // scan profile's blocks (encoding 13)
        let stored = without_blocks(&without_blocks(&stored, &m), &inner);
        let inner_v12 = without_blocks(&crate::cold::encode(&inner).unwrap(), &inner);
        let mut v3 = crate::cold::without_last(&stored, &inner_v12[1..], 1);
        assert_eq!(v3.pop(), Some(0), "the outer member's offset last");
        v3[0] = 3;
        assert_eq!(crate::cold::decode::<Member>(&v3).unwrap(), m);
        // and it is read as encoding 3 throughout: as encoding 4 the same bytes are refused
        v3[0] = 4;
        assert!(crate::cold::decode::<Member>(&v3).is_err());
    }

    /// A member in the middle of a merge, stored by encoding 6 with a visit waiting in its
    /// stash (a visit without the channel encoding 7 gave it), reads as that visit with no
    /// channel; read as encoding 7 the same bytes are refused.
    #[test]
    fn a_stashed_visit_of_encoding_6_reads() {
        let rules = rules();
        let (mut m, _) = merging_and_alias(&rules);
        let visit = MemberCmd::Visit {
            store: "st-1".into(),
            duration_s: Some(5),
            channel: Str::default(),
        };
        if let Some(g) = m.merging.as_mut() {
            g.stash.push(visit.clone());
        }
        let stored = without_blocks(&crate::cold::encode(&m).unwrap(), &m);
        // the empty channel last
        let mut v6 = crate::cold::without_appended(&stored, &visit, 1);
        v6[0] = 6;
        assert_eq!(crate::cold::decode::<Member>(&v6).unwrap(), m);
        v6[0] = 7;
        assert!(crate::cold::decode::<Member>(&v6).is_err());
    }

    /// `stored` without what encodings 13 to 16 appended to `m` within it: the empty list
    /// of blocks of its scan profile, its `grace_since` (0), its last byte, and each order's
    /// empty list of lots taken and `earned_at` (0) (for tests that read older encodings
    /// back).
    fn without_blocks(stored: &[u8], m: &Member) -> Vec<u8> {
        assert_eq!(m.grace_since, 0);
        let mut stored = crate::cold::without_appended(stored, m, 1);
        for (_, o) in m.orders.iter() {
            assert!(
                o.taken.is_empty() && o.earned_at == 0,
                "an order of encoding 14 or before took no lots and had no time of earning"
            );
            stored = crate::cold::without_appended(&stored, &o, 2);
        }
        let profile = m.scan.get().cloned().unwrap_or_default();
        assert!(profile.blocks.is_empty());
        crate::cold::without_appended(&stored, &profile, 1)
    }

    /// X-RFM `(frequency, monetary)` of each window at minute `min`.
    fn frequency_and_monetary(m: &Member, rules: &Rules, min: i64) -> Vec<(u32, i64)> {
        let c = ctx(rules, min);
        m.view(c.ts(), c.day(), rules)
            .xrfm
            .iter()
            .map(|x| (x.frequency, x.monetary))
            .collect()
    }

    /// Recency counts from the newest order that still counts: a cancelled last order leaves
    /// the one before it; with every order cancelled there is none.
    #[test]
    fn recency_leaves_out_a_cancelled_order() {
        let rules = rules();
        let me: Str = "m1".into();
        let (mut m, mut fx) = (Member::default(), Effects::default());
        let day = 1_440;
        let recency = |m: &Member, min: i64| {
            let c = ctx(&rules, min);
            m.view(c.ts(), c.day(), &rules).xrfm[0].recency_days
        };
        m.handle(
            &me,
            placed("mall:o1".into(), 0, 0),
            &ctx(&rules, 0),
            &mut fx,
        );
        m.handle(
            &me,
            placed("mall:o2".into(), 1, 0),
            &ctx(&rules, 3 * day),
            &mut fx,
        );
        assert_eq!(recency(&m, 5 * day), Some(2));
        let cancel = |order: &str, min: i64| MemberCmd::OrderCancelledPlaced {
            order: order.into(),
            placed: ctx(&rules, min).at,
        };
        m.handle(
            &me,
            cancel("mall:o2", 3 * day),
            &ctx(&rules, 4 * day),
            &mut fx,
        );
        assert_eq!(
            recency(&m, 5 * day),
            Some(5),
            "the order before the cancelled one"
        );
        m.handle(
            &me,
            cancel("mall:o1", 0),
            &ctx(&rules, 4 * day + 1),
            &mut fx,
        );
        assert_eq!(recency(&m, 5 * day), None, "no order that counts");
    }

    /// A cancelled order stops counting in X-RFM on the day it was placed: frequency and
    /// monetary over every window then leave it out, whenever it is cancelled; a cancellation
    /// that does not say when the order was placed (an order stored before that was kept)
    /// takes its value off the day of the cancellation and leaves the count.
    #[test]
    fn a_cancelled_order_stops_counting_on_the_day_it_was_placed() {
        let rules = rules();
        let (me, mut m, mut fx) = placed_o1(&rules);
        let day = 1_440;
        m.handle(
            &me,
            placed("mall:o2".into(), 1, 0),
            &ctx(&rules, 2 * day),
            &mut fx,
        );
        let windows = |m: &Member, min: i64| frequency_and_monetary(m, &rules, min);
        let n = rules.member.rfm_windows_days.len();
        assert_eq!(windows(&m, 2 * day + 1), vec![(2, 6_000); n]);
        let cancel = MemberCmd::OrderCancelledPlaced {
            order: "mall:o1".into(),
            placed: ctx(&rules, 0).at,
        };
        m.handle(&me, cancel.clone(), &ctx(&rules, 2 * day + 5), &mut fx);
        assert_eq!(windows(&m, 2 * day + 6), vec![(1, 4_000); n]);
        let placed_day = m
            .days
            .iter()
            .find(|d| d.day == ctx(&rules, 0).day())
            .unwrap();
        assert_eq!((placed_day.orders, placed_day.amount), (0, 0));
        // once only
        m.handle(&me, cancel, &ctx(&rules, 2 * day + 7), &mut fx);
        assert_eq!(windows(&m, 2 * day + 8), vec![(1, 4_000); n]);
        // without the time it was placed: the value comes off today, the count stays
        let legacy = MemberCmd::OrderCancelled {
            order: "mall:o2".into(),
        };
        m.handle(&me, legacy, &ctx(&rules, 3 * day), &mut fx);
        assert_eq!(windows(&m, 3 * day + 1), vec![(1, 0); n]);
    }

    /// Member `m1` having placed order `mall:o1` at minute 0.
    fn placed_o1(rules: &Rules) -> (Str, Member, Effects) {
        let me: Str = "m1".into();
        let (mut m, mut fx) = (Member::default(), Effects::default());
        let o1 = placed("mall:o1".into(), 0, 0);
        m.handle(&me, o1, &ctx(rules, 0), &mut fx);
        (me, m, fx)
    }

    /// A window that holds a return but not its purchase shows a monetary value of 0, not a
    /// negative one; a window holding both shows what was kept.
    #[test]
    fn a_window_with_the_return_but_not_the_purchase_reads_zero() {
        let mut rules = rules();
        rules.member.rfm_windows_days = vec![30, 90];
        let (me, mut m, mut fx) = placed_o1(&rules);
        let day = 1_440;
        let o = "mall:o1";
        let fulfilled = MemberCmd::OrderFulfilled { order: o.into() };
        m.handle(&me, fulfilled, &ctx(&rules, 1), &mut fx);
        let returned = MemberCmd::OrderReturned {
            order: o.into(),
            value: 1_000,
        };
        m.handle(&me, returned, &ctx(&rules, 40 * day), &mut fx);
        let value = m.orders.get(o).unwrap().value;
        assert_eq!(
            frequency_and_monetary(&m, &rules, 40 * day + 1),
            [(0, 0), (1, value - 1_000)]
        );
    }

    /// An order cancelled after the day it was placed is no longer kept (but while the
    /// member still keeps the order: `order-days` past `history-days`): no window held it,
    /// so nothing comes off any, nor off the day of the cancellation.
    #[test]
    fn an_order_cancelled_after_its_day_was_pruned_takes_nothing_off_the_windows() {
        let mut rules = rules();
        rules.member.history_days = 100;
        rules.member.rfm_windows_days = vec![30, 90];
        rules.points.order_days = 120;
        let me: Str = "m2".into();
        let (mut m, mut fx) = (Member::default(), Effects::default());
        let day = 1_440;
        let (old, late) = (0, 110 * day);
        // a member the engine made (an empty one is not evaluated, so never pruned)
        m.first_seen = ctx(&rules, old).ts();
        m.handle(
            &me,
            placed("mall:o3".into(), 2, 0),
            &ctx(&rules, old),
            &mut fx,
        );
        m.handle(
            &me,
            placed("mall:o4".into(), 0, 0),
            &ctx(&rules, late),
            &mut fx,
        );
        let windows = |m: &Member, min: i64| frequency_and_monetary(m, &rules, min);
        let before = windows(&m, late + 1);
        assert_eq!(before, vec![(1, 2_000); 2]);
        assert!(m.orders.get("mall:o3").is_some(), "the order is kept");
        assert!(
            !m.days.iter().any(|d| d.day == ctx(&rules, old).day()),
            "its day is not"
        );
        let cancel = MemberCmd::OrderCancelledPlaced {
            order: "mall:o3".into(),
            placed: ctx(&rules, old).at,
        };
        m.handle(&me, cancel, &ctx(&rules, late + 2), &mut fx);
        assert!(m.orders.get("mall:o3").unwrap().cancelled);
        assert_eq!(windows(&m, late + 3), before);
    }

    /// The stored layout of a member, pinned: postcard has no field names, so adding,
    /// removing, reordering or retyping a field of `Member` (or of anything it holds) makes
    /// every stored member unreadable. Such a change must bump `cold::STATE_VERSION`, keep a
    /// reader for the layout before it, and then update these bytes.
    #[test]
    fn the_stored_layout_is_pinned() {
        let stored = crate::cold::encode(&full_member(&rules())).unwrap();
        let hex: String = stored.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, FULL_STORED, "the stored layout of a member changed");
        // encodings 2 and 3: without the offset (`Some(0)`, the last two bytes), read as
        // not known
        let full = untaken(full_member(&rules()));
        let mut old = without_blocks(&crate::cold::encode(&full).unwrap(), &full);
        assert_eq!(old.split_off(old.len() - 2), [1, 0]);
        let unknown = Member {
            offset_min: None,
            ..full.clone()
        };
        for version in [2, 3] {
            old[0] = version;
            assert_eq!(crate::cold::decode::<Member>(&old).unwrap(), unknown);
        }
        // encoding 4: the same bytes as 5 (which changed dealers only), to 12
        let mut v4 = without_blocks(&crate::cold::encode(&full).unwrap(), &full);
        v4[0] = 4;
        assert_eq!(crate::cold::decode::<Member>(&v4).unwrap(), full);
    }

    /// `m` with no order holding the lots it redeemed or the time it earned, as a member
    /// stored before encoding 15 reads.
    fn untaken(mut m: Member) -> Member {
        for (k, mut o) in m.orders.iter().collect::<Vec<_>>() {
            o.taken.clear();
            o.earned_at = 0;
            m.orders.insert(k, o);
        }
        m
    }

    /// `crate::cold::encode` of `full_member`, version 15 (the same bytes as versions 4 to 12
    /// after the first but for what 13 to 15 appended: the empty list of blocks of the scan
    /// profile, the grace's start, each order's lots taken; and as 2 and 3 but for the
    /// offset 4 appended: 3 changed orders only, 5 dealers and stores only, 6 and 7 orders
    /// and stores only, 8 SKUs only, 9 to 12 other commands).
    const FULL_STORED: &str = concat!(
        "10116d30313233343536373839616263646566000003066f70656e6964076f2d6f74686572066f70656e6964",
        "1a6f5837665f326b71395a4c6d4138316243336445664768496a4b0570686f6e654039663263346431653861",
        "3762366335643465336632613162306339643865376636613562346333643265316630613962386337643665",
        "356634613362326331648080baf2d8a2af068080d1cbc5e8af06010673742d303039030863616d706169676e",
        "06646f7579696e046d616c6c040673742d3030398080baf2d8a2af060673742d3030318080d1cbc5e8af0606",
        "73742d3030328080d98e9fe1b0060673742d30303380909dd99a97b106089cc40201f6840200000001cc02b6",
        "c40201962a0001000134c2c40201b649000100005ccec40201d668000100008401dac40201f6870100010000",
        "ac01e6c4020196a70101010000d401f2c40201b6c6010001000000fcc40200c597010000030097018080bbbf",
        "b5ffb0060107534b552d4e45578080bbbfb5ffb006010f6e65775f70726f647563745f66616e066d656d6265",
        "72808899dfa297b106a206fc010007809cd6abd9a2af06cc02809ced84c6e8af060e809ccfb5dc86b0065c80",
        "9cb1e6f2a4b0068401809cf5c79fe1b006c00180d8e4e69997b1061480909dd99a97b106140c07076d616c6c",
        "3a4f30962a0034000000000100809ced84c6e8af0600809ced84c6e8af06076d616c6c3a4f31b649005c0000",
        "00000100809ccfb5dc86b00600809ccfb5dc86b006076d616c6c3a4f32d668008401000000000100809cb1e6",
        "f2a4b00600809cb1e6f2a4b006076d616c6c3a4f33f6870100ac01ac01000000010180dce6e39597b1060080",
        "9c939789c3b006076d616c6c3a4f3496a70100d401142802d00f010080c0caaa9597b10601809ced84c6e8af",
        "0626809cf5c79fe1b006076d616c6c3a4f35b6c601fc01000000000001008080bbbfb5ffb0060000076d616c",
        "6c3a4f37f6840200cc02000000000100809cd6abd9a2af0600809cd6abd9a2af060108636e792d32303237fc",
        "c402020e0103c343838701c3ca01838e02c3d102db868380808080808001db8603dc868380808080808001dc",
        "8603dd868380808080808001dd86039e9c01008080a5b3a596b2060001a08be0d6020101e499db050301bcf7",
        "3c03013e0ad7a3709d4040ae47e17a145e5e4080909dd99a97b10603a1dcddfbe6ed9ab77580d8e4e69997b1",
        "06a1dcddfbe6ed9ab77580f480a09a97b106a1dcddfbe6ed9ab77580909dd99a97b106010a6d303030304032",
        "3937310501cef4a99df7defdbd35eaacffdaabcaf9ee5180909dd99a97b10601d39bc2aafbe0e0d40801dc83",
        "dfbdbdb7c2842580e8b68fc1e8af068098eb87cae8af060001dc860308636e792d32303237140380f480a09a",
        "97b106010000",
    );
}

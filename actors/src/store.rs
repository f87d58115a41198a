//! Store actors: one store's KPIs per local hour and local day, its recent visitors (for
//! distinct visitors and conversion), and the sales reps who visit it (SFA).
//!
//! Everything runs on event time in the sender's local time: an event lands in the bucket of
//! its own local hour and day, however late it arrives. Buckets are kept `store.kpi_days` days
//! behind the newest event time the store has seen, never by the wall clock, so a replay
//! builds the same state as the live run. Every collection is bounded, so a busy store (or a
//! hostile feed) cannot grow one entity without limit. Stores emit no outputs: boards read
//! their KPIs through [`Store::view`].

use crate::cmd::StoreCmd;
use crate::keymap::KeyMap;
use crate::{Ctx, Effects, Recent, DAY_US};
use compact_str::CompactString as Str;
use omnistream_schemas::{plausible_visit, EventTime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Microseconds per hour.
const HOUR_US: i64 = 3_600 * 1_000_000;

/// Most members remembered as recent visitors; the least recently seen are dropped first.
pub const MAX_VISITORS: usize = 10_000;
/// Most sales reps remembered per store; the one whose last visit is oldest is dropped first.
pub const MAX_REPS: usize = 256;
/// Most visit times kept per rep for the 30-day frequency.
pub const MAX_REP_TIMES: usize = 256;
/// The window, in days, of a rep's visit frequency.
pub const REP_WINDOW_DAYS: i64 = 30;
/// How many `(event id, command kind)` pairs a store remembers for deduplication.
/// Redeliveries come soon after the original, so a short memory suffices.
pub const SEEN_CAP: usize = 256;
/// How many order keys a store remembers so an order is counted once.
pub const ORDERS_CAP: usize = 1_024;
/// How many sales that converted no visit a store remembers, for a visit that arrives after
/// its order (door counters and POS feeds arrive out of order); the oldest are dropped first.
pub const SALES_WAITING_CAP: usize = 256;

/// A visit's duration as its store counts it: 1 second to 12 hours (`plausible_visit`); else (0, or a
/// door counter that missed the exit) the visit counts without a time.
fn timed(duration_s: Option<i64>) -> Option<i64> {
    duration_s.filter(|d| plausible_visit(*d))
}

/// The KPIs of one store in one local hour or local day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kpi {
    /// Member visits (every visit, repeated ones included).
    pub member_visits: u64,
    /// Sales-rep visits.
    pub rep_visits: u64,
    /// Seconds spent by reps in the store (visits with a known duration).
    pub rep_visit_seconds: i64,
    /// Codes scanned at the store.
    pub scans: u64,
    /// Orders credited to the store (each order key once).
    pub orders: u64,
    /// Value of those orders, in fen.
    pub sales: i64,
    /// Members whose first event ever was at this store.
    pub members_won: u64,
    /// Value cancelled or returned, in fen.
    pub refunds: i64,
    /// Distinct members who visited in the bucket (as far as the recent-visitor memory reaches).
    pub visitors: u64,
    /// Visitors of this bucket who ordered at the store within the conversion window.
    pub converted: u64,
    /// Seconds members spent in the store, over their visits with a known duration. Added
    /// by encoding 7.
    #[serde(default, deserialize_with = "crate::cold::since::<7, _, _>")]
    pub member_visit_seconds: i64,
    /// Member visits with a known duration. Added by encoding 7.
    #[serde(default, deserialize_with = "crate::cold::since::<7, _, _>")]
    pub timed_member_visits: u64,
    /// Sales-rep visits with a known duration (those `rep_visit_seconds` adds up). Added by
    /// encoding 15: 0 in a bucket counted before it.
    #[serde(default, deserialize_with = "crate::cold::since::<15, _, _>")]
    pub timed_rep_visits: u64,
}

impl Kpi {
    /// Converted visitors over visitors; None when nobody visited.
    pub fn conversion(&self) -> Option<f64> {
        // u64 -> f64 is exact below 2^53 visitors, far beyond any bucket
        (self.visitors > 0).then(|| self.converted as f64 / self.visitors as f64)
    }

    /// Adds another bucket's counts (another store's, for a rollup): a member who visited
    /// both counts as a visitor of each.
    pub fn add(&mut self, o: &Kpi) {
        self.member_visits += o.member_visits;
        self.rep_visits += o.rep_visits;
        self.rep_visit_seconds = self.rep_visit_seconds.saturating_add(o.rep_visit_seconds);
        self.scans += o.scans;
        self.orders += o.orders;
        self.sales = self.sales.saturating_add(o.sales);
        self.members_won += o.members_won;
        self.refunds = self.refunds.saturating_add(o.refunds);
        self.visitors += o.visitors;
        self.converted += o.converted;
        self.member_visit_seconds = self
            .member_visit_seconds
            .saturating_add(o.member_visit_seconds);
        self.timed_member_visits += o.timed_member_visits;
        self.timed_rep_visits += o.timed_rep_visits;
    }

    /// Average seconds a member's visit lasted, over those with a known duration.
    pub fn avg_visit_s(&self) -> Option<f64> {
        (self.timed_member_visits > 0)
            .then(|| self.member_visit_seconds as f64 / self.timed_member_visits as f64)
    }

    /// Average seconds a sales rep's visit lasted, over those with a known duration.
    pub fn avg_rep_visit_s(&self) -> Option<f64> {
        (self.timed_rep_visits > 0)
            .then(|| self.rep_visit_seconds as f64 / self.timed_rep_visits as f64)
    }
}

/// What a store remembers about a member's latest visit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// Time of the latest visit (µs).
    pub at: i64,
    /// Local hour of that visit.
    pub hour: i64,
    /// Local day of that visit.
    pub day: i64,
    /// Already counted as converted in the hour bucket `hour`.
    pub hour_converted: bool,
    /// Already counted as converted in the day bucket `day`.
    pub day_converted: bool,
}

/// One sales rep's visits to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rep {
    /// Visits in all.
    pub visits: u64,
    /// Time of the latest visit (µs).
    pub last_us: i64,
    /// Seconds spent, over the visits with a known duration.
    pub seconds: i64,
    /// Visits with a known duration.
    pub timed: u64,
    /// Visit times (µs) of the last [`REP_WINDOW_DAYS`] days, oldest first, at most
    /// [`MAX_REP_TIMES`].
    pub recent: VecDeque<i64>,
}

/// The newest event time a store has seen, with its local hour and day: the reference for
/// pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    /// Event time (µs).
    pub us: i64,
    /// Its local hour.
    pub hour: i64,
    /// Its local day.
    pub day: i64,
    /// Its sender's UTC offset (minutes): the store's view counts today and this hour in it.
    /// Added by store encoding 5.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<5, _, _>"
    )]
    pub offset_min: Option<i16>,
}

/// One store's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// The newest event time seen; None before the first command.
    pub latest: Option<Latest>,
    /// KPIs by local hour number (hours since the epoch in the sender's offset).
    pub hours: BTreeMap<i64, Kpi>,
    /// KPIs by local day number.
    pub days: BTreeMap<i64, Kpi>,
    /// Recent visitors by member id.
    pub visitors: KeyMap<Visitor>,
    /// The same visitors ordered by latest visit, so the oldest are found without a scan.
    pub visitors_by_time: BTreeSet<(i64, Str)>,
    /// Sales reps by id.
    pub reps: BTreeMap<Str, Rep>,
    /// Hashes of the order keys recently counted as sales.
    pub orders: Recent,
    /// Recently applied `(event id, command kind)` pairs. The kind is part of the key because
    /// every command of one input event's chain carries that event's id.
    pub seen: VecDeque<(u128, u8)>,
    /// Sales that converted no visit, `(time, member)`, oldest first, at most
    /// [`SALES_WAITING_CAP`] and none older than the conversion window: a visit that arrives
    /// after its order converts when it comes. Added by encoding 7.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<7, _, _>"
    )]
    pub sales_waiting: VecDeque<(i64, Str)>,
}

impl Store {
    /// Handles one command.
    pub fn handle(&mut self, _me: &Str, cmd: StoreCmd, ctx: &Ctx, _fx: &mut Effects) {
        // a rename changes no count and is the same done twice: one event may merge two ids
        // into one survivor, so two renames share its event id
        if let StoreCmd::Renamed { from, to } = cmd {
            return self.renamed(&from, to);
        }
        if !self.first_delivery(ctx.event.as_u128(), kind_of(&cmd)) {
            return;
        }
        let rules = &ctx.rules.store;
        let kpi_days = rules.kpi_days.max(1);
        let window_us = rules.conversion_window_hours.max(0).saturating_mul(HOUR_US);
        // the store's own offset when one is configured, else the sender's
        let at = match rules.utc_offset_minutes {
            Some(offset_min) => EventTime {
                offset_min,
                ..ctx.at
            },
            None => ctx.at,
        };
        let latest = self.advance(at);
        let keep = Keep::new(latest, kpi_days);
        match cmd {
            StoreCmd::MemberVisit {
                member,
                new_member,
                duration_s,
            } => {
                let secs = timed(duration_s);
                self.member_visit(member, new_member, secs, at, keep, window_us);
            }
            StoreCmd::RepVisit { rep, duration_s } => {
                let secs = timed(duration_s);
                self.bump(at, keep, |k| {
                    k.rep_visits += 1;
                    k.rep_visit_seconds = k.rep_visit_seconds.saturating_add(secs.unwrap_or(0));
                    k.timed_rep_visits += u64::from(secs.is_some());
                });
                self.rep_visit(rep, secs, at.unix_us, latest.us);
            }
            StoreCmd::Scan => self.bump(at, keep, |k| k.scans += 1),
            StoreCmd::Sale {
                order,
                member,
                amount,
                new_member,
            } => {
                // the same order can reach the store under two event ids (a resent `placed`)
                if self.orders.insert(hash_key(&order), ORDERS_CAP) {
                    let amount = amount.max(0);
                    self.bump(at, keep, |k| {
                        k.orders += 1;
                        k.sales = k.sales.saturating_add(amount);
                        k.members_won += u64::from(new_member);
                    });
                    if let Some(m) = member {
                        if !self.convert(&m, at.unix_us, window_us) {
                            // kept in time order, a late sale among the newer ones; when full,
                            // the oldest of them and this one goes
                            let i = self
                                .sales_waiting
                                .partition_point(|(t, _)| *t <= at.unix_us);
                            self.sales_waiting.insert(i, (at.unix_us, m));
                            if self.sales_waiting.len() > SALES_WAITING_CAP {
                                self.sales_waiting.pop_front();
                            }
                        }
                    }
                }
            }
            // handled first, above
            StoreCmd::Renamed { .. } => {}
            StoreCmd::Refund { amount, .. } => {
                let amount = amount.max(0);
                self.bump(at, keep, |k| k.refunds = k.refunds.saturating_add(amount));
            }
        }
        self.prune(keep, window_us);
    }

    /// Records the pair; false when it was applied already.
    fn first_delivery(&mut self, event: u128, kind: u8) -> bool {
        if self.seen.contains(&(event, kind)) {
            return false;
        }
        if self.seen.len() >= SEEN_CAP {
            self.seen.pop_front();
        }
        self.seen.push_back((event, kind));
        true
    }

    /// Moves the newest event time forward (never back) and returns it.
    fn advance(&mut self, at: EventTime) -> Latest {
        let now = Latest {
            us: at.unix_us,
            hour: at.local_hour(),
            day: at.local_day(),
            offset_min: Some(at.offset_min),
        };
        match self.latest {
            Some(l) if l.us >= now.us => l,
            _ => {
                self.latest = Some(now);
                now
            }
        }
    }

    /// Applies `f` to the hour and day buckets of `at`, unless they are already past retention
    /// (a late event must not resurrect a bucket the next prune would drop).
    fn bump(&mut self, at: EventTime, keep: Keep, f: impl Fn(&mut Kpi)) {
        if let Some(k) = bucket(&mut self.hours, at.local_hour(), keep.min_hour) {
            f(k);
        }
        if let Some(k) = bucket(&mut self.days, at.local_day(), keep.min_day) {
            f(k);
        }
    }

    /// Member `from` is `to` now: its latest visit (the newer of the two, when both visited)
    /// and its waiting sales go under `to`.
    fn renamed(&mut self, from: &Str, to: Str) {
        if let Some(v) = self.visitors.remove(from) {
            self.visitors_by_time.remove(&(v.at, from.clone()));
            let keep = match self.visitors.get(&to) {
                Some(mine) if mine.at >= v.at => None,
                Some(mine) => {
                    self.visitors_by_time.remove(&(mine.at, to.clone()));
                    Some(v)
                }
                None => Some(v),
            };
            if let Some(v) = keep {
                self.visitors_by_time.insert((v.at, to.clone()));
                self.visitors.insert(to.clone(), v);
            }
        }
        for (_, m) in self.sales_waiting.iter_mut() {
            if m == from {
                *m = to.clone();
            }
        }
    }

    fn member_visit(
        &mut self,
        member: Str,
        new_member: bool,
        secs: Option<i64>,
        at: EventTime,
        keep: Keep,
        window_us: i64,
    ) {
        let (ts, hour, day) = (at.unix_us, at.local_hour(), at.local_day());
        // the member's order came before this visit did, though placed after it within the
        // window: the visit converts once recorded, as it would have had they come in time
        // order (a visit older than the member's latest is not the one conversion counts
        // from). The first such visit to arrive takes the order: of two visits before one
        // order, arriving order first, the earlier may be converted where time order would
        // convert the later (the same day's bucket either way, not always the same hour's)
        let sold = if self.visitors.get(&member).is_none_or(|v| ts >= v.at) {
            self.sales_waiting
                .iter()
                .position(|(t, m)| *m == member && *t >= ts && *t - ts <= window_us)
        } else {
            None
        };
        let (new_in_hour, new_in_day) = match self.visitors.get_mut(&member) {
            Some(v) if ts >= v.at => {
                let fresh = (v.hour != hour, v.day != day);
                self.visitors_by_time.remove(&(v.at, member.clone()));
                self.visitors_by_time.insert((ts, member.clone()));
                // a visitor new to a bucket can convert in it once
                if fresh.0 {
                    v.hour_converted = false;
                }
                if fresh.1 {
                    v.day_converted = false;
                }
                *v = Visitor {
                    at: ts,
                    hour,
                    day,
                    ..*v
                };
                fresh
            }
            // a late visit: counted where it fell, while the entry keeps describing the
            // newer visit that conversion is measured from
            Some(v) => (v.hour != hour, v.day != day),
            None => {
                self.visitors_by_time.insert((ts, member.clone()));
                self.visitors.insert(
                    member,
                    Visitor {
                        at: ts,
                        hour,
                        day,
                        hour_converted: false,
                        day_converted: false,
                    },
                );
                (true, true)
            }
        };
        let count = |k: &mut Kpi, new_visitor: bool| {
            k.member_visits += 1;
            k.visitors += u64::from(new_visitor);
            k.members_won += u64::from(new_member);
            // time spent, over the visits that say it
            if let Some(s) = secs {
                k.member_visit_seconds = k.member_visit_seconds.saturating_add(s);
                k.timed_member_visits += 1;
            }
        };
        if let Some(k) = bucket(&mut self.hours, hour, keep.min_hour) {
            count(k, new_in_hour);
        }
        if let Some(k) = bucket(&mut self.days, day, keep.min_day) {
            count(k, new_in_day);
        }
        if let Some((t, m)) = sold.and_then(|i| self.sales_waiting.remove(i)) {
            self.convert(&m, t, window_us);
        }
    }

    /// Counts the member's latest visit as converted, in its own buckets, when the order came
    /// within the window after it; each visit converts at most once per bucket, so converted
    /// never exceeds visitors. False when there was no such visit (the sale then waits for one, see `sales_waiting`).
    fn convert(&mut self, member: &Str, ts: i64, window_us: i64) -> bool {
        let Some(v) = self.visitors.get_mut(member) else {
            return false;
        };
        if ts < v.at || ts - v.at > window_us {
            return false;
        }
        if !v.hour_converted {
            v.hour_converted = true;
            if let Some(k) = self.hours.get_mut(&v.hour) {
                k.converted += 1;
            }
        }
        if !v.day_converted {
            v.day_converted = true;
            if let Some(k) = self.days.get_mut(&v.day) {
                k.converted += 1;
            }
        }
        true
    }

    fn rep_visit(&mut self, rep: Str, secs: Option<i64>, ts: i64, latest_us: i64) {
        if !self.reps.contains_key(&rep) && self.reps.len() >= MAX_REPS {
            // min_by_key keeps the first of equal minima: the smallest id, deterministically
            let oldest = self
                .reps
                .iter()
                .min_by_key(|(_, r)| r.last_us)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.reps.remove(&id);
            }
        }
        let r = self.reps.entry(rep).or_insert_with(|| Rep {
            last_us: ts,
            ..Rep::default()
        });
        r.visits += 1;
        r.last_us = r.last_us.max(ts);
        if let Some(s) = secs {
            r.seconds = r.seconds.saturating_add(s);
            r.timed += 1;
        }
        let horizon = latest_us.saturating_sub(REP_WINDOW_DAYS * DAY_US);
        if ts >= horizon {
            let pos = r.recent.partition_point(|t| *t <= ts);
            r.recent.insert(pos, ts);
        }
        while r.recent.front().is_some_and(|t| *t < horizon) || r.recent.len() > MAX_REP_TIMES {
            r.recent.pop_front();
        }
    }

    /// Drops buckets past retention and visitors past the conversion window (at least a day,
    /// so a member visiting twice in a day stays one visitor) or beyond the cap.
    fn prune(&mut self, keep: Keep, window_us: i64) {
        while let Some(e) = self.hours.first_entry() {
            if *e.key() >= keep.min_hour {
                break;
            }
            e.remove();
        }
        while let Some(e) = self.days.first_entry() {
            if *e.key() >= keep.min_day {
                break;
            }
            e.remove();
        }
        let horizon = keep.latest_us.saturating_sub(window_us.max(DAY_US));
        while let Some((at, member)) = self.visitors_by_time.first().cloned() {
            if at >= horizon && self.visitors.len() <= MAX_VISITORS {
                break;
            }
            self.visitors_by_time.pop_first();
            self.visitors.remove(&member);
        }
        while self
            .sales_waiting
            .front()
            .is_some_and(|(t, _)| *t < horizon)
        {
            self.sales_waiting.pop_front();
        }
    }

    /// Local day `day`'s KPIs (zeros when none is kept).
    pub fn day_of(&self, day: i64) -> KpiView {
        KpiView::new(
            Bucket::Day(day),
            self.days.get(&day).copied().unwrap_or_default(),
        )
    }

    /// The kept hours of local day `day` with any activity, in order; none once the day
    /// itself is no longer kept (its last hours outlive it by up to a day).
    pub fn hours_of(&self, day: i64) -> Vec<KpiView> {
        self.day_hours(day)
            .map(|(h, k)| KpiView::new(Bucket::Hour(*h), *k))
            .collect()
    }

    /// [`Store::hours_of`]'s buckets, by local hour number.
    fn day_hours(&self, day: i64) -> impl Iterator<Item = (&i64, &Kpi)> {
        let first = day.saturating_mul(24);
        let last = if self.days.contains_key(&day) {
            first.saturating_add(24)
        } else {
            first
        };
        self.hours.range(first..last)
    }

    /// The store's KPIs as a board shows them, at query time `now` (its local hour and day
    /// pick "today" and "this hour"; the caller passes the watermark or the wall clock).
    pub fn view(&self, now: EventTime, rules: &crate::config::StoreRules) -> StoreView {
        // today and this hour in the offset the buckets count in: the configured one, else
        // that of the store's newest event (a store stored before encoding 5: `now`'s)
        let now = EventTime {
            offset_min: rules
                .utc_offset_minutes
                .or(self.latest.and_then(|l| l.offset_min))
                .unwrap_or(now.offset_min),
            ..now
        };
        let (day, hour) = (now.local_day(), now.local_hour());
        let window_start = now.unix_us.saturating_sub(REP_WINDOW_DAYS * DAY_US);
        StoreView {
            today: self.day_of(day),
            this_hour: KpiView::new(
                Bucket::Hour(hour),
                self.hours.get(&hour).copied().unwrap_or_default(),
            ),
            days: self
                .days
                .iter()
                .map(|(d, k)| KpiView::new(Bucket::Day(*d), *k))
                .collect(),
            hours: self.hours_of(day),
            reps: self
                .reps
                .iter()
                .map(|(id, r)| {
                    let recent: Vec<i64> = r
                        .recent
                        .iter()
                        .copied()
                        .filter(|t| *t > window_start && *t <= now.unix_us)
                        .collect();
                    RepView {
                        rep: id.clone(),
                        visits: r.visits,
                        last_visit: r.last_us,
                        visits_30d: recent.len(),
                        recent_visits: recent,
                        avg_duration_s: (r.timed > 0).then(|| r.seconds as f64 / r.timed as f64),
                        visit_seconds: r.seconds,
                        timed_visits: r.timed,
                    }
                })
                .collect(),
            recent_visitors: self.visitors.len(),
        }
    }
}

/// Several stores' KPIs of local day `day` summed, the day's and each hour's with any
/// activity (a member who visited two stores is a visitor of each).
pub fn rollup<'a>(
    stores: impl IntoIterator<Item = &'a Store>,
    day: i64,
) -> (KpiView, Vec<KpiView>) {
    let mut total = Kpi::default();
    let mut hours: BTreeMap<i64, Kpi> = BTreeMap::new();
    for s in stores {
        if let Some(k) = s.days.get(&day) {
            total.add(k);
        }
        for (h, k) in s.day_hours(day) {
            hours.entry(*h).or_default().add(k);
        }
    }
    (
        KpiView::new(Bucket::Day(day), total),
        hours
            .into_iter()
            .map(|(h, k)| KpiView::new(Bucket::Hour(h), k))
            .collect(),
    )
}

/// The oldest hour and day buckets still kept, given the newest event time.
#[derive(Debug, Clone, Copy)]
struct Keep {
    latest_us: i64,
    min_hour: i64,
    min_day: i64,
}

impl Keep {
    fn new(latest: Latest, kpi_days: i64) -> Self {
        Keep {
            latest_us: latest.us,
            min_hour: latest
                .hour
                .saturating_sub(kpi_days.saturating_mul(24))
                .saturating_add(1),
            min_day: latest.day.saturating_sub(kpi_days).saturating_add(1),
        }
    }
}

/// The bucket `key`, created when missing; None when it is older than `min`.
fn bucket(map: &mut BTreeMap<i64, Kpi>, key: i64, min: i64) -> Option<&mut Kpi> {
    (key >= min).then(|| map.entry(key).or_default())
}

/// A small number per command kind, for deduplication.
fn kind_of(cmd: &StoreCmd) -> u8 {
    match cmd {
        StoreCmd::MemberVisit { .. } => 0,
        StoreCmd::RepVisit { .. } => 1,
        StoreCmd::Scan => 2,
        StoreCmd::Sale { .. } => 3,
        StoreCmd::Refund { .. } => 4,
        StoreCmd::Renamed { .. } => 5,
    }
}

/// FNV-1a, 128 bits: a stable hash of an order key, so the dedup memory is 16 bytes per order
/// whatever the key's length (keys are up to 256 bytes).
fn hash_key(s: &str) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in s.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h
}

/// One bucket's KPIs with the derived conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiView {
    /// The bucket: a local day (`2026-11-11`) or hour (`2026-11-11T20:00`).
    pub at: Bucket,
    /// The counts.
    #[serde(flatten)]
    pub kpi: Kpi,
    /// Converted over visitors; None when nobody visited.
    pub conversion: Option<f64>,
    /// Average seconds of a member's visit (those with a known duration); None without one.
    pub avg_visit_s: Option<f64>,
    /// Average seconds of a sales rep's visit (those with a known duration); None without
    /// one.
    pub avg_rep_visit_s: Option<f64>,
}

/// A KPI bucket: a day or an hour of the sender's local time, shown as its date (and hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bucket {
    /// An hour (`2026-11-11T20:00`).
    Hour(#[serde(with = "crate::shown::hour")] i64),
    /// A day (`2026-11-11`).
    Day(#[serde(with = "crate::shown::day")] i64),
}

impl KpiView {
    fn new(at: Bucket, kpi: Kpi) -> Self {
        KpiView {
            at,
            kpi,
            conversion: kpi.conversion(),
            avg_visit_s: kpi.avg_visit_s(),
            avg_rep_visit_s: kpi.avg_rep_visit_s(),
        }
    }
}

/// One rep as the board shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepView {
    /// Rep id.
    pub rep: Str,
    /// Visits in all.
    pub visits: u64,
    /// Time of the latest visit (RFC 3339, UTC).
    #[serde(with = "crate::shown::instant")]
    pub last_visit: i64,
    /// Visits in the 30 days before the view's time.
    pub visits_30d: usize,
    /// When those were (RFC 3339, UTC), oldest first (at most the latest 256 kept).
    #[serde(with = "crate::shown::instants", default)]
    pub recent_visits: Vec<i64>,
    /// Average time spent per visit with a known duration, in seconds.
    pub avg_duration_s: Option<f64>,
    /// Seconds spent over the visits with a known duration.
    #[serde(default)]
    pub visit_seconds: i64,
    /// Visits with a known duration.
    #[serde(default)]
    pub timed_visits: u64,
}

/// A store's KPIs for queries and boards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreView {
    /// Today's KPIs (zero when nothing happened today).
    pub today: KpiView,
    /// This hour's KPIs.
    pub this_hour: KpiView,
    /// Every kept day, oldest first.
    pub days: Vec<KpiView>,
    /// Today's hours with any activity, in order (another day's: `?day=` on the route).
    pub hours: Vec<KpiView>,
    /// Reps by id.
    pub reps: Vec<RepView>,
    /// Members in the recent-visitor memory.
    pub recent_visitors: usize,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::Rules;
    use proptest::prelude::*;

    /// Minutes in µs.
    const MIN_US: i64 = 60_000_000;
    /// 2026-01-01T00:00:00Z in ms.
    const T0_MS: i64 = 1_767_225_600_000;

    fn at_ms(ms: i64) -> EventTime {
        EventTime::from_unix_ms(ms)
    }

    fn run(s: &mut Store, rules: &Rules, at: EventTime, id: u128, cmd: StoreCmd) -> Effects {
        let ctx = Ctx {
            at,
            event: uuid::Uuid::from_u128(id),
            rules,
            refs: &crate::refdata::NO_REFS,
        };
        let mut fx = Effects::default();
        s.handle(&"s1".into(), cmd, &ctx, &mut fx);
        fx
    }

    fn visit(member: &str, new_member: bool) -> StoreCmd {
        StoreCmd::MemberVisit {
            member: member.into(),
            duration_s: Some(600),
            new_member,
        }
    }

    fn sale(order: &str, member: Option<&str>, amount: i64) -> StoreCmd {
        StoreCmd::Sale {
            order: order.into(),
            member: member.map(Str::from),
            amount,
            new_member: false,
        }
    }

    fn day_of(ms: i64) -> i64 {
        at_ms(ms).local_day()
    }

    fn hour_of(ms: i64) -> i64 {
        at_ms(ms).local_hour()
    }

    #[test]
    fn a_member_visiting_twice_a_day_is_one_visitor_of_the_day_and_of_each_hour() {
        let rules = Rules::default();
        let mut s = Store::default();
        let t1 = T0_MS + 9 * 3_600_000;
        let t2 = T0_MS + 15 * 3_600_000;
        let fx = run(&mut s, &rules, at_ms(t1), 1, visit("m1", true));
        assert_eq!(fx, Effects::default(), "stores emit nothing");
        run(&mut s, &rules, at_ms(t2), 2, visit("m1", false));
        run(&mut s, &rules, at_ms(t2), 3, visit("m2", false));
        let d = s.days[&day_of(t1)];
        assert_eq!((d.member_visits, d.visitors, d.members_won), (3, 2, 1));
        assert_eq!(s.hours[&hour_of(t1)].visitors, 1);
        assert_eq!(s.hours[&hour_of(t1)].members_won, 1);
        assert_eq!(s.hours[&hour_of(t2)].visitors, 2);
        assert_eq!(s.hours[&hour_of(t2)].members_won, 0);
        // the next day the same member is a visitor again
        run(
            &mut s,
            &rules,
            at_ms(t1 + 86_400_000),
            4,
            visit("m1", false),
        );
        assert_eq!(s.days[&(day_of(t1) + 1)].visitors, 1);
    }

    #[test]
    fn a_redelivered_command_counts_once_but_another_kind_of_the_same_event_counts() {
        let rules = Rules::default();
        let mut s = Store::default();
        let t = at_ms(T0_MS);
        run(&mut s, &rules, t, 7, StoreCmd::Scan);
        run(&mut s, &rules, t, 7, StoreCmd::Scan);
        run(&mut s, &rules, t, 8, StoreCmd::Scan);
        let once = s.clone();
        run(&mut s, &rules, t, 7, StoreCmd::Scan);
        assert_eq!(
            s, once,
            "a redelivery changes nothing, not even the dedup memory"
        );
        run(&mut s, &rules, t, 7, visit("m1", false));
        let d = s.days[&t.local_day()];
        assert_eq!((d.scans, d.member_visits), (2, 1));
    }

    #[test]
    fn an_order_key_is_counted_once_even_under_two_event_ids() {
        let rules = Rules::default();
        let mut s = Store::default();
        let t = at_ms(T0_MS);
        run(&mut s, &rules, t, 1, sale("mall:o1", None, 1299));
        run(&mut s, &rules, t, 2, sale("mall:o1", None, 1299));
        run(&mut s, &rules, t, 3, sale("mall:o2", None, 500));
        run(
            &mut s,
            &rules,
            t,
            4,
            StoreCmd::Refund {
                order: "mall:o2".into(),
                amount: 200,
            },
        );
        let d = s.days[&t.local_day()];
        assert_eq!((d.orders, d.sales, d.refunds), (2, 1799, 200));
        assert_eq!(s.hours[&t.local_hour()], d);
    }

    #[test]
    fn a_new_member_ordering_is_a_member_won() {
        let rules = Rules::default();
        let mut s = Store::default();
        let t = at_ms(T0_MS);
        let cmd = StoreCmd::Sale {
            order: "store:o1".into(),
            member: Some("m9".into()),
            amount: 100,
            new_member: true,
        };
        run(&mut s, &rules, t, 1, cmd);
        let d = s.days[&t.local_day()];
        assert_eq!((d.members_won, d.visitors, d.converted), (1, 0, 0));
    }

    #[test]
    fn an_order_that_arrives_before_its_visit_converts_it_as_in_time_order() {
        let rules = Rules::default(); // 24 h window
        let tv = T0_MS + 20 * 3_600_000;
        let ts = tv + 5 * 60_000;
        let visit_then_sale = |s: &mut Store, order: &[usize]| {
            let cmds = [
                (tv, 1, visit("m1", false)),
                (ts, 2, sale("store:s1", Some("m1"), 450)),
                (tv + 60_000, 3, visit("m2", false)),
            ];
            for &i in order {
                let (t, id, c) = cmds[i].clone();
                run(s, &rules, at_ms(t), id, c);
            }
        };
        let mut in_time = Store::default();
        visit_then_sale(&mut in_time, &[0, 2, 1]);
        let mut sale_first = Store::default();
        visit_then_sale(&mut sale_first, &[1, 0, 2]);
        let d = sale_first.days[&day_of(tv)];
        assert_eq!((d.visitors, d.converted, d.orders), (2, 1, 1));
        assert_eq!(sale_first.hours, in_time.hours);
        assert_eq!(sale_first.days, in_time.days);
        assert!(sale_first.sales_waiting.is_empty(), "used by its visit");
        // a sale of a member whose visit never comes waits, then leaves with the window
        let mut s = Store::default();
        run(
            &mut s,
            &rules,
            at_ms(ts),
            4,
            sale("store:s2", Some("m9"), 10),
        );
        assert_eq!(s.sales_waiting.len(), 1);
        run(
            &mut s,
            &rules,
            at_ms(ts + 25 * 3_600_000),
            5,
            visit("m8", false),
        );
        assert!(s.sales_waiting.is_empty(), "past the window");
        // a full list keeps the newest: a late sale older than all of them is the one dropped
        let mut s = Store::default();
        for i in 0..SALES_WAITING_CAP as i64 {
            let o = format!("store:f{i}");
            run(
                &mut s,
                &rules,
                at_ms(ts + 1_000 * (i + 1)),
                100 + i as u128,
                sale(&o, Some("mx"), 1),
            );
        }
        run(
            &mut s,
            &rules,
            at_ms(ts),
            99,
            sale("store:late", Some("my"), 1),
        );
        assert_eq!(s.sales_waiting.len(), SALES_WAITING_CAP);
        assert_eq!(
            s.sales_waiting.front().map(|w| w.0),
            Some((ts + 1_000) * 1_000)
        );
        // a visit after the sale does not convert with it
        let mut s = Store::default();
        run(
            &mut s,
            &rules,
            at_ms(ts),
            6,
            sale("store:s3", Some("m1"), 10),
        );
        run(&mut s, &rules, at_ms(ts + 60_000), 7, visit("m1", false));
        assert_eq!(s.days[&day_of(ts)].converted, 0);
    }

    #[test]
    fn member_visits_with_a_duration_give_the_buckets_average_visit() {
        let rules = Rules::default();
        let mut s = Store::default();
        let t = T0_MS + 10 * 3_600_000;
        run(&mut s, &rules, at_ms(t), 1, visit("m1", false)); // 600 s
        let untimed = StoreCmd::MemberVisit {
            member: "m2".into(),
            duration_s: None,
            new_member: false,
        };
        run(&mut s, &rules, at_ms(t + 60_000), 2, untimed);
        let long = StoreCmd::MemberVisit {
            member: "m3".into(),
            duration_s: Some(1_800),
            new_member: false,
        };
        run(&mut s, &rules, at_ms(t + 120_000), 3, long);
        let d = s.days[&day_of(t)];
        assert_eq!(
            (
                d.member_visits,
                d.timed_member_visits,
                d.member_visit_seconds
            ),
            (3, 2, 2_400)
        );
        let v = s.view(at_ms(t), &rules.store);
        assert_eq!(v.today.avg_visit_s, Some(1_200.0));
        assert_eq!(v.this_hour.avg_visit_s, Some(1_200.0));
        let json = serde_json::to_value(&v.today).unwrap();
        assert_eq!(json["member_visit_seconds"], 2_400);
        assert_eq!(json["avg_visit_s"], 1_200.0);
        // a visit of 0 seconds or of ten days counts, its time does not
        for (i, d) in [(4, 0), (5, 864_000)] {
            let odd = StoreCmd::MemberVisit {
                member: format!("m{i}").into(),
                duration_s: Some(d),
                new_member: false,
            };
            run(&mut s, &rules, at_ms(t + 180_000), i, odd);
        }
        let d = s.days[&day_of(t)];
        assert_eq!(
            (
                d.member_visits,
                d.timed_member_visits,
                d.member_visit_seconds
            ),
            (5, 2, 2_400)
        );
    }

    #[test]
    fn an_order_within_the_window_converts_the_visit_once_in_the_visits_buckets() {
        let rules = Rules::default(); // 24 h window
        let mut s = Store::default();
        let tv = T0_MS + 20 * 3_600_000;
        run(&mut s, &rules, at_ms(tv), 1, visit("m1", false));
        run(&mut s, &rules, at_ms(tv), 2, visit("m2", false));
        // next day, 10 hours after the visit: still converts the visit's day
        let ts = tv + 10 * 3_600_000;
        run(
            &mut s,
            &rules,
            at_ms(ts),
            3,
            sale("mall:o1", Some("m1"), 1000),
        );
        run(
            &mut s,
            &rules,
            at_ms(ts),
            4,
            sale("mall:o2", Some("m1"), 1000),
        );
        let d = s.days[&day_of(tv)];
        assert_eq!((d.visitors, d.converted, d.orders), (2, 1, 0));
        assert_eq!(s.hours[&hour_of(tv)].converted, 1);
        let sale_day = s.days[&day_of(ts)];
        assert_eq!(
            (sale_day.orders, sale_day.converted, sale_day.visitors),
            (2, 0, 0)
        );
        let v = s.view(at_ms(tv), &Rules::default().store);
        assert_eq!(v.today.conversion, Some(0.5));
        assert_eq!(v.this_hour.conversion, Some(0.5));
        assert_eq!(
            s.view(at_ms(ts), &Rules::default().store).today.conversion,
            None,
            "no visitors that day"
        );
        // m2 orders after the window: not converted
        run(
            &mut s,
            &rules,
            at_ms(tv + 25 * 3_600_000),
            5,
            sale("mall:o3", Some("m2"), 1),
        );
        assert_eq!(s.days[&day_of(tv)].converted, 1);
        // a member who never visited does not convert anything
        run(&mut s, &rules, at_ms(ts), 6, sale("mall:o4", Some("m7"), 1));
        assert_eq!(s.days.values().map(|k| k.converted).sum::<u64>(), 1);
    }

    /// A member who visited merged into another since: the survivor's order converts that
    /// visit (the store knew it under the id merged away), and a rename repeated, or of an
    /// id the store never saw, changes nothing.
    #[test]
    fn a_visit_under_a_merged_id_converts_the_survivors_order() {
        let rules = Rules::default();
        let mut s = Store::default();
        let tv = T0_MS + 20 * 3_600_000;
        run(&mut s, &rules, at_ms(tv), 1, visit("m9", false));
        let renamed = |from: &str| StoreCmd::Renamed {
            from: from.into(),
            to: "m1".into(),
        };
        for (n, from) in [(2, "m9"), (2, "m9"), (3, "m5")] {
            run(&mut s, &rules, at_ms(tv + 60_000), n, renamed(from));
        }
        assert!(s.visitors.get("m9").is_none() && s.visitors.get("m1").is_some());
        assert_eq!(s.visitors_by_time.len(), 1);
        let ts = tv + 3_600_000;
        run(
            &mut s,
            &rules,
            at_ms(ts),
            4,
            sale("mall:o1", Some("m1"), 1000),
        );
        assert_eq!(s.days[&day_of(tv)].converted, 1);
    }

    #[test]
    fn a_new_visit_can_convert_again_in_its_own_buckets() {
        let rules = Rules::default();
        let mut s = Store::default();
        let t1 = T0_MS + 3_600_000;
        run(&mut s, &rules, at_ms(t1), 1, visit("m1", false));
        run(
            &mut s,
            &rules,
            at_ms(t1 + 60_000),
            2,
            sale("a", Some("m1"), 1),
        );
        let t2 = t1 + 86_400_000;
        run(&mut s, &rules, at_ms(t2), 3, visit("m1", false));
        run(
            &mut s,
            &rules,
            at_ms(t2 + 60_000),
            4,
            sale("b", Some("m1"), 1),
        );
        assert_eq!(s.days[&day_of(t1)].converted, 1);
        assert_eq!(s.days[&day_of(t2)].converted, 1);
        // a second visit the same day in another hour: a new hour visitor, not a new day one;
        // its order converts the hour but the day only once
        let t3 = t2 + 2 * 3_600_000;
        run(&mut s, &rules, at_ms(t3), 5, visit("m1", false));
        run(
            &mut s,
            &rules,
            at_ms(t3 + 60_000),
            6,
            sale("c", Some("m1"), 1),
        );
        let d = s.days[&day_of(t2)];
        assert_eq!((d.visitors, d.converted), (1, 1));
        assert_eq!(s.hours[&hour_of(t3)].visitors, 1);
        assert_eq!(s.hours[&hour_of(t3)].converted, 1);
    }

    #[test]
    fn buckets_follow_the_senders_local_day() {
        let rules = Rules::default();
        let mut s = Store::default();
        // 2026-01-01T17:00Z is 01:00 on 2026-01-02 at +08:00
        let utc = T0_MS + 17 * 3_600_000;
        let local = EventTime {
            unix_us: utc * 1000,
            offset_min: 480,
        };
        run(&mut s, &rules, local, 1, StoreCmd::Scan);
        let d = day_of(T0_MS);
        assert_eq!(s.days.keys().copied().collect::<Vec<_>>(), vec![d + 1]);
        assert_eq!(
            s.hours.keys().copied().collect::<Vec<_>>(),
            vec![(d + 1) * 24 + 1]
        );
        run(&mut s, &rules, at_ms(utc), 2, StoreCmd::Scan);
        assert_eq!(s.days.keys().copied().collect::<Vec<_>>(), vec![d, d + 1]);
        assert_eq!(s.view(local, &Rules::default().store).today.kpi.scans, 1);
    }

    /// The view's today and this hour are counted in the offset of the store's newest event,
    /// as its buckets are, whatever offset the service asks the view in: a store whose
    /// senders send UTC sees its latest hour's visit in `this_hour`.
    #[test]
    fn today_and_this_hour_are_in_the_offset_of_the_newest_event() {
        let rules = Rules::default();
        let mut s = Store::default();
        // 03:30Z, sent as UTC: 11:30 in China
        let visit = at_ms(T0_MS + 210 * 60_000);
        run(
            &mut s,
            &rules,
            visit,
            1,
            StoreCmd::RepVisit {
                rep: "r1".into(),
                duration_s: Some(600),
            },
        );
        let asked = EventTime {
            offset_min: 480,
            ..visit
        };
        let v = s.view(asked, &Rules::default().store);
        assert_eq!(v.this_hour.kpi.rep_visits, 1, "{v:?}");
        assert_eq!(v.today.kpi.rep_visits, 1, "{v:?}");
        // a store stored before the offset was kept: the view's own offset, as before
        if let Some(l) = s.latest.as_mut() {
            l.offset_min = None;
        }
        assert_eq!(
            s.view(asked, &Rules::default().store)
                .this_hour
                .kpi
                .rep_visits,
            0
        );
    }

    /// With `utc-offset-minutes` set, a rep visit sent in UTC and a sale sent in China time
    /// in the same real hour fill one hour bucket and one day, and the view shows both.
    #[test]
    fn a_configured_offset_puts_every_sender_in_the_same_buckets() {
        let mut rules = Rules::default();
        rules.store.utc_offset_minutes = Some(480);
        let mut s = Store::default();
        // 16:30Z on Jan 1 is 00:30 on Jan 2 in China
        let utc = at_ms(T0_MS + (16 * 60 + 30) * 60_000);
        let rep = || StoreCmd::RepVisit {
            rep: "r1".into(),
            duration_s: None,
        };
        run(&mut s, &rules, utc, 1, rep());
        let china = EventTime {
            unix_us: utc.unix_us + 10 * MIN_US,
            offset_min: 480,
        };
        run(&mut s, &rules, china, 2, sale("o1", None, 500));
        let d = day_of(T0_MS);
        assert_eq!(s.days.keys().copied().collect::<Vec<_>>(), vec![d + 1]);
        assert_eq!(s.hours.len(), 1);
        let v = s.view(utc, &rules.store);
        assert_eq!(
            (v.this_hour.kpi.rep_visits, v.this_hour.kpi.orders),
            (1, 1),
            "{v:?}"
        );
        // without it, the senders' offsets: two days
        let mut apart = Store::default();
        let plain = Rules::default();
        run(&mut apart, &plain, utc, 1, rep());
        run(&mut apart, &plain, china, 2, sale("o1", None, 500));
        assert_eq!(apart.days.len(), 2);
        // a store whose newest event came before the setting (sent in UTC) is viewed in the
        // configured offset at once, not in its newest event's until its next one
        let mut before = Store::default();
        run(&mut before, &plain, utc, 1, rep());
        let v = before.view(utc, &rules.store);
        assert_eq!(v.today.at, Bucket::Day(d + 1), "{v:?}");
    }

    #[test]
    fn buckets_older_than_kpi_days_are_pruned_by_event_time() {
        let mut rules = Rules::default();
        rules.store.kpi_days = 3;
        let mut s = Store::default();
        for i in 0..5 {
            run(
                &mut s,
                &rules,
                at_ms(T0_MS + i * 86_400_000),
                i as u128,
                StoreCmd::Scan,
            );
        }
        let d0 = day_of(T0_MS);
        assert_eq!(
            s.days.keys().copied().collect::<Vec<_>>(),
            vec![d0 + 2, d0 + 3, d0 + 4]
        );
        assert_eq!(
            s.hours.len(),
            3,
            "one hour bucket per day, all within 72 hours"
        );
        // a late event for a pruned day does not bring the day back
        run(&mut s, &rules, at_ms(T0_MS), 99, StoreCmd::Scan);
        assert!(!s.days.contains_key(&d0));
        assert!(!s.hours.contains_key(&hour_of(T0_MS)));
        // a late event within retention still lands in its own day
        run(
            &mut s,
            &rules,
            at_ms(T0_MS + 2 * 86_400_000),
            100,
            StoreCmd::Scan,
        );
        assert_eq!(s.days[&(d0 + 2)].scans, 2);
        assert_eq!(s.latest.map(|l| l.day), Some(d0 + 4));
    }

    /// A day's last hours are kept up to a day longer than the day: once the day is gone, it
    /// shows no hours and adds nothing to a rollup (a total of zero beside hours of one).
    #[test]
    fn a_day_no_longer_kept_has_no_hours_and_adds_nothing_to_a_rollup() {
        let rules = Rules::default(); // 35 days kept
        let mut s = Store::default();
        let t = T0_MS + 20 * 3_600_000;
        run(&mut s, &rules, at_ms(t), 1, visit("m1", false));
        let d = day_of(t);
        assert_eq!(s.hours_of(d).len(), 1);
        assert_eq!(rollup([&s], d).0.kpi.member_visits, 1);
        run(
            &mut s,
            &rules,
            at_ms(t + 35 * 86_400_000 - 10 * 3_600_000),
            2,
            visit("m2", false),
        );
        assert!(!s.days.contains_key(&d));
        let first = d * 24;
        assert!(
            s.hours.range(first..first + 24).next().is_some(),
            "the day's last hour outlives it"
        );
        assert!(s.hours_of(d).is_empty());
        let (total, hours) = rollup([&s], d);
        assert_eq!((total.kpi.member_visits, hours.len()), (0, 0));
    }

    #[test]
    fn rep_visits_report_last_visit_frequency_and_average_duration() {
        let rules = Rules::default();
        let mut s = Store::default();
        let rep = |d: Option<i64>| StoreCmd::RepVisit {
            rep: "r1".into(),
            duration_s: d,
        };
        let day = 86_400_000;
        run(&mut s, &rules, at_ms(T0_MS), 1, rep(Some(1200)));
        run(&mut s, &rules, at_ms(T0_MS + 20 * day), 2, rep(Some(600)));
        run(&mut s, &rules, at_ms(T0_MS + 40 * day), 3, rep(None));
        let now = at_ms(T0_MS + 40 * day + 1);
        let v = s.view(now, &rules.store);
        assert_eq!(v.reps.len(), 1);
        let r = &v.reps[0];
        assert_eq!(
            (r.visits, r.last_visit, r.visits_30d),
            (3, (T0_MS + 40 * day) * 1000, 2)
        );
        assert_eq!(r.avg_duration_s, Some(900.0));
        assert_eq!(
            s.reps["r1"].recent.len(),
            2,
            "the visit 40 days back is pruned"
        );
        let today = v.today.kpi;
        assert_eq!(
            (
                today.rep_visits,
                today.rep_visit_seconds,
                today.timed_rep_visits
            ),
            (1, 0, 0)
        );
        assert_eq!(
            v.today.avg_rep_visit_s, None,
            "the untimed visit has no average"
        );
        let timed = s.days[&day_of(T0_MS + 20 * day)];
        assert_eq!((timed.rep_visit_seconds, timed.timed_rep_visits), (600, 1));
        assert_eq!(timed.avg_rep_visit_s(), Some(600.0));
        // later, fewer visits are recent
        assert_eq!(
            s.view(at_ms(T0_MS + 55 * day), &Rules::default().store)
                .reps[0]
                .visits_30d,
            1
        );
    }

    #[test]
    fn reps_are_bounded_dropping_the_longest_unseen() {
        let rules = Rules::default();
        let mut s = Store::default();
        for i in 0..=MAX_REPS as i64 {
            let cmd = StoreCmd::RepVisit {
                rep: compact_str::format_compact!("r{i:04}"),
                duration_s: None,
            };
            run(&mut s, &rules, at_ms(T0_MS + i * 1000), i as u128, cmd);
        }
        assert_eq!(s.reps.len(), MAX_REPS);
        assert!(!s.reps.contains_key("r0000"));
        assert!(s.reps.contains_key("r0001"));
    }

    #[test]
    fn recent_visitors_are_bounded_and_pruned_after_the_window() {
        let rules = Rules::default();
        let mut s = Store::default();
        for i in 0..=MAX_VISITORS as i64 {
            let cmd = visit(&format!("m{i:05}"), false);
            run(&mut s, &rules, at_ms(T0_MS + i), (i + 1) as u128, cmd);
        }
        assert_eq!(s.visitors.len(), MAX_VISITORS);
        assert_eq!(s.visitors_by_time.len(), MAX_VISITORS);
        assert!(!s.visitors.contains_key("m00000"), "the oldest is dropped");
        assert!(s.visitors.contains_key("m00001"));
        assert_eq!(s.days[&day_of(T0_MS)].visitors, MAX_VISITORS as u64 + 1);
        // past the 24 h window everyone but the new visitor is forgotten
        run(
            &mut s,
            &rules,
            at_ms(T0_MS + 25 * 3_600_000),
            1 << 40,
            visit("late", false),
        );
        let kept: Vec<&Str> = s.visitors.sorted().into_iter().map(|(m, _)| m).collect();
        assert_eq!(kept, vec!["late"]);
        assert_eq!(s.visitors_by_time.len(), 1);
    }

    #[test]
    fn view_of_an_empty_store_is_zero() {
        let v = Store::default().view(at_ms(T0_MS), &Rules::default().store);
        assert_eq!(v.today.kpi, Kpi::default());
        assert_eq!(v.today.conversion, None);
        assert!(v.days.is_empty() && v.reps.is_empty());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["today"]["scans"], 0,
            "kpi fields are flattened: {json}"
        );
    }

    /// One random store command, with a time step (minutes, may be negative: a late event).
    #[derive(Debug, Clone)]
    enum Op {
        Visit(u8, bool),
        Rep(u8, Option<i64>),
        Scan,
        Sale(u8, Option<u8>, i64, bool),
        Refund(u8, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..6, any::<bool>()).prop_map(|(m, n)| Op::Visit(m, n)),
            1 => (0u8..3, proptest::option::of(0i64..3600)).prop_map(|(r, d)| Op::Rep(r, d)),
            1 => Just(Op::Scan),
            3 => (0u8..10, proptest::option::of(0u8..6), 0i64..100_000, any::<bool>())
                .prop_map(|(o, m, a, n)| Op::Sale(o, m, a, n)),
            1 => (0u8..10, 0i64..10_000).prop_map(|(o, a)| Op::Refund(o, a)),
        ]
    }

    fn cmd_of(op: &Op) -> StoreCmd {
        match op {
            Op::Visit(m, n) => visit(&format!("m{m}"), *n),
            Op::Rep(r, d) => StoreCmd::RepVisit {
                rep: compact_str::format_compact!("r{r}"),
                duration_s: *d,
            },
            Op::Scan => StoreCmd::Scan,
            Op::Sale(o, m, a, n) => StoreCmd::Sale {
                order: compact_str::format_compact!("mall:o{o}"),
                member: m.map(|m| compact_str::format_compact!("m{m}")),
                amount: *a,
                new_member: *n,
            },
            Op::Refund(o, a) => StoreCmd::Refund {
                order: compact_str::format_compact!("mall:o{o}"),
                amount: *a,
            },
        }
    }

    /// Ops with their event ids (their index) and times: mostly forward, sometimes late.
    fn timeline(ops: &[(Op, i64)], offset_min: i16) -> Vec<(Op, u128, EventTime)> {
        let mut t = T0_MS * 1000;
        ops.iter()
            .enumerate()
            .map(|(i, (op, step_min))| {
                t += step_min * MIN_US;
                let at = EventTime {
                    unix_us: t,
                    offset_min,
                };
                (op.clone(), i as u128, at)
            })
            .collect()
    }

    fn check_invariants(s: &Store, kpi_days: i64) -> Result<(), TestCaseError> {
        let l = s.latest.expect("a command was applied");
        prop_assert!(s.sales_waiting.len() <= SALES_WAITING_CAP);
        prop_assert!(s
            .sales_waiting
            .iter()
            .zip(s.sales_waiting.iter().skip(1))
            .all(|(a, b)| a.0 <= b.0));
        prop_assert!(s.days.len() as i64 <= kpi_days);
        prop_assert!(s.hours.len() as i64 <= kpi_days * 24);
        prop_assert!(s.days.keys().all(|d| *d > l.day - kpi_days && *d <= l.day));
        prop_assert!(s
            .hours
            .keys()
            .all(|h| *h > l.hour - kpi_days * 24 && *h <= l.hour));
        for k in s.days.values().chain(s.hours.values()) {
            prop_assert!(k.converted <= k.visitors, "{k:?}");
            prop_assert!(k.visitors <= k.member_visits, "{k:?}");
            prop_assert!(k.conversion().is_none_or(|c| (0.0..=1.0).contains(&c)));
        }
        prop_assert!(s.visitors.len() <= MAX_VISITORS);
        prop_assert_eq!(s.visitors.len(), s.visitors_by_time.len());
        for (at, m) in &s.visitors_by_time {
            prop_assert_eq!(s.visitors.get(m).map(|v| v.at), Some(*at));
            prop_assert!(*at >= l.us - DAY_US.max(24 * HOUR_US));
        }
        prop_assert!(s.seen.len() <= SEEN_CAP && s.orders.0.len() <= ORDERS_CAP);
        prop_assert!(s.reps.len() <= MAX_REPS);
        prop_assert!(s.reps.values().all(|r| r.recent.len() <= MAX_REP_TIMES));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn repeated_deliveries_never_double_count_and_state_stays_bounded(
            ops in proptest::collection::vec((op(), prop_oneof![8 => 0i64..240, 1 => -600i64..0, 1 => 1440i64..4000]), 1..60),
            copies in proptest::collection::vec(1usize..4, 60),
            redeliver in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..20),
            offset_min in prop_oneof![Just(0i16), Just(480), Just(-300)],
            kpi_days in 1i64..6,
        ) {
            let mut rules = Rules::default();
            rules.store.kpi_days = kpi_days;
            let events = timeline(&ops, offset_min);
            let mut once = Store::default();
            for (op, id, at) in &events {
                run(&mut once, &rules, *at, *id, cmd_of(op));
                check_invariants(&once, kpi_days)?;
            }
            // the same events, each delivered 1 to 3 times, plus redeliveries of earlier ones
            let mut many = Store::default();
            for (i, (op, id, at)) in events.iter().enumerate() {
                for _ in 0..copies[i] {
                    run(&mut many, &rules, *at, *id, cmd_of(op));
                }
                for (which, _) in redeliver.iter().filter(|(_, when)| when.index(events.len()) == i) {
                    let (op, id, at) = which.get(&events[..=i]);
                    run(&mut many, &rules, *at, *id, cmd_of(op));
                }
                check_invariants(&many, kpi_days)?;
            }
            prop_assert_eq!(serde_json::to_string(&once).unwrap(), serde_json::to_string(&many).unwrap());
            // replaying the whole sequence onto the final state changes nothing either
            let before = once.clone();
            for (op, id, at) in &events {
                run(&mut once, &rules, *at, *id, cmd_of(op));
            }
            prop_assert_eq!(&once, &before);
            // and the same sequence on a fresh store gives byte-identical state
            let mut again = Store::default();
            for (op, id, at) in &events {
                run(&mut again, &rules, *at, *id, cmd_of(op));
            }
            prop_assert_eq!(serde_json::to_vec(&again).unwrap(), serde_json::to_vec(&before).unwrap());
        }

        #[test]
        fn totals_count_each_order_and_event_exactly_once(
            ops in proptest::collection::vec((op(), 0i64..120), 1..80),
        ) {
            // all within a few days and the default 35-day retention: nothing is pruned
            let rules = Rules::default();
            let events = timeline(&ops, 480);
            let mut s = Store::default();
            let mut orders = std::collections::BTreeMap::new();
            let (mut scans, mut visits, mut refunds) = (0u64, 0u64, 0i64);
            for (op, id, at) in &events {
                // each event delivered twice
                run(&mut s, &rules, *at, *id, cmd_of(op));
                run(&mut s, &rules, *at, *id, cmd_of(op));
                match op {
                    Op::Sale(o, _, a, _) => {
                        orders.entry(*o).or_insert(*a);
                    }
                    Op::Scan => scans += 1,
                    Op::Visit(..) => visits += 1,
                    Op::Refund(_, a) => refunds += a,
                    Op::Rep(..) => {}
                }
            }
            let sum = |f: fn(&Kpi) -> i64| s.days.values().map(f).sum::<i64>();
            prop_assert_eq!(sum(|k| k.orders as i64), orders.len() as i64);
            prop_assert_eq!(sum(|k| k.sales), orders.values().sum::<i64>());
            prop_assert_eq!(sum(|k| k.scans as i64), scans as i64);
            prop_assert_eq!(sum(|k| k.member_visits as i64), visits as i64);
            prop_assert_eq!(sum(|k| k.refunds), refunds);
            let hsum = |f: fn(&Kpi) -> i64| s.hours.values().map(f).sum::<i64>();
            prop_assert_eq!(hsum(|k| k.sales), sum(|k| k.sales));
            prop_assert_eq!(hsum(|k| k.member_visits as i64), visits as i64);
        }
    }
}

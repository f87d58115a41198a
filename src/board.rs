//! The managers' live board: what the page at `/` shows, kept up to date by the shard from
//! the outputs it produces. Minutes are event-time minutes (China time), so a replay or a
//! generated day shows the same board as live traffic would.

use omnistream_actors::engine::Emitted;
use omnistream_actors::fraud::Decision;
use omnistream_actors::sharded::Sharded;
use omnistream_actors::Output;
use omnistream_schemas::{Body, Event, EventTime, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Minutes of history on the board.
const MINUTES: i64 = 60;
/// Blocked scans in the ticker.
const TICKER: usize = 20;
/// Rows in each top list.
const TOP: usize = 10;

/// One event-time minute.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Minute {
    /// Minute number (unix seconds / 60).
    pub minute: i64,
    /// Accepted order value in fen by channel.
    pub sales: BTreeMap<String, i64>,
    /// Accepted orders by channel.
    pub orders: BTreeMap<String, u64>,
    /// Scans allowed.
    pub allow: u64,
    /// Scans sent to review.
    pub review: u64,
    /// Scans blocked.
    pub block: u64,
    /// Repeat scans by the same member.
    pub duplicate: u64,
    /// Points added to members' balances (earned, scan rewards, refunds, adjustments; a
    /// merge's moves left out).
    #[serde(default)]
    pub points_in: i64,
    /// Points taken from them (redeemed, reversed, expired, adjustments; a merge's moves
    /// left out).
    #[serde(default)]
    pub points_out: i64,
    /// Member visits to stores (none in minutes saved before visits were counted).
    #[serde(default)]
    pub visits: u64,
    /// Sales-rep visits to stores.
    #[serde(default)]
    pub rep_visits: u64,
}

/// A blocked scan as the ticker shows it (member masked).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocked {
    /// Event time (µs).
    pub at: i64,
    /// Member id with most characters masked.
    pub member: String,
    /// Campaign.
    pub campaign: String,
    /// Score.
    pub score: u8,
    /// Reason codes.
    pub reasons: Vec<String>,
    /// The scan's event id (`/v1/decisions?scan_event=` finds its decision; absent in
    /// boards saved before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<uuid::Uuid>,
    /// The code scanned (absent for a review blocked, and in older saved boards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The board's state.
#[derive(Debug, Default)]
pub struct Board {
    minutes: BTreeMap<i64, Minute>,
    reasons: HashMap<String, u64>,
    /// Each store's net sales (accepted orders less what was cancelled or returned) on the
    /// local day `store_day`, the newest an order event was on.
    store_sales: HashMap<String, i64>,
    /// Each store's member and rep visits on `store_day`.
    store_visits: HashMap<String, (u64, u64)>,
    store_day: i64,
    /// SKU → location → ATP, nested so a stock change looks its row up without a copy.
    low_stock: BTreeMap<String, BTreeMap<String, i64>>,
    holds: BTreeMap<String, (u32, i64, i64)>,
    /// The amount each of those dealers holds (fen; none: 0, or held before it was said).
    held_fen: BTreeMap<String, i64>,
    blocked: VecDeque<Blocked>,
    low_atp: i64,
}

/// What the page receives every second.
#[derive(Debug, Serialize)]
pub struct BoardView<'a> {
    /// The last hour, oldest first.
    pub minutes: Vec<&'a Minute>,
    /// Fraud reasons by count, largest first.
    pub top_reasons: Vec<(&'a str, u64)>,
    /// Stores by net sales on the newest local day an order or visit was on, largest first.
    pub top_stores: Vec<(&'a str, i64)>,
    /// The stores of that day by net sales, then by member visits: what their KPIs say of it.
    pub stores_today: Vec<StoreToday>,
    /// That day (`YYYY-MM-DD`, local), absent before any order or visit.
    #[serde(
        serialize_with = "omnistream_actors::shown::day::serialize",
        skip_serializing_if = "no_day"
    )]
    pub stores_day: i64,
    /// SKU locations at or near stock-out, lowest ATP first.
    pub low_stock: Vec<(&'a str, &'a str, i64)>,
    /// Dealers with orders on hold or exposure past their limit: (dealer, held orders,
    /// amount held, exposure, limit), the most credit wanting first (the amount held plus
    /// the exposure past the limit), at most 20.
    pub holds: Vec<(&'a str, u32, i64, i64, i64)>,
    /// How many dealers hold orders or are past their limit, listed or not.
    pub holds_total: usize,
    /// Latest blocked scans, newest first.
    pub blocked: Vec<&'a Blocked>,
}

/// One store's day on the board: its net sales and visits as the board counted them, and
/// what its KPIs (`/v1/stores/{id}/kpis`, that day) say of its visitors.
#[derive(Debug, Serialize)]
pub struct StoreToday {
    /// Store id.
    pub store: String,
    /// Accepted orders' value less what was cancelled or returned that day, in fen.
    pub net_sales: i64,
    /// Member visits.
    pub member_visits: u64,
    /// Sales-rep visits.
    pub rep_visits: u64,
    /// Distinct members who visited.
    pub visitors: u64,
    /// Visitors who ordered at the store within the conversion window.
    pub converted: u64,
    /// `converted` ÷ `visitors`; null when nobody visited.
    pub conversion: Option<f64>,
    /// Average seconds of a member's visit, over those with a duration; null without one.
    pub avg_visit_s: Option<f64>,
}

fn no_day(d: &i64) -> bool {
    *d == 0
}

/// Adds `by` to `key`'s count; the key is copied only when it is new.
macro_rules! add {
    ($map:expr, $key:expr, $by:expr) => {
        match $map.get_mut($key) {
            Some(v) => *v += $by,
            None => {
                $map.insert($key.to_string(), $by);
            }
        }
    };
}

/// `m1234abcd…` → `m12…cd`: enough to tell rows apart, not to identify anyone.
fn mask(id: &str) -> String {
    let n = id.chars().count();
    if n <= 5 {
        return "*".repeat(n);
    }
    let head: String = id.chars().take(3).collect();
    let tail: String = id.chars().skip(n - 2).collect();
    format!("{head}…{tail}")
}

impl Board {
    /// Flags stock at or below this ATP from now on (the rules reloaded): what is flagged
    /// above it drops now; stock already under a raised threshold is flagged at its next
    /// change (the board keeps only what it flagged).
    pub fn set_low_atp(&mut self, low_atp: i64) {
        self.low_atp = low_atp;
        for at in self.low_stock.values_mut() {
            at.retain(|_, atp| *atp <= low_atp);
        }
        self.low_stock.retain(|_, at| !at.is_empty());
    }

    /// A board flagging stock at or below this ATP.
    pub fn new(low_atp: i64) -> Self {
        Board {
            low_atp,
            ..Board::default()
        }
    }

    /// The minute of `at_us`, or None when it is older than the window (a late event's: its
    /// minute would otherwise stay among the last hour's until a newer minute arrives).
    fn minute(&mut self, at_us: i64) -> Option<&mut Minute> {
        let m = at_us.div_euclid(60_000_000);
        if let Some(&last) = self.minutes.keys().next_back() {
            if m <= last - MINUTES {
                return None;
            }
            if m > last {
                let oldest = m - MINUTES;
                while self
                    .minutes
                    .first_key_value()
                    .is_some_and(|(k, _)| *k <= oldest)
                {
                    self.minutes.pop_first();
                }
            }
        }
        Some(self.minutes.entry(m).or_insert_with(|| Minute {
            minute: m,
            ..Minute::default()
        }))
    }

    /// Adds `amount` to the net sales of `order`'s store (if it has one) on the local day of
    /// `at` (in `rules.store.utc-offset-minutes` when set, as the stores' KPIs count): a newer
    /// day starts the table afresh, an older one's change is not today's.
    fn store_sale(&mut self, engine: &Sharded, order: &str, at: EventTime, amount: i64) {
        let Some(store) = engine.order(order).and_then(|o| o.store.clone()) else {
            return;
        };
        if self.on_store_day(engine, at) {
            add!(self.store_sales, store.as_str(), amount);
        }
    }

    /// Whether `at` falls on the board's store day (its local day, in
    /// `rules.store.utc-offset-minutes` when set, as the stores' KPIs count), a newer day
    /// starting the stores' table afresh; an older day's change is not today's.
    fn on_store_day(&mut self, engine: &Sharded, at: EventTime) -> bool {
        let day = match engine.rules().store.utc_offset_minutes {
            Some(offset_min) => EventTime { offset_min, ..at },
            None => at,
        }
        .local_day();
        if day > self.store_day {
            self.store_sales.clear();
            self.store_visits.clear();
            self.store_day = day;
        }
        day == self.store_day
    }

    /// Takes in an event applied (before or after its outputs): a store visit counts in its
    /// minute and its store's day; nothing else is read here.
    pub fn saw(&mut self, engine: &Sharded, ev: &Event) {
        let Body::Visit(v) = &ev.body else {
            return;
        };
        let rep = v.visitor == Visitor::Rep;
        if let Some(m) = self.minute(ev.ts.unix_us) {
            if rep {
                m.rep_visits += 1;
            } else {
                m.visits += 1;
            }
        }
        if self.on_store_day(engine, ev.ts) {
            let row = match self.store_visits.get_mut(v.store.as_str()) {
                Some(row) => row,
                None => self.store_visits.entry(v.store.to_string()).or_default(),
            };
            if rep {
                row.1 += 1;
            } else {
                row.0 += 1;
            }
        }
    }

    /// A blocked scan at the head of the ticker (which keeps the latest [`TICKER`]).
    fn block(&mut self, b: Blocked) {
        self.blocked.push_front(b);
        self.blocked.truncate(TICKER);
    }

    /// Takes in what one event produced.
    pub fn observe(&mut self, engine: &Sharded, emitted: &[Emitted]) {
        for e in emitted {
            let at = e.at.unix_us;
            match &e.output {
                Output::OrderAccepted { order, amount, .. } => {
                    let channel = crate::metrics::channel_label(order);
                    if let Some(m) = self.minute(at) {
                        add!(m.sales, channel, *amount);
                        add!(m.orders, channel, 1);
                    }
                    self.store_sale(engine, order, e.at, *amount);
                }
                Output::OrderStatus {
                    order,
                    refund: Some(r),
                    ..
                } => self.store_sale(engine, order, e.at, -r),
                Output::Decision {
                    decision,
                    reasons,
                    member,
                    campaign,
                    score,
                    scan_event,
                    code,
                    ..
                } => {
                    if let Some(m) = self.minute(at) {
                        match decision {
                            Decision::Allow => m.allow += 1,
                            Decision::Review => m.review += 1,
                            Decision::Block => m.block += 1,
                            Decision::Duplicate => m.duplicate += 1,
                        }
                    }
                    for r in reasons.iter().filter(|r| r.points > 0 && !r.shadow) {
                        add!(self.reasons, r.reason.as_str(), 1);
                    }
                    if *decision == Decision::Block {
                        self.block(Blocked {
                            at,
                            member: mask(member),
                            campaign: campaign.to_string(),
                            score: *score,
                            reasons: reasons
                                .iter()
                                .filter(|r| r.points > 0)
                                .map(|r| r.reason.as_str().to_string())
                                .collect(),
                            event: Some(*scan_event),
                            code: Some(code.to_string()),
                        });
                    }
                }
                // an overturned block leaves the ticker: the member was paid after all
                Output::ReviewResolved {
                    overturned: true,
                    scan_event,
                    ..
                } => {
                    self.blocked.retain(|b| b.event != Some(*scan_event));
                }
                // a held scan a reviewer blocked joins the ticker (its first decision, review,
                // stays in its minute's counts)
                Output::ReviewResolved {
                    member,
                    campaign,
                    allow: false,
                    refused: false,
                    scan_event,
                    ..
                } => {
                    self.block(Blocked {
                        at,
                        member: mask(member),
                        campaign: campaign.to_string(),
                        score: 0,
                        reasons: vec!["blocked_on_review".into()],
                        event: Some(*scan_event),
                        code: None,
                    });
                }
                Output::Ledger { delta, reason, .. }
                    if !matches!(reason.as_str(), "merged_in" | "merged_out") =>
                {
                    if let Some(m) = self.minute(at) {
                        if *delta > 0 {
                            m.points_in += delta;
                        } else {
                            m.points_out -= delta;
                        }
                    }
                }
                Output::Stock {
                    sku, location, atp, ..
                } => {
                    if *atp <= self.low_atp {
                        let at = match self.low_stock.get_mut(sku.as_str()) {
                            Some(at) => at,
                            None => self.low_stock.entry(sku.to_string()).or_default(),
                        };
                        match at.get_mut(location.as_str()) {
                            Some(a) => *a = *atp,
                            None => {
                                at.insert(location.to_string(), *atp);
                            }
                        }
                    } else if let Some(at) = self.low_stock.get_mut(sku.as_str()) {
                        if at.remove(location.as_str()).is_some() && at.is_empty() {
                            self.low_stock.remove(sku.as_str());
                        }
                    }
                }
                Output::Credit {
                    dealer,
                    limit,
                    exposure,
                    held,
                    held_fen,
                    ..
                } => {
                    // held orders, or exposure past a limit lowered under it: both need a
                    // credit controller
                    if *held > 0 || exposure > limit {
                        let row = (*held, *exposure, *limit);
                        match self.holds.get_mut(dealer.as_str()) {
                            Some(r) => *r = row,
                            None => {
                                self.holds.insert(dealer.to_string(), row);
                            }
                        }
                        if *held_fen > 0 {
                            match self.held_fen.get_mut(dealer.as_str()) {
                                Some(f) => *f = *held_fen,
                                None => {
                                    self.held_fen.insert(dealer.to_string(), *held_fen);
                                }
                            }
                        } else {
                            self.held_fen.remove(dealer.as_str());
                        }
                    } else {
                        self.holds.remove(dealer.as_str());
                        self.held_fen.remove(dealer.as_str());
                    }
                }
                _ => {}
            }
        }
    }

    /// The board as a checkpoint stores it (JSON), so a restart from a checkpoint shows
    /// the same board as one that replayed the whole log.
    pub fn save(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "minutes": self.minutes.values().collect::<Vec<_>>(),
            "reasons": self.reasons,
            "store_sales": self.store_sales,
            "low_stock": self.low_rows().collect::<Vec<_>>(),
            "holds": self.holds,
            "blocked": self.blocked,
        });
        // (one saved before the amounts held were said has none)
        if !self.held_fen.is_empty() {
            v["held_fen"] = serde_json::json!(self.held_fen);
        }
        // a board saved before the day was kept has none (its sales were since the start)
        if self.store_day != 0 {
            v["store_day"] = self.store_day.into();
        }
        // and one saved before visits were counted has none
        if !self.store_visits.is_empty() {
            v["store_visits"] = serde_json::json!(self.store_visits);
        }
        v
    }

    /// The board [`Board::save`] wrote.
    pub fn load(low_atp: i64, v: serde_json::Value) -> Result<Board, serde_json::Error> {
        #[derive(Deserialize)]
        struct Saved {
            minutes: Vec<Minute>,
            reasons: HashMap<String, u64>,
            store_sales: HashMap<String, i64>,
            #[serde(default)]
            store_visits: HashMap<String, (u64, u64)>,
            #[serde(default)]
            store_day: i64,
            low_stock: Vec<(String, String, i64)>,
            holds: BTreeMap<String, (u32, i64, i64)>,
            #[serde(default)]
            held_fen: BTreeMap<String, i64>,
            blocked: VecDeque<Blocked>,
        }
        let s: Saved = serde_json::from_value(v)?;
        Ok(Board {
            minutes: s.minutes.into_iter().map(|m| (m.minute, m)).collect(),
            reasons: s.reasons,
            store_sales: s.store_sales,
            store_visits: s.store_visits,
            store_day: s.store_day,
            low_stock: s
                .low_stock
                .into_iter()
                .fold(BTreeMap::new(), |mut m, (s, l, a)| {
                    m.entry(s).or_default().insert(l, a);
                    m
                }),
            holds: s.holds,
            held_fen: s.held_fen,
            blocked: s.blocked,
            low_atp,
        })
    }

    /// The dealers wanting the most credit (the amount held plus the exposure past the
    /// limit), then by id: (dealer, held orders, amount held, exposure, limit).
    fn hold_rows(&self) -> Vec<(&str, u32, i64, i64, i64)> {
        let mut rows: Vec<_> = self
            .holds
            .iter()
            .map(|(d, &(h, e, l))| {
                let fen = self.held_fen.get(d).copied().unwrap_or(0);
                (d.as_str(), h, fen, e, l)
            })
            .collect();
        let wanted = |r: &(&str, u32, i64, i64, i64)| r.2.saturating_add((r.3 - r.4).max(0));
        rows.sort_by(|a, b| wanted(b).cmp(&wanted(a)).then(a.0.cmp(b.0)));
        rows.truncate(TOP * 2);
        rows
    }

    /// The low-stock rows as (SKU, location, ATP), by SKU then location.
    fn low_rows(&self) -> impl Iterator<Item = (&str, &str, i64)> {
        self.low_stock
            .iter()
            .flat_map(|(s, at)| at.iter().map(move |(l, a)| (s.as_str(), l.as_str(), *a)))
    }

    /// The stores of the store day by net sales, then member visits, then id (at most
    /// [`TOP`]), with their KPIs of that day from `engine`.
    fn stores_today(&self, engine: &Sharded) -> Vec<StoreToday> {
        let mut ids: Vec<&str> = self
            .store_sales
            .keys()
            .chain(self.store_visits.keys())
            .map(String::as_str)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let sales = |s: &str| self.store_sales.get(s).copied().unwrap_or(0);
        let visits = |s: &str| self.store_visits.get(s).copied().unwrap_or((0, 0));
        ids.sort_by(|a, b| {
            sales(b)
                .cmp(&sales(a))
                .then(visits(b).0.cmp(&visits(a).0))
                .then(a.cmp(b))
        });
        ids.truncate(TOP);
        ids.into_iter()
            .map(|id| {
                let kpi = engine
                    .store(id)
                    .and_then(|s| s.days.get(&self.store_day).copied())
                    .unwrap_or_default();
                let (member_visits, rep_visits) = visits(id);
                StoreToday {
                    store: id.to_string(),
                    net_sales: sales(id),
                    member_visits,
                    rep_visits,
                    visitors: kpi.visitors,
                    converted: kpi.converted,
                    conversion: kpi.conversion(),
                    avg_visit_s: kpi.avg_visit_s(),
                }
            })
            .collect()
    }

    /// The view the page shows; `engine` gives the KPIs of the stores listed.
    pub fn view(&self, engine: &Sharded) -> BoardView<'_> {
        let mut top_reasons: Vec<(&str, u64)> =
            self.reasons.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        top_reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top_reasons.truncate(TOP);
        let mut top_stores: Vec<(&str, i64)> = self
            .store_sales
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        top_stores.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top_stores.truncate(TOP);
        let mut low: Vec<(&str, &str, i64)> = self.low_rows().collect();
        low.sort_by_key(|x| (x.2, x.0, x.1));
        low.truncate(TOP * 2);
        BoardView {
            minutes: self.minutes.values().collect(),
            top_reasons,
            top_stores,
            stores_today: self.stores_today(engine),
            stores_day: self.store_day,
            low_stock: low,
            holds: self.hold_rows(),
            holds_total: self.holds.len(),
            blocked: self.blocked.iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(output: Output) -> Emitted {
        Emitted {
            event: uuid::Uuid::nil(),
            at: omnistream_schemas::EventTime::from_unix_ms(1_700_000_000_000),
            output,
        }
    }

    /// Points in and out per minute, from the ledger: a merge's moves are no points issued
    /// or used.
    #[test]
    fn points_issued_and_used_count_per_minute_without_merges() {
        let engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        let mut b = Board::new(5);
        let entry = |delta: i64, reason: &str| {
            emitted(Output::Ledger {
                member: "m1".into(),
                seq: 1,
                delta,
                balance: 0,
                reason: reason.into(),
                about: None,
                debt_delta: 0,
                debt: 0,
            })
        };
        b.observe(
            &engine,
            &[
                entry(100, "earned"),
                entry(20, "adjusted"),
                entry(-30, "redeemed"),
                entry(-5, "expired"),
                entry(500, "merged_in"),
                entry(-500, "merged_out"),
            ],
        );
        let v = b.view(&engine);
        assert_eq!((v.minutes[0].points_in, v.minutes[0].points_out), (120, 35));
        // a minute saved before points were counted reads with none
        let old: Minute = serde_json::from_value(serde_json::json!({"minute": 1, "sales": {},
            "orders": {}, "allow": 0, "review": 0, "block": 0, "duplicate": 0}))
        .unwrap();
        assert_eq!((old.points_in, old.points_out), (0, 0));
    }

    fn stock(sku: &str, location: &str, atp: i64) -> Emitted {
        emitted(Output::Stock {
            sku: sku.into(),
            location: location.into(),
            on_hand: atp,
            reserved: 0,
            safety: 0,
            atp,
            cause: Some(omnistream_actors::output::StockCause::Set),
            order: None,
            floored: None,
        })
    }

    /// A lowered threshold (the rules reloaded) drops what is flagged above it at once.
    #[test]
    fn a_lowered_low_stock_threshold_drops_what_is_above_it() {
        let engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        let mut b = Board::new(5);
        b.observe(&engine, &[stock("S1", "wh", 4), stock("S2", "wh", 1)]);
        assert_eq!(b.low_rows().count(), 2);
        b.set_low_atp(2);
        let low: Vec<_> = b.low_rows().collect();
        assert_eq!(low, vec![("S2", "wh", 1)]);
    }

    /// `held` orders worth 100 fen each held.
    fn credit(dealer: &str, held: u32, exposure: i64) -> Emitted {
        emitted(Output::Credit {
            dealer: dealer.into(),
            limit: 1_000,
            exposure,
            available: 1_000 - exposure,
            held,
            unpaid: 0,
            open_orders: 0,
            held_fen: i64::from(held) * 100,
            cause: None,
            order: None,
            reference: None,
            amount: None,
            released_fen: 0,
        })
    }

    /// Applies each event given as JSON (`{id}` replaced by a fresh id) as the shard does:
    /// the board sees the event, the engine runs it, the board sees its outputs.
    fn feeder() -> impl FnMut(&mut Sharded, &mut Board, &str) {
        let decoder = omnistream_schemas::Decoder::new(omnistream_schemas::Pii::new(b"k"));
        let mut n = 0u32;
        move |engine, b, json| {
            n += 1;
            let line = json.replace("{id}", &format!("00000000-0000-7000-8000-{n:012}"));
            let ev = decoder.decode(line.as_bytes()).unwrap();
            let mut out = Vec::new();
            b.saw(engine, &ev);
            engine.apply(&ev, &mut out);
            b.observe(engine, &out);
        }
    }

    /// Top stores are today's net sales: a cancellation and a return come off the store of
    /// their order, and a newer local day starts the table afresh.
    #[test]
    fn top_stores_are_the_days_net_sales() {
        let mut engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        let mut b = Board::new(5);
        let mut send = feeder();
        send(
            &mut engine,
            &mut b,
            r#"{"id":"{id}","type":"stock","ts":"2026-11-11T08:00:00+08:00","sku":"S1","location":"st1","op":"receive","qty":100}"#,
        );
        let order = |o: &str, status: &str, hour: u32, store: &str, qty: u32| {
            format!(
                r#"{{"id":"{{id}}","type":"order","ts":"2026-11-11T{hour:02}:00:00+08:00","channel":"store","order":"{o}","status":"{status}","kind":"consumer","member":{{"openid":"o-{o}"}},"lines":[{{"sku":"S1","qty":{qty},"unit_price":1000}}],"location":"st1","store":"{store}"}}"#
            )
        };
        send(&mut engine, &mut b, &order("a", "placed", 9, "st1", 3));
        send(&mut engine, &mut b, &order("b", "placed", 9, "st2", 2));
        send(&mut engine, &mut b, &order("c", "placed", 9, "st2", 1));
        assert_eq!(
            b.view(&engine).top_stores,
            vec![("st1", 3000), ("st2", 3000)]
        );
        // a return of one of a's three, and c cancelled
        send(&mut engine, &mut b, &order("a", "fulfilled", 10, "st1", 3));
        send(&mut engine, &mut b, &order("a", "returned", 11, "st1", 1));
        send(&mut engine, &mut b, &order("c", "cancelled", 11, "st2", 1));
        assert_eq!(
            b.view(&engine).top_stores,
            vec![("st1", 2000), ("st2", 2000)]
        );
        // the next day: only its own
        let next = order("d", "placed", 9, "st2", 1).replace("2026-11-11", "2026-11-12");
        send(&mut engine, &mut b, &next);
        assert_eq!(b.view(&engine).top_stores, vec![("st2", 1000)]);
        let again = Board::load(5, b.save()).unwrap();
        assert_eq!(again.save(), b.save());
        assert_eq!(again.view(&engine).top_stores, b.view(&engine).top_stores);
    }

    /// Store visits count in their minute and their store's day; the day's stores are listed
    /// by net sales, then member visits, with what their KPIs say of their visitors.
    #[test]
    fn stores_today_list_sales_and_visits_with_their_conversion() {
        let mut engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        let mut b = Board::new(5);
        let mut send = feeder();
        let visit = |store: &str, who: &str, min: u32, extra: &str| {
            format!(
                r#"{{"id":"{{id}}","type":"visit","ts":"2026-11-11T10:{min:02}:00+08:00","channel":"store","store":"{store}","visitor":"member","member":{{"openid":"{who}"}}{extra}}}"#
            )
        };
        let rep = |store: &str, min: u32| {
            format!(
                r#"{{"id":"{{id}}","type":"visit","ts":"2026-11-11T10:{min:02}:00+08:00","channel":"sfa","store":"{store}","visitor":"rep","rep":"r1"}}"#
            )
        };
        send(
            &mut engine,
            &mut b,
            r#"{"id":"{id}","type":"stock","ts":"2026-11-11T08:00:00+08:00","sku":"S1","location":"st1","op":"receive","qty":100}"#,
        );
        send(
            &mut engine,
            &mut b,
            &visit("st1", "a", 0, r#","duration_s":600"#),
        );
        send(
            &mut engine,
            &mut b,
            &visit("st1", "b", 1, r#","duration_s":1200"#),
        );
        send(&mut engine, &mut b, &visit("st2", "c", 1, ""));
        send(&mut engine, &mut b, &visit("st2", "d", 2, ""));
        send(&mut engine, &mut b, &visit("st2", "e", 2, ""));
        send(&mut engine, &mut b, &rep("st2", 3));
        // a visitor of st1 buys there
        send(
            &mut engine,
            &mut b,
            r#"{"id":"{id}","type":"order","ts":"2026-11-11T10:05:00+08:00","channel":"store","order":"o1","status":"placed","kind":"consumer","member":{"openid":"a"},"lines":[{"sku":"S1","qty":1,"unit_price":2500}],"location":"st1","store":"st1"}"#,
        );
        let v = b.view(&engine);
        let per_minute: Vec<_> = v.minutes.iter().map(|m| (m.visits, m.rep_visits)).collect();
        assert_eq!(per_minute, [(1, 0), (2, 0), (2, 0), (0, 1), (0, 0)]);
        let rows: Vec<_> = v
            .stores_today
            .iter()
            .map(|s| {
                (
                    s.store.as_str(),
                    s.net_sales,
                    s.member_visits,
                    s.rep_visits,
                    s.visitors,
                    s.converted,
                    s.conversion,
                    s.avg_visit_s,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("st1", 2500, 2, 0, 2, 1, Some(0.5), Some(900.0)),
                ("st2", 0, 3, 1, 3, 0, Some(0.0), None)
            ]
        );
        // saved and loaded, the day's visits stay; the next day starts afresh
        let again = Board::load(5, b.save()).unwrap();
        assert_eq!(again.save(), b.save());
        send(
            &mut engine,
            &mut b,
            &visit("st3", "f", 0, "").replace("2026-11-11", "2026-11-12"),
        );
        let v = b.view(&engine);
        assert_eq!(v.stores_today.len(), 1);
        assert_eq!(v.stores_today[0].store, "st3");
    }

    /// A late order older than the last hour is not shown among its minutes.
    #[test]
    fn a_late_event_older_than_the_hour_adds_no_minute() {
        let engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        let mut b = Board::new(5);
        let order = |ms: i64| Emitted {
            at: omnistream_schemas::EventTime::from_unix_ms(ms),
            ..emitted(Output::OrderAccepted {
                order: "mall:o1".into(),
                dealer: None,
                amount: 100,
                points_redeemed: None,
                balance: None,
            })
        };
        let now = 1_700_000_000_000;
        b.observe(&engine, &[order(now), order(now - 30 * 60_000)]);
        assert_eq!(b.view(&engine).minutes.len(), 2);
        b.observe(&engine, &[order(now - 5 * 3_600_000)]);
        assert_eq!(
            b.view(&engine).minutes.len(),
            2,
            "a minute five hours old was added"
        );
    }

    #[test]
    fn low_stock_and_holds_follow_the_latest_change_and_survive_a_save() {
        let engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        let mut b = Board::new(5);
        b.observe(
            &engine,
            &[
                stock("sku-1", "dc-east", 3),
                stock("sku-1", "s-9", 0),
                stock("sku-2", "dc-east", 40),
                stock("sku-1", "dc-east", 4),
                credit("d-1", 2, 900),
                credit("d-2", 1, 100),
                credit("d-1", 3, 950),
            ],
        );
        assert_eq!(
            b.view(&engine).low_stock,
            vec![("sku-1", "s-9", 0), ("sku-1", "dc-east", 4)]
        );
        assert_eq!(
            b.view(&engine).holds,
            vec![("d-1", 3, 300, 950, 1_000), ("d-2", 1, 100, 100, 1_000)]
        );
        // restocked and paid: the rows go, and an emptied SKU with them
        b.observe(
            &engine,
            &[
                stock("sku-1", "s-9", 50),
                stock("sku-1", "dc-east", 6),
                stock("sku-3", "s-1", 9),
                credit("d-2", 0, 0),
            ],
        );
        assert!(b.view(&engine).low_stock.is_empty());
        assert!(b.low_stock.is_empty());
        assert_eq!(b.view(&engine).holds, vec![("d-1", 3, 300, 950, 1_000)]);
        // a limit lowered under the exposure: listed though nothing is held, until paid down
        b.observe(&engine, &[credit("d-3", 0, 1_200)]);
        assert_eq!(
            b.view(&engine).holds,
            vec![("d-1", 3, 300, 950, 1_000), ("d-3", 0, 0, 1_200, 1_000)]
        );
        // the most credit wanting first: 400 past the limit before 300 held
        b.observe(&engine, &[credit("d-3", 0, 1_400)]);
        assert_eq!(b.view(&engine).holds[0].0, "d-3");
        b.observe(&engine, &[credit("d-3", 0, 900)]);
        assert_eq!(b.view(&engine).holds, vec![("d-1", 3, 300, 950, 1_000)]);
        // past 20 listed, the rest are counted
        let many: Vec<Emitted> = (0..25)
            .map(|i| credit(&format!("e-{i:02}"), 1, 0))
            .collect();
        b.observe(&engine, &many);
        let view = b.view(&engine);
        assert_eq!((view.holds.len(), view.holds_total), (20, 26));
        assert_eq!(view.holds[0].0, "d-1", "the most held first");
        b.observe(
            &engine,
            &(0..25)
                .map(|i| credit(&format!("e-{i:02}"), 0, 0))
                .collect::<Vec<_>>(),
        );
        b.observe(
            &engine,
            &[stock("sku-2", "s-1", 1), stock("sku-2", "s-2", 2)],
        );
        let again = Board::load(5, b.save()).unwrap();
        assert_eq!(again.view(&engine).low_stock, b.view(&engine).low_stock);
        assert_eq!(again.view(&engine).holds, b.view(&engine).holds);
        assert_eq!(again.save(), b.save());
    }

    #[test]
    fn a_board_saved_before_the_nested_rows_loads_and_saves_the_same() {
        let saved = serde_json::json!({
            "minutes": [],
            "reasons": {"velocity": 3},
            "store_sales": {"s-1": 900},
            "low_stock": [["sku-1", "dc-east", 4], ["sku-1", "s-9", 0], ["sku-2", "s-1", 1]],
            "holds": {"d-1": [3, 950, 1000]},
            "blocked": [],
        });
        let b = Board::load(5, saved.clone()).unwrap();
        assert_eq!(b.save(), saved);
        let engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        assert_eq!(
            b.view(&engine).low_stock,
            vec![
                ("sku-1", "s-9", 0),
                ("sku-2", "s-1", 1),
                ("sku-1", "dc-east", 4)
            ]
        );
    }

    /// A reviewer's block shows in the blocked ticker; an allow does not, nor a hold the
    /// service refused (a member over `max-held-reviews`).
    #[test]
    fn a_scan_blocked_on_review_joins_the_ticker() {
        let engine = Sharded::new(omnistream_actors::Rules::default(), 1);
        let mut b = Board::new(5);
        let resolved = |allow: bool| {
            emitted(Output::ReviewResolved {
                scan_event: uuid::Uuid::from_u128(7),
                member: "m0123456789abcdef".into(),
                campaign: "cny".into(),
                allow,
                reward: 0,
                refused: false,
                overturned: false,
                by: None,
            })
        };
        b.observe(&engine, &[resolved(true)]);
        assert!(b.view(&engine).blocked.is_empty());
        b.observe(
            &engine,
            &[emitted(Output::ReviewResolved {
                scan_event: uuid::Uuid::from_u128(8),
                member: "m0123456789abcdef".into(),
                campaign: "cny".into(),
                allow: false,
                reward: 0,
                refused: true,
                overturned: false,
                by: None,
            })],
        );
        assert!(b.view(&engine).blocked.is_empty());
        b.observe(&engine, &[resolved(false)]);
        let v = b.view(&engine);
        assert_eq!(v.blocked.len(), 1);
        assert_eq!(v.blocked[0].reasons, ["blocked_on_review"]);
        assert_eq!(v.blocked[0].member, "m01…ef");
        // the scan it was, for a follow-up at /v1/decisions?scan_event=
        assert_eq!(v.blocked[0].event, Some(uuid::Uuid::from_u128(7)));
        // a ticker saved before the id was kept loads without it
        let old = serde_json::json!({"at": 1, "member": "m…", "campaign": "c", "score": 80,
                                     "reasons": ["ring"]});
        let b: Blocked = serde_json::from_value(old).unwrap();
        assert_eq!((b.event, b.code), (None, None));
    }

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask("m0123456789abcdef"), "m01…ef");
        assert_eq!(mask("abc"), "***");
    }
}

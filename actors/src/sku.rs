//! SKU actors: one stock pool per SKU across all channels, per location. A SKU owns its
//! on-hand, reserved and safety stock at every location, the open reservations of orders
//! (so reservations are all-or-nothing and idempotent per order), and the orders it shipped
//! (so returned goods go back where they came from, never more than shipped).
//!
//! Available-to-promise (ATP) at a location is on hand − reserved − safety. Only a stock
//! count can push on hand below what is reserved; a reservation never takes more than ATP,
//! so the pool never oversells, whichever channel the orders come from.

use crate::cmd::{Cmd, OrderCmd, SkuCmd};
use crate::keymap::KeyMap;
use crate::output::StockCause;
use crate::{Ctx, Effects, Key, Output, Recent};
use compact_str::{format_compact, CompactString as Str};
use omnistream_schemas::StockOp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many stock and restock event ids a SKU remembers for deduplication. Redeliveries come
/// soon after the original, so a short memory suffices and keeps the per-SKU state small.
pub const SEEN_CAP: usize = 256;

/// Stock at one location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loc {
    /// Units physically on hand (never below 0).
    pub on_hand: i64,
    /// Units reserved for open orders: the sum of the open reservations at this location.
    pub reserved: i64,
    /// Units kept back from sale.
    pub safety: i64,
}

impl Loc {
    /// As the API shows it.
    fn view(&self) -> LocView {
        LocView {
            on_hand: self.on_hand,
            reserved: self.reserved,
            safety: self.safety,
            atp: self.atp(),
        }
    }

    /// Available to promise, never below 0.
    pub fn atp(&self) -> i64 {
        self.on_hand
            .saturating_sub(self.reserved)
            .saturating_sub(self.safety)
            .max(0)
    }
}

/// An order's open (not yet shipped) reservation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Location the order is served from.
    pub location: Str,
    /// Units reserved.
    pub qty: i64,
}

/// An order this SKU shipped, kept for returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Location it shipped from (returns go back there).
    pub location: Str,
    /// Units shipped.
    pub qty: i64,
    /// Units returned so far.
    pub restocked: i64,
    /// Event time of the shipment (µs); the record is dropped `order_days` later.
    pub at: i64,
}

/// Most orders a `stock_short` names.
pub const SHORT_ORDERS: usize = 50;

/// Most on-hand movements a location keeps for a count that arrives after them.
pub const MOVES_CAP: usize = 32;
/// How long (event time before the newest movement) they are kept.
pub const MOVES_HORIZON_US: i64 = 2 * crate::DAY_US;

/// A location's on-hand movements since its latest count, so counts apply in event time: a
/// count stamped before movements already applied takes them in again (on hand at its time
/// plus what moved since), and a movement stamped before the latest count moves nothing
/// (the count saw it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moves {
    /// Event time of the latest count applied (µs; 0: none).
    pub counted_at: i64,
    /// `(event time µs, change of on hand asked)` of the receipts, adjustments, shipments
    /// and returns after `counted_at`, in arrival order: the latest [`MOVES_CAP`], none older
    /// than [`MOVES_HORIZON_US`] before the newest.
    pub log: VecDeque<(i64, i64)>,
    /// The newest event time of a movement dropped from the log for room (0: none): a count
    /// stamped before it cannot take in every movement after it, and is not applied.
    pub dropped_to: i64,
}

/// One SKU's stock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sku {
    /// Stock per location.
    pub locations: KeyMap<Loc>,
    /// Open reservations by order key.
    pub open: KeyMap<Reservation>,
    /// Shipped orders by order key, for returns.
    pub committed: KeyMap<Committed>,
    /// `(at, order)` of every record in `committed`, so pruning finds the old ones without
    /// scanning them all (a busy SKU ships many orders in `order_days`).
    pub committed_by_at: BTreeSet<(i64, Str)>,
    /// Ids of stock and restock events already applied.
    pub seen: Recent,
    /// Each location's on-hand movements since its latest count. Added by encoding 8.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<8, _, _>"
    )]
    pub moves: KeyMap<Moves>,
}

/// Stock at one location as the API shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocView {
    /// On hand.
    pub on_hand: i64,
    /// Reserved for open orders.
    pub reserved: i64,
    /// Safety stock.
    pub safety: i64,
    /// Available to promise.
    pub atp: i64,
}

/// A SKU's stock as the HTTP API and replay dumps show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuView {
    /// Per location.
    pub locations: BTreeMap<Str, LocView>,
    /// ATP summed over all locations.
    pub atp: i64,
    /// Orders with an open reservation.
    pub open_orders: u64,
}

impl Sku {
    /// ATP at `location` (0 for a location never seen).
    pub fn atp(&self, location: &str) -> i64 {
        self.locations.get(location).map_or(0, Loc::atp)
    }

    /// The stock at one location, for the API; None for a location the SKU never had.
    pub fn location_view(&self, location: &str) -> Option<LocView> {
        self.locations.get(location).map(Loc::view)
    }

    /// The SKU's stock for the API.
    pub fn view(&self) -> SkuView {
        let locations: BTreeMap<Str, LocView> = self
            .locations
            .sorted()
            .into_iter()
            .map(|(k, l)| (k.clone(), l.view()))
            .collect();
        SkuView {
            atp: locations
                .values()
                .fold(0i64, |s, l| s.saturating_add(l.atp)),
            locations,
            open_orders: u64::try_from(self.open.len()).unwrap_or(u64::MAX),
        }
    }

    /// Handles one command.
    pub fn handle(&mut self, me: &Str, cmd: SkuCmd, ctx: &Ctx, fx: &mut Effects) {
        self.prune(ctx);
        match cmd {
            SkuCmd::Reserve {
                order,
                location,
                qty,
            } => self.reserve(me, order, location, qty, ctx, fx),
            SkuCmd::Check {
                order,
                location,
                qty,
            } => {
                // what `reserve` would answer, holding nothing: a fit is the ATP now
                let (ok, atp) = self
                    .settled(&order, &location, qty)
                    .unwrap_or_else(|| (true, self.atp(&location)));
                self.reply(me, order, &location, ok, atp, fx);
            }
            SkuCmd::Commit { order } => self.commit(me, order, ctx, fx),
            SkuCmd::Release { order } => {
                let Some(r) = self.open.remove(&order) else {
                    return;
                };
                let before = self.atp(&r.location);
                let loc = self.locations.entry(r.location.clone()).or_default();
                loc.reserved = loc.reserved.saturating_sub(r.qty);
                let cause = (StockCause::Release, Some(order), 0);
                self.changed(me, &r.location, before, cause, ctx, fx);
            }
            SkuCmd::Restock {
                order,
                qty,
                location,
            } => self.restock(me, order, qty, location, ctx, fx),
            SkuCmd::Stock {
                op,
                location,
                qty,
                safety,
            } => self.stock(me, op, location, qty, safety, ctx, fx),
        }
    }

    fn reserve(
        &mut self,
        me: &Str,
        order: Str,
        location: Str,
        qty: i64,
        ctx: &Ctx,
        fx: &mut Effects,
    ) {
        if let Some((ok, atp)) = self.settled(&order, &location, qty) {
            return self.reply(me, order, &location, ok, atp, fx);
        }
        let before = self.atp(&location);
        let loc = self.locations.entry(location.clone()).or_default();
        loc.reserved = loc.reserved.saturating_add(qty);
        let atp = loc.atp();
        self.open.insert(
            order.clone(),
            Reservation {
                location: location.clone(),
                qty,
            },
        );
        self.reply(me, order.clone(), &location, true, atp, fx);
        let cause = (StockCause::Reserve, Some(order), 0);
        self.changed(me, &location, before, cause, ctx, fx);
    }

    /// The answer to a reservation of `qty` at `location` for `order` (or to a check of one)
    /// when it is not to be reserved, as (ok, ATP): an order holding its units already (a
    /// redelivered Reserve, or one after the order shipped) gets the answer it got the first
    /// time, since reserving again would hold the stock twice; a quantity that does not fit
    /// is refused. None: it fits.
    fn settled(&self, order: &Str, location: &Str, qty: i64) -> Option<(bool, i64)> {
        if let Some(r) = self.open.get(order) {
            return Some((true, self.atp(&r.location)));
        }
        if let Some(c) = self.committed.get(order) {
            return Some((true, self.atp(&c.location)));
        }
        let atp = self.atp(location);
        // the decoder only passes positive quantities; anything else is a bug upstream and
        // must not create a reservation that shifts `reserved` the wrong way
        (qty <= 0 || qty > atp).then_some((false, atp))
    }

    /// Answers the order: `ok` or not, the ATP, and whether a refusal is for a location the
    /// SKU never had stock at.
    fn reply(&self, me: &Str, order: Str, location: &Str, ok: bool, atp: i64, fx: &mut Effects) {
        let unstocked = !ok && !self.locations.contains_key(location);
        fx.send(
            Key::Order(order),
            Cmd::Order(OrderCmd::Stock {
                sku: me.clone(),
                ok,
                atp,
                unstocked,
            }),
        );
    }

    fn commit(&mut self, me: &Str, order: Str, ctx: &Ctx, fx: &mut Effects) {
        let Some(r) = self.open.remove(&order) else {
            return;
        };
        let before = self.atp(&r.location);
        let at = ctx.ts();
        let loc = self.locations.entry(r.location.clone()).or_default();
        loc.reserved = loc.reserved.saturating_sub(r.qty);
        // after a count found less than was reserved, the shipment cannot take on hand
        // below zero; the shortfall was already reported as StockShort
        let floored = self.moved(&r.location, at, -r.qty);
        self.committed_by_at.insert((at, order.clone()));
        self.committed.insert(
            order.clone(),
            Committed {
                location: r.location.clone(),
                qty: r.qty,
                restocked: 0,
                at,
            },
        );
        let cause = (StockCause::Commit, Some(order), floored);
        self.changed(me, &r.location, before, cause, ctx, fx);
    }

    /// Returned units back on hand, at `to` when the return named a location (a store taking
    /// back an online order), else where the order shipped from; at most what it shipped.
    fn restock(
        &mut self,
        me: &Str,
        order: Str,
        qty: i64,
        to: Option<Str>,
        ctx: &Ctx,
        fx: &mut Effects,
    ) {
        let Some(c) = self.committed.get_mut(&order) else {
            return;
        };
        if !self.seen.insert(ctx.event.as_u128(), SEEN_CAP) {
            return;
        }
        let n = qty.min(c.qty.saturating_sub(c.restocked));
        if n <= 0 {
            return;
        }
        c.restocked = c.restocked.saturating_add(n);
        let location = to.unwrap_or_else(|| c.location.clone());
        let before = self.atp(&location);
        self.moved(&location, ctx.ts(), n);
        let cause = (StockCause::Restock, Some(order), 0);
        self.changed(me, &location, before, cause, ctx, fx);
    }

    #[allow(clippy::too_many_arguments)]
    fn stock(
        &mut self,
        me: &Str,
        op: StockOp,
        location: Str,
        qty: i64,
        safety: Option<i64>,
        ctx: &Ctx,
        fx: &mut Effects,
    ) {
        if !self.seen.insert(ctx.event.as_u128(), SEEN_CAP) {
            return;
        }
        let before = self.atp(&location);
        let at = ctx.ts();
        let mut floored = 0;
        // a movement the latest count saw moves nothing, and is said to have moved nothing
        // (published as a movement, it read as one done)
        let counted_at = self.moves.get(&location).map_or(i64::MIN, |m| m.counted_at);
        if op != StockOp::Set && at < counted_at && qty != 0 {
            let later_by_s = (counted_at - at) / 1_000_000;
            fx.out(Output::StockMoveIgnored {
                sku: me.clone(),
                location: location.clone(),
                qty,
                reason: format_compact!(
                    "stamped {later_by_s} s before the latest count here, which saw what was \
                     on hand then: it moves nothing"
                ),
            });
            return self.safety_only(me, &location, safety, ctx, fx);
        }
        match op {
            StockOp::Receive => {
                self.moved(&location, at, qty.max(0));
            }
            StockOp::Adjust => floored = self.moved(&location, at, qty),
            StockOp::Set => {
                let m = self.moves.entry(location.clone()).or_default();
                // a newer count stands: this one says what was on hand before it; and one
                // older than the movements kept cannot take in all that moved since
                let why = if at < m.counted_at {
                    let newer_by_s = (m.counted_at - at) / 1_000_000;
                    Some(format_compact!(
                        "a count stamped {newer_by_s} s later was applied first; this older one is not"
                    ))
                } else if at < m.dropped_to {
                    let kept_s = (m.dropped_to - at) / 1_000_000;
                    Some(format_compact!(
                        "stamped {kept_s} s before the oldest stock movement still kept here \
                         (the latest {MOVES_CAP}, {} days): count again",
                        MOVES_HORIZON_US / crate::DAY_US
                    ))
                } else {
                    None
                };
                if let Some(reason) = why {
                    fx.out(Output::StockCountIgnored {
                        sku: me.clone(),
                        location: location.clone(),
                        qty,
                        reason,
                    });
                    return self.safety_only(me, &location, safety, ctx, fx);
                }
                // on hand at the count's time, and what moved since (arrived before it),
                // each in event time and never below 0, as they would have in time order
                let mut since: Vec<(i64, i64)> =
                    m.log.iter().copied().filter(|(t, _)| *t > at).collect();
                since.sort_by_key(|(t, _)| *t);
                m.log.retain(|(t, _)| *t > at);
                m.counted_at = at;
                let loc = self.locations.entry(location.clone()).or_default();
                loc.on_hand = since
                    .iter()
                    .fold(qty.max(0), |n, (_, d)| n.saturating_add(*d).max(0));
            }
        }
        let loc = self.locations.entry(location.clone()).or_default();
        if let Some(s) = safety {
            loc.safety = s.max(0);
        }
        let short = loc.reserved.saturating_sub(loc.on_hand);
        let cause = match op {
            StockOp::Receive => StockCause::Receive,
            StockOp::Adjust => StockCause::Adjust,
            StockOp::Set => StockCause::Set,
        };
        // a count is news even when ATP stays the same (the location may be new, or the
        // count confirms the books), so it is always published
        self.changed(me, &location, before, (cause, None, floored), ctx, fx);
        if short > 0 && op != StockOp::Receive {
            // the orders whose reservations there cannot all ship, by order key
            let mut orders: Vec<Str> = self
                .open
                .sorted()
                .into_iter()
                .filter(|(_, r)| r.location == location)
                .map(|(o, _)| o.clone())
                .collect();
            orders.truncate(SHORT_ORDERS);
            fx.out(Output::StockShort {
                sku: me.clone(),
                location,
                short,
                orders,
            });
        }
    }

    /// Moves on hand at `location` by `delta` (never below 0) at event time `at`, and keeps
    /// the movement for a count that comes later stamped before it; one stamped before the
    /// latest count moves nothing: the count saw it. (Of a count and a movement stamped
    /// alike, the one that arrives first came first.) Returns the units of a decrease that
    /// on hand could not cover (0 when it could, or when the movement moved nothing).
    fn moved(&mut self, location: &Str, at: i64, delta: i64) -> i64 {
        let loc = self.locations.entry(location.clone()).or_default();
        let m = match self.moves.get_mut(location) {
            Some(m) => m,
            None => self.moves.entry(location.clone()).or_default(),
        };
        if at < m.counted_at || delta == 0 {
            return 0;
        }
        let wanted = loc.on_hand.saturating_add(delta);
        loc.on_hand = wanted.max(0);
        // the change asked, not the one the floor at 0 let through: a count stamped before
        // it applies it again from the counted level, as time order would have
        let newest = m.log.back().map_or(at, |(t, _)| at.max(*t));
        while m.log.len() >= MOVES_CAP
            || m.log
                .front()
                .is_some_and(|(t, _)| *t < newest.saturating_sub(MOVES_HORIZON_US))
        {
            if let Some((t, _)) = m.log.pop_front() {
                m.dropped_to = m.dropped_to.max(t);
            }
        }
        m.log.push_back((at, delta));
        wanted.min(0).saturating_neg()
    }

    /// A stock event's safety stock when its movement or count was not applied: a setting,
    /// not a count, so taken all the same, and published when it changed (cause `safety`,
    /// after the output that said the rest was not applied).
    fn safety_only(
        &mut self,
        me: &Str,
        location: &Str,
        safety: Option<i64>,
        ctx: &Ctx,
        fx: &mut Effects,
    ) {
        let (Some(s), Some(loc)) = (safety, self.locations.get_mut(location)) else {
            return;
        };
        let (before, was) = (loc.atp(), loc.safety);
        loc.safety = s.max(0);
        if loc.safety != was {
            self.changed(me, location, before, (StockCause::Safety, None, 0), ctx, fx);
        }
    }

    /// Publishes the location's numbers, with what moved them (the order that did, and the
    /// units of its decrease on hand could not cover), and the threshold crossings since
    /// `before` (ATP).
    fn changed(
        &self,
        me: &Str,
        location: &Str,
        before: i64,
        (cause, order, floored): (StockCause, Option<Str>, i64),
        ctx: &Ctx,
        fx: &mut Effects,
    ) {
        let l = self.locations.get(location).copied().unwrap_or_default();
        let atp = l.atp();
        fx.out(Output::Stock {
            sku: me.clone(),
            location: location.clone(),
            on_hand: l.on_hand,
            reserved: l.reserved,
            safety: l.safety,
            atp,
            cause: Some(cause),
            order,
            floored: (floored > 0).then_some(floored),
        });
        let low = ctx.rules.stock.low_stock_atp;
        // entering the low band (0, low]: from above it, or from nothing (a new location, or
        // one out of stock, received to a level still low)
        let in_band = |a: i64| a > 0 && a <= low;
        if in_band(atp) && !in_band(before) {
            fx.out(Output::LowStock {
                sku: me.clone(),
                location: location.clone(),
                atp,
            });
        }
        if before > 0 && atp == 0 {
            fx.out(Output::StockOut {
                sku: me.clone(),
                location: location.clone(),
            });
        }
    }

    /// Drops shipped-order records older than `order_days`: returns after that restock
    /// nothing, the same window the points ledger uses.
    fn prune(&mut self, ctx: &Ctx) {
        crate::prune_order_window(&mut self.committed, &mut self.committed_by_at, ctx);
    }
}

#[cfg(test)]
// a failed unwrap in a test is a failed test, which is what it should be
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Rules;
    use crate::DAY_US;
    use omnistream_schemas::EventTime;
    use proptest::prelude::*;

    const T0: i64 = 1_794_000_000_000; // ms, November 2026

    fn ctx(rules: &Rules, ms: i64, event: u128) -> Ctx<'_> {
        Ctx {
            at: EventTime::from_unix_ms(ms),
            event: uuid::Uuid::from_u128(event),
            rules,
            refs: &crate::refdata::NO_REFS,
        }
    }

    fn me() -> Str {
        "SKU-COLA-500".into()
    }

    /// Applies one command with a fresh event id and returns its effects.
    fn run(s: &mut Sku, rules: &Rules, event: u128, cmd: SkuCmd) -> Effects {
        run_at(s, rules, event, T0, cmd)
    }

    /// Applies one command at event time `ms`.
    fn run_at(s: &mut Sku, rules: &Rules, event: u128, ms: i64, cmd: SkuCmd) -> Effects {
        let mut fx = Effects::default();
        s.handle(&me(), cmd, &ctx(rules, ms, event), &mut fx);
        fx
    }

    /// A stock event's command.
    fn stock_at(op: StockOp, location: &str, qty: i64, safety: Option<i64>) -> SkuCmd {
        SkuCmd::Stock {
            op,
            location: location.into(),
            qty,
            safety,
        }
    }

    fn set(location: &str, qty: i64, safety: Option<i64>) -> SkuCmd {
        stock_at(StockOp::Set, location, qty, safety)
    }

    /// A stock event at `wh` that leaves its safety stock as it is.
    fn stock_op(op: StockOp, qty: i64) -> SkuCmd {
        stock_at(op, "wh", qty, None)
    }

    fn reserve(order: &str, location: &str, qty: i64) -> SkuCmd {
        SkuCmd::Reserve {
            order: order.into(),
            location: location.into(),
            qty,
        }
    }

    fn stock_reply(fx: &Effects) -> (Key, bool, i64) {
        assert_eq!(fx.sends.len(), 1, "{fx:?}");
        match &fx.sends[0] {
            (k, Cmd::Order(OrderCmd::Stock { sku, ok, atp, .. })) => {
                assert_eq!(*sku, me());
                (k.clone(), *ok, *atp)
            }
            other => panic!("not a stock reply: {other:?}"),
        }
    }

    /// Whether the one reply refused for a location the SKU never had stock at.
    fn unstocked(fx: &Effects) -> bool {
        matches!(
            fx.sends[..],
            [(
                _,
                Cmd::Order(OrderCmd::Stock {
                    unstocked: true,
                    ..
                })
            )]
        )
    }

    /// A stock output: location, `[on_hand, reserved, safety, atp]`, cause and order.
    fn stock_out(l: &str, [on_hand, reserved, safety, atp]: [i64; 4], cause: Cause) -> Output {
        Output::Stock {
            sku: me(),
            location: l.into(),
            on_hand,
            reserved,
            safety,
            atp,
            cause: Some(cause.0),
            order: cause.1.map(Str::from),
            floored: None,
        }
    }

    type Cause = (StockCause, Option<&'static str>);

    #[test]
    fn reserve_within_atp_reserves_and_replies_with_the_new_atp() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 50, Some(5)));
        let fx = run(&mut s, &r, 2, reserve("mall:o1", "wh1", 20));
        assert_eq!(stock_reply(&fx), (Key::Order("mall:o1".into()), true, 25));
        assert_eq!(
            fx.outputs,
            vec![stock_out(
                "wh1",
                [50, 20, 5, 25],
                (StockCause::Reserve, Some("mall:o1"))
            )]
        );
        assert_eq!(s.locations["wh1"].reserved, 20);
        assert_eq!(
            s.open["mall:o1"],
            Reservation {
                location: "wh1".into(),
                qty: 20
            }
        );
    }

    #[test]
    fn reserve_beyond_atp_is_refused_without_any_change() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 10, Some(3)));
        let before = s.clone();
        let fx = run(&mut s, &r, 2, reserve("mall:o1", "wh1", 8));
        assert_eq!(stock_reply(&fx), (Key::Order("mall:o1".into()), false, 7));
        assert!(!unstocked(&fx), "short of stock where it is stocked");
        assert!(fx.outputs.is_empty());
        assert_eq!(s, before);
        // a location never seen has nothing to promise and is not created by asking; the
        // answer says it was never stocked there
        let fx = run(&mut s, &r, 3, reserve("mall:o2", "nowhere", 1));
        assert!(!stock_reply(&fx).1);
        assert_eq!(stock_reply(&fx).2, 0);
        assert!(unstocked(&fx));
        assert_eq!(s, before);
        // nor is a non-positive quantity reserved
        let fx = run(&mut s, &r, 4, reserve("mall:o3", "wh1", 0));
        assert!(!stock_reply(&fx).1);
        assert_eq!(s, before);
    }

    /// A check answers what a reservation would (ok, the ATP, never stocked there) and
    /// changes nothing, for an order holding its units already too.
    #[test]
    fn a_check_answers_as_a_reservation_would_and_holds_nothing() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 10, Some(3)));
        let check = |order: &str, location: &str, qty: i64| SkuCmd::Check {
            order: order.into(),
            location: location.into(),
            qty,
        };
        let before = s.clone();
        let fx = run(&mut s, &r, 2, check("mall:o1", "wh1", 7));
        assert_eq!(stock_reply(&fx), (Key::Order("mall:o1".into()), true, 7));
        assert!(fx.outputs.is_empty());
        let fx = run(&mut s, &r, 3, check("mall:o1", "wh1", 8));
        assert_eq!(stock_reply(&fx), (Key::Order("mall:o1".into()), false, 7));
        assert!(!unstocked(&fx));
        let fx = run(&mut s, &r, 4, check("mall:o1", "nowhere", 1));
        assert!(!stock_reply(&fx).1 && unstocked(&fx));
        let fx = run(&mut s, &r, 5, check("mall:o1", "wh1", 0));
        assert!(!stock_reply(&fx).1);
        assert_eq!(s, before);
        // an order that holds its units: yes, as a redelivered reservation is answered
        run(&mut s, &r, 6, reserve("mall:o2", "wh1", 7));
        let held = s.clone();
        let fx = run(&mut s, &r, 7, check("mall:o2", "wh1", 7));
        assert_eq!(stock_reply(&fx), (Key::Order("mall:o2".into()), true, 0));
        assert_eq!(s, held);
    }

    #[test]
    fn reserve_is_idempotent_per_order() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 10, None));
        run(&mut s, &r, 2, reserve("mall:o1", "wh1", 4));
        let before = s.clone();
        let fx = run(&mut s, &r, 3, reserve("mall:o1", "wh1", 4));
        assert_eq!(stock_reply(&fx), (Key::Order("mall:o1".into()), true, 6));
        assert!(fx.outputs.is_empty());
        assert_eq!(s, before);
        // still ok after it shipped, and nothing is reserved again
        run(
            &mut s,
            &r,
            4,
            SkuCmd::Commit {
                order: "mall:o1".into(),
            },
        );
        let fx = run(&mut s, &r, 5, reserve("mall:o1", "wh1", 4));
        assert!(stock_reply(&fx).1);
        assert_eq!(s.locations["wh1"].reserved, 0);
    }

    #[test]
    fn the_last_unit_goes_to_the_first_order_only() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("st1", 1, None));
        let a = run(&mut s, &r, 2, reserve("tmall:a", "st1", 1));
        let b = run(&mut s, &r, 3, reserve("jd:b", "st1", 1));
        assert_eq!(stock_reply(&a), (Key::Order("tmall:a".into()), true, 0));
        assert_eq!(stock_reply(&b), (Key::Order("jd:b".into()), false, 0));
        assert!(a.outputs.contains(&Output::StockOut {
            sku: me(),
            location: "st1".into()
        }));
        assert!(b.outputs.is_empty());
    }

    #[test]
    fn commit_ships_the_reservation_once() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 30, Some(2)));
        run(&mut s, &r, 2, reserve("mall:o1", "wh1", 5));
        let fx = run(
            &mut s,
            &r,
            3,
            SkuCmd::Commit {
                order: "mall:o1".into(),
            },
        );
        assert_eq!(
            fx.outputs,
            vec![stock_out(
                "wh1",
                [25, 0, 2, 23],
                (StockCause::Commit, Some("mall:o1"))
            )]
        );
        assert!(fx.sends.is_empty());
        assert!(s.open.is_empty());
        assert_eq!(
            s.committed["mall:o1"],
            Committed {
                location: "wh1".into(),
                qty: 5,
                restocked: 0,
                at: T0 * 1000
            }
        );
        let before = s.clone();
        let fx = run(
            &mut s,
            &r,
            4,
            SkuCmd::Commit {
                order: "mall:o1".into(),
            },
        );
        assert_eq!(fx, Effects::default());
        let fx = run(
            &mut s,
            &r,
            5,
            SkuCmd::Commit {
                order: "mall:zz".into(),
            },
        );
        assert_eq!(fx, Effects::default());
        assert_eq!(s, before);
    }

    #[test]
    fn release_gives_back_an_open_reservation_only() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 30, None));
        run(&mut s, &r, 2, reserve("mall:o1", "wh1", 5));
        run(&mut s, &r, 3, reserve("mall:o2", "wh1", 7));
        let fx = run(
            &mut s,
            &r,
            4,
            SkuCmd::Release {
                order: "mall:o1".into(),
            },
        );
        assert_eq!(
            fx.outputs,
            vec![stock_out(
                "wh1",
                [30, 7, 0, 23],
                (StockCause::Release, Some("mall:o1"))
            )]
        );
        assert_eq!(s.atp("wh1"), 23);
        // a shipped order has nothing to release; a second release nothing either
        run(
            &mut s,
            &r,
            5,
            SkuCmd::Commit {
                order: "mall:o2".into(),
            },
        );
        let before = s.clone();
        for (i, o) in ["mall:o1", "mall:o2"].into_iter().enumerate() {
            let fx = run(
                &mut s,
                &r,
                6 + i as u128,
                SkuCmd::Release { order: o.into() },
            );
            assert_eq!(fx, Effects::default());
        }
        assert_eq!(s, before);
    }

    #[test]
    fn restock_returns_at_most_what_shipped_once_per_event() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 10, None));
        run(&mut s, &r, 2, reserve("mall:o1", "wh1", 4));
        run(
            &mut s,
            &r,
            3,
            SkuCmd::Commit {
                order: "mall:o1".into(),
            },
        );
        assert_eq!(s.locations["wh1"].on_hand, 6);
        let back = |n| SkuCmd::Restock {
            order: "mall:o1".into(),
            qty: n,
            location: None,
        };
        let fx = run(&mut s, &r, 10, back(3));
        assert_eq!(
            fx.outputs,
            vec![stock_out(
                "wh1",
                [9, 0, 0, 9],
                (StockCause::Restock, Some("mall:o1"))
            )]
        );
        // the same return event delivered again
        let fx = run(&mut s, &r, 10, back(3));
        assert_eq!(fx, Effects::default());
        // a later return of more than is left is capped at what is left
        let fx = run(&mut s, &r, 11, back(3));
        assert_eq!(
            fx.outputs,
            vec![stock_out(
                "wh1",
                [10, 0, 0, 10],
                (StockCause::Restock, Some("mall:o1"))
            )]
        );
        assert_eq!(s.committed["mall:o1"].restocked, 4);
        let fx = run(&mut s, &r, 12, back(1));
        assert_eq!(fx, Effects::default());
        // a return naming where the goods came back restocks there (a store taking back an
        // online order), within what shipped all the same
        run(&mut s, &r, 20, set("wh2", 10, None));
        run(&mut s, &r, 21, reserve("mall:o2", "wh2", 2));
        let commit = SkuCmd::Commit {
            order: "mall:o2".into(),
        };
        run(&mut s, &r, 22, commit);
        let in_store = SkuCmd::Restock {
            order: "mall:o2".into(),
            qty: 5,
            location: Some("st-7".into()),
        };
        let fx = run(&mut s, &r, 23, in_store);
        let cause = (StockCause::Restock, Some("mall:o2"));
        assert_eq!(fx.outputs[0], stock_out("st-7", [2, 0, 0, 2], cause));
        assert_eq!(s.locations["wh2"].on_hand, 8);
        // an order this SKU never shipped restocks nothing
        let fx = run(
            &mut s,
            &r,
            13,
            SkuCmd::Restock {
                order: "x".into(),
                qty: 1,
                location: None,
            },
        );
        assert_eq!(fx, Effects::default());
        assert_eq!(s.locations["wh1"].on_hand, 10);
    }

    #[test]
    fn stock_events_receive_adjust_set_and_replace_safety() {
        let r = Rules::default();
        let mut s = Sku::default();
        let op = |op, qty, safety| stock_at(op, "st1", qty, safety);
        let fx = run(&mut s, &r, 1, op(StockOp::Receive, 40, Some(4)));
        assert_eq!(
            fx.outputs,
            vec![stock_out(
                "st1",
                [40, 0, 4, 36],
                (StockCause::Receive, None)
            )]
        );
        run(&mut s, &r, 2, op(StockOp::Adjust, -15, None));
        assert_eq!(
            s.locations["st1"],
            Loc {
                on_hand: 25,
                reserved: 0,
                safety: 4
            }
        );
        // an adjustment never takes on hand below zero, and says what it could not take
        let fx = run(&mut s, &r, 3, op(StockOp::Adjust, -100, None));
        assert_eq!(s.locations["st1"].on_hand, 0);
        assert!(
            matches!(
                &fx.outputs[0],
                Output::Stock {
                    on_hand: 0,
                    floored: Some(75),
                    ..
                }
            ),
            "{:?}",
            fx.outputs
        );
        run(&mut s, &r, 4, op(StockOp::Set, 70, Some(0)));
        assert_eq!(
            s.locations["st1"],
            Loc {
                on_hand: 70,
                reserved: 0,
                safety: 0
            }
        );
        // a repeated event id is one event
        let before = s.clone();
        let fx = run(&mut s, &r, 4, op(StockOp::Receive, 5, None));
        assert_eq!(fx, Effects::default());
        assert_eq!(s, before);
    }

    #[test]
    fn a_count_below_reserved_reports_the_shortage() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 10, None));
        let fx = run(&mut s, &r, 2, reserve("mall:o1", "wh1", 10));
        assert!(!fx
            .outputs
            .iter()
            .any(|o| matches!(o, Output::StockShort { .. })));
        let fx = run(&mut s, &r, 3, set("wh1", 6, None));
        assert_eq!(
            fx.outputs,
            vec![
                stock_out("wh1", [6, 10, 0, 0], (StockCause::Set, None)),
                Output::StockShort {
                    sku: me(),
                    location: "wh1".into(),
                    short: 4,
                    orders: vec!["mall:o1".into()],
                }
            ]
        );
        // shipping cannot take on hand below zero (the 4 short are said); the reservation
        // still ends
        let fx = run(
            &mut s,
            &r,
            4,
            SkuCmd::Commit {
                order: "mall:o1".into(),
            },
        );
        assert!(
            matches!(
                &fx.outputs[0],
                Output::Stock {
                    on_hand: 0,
                    floored: Some(4),
                    ..
                }
            ),
            "{:?}",
            fx.outputs
        );
        assert_eq!(
            s.locations["wh1"],
            Loc {
                on_hand: 0,
                reserved: 0,
                safety: 0
            }
        );
    }

    #[test]
    fn low_stock_fires_entering_its_band_and_stock_out_on_the_crossing() {
        let r = Rules::default();
        assert_eq!(r.stock.low_stock_atp, 10);
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 14, None));
        let low = |atp| Output::LowStock {
            sku: me(),
            location: "wh1".into(),
            atp,
        };
        let out = Output::StockOut {
            sku: me(),
            location: "wh1".into(),
        };
        let fx = run(&mut s, &r, 2, reserve("a", "wh1", 4));
        assert_eq!(
            fx.outputs,
            vec![
                stock_out("wh1", [14, 4, 0, 10], (StockCause::Reserve, Some("a"))),
                low(10)
            ]
        );
        let fx = run(&mut s, &r, 3, reserve("b", "wh1", 2));
        assert!(!fx.outputs.contains(&low(8)));
        assert_eq!(fx.outputs.len(), 1);
        let fx = run(&mut s, &r, 4, reserve("c", "wh1", 8));
        assert_eq!(
            fx.outputs,
            vec![
                stock_out("wh1", [14, 14, 0, 0], (StockCause::Reserve, Some("c"))),
                out.clone()
            ]
        );
        // already out: a further count to zero is not a new stock-out
        let fx = run(&mut s, &r, 5, set("wh1", 14, None));
        assert!(!fx.outputs.contains(&out));
        // from plenty straight to zero is a stock-out, not low stock
        run(&mut s, &r, 6, set("wh1", 100, None));
        let fx = run(&mut s, &r, 7, set("wh1", 14, Some(0)));
        assert_eq!(
            fx.outputs,
            vec![
                stock_out("wh1", [14, 14, 0, 0], (StockCause::Set, None)),
                out
            ]
        );
        // received back from zero to a level still low: low stock (entering the band)
        let fx = run(&mut s, &r, 8, set("wh1", 17, Some(0)));
        assert!(fx.outputs.contains(&low(3)), "{:?}", fx.outputs);
        // and a new location first received low
        let fx = run(&mut s, &r, 9, stock_at(StockOp::Receive, "st-5", 5, None));
        assert!(fx.outputs.contains(&Output::LowStock {
            sku: me(),
            location: "st-5".into(),
            atp: 5
        }));
    }

    #[test]
    fn shipped_orders_are_forgotten_after_order_days() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 10, None));
        run(&mut s, &r, 2, reserve("o1", "wh1", 2));
        run(&mut s, &r, 3, SkuCmd::Commit { order: "o1".into() });
        let day_ms = DAY_US / 1000;
        let mut fx = Effects::default();
        let late = T0 + r.points.order_days * day_ms;
        // exactly `order_days` later it is still kept
        s.handle(&me(), set("wh1", 8, None), &ctx(&r, late, 4), &mut fx);
        assert!(s.committed.contains_key("o1"));
        s.handle(
            &me(),
            SkuCmd::Restock {
                order: "o1".into(),
                qty: 1,
                location: None,
            },
            &ctx(&r, late + 1, 5),
            &mut fx,
        );
        assert!(s.committed.is_empty());
        assert!(s.committed_by_at.is_empty());
        assert_eq!(s.locations["wh1"].on_hand, 8);
    }

    #[test]
    fn view_and_serde_round_trip() {
        let r = Rules::default();
        let mut s = Sku::default();
        run(&mut s, &r, 1, set("wh1", 10, Some(2)));
        run(&mut s, &r, 2, set("st1", 3, None));
        run(&mut s, &r, 3, reserve("o1", "wh1", 3));
        let v = s.view();
        assert_eq!(v.atp, 8);
        assert_eq!(v.open_orders, 1);
        assert_eq!(
            v.locations["wh1"],
            LocView {
                on_hand: 10,
                reserved: 3,
                safety: 2,
                atp: 5
            }
        );
        let text = serde_json::to_string(&s).unwrap();
        let back: Sku = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        let vt = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<SkuView>(&vt).unwrap(), v);
    }

    // --- properties over random command sequences ---

    const LOCS: [&str; 2] = ["wh1", "st1"];

    fn cmd_strategy() -> impl Strategy<Value = (u128, SkuCmd)> {
        let order = (0u8..6).prop_map(|i| Str::from(format!("o{i}")));
        let loc = (0usize..LOCS.len()).prop_map(|i| Str::from(LOCS[i]));
        let op = prop_oneof![
            Just(StockOp::Receive),
            Just(StockOp::Adjust),
            Just(StockOp::Set)
        ];
        let cmd = prop_oneof![
            3 => (order.clone(), loc.clone(), 1i64..8)
                .prop_map(|(order, location, qty)| SkuCmd::Reserve { order, location, qty }),
            2 => order.clone().prop_map(|order| SkuCmd::Commit { order }),
            1 => order.clone().prop_map(|order| SkuCmd::Release { order }),
            1 => (order, 1i64..5, proptest::option::of(loc.clone())).prop_map(
                |(order, qty, location)| SkuCmd::Restock { order, qty, location }
            ),
            2 => (op, loc, -10i64..25, proptest::option::of(0i64..6)).prop_map(
                |(op, location, qty, safety)| SkuCmd::Stock { op, location, qty, safety }
            ),
        ];
        // a small id pool makes redelivered events common
        (0u128..12, cmd)
    }

    fn apply_all(cmds: &[(u128, SkuCmd)], r: &Rules) -> (Sku, Vec<Effects>) {
        let mut s = Sku::default();
        let mut all = Vec::new();
        for (i, (id, c)) in cmds.iter().enumerate() {
            let mut fx = Effects::default();
            s.handle(&me(), c.clone(), &ctx(r, T0 + i as i64, *id), &mut fx);
            all.push(fx);
        }
        (s, all)
    }

    fn check_books(s: &Sku) -> Result<(), TestCaseError> {
        for (name, l) in s.locations.sorted() {
            let sum: i64 = s
                .open
                .values_any_order()
                .filter(|r| r.location == *name)
                .map(|r| r.qty)
                .sum();
            prop_assert_eq!(l.reserved, sum, "reserved != open reservations at {}", name);
            prop_assert!(l.on_hand >= 0 && l.reserved >= 0 && l.safety >= 0);
            prop_assert!(l.atp() >= 0);
        }
        for r in s.open.values_any_order() {
            prop_assert!(s.locations.contains_key(&r.location));
            prop_assert!(r.qty > 0);
        }
        for c in s.committed.values_any_order() {
            prop_assert!(c.restocked >= 0 && c.restocked <= c.qty);
        }
        prop_assert_eq!(s.committed.len(), s.committed_by_at.len());
        for (_, o) in &s.committed_by_at {
            prop_assert!(s.committed.contains_key(o));
        }
        for (o, _) in s.open.sorted() {
            prop_assert!(!s.committed.contains_key(o));
        }
        Ok(())
    }

    /// A count that arrives after movements it predates takes them in again (the shipment
    /// after it stays shipped), and a count older than the latest applied is not applied:
    /// the warehouse's count uploaded late does not undo the day's shipments.
    #[test]
    fn a_late_count_keeps_the_movements_after_it_and_an_older_one_is_ignored() {
        let r = Rules::default();
        let mut s = Sku::default();
        let min = 60_000;
        run_at(&mut s, &r, 1, T0, stock_op(StockOp::Receive, 100));
        run_at(&mut s, &r, 2, T0 + min, reserve("mall:f1", "wh", 10));
        run_at(
            &mut s,
            &r,
            3,
            T0 + 2 * min,
            SkuCmd::Commit {
                order: "mall:f1".into(),
            },
        );
        assert_eq!(s.locations["wh"].on_hand, 90);
        // counted 100 at T0 + 30 s, before the shipment: 100 then, 90 now
        let fx = run_at(&mut s, &r, 4, T0 + 30_000, stock_op(StockOp::Set, 100));
        assert_eq!(s.locations["wh"].on_hand, 90);
        assert!(matches!(
            &fx.outputs[0],
            Output::Stock {
                on_hand: 90,
                atp: 90,
                ..
            }
        ));
        // a receipt stamped before that count, arriving after it: the count saw it, and
        // that is what is said (no `stock` output, which reads as a movement done)
        let fx = run_at(&mut s, &r, 5, T0 + 10_000, stock_op(StockOp::Receive, 7));
        assert_eq!(s.locations["wh"].on_hand, 90);
        assert!(
            matches!(&fx.outputs[..], [Output::StockMoveIgnored { qty: 7, reason, .. }] if reason.contains("20 s before")),
            "{:?}",
            fx.outputs
        );
        // with a safety stock: that is taken, and published after (cause `safety`)
        let fx = run_at(
            &mut s,
            &r,
            55,
            T0 + 10_000,
            stock_at(StockOp::Receive, "wh", 7, Some(5)),
        );
        assert!(
            matches!(
                &fx.outputs[..],
                [
                    Output::StockMoveIgnored { qty: 7, .. },
                    Output::Stock {
                        cause: Some(StockCause::Safety),
                        on_hand: 90,
                        safety: 5,
                        atp: 85,
                        ..
                    },
                ]
            ),
            "{:?}",
            fx.outputs
        );
        // a newer count, then an older one: the older is said ignored
        run_at(&mut s, &r, 6, T0 + 10 * min, stock_op(StockOp::Set, 50));
        let fx = run_at(&mut s, &r, 7, T0 + 5 * min, stock_op(StockOp::Set, 80));
        assert_eq!(s.locations["wh"].on_hand, 50);
        assert!(
            matches!(&fx.outputs[..], [Output::StockCountIgnored { qty: 80, reason, .. }] if reason.contains("300 s later")),
            "{:?}",
            fx.outputs
        );
    }

    /// Movements that the floor at 0 cut still count in full when a count stamped before
    /// them comes late, as in time order; a count older than the movements kept (more moved
    /// since than is kept) is not applied, saying so, rather than applied short; an ignored
    /// count's safety stock is taken.
    #[test]
    fn a_late_count_applies_what_was_asked_after_it_and_never_a_partial_log() {
        let r = Rules::default();
        let s_at = |ms| T0 + ms * 1_000;
        // time order: count 10 at 2 s, adjust -5 at 3 s: 5
        let mut timely = Sku::default();
        run_at(&mut timely, &r, 1, s_at(2), stock_op(StockOp::Set, 10));
        run_at(&mut timely, &r, 2, s_at(3), stock_op(StockOp::Adjust, -5));
        assert_eq!(timely.locations["wh"].on_hand, 5);
        // the adjustment first (on nothing: stops at 0), the count late: 5 too
        let mut late = Sku::default();
        run_at(&mut late, &r, 2, s_at(3), stock_op(StockOp::Adjust, -5));
        run_at(&mut late, &r, 1, s_at(2), stock_op(StockOp::Set, 10));
        assert_eq!(late.locations["wh"].on_hand, 5);
        // more movements after a count stamped early than are kept: not applied
        let mut busy = Sku::default();
        run_at(&mut busy, &r, 1, s_at(0), stock_op(StockOp::Set, 1_000));
        for i in 0..(MOVES_CAP as i64 + 8) {
            run_at(
                &mut busy,
                &r,
                10 + i as u128,
                s_at(10 + i),
                stock_op(StockOp::Adjust, -1),
            );
        }
        let before = busy.locations["wh"];
        let fx = run_at(
            &mut busy,
            &r,
            999,
            s_at(1),
            stock_at(StockOp::Set, "wh", 1_000, Some(4)),
        );
        // said not applied, then the safety stock taken and published (ATP moved)
        assert!(
            matches!(&fx.outputs[..], [
                Output::StockCountIgnored { reason, .. },
                Output::Stock { cause: Some(StockCause::Safety), safety: 4, .. },
            ] if reason.contains("count again")),
            "{:?}",
            fx.outputs
        );
        assert_eq!(busy.locations["wh"].on_hand, before.on_hand);
        assert_eq!(busy.locations["wh"].safety, 4, "its safety stock is taken");
    }

    /// The movements kept are bounded: the latest [`MOVES_CAP`], and none older than the
    /// horizon before the newest.
    #[test]
    fn the_movements_kept_are_bounded() {
        let r = Rules::default();
        let mut s = Sku::default();
        for i in 0..200 {
            run_at(
                &mut s,
                &r,
                i,
                T0 + i as i64 * 1_000,
                stock_op(StockOp::Receive, 1),
            );
        }
        assert_eq!(s.moves["wh"].log.len(), MOVES_CAP);
        let day_ms = crate::DAY_US / 1_000;
        run_at(
            &mut s,
            &r,
            500,
            T0 + 8 * day_ms,
            stock_op(StockOp::Receive, 1),
        );
        assert_eq!(s.moves["wh"].log.len(), 1);
        // a count drops what it saw
        run_at(&mut s, &r, 501, T0 + 9 * day_ms, stock_op(StockOp::Set, 3));
        assert!(s.moves["wh"].log.is_empty());
    }

    proptest! {
        /// Receipts and counts with distinct times give the same stock in whatever order they
        /// arrive as in time order (a replay sorted by time and the live arrival agree).
        #[test]
        fn counts_and_receipts_end_alike_in_any_arrival_order(
            (ops, arrival) in prop::collection::vec((any::<bool>(), 0..50i64), 1..30)
                .prop_flat_map(|ops| {
                    let n = ops.len();
                    (Just(ops), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
                }),
        ) {
            let r = Rules::default();
            // event i at minute i; arrival order a shuffle of them
            let cmds: Vec<(i64, SkuCmd)> = ops
                .iter()
                .enumerate()
                .map(|(i, (count, q))| {
                    let op = if *count { StockOp::Set } else { StockOp::Receive };
                    (T0 + i as i64 * 60_000, stock_op(op, (*q).max(1)))
                })
                .collect();
            let mut in_time = Sku::default();
            for (i, (ms, c)) in cmds.iter().enumerate() {
                run_at(&mut in_time, &r, i as u128, *ms, c.clone());
            }
            let mut late = Sku::default();
            for i in arrival {
                let (ms, c) = &cmds[i];
                run_at(&mut late, &r, i as u128, *ms, c.clone());
            }
            prop_assert_eq!(late.locations["wh"].on_hand, in_time.locations["wh"].on_hand);
        }

        #[test]
        fn reservations_never_oversell(cmds in prop::collection::vec(cmd_strategy(), 0..60)) {
            let r = Rules::default();
            let mut s = Sku::default();
            for (i, (id, c)) in cmds.into_iter().enumerate() {
                let before = s.clone();
                let mut fx = Effects::default();
                let is_reserve = matches!(c, SkuCmd::Reserve { .. });
                s.handle(&me(), c.clone(), &ctx(&r, T0 + i as i64, id), &mut fx);
                check_books(&s)?;
                if let SkuCmd::Reserve { order, location, qty } = c {
                    let (_, ok, atp) = stock_reply(&fx);
                    let fresh = !before.open.contains_key(&order)
                        && !before.committed.contains_key(&order);
                    if fresh && ok {
                        // took at most what was available then, and left ATP >= 0
                        let l = before.locations[&location];
                        prop_assert!(qty <= l.on_hand - l.reserved - l.safety);
                        let after = s.locations[&location];
                        prop_assert!(after.reserved <= after.on_hand - after.safety);
                        prop_assert_eq!(atp, after.atp());
                        prop_assert_eq!(after.reserved, l.reserved + qty);
                    } else if fresh {
                        prop_assert_eq!(&s, &before);
                        prop_assert_eq!(atp, before.atp(&location));
                        prop_assert!(fx.outputs.is_empty());
                    } else {
                        prop_assert!(ok);
                        prop_assert_eq!(&s.locations, &before.locations);
                    }
                }
                if !is_reserve {
                    prop_assert!(fx.sends.is_empty());
                }
                for o in &fx.outputs {
                    if let Output::Stock { atp, location, .. } = o {
                        prop_assert!(*atp >= 0);
                        prop_assert_eq!(*atp, s.atp(location));
                    }
                }
            }
        }

        #[test]
        fn two_orders_for_the_last_units_exactly_one_wins(
            cmds in prop::collection::vec(cmd_strategy(), 0..40),
            li in 0usize..LOCS.len(),
        ) {
            let r = Rules::default();
            let (mut s, _) = apply_all(&cmds, &r);
            let loc = LOCS[li];
            let atp = s.atp(loc);
            prop_assume!(atp > 0);
            let a = run(&mut s, &r, 1000, reserve("new:a", loc, atp));
            let b = run(&mut s, &r, 1001, reserve("new:b", loc, atp));
            prop_assert!(stock_reply(&a).1);
            prop_assert!(!stock_reply(&b).1);
            prop_assert_eq!(s.atp(loc), 0);
            prop_assert_eq!(stock_reply(&b).2, 0);
        }

        #[test]
        fn the_same_commands_give_byte_identical_state(
            cmds in prop::collection::vec(cmd_strategy(), 0..60),
        ) {
            let r = Rules::default();
            let (a, fa) = apply_all(&cmds, &r);
            let (b, fb) = apply_all(&cmds, &r);
            prop_assert_eq!(serde_json::to_vec(&a).unwrap(), serde_json::to_vec(&b).unwrap());
            prop_assert_eq!(fa, fb);
            let back: Sku = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
            prop_assert_eq!(back, a);
        }

        #[test]
        fn a_replayed_stock_event_changes_nothing(
            cmds in prop::collection::vec(cmd_strategy(), 0..40),
            op in prop_oneof![Just(StockOp::Receive), Just(StockOp::Adjust), Just(StockOp::Set)],
            qty in -10i64..25,
            li in 0usize..LOCS.len(),
        ) {
            let r = Rules::default();
            let (mut s, _) = apply_all(&cmds, &r);
            let c = SkuCmd::Stock { op, location: LOCS[li].into(), qty, safety: Some(1) };
            run(&mut s, &r, 5000, c.clone());
            let once = s.clone();
            let fx = run(&mut s, &r, 5000, c);
            prop_assert_eq!(fx, Effects::default());
            prop_assert_eq!(s, once);
        }
    }
}

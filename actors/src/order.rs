//! Order coordinators: one per order, the saga that makes multi-entity steps all-or-nothing.
//!
//! A consumer order reserves every SKU (each SKU answers), then redeems points at the member,
//! then is accepted; any refusal releases what was taken and rejects the order with the
//! reason. A dealer order first takes credit at the dealer (or waits there, held), then
//! reserves stock the same way. Status changes that arrive while a step is in flight wait in
//! the coordinator and apply once it settles, so nothing is half-applied.

use crate::cmd::{Cmd, DealerCmd, Id, LineV, MemberCmd, OrderCmd, OrderEvent, SkuCmd, StoreCmd};
use crate::identity::resolve;
use crate::output::Output;
use crate::{Ctx, Effects, Key, Recent};
use compact_str::{format_compact, CompactString as Str};
use omnistream_schemas::{EventTime, OrderKind, OrderStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Status events an order keeps while its placement is in flight or not seen yet; more are
/// ignored (with an `order_ignored` output).
pub const MAX_DEFERRED: usize = 16;

/// The event id under which an unpaid order is cancelled by its timer: a version-8 UUID of
/// a 128-bit FNV-1a hash of the order key, the same on every run and shard (so a replay
/// gives the same ids) and apart from the channels' event ids (version 7 or 4).
pub fn unpaid_cancel_id(order: &str) -> uuid::Uuid {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in b"unpaid-cancel/".iter().chain(order.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    // spread the last bytes over every digit: keys that differ at the end would otherwise
    // give ids that differ in a few digits only
    h ^= h >> 67;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    h ^= h >> 59;
    uuid::Builder::from_custom_bytes(h.to_be_bytes()).into_uuid()
}

/// Where an order's placement stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No `placed` seen yet.
    #[default]
    New,
    /// Waiting for the dealer's credit answer.
    Credit,
    /// Held by the dealer for credit.
    Held,
    /// Waiting for the SKUs' answers.
    Reserving,
    /// Waiting for the member's redemption answer.
    Redeeming,
    /// Accepted: stock reserved (credit taken, points redeemed).
    Accepted,
    /// Refused; nothing is held for it.
    Rejected,
    /// Cancelled.
    Cancelled,
    /// Waiting for the member to say whether it holds the points to redeem (before any stock
    /// is reserved: an order it cannot pay for takes no one's last units meanwhile).
    CheckingPoints,
    /// Waiting for the SKUs of an order of several to say whether they have its quantities
    /// (before any is reserved: a line refused does not reserve and release the others).
    CheckingStock,
}

/// One order's coordinator state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where the placement stands.
    pub phase: Phase,
    /// Consumer or dealer.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub kind: Option<OrderKind>,
    /// The latest status applied after placement.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub status: Option<OrderStatus>,
    /// Channel.
    pub channel: Str,
    /// Lines as placed.
    pub lines: Vec<LineV>,
    /// Stock location.
    pub location: Str,
    /// Store credited.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub store: Option<Str>,
    /// Buyer's identities (consumer).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub member: Vec<Id>,
    /// Buyer (dealer).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub dealer: Option<Str>,
    /// Points paid with.
    pub points_redeemed: i64,
    /// SKUs whose answer is awaited.
    pub waiting: Vec<Str>,
    /// SKUs that reserved.
    pub reserved: Vec<Str>,
    /// The first refusal: SKU and its ATP.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub refused: Option<(Str, i64)>,
    /// Quantity returned so far per SKU.
    pub returned: BTreeMap<Str, i64>,
    /// Status events that arrived while placement was in flight, with their event ids (they
    /// apply later under their own ids, so entities' duplicate checks still tell them apart).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub later: Vec<(u128, OrderEvent)>,
    /// Their event times, one for each of `later` (a state saved before these were kept has
    /// none: its deferred events then run at the time of the event that settles placement).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub later_at: Vec<EventTime>,
    /// Whether it was paid.
    pub paid: bool,
    /// Return events applied (a repeated one is dropped).
    pub recent: Recent,
    /// When, and in which offset, `placed` came (absent in states stored before encoding 3
    /// and before `placed`): a cancellation takes the order off the member's day it counted on.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<3, _, _>"
    )]
    pub placed_at: Option<EventTime>,
    /// Why the order was cancelled, when it was not its channel's `cancelled` (the unpaid
    /// order's timer): the `detail` of its `order_status` (added by encoding 3).
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<3, _, _>"
    )]
    pub cancel_detail: Option<Str>,
    /// Whether the first refusal's SKU never had stock at the order's location (no stock
    /// event named it there): the order is then refused as `not_stocked`, not short of stock
    /// (added by encoding 6).
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<6, _, _>"
    )]
    pub refused_unstocked: bool,
    /// Why placement was refused, `(reason, detail)` as its `order_rejected` said: an
    /// order's view and a retry's answer say it (added by encoding 7).
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<7, _, _>"
    )]
    pub rejection: Option<Box<(Str, Str)>>,
    /// Placed under a `member_id` never issued (the member refused its placement): a later
    /// status naming other identities gives their member the placement (encoding 11).
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<11, _, _>"
    )]
    pub member_unknown: bool,
}

/// A status event waiting in the coordinator, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeferredView {
    /// Its event id.
    pub event: uuid::Uuid,
    /// The status it brings.
    pub status: OrderStatus,
    /// Its event time (absent for one kept by a build that did not record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<EventTime>,
}

/// An order's coordinator state as the HTTP API shows it: the placement's progress, the
/// latest status, and the status events waiting for the placement to settle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    /// The order key, `channel:order`.
    pub order: Str,
    /// Where the placement stands (`new`: no `placed` seen yet).
    pub phase: Phase,
    /// Consumer or dealer (absent until `placed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<OrderKind>,
    /// The latest status applied after placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    /// Lines as placed.
    pub lines: Vec<LineV>,
    /// Order value in fen.
    pub amount: i64,
    /// Stock location.
    pub location: Str,
    /// Store credited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Str>,
    /// Buyer's identities (consumer; personal values hashed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member: Vec<Id>,
    /// Buyer (dealer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer: Option<Str>,
    /// Points paid with.
    pub points_redeemed: i64,
    /// Whether it was paid.
    pub paid: bool,
    /// SKUs whose answer is awaited.
    pub waiting: Vec<Str>,
    /// SKUs holding units reserved for it now (none once it shipped: see `shipped`).
    pub reserved: Vec<Str>,
    /// SKUs whose reserved units it shipped (fulfilled: committed, off on hand); absent
    /// before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shipped: Vec<Str>,
    /// The first refusal: the SKU and the quantity it had available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedView>,
    /// Quantity returned so far per SKU.
    pub returned: BTreeMap<Str, i64>,
    /// Status events that arrived before `placed` or while placement was in flight, in
    /// arrival order; each applies, under its own id and time, once placement settles.
    pub deferred: Vec<DeferredView>,
    /// When the order is cancelled unless paid first (`rules.stock.cancel-unpaid-after-s`),
    /// in UTC; absent for an order paid, cancelled, fulfilled or without the setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_unpaid_at: Option<EventTime>,
    /// When `placed` came, in its own offset (absent before it, and for orders placed
    /// before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<EventTime>,
    /// Why it was cancelled, when not by its channel: `not paid by <time>
    /// (cancel-unpaid-after-s)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_detail: Option<Str>,
    /// Why placement was refused (`reason` and `detail`, as `order_rejected` said; absent
    /// for an order not rejected, and for one rejected by a build before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<RejectionView>,
    /// The `member_id` it was placed under was never issued: its points went to nobody; a
    /// later status naming the member gives that member the order (absent otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub member_unknown: bool,
}

/// Why an order's placement was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionView {
    /// The reason code (`insufficient_stock`, `not_stocked`, `insufficient_points`, ...).
    pub reason: Str,
    /// What it said.
    pub detail: Str,
}

/// The SKU that refused an order's reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedView {
    /// The SKU.
    pub sku: Str,
    /// What it had available to promise then.
    pub available: i64,
    /// The SKU never had stock at the order's location (the order was refused as
    /// `not_stocked`).
    pub never_stocked: bool,
}

impl Order {
    /// The order as the HTTP API shows it (`me`: its key); `cancel_at` is its pending timer
    /// (µs), if any, shown while the order is unpaid.
    pub fn view(&self, me: &str, cancel_at: Option<i64>) -> OrderView {
        // a fulfilled order's lines were committed (a return comes after): its SKUs keep no
        // units for it
        let (reserved, shipped) = match self.status {
            Some(OrderStatus::Fulfilled | OrderStatus::Returned) => {
                (Vec::new(), self.reserved.clone())
            }
            _ => (self.reserved.clone(), Vec::new()),
        };
        OrderView {
            cancel_unpaid_at: cancel_at
                .filter(|_| self.unpaid())
                .map(|us| EventTime::from_unix_ms(us.div_euclid(1000))),
            order: me.into(),
            phase: self.phase,
            kind: self.kind,
            status: self.status,
            lines: self.lines.clone(),
            amount: self.amount(),
            location: self.location.clone(),
            store: self.store.clone(),
            member: self.member.clone(),
            dealer: self.dealer.clone(),
            points_redeemed: self.points_redeemed,
            paid: self.paid,
            waiting: self.waiting.clone(),
            reserved,
            shipped,
            refused: self.refused.as_ref().map(|(sku, available)| RefusedView {
                sku: sku.clone(),
                available: *available,
                never_stocked: self.refused_unstocked,
            }),
            returned: self.returned.clone(),
            deferred: self
                .later
                .iter()
                .enumerate()
                .map(|(i, (id, ev))| DeferredView {
                    event: uuid::Uuid::from_u128(*id),
                    status: ev.status,
                    at: self.later_at.get(i).copied(),
                })
                .collect(),
            placed_at: self.placed_at,
            cancel_detail: self.cancel_detail.clone(),
            rejection: self
                .rejection
                .as_deref()
                .map(|(reason, detail)| RejectionView {
                    reason: reason.clone(),
                    detail: detail.clone(),
                }),
            member_unknown: self.member_unknown,
        }
    }

    /// Order value in fen.
    pub fn amount(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.qty.saturating_mul(l.unit_price))
            .sum()
    }

    /// Whether a status event's lines are the whole order (none given: the placed lines
    /// apply): every placed SKU's quantity at least.
    fn whole(&self, lines: Option<&[LineV]>) -> bool {
        let Some(lines) = lines else {
            return true;
        };
        let mut sent: BTreeMap<&str, i64> = BTreeMap::new();
        for l in lines {
            *sent.entry(l.sku.as_str()).or_insert(0) += l.qty;
        }
        self.per_sku()
            .iter()
            .all(|(sku, qty)| sent.get(sku.as_str()).is_some_and(|s| s >= qty))
    }

    /// Quantity per SKU, lines of one SKU summed (they are reserved together).
    fn per_sku(&self) -> BTreeMap<Str, i64> {
        let mut m = BTreeMap::new();
        for l in &self.lines {
            *m.entry(l.sku.clone()).or_insert(0) += l.qty;
        }
        m
    }

    /// Handles one command.
    pub fn handle(&mut self, me: &Str, cmd: OrderCmd, ctx: &Ctx, fx: &mut Effects) {
        match cmd {
            OrderCmd::Event(ev) => self.on_event(me, *ev, ctx, fx),
            OrderCmd::Credit { ok, .. } => {
                if self.phase == Phase::Credit {
                    if ok {
                        self.reserve(me, fx);
                    } else {
                        self.phase = Phase::Held;
                    }
                }
            }
            OrderCmd::CreditReleased => {
                if matches!(self.phase, Phase::Held | Phase::Credit) {
                    self.reserve(me, fx);
                }
            }
            OrderCmd::Stock {
                sku,
                ok,
                atp,
                unstocked,
            } => {
                let checking = self.phase == Phase::CheckingStock;
                if self.phase != Phase::Reserving && !checking {
                    return;
                }
                let Some(i) = self.waiting.iter().position(|s| *s == sku) else {
                    return;
                };
                self.waiting.remove(i);
                if ok {
                    if !checking {
                        self.reserved.push(sku);
                    }
                } else if self.refused.is_none() {
                    self.refused = Some((sku, atp));
                    self.refused_unstocked = unstocked;
                }
                if self.waiting.is_empty() {
                    if checking && self.refused.is_none() {
                        // every SKU has it: reserve (a unit taken meanwhile still refuses,
                        // releasing the lines reserved, as without the check)
                        self.reserve(me, fx);
                    } else {
                        self.reserved_all(me, ctx, fx);
                    }
                }
            }
            OrderCmd::PointsChecked { ok, balance } => {
                if self.phase != Phase::CheckingPoints {
                    return;
                }
                if ok {
                    self.reserve(me, fx);
                } else {
                    self.reject_points(me, balance, fx);
                }
            }
            OrderCmd::Redeemed { ok, balance } => {
                if self.phase != Phase::Redeeming {
                    return;
                }
                if ok {
                    self.accept(me, Some(balance), ctx, fx);
                } else {
                    // spent meanwhile, since it said it had them
                    self.release_stock(me, fx);
                    self.reject_points(me, balance, fx);
                }
            }
            // the points of a member this system never issued: no points to redeem
            OrderCmd::UnknownMember { member } => {
                match self.phase {
                    Phase::CheckingPoints => {}
                    Phase::Redeeming => self.release_stock(me, fx),
                    // accepted under that id, which started no member: a later status of it
                    // naming another member gives that member the order
                    Phase::Accepted => {
                        let named = |(k, v): &Id| k == "member_id" && *v == member;
                        if self.member.iter().any(named) {
                            self.member_unknown = true;
                        }
                        return;
                    }
                    _ => return,
                }
                let detail = format_compact!(
                    "member_id {member} names no member this service issued: no points to redeem"
                );
                fx.out(Output::UnknownMember {
                    member,
                    about: "order_redeem".into(),
                    order: Some(me.clone()),
                });
                self.reject(me, "unknown_member", detail, fx);
            }
        }
    }

    fn on_event(&mut self, me: &Str, ev: OrderEvent, ctx: &Ctx, fx: &mut Effects) {
        if ev.status == OrderStatus::Placed {
            // placed again after placement was refused (stock came in, points were topped
            // up): a placement anew, as if the first had not been; a refusal applied nothing
            // (its stock, credit and points were given back), so there is nothing to undo
            if self.phase == Phase::Rejected {
                *self = Order {
                    recent: std::mem::take(&mut self.recent),
                    ..Order::default()
                };
            }
            if self.phase != Phase::New {
                // placed once: a repeat (or an edit of the lines) changes nothing, and says so
                return ignored(
                    me,
                    self.dealer_of(),
                    ev.status,
                    ("already_placed", "already placed"),
                    fx,
                );
            }
            self.placed_at = Some(ctx.at);
            return self.place(me, ev, ctx, fx);
        }
        match self.phase {
            // placement still in flight (or not seen yet): apply when it settles
            Phase::New
            | Phase::Credit
            | Phase::CheckingPoints
            | Phase::CheckingStock
            | Phase::Reserving
            | Phase::Redeeming => {
                self.defer(me, ev, ctx, fx);
            }
            Phase::Held => {
                // (a held order is cancelled whole, as an accepted one)
                if ev.status == OrderStatus::Cancelled && !self.whole(ev.lines.as_deref()) {
                    ignored(me, self.dealer_of(), ev.status, PARTIAL_CANCEL, fx);
                } else if ev.status == OrderStatus::Cancelled {
                    if let Some(d) = &self.dealer {
                        fx.send(
                            Key::Dealer(d.clone()),
                            Cmd::Dealer(DealerCmd::Close { order: me.clone() }),
                        );
                    }
                    self.phase = Phase::Cancelled;
                    self.status = Some(OrderStatus::Cancelled);
                    self.status_out(me, "cancelled", None, fx);
                    self.drop_deferred(
                        me,
                        (
                            "order_cancelled",
                            "order was cancelled while held for credit",
                        ),
                        fx,
                    );
                } else {
                    self.defer(me, ev, ctx, fx);
                }
            }
            Phase::Rejected | Phase::Cancelled => {
                let why = if self.phase == Phase::Rejected {
                    ("order_rejected", "order was rejected")
                } else {
                    ("order_cancelled", "order was cancelled")
                };
                ignored(me, self.dealer_of(), ev.status, why, fx);
            }
            Phase::Accepted => {
                // placed under a member_id never issued: a later status naming other
                // identities gives their member the order first, as far as it went (placed,
                // or shipped: its points pending, or earned); one returned in part stays
                // unattributed (a person grants its points)
                let movable = matches!(
                    self.status,
                    Some(OrderStatus::Placed | OrderStatus::Paid | OrderStatus::Fulfilled)
                );
                if self.member_unknown && movable {
                    if let Some(ids) = ev.member.clone().filter(|m| *m != self.member) {
                        self.member = ids;
                        self.member_unknown = false;
                        self.to_member(self.placed(me), fx);
                        if self.status == Some(OrderStatus::Fulfilled) {
                            let shipped = MemberCmd::OrderFulfilled { order: me.clone() };
                            self.to_member(shipped, fx);
                        }
                    }
                }
                let unpaid = self.unpaid();
                self.change(me, ev, ctx, fx);
                // paid, cancelled or shipped: the timer that would cancel it has nothing to
                // do, and would only read the order back (from the store, if passivated)
                if unpaid && !self.unpaid() && ctx.rules.stock.cancel_unpaid_after_s > 0 {
                    fx.disarm(Key::Order(me.clone()));
                }
            }
        }
    }

    fn place(&mut self, me: &Str, ev: OrderEvent, ctx: &Ctx, fx: &mut Effects) {
        self.kind = Some(ev.kind);
        self.channel = ev.channel;
        self.lines = ev.lines.unwrap_or_default();
        self.location = ev.location.unwrap_or_default();
        self.store = ev.store;
        self.member = ev.member.unwrap_or_default();
        self.dealer = ev.dealer;
        self.points_redeemed = ev.points_redeemed.unwrap_or(0).max(0);
        // the decoder guarantees these; a command built by hand may not carry them
        let missing = if self.lines.is_empty() {
            Some(("no_lines", "a placed order needs lines"))
        } else if self.location.is_empty() {
            Some(("no_location", "a placed order needs a stock location"))
        } else if ev.kind == OrderKind::Consumer && self.member.is_empty() {
            Some(("no_member", "a consumer order needs the member"))
        } else if ev.kind == OrderKind::Dealer && self.dealer.is_none() {
            Some(("no_dealer", "a dealer order needs the dealer"))
        } else {
            None
        };
        if let Some((reason, detail)) = missing {
            return self.reject(me, reason, detail.into(), fx);
        }
        // points worth more than the goods: refused before the points or the stock are asked
        let fen_a_point = ctx.rules.points.redeem_fen_per_point;
        let worth = self.points_redeemed.saturating_mul(fen_a_point);
        if fen_a_point > 0 && worth > self.amount() {
            let detail = format_compact!(
                "{} points are worth {worth} fen at {fen_a_point} fen a point \
                 (points.redeem-fen-per-point), more than the order's {} fen",
                self.points_redeemed,
                self.amount()
            );
            return self.reject(me, "points_over_value", detail, fx);
        }
        match (&self.dealer, ev.kind) {
            (Some(d), OrderKind::Dealer) => {
                self.phase = Phase::Credit;
                let amount = self.amount();
                fx.send(
                    Key::Dealer(d.clone()),
                    Cmd::Dealer(DealerCmd::Open {
                        order: me.clone(),
                        amount,
                    }),
                );
            }
            // a consumer's points are asked first: an order refused for them never holds
            // stock (that briefly took units another order wanted, and flapped the stock
            // channels follow); they are taken once the stock is reserved
            _ if self.points_redeemed > 0 => {
                self.phase = Phase::CheckingPoints;
                let ask = MemberCmd::HasPoints {
                    order: me.clone(),
                    points: self.points_redeemed,
                };
                match resolve(&self.member, ask) {
                    Some((k, c)) => fx.send(k, c),
                    None => self.reserve(me, fx),
                }
            }
            _ => self.reserve(me, fx),
        }
    }

    fn reject_points(&mut self, me: &Str, balance: i64, fx: &mut Effects) {
        let detail = format_compact!("balance {balance}, needs {}", self.points_redeemed);
        self.reject(me, "insufficient_points", detail, fx);
    }

    /// Asks every SKU of the order for its quantity: first whether they have it, when there
    /// are several (see [`Phase::CheckingStock`]), then to reserve it.
    fn reserve(&mut self, me: &Str, fx: &mut Effects) {
        let per = self.per_sku();
        let check = per.len() > 1 && self.phase != Phase::CheckingStock;
        self.phase = if check {
            Phase::CheckingStock
        } else {
            Phase::Reserving
        };
        self.reserved.clear();
        self.refused = None;
        self.refused_unstocked = false;
        self.waiting = per.keys().cloned().collect();
        for (sku, qty) in per {
            let (order, location) = (me.clone(), self.location.clone());
            let cmd = if check {
                SkuCmd::Check {
                    order,
                    location,
                    qty,
                }
            } else {
                SkuCmd::Reserve {
                    order,
                    location,
                    qty,
                }
            };
            fx.send(Key::Sku(sku), Cmd::Sku(cmd));
        }
    }

    /// Every SKU answered: compensate on a refusal, else redeem points or accept.
    fn reserved_all(&mut self, me: &Str, ctx: &Ctx, fx: &mut Effects) {
        if let Some((sku, atp)) = self.refused.clone() {
            self.release_stock(me, fx);
            let want = self.per_sku().get(&sku).copied().unwrap_or(0);
            if self.refused_unstocked {
                // a location typo reads as a stock-out otherwise
                let detail = format_compact!(
                    "{sku} never had stock at {}: no stock event named that location for it \
                     (a wrong location, or its stock not loaded yet); wants {want}",
                    self.location
                );
                return self.reject(me, "not_stocked", detail, fx);
            }
            let detail =
                format_compact!("{sku} at {}: wants {want}, available {atp}", self.location);
            return self.reject(me, "insufficient_stock", detail, fx);
        }
        if self.kind == Some(OrderKind::Consumer) && self.points_redeemed > 0 {
            self.phase = Phase::Redeeming;
            let redeem = MemberCmd::Redeem {
                order: me.clone(),
                points: self.points_redeemed,
            };
            if let Some((k, c)) = resolve(&self.member, redeem) {
                fx.send(k, c);
            }
            return;
        }
        self.accept(me, None, ctx, fx);
    }

    fn release_stock(&mut self, me: &Str, fx: &mut Effects) {
        for sku in std::mem::take(&mut self.reserved) {
            fx.send(
                Key::Sku(sku),
                Cmd::Sku(SkuCmd::Release { order: me.clone() }),
            );
        }
    }

    fn reject(&mut self, me: &Str, reason: &str, detail: Str, fx: &mut Effects) {
        if matches!(
            self.phase,
            Phase::CheckingStock | Phase::Reserving | Phase::Redeeming
        ) {
            if let (Some(d), Some(OrderKind::Dealer)) = (&self.dealer, self.kind) {
                fx.send(
                    Key::Dealer(d.clone()),
                    Cmd::Dealer(DealerCmd::Close { order: me.clone() }),
                );
            }
        }
        self.phase = Phase::Rejected;
        self.rejection = Some(Box::new((reason.into(), detail.clone())));
        fx.out(Output::OrderRejected {
            order: me.clone(),
            dealer: self.dealer_of(),
            reason: reason.into(),
            detail,
        });
        self.drop_deferred(me, ("order_rejected", "order was rejected"), fx);
    }

    /// The status events waiting for placement, dropped now that it failed or the order was
    /// cancelled while held: each said ignored, under its own id and time, as it would have
    /// been had it come after (a `fulfilled` of goods shipped while on credit hold says so).
    fn drop_deferred(&mut self, me: &Str, why: (&str, &str), fx: &mut Effects) {
        let times = std::mem::take(&mut self.later_at);
        for (i, (id, ev)) in std::mem::take(&mut self.later).into_iter().enumerate() {
            let mark = fx.mark();
            let dealer = self
                .dealer_of()
                .or_else(|| ev.dealer.clone().filter(|_| ev.kind == OrderKind::Dealer));
            ignored(me, dealer, ev.status, why, fx);
            // a state stored before the times were kept has none: said under this event
            if let Some(at) = times.get(i) {
                fx.mark_origin(mark, uuid::Uuid::from_u128(id), *at);
            }
        }
    }

    /// Accepts the order; `balance`, the member's after the points it redeemed (the answer
    /// a checkout shows at once).
    fn accept(&mut self, me: &Str, balance: Option<i64>, ctx: &Ctx, fx: &mut Effects) {
        self.phase = Phase::Accepted;
        self.status = Some(OrderStatus::Placed);
        let amount = self.amount();
        fx.out(Output::OrderAccepted {
            order: me.clone(),
            dealer: self.dealer_of(),
            amount,
            points_redeemed: balance.map(|_| self.points_redeemed),
            balance,
        });
        if self.kind == Some(OrderKind::Consumer) {
            self.to_member(self.placed(me), fx);
        } else if let Some(s) = &self.store {
            fx.send(
                Key::Store(s.clone()),
                Cmd::Store(StoreCmd::Sale {
                    order: me.clone(),
                    member: None,
                    amount,
                    new_member: false,
                }),
            );
        }
        let times = std::mem::take(&mut self.later_at);
        for (i, (id, ev)) in std::mem::take(&mut self.later).into_iter().enumerate() {
            let event = uuid::Uuid::from_u128(id);
            let at = times.get(i).copied().unwrap_or(ctx.at);
            let own = Ctx { event, at, ..*ctx };
            // what it sends and emits is its own, not the settling event's: the member's
            // ledger entry carries its time, the answer to its request carries its outputs
            let mark = fx.mark();
            self.on_event(me, ev, &own, fx);
            if event != ctx.event {
                fx.mark_origin(mark, event, at);
            }
        }
        // a consumer order left unpaid lets its stock go after a while, when so configured
        // (after the deferred events: one may have paid, cancelled or shipped it already)
        let after = ctx.rules.stock.cancel_unpaid_after_s;
        if after > 0 && self.unpaid() {
            // a microsecond after the due time: a `paid` stamped at the due time itself counts
            let due = ctx.ts().saturating_add(after.saturating_mul(1_000_000));
            fx.timer(Key::Order(me.clone()), due.saturating_add(1));
        }
    }

    /// Whether this is a consumer order accepted and since neither paid, cancelled nor
    /// shipped: what its timer cancels.
    fn unpaid(&self) -> bool {
        self.kind == Some(OrderKind::Consumer)
            && self.phase == Phase::Accepted
            && self.status == Some(OrderStatus::Placed)
            && !self.paid
    }

    /// Keeps a status event that arrived while placement is in flight (at most
    /// [`MAX_DEFERRED`]), to apply when it settles, under its own id and time.
    fn defer(&mut self, me: &Str, ev: OrderEvent, ctx: &Ctx, fx: &mut Effects) {
        if self.later.len() >= MAX_DEFERRED {
            return ignored(
                me,
                self.dealer_of(),
                ev.status,
                (
                    "too_many_waiting",
                    "too many status events wait for placement",
                ),
                fx,
            );
        }
        if self.later_at.len() == self.later.len() {
            self.later_at.push(ctx.at);
        }
        // said only of a wait the sender can act on: no `placed` yet, or a dealer order held
        // for credit. A placement in flight settles within the event's own cascade when events
        // run one at a time and a little later in an epoch, so saying so would make the outputs
        // depend on how events are batched.
        let waits_for = match self.phase {
            Phase::New => Some("placed"),
            Phase::Held => Some("credit"),
            _ => None,
        };
        if let Some(waits_for) = waits_for {
            // before `placed` the order knows no dealer: the waiting event's names it
            let dealer = self
                .dealer_of()
                .or_else(|| ev.dealer.clone().filter(|_| ev.kind == OrderKind::Dealer));
            fx.out(Output::OrderDeferred {
                order: me.clone(),
                dealer,
                status: ev.status.as_str().into(),
                waits_for: waits_for.into(),
            });
        }
        self.later.push((ctx.event.as_u128(), ev));
    }

    /// What the member is told of the order's placement.
    fn placed(&self, me: &Str) -> MemberCmd {
        MemberCmd::OrderPlaced {
            order: me.clone(),
            channel: self.channel.clone(),
            store: self.store.clone(),
            lines: self.lines.clone(),
            points_redeemed: self.points_redeemed,
        }
    }

    fn to_member(&self, cmd: MemberCmd, fx: &mut Effects) {
        if self.kind == Some(OrderKind::Consumer) {
            if let Some((k, c)) = resolve(&self.member, cmd) {
                fx.send(k, c);
            }
        }
    }

    /// The dealer, for a dealer's order.
    fn dealer_of(&self) -> Option<Str> {
        self.dealer
            .clone()
            .filter(|_| self.kind == Some(OrderKind::Dealer))
    }

    fn to_dealer(&self, cmd: DealerCmd, fx: &mut Effects) {
        if let (Some(d), Some(OrderKind::Dealer)) = (&self.dealer, self.kind) {
            fx.send(Key::Dealer(d.clone()), Cmd::Dealer(cmd));
        }
    }

    /// An `order_status` that refunds nothing, with what the channel should know (`detail`).
    fn status_out(&self, me: &Str, status: &str, detail: Option<&str>, fx: &mut Effects) {
        fx.out(Output::OrderStatus {
            order: me.clone(),
            dealer: self.dealer_of(),
            status: status.into(),
            detail: detail.map(Into::into),
            refund: None,
        });
    }

    /// A status change of an accepted order.
    fn change(&mut self, me: &Str, ev: OrderEvent, ctx: &Ctx, fx: &mut Effects) {
        let fulfilled = self.status == Some(OrderStatus::Fulfilled)
            || self.status == Some(OrderStatus::Returned);
        match ev.status {
            OrderStatus::Placed => {}
            OrderStatus::Paid => {
                if self.paid {
                    // as a repeated `fulfilled` says: the channel learns nothing was applied
                    return ignored(
                        me,
                        self.dealer_of(),
                        ev.status,
                        ("already_paid", "already paid"),
                        fx,
                    );
                }
                self.paid = true;
                self.status_out(me, "paid", None, fx);
            }
            OrderStatus::Fulfilled => {
                if fulfilled {
                    return ignored(
                        me,
                        self.dealer_of(),
                        ev.status,
                        ("already_fulfilled", "already fulfilled"),
                        fx,
                    );
                }
                // shipments are not told apart: the first ships the whole order (its stock
                // committed, its points earned), and says so when its lines were fewer
                let partial = (!self.whole(ev.lines.as_deref())).then_some(
                    "fulfilled whole: the lines sent are fewer than the order's, and a \
                     shipment of some lines is not told apart (every line's stock is committed \
                     now; a later fulfilled is ignored)",
                );
                self.status = Some(OrderStatus::Fulfilled);
                for sku in &self.reserved {
                    fx.send(
                        Key::Sku(sku.clone()),
                        Cmd::Sku(SkuCmd::Commit { order: me.clone() }),
                    );
                }
                self.to_member(MemberCmd::OrderFulfilled { order: me.clone() }, fx);
                self.to_dealer(DealerCmd::Fulfilled { order: me.clone() }, fx);
                self.status_out(me, "fulfilled", partial, fx);
            }
            OrderStatus::Cancelled => {
                if fulfilled {
                    return ignored(
                        me,
                        self.dealer_of(),
                        ev.status,
                        ("fulfilled", "fulfilled orders are returned, not cancelled"),
                        fx,
                    );
                }
                // cancelling the whole order for some of its lines would free the stock of
                // goods still to ship (and refund them): refused, the order kept as it is
                if !self.whole(ev.lines.as_deref()) {
                    return ignored(me, self.dealer_of(), ev.status, PARTIAL_CANCEL, fx);
                }
                self.cancel(me, None, fx);
            }
            OrderStatus::Returned => {
                if !fulfilled {
                    return ignored(
                        me,
                        self.dealer_of(),
                        ev.status,
                        ("not_fulfilled", "only fulfilled orders can be returned"),
                        fx,
                    );
                }
                if !self.recent.insert(ctx.event.as_u128(), 8) {
                    return;
                }
                self.returned_lines(me, ev.lines, ev.location, fx);
            }
        }
    }

    /// Cancels an accepted order that has not shipped: stock released, points given back,
    /// credit freed, the store's sale refunded; `detail` says why when the channel did not.
    fn cancel(&mut self, me: &Str, detail: Option<Str>, fx: &mut Effects) {
        self.release_stock(me, fx);
        let cancelled = match self.placed_at {
            Some(placed) => MemberCmd::OrderCancelledPlaced {
                order: me.clone(),
                placed,
            },
            // placed before the time was kept: counted where it was
            None => MemberCmd::OrderCancelled { order: me.clone() },
        };
        self.to_member(cancelled, fx);
        self.to_dealer(DealerCmd::Close { order: me.clone() }, fx);
        if let Some(s) = &self.store {
            fx.send(
                Key::Store(s.clone()),
                Cmd::Store(StoreCmd::Refund {
                    order: me.clone(),
                    amount: self.amount(),
                }),
            );
        }
        self.phase = Phase::Cancelled;
        self.status = Some(OrderStatus::Cancelled);
        self.cancel_detail.clone_from(&detail);
        fx.out(Output::OrderStatus {
            order: me.clone(),
            dealer: self.dealer_of(),
            status: "cancelled".into(),
            detail,
            refund: Some(self.amount()),
        });
    }

    /// The order's timer: a consumer order accepted and still neither paid, cancelled nor
    /// fulfilled when it fires (`rules.stock.cancel-unpaid-after-s` after it was placed) is
    /// cancelled, under an event id of its own ([`unpaid_cancel_id`]) and the timer's
    /// time, so what it sends and emits is told apart from any event's.
    pub fn tick(&mut self, me: &Str, ctx: &Ctx, fx: &mut Effects) {
        if ctx.rules.stock.cancel_unpaid_after_s <= 0 || !self.unpaid() {
            return;
        }
        let event = unpaid_cancel_id(me);
        let mark = fx.mark();
        // the time it was due, not the setting now: a timer keeps the time it was set for
        let detail = format_compact!("not paid by {} (cancel-unpaid-after-s)", ctx.at);
        self.cancel(me, Some(detail), fx);
        fx.mark_origin(mark, event, ctx.at);
    }

    /// Applies a return: restock (at `location` when the return names one: where the goods
    /// came back), take points back, credit note, store refund.
    fn returned_lines(
        &mut self,
        me: &Str,
        lines: Option<Vec<LineV>>,
        location: Option<Str>,
        fx: &mut Effects,
    ) {
        let placed = self.per_sku();
        // what was asked and not returned, said in the output (the return still applies)
        let mut unapplied: Vec<String> = Vec::new();
        // a return refunds the price paid: a price the order never had is said (once a SKU,
        // of the SKUs it returns)
        let mut mispriced: BTreeMap<Str, i64> = BTreeMap::new();
        let wanted: BTreeMap<Str, i64> = match lines {
            Some(ls) => {
                let mut m = BTreeMap::new();
                for l in ls {
                    let paid = |p: i64| {
                        self.lines
                            .iter()
                            .any(|o| o.sku == l.sku && o.unit_price == p)
                    };
                    if !paid(l.unit_price) {
                        mispriced.entry(l.sku.clone()).or_insert(l.unit_price);
                    }
                    *m.entry(l.sku).or_insert(0) += l.qty;
                }
                m
            }
            // no lines: all that is left to return (not the whole order again: asking back
            // what an earlier return took is no shortfall to say)
            None => placed
                .iter()
                .map(|(sku, bought)| {
                    let done = self.returned.get(sku).copied().unwrap_or(0);
                    (sku.clone(), bought - done)
                })
                .filter(|(_, left)| *left > 0)
                .collect(),
        };
        if wanted.is_empty() && !placed.is_empty() {
            // every unit came back already: said, not a bare "no returnable lines"
            let all: Vec<String> = placed
                .iter()
                .map(|(sku, bought)| format!("{sku}: {bought} of {bought}"))
                .collect();
            unapplied.push(format!(
                "every unit was returned already ({})",
                all.join(", ")
            ));
        }
        let mut value = 0i64;
        let mut changed = false;
        for (sku, asked) in wanted {
            let Some(&bought) = placed.get(&sku) else {
                unapplied.push(format!("{sku}: not in the order"));
                continue;
            };
            let done = self.returned.get(&sku).copied().unwrap_or(0);
            let qty = asked.min(bought - done);
            if qty < asked {
                let left = (bought - done).max(0);
                unapplied.push(if left == 0 {
                    format!("{sku}: {asked} asked back, none left to return")
                } else {
                    format!(
                        "{sku}: {asked} asked back, only {left} left to return: {left} returned"
                    )
                });
            }
            if qty <= 0 {
                continue;
            }
            if let Some(price) = mispriced.get(&sku) {
                unapplied.push(format!(
                    "{sku}: unit_price {price} is not a price the order paid: the price paid is refunded"
                ));
            }
            self.returned.insert(sku.clone(), done + qty);
            changed = true;
            // the price paid, averaged over the order's lines of this SKU
            let paid: i64 = self
                .lines
                .iter()
                .filter(|l| l.sku == sku)
                .map(|l| l.qty.saturating_mul(l.unit_price))
                .sum();
            value += (i128::from(paid) * i128::from(qty) / i128::from(bought)) as i64;
            fx.send(
                Key::Sku(sku),
                Cmd::Sku(SkuCmd::Restock {
                    order: me.clone(),
                    qty,
                    location: location.clone(),
                }),
            );
        }
        if !changed {
            let reason = if unapplied.is_empty() {
                "no returnable lines".to_string()
            } else {
                format!("no returnable lines: {}", unapplied.join("; "))
            };
            let why = ("nothing_to_return", reason.as_str());
            return ignored(me, self.dealer_of(), OrderStatus::Returned, why, fx);
        }
        self.status = Some(OrderStatus::Returned);
        self.to_member(
            MemberCmd::OrderReturned {
                order: me.clone(),
                value,
            },
            fx,
        );
        self.to_dealer(
            DealerCmd::Returned {
                order: me.clone(),
                value,
            },
            fx,
        );
        if let Some(s) = &self.store {
            fx.send(
                Key::Store(s.clone()),
                Cmd::Store(StoreCmd::Refund {
                    order: me.clone(),
                    amount: value,
                }),
            );
        }
        fx.out(Output::OrderStatus {
            order: me.clone(),
            dealer: self.dealer_of(),
            status: "returned".into(),
            detail: (!unapplied.is_empty()).then(|| unapplied.join("; ").into()),
            refund: Some(value),
        });
    }
}

/// A `cancelled` with fewer lines than the order's: cancelling the whole order for some of
/// its lines would free the stock of goods still to ship (and refund them, or free a held
/// dealer order's whole amount): refused, the order kept as it is.
const PARTIAL_CANCEL: (&str, &str) = (
    "partial_cancel",
    "cancelling some lines is not supported: the lines sent are fewer than the order's, and \
     the order stays as it is (send `cancelled` without lines to cancel it all)",
);

/// Says a status event was not applied: `why` is `(code, reason)`, a stable code a channel
/// codes against and the reason for people.
fn ignored(
    me: &Str,
    dealer: Option<Str>,
    status: OrderStatus,
    (code, reason): (&str, &str),
    fx: &mut Effects,
) {
    fx.out(Output::OrderIgnored {
        order: me.clone(),
        dealer,
        status: status.as_str().into(),
        reason: reason.into(),
        code: Some(code.into()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rules;

    fn status(status: OrderStatus) -> OrderEvent {
        OrderEvent {
            status,
            kind: OrderKind::Consumer,
            channel: "mall".into(),
            lines: None,
            location: None,
            store: None,
            member: Some(vec![("openid".into(), "oa".into())]),
            dealer: None,
            points_redeemed: None,
        }
    }

    /// The reasons of the `order_ignored` outputs; each has its code too.
    fn ignored_reasons(fx: &Effects) -> Vec<String> {
        fx.outputs
            .iter()
            .filter_map(|o| match o {
                Output::OrderIgnored { reason, code, .. } => {
                    let code = code.as_deref().unwrap_or_default();
                    assert!(
                        !code.is_empty()
                            && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                        "{code:?} for {reason}"
                    );
                    Some(reason.to_string())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_repeated_placed_and_statuses_beyond_the_waiting_bound_are_ignored_with_a_reason() {
        let (rules, refs) = (Rules::default(), crate::refdata::RefData::default());
        let at = EventTime::parse("2026-11-11T19:10:00+08:00").unwrap();
        let ctx = |n: u128| Ctx {
            at,
            event: uuid::Uuid::from_u128(n),
            rules: &rules,
            refs: &refs,
        };
        let me: Str = "mall:o3".into();
        let mut o = Order::default();
        let mut fx = Effects::default();
        for n in 0..=MAX_DEFERRED as u128 {
            let ev = Box::new(status(OrderStatus::Paid));
            o.handle(&me, OrderCmd::Event(ev), &ctx(n), &mut fx);
        }
        assert_eq!(o.later.len(), MAX_DEFERRED);
        assert_eq!(
            ignored_reasons(&fx),
            ["too many status events wait for placement"]
        );
        let mut placed = status(OrderStatus::Placed);
        placed.lines = Some(vec![LineV {
            sku: "S1".into(),
            qty: 1,
            unit_price: 100,
        }]);
        placed.location = Some("wh".into());
        let mut fx = Effects::default();
        o.handle(
            &me,
            OrderCmd::Event(Box::new(placed.clone())),
            &ctx(100),
            &mut fx,
        );
        assert_eq!(o.phase, Phase::Reserving);
        assert!(ignored_reasons(&fx).is_empty());
        // the lines edited in a second `placed`: not applied, and said so
        placed.lines.as_mut().unwrap()[0].qty = 5;
        let mut fx = Effects::default();
        o.handle(&me, OrderCmd::Event(Box::new(placed)), &ctx(101), &mut fx);
        assert_eq!(ignored_reasons(&fx), ["already placed"]);
        assert_eq!(o.lines[0].qty, 1);
    }

    #[test]
    fn a_status_before_placed_waits_and_the_view_shows_it_as_json() {
        let rules = Rules::default();
        let refs = crate::refdata::RefData::default();
        let at = EventTime::parse("2026-11-11T19:10:00+08:00").unwrap();
        let event = uuid::Uuid::from_u128(u128::MAX - 7);
        let ctx = Ctx {
            at,
            event,
            rules: &rules,
            refs: &refs,
        };
        let me: Str = "mall:o2".into();
        let mut o = Order::default();
        let mut fx = Effects::default();
        let ev = Box::new(status(OrderStatus::Fulfilled));
        o.handle(&me, OrderCmd::Event(ev), &ctx, &mut fx);
        assert!(fx.sends.is_empty(), "{fx:?}");
        assert_eq!(
            fx.outputs,
            vec![Output::OrderDeferred {
                order: me.clone(),
                dealer: None,
                status: "fulfilled".into(),
                waits_for: "placed".into(),
            }]
        );
        // the waiting event's 128-bit id once made the whole order unrenderable as a JSON value
        let v = serde_json::to_value(o.view(&me, Some(1))).unwrap();
        assert_eq!(v["order"], "mall:o2");
        // a pending timer is not shown for an order not accepted
        assert!(v.get("cancel_unpaid_at").is_none(), "{v}");
        assert_eq!(v["phase"], "new");
        assert!(v.get("status").is_none(), "{v}");
        assert_eq!(v["deferred"][0]["status"], "fulfilled");
        assert_eq!(v["deferred"][0]["event"], event.to_string());
        assert_eq!(v["deferred"][0]["at"], "2026-11-11T19:10:00.000+08:00");
        // a dealer's order waiting for `placed` names its dealer, as its event does
        let mut d = Order::default();
        let mut fx = Effects::default();
        let ev = Box::new(OrderEvent {
            kind: OrderKind::Dealer,
            dealer: Some("d9".into()),
            member: None,
            ..status(OrderStatus::Paid)
        });
        d.handle(&"dealer:p9".into(), OrderCmd::Event(ev), &ctx, &mut fx);
        assert!(
            matches!(&fx.outputs[..], [Output::OrderDeferred { dealer: Some(d), .. }] if d == "d9"),
            "{fx:?}"
        );
    }
}

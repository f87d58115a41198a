//! Outputs: what entity actors tell the world (channels, boards, risk teams). Each is one
//! change, keyed by the entity it is about, so sinks can keep per-key order.

use crate::fraud::{Contribution, Decision, NoReward, Scanned};
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

/// What changed a location's stock (the `cause` of a [`Output::Stock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockCause {
    /// An order reserved units.
    Reserve,
    /// An order's reservation was let go: the order was cancelled, or refused elsewhere.
    Release,
    /// An order was fulfilled: its reservation left on hand.
    Commit,
    /// Units of a fulfilled order came back.
    Restock,
    /// A stock event received units.
    Receive,
    /// A stock event adjusted on hand.
    Adjust,
    /// A stock event set on hand (a count).
    Set,
    /// A stock event's safety stock, its movement or count not applied (said before it in
    /// `stock_move_ignored` or `stock_count_ignored`).
    Safety,
}

/// Who resolved a review, as the service recorded the request: set by the service on the
/// admin command it logs (the entity never sees it), so a replay of the log repeats it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolver {
    /// The reviewer's name as the request gave it.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub reviewer: Option<Str>,
    /// The access token's configured name, when access control is on: who the service
    /// knows sent it (the reviewer's name is what that caller said).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub token: Option<Str>,
    /// The reviewer's note.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub note: Option<String>,
    /// When the service took the request, by its clock, RFC 3339 in UTC (the output's
    /// `ts` is the event time it ran at, the watermark).
    pub at: String,
}

/// Every `about` of an `unknown_member` output.
pub const UNKNOWN_MEMBER_ABOUT: [&str; 8] = [
    "click",
    "visit",
    "identify",
    "order_placed",
    "order_fulfilled",
    "order_cancelled",
    "order_returned",
    "order_redeem",
];

/// Every `reason` a ledger entry has.
pub const LEDGER_REASONS: [&str; 10] = [
    "earned",
    "scan_reward",
    "redeemed",
    "redeem_refund",
    "reversed",
    "expired",
    "merged_in",
    "merged_out",
    "debt_paid",
    "adjusted",
];

/// One output of an entity actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// A points ledger entry: every change of a member's available balance or of the points
    /// it owes (a reversal the balance could not cover; paid from the next points earned).
    /// Per member, the deltas sum to the balance and the debt deltas to the debt.
    Ledger {
        /// Member id.
        member: Str,
        /// Entry number within the member's ledger (1, 2, ...).
        seq: u64,
        /// Change of the balance (never makes it negative).
        delta: i64,
        /// Balance after the entry.
        balance: i64,
        /// Why: `earned`, `scan_reward`, `redeemed`, `redeem_refund`, `reversed`, `expired`,
        /// `merged_in`, `merged_out`, `debt_paid` (a merge brought points and debt together:
        /// the points pay it), `adjusted` (a person's goodwill or claw-back, `about` its
        /// `ref`; who and why are in its `points_adjusted`): [`LEDGER_REASONS`].
        reason: Str,
        /// The order or campaign the entry is about.
        #[serde(skip_serializing_if = "crate::cold::omit", default)]
        about: Option<Str>,
        /// Change of the points owed (absent: 0): up by what a reversal could not take, down
        /// by what points earned paid off.
        #[serde(skip_serializing_if = "crate::cold::omit", default)]
        debt_delta: i64,
        /// Points owed after the entry (absent: 0).
        #[serde(skip_serializing_if = "crate::cold::omit", default)]
        debt: i64,
    },
    /// Points waiting for an order's fulfilment changed.
    Pending {
        /// Member id.
        member: Str,
        /// Order key.
        order: Str,
        /// Pending points of that order now.
        points: i64,
        /// Pending points of the member in all.
        total: i64,
    },
    /// A reversal found fewer points than it had to take; the rest is owed from future points.
    PointsDebt {
        /// Member id.
        member: Str,
        /// Points owed now.
        debt: i64,
    },
    /// A person adjusted a member's points (`POST /v1/members/{id}/adjustments`): its ledger
    /// entry is `adjusted`, `about` the reference.
    PointsAdjusted {
        /// Member id (the survivor of any merge).
        member: Str,
        /// The case it is recorded under.
        #[serde(rename = "ref")]
        reference: Str,
        /// Points added (> 0) or taken (< 0).
        points: i64,
        /// The balance after it.
        balance: i64,
        /// The points owed after it (a claw-back larger than the balance).
        debt: i64,
        /// Who asked, when and why, as the service recorded the request.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        by: Option<Box<Resolver>>,
    },
    /// A tag turned on or off.
    Tag {
        /// Member id.
        member: Str,
        /// Tag name.
        tag: Str,
        /// On or off.
        on: bool,
    },
    /// The member's tier changed.
    Tier {
        /// Member id.
        member: Str,
        /// New tier.
        tier: Str,
        /// Previous tier.
        from: Str,
        /// The points earned in the tier period (`tiers.period-days`) that the new tier
        /// follows from: below the old tier's threshold on a drop (after its grace), at or
        /// above the new one's on a rise. Absent in outputs stored by a build before it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        earned: Option<i64>,
    },
    /// Two members became one; `alias` still resolves to `survivor`.
    Merged {
        /// Surviving member id.
        survivor: Str,
        /// The id that is now an alias.
        alias: Str,
    },
    /// Identities that would join two people with different phones were not merged.
    MergeConflict {
        /// The member kept.
        member: Str,
        /// The other member (or the identity kind that conflicted).
        other: Str,
        /// Why.
        reason: Str,
        /// The identity left unbound, when an identity conflicted (its value as stored: a
        /// phone's is hashed): it stays with no member, or with the one it had.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        value: Option<Str>,
    },
    /// A scan's reward was not paid: the member's daily cap in the campaign was reached.
    RewardCapped {
        /// Member id.
        member: Str,
        /// Campaign.
        campaign: Str,
    },
    /// A campaign's budget is used up.
    BudgetExhausted {
        /// Campaign.
        campaign: Str,
    },
    /// An order was accepted: stock reserved (and credit taken, points redeemed).
    OrderAccepted {
        /// Order key.
        order: Str,
        /// The dealer, for a dealer's order (what `/v1/outputs?dealer=` matches).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        dealer: Option<Str>,
        /// Order value in fen.
        amount: i64,
        /// Points the order redeemed, when it redeemed any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        points_redeemed: Option<i64>,
        /// The member's points balance after that redemption.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        balance: Option<i64>,
    },
    /// An order was refused, with the reason.
    OrderRejected {
        /// Order key.
        order: Str,
        /// The dealer, for a dealer's order (what `/v1/outputs?dealer=` matches).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        dealer: Option<Str>,
        /// `insufficient_stock`, `not_stocked` (the SKU never had stock at the location),
        /// `insufficient_points`, `points_over_value` (worth more than the order, when
        /// `points.redeem-fen-per-point` is set), `no_lines`, `no_location`, ...
        reason: Str,
        /// Detail for people.
        detail: Str,
    },
    /// A dealer order exceeds the dealer's available credit and waits.
    OrderHeld {
        /// Order key.
        order: Str,
        /// Dealer.
        dealer: Str,
        /// Missing credit in fen.
        shortfall: i64,
    },
    /// A held dealer order fits now and proceeds.
    OrderReleased {
        /// Order key.
        order: Str,
        /// Dealer.
        dealer: Str,
    },
    /// An order changed status (after `placed`).
    OrderStatus {
        /// Order key.
        order: Str,
        /// The dealer, for a dealer's order (what `/v1/outputs?dealer=` matches).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        dealer: Option<Str>,
        /// New status.
        status: Str,
        /// What of the event was not applied, when some was not (a return of more than is
        /// left to return, or of a SKU the order does not hold).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        detail: Option<Str>,
        /// The value taken off the order's sales, in fen: a cancellation's whole order (paid
        /// or not), a return's lines at the price paid (absent for other statuses).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        refund: Option<i64>,
    },
    /// A status change the order's state does not allow (e.g. `returned` before `fulfilled`).
    OrderIgnored {
        /// Order key.
        order: Str,
        /// The dealer, for a dealer's order (what `/v1/outputs?dealer=` matches).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        dealer: Option<Str>,
        /// The status sent.
        status: Str,
        /// Why it was not applied.
        reason: Str,
        /// The same as a stable code: `already_placed`, `already_paid`,
        /// `already_fulfilled`, `order_rejected`, `order_cancelled`, `fulfilled` (cancelled
        /// after shipping: return it), `partial_cancel`, `not_fulfilled` (returned before
        /// shipping), `nothing_to_return`, `too_many_waiting`. Absent in outputs stored by a
        /// build before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<Str>,
    },
    /// A status event waits in the order: it came before `placed`, or while a dealer order is
    /// held for credit; it applies, under its own id and time, once placement settles.
    OrderDeferred {
        /// Order key.
        order: Str,
        /// The dealer, for a dealer's order (what `/v1/outputs?dealer=` matches).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        dealer: Option<Str>,
        /// The status sent.
        status: Str,
        /// What it waits for: `placed`, or `credit` (a dealer order held for credit).
        waits_for: Str,
    },
    /// Stock at one location changed; `atp` is what channels may sell.
    Stock {
        /// SKU.
        sku: Str,
        /// Location.
        location: Str,
        /// On hand.
        on_hand: i64,
        /// Reserved for open orders.
        reserved: i64,
        /// Safety stock.
        safety: i64,
        /// Available to promise: on hand − reserved − safety, at least 0.
        atp: i64,
        /// What moved it: an order's `reserve`, `release` (cancelled or refused), `commit`
        /// (fulfilled: the reservation ships) or `restock` (returned); a stock event's
        /// `receive`, `adjust` or `set`, or `safety` (its safety stock alone, its movement or
        /// count not applied: said just before in `stock_move_ignored` or
        /// `stock_count_ignored`). Always set; absent only in outputs stored by a build
        /// before it, which still read.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        cause: Option<StockCause>,
        /// The order (`channel:order`) that moved it; absent for a stock event.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        order: Option<Str>,
        /// Units of the decrease asked that on hand could not cover, so not applied now (on
        /// hand stops at 0): an `adjust` larger than what was on hand, or a shipment after a
        /// count found less than was reserved; a count stamped before it that arrives later
        /// applies it in full from the counted level. Absent when all of it applied.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        floored: Option<i64>,
    },
    /// ATP fell to or below the low-stock threshold.
    LowStock {
        /// SKU.
        sku: Str,
        /// Location.
        location: Str,
        /// ATP now.
        atp: i64,
    },
    /// ATP reached zero.
    StockOut {
        /// SKU.
        sku: Str,
        /// Location.
        location: Str,
    },
    /// A stock count put on-hand below what is reserved: open orders cannot all ship.
    StockShort {
        /// SKU.
        sku: Str,
        /// Location.
        location: Str,
        /// Reserved minus on hand.
        short: i64,
        /// The orders holding reservations there (by order key, at most 50): those at risk.
        #[serde(default)]
        orders: Vec<Str>,
    },
    /// A stock count not applied: stamped before the latest count applied at its location
    /// (the newer count stands), or before the oldest movement the location still keeps
    /// (it could not take in every movement since).
    StockCountIgnored {
        /// SKU.
        sku: Str,
        /// Location.
        location: Str,
        /// The count's quantity.
        qty: i64,
        /// Why.
        reason: Str,
    },
    /// A receipt or adjustment not applied: stamped before the latest count applied at its
    /// location, which saw what was on hand then (a safety stock it sets is taken all the
    /// same).
    StockMoveIgnored {
        /// SKU.
        sku: Str,
        /// Location.
        location: Str,
        /// The movement's quantity (an adjustment's signed).
        qty: i64,
        /// Why.
        reason: Str,
    },
    /// The one decision on a scan: what it got and why.
    Decision {
        /// The scan's event id (named apart from the envelope's `event`, which for a
        /// resolution is the admin command's id).
        scan_event: uuid::Uuid,
        /// The item's code.
        code: Str,
        /// Member id.
        member: Str,
        /// Campaign.
        campaign: Str,
        /// Allow, review, block or duplicate.
        decision: Decision,
        /// Score, 0..=100 (shadow reasons not included).
        score: u8,
        /// Every reason that fired, with its points.
        reasons: Vec<Contribution>,
        /// Points credited (0 unless allowed; 0 when capped or out of budget).
        reward: i64,
        /// Points held for the review (0 unless in review).
        held: i64,
        /// Why an allowed or reviewed scan got (or holds) no points: `daily_cap`,
        /// `budget_exhausted` or `no_points`; absent otherwise.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        no_reward: Option<NoReward>,
        /// The decision shadow rules would have made, when different.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        shadow_decision: Option<Decision>,
        /// What was scanned: SKU, device, IP, and store, batch and dealer when known (absent
        /// for a scan decided from a command stored by an earlier build).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        scan: Option<Scanned>,
    },
    /// A review was resolved (or refused because the member had too many on hold), or a
    /// person overturned a block (`overturned`).
    ReviewResolved {
        /// The scan's event id (named apart from the envelope's `event`, which for a
        /// resolution is the admin command's id).
        scan_event: uuid::Uuid,
        /// Member id.
        member: Str,
        /// Campaign.
        campaign: Str,
        /// Whether the reward was paid.
        allow: bool,
        /// Points credited.
        reward: i64,
        /// Refused by the service, not by a person: the member held more than
        /// `max-held-reviews` and this was the oldest.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        refused: bool,
        /// A block a person overturned (the scan was blocked, not held for review).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        overturned: bool,
        /// Who resolved it, when and why, as the service recorded the person's request
        /// (absent for a refusal, and for resolutions recorded before it was kept).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        by: Option<Box<Resolver>>,
    },
    /// A code was scanned outside the sales region of the dealer its batch was shipped to.
    Diversion {
        /// Dealer in breach.
        dealer: Str,
        /// Batch.
        batch: Str,
        /// Code.
        code: Str,
        /// Km outside the region (one decimal).
        km_outside: f64,
    },
    /// A ring of linked members reached the flagging size.
    RingFlagged {
        /// The ring's label (its smallest member id).
        ring: Str,
        /// Members counted.
        size: u32,
    },
    /// A dealer's credit changed.
    Credit {
        /// Dealer.
        dealer: Str,
        /// Limit.
        limit: i64,
        /// Open orders plus fulfilled-unpaid amount.
        exposure: i64,
        /// Limit − exposure.
        available: i64,
        /// Orders on hold.
        held: u32,
        /// Owed for shipped orders less payments (negative: paid ahead), part of exposure.
        #[serde(default)]
        unpaid: i64,
        /// Orders taken on credit and not yet shipped.
        #[serde(default)]
        open_orders: u64,
        /// The amount of the orders on hold, in fen (absent: 0).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        held_fen: i64,
        /// What changed it: `limit` (a `dealer` event), `order` (an order taken on credit or
        /// held), `fulfilled` (shipped: open becomes unpaid), `closed` (cancelled or refused),
        /// `returned` (a credit note), `payment`. Absent in outputs stored before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Str>,
        /// The order that changed it, for `order`, `fulfilled`, `closed` and `returned`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<Str>,
        /// The payment's reference, for `payment`.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Str>,
        /// The payment's amount in fen, for `payment`; with each output's `unpaid` after it, a
        /// dealer's `credit` outputs are its statement.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<i64>,
        /// Held orders this change released onto credit, in fen (absent: 0): they joined
        /// `exposure` with it (their `order_released` outputs come just before).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        released_fen: i64,
    },
    /// A payment was not booked: its reference was booked before (a resend of one transfer).
    PaymentIgnored {
        /// Dealer.
        dealer: Str,
        /// The payment's reference (the event's `ref`).
        #[serde(rename = "ref")]
        reference: Str,
        /// Amount in fen.
        amount: i64,
        /// The amount booked under that reference first, when known (not for references
        /// booked before store encoding 5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        booked: Option<i64>,
        /// Why: `reference already booked`, or `reference already booked with another
        /// amount` (a transfer to look at: the second amount is not booked either).
        reason: Str,
    },
    /// A person replaced the member's phone (`POST /v1/members/{id}/phone`): the new one
    /// is bound to the member, the old one (if any) to nobody. A phone that belongs to another
    /// member is refused instead, as a `merge_conflict` naming that member.
    PhoneReplaced {
        /// Member id.
        member: Str,
        /// The new phone, as stored (hashed).
        phone: Str,
        /// The phone it replaced, as stored (absent: the member had none).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        previous: Option<Str>,
        /// The case it is recorded under.
        #[serde(rename = "ref")]
        reference: Str,
        /// Who asked, when and why, as the service recorded the request.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        by: Option<Box<Resolver>>,
    },
    /// An event named its member by a `member_id` this service never issued (a mistyped
    /// digit, an id from another system's store): what it asked of the member was not
    /// applied, and no member was started. A scan's is its `decision` instead (`block`,
    /// `no_reward: unknown_member`); an order's points check or redemption rejects the order.
    UnknownMember {
        /// The id the event gave.
        member: Str,
        /// What was not applied: one of [`UNKNOWN_MEMBER_ABOUT`] (`order_redeem`: a
        /// redemption, whose order is rejected).
        about: Str,
        /// The order, for an order's part (its stock and sale stand; its points do not).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        order: Option<Str>,
    },
    /// A person merged the member with another (`POST /v1/members/{id}/merge`): the two
    /// are one person. The `merged` output that follows names the survivor (the smaller id)
    /// and moves everything there; a phone the person did not keep was released first.
    MergeApproved {
        /// The member the merge ran at (the one that gave up its phone, if one did).
        member: Str,
        /// The other member.
        with: Str,
        /// The phone the person kept, as stored (absent: the two had no different phones).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        phone: Option<Str>,
        /// The phone this member gave up, as stored (bound to nobody now).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        released: Option<Str>,
        /// The case it is recorded under.
        #[serde(rename = "ref")]
        reference: Str,
        /// Who asked, when and why, as the service recorded the request.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        by: Option<Box<Resolver>>,
    },
    /// A person blocked a member, a device, an IP address or a network prefix (`POST
    /// /v1/blocks`): its scans in the campaign (or in every campaign) are blocked, reason
    /// `blocked`, until `until` (event time) or until lifted.
    BlockSet {
        /// `member`, `device`, `ip` or `net`.
        on: crate::fraud::block::BlockOn,
        /// The member id (the survivor of the id given), device, address or prefix.
        value: Str,
        /// The campaign (absent: every campaign).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        campaign: Option<Str>,
        /// When it ends, event time (absent: when lifted).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        until: Option<omnistream_schemas::EventTime>,
        /// The case it is recorded under.
        #[serde(rename = "ref")]
        reference: Str,
        /// The case of the block for the same campaign it replaced, if one was set.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        replaced: Option<Str>,
        /// Who asked, when and why, as the service recorded the request.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        by: Option<Box<Resolver>>,
    },
    /// A person lifted a block (`POST /v1/blocks/lift`).
    BlockLifted {
        /// `member`, `device`, `ip` or `net`.
        on: crate::fraud::block::BlockOn,
        /// The member id, device, address or prefix.
        value: Str,
        /// The campaign (absent: the block for every campaign).
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        campaign: Option<Str>,
        /// The case the lift is recorded under.
        #[serde(rename = "ref")]
        reference: Str,
        /// The case the block lifted was set under.
        lifted: Str,
        /// Who asked, when and why, as the service recorded the request.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        by: Option<Box<Resolver>>,
    },
    /// A `dealer` event stamped before the one whose limit and region the dealer holds (a
    /// credit system sending an old record again) was not applied.
    DealerIgnored {
        /// Dealer.
        dealer: Str,
        /// The limit it carried, in fen (not applied).
        credit_limit: i64,
        /// Why, with the time of the event in effect.
        reason: Str,
    },
}

/// Whether `name` is the `output` tag of some output; the error lists every tag (serde's own
/// list of the variants, so it never falls behind the enum).
pub fn check_kind(name: &str) -> Result<(), String> {
    match serde_json::from_value::<Output>(serde_json::json!({ "output": name })) {
        Err(e) if e.to_string().contains("unknown variant") => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Every `output` tag, as serde names the variants (the list its unknown-variant error gives,
/// so it never falls behind the enum either).
pub fn kinds() -> Vec<String> {
    let Err(e) = check_kind("") else {
        return Vec::new();
    };
    e.split_once("expected one of")
        .map_or_else(Vec::new, |(_, list)| {
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        })
}

impl Output {
    /// The output stream this belongs to (a Fluvio topic later): `points`, `members`,
    /// `orders`, `stock`, `credit`, `decisions`, `alerts`.
    pub fn stream(&self) -> &'static str {
        match self {
            Output::Ledger { .. }
            | Output::Pending { .. }
            | Output::PointsDebt { .. }
            | Output::PointsAdjusted { .. } => "points",
            Output::Tag { .. }
            | Output::Tier { .. }
            | Output::Merged { .. }
            | Output::MergeConflict { .. }
            | Output::UnknownMember { .. }
            | Output::PhoneReplaced { .. }
            | Output::MergeApproved { .. }
            | Output::RewardCapped { .. }
            | Output::BudgetExhausted { .. } => "members",
            Output::OrderAccepted { .. }
            | Output::OrderRejected { .. }
            | Output::OrderHeld { .. }
            | Output::OrderReleased { .. }
            | Output::OrderStatus { .. }
            | Output::OrderIgnored { .. }
            | Output::OrderDeferred { .. } => "orders",
            Output::Stock { .. }
            | Output::LowStock { .. }
            | Output::StockOut { .. }
            | Output::StockShort { .. }
            | Output::StockCountIgnored { .. }
            | Output::StockMoveIgnored { .. } => "stock",
            Output::Credit { .. }
            | Output::PaymentIgnored { .. }
            | Output::DealerIgnored { .. } => "credit",
            Output::Decision { .. }
            | Output::ReviewResolved { .. }
            | Output::BlockSet { .. }
            | Output::BlockLifted { .. } => "decisions",
            Output::Diversion { .. } | Output::RingFlagged { .. } => "alerts",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_are_every_tag() {
        let kinds = kinds();
        assert!(kinds.len() >= 25, "{kinds:?}");
        for k in ["decision", "ledger", "payment_ignored", "ring_flagged"] {
            assert!(kinds.iter().any(|n| n == k), "{k} in {kinds:?}");
        }
        for k in &kinds {
            assert!(check_kind(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn every_tag_is_a_kind_and_others_are_refused_with_the_list() {
        for name in [
            "decision",
            "ledger",
            "stock_short",
            "ring_flagged",
            "credit",
            "order_held",
        ] {
            assert_eq!(check_kind(name), Ok(()), "{name}");
        }
        let e = check_kind("dead-letter").unwrap_err();
        assert!(
            e.contains("dead-letter") && e.contains("`stock_short`"),
            "{e}"
        );
        assert!(check_kind("").is_err());
    }
}

//! Commands: the messages entity actors receive, one enum per entity kind. They are plain data
//! (serde), so the exchange can carry them in process or over Fluvio topics.

use crate::fraud::{NoReward, ScanCheck, Scanned, Verdict};
use crate::member::Member;
use compact_str::CompactString as Str;
use omnistream_schemas::{OrderKind, OrderStatus, StockOp};
use serde::{Deserialize, Serialize};

/// An identity as `(kind, value)`; personal values are already hashed by the decoder.
pub type Id = (Str, Str);

/// A command for any entity; the engine routes it to the entity named by its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "args", rename_all = "snake_case")]
pub enum Cmd {
    /// For an identity.
    Identity(IdentityCmd),
    /// For a member.
    Member(MemberCmd),
    /// For an order's coordinator.
    Order(OrderCmd),
    /// For a SKU.
    Sku(SkuCmd),
    /// For a dealer.
    Dealer(DealerCmd),
    /// For a store.
    Store(StoreCmd),
    /// For a campaign's budget.
    Campaign(CampaignCmd),
    /// For an item code's registry entry.
    Code(CodeCmd),
    /// For a device, an IP or a network prefix (the key says which).
    Crowd(CrowdCmd),
    /// For a ring of linked members.
    Ring(RingCmd),
    /// A timer the entity asked for is due (the watermark passed it).
    Tick,
}

/// Resolution of an event's identities to one member, hop by hop through the identity keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolve {
    /// The identities to visit, in order (kinds other than `member_id`).
    pub ids: Vec<Id>,
    /// The member each visited identity belonged to, in visit order.
    pub found: Vec<Option<Str>>,
    /// A `member_id` given in the event: a One-ID this system issued.
    pub given: Option<Str>,
    /// What to do at the member once resolved.
    pub then: MemberCmd,
    /// How many times the first identity visited was given up by a member
    /// ([`crate::identity::Identity::released`]; store encoding 11).
    #[serde(
        default,
        deserialize_with = "crate::cold::since::<11, _, _>",
        skip_serializing_if = "crate::cold::omit"
    )]
    pub first_released: u32,
}

/// Commands for an identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityCmd {
    /// One hop of a resolution.
    Resolve(Box<Resolve>),
    /// This identity now belongs to `member` (sent by the member, which checked conflicts).
    Bind {
        /// The member.
        member: Str,
    },
    /// Member `from` merged into `to`: identities of `from` move to `to`.
    Rebind {
        /// The alias.
        from: Str,
        /// The survivor.
        to: Str,
    },
    /// A person's replacement of `member`'s phone asks the new phone first: bound to nobody
    /// (or to `member`), it is bound to `member`; bound to another member, it stays, and the
    /// answer names that member ([`MemberCmd::PhoneClaimed`]; appended last).
    Claim {
        /// The member taking the phone.
        member: Str,
        /// The phone (this identity's value), for the answer.
        phone: Str,
        /// The case the replacement is recorded under, for the answer.
        reference: Str,
    },
    /// The phone `member` gave up: bound to nobody any more, unless bound meanwhile to
    /// another (appended last).
    Release {
        /// The member that had it.
        member: Str,
    },
}

/// One order line as the entities keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineV {
    /// SKU.
    pub sku: Str,
    /// Quantity.
    pub qty: i64,
    /// Unit price in fen.
    pub unit_price: i64,
}

/// Commands for a member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberCmd {
    /// Delivered by resolution: the event's identities that belonged to nobody (to bind,
    /// unless they conflict), and the command.
    Seen {
        /// Identities of the event not bound to any member yet.
        bind: Vec<Id>,
        /// The command itself.
        then: Box<MemberCmd>,
    },
    /// Identities seen together (`identify`): only the binding matters.
    Identify,
    /// An ad or content click (the X of X-RFM).
    Click {
        /// The channel.
        channel: Str,
        /// The campaign, if any.
        campaign: Option<Str>,
    },
    /// The member visited a store.
    Visit {
        /// The store.
        store: Str,
        /// Time spent, if known.
        duration_s: Option<i64>,
        /// The visit's channel (`store` for a POS; a channel used, as a click's is). Added by
        /// encoding 7: a member in the middle of a merge stores the commands it waits with.
        #[serde(default, deserialize_with = "crate::cold::since::<7, _, _>")]
        channel: Str,
    },
    /// A campaign scan, with the points the campaign's budget granted (0 when none).
    ScanReward {
        /// Campaign.
        campaign: Str,
        /// The item's code.
        code: Str,
        /// Points granted by the budget.
        points: i64,
        /// Most rewarded scans per member per local day in this campaign.
        daily_cap: u32,
        /// Store where scanned, if known.
        store: Option<Str>,
        /// The fraud verdict, when the scan went through the fraud checks: the member writes
        /// the scan's one `decision` output, and holds the points of a review.
        #[serde(default, skip_serializing_if = "crate::cold::omit")]
        verdict: Option<Box<Verdict>>,
    },
    /// A scan on its way to a decision: add the member's features, pass it to the code.
    Scan(Box<ScanCheck>),
    /// A person resolved the review of the scan `event`: pay its held reward, or refuse it.
    ReviewResolve {
        /// The scan's event id.
        event: uuid::Uuid,
        /// Pay the reward.
        allow: bool,
    },
    /// The member's ring label is now `label` (a smaller member id in its component).
    RingLabel {
        /// The label.
        label: Str,
    },
    /// The member's ring was flagged at this size.
    RingSize {
        /// The ring's label.
        ring: Str,
        /// Members counted in it.
        size: u32,
    },
    /// A consumer order of this member was accepted (stock reserved, redemption done).
    OrderPlaced {
        /// Order key (`channel:order`).
        order: Str,
        /// Channel.
        channel: Str,
        /// Store credited, if any.
        store: Option<Str>,
        /// Lines.
        lines: Vec<LineV>,
        /// Points paid with (already taken by `Redeem`).
        points_redeemed: i64,
    },
    /// Take points to pay for an order; answers `OrderCmd::Redeemed`.
    Redeem {
        /// Order key.
        order: Str,
        /// Points.
        points: i64,
    },
    /// The order was fulfilled: its pending points become available.
    OrderFulfilled {
        /// Order key.
        order: Str,
    },
    /// The order was cancelled (or rejected after a redemption): pending points dropped,
    /// redeemed points refunded, earned points reversed.
    OrderCancelled {
        /// Order key.
        order: Str,
    },
    /// Goods of the order came back: points reversed in proportion to the value returned.
    OrderReturned {
        /// Order key.
        order: Str,
        /// Value of the goods returned by this event, in fen.
        value: i64,
    },
    /// Merge this member into `survivor` (a smaller id).
    MergeInto {
        /// The surviving member id.
        survivor: Str,
    },
    /// Take over the state of member `from`, which is merging into this one.
    Absorb {
        /// The member merging in.
        from: Str,
        /// Its whole state.
        state: Box<Member>,
    },
    /// The survivor refused the merge (conflicting phones): stay as you were.
    AbsorbRefused {
        /// The survivor that refused.
        by: Str,
    },
    /// The survivor took everything: become an alias of it.
    Absorbed {
        /// The survivor.
        into: Str,
    },
    /// [`MemberCmd::OrderCancelled`] of an order placed at `placed` (the last variant: the
    /// commands stashed in stored states keep their tags): the order also stops counting on
    /// the day it was placed (X-RFM frequency and monetary, orders paid with points).
    OrderCancelledPlaced {
        /// Order key.
        order: Str,
        /// When (and in which offset) it was placed.
        placed: omnistream_schemas::EventTime,
    },
    /// A checked scan's reward and verdict with what was scanned, for its decision output:
    /// what the campaign sends in place of [`MemberCmd::ScanReward`] with a verdict (which
    /// stored states may still hold; appended last so their tags keep).
    ScanDecided(Box<ScanDecided>),
    /// A person's adjustment of the points (customer service's goodwill, a fraud team's
    /// claw-back), from the admin API; `reference` is the case it is recorded under.
    /// Appended last so stashed commands keep their tags.
    Adjust {
        /// Points added (> 0) or taken (< 0); what the balance cannot cover becomes debt.
        points: i64,
        /// The case, ticket or reason code (the ledger entry's `about`).
        reference: Str,
    },
    /// The reward of a blocked scan a person overturned, granted by the campaign: paid
    /// within the daily cap, and resolved (appended last).
    Overturn {
        /// The scan's event id.
        event: uuid::Uuid,
        /// Campaign.
        campaign: Str,
        /// Points granted by the budget.
        points: i64,
        /// Most rewarded scans per member per local day in this campaign.
        daily_cap: u32,
    },
    /// Whether the balance covers `points` for an order, before its stock is reserved;
    /// answers `OrderCmd::PointsChecked` and takes nothing (appended last).
    HasPoints {
        /// Order key.
        order: Str,
        /// Points the order would redeem.
        points: i64,
    },
    /// An event's command that causes a merge, sent through the member merging in so that
    /// it reaches the survivor after that member's state; `home` is the member it belongs to
    /// should the merge be refused: the member of the event's first identity that had one
    /// (appended last).
    Via {
        /// Where it runs when it reaches a member that is not `home` (and not merging).
        home: Str,
        /// The command (a `Seen`).
        seen: Box<MemberCmd>,
    },
    /// A merge of three or more members asks each for its phone first, in the order the event
    /// names them, so which of them merge does not follow from their ids (appended last).
    Phones(Box<Probe>),
    /// A member the event named could not join the merge (its phone differs from the
    /// others'): counted and said by the member the others merged into (appended last).
    MergeRefused {
        /// The member left out.
        other: Str,
    },
    /// An event named its member by `member_id`: the member is asked first whether it exists
    /// (a One-ID this system issued: an id of that form that was never issued, a mistyped
    /// digit, is refused and said, and starts no member); known, it goes on with the
    /// resolution, at its identities or, with none, at once (appended last).
    Given(Box<Resolve>),
    /// A person's replacement of the member's phone (customer service, once the member
    /// proved the new number): the new phone is claimed first ([`IdentityCmd::Claim`]),
    /// then the old one released (appended last).
    ReplacePhone {
        /// The new phone, as stored (hashed).
        phone: Str,
        /// The case it is recorded under.
        reference: Str,
    },
    /// The new phone's answer to [`IdentityCmd::Claim`] (appended last).
    PhoneClaimed {
        /// The phone, as stored.
        phone: Str,
        /// The case the replacement is recorded under.
        reference: Str,
        /// The member the phone belongs to, when another: nothing changed.
        taken_by: Option<Str>,
    },
    /// A person's merge of this member with `with` (customer service, once it knows the two
    /// are one person, as when the service refused to merge them for their two phones): the
    /// member gives up its phone when it is not `keep`, says so (`merge_approved`), and the
    /// two merge as identities would merge them (appended last). The service sends it to
    /// two members it found distinct (each the survivor of the id given); `with` this member
    /// is nothing.
    Join {
        /// The other member.
        with: Str,
        /// The phone the person keeps, as stored (hashed), when the two have different
        /// phones: the member holding another gives it up (released).
        keep: Option<Str>,
        /// The case it is recorded under.
        reference: Str,
    },
    /// A person's block on this member's scans, set or lifted (appended last).
    Block(crate::fraud::block::BlockCmd),
}

/// See [`MemberCmd::Phones`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The resolution that found the members.
    pub resolve: Resolve,
    /// The members to merge, in the order the event names them (a given `member_id` first).
    pub members: Vec<Str>,
    /// Each member asked so far, in that order: the member that answered (an alias answers
    /// through its survivor) and its phone (as stored).
    pub phones: Vec<(Str, Option<Str>)>,
}

/// See [`MemberCmd::ScanDecided`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanDecided {
    /// Campaign.
    pub campaign: Str,
    /// The item's code.
    pub code: Str,
    /// Points granted by the budget.
    pub points: i64,
    /// Most rewarded scans per member per local day in this campaign.
    pub daily_cap: u32,
    /// The fraud verdict.
    pub verdict: Verdict,
    /// What was scanned, where and from what.
    pub scanned: Scanned,
    /// Why the campaign granted no points to an allowed or reviewed scan (its rules pay
    /// none, or its budget could not): judged when it granted, under the rules then.
    pub not_granted: Option<NoReward>,
}

/// An order's change as the order coordinator receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// New status.
    pub status: OrderStatus,
    /// Consumer or dealer.
    pub kind: OrderKind,
    /// Channel.
    pub channel: Str,
    /// Lines, when given.
    pub lines: Option<Vec<LineV>>,
    /// Stock location, on `placed`.
    pub location: Option<Str>,
    /// Store credited.
    pub store: Option<Str>,
    /// The buyer's identities (consumer orders).
    pub member: Option<Vec<Id>>,
    /// The buyer (dealer orders).
    pub dealer: Option<Str>,
    /// Points paid with.
    pub points_redeemed: Option<i64>,
}

/// Commands for an order's coordinator (the saga that makes multi-entity steps all-or-nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderCmd {
    /// An `order` event.
    Event(Box<OrderEvent>),
    /// A SKU's answer to `Reserve`.
    Stock {
        /// The SKU.
        sku: Str,
        /// Whether the quantity was reserved.
        ok: bool,
        /// Available-to-promise at the location when refused.
        atp: i64,
        /// Refused because the SKU never had stock at the location (no stock event named it
        /// there): a wrong location, or its stock not loaded yet.
        #[serde(default)]
        unstocked: bool,
    },
    /// The dealer's answer to `Open`: within credit, or held with the shortfall.
    Credit {
        /// Within credit.
        ok: bool,
        /// Missing credit when held.
        shortfall: i64,
    },
    /// A held dealer order now fits the dealer's credit.
    CreditReleased,
    /// The member's answer to `Redeem`.
    Redeemed {
        /// Whether the points were taken.
        ok: bool,
        /// The balance at that moment.
        balance: i64,
    },
    /// The member's answer to `HasPoints`.
    PointsChecked {
        /// Whether the balance covers the points (or the order redeemed them already).
        ok: bool,
        /// The balance at that moment.
        balance: i64,
    },
    /// The answer to `HasPoints` or `Redeem` when the order's `member_id` names no member
    /// this system issued (appended last).
    UnknownMember {
        /// The id the order gave.
        member: Str,
    },
}

/// Commands for a SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkuCmd {
    /// Reserve `qty` at `location` for the order, all or nothing; answers `OrderCmd::Stock`.
    Reserve {
        /// Order key.
        order: Str,
        /// Location.
        location: Str,
        /// Quantity (the order's lines of this SKU summed).
        qty: i64,
    },
    /// The order shipped: reserved and on-hand both drop.
    Commit {
        /// Order key.
        order: Str,
    },
    /// The order was cancelled or failed elsewhere: give the reservation back.
    Release {
        /// Order key.
        order: Str,
    },
    /// Returned goods go back on hand: at the location the return names, else where the
    /// order was served from.
    Restock {
        /// Order key.
        order: Str,
        /// Quantity returned.
        qty: i64,
        /// Where the goods came back (a store taking back an online order), when the return
        /// says so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<Str>,
    },
    /// A `stock` event.
    Stock {
        /// Operation.
        op: StockOp,
        /// Location.
        location: Str,
        /// Quantity (signed for `adjust`).
        qty: i64,
        /// New safety stock, if given.
        safety: Option<i64>,
    },
    /// Whether `qty` could be reserved at `location` for the order: answers `OrderCmd::Stock`
    /// as `Reserve` would, and holds nothing. An order of several SKUs asks them all first,
    /// so one refused line does not reserve and release the others (appended last).
    Check {
        /// Order key.
        order: Str,
        /// Location.
        location: Str,
        /// Quantity (the order's lines of this SKU summed).
        qty: i64,
    },
}

/// Commands for a dealer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealerCmd {
    /// A `dealer` event: limit and region.
    Info {
        /// Credit limit in fen.
        credit_limit: i64,
        /// Sales region.
        region: Option<RegionV>,
    },
    /// Take on an order's amount, or hold it; answers `OrderCmd::Credit`.
    Open {
        /// Order key.
        order: Str,
        /// Amount in fen.
        amount: i64,
    },
    /// The order shipped: open amount becomes unpaid.
    Fulfilled {
        /// Order key.
        order: Str,
    },
    /// Cancelled or rejected: its exposure or hold goes away.
    Close {
        /// Order key.
        order: Str,
    },
    /// Goods came back: unpaid amount drops by their value.
    Returned {
        /// Order key.
        order: Str,
        /// Value returned in fen.
        value: i64,
    },
    /// A code of a batch shipped to this dealer was scanned outside its region.
    Diversion {
        /// The batch.
        batch: Str,
        /// Km outside the region.
        km: f64,
    },
    /// A payment.
    Payment {
        /// Amount in fen.
        amount: i64,
        /// The payment's reference (a repeated reference is one payment).
        reference: Str,
    },
}

/// A dealer's sales region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegionV {
    /// Centre latitude.
    pub lat: f64,
    /// Centre longitude.
    pub lon: f64,
    /// Radius in km.
    pub radius_km: f64,
}

/// Commands for a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreCmd {
    /// A member visited.
    MemberVisit {
        /// Member id.
        member: Str,
        /// Time spent.
        duration_s: Option<i64>,
        /// The member's first event ever was this visit (a member won by the store).
        new_member: bool,
    },
    /// A sales rep visited.
    RepVisit {
        /// Rep id.
        rep: Str,
        /// Time spent.
        duration_s: Option<i64>,
    },
    /// A code was scanned at the store.
    Scan,
    /// An accepted order credited to the store.
    Sale {
        /// Order key.
        order: Str,
        /// Member id, for consumer orders.
        member: Option<Str>,
        /// Order value in fen.
        amount: i64,
        /// The member's first event ever was this order.
        new_member: bool,
    },
    /// An order credited to the store was cancelled or returned.
    Refund {
        /// Order key.
        order: Str,
        /// Value in fen.
        amount: i64,
    },
    /// Member `from` merged into `to`: its visits and waiting sales are the survivor's, so a
    /// visit under one id and a sale under the other convert whichever id survived
    /// (appended last).
    Renamed {
        /// The id merged away.
        from: Str,
        /// The survivor.
        to: Str,
    },
}

/// Commands for a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignCmd {
    /// A scan claims the campaign's reward: grant from the budget and pass the reward on to
    /// the member (resolving the scan's identities).
    Claim {
        /// The scan's identities.
        ids: Vec<Id>,
        /// The item's code.
        code: Str,
        /// Store, if known.
        store: Option<Str>,
    },
    /// Points granted but not paid (the member hit the daily cap): back into the budget.
    Refund {
        /// Points.
        points: i64,
    },
    /// A scan checked by every entity: score it, take the budget, send the reward or hold.
    Decide(Box<ScanCheck>),
    /// A person overturned the block of a scan (the admin API): grant its reward from the
    /// budget, as for an allowed scan, and pass it to the member.
    Overturn {
        /// The member the scan was decided for.
        member: Str,
        /// The scan's event id.
        scan: uuid::Uuid,
    },
}

/// Commands for an item code's registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeCmd {
    /// A scan of this code: first scan wins.
    Check(Box<ScanCheck>),
}

/// Commands for a device, IP or network prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrowdCmd {
    /// A scan from here: count it, pass it on.
    Check(Box<ScanCheck>),
    /// Ordinary activity from this device (a click): it has been in use since then (devices).
    Seen,
    /// A person's block on this device, address or prefix (`value`, its key's id), set or
    /// lifted (appended last).
    Block {
        /// The device, address or prefix.
        value: Str,
        /// What the person asked.
        block: crate::fraud::block::BlockCmd,
    },
}

/// Commands for a ring (a component of members linked by devices and home IPs), keyed by its
/// label, the smallest member id known in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingCmd {
    /// This ring and the ring `into` are one component; the larger label merges into the
    /// smaller.
    MergeInto {
        /// The other label.
        into: Str,
    },
    /// The members of a ring that merged into this one.
    Absorb {
        /// Member ids it remembered.
        members: Vec<Str>,
        /// Members it counted (more than it remembered when it was full).
        size: u32,
    },
}

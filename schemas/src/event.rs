//! The event contract of shared/EVENTS.md as Rust types.
//!
//! These types are what the rest of omnistream sees after decoding and validation: every
//! required field is present, every value is in range, and personal identity values are
//! already replaced by their keyed hash. Serializing an [`Event`] gives the wire form back.

use crate::time::EventTime;
use compact_str::CompactString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use uuid::Uuid;

/// A short string kept inline when it fits in 24 bytes (ids, codes, SKUs), else on the heap.
pub type Str = CompactString;

/// One event as channels send it: the envelope and the type-specific body.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(
    title = "omnistream event",
    description = "One event of the omnistream contract (shared/EVENTS.md). Fields not listed are ignored. String values hold no control characters (U+0000 to U+001F, U+007F to U+009F)."
)]
pub struct Event {
    /// The idempotency key: the same id twice is one event.
    pub id: Uuid,
    /// Event time (RFC 3339 with an offset). All logic runs on it.
    pub ts: EventTime,
    /// The channel; required on scan, click, order and visit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The type-specific fields, tagged by `type`.
    #[serde(flatten)]
    pub body: Body,
}

impl Event {
    /// The event type's wire name (`scan`, `order`, ...).
    pub fn type_name(&self) -> &'static str {
        self.body.kind().name()
    }
}

/// The type-specific part of an event, tagged by the `type` field.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A consumer scans the unique code on one item.
    Scan(Scan),
    /// A member clicks an ad, a push or a content piece.
    Click(Click),
    /// An order changes state.
    Order(Order),
    /// Someone visits a store.
    Visit(Visit),
    /// Stock is received, adjusted or set at a location.
    Stock(StockChange),
    /// A dealer pays.
    Payment(Payment),
    /// A dealer's credit limit and sales region.
    Dealer(DealerInfo),
    /// A batch of codes shipped to a dealer.
    CodeBatch(CodeBatch),
    /// Two or more identities seen together (a login, a binding).
    Identify(Identify),
}

/// The event types, without their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `scan`
    Scan,
    /// `click`
    Click,
    /// `order`
    Order,
    /// `visit`
    Visit,
    /// `stock`
    Stock,
    /// `payment`
    Payment,
    /// `dealer`
    Dealer,
    /// `code_batch`
    CodeBatch,
    /// `identify`
    Identify,
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 9] = [
        EventKind::Scan,
        EventKind::Click,
        EventKind::Order,
        EventKind::Visit,
        EventKind::Stock,
        EventKind::Payment,
        EventKind::Dealer,
        EventKind::CodeBatch,
        EventKind::Identify,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Scan => "scan",
            EventKind::Click => "click",
            EventKind::Order => "order",
            EventKind::Visit => "visit",
            EventKind::Stock => "stock",
            EventKind::Payment => "payment",
            EventKind::Dealer => "dealer",
            EventKind::CodeBatch => "code_batch",
            EventKind::Identify => "identify",
        }
    }

    /// The kind for a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether `channel` is required on this type.
    pub fn needs_channel(self) -> bool {
        matches!(
            self,
            EventKind::Scan | EventKind::Click | EventKind::Order | EventKind::Visit
        )
    }
}

impl Body {
    /// The type of this body.
    pub fn kind(&self) -> EventKind {
        match self {
            Body::Scan(_) => EventKind::Scan,
            Body::Click(_) => EventKind::Click,
            Body::Order(_) => EventKind::Order,
            Body::Visit(_) => EventKind::Visit,
            Body::Stock(_) => EventKind::Stock,
            Body::Payment(_) => EventKind::Payment,
            Body::Dealer(_) => EventKind::Dealer,
            Body::CodeBatch(_) => EventKind::CodeBatch,
            Body::Identify(_) => EventKind::Identify,
        }
    }
}

/// A sales channel. Known values have variants; any other value is kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// The brand's own mini-program mall.
    Mall,
    /// Tmall store.
    Tmall,
    /// JD store.
    Jd,
    /// Douyin store.
    Douyin,
    /// A physical store's POS.
    Store,
    /// WeCom (enterprise WeChat).
    Wecom,
    /// The B2B dealer portal.
    Dealer,
    /// The sales-rep app.
    Sfa,
    /// The scan page of a campaign.
    Campaign,
    /// Any other channel, kept as sent.
    Other(Str),
}

impl Channel {
    /// The known channels, in documentation order.
    pub const KNOWN: [&'static str; 9] = [
        "mall", "tmall", "jd", "douyin", "store", "wecom", "dealer", "sfa", "campaign",
    ];

    /// Parses a channel name; unknown names become `Other`.
    pub fn parse(s: &str) -> Channel {
        match s {
            "mall" => Channel::Mall,
            "tmall" => Channel::Tmall,
            "jd" => Channel::Jd,
            "douyin" => Channel::Douyin,
            "store" => Channel::Store,
            "wecom" => Channel::Wecom,
            "dealer" => Channel::Dealer,
            "sfa" => Channel::Sfa,
            "campaign" => Channel::Campaign,
            other => Channel::Other(Str::from(other)),
        }
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Channel::Mall => "mall",
            Channel::Tmall => "tmall",
            Channel::Jd => "jd",
            Channel::Douyin => "douyin",
            Channel::Store => "store",
            Channel::Wecom => "wecom",
            Channel::Dealer => "dealer",
            Channel::Sfa => "sfa",
            Channel::Campaign => "campaign",
            Channel::Other(s) => s,
        }
    }

    /// A bounded label for metrics: known names as they are, anything else `other`.
    pub fn label(&self) -> &'static str {
        match self {
            Channel::Other(_) => "other",
            known => Channel::KNOWN
                .iter()
                .copied()
                .find(|k| *k == known.as_str())
                .unwrap_or("other"),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Cow<'de, str> = Deserialize::deserialize(d)?;
        Ok(Channel::parse(&s))
    }
}

impl JsonSchema for Channel {
    fn schema_name() -> Cow<'static, str> {
        "Channel".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": crate::decode::MAX_STR,
            "description": "mall, tmall, jd, douyin, store, wecom, dealer, sfa or campaign; other values are accepted and kept",
            "examples": Channel::KNOWN,
        })
    }
}

/// A kind of identity a member can be known by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    /// A One-ID this system issued.
    MemberId,
    /// A mobile phone number (always stored hashed).
    Phone,
    /// A WeChat openid.
    Openid,
    /// A WeChat unionid.
    Unionid,
    /// A Tmall account.
    Tmall,
    /// A JD account.
    Jd,
    /// A Douyin account.
    Douyin,
    /// A store membership card number (always stored hashed).
    Card,
    /// Any other kind, kept as sent (its value is stored hashed).
    Other(Str),
}

impl IdKind {
    /// The known kinds, in documentation order.
    pub const KNOWN: [&'static str; 8] = [
        "member_id",
        "phone",
        "openid",
        "unionid",
        "tmall",
        "jd",
        "douyin",
        "card",
    ];

    /// Parses a kind name; unknown names become `Other`.
    pub fn parse(s: &str) -> IdKind {
        match s {
            "member_id" => IdKind::MemberId,
            "phone" => IdKind::Phone,
            "openid" => IdKind::Openid,
            "unionid" => IdKind::Unionid,
            "tmall" => IdKind::Tmall,
            "jd" => IdKind::Jd,
            "douyin" => IdKind::Douyin,
            "card" => IdKind::Card,
            other => IdKind::Other(Str::from(other)),
        }
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            IdKind::MemberId => "member_id",
            IdKind::Phone => "phone",
            IdKind::Openid => "openid",
            IdKind::Unionid => "unionid",
            IdKind::Tmall => "tmall",
            IdKind::Jd => "jd",
            IdKind::Douyin => "douyin",
            IdKind::Card => "card",
            IdKind::Other(s) => s,
        }
    }

    /// Whether values of this kind are personal data, stored only as a keyed hash.
    ///
    /// Phone numbers and card numbers identify a person outside any platform; unknown kinds
    /// may be anything (an e-mail, an ID number), so they are hashed too. Platform-issued
    /// pseudonyms (openid, unionid, marketplace accounts) and our own member ids are kept,
    /// because channels need them to reach the member.
    pub fn is_personal(&self) -> bool {
        matches!(self, IdKind::Phone | IdKind::Card | IdKind::Other(_))
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identities seen in one event, sorted by kind, at most one value per kind.
///
/// Personal values are already keyed hashes when this type comes out of the decoder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Identities(pub Vec<(IdKind, Str)>);

impl Identities {
    /// The value for a kind, if present.
    pub fn get(&self, kind: &IdKind) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over (kind, value).
    pub fn iter(&self) -> impl Iterator<Item = (&IdKind, &Str)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for Identities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_str(), v.as_str())?;
        }
        m.end()
    }
}

impl JsonSchema for Identities {
    fn schema_name() -> Cow<'static, str> {
        "Identities".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut props = serde_json::Map::new();
        for k in IdKind::KNOWN {
            props.insert(
                k.to_string(),
                serde_json::json!({"type": "string", "minLength": 1, "maxLength": crate::decode::MAX_STR}),
            );
        }
        schemars::json_schema!({
            "type": "object",
            "description": "identity kind to value; at least one entry. phone, card and unknown kinds are personal data and stored only as a keyed hash",
            "minProperties": 1,
            "maxProperties": crate::decode::MAX_IDENTITIES,
            "properties": props,
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": crate::decode::MAX_STR},
        })
    }
}

/// A position on the globe, in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Geo {
    /// Latitude, -90..=90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    /// Longitude, -180..=180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
}

impl Geo {
    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn distance_km(&self, other: &Geo) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dla = la2 - la1;
        let dlo = (other.lon - self.lon).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * 6371.0088 * a.sqrt().min(1.0).asin()
    }
}

/// `scan`: a consumer scans the unique code on one item.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Scan {
    /// The item's unique code.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub code: Str,
    /// The item's SKU.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub sku: Str,
    /// The scan campaign whose reward is claimed.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub campaign: Str,
    /// Who scanned.
    pub member: Identities,
    /// Device fingerprint.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub device: Str,
    /// Client IP address.
    pub ip: IpAddr,
    /// Where the scan happened, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<Geo>,
    /// The store where it was scanned, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub store: Option<Str>,
}

/// `click`: a member clicks an ad, a push or a content piece.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Click {
    /// Who clicked.
    pub member: Identities,
    /// The ad or content id.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub target: Str,
    /// The campaign, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub campaign: Option<Str>,
    /// The SKU promoted, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub sku: Option<Str>,
    /// Device fingerprint, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub device: Option<Str>,
}

/// Order life-cycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed: reserves stock (and credit for dealers).
    Placed,
    /// Paid.
    Paid,
    /// Cancelled: releases what was reserved.
    Cancelled,
    /// Fulfilled: commits stock; pending points become available.
    Fulfilled,
    /// Returned (all lines, or the lines given).
    Returned,
}

impl OrderStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Returned => "returned",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "placed" => OrderStatus::Placed,
            "paid" => OrderStatus::Paid,
            "cancelled" => OrderStatus::Cancelled,
            "fulfilled" => OrderStatus::Fulfilled,
            "returned" => OrderStatus::Returned,
            _ => return None,
        })
    }
}

/// Who buys: a consumer or a dealer (B2B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// A consumer order; `member` is required.
    Consumer,
    /// A dealer (B2B) order; `dealer` is required.
    Dealer,
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Line {
    /// The SKU.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub sku: Str,
    /// Quantity, > 0.
    #[schemars(range(min = 1))]
    pub qty: i64,
    /// Unit price in fen, >= 0.
    #[schemars(range(min = 0))]
    pub unit_price: i64,
}

/// `order`: an order changes state, in any channel, consumer or dealer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Order {
    /// The order id, unique per channel.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub order: Str,
    /// The new state.
    pub status: OrderStatus,
    /// Consumer or dealer.
    pub kind: OrderKind,
    /// Required on `placed` (1..=200); optional later; on `returned`, the lines returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub lines: Option<Vec<Line>>,
    /// Required on `placed`: the store or warehouse whose stock serves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub location: Option<Str>,
    /// The store credited with the sale.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub store: Option<Str>,
    /// Required when `kind` is `consumer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<Identities>,
    /// Required when `kind` is `dealer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub dealer: Option<Str>,
    /// Points the member pays with, >= 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub points_redeemed: Option<i64>,
}

impl Order {
    /// The order's total in fen over the given lines (saturating).
    pub fn lines_total(lines: &[Line]) -> i64 {
        lines.iter().fold(0i64, |t, l| {
            t.saturating_add(l.qty.saturating_mul(l.unit_price))
        })
    }
}

/// Who visits a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visitor {
    /// A member (then `member` is required).
    Member,
    /// A sales rep (then `rep` is required).
    Rep,
}

/// `visit`: someone visits a store.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Visit {
    /// The store visited.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub store: Str,
    /// Member or rep.
    pub visitor: Visitor,
    /// The member, when the visitor is a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<Identities>,
    /// The rep, when the visitor is a rep.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub rep: Option<Str>,
    /// How long the visit lasted, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub duration_s: Option<i64>,
    /// Where the visit was checked in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<Geo>,
}

/// What a stock event does to on-hand stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockOp {
    /// Adds `qty` (> 0).
    Receive,
    /// Adds `qty` (signed).
    Adjust,
    /// Sets on hand to `qty` (>= 0).
    Set,
}

/// `stock`: on-hand stock changes at a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StockChange {
    /// The SKU.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub sku: Str,
    /// The store or warehouse.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub location: Str,
    /// Receive, adjust or set.
    pub op: StockOp,
    /// The quantity (meaning depends on `op`).
    pub qty: i64,
    /// Safety stock at that location, >= 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub safety: Option<i64>,
}

/// `payment`: a dealer pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Payment {
    /// The dealer who pays.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub dealer: Str,
    /// Amount in fen, > 0.
    #[schemars(range(min = 1))]
    pub amount: i64,
    /// The payment reference.
    #[serde(rename = "ref")]
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub reference: Str,
}

/// A dealer's sales area: a circle on the globe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Region {
    /// Centre latitude.
    pub lat: f64,
    /// Centre longitude.
    pub lon: f64,
    /// Radius in kilometres, > 0.
    pub radius_km: f64,
}

impl Region {
    /// Whether a point lies inside the region.
    pub fn contains(&self, g: &Geo) -> bool {
        Geo {
            lat: self.lat,
            lon: self.lon,
        }
        .distance_km(g)
            <= self.radius_km
    }
}

/// `dealer`: a dealer's credit limit and region.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DealerInfo {
    /// The dealer id.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub dealer: Str,
    /// Credit limit in fen, >= 0.
    #[schemars(range(min = 0))]
    pub credit_limit: i64,
    /// The dealer's sales area.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

/// `code_batch`: codes starting with `prefix` belong to a batch shipped to a dealer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CodeBatch {
    /// The batch id.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub batch: Str,
    /// Every code starting with this prefix belongs to the batch.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub prefix: Str,
    /// The SKU the codes are printed on.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub sku: Str,
    /// The dealer the batch was shipped to.
    #[schemars(with = "String", length(min = 1, max = 256))]
    pub dealer: Str,
}

/// `identify`: two or more identities seen together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Identify {
    /// At least two identities.
    pub member: Identities,
}

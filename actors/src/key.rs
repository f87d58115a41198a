//! Entity keys: which actor a command is for. Each key has exactly one owner at a time.

use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The address of one entity actor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "entity", content = "id", rename_all = "snake_case")]
pub enum Key {
    /// One identity value of one kind (values of personal kinds are already hashed):
    /// resolves to the member it belongs to.
    Identity(Str, Str),
    /// One member (One-ID), by the id this system issued.
    Member(Str),
    /// One order, by `channel:order id` (order ids are unique per channel).
    Order(Str),
    /// One SKU: its stock at every location.
    Sku(Str),
    /// One dealer: credit, holds, region.
    Dealer(Str),
    /// One store: KPIs and sales-rep visits.
    Store(Str),
    /// One scan campaign: its reward budget and fraud decisions.
    Campaign(Str),
    /// One item code: who scanned it first (the code registry).
    Code(Str),
    /// One device fingerprint: its scans and members.
    Device(Str),
    /// One IP address: its scans and members.
    Ip(Str),
    /// One network prefix (/24 or /64): its members.
    Net(Str),
    /// One ring of linked members, by label.
    Ring(Str),
}

impl Key {
    /// The entity kind as a short name, for metrics labels and table names.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Identity(..) => "identity",
            Key::Member(_) => "member",
            Key::Order(_) => "order",
            Key::Sku(_) => "sku",
            Key::Dealer(_) => "dealer",
            Key::Store(_) => "store",
            Key::Campaign(_) => "campaign",
            Key::Code(_) => "code",
            Key::Device(_) => "device",
            Key::Ip(_) => "ip",
            Key::Net(_) => "net",
            Key::Ring(_) => "ring",
        }
    }
}

impl Key {
    /// A stable 64-bit FNV-1a hash of the key's display form (`member/m…`, `identity/phone/…`):
    /// the same on every machine, build and run, without building the string. Shards and
    /// processes agree through it on who owns a key.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(self.kind().as_bytes());
        feed(b"/");
        match self {
            Key::Identity(k, v) => {
                feed(k.as_bytes());
                feed(b"/");
                feed(v.as_bytes());
            }
            Key::Member(id)
            | Key::Order(id)
            | Key::Sku(id)
            | Key::Dealer(id)
            | Key::Store(id)
            | Key::Campaign(id)
            | Key::Code(id)
            | Key::Device(id)
            | Key::Ip(id)
            | Key::Net(id)
            | Key::Ring(id) => feed(id.as_bytes()),
        }
        h
    }

    /// The shard of `shards` that owns the key: `stable_hash % shards` (0 when there is one).
    pub fn owner(&self, shards: usize) -> usize {
        if shards <= 1 {
            return 0;
        }
        // the remainder is below `shards`, a usize
        usize::try_from(self.stable_hash() % shards as u64).unwrap_or(0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Identity(k, v) => write!(f, "identity/{k}/{v}"),
            Key::Member(id) => write!(f, "member/{id}"),
            Key::Order(id) => write!(f, "order/{id}"),
            Key::Sku(id) => write!(f, "sku/{id}"),
            Key::Dealer(id) => write!(f, "dealer/{id}"),
            Key::Store(id) => write!(f, "store/{id}"),
            Key::Campaign(id) => write!(f, "campaign/{id}"),
            Key::Code(id) => write!(f, "code/{id}"),
            Key::Device(id) => write!(f, "device/{id}"),
            Key::Ip(id) => write!(f, "ip/{id}"),
            Key::Net(id) => write!(f, "net/{id}"),
            Key::Ring(id) => write!(f, "ring/{id}"),
        }
    }
}

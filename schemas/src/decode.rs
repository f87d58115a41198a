//! Decoding and validation: raw bytes in, a typed [`Event`] or a [`Rejection`] listing every
//! problem with its reason code and field path.
//!
//! Two paths share one validator. The fast path reads straight into a flat, borrowing wire
//! struct (no intermediate tree) and validates it; almost every real event takes it. It reads
//! with a hand-written reader for the contract's keys ([`fast`]), and where that one gives up
//! (escapes, unusual numbers, any error) with serde_json into the same struct. Only when serde
//! refuses the bytes does the slow path parse a `serde_json::Value`, convert each field on its
//! own (so one wrong type does not hide the rest) and run the same validator, so a bad event is
//! explained completely.
//!
//! Policy for fields the contract does not name: they are ignored, so channels can send extra
//! data and the contract can grow optional fields without breaking senders. [`lint`] reports
//! them (with a "did you mean" for likely typos) so `omnistream validate` shows a typo in a
//! field name; a typo in a required field is also a `missing_field` rejection.

use crate::event::*;
use crate::pii::{Pii, PiiError};
use crate::reason::{Problem, Reason, Rejection};
use crate::time::EventTime;
use serde::de::{DeserializeOwned, MapAccess, Visitor as DeVisitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use uuid::Uuid;

mod fast;

/// Events larger than this are rejected before parsing.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest string accepted in an id-like field.
pub const MAX_STR: usize = 256;

/// The longest visit whose `duration_s` counts toward a store's and a rep's visit time, in
/// seconds (12 hours): a longer one (a door counter that missed the exit) still counts as a
/// visit, and so does one of 0 seconds, but neither's time does; `lint` warns of both.
pub const MAX_VISIT_S: i64 = 12 * 3600;

/// Why `v` is refused for a control character, if it holds one (`of`: what follows the
/// byte offset in the detail).
fn control_detail(v: &str, of: &str) -> Option<String> {
    control_char(v).map(|(at, c)| {
        format!(
            "a control character (U+{:04X}) at byte {at}{of}",
            u32::from(c)
        )
    })
}

/// Whether a visit's `duration_s` counts as its time: 1 second to [`MAX_VISIT_S`].
pub fn plausible_visit(duration_s: i64) -> bool {
    (1..=MAX_VISIT_S).contains(&duration_s)
}

/// The first control character of `v` (a NUL, a tab, a line break, U+0080..U+009F) and its
/// byte offset: ids are compared exactly, so one there makes another store, SKU or member.
pub fn control_char(v: &str) -> Option<(usize, char)> {
    // a byte below 0x20, DEL, or the lead byte of U+0080..U+00BF (which the C1 controls are)
    if !v.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
        return None;
    }
    v.char_indices().find(|(_, c)| c.is_control())
}
/// Most identities one `member` object may carry.
pub const MAX_IDENTITIES: usize = 16;
/// Most lines one order may carry.
pub const MAX_LINES: usize = 200;
/// Largest quantity on a line or stock event.
pub const MAX_QTY: i64 = 1_000_000_000;
/// Largest amount of money (fen) or points in one field.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

type S<'a> = Option<Cow<'a, str>>;

/// Every field of every event type, flat, borrowing from the input where it can.
///
/// Read in place by [`fast::read`], or where that gives up by [`Wire::read`] (a hand-written
/// serde visitor, not serde's derive): the derived visitor builds every field in a local and
/// then moves the whole ~700-byte struct out, once per layer (visitor, `MapOnly`,
/// `from_object`, `build`), which cost more than the parsing.
#[derive(Default)]
#[cfg_attr(test, derive(Debug))]
struct Wire<'a> {
    id: S<'a>,
    ty: S<'a>,
    ts: S<'a>,
    channel: S<'a>,
    code: S<'a>,
    sku: S<'a>,
    campaign: S<'a>,
    device: S<'a>,
    ip: S<'a>,
    store: S<'a>,
    target: S<'a>,
    order: S<'a>,
    status: S<'a>,
    kind: S<'a>,
    location: S<'a>,
    dealer: S<'a>,
    visitor: S<'a>,
    rep: S<'a>,
    op: S<'a>,
    batch: S<'a>,
    prefix: S<'a>,
    reference: S<'a>,
    member: Option<WireIds<'a>>,
    geo: Option<MapOnly<WireGeo>>,
    lines: Option<Vec<MapOnly<WireLine<'a>>>>,
    qty: Option<i64>,
    safety: Option<i64>,
    amount: Option<i64>,
    credit_limit: Option<i64>,
    points_redeemed: Option<i64>,
    duration_s: Option<i64>,
    region: Option<MapOnly<WireRegion>>,
    /// Whether a top-level field no event type reads was met (a misspelt one, often).
    unknown: bool,
    /// The known top-level fields met, by their index in [`FIELDS`].
    seen: u64,
}

/// Top-level field names the contract knows (for lint).
const FIELDS: &[&str] = &[
    "id",
    "type",
    "ts",
    "channel",
    "code",
    "sku",
    "campaign",
    "device",
    "ip",
    "store",
    "target",
    "order",
    "status",
    "kind",
    "location",
    "dealer",
    "visitor",
    "rep",
    "op",
    "batch",
    "prefix",
    "ref",
    "member",
    "geo",
    "lines",
    "qty",
    "safety",
    "amount",
    "credit_limit",
    "points_redeemed",
    "duration_s",
    "region",
];

/// The index in [`FIELDS`] (the order of `Wire`'s fields) of a top-level key, if the contract
/// names it.
fn field_index(key: &str) -> Option<usize> {
    // by length first: a plain match on the string compares against every name in turn
    Some(match key.len() {
        2 => match key {
            "id" => 0,
            "ts" => 2,
            "ip" => 8,
            "op" => 18,
            _ => return None,
        },
        3 => match key {
            "sku" => 5,
            "rep" => 17,
            "ref" => 21,
            "geo" => 23,
            "qty" => 25,
            _ => return None,
        },
        4 => match key {
            "type" => 1,
            "code" => 4,
            "kind" => 13,
            _ => return None,
        },
        5 => match key {
            "store" => 9,
            "order" => 11,
            "batch" => 19,
            "lines" => 24,
            _ => return None,
        },
        6 => match key {
            "device" => 7,
            "target" => 10,
            "status" => 12,
            "dealer" => 15,
            "prefix" => 20,
            "member" => 22,
            "safety" => 26,
            "amount" => 27,
            "region" => 31,
            _ => return None,
        },
        7 => match key {
            "channel" => 3,
            "visitor" => 16,
            _ => return None,
        },
        8 => match key {
            "campaign" => 6,
            "location" => 14,
            _ => return None,
        },
        10 => match key {
            "duration_s" => 30,
            _ => return None,
        },
        12 => match key {
            "credit_limit" => 28,
            _ => return None,
        },
        15 => match key {
            "points_redeemed" => 29,
            _ => return None,
        },
        _ => return None,
    })
}

/// A top-level key, read as serde's derived field identifier reads it.
struct Key(Option<usize>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl DeVisitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("field identifier")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(field_index(v)))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// An optional string field read with [`opt_cow`].
struct OptCow<'a>(S<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for OptCow<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        opt_cow(d).map(OptCow)
    }
}

impl<'a> Wire<'a> {
    /// Parses one JSON object (and nothing after it) into `self`, which starts empty. Accepts
    /// and refuses exactly what serde's derive did (`#[serde(default)]`, unknown fields
    /// ignored, a repeated field is `duplicate field`), with the same errors at the same places.
    fn read(&mut self, text: &'a str) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        (&mut de).deserialize_map(InPlace(self))?;
        de.end()
    }
}

/// Fills a [`Wire`] from a JSON object, field by field, where it lies.
struct InPlace<'w, 'a>(&'w mut Wire<'a>);

impl<'de> DeVisitor<'de> for InPlace<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let w = self.0;
        let mut seen: u64 = 0;
        while let Some(Key(k)) = m.next_key::<Key>()? {
            let Some(i) = k else {
                w.unknown = true;
                m.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            if seen & (1 << i) != 0 {
                return Err(serde::de::Error::duplicate_field(FIELDS[i]));
            }
            seen |= 1 << i;
            w.seen = seen;
            match i {
                0 => w.id = m.next_value::<OptCow>()?.0,
                1 => w.ty = m.next_value::<OptCow>()?.0,
                2 => w.ts = m.next_value::<OptCow>()?.0,
                3 => w.channel = m.next_value::<OptCow>()?.0,
                4 => w.code = m.next_value::<OptCow>()?.0,
                5 => w.sku = m.next_value::<OptCow>()?.0,
                6 => w.campaign = m.next_value::<OptCow>()?.0,
                7 => w.device = m.next_value::<OptCow>()?.0,
                8 => w.ip = m.next_value::<OptCow>()?.0,
                9 => w.store = m.next_value::<OptCow>()?.0,
                10 => w.target = m.next_value::<OptCow>()?.0,
                11 => w.order = m.next_value::<OptCow>()?.0,
                12 => w.status = m.next_value::<OptCow>()?.0,
                13 => w.kind = m.next_value::<OptCow>()?.0,
                14 => w.location = m.next_value::<OptCow>()?.0,
                15 => w.dealer = m.next_value::<OptCow>()?.0,
                16 => w.visitor = m.next_value::<OptCow>()?.0,
                17 => w.rep = m.next_value::<OptCow>()?.0,
                18 => w.op = m.next_value::<OptCow>()?.0,
                19 => w.batch = m.next_value::<OptCow>()?.0,
                20 => w.prefix = m.next_value::<OptCow>()?.0,
                21 => w.reference = m.next_value::<OptCow>()?.0,
                22 => w.member = m.next_value()?,
                23 => w.geo = m.next_value()?,
                24 => w.lines = m.next_value()?,
                25 => w.qty = m.next_value()?,
                26 => w.safety = m.next_value()?,
                27 => w.amount = m.next_value()?,
                28 => w.credit_limit = m.next_value()?,
                29 => w.points_redeemed = m.next_value()?,
                30 => w.duration_s = m.next_value()?,
                31 => w.region = m.next_value()?,
                _ => unreachable!("FIELDS and field_index agree"),
            }
        }
        Ok(())
    }
}

/// The fields each type uses, beyond the envelope (for lint).
fn fields_of(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::Scan => &[
            "code", "sku", "campaign", "member", "device", "ip", "geo", "store",
        ],
        EventKind::Click => &["member", "target", "campaign", "sku", "device"],
        EventKind::Order => &[
            "order",
            "status",
            "kind",
            "lines",
            "location",
            "store",
            "member",
            "dealer",
            "points_redeemed",
        ],
        EventKind::Visit => &["store", "visitor", "member", "rep", "duration_s", "geo"],
        EventKind::Stock => &["sku", "location", "op", "qty", "safety"],
        EventKind::Payment => &["dealer", "amount", "ref"],
        EventKind::Dealer => &["dealer", "credit_limit", "region"],
        EventKind::CodeBatch => &["batch", "prefix", "sku", "dealer"],
        EventKind::Identify => &["member"],
    }
}

#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug))]
struct WireGeo {
    lat: Option<f64>,
    lon: Option<f64>,
}

#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug))]
struct WireRegion {
    lat: Option<f64>,
    lon: Option<f64>,
    radius_km: Option<f64>,
}

#[derive(Default)]
#[cfg_attr(test, derive(Debug))]
struct WireLine<'a> {
    sku: S<'a>,
    qty: Option<i64>,
    unit_price: Option<i64>,
    /// A key a line does not have was seen (ignored, and warned of).
    unknown: bool,
}

/// A line's key: the index of one of [`LINE_FIELDS`], or None for another.
struct LineKey(Option<usize>);

impl<'de> Deserialize<'de> for LineKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl DeVisitor<'_> for V {
            type Value = LineKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("field identifier")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LineKey, E> {
                Ok(LineKey(LINE_FIELDS.iter().position(|f| *f == v)))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// As serde's derive with `#[serde(default)]` read a line (unknown keys ignored, a repeated
/// one `duplicate field`), noting an unknown key.
impl<'de: 'a, 'a> Deserialize<'de> for WireLine<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> DeVisitor<'de> for V<'a> {
            type Value = WireLine<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("struct WireLine")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<WireLine<'a>, A::Error> {
                let mut l = WireLine::default();
                let mut seen = 0u8;
                while let Some(LineKey(k)) = m.next_key::<LineKey>()? {
                    let Some(i) = k else {
                        l.unknown = true;
                        m.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    };
                    if seen & (1 << i) != 0 {
                        return Err(serde::de::Error::duplicate_field(LINE_FIELDS[i]));
                    }
                    seen |= 1 << i;
                    match i {
                        0 => l.sku = m.next_value::<OptCow>()?.0,
                        1 => l.qty = m.next_value()?,
                        _ => l.unit_price = m.next_value()?,
                    }
                }
                Ok(l)
            }
        }
        d.deserialize_struct("WireLine", &LINE_FIELDS, V(std::marker::PhantomData))
    }
}

/// Reads a string borrowing it from the input when it has no escapes. (serde's own `Cow<str>`
/// always copies, which cost more than the rest of decoding.)
struct CowStr;

impl<'de> DeVisitor<'de> for CowStr {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// An optional string field read with [`CowStr`]; `null` counts as absent.
fn opt_cow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct O;
    impl<'de> DeVisitor<'de> for O {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(CowStr).map(Some)
        }
    }
    d.deserialize_option(O)
}

/// Accepts a JSON object only: serde's derived structs would also take an array of values.
#[cfg_attr(test, derive(Debug))]
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> DeVisitor<'de> for V<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(MapOnly)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A map key or string value read with [`CowStr`].
struct KeyStr<'a>(Cow<'a, str>);
/// A map value read with [`CowStr`].
struct ValStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for KeyStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CowStr).map(KeyStr)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ValStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CowStr).map(ValStr)
    }
}

type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// `member` as sent: kind/value pairs in arrival order. Duplicated kinds are an error.
///
/// The first two pairs are kept inline (a member almost always has one or two identities):
/// a vector per event cost an allocation and a free on the hot path.
#[derive(Default)]
#[cfg_attr(test, derive(Debug))]
struct WireIds<'a> {
    len: usize,
    few: [Pair<'a>; 2],
    more: Vec<Pair<'a>>,
}

impl<'a> WireIds<'a> {
    fn push(&mut self, p: Pair<'a>) {
        if let Some(slot) = self.few.get_mut(self.len) {
            *slot = p;
        } else {
            self.more.push(p);
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = &Pair<'a>> {
        self.few[..self.len.min(2)].iter().chain(self.more.iter())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for WireIds<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> DeVisitor<'de> for V<'a> {
            type Value = WireIds<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of identity kind to string value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = WireIds::default();
                while let Some(KeyStr(k)) = m.next_key::<KeyStr<'a>>()? {
                    let ValStr(val) = m.next_value::<ValStr<'a>>()?;
                    if v.iter().any(|(x, _)| *x == k) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate field `member.{k}`"
                        )));
                    }
                    v.push((k, val));
                }
                Ok(v)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The id of an event too large to decode (or whose JSON breaks), when its first KiB holds
/// the top-level key
/// `"id": "<uuid>"` (where senders put it), so its rejection and dead letter can be matched
/// to what was sent. A scan of the bytes, not a parse: strings skipped past their escapes,
/// nesting counted, an `id` inside another object left alone.
fn id_near_start(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(1024)];
    let (mut depth, mut i) = (0usize, 0usize);
    while i < head.len() {
        match head[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while *head.get(end)? != b'"' {
                    end += if head[end] == b'\\' { 2 } else { 1 };
                }
                i = end;
                if depth == 1 && &head[start..end] == b"id" {
                    let rest = String::from_utf8_lossy(&head[end + 1..]);
                    let value = rest
                        .trim_start()
                        .strip_prefix(':')
                        .map(str::trim_start)
                        .and_then(|v| v.strip_prefix('"'))
                        .and_then(|v| v.split('"').next());
                    return value
                        .filter(|v| uuid::Uuid::parse_str(v).is_ok())
                        .map(str::to_string);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Decodes and validates events; holds the keyed hasher for personal data.
#[derive(Clone, Debug)]
pub struct Decoder {
    pii: Pii,
}

impl Decoder {
    /// A decoder that hashes personal identity values with this hasher.
    pub fn new(pii: Pii) -> Self {
        Decoder { pii }
    }

    /// Decodes one event from JSON bytes (one JSON object), validating it completely.
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        self.decode_noting(bytes).0
    }

    /// [`Decoder::decode`], also telling whether [`lint`] may have something to say of the
    /// event: it held a top-level field no event type reads (ignored by the contract's policy:
    /// often a misspelt one), or a channel or identity kind that is none of the contract's
    /// (kept as sent: `Douyin` is a channel apart). A live answer lints only those, so it
    /// warns without parsing every event twice.
    pub fn decode_noting(&self, bytes: &[u8]) -> (Result<Event, Rejection>, bool) {
        if bytes.len() > MAX_EVENT_BYTES {
            let mut r = Rejection::whole(
                Reason::TooLarge,
                format!("{} bytes, limit {}", bytes.len(), MAX_EVENT_BYTES),
            );
            r.id = id_near_start(bytes);
            return (Err(r), false);
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return (Err(self.diagnose(bytes, None)), false);
        };
        let mut w = Wire::default();
        let read = match fast::read(&mut w, text) {
            Some(()) => Ok(()),
            // serde decides: it gives the same errors, at the same places, as before
            None => {
                w = Wire::default();
                w.read(text)
            }
        };
        // a channel of the brand's own beyond the contract's (`xiaohongshu`) is no warning:
        // only one near a contract's name (`Douyin`) is
        let unknown = w.unknown
            || w.channel
                .as_deref()
                .is_some_and(|c| near_channel(c).is_some())
            || w.member.as_ref().is_some_and(|ids| {
                ids.iter()
                    .any(|(k, _)| !crate::IdKind::KNOWN.contains(&k.as_ref()))
            })
            || may_warn(&w)
            || misplaced(&w);
        let decoded = match read {
            Ok(()) => {
                let mut problems = Vec::new();
                match build(&mut w, &self.pii, &mut problems) {
                    Some(ev) if problems.is_empty() => Ok(ev),
                    // the id stays borrowed until here: owned only for a rejection
                    _ => Err(Rejection {
                        id: w.id.take().map(Cow::into_owned),
                        problems,
                        kind: w.ty.as_deref().and_then(EventKind::from_name),
                    }),
                }
            }
            Err(e) => Err(self.diagnose(bytes, Some(&e))),
        };
        (decoded, unknown)
    }

    /// The slow path: explains every problem of an event serde refused.
    fn diagnose(&self, bytes: &[u8], first: Option<&serde_json::Error>) -> Rejection {
        if let Err(e) = std::str::from_utf8(bytes) {
            return Rejection::whole(
                Reason::BadUtf8,
                format!("invalid utf-8 at byte {}", e.valid_up_to()),
            );
        }
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                // broken JSON: its id, when it starts as senders write it, still says which
                // event was refused
                let mut r = Rejection::whole(json_reason(&e), json_detail(&e));
                r.id = id_near_start(bytes);
                return r;
            }
        };
        let Value::Object(map) = value else {
            return Rejection::whole(Reason::NotAnObject, "an event is a json object");
        };
        let mut problems = Vec::new();
        // serde's own refusal may name a duplicated field, which the Value tree hides.
        let msg = first.map(ToString::to_string).unwrap_or_default();
        if let Some(rest) = msg.strip_prefix("duplicate field `") {
            let name = rest.split('`').next().unwrap_or_default();
            problems.push(Problem::new(
                Reason::DuplicateField,
                name,
                "the field appears more than once",
            ));
        }
        let mut w = wire_from_value(&map, &mut problems);
        let id = w.id.as_deref().map(str::to_string);
        let kind = w.ty.as_deref().and_then(EventKind::from_name);
        let _ = build(&mut w, &self.pii, &mut problems);
        if problems.is_empty() {
            // serde refused something the field-by-field pass accepted: report serde's reason
            problems.push(Problem::new(Reason::WrongType, "", msg));
        }
        Rejection { id, problems, kind }
    }
}

/// serde_json's message with its position said to be within the event's own text (a line
/// of JSON lines, an element of an array), not the body's: "at line 1 column 150" read as
/// the body's first line when the event was its second.
fn json_detail(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let (line, column) = (e.line(), e.column());
    let at = format!(" at line {line} column {column}");
    match msg.strip_suffix(&at) {
        Some(what) if line == 1 => format!("{what} at column {column} of the event's text"),
        Some(what) => format!("{what} at line {line}, column {column} of the event's text"),
        None => msg,
    }
}

fn json_reason(e: &serde_json::Error) -> Reason {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => Reason::Truncated,
        _ if e.to_string().contains("recursion limit") => Reason::TooDeep,
        Category::Syntax | Category::Io => Reason::BadJson,
        Category::Data => Reason::WrongType,
    }
}

// ---------- slow path: one field at a time ----------

fn take<T: DeserializeOwned>(v: Option<&Value>, path: &str, p: &mut Vec<Problem>) -> Option<T> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match T::deserialize(v) {
        Ok(t) => Some(t),
        Err(e) => {
            p.push(Problem::new(Reason::WrongType, path, e.to_string()));
            None
        }
    }
}

/// An integer field: numbers that are integers but do not fit 64 bits are `out_of_range`.
fn take_int(v: Option<&Value>, path: &str, p: &mut Vec<Problem>) -> Option<i64> {
    match v? {
        Value::Null => None,
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Some(i);
            }
            // a whole number written as a decimal (`5990.0`, `1e3`) fits but is no integer
            // in the contract's sense: said so, not taken for an overflow
            let f = n.as_f64().unwrap_or(f64::NAN);
            let whole = f.fract() == 0.0;
            let fits = (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f);
            let (reason, detail) = if n.is_u64() || (whole && !fits) {
                (
                    Reason::OutOfRange,
                    format!("a number beyond a 64-bit integer (read as {n})"),
                )
            } else if whole {
                (
                    Reason::WrongType,
                    format!(
                        "a whole number written with a fraction or an exponent (read as {n}): \
                         an integer has neither (send {})",
                        f as i64
                    ),
                )
            } else {
                (Reason::WrongType, format!("{n} is not an integer"))
            };
            p.push(Problem::new(reason, path, detail));
            None
        }
        other => {
            p.push(Problem::new(
                Reason::WrongType,
                path,
                format!("expected an integer, got {}", type_name(other)),
            ));
            None
        }
    }
}

fn take_str(m: &serde_json::Map<String, Value>, key: &str, p: &mut Vec<Problem>) -> S<'static> {
    take::<String>(m.get(key), key, p).map(Cow::Owned)
}

fn wire_from_value(m: &serde_json::Map<String, Value>, p: &mut Vec<Problem>) -> Wire<'static> {
    let member = match m.get("member") {
        None | Some(Value::Null) => None,
        Some(Value::Object(ids)) => {
            let mut v = WireIds::default();
            for (k, val) in ids {
                let path = format!("member.{k}");
                if let Some(s) = take::<String>(Some(val), &path, p) {
                    v.push((Cow::Owned(k.clone()), Cow::Owned(s)));
                }
            }
            Some(v)
        }
        Some(other) => {
            p.push(Problem::new(
                Reason::WrongType,
                "member",
                format!(
                    "expected an object of identity kind to value, got {}",
                    type_name(other)
                ),
            ));
            None
        }
    };
    let geo = object_at(m, "geo", p).map(|g| {
        MapOnly(WireGeo {
            lat: take(g.get("lat"), "geo.lat", p),
            lon: take(g.get("lon"), "geo.lon", p),
        })
    });
    let region = object_at(m, "region", p).map(|g| {
        MapOnly(WireRegion {
            lat: take(g.get("lat"), "region.lat", p),
            lon: take(g.get("lon"), "region.lon", p),
            radius_km: take(g.get("radius_km"), "region.radius_km", p),
        })
    });
    let lines = match m.get("lines") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(l) => MapOnly(WireLine {
                        sku: take::<String>(l.get("sku"), &format!("lines[{i}].sku"), p)
                            .map(Cow::Owned),
                        qty: take_int(l.get("qty"), &format!("lines[{i}].qty"), p),
                        unit_price: take_int(
                            l.get("unit_price"),
                            &format!("lines[{i}].unit_price"),
                            p,
                        ),
                        unknown: l.keys().any(|k| !LINE_FIELDS.contains(&k.as_str())),
                    }),
                    other => {
                        p.push(Problem::new(
                            Reason::WrongType,
                            format!("lines[{i}]"),
                            format!("expected a line object, got {}", type_name(other)),
                        ));
                        MapOnly(WireLine::default())
                    }
                })
                .collect(),
        ),
        Some(other) => {
            p.push(Problem::new(
                Reason::WrongType,
                "lines",
                format!("expected an array of lines, got {}", type_name(other)),
            ));
            None
        }
    };
    Wire {
        id: take_str(m, "id", p),
        ty: take_str(m, "type", p),
        ts: take_str(m, "ts", p),
        channel: take_str(m, "channel", p),
        code: take_str(m, "code", p),
        sku: take_str(m, "sku", p),
        campaign: take_str(m, "campaign", p),
        device: take_str(m, "device", p),
        ip: take_str(m, "ip", p),
        store: take_str(m, "store", p),
        target: take_str(m, "target", p),
        order: take_str(m, "order", p),
        status: take_str(m, "status", p),
        kind: take_str(m, "kind", p),
        location: take_str(m, "location", p),
        dealer: take_str(m, "dealer", p),
        visitor: take_str(m, "visitor", p),
        rep: take_str(m, "rep", p),
        op: take_str(m, "op", p),
        batch: take_str(m, "batch", p),
        prefix: take_str(m, "prefix", p),
        reference: take_str(m, "ref", p),
        member,
        geo,
        lines,
        qty: take_int(m.get("qty"), "qty", p),
        safety: take_int(m.get("safety"), "safety", p),
        amount: take_int(m.get("amount"), "amount", p),
        credit_limit: take_int(m.get("credit_limit"), "credit_limit", p),
        points_redeemed: take_int(m.get("points_redeemed"), "points_redeemed", p),
        duration_s: take_int(m.get("duration_s"), "duration_s", p),
        region,
        // only the diagnosis of a refused event builds a Wire from a map, and the caller
        // lints a refused event whole
        unknown: false,
        seen: 0,
    }
}

fn object_at<'v>(
    m: &'v serde_json::Map<String, Value>,
    key: &str,
    p: &mut Vec<Problem>,
) -> Option<&'v serde_json::Map<String, Value>> {
    match m.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(other) => {
            p.push(Problem::new(
                Reason::WrongType,
                key,
                format!("expected an object, got {}", type_name(other)),
            ));
            None
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------- the one validator ----------

/// Collects problems while turning wire fields into typed values.
struct Check<'p> {
    p: &'p mut Vec<Problem>,
    /// Reading the service's own log back: checks added since it was written are skipped,
    /// so it replays as it ran.
    stored: bool,
}

impl Check<'_> {
    fn push(&mut self, reason: Reason, path: &str, detail: impl Into<String>) {
        self.p.push(Problem::new(reason, path, detail));
    }

    /// Whether a problem was already recorded at this path (a wrong type found by the slow path).
    fn seen(&self, path: &str) -> bool {
        self.p.iter().any(|x| x.path == path)
    }

    /// Whether a problem was reported at `path` or within it (`member.phone` of `member`).
    fn seen_within(&self, path: &str) -> bool {
        self.p.iter().any(|x| {
            x.path
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }

    fn missing(&mut self, path: &str, why: &str) {
        if !self.seen(path) {
            self.push(Reason::MissingField, path, why.to_string());
        }
    }

    fn text(&mut self, path: &str, v: Option<&str>) -> Option<Str> {
        let v = v?;
        if v.is_empty() {
            self.push(Reason::EmptyString, path, "must not be empty");
            None
        } else if v.len() > MAX_STR {
            self.push(
                Reason::TooLong,
                path,
                format!("{} bytes, limit {}", v.len(), MAX_STR),
            );
            None
        } else if let Some(detail) = control_detail(
            v,
            ": values are compared exactly, so it would name another one than without it",
        )
        .filter(|_| !self.stored)
        {
            self.push(Reason::BadValue, path, detail);
            None
        } else {
            Some(Str::from(v))
        }
    }

    fn req_text(&mut self, path: &str, v: Option<&str>, why: &str) -> Option<Str> {
        if v.is_none() {
            self.missing(path, why);
        }
        self.text(path, v)
    }

    fn int_in(&mut self, path: &str, v: i64, min: i64, max: i64, below: Reason) -> Option<i64> {
        if v < min {
            let (reason, detail) = match (below, v) {
                (Reason::NegativeQty, 0) => {
                    (Reason::ZeroQty, "must be greater than zero".to_string())
                }
                // the code stays (a stable API): its detail says what is wrong with a zero
                (Reason::NegativeAmount, 0) => (
                    Reason::NegativeAmount,
                    "must be greater than zero".to_string(),
                ),
                (r, _) => (r, format!("{v} is below the minimum {min}")),
            };
            self.push(reason, path, detail);
            None
        } else if v > max {
            self.push(
                Reason::OutOfRange,
                path,
                format!("{v} is above the maximum {max}"),
            );
            None
        } else {
            Some(v)
        }
    }

    /// The `geo` field (its paths are constants: formatting them cost a tenth of a scan).
    fn geo(&mut self, g: Option<MapOnly<WireGeo>>) -> Option<Geo> {
        let MapOnly(g) = g?;
        let lat = self.coord("geo.lat", g.lat, 90.0);
        let lon = self.coord("geo.lon", g.lon, 180.0);
        Some(Geo {
            lat: lat?,
            lon: lon?,
        })
    }

    fn coord(&mut self, path: &str, v: Option<f64>, limit: f64) -> Option<f64> {
        match v {
            None => {
                self.missing(path, "a position needs lat and lon");
                None
            }
            Some(x) if x.is_finite() && x.abs() <= limit => Some(x),
            Some(x) => {
                self.push(Reason::BadGeo, path, format!("{x} is outside ±{limit}"));
                None
            }
        }
    }

    fn ids(
        &mut self,
        path: &str,
        ids: Option<WireIds>,
        pii: &Pii,
        min: usize,
    ) -> Option<Identities> {
        let Some(raw) = ids else {
            self.missing(path, "who it was is required");
            return None;
        };
        if raw.len() > MAX_IDENTITIES {
            self.push(
                Reason::OutOfRange,
                path,
                format!("{} identities, limit {}", raw.len(), MAX_IDENTITIES),
            );
            return None;
        }
        let mut out: Vec<(IdKind, Str)> = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (k, v) in raw.iter() {
            // the path is only built when there is a problem to report: this loop is hot
            let kpath = || format!("{path}.{k}");
            if k.is_empty() || k.len() > 32 {
                self.push(
                    Reason::BadValue,
                    &kpath(),
                    "identity kinds are 1 to 32 characters",
                );
                ok = false;
                continue;
            }
            if let Some(detail) =
                control_detail(k, " of the identity kind").filter(|_| !self.stored)
            {
                self.push(Reason::BadValue, &kpath(), detail);
                ok = false;
                continue;
            }
            if v.is_empty() || v.len() > MAX_STR || (control_char(v).is_some() && !self.stored) {
                self.text(&kpath(), Some(v));
                ok = false;
                continue;
            }
            let kind = IdKind::parse(k);
            match pii.protect(&kind, v) {
                Ok(h) => out.push((kind, h)),
                Err(PiiError::NotHashed) => {
                    self.push(
                        Reason::BadValue,
                        &kpath(),
                        "a stored personal value must be a keyed hash",
                    );
                    ok = false;
                }
                Err(PiiError::BadPhone(why)) => {
                    self.push(Reason::BadPhone, &kpath(), why);
                    ok = false;
                }
                Err(e @ PiiError::NotIssued(_)) => {
                    self.push(Reason::BadValue, &kpath(), e.to_string());
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        // (an identity of the wrong type was said at its own path: it was given)
        if out.len() < min && !self.seen_within(path) {
            let detail = if min == 1 {
                "at least one identity is required".to_string()
            } else {
                format!("at least {min} identities are required")
            };
            self.push(Reason::NoIdentity, path, detail);
            return None;
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Some(Identities(out))
    }

    fn choice<T>(
        &mut self,
        path: &str,
        v: Option<&str>,
        parse: impl Fn(&str) -> Option<T>,
        allowed: &str,
    ) -> Option<T> {
        let Some(s) = v else {
            self.missing(path, &format!("one of {allowed}"));
            return None;
        };
        let r = parse(s);
        if r.is_none() {
            self.push(
                Reason::BadValue,
                path,
                format!("`{s}` is not one of {allowed}"),
            );
        }
        r
    }
}

/// Validates a wire event into a typed one; pushes every problem found. Returns `None` when
/// the event cannot be built (problems say why); `Some` only if no problem was pushed here.
fn build(w: &mut Wire<'_>, pii: &Pii, problems: &mut Vec<Problem>) -> Option<Event> {
    let before = problems.len();
    let mut c = Check {
        p: problems,
        stored: pii.is_stored(),
    };
    let id = match w.id.as_deref() {
        None => {
            c.missing("id", "the idempotency key is required");
            None
        }
        Some(s) => match Uuid::try_parse(s) {
            Ok(u) => Some(u),
            Err(e) => {
                c.push(
                    Reason::BadUuid,
                    "id",
                    format!("`{}` is not a uuid: {e}", clip(s)),
                );
                None
            }
        },
    };
    let ts = match w.ts.as_deref() {
        None => {
            c.missing("ts", "event time is required");
            None
        }
        Some(s) => match EventTime::parse(s) {
            Ok(t) => Some(t),
            Err(e) => {
                c.push(Reason::BadTimestamp, "ts", format!("`{}`: {e}", clip(s)));
                None
            }
        },
    };
    let kind = match w.ty.as_deref() {
        None => {
            c.missing("type", "the event type is required");
            None
        }
        Some(s) => {
            let k = EventKind::from_name(s);
            if k.is_none() {
                c.push(
                    Reason::UnknownType,
                    "type",
                    format!("`{}` is not one of scan, click, order, visit, stock, payment, dealer, code_batch, identify", clip(s)),
                );
            }
            k
        }
    };
    let channel = match (w.channel.as_deref(), kind) {
        (None, Some(k)) if k.needs_channel() => {
            c.missing("channel", "required on scan, click, order and visit");
            None
        }
        (v, _) => c.text("channel", v).map(|s| Channel::parse(&s)),
    };
    let body = match kind {
        None => None,
        Some(EventKind::Scan) => {
            let code = c.req_text("code", w.code.as_deref(), "the scanned code is required");
            let sku = c.req_text("sku", w.sku.as_deref(), "the item's sku is required");
            let campaign = c.req_text(
                "campaign",
                w.campaign.as_deref(),
                "the campaign is required",
            );
            let member = c.ids("member", w.member.take(), pii, 1);
            let device = c.req_text(
                "device",
                w.device.as_deref(),
                "the device fingerprint is required",
            );
            let ip = match w.ip.as_deref() {
                None => {
                    c.missing("ip", "the client ip is required");
                    None
                }
                Some(s) => match plain_ipv4(s).map_or_else(|| s.parse::<IpAddr>(), Ok) {
                    // an IPv4 address written as IPv6 (`::ffff:198.51.100.9`) is that IPv4
                    // address: counted, and blocked, as one client (the service's own log
                    // replays as it ran: such an address logged before was counted as written)
                    Ok(ip) if c.stored => Some(ip),
                    Ok(ip) => Some(ip.to_canonical()),
                    Err(_) => {
                        c.push(
                            Reason::BadIp,
                            "ip",
                            format!("`{}` is not an ipv4 or ipv6 address", clip(s)),
                        );
                        None
                    }
                },
            };
            let geo = c.geo(w.geo.take());
            let store = c.text("store", w.store.as_deref());
            Some(Body::Scan(Scan {
                code: code?,
                sku: sku?,
                campaign: campaign?,
                member: member?,
                device: device?,
                ip: ip?,
                geo,
                store,
            }))
        }
        Some(EventKind::Click) => {
            let member = c.ids("member", w.member.take(), pii, 1);
            let target = c.req_text(
                "target",
                w.target.as_deref(),
                "the ad or content id is required",
            );
            let campaign = c.text("campaign", w.campaign.as_deref());
            let sku = c.text("sku", w.sku.as_deref());
            let device = c.text("device", w.device.as_deref());
            Some(Body::Click(Click {
                member: member?,
                target: target?,
                campaign,
                sku,
                device,
            }))
        }
        Some(EventKind::Order) => {
            let order = c.req_text("order", w.order.as_deref(), "the order id is required");
            let status = c.choice(
                "status",
                w.status.as_deref(),
                OrderStatus::parse,
                "placed, paid, cancelled, fulfilled, returned",
            );
            let okind = c.choice(
                "kind",
                w.kind.as_deref(),
                |s| match s {
                    "consumer" => Some(OrderKind::Consumer),
                    "dealer" => Some(OrderKind::Dealer),
                    _ => None,
                },
                "consumer, dealer",
            );
            let lines = match w.lines.take() {
                None => {
                    if status == Some(OrderStatus::Placed) {
                        c.missing("lines", "required when status is placed");
                    }
                    None
                }
                Some(ls) => {
                    if ls.is_empty() {
                        c.push(Reason::NoLines, "lines", "an order needs at least one line");
                        None
                    } else if ls.len() > MAX_LINES {
                        c.push(
                            Reason::TooManyLines,
                            "lines",
                            format!("{} lines, limit {}", ls.len(), MAX_LINES),
                        );
                        None
                    } else {
                        let mut out = Vec::with_capacity(ls.len());
                        let mut ok = true;
                        for (i, MapOnly(l)) in ls.into_iter().enumerate() {
                            let sku = c.req_text(
                                &format!("lines[{i}].sku"),
                                l.sku.as_deref(),
                                "each line needs a sku",
                            );
                            let qpath = format!("lines[{i}].qty");
                            let qty = match l.qty {
                                None => {
                                    c.missing(&qpath, "each line needs a quantity");
                                    None
                                }
                                Some(q) => c.int_in(&qpath, q, 1, MAX_QTY, Reason::NegativeQty),
                            };
                            let ppath = format!("lines[{i}].unit_price");
                            let price = match l.unit_price {
                                None => {
                                    c.missing(&ppath, "each line needs a unit price in fen");
                                    None
                                }
                                Some(v) => {
                                    c.int_in(&ppath, v, 0, MAX_AMOUNT, Reason::NegativeAmount)
                                }
                            };
                            match (sku, qty, price) {
                                // a line's value, not its price, has the bound: a pallet of
                                // appliances is dear by the unit and few by the count
                                (Some(_), Some(qty), Some(unit_price))
                                    if qty
                                        .checked_mul(unit_price)
                                        .is_none_or(|v| v > MAX_AMOUNT) =>
                                {
                                    c.push(
                                        Reason::OutOfRange,
                                        &format!("lines[{i}]"),
                                        format!(
                                            "qty {qty} × unit_price {unit_price} is above the maximum {MAX_AMOUNT} fen a line may be worth"
                                        ),
                                    );
                                    ok = false;
                                }
                                (Some(sku), Some(qty), Some(unit_price)) => out.push(Line {
                                    sku,
                                    qty,
                                    unit_price,
                                }),
                                _ => ok = false,
                            }
                        }
                        // and the order's: sums of orders (a dealer's held amounts, the
                        // totals of lists and gauges) then stay far inside i64
                        let total: i64 = out.iter().map(|l| l.qty * l.unit_price).sum();
                        if ok && total > MAX_AMOUNT {
                            c.push(
                                Reason::OutOfRange,
                                "lines",
                                format!(
                                    "the lines are worth {total} fen in all, above the maximum {MAX_AMOUNT} fen an order may be worth"
                                ),
                            );
                            ok = false;
                        }
                        ok.then_some(out)
                    }
                }
            };
            let location = match (w.location.as_deref(), status) {
                (None, Some(OrderStatus::Placed)) => {
                    c.missing(
                        "location",
                        "required when status is placed: whose stock serves it",
                    );
                    None
                }
                (v, _) => c.text("location", v),
            };
            let store = c.text("store", w.store.as_deref());
            let member = match (okind, w.member.take()) {
                // every status of a consumer order names its member (a POS sending only the
                // order id on a status change is told so, not just that it is missing)
                (Some(OrderKind::Consumer), None) => {
                    c.missing(
                        "member",
                        "required when kind is consumer, on every status, not only on `placed`",
                    );
                    None
                }
                (Some(OrderKind::Consumer), m) => c.ids("member", m, pii, 1).map(Some),
                (_, None) => Some(None),
                (_, m) => c.ids("member", m, pii, 1).map(Some),
            };
            let dealer = match (okind, w.dealer.as_deref()) {
                (Some(OrderKind::Dealer), v) => c
                    .req_text("dealer", v, "required when kind is dealer")
                    .map(Some),
                (_, v) => Some(c.text("dealer", v)),
            };
            let points_redeemed = match (w.points_redeemed, okind) {
                (None, _) => Some(None),
                // points are a member's: a dealer's order has none to spend (it was taken and
                // kept on the order, spending nothing; the log keeps those it took then)
                (Some(v), Some(OrderKind::Dealer)) if v > 0 && !pii.is_stored() => {
                    c.push(
                        Reason::BadValue,
                        "points_redeemed",
                        "only a consumer order redeems points; a dealer order has no member",
                    );
                    None
                }
                (Some(v), _) => c
                    .int_in("points_redeemed", v, 0, MAX_AMOUNT, Reason::NegativeAmount)
                    .map(Some),
            };
            // a dealer order has lines in a dealer's terms; a consumer order needs its member
            Some(Body::Order(Order {
                order: order?,
                status: status?,
                kind: okind?,
                lines: match (lines, c.seen("lines")) {
                    (Some(l), _) => Some(l),
                    (None, false) => None,
                    (None, true) => return None,
                },
                location,
                store,
                member: member?,
                dealer: dealer?,
                points_redeemed: points_redeemed?,
            }))
        }
        Some(EventKind::Visit) => {
            let store = c.req_text("store", w.store.as_deref(), "the store visited is required");
            let visitor = c.choice(
                "visitor",
                w.visitor.as_deref(),
                |s| match s {
                    "member" => Some(Visitor::Member),
                    "rep" => Some(Visitor::Rep),
                    _ => None,
                },
                "member, rep",
            );
            let member = match (visitor, w.member.take()) {
                (Some(Visitor::Member), m) => c.ids("member", m, pii, 1).map(Some),
                (_, None) => Some(None),
                (_, m) => c.ids("member", m, pii, 1).map(Some),
            };
            let rep = match (visitor, w.rep.as_deref()) {
                (Some(Visitor::Rep), v) => c
                    .req_text("rep", v, "required when the visitor is a rep")
                    .map(Some),
                (_, v) => Some(c.text("rep", v)),
            };
            let duration_s = match w.duration_s {
                None => Some(None),
                Some(v) => c
                    .int_in("duration_s", v, 0, 30 * 86_400, Reason::OutOfRange)
                    .map(Some),
            };
            let geo = c.geo(w.geo.take());
            Some(Body::Visit(Visit {
                store: store?,
                visitor: visitor?,
                member: member?,
                rep: rep?,
                duration_s: duration_s?,
                geo,
            }))
        }
        Some(EventKind::Stock) => {
            let sku = c.req_text("sku", w.sku.as_deref(), "the sku is required");
            let location = c.req_text(
                "location",
                w.location.as_deref(),
                "the location is required",
            );
            let op = c.choice(
                "op",
                w.op.as_deref(),
                |s| match s {
                    "receive" => Some(StockOp::Receive),
                    "adjust" => Some(StockOp::Adjust),
                    "set" => Some(StockOp::Set),
                    _ => None,
                },
                "receive, adjust, set",
            );
            let qty = match (w.qty, op) {
                (None, _) => {
                    c.missing("qty", "the quantity is required");
                    None
                }
                (Some(q), Some(StockOp::Receive)) => {
                    c.int_in("qty", q, 1, MAX_QTY, Reason::NegativeQty)
                }
                (Some(q), Some(StockOp::Set)) => {
                    c.int_in("qty", q, 0, MAX_QTY, Reason::NegativeQty)
                }
                (Some(q), _) => c.int_in("qty", q, -MAX_QTY, MAX_QTY, Reason::OutOfRange),
            };
            let safety = match w.safety {
                None => Some(None),
                Some(v) => c
                    .int_in("safety", v, 0, MAX_QTY, Reason::NegativeQty)
                    .map(Some),
            };
            Some(Body::Stock(StockChange {
                sku: sku?,
                location: location?,
                op: op?,
                qty: qty?,
                safety: safety?,
            }))
        }
        Some(EventKind::Payment) => {
            let dealer = c.req_text(
                "dealer",
                w.dealer.as_deref(),
                "the paying dealer is required",
            );
            let amount = match w.amount {
                None => {
                    c.missing("amount", "the amount in fen is required");
                    None
                }
                Some(v) => c.int_in("amount", v, 1, MAX_AMOUNT, Reason::NegativeAmount),
            };
            let reference = c.req_text(
                "ref",
                w.reference.as_deref(),
                "the payment reference is required",
            );
            Some(Body::Payment(Payment {
                dealer: dealer?,
                amount: amount?,
                reference: reference?,
            }))
        }
        Some(EventKind::Dealer) => {
            let dealer = c.req_text("dealer", w.dealer.as_deref(), "the dealer id is required");
            let credit_limit = match w.credit_limit {
                None => {
                    c.missing("credit_limit", "the credit limit in fen is required");
                    None
                }
                Some(v) => c.int_in("credit_limit", v, 0, MAX_AMOUNT, Reason::NegativeAmount),
            };
            let region = match w.region.take() {
                None => Some(None),
                Some(MapOnly(r)) => {
                    let lat = c.coord("region.lat", r.lat, 90.0);
                    let lon = c.coord("region.lon", r.lon, 180.0);
                    let radius = match r.radius_km {
                        None => {
                            c.missing("region.radius_km", "a region needs a radius");
                            None
                        }
                        Some(x) if x.is_finite() && x > 0.0 && x <= 20_016.0 => Some(x),
                        Some(x) => {
                            c.push(
                                Reason::OutOfRange,
                                "region.radius_km",
                                format!("{x} is not in (0, 20016] km"),
                            );
                            None
                        }
                    };
                    match (lat, lon, radius) {
                        (Some(lat), Some(lon), Some(radius_km)) => Some(Some(Region {
                            lat,
                            lon,
                            radius_km,
                        })),
                        _ => None,
                    }
                }
            };
            Some(Body::Dealer(DealerInfo {
                dealer: dealer?,
                credit_limit: credit_limit?,
                region: region?,
            }))
        }
        Some(EventKind::CodeBatch) => {
            let batch = c.req_text("batch", w.batch.as_deref(), "the batch id is required");
            let prefix = c.req_text("prefix", w.prefix.as_deref(), "the code prefix is required");
            let sku = c.req_text("sku", w.sku.as_deref(), "the sku is required");
            let dealer = c.req_text(
                "dealer",
                w.dealer.as_deref(),
                "the dealer shipped to is required",
            );
            Some(Body::CodeBatch(CodeBatch {
                batch: batch?,
                prefix: prefix?,
                sku: sku?,
                dealer: dealer?,
            }))
        }
        Some(EventKind::Identify) => {
            let member = c.ids("member", w.member.take(), pii, 2);
            Some(Body::Identify(Identify { member: member? }))
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(Event {
        id: id?,
        ts: ts?,
        channel,
        body: body?,
    })
}

/// The usual client address, four decimal octets, read without the standard parser's
/// generality (which cost 3% of a scan). `None` for anything else, which `IpAddr`'s own parser
/// then reads: whatever this accepts, that parser accepts as the same address.
fn plain_ipv4(s: &str) -> Option<IpAddr> {
    let b = s.as_bytes();
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, slot) in octets.iter_mut().enumerate() {
        if n > 0 {
            if *b.get(i)? != b'.' {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u16 = 0;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            if i - start == 3 {
                return None;
            }
            v = v * 10 + u16::from(c - b'0');
            i += 1;
        }
        // one to three digits, no leading zero (the standard parser refuses those)
        if i == start || (i - start > 1 && b[start] == b'0') {
            return None;
        }
        *slot = u8::try_from(v).ok()?;
    }
    (i == b.len()).then_some(IpAddr::V4(octets.into()))
}

/// Whether [`lint`] may warn of a decoded event beyond its field names, channel and identity
/// kinds: a POS order placed without `store`, a visit carrying the other visitor's field, an
/// id with white space at an end, a visit's implausible duration. Cheap: no parse again.
fn may_warn(w: &Wire) -> bool {
    let is = |s: &S, v: &str| s.as_deref() == Some(v);
    let padded = |s: &S| s.as_deref().is_some_and(|v| v.trim() != v);
    // (a field sent as null reads as absent here, and lint says nothing of it either)
    (is(&w.ty, "order") && is(&w.channel, "store") && is(&w.status, "placed") && w.store.is_none())
        || (is(&w.ty, "visit")
            && ((is(&w.visitor, "member") && w.rep.is_some())
                || (is(&w.visitor, "rep") && w.member.is_some())
                || w.duration_s.is_some_and(|d| !plausible_visit(d))))
        || [
            &w.store,
            &w.sku,
            &w.location,
            &w.dealer,
            &w.rep,
            &w.campaign,
            &w.order,
            &w.code,
            &w.batch,
            &w.prefix,
        ]
        .into_iter()
        .any(padded)
        || (w.lines.iter().flatten()).any(|l| l.0.unknown || padded(&l.0.sku))
        || w.id.as_deref().is_some_and(nil_id)
        || w.member.as_ref().is_some_and(|ids| {
            ids.iter().any(|(k, v)| {
                if k.as_ref() == "phone" {
                    near_mobile(v) || !phone_length(v)
                } else {
                    v.trim() != v.as_ref()
                }
            })
        })
}

/// `unlikely_phone` at `path` when phone `v` has too few or too many digits for a phone
/// number, or reads as a mainland mobile a digit short or long: kept as sent, it is another
/// person than the number meant.
pub fn unlikely_phone(path: &str, v: &str) -> Option<String> {
    if !phone_length(v) {
        let n = v.bytes().filter(u8::is_ascii_digit).count();
        return Some(format!(
            "unlikely_phone at {path}: {n} digits, where a phone number has 7 to 15; kept as \
             sent, another person than the number meant"
        ));
    }
    near_mobile(v).then(|| {
        format!(
            "unlikely_phone at {path}: a mainland mobile number (starting with 1) has 11 \
             digits, this one a digit fewer or more; kept as sent, another person than the \
             number meant"
        )
    })
}

/// Whether a phone has as many digits as a phone number can (7 to 15: E.164's longest,
/// the country code included).
fn phone_length(raw: &str) -> bool {
    (7..=15).contains(&raw.bytes().filter(u8::is_ascii_digit).count())
}

/// Whether a phone reads as a mainland mobile with a digit too few or too many: 10 or 12
/// digits starting with 1, no other country's code before them (11 is a mobile's length).
fn near_mobile(raw: &str) -> bool {
    let raw = raw.trim_start();
    // (no allocation: the live answer's noting runs it on every phone)
    let code = if raw.starts_with("+86") {
        2
    } else if raw.starts_with("0086") {
        4
    } else if raw.starts_with('+') {
        return false; // another country's number
    } else {
        0
    };
    let mut national = raw.bytes().filter(u8::is_ascii_digit).skip(code);
    let first = national.next();
    let n = 1 + national.count();
    first == Some(b'1') && (n == 10 || n == 12)
}

/// Whether `id` is the nil UUID (in any of the forms the decoder reads).
fn nil_id(id: &str) -> bool {
    // (32 zeros at least: cheap, and true of every form of the nil id, braced or urn: too)
    id.bytes().filter(|b| *b == b'0').count() >= 32 && Uuid::parse_str(id).is_ok_and(|u| u.is_nil())
}

/// Whether the event carries a field the contract names for another type only (`order` on a
/// click), which [`lint`] warns of as not used by its type.
fn misplaced(w: &Wire) -> bool {
    static MASKS: std::sync::OnceLock<Vec<(EventKind, u64)>> = std::sync::OnceLock::new();
    let Some(kind) = w.ty.as_deref().and_then(EventKind::from_name) else {
        return false;
    };
    let masks = MASKS.get_or_init(|| {
        (EventKind::ALL.iter())
            .map(|&k| {
                let own = ["id", "type", "ts", "channel"].iter().chain(fields_of(k));
                let mask = own
                    .filter_map(|f| field_index(f))
                    .fold(0u64, |m, i| m | 1 << i);
                (k, mask)
            })
            .collect()
    });
    masks
        .iter()
        .find(|(k, _)| *k == kind)
        .is_some_and(|(_, mask)| w.seen & !mask != 0)
}

/// The keys of an order line.
const LINE_FIELDS: [&str; 3] = ["sku", "qty", "unit_price"];

/// `padded_id` at `path` when `v` has white space at an end (but no control character, which
/// is refused, not warned of): kept as sent, it is another `what` than without.
fn padded(path: &str, v: &str, what: &str) -> Option<String> {
    (v.trim() != v && control_char(v).is_none()).then(|| {
        format!(
            "padded_id at {path}: `{}` has white space at an end; kept as sent, it is another \
             {what} than `{}`",
            clip(v),
            clip(v.trim())
        )
    })
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Warnings about a JSON event that do not reject it: fields the contract does not name
/// (ignored by policy), with a suggestion where one looks like a typo of a known field.
/// An event over [`MAX_EVENT_BYTES`] gets none: it is refused as too large, unread. Names and
/// values are quoted clipped to 64 bytes.
pub fn lint(bytes: &[u8]) -> Vec<String> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Vec::new();
    }
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(bytes) else {
        return Vec::new();
    };
    let kind = m
        .get("type")
        .and_then(Value::as_str)
        .and_then(EventKind::from_name);
    let mut out = Vec::new();
    for key in m.keys() {
        if matches!(key.as_str(), "id" | "type" | "ts" | "channel") {
            continue;
        }
        let used = match kind {
            Some(k) => fields_of(k).contains(&key.as_str()),
            None => FIELDS.contains(&key.as_str()),
        };
        if used {
            continue;
        }
        let candidates: Vec<&str> = match kind {
            Some(k) => ["id", "type", "ts", "channel"]
                .iter()
                .chain(fields_of(k))
                .copied()
                .collect(),
            None => FIELDS.to_vec(),
        };
        let hint = candidates
            .into_iter()
            .filter(|f| near(f, key))
            .min_by_key(|f| edit_distance(f, key));
        let type_name = kind.map(EventKind::name).unwrap_or("this event");
        let key = clip(key);
        out.push(match hint {
            Some(h) => format!("unknown_field at {key}: ignored; did you mean `{h}`?"),
            None => format!("unknown_field at {key}: not used by {type_name}, ignored"),
        });
    }
    // a visit reads the field of its visitor only: the other is dropped without a word
    if kind == Some(EventKind::Visit) {
        let visitor = m.get("visitor").and_then(Value::as_str);
        for (when, field) in [("member", "rep"), ("rep", "member")] {
            if visitor == Some(when) && m.get(field).is_some_and(|v| !v.is_null()) {
                out.push(format!(
                    "ignored_field at {field}: a visit with `visitor`: `{when}` does not read \
                     `{field}`; is the visitor a {field}?"
                ));
            }
        }
    }
    // a POS order's `placed` without `store` counts for no store's KPIs (the location is the
    // stock's, not the store's)
    if kind == Some(EventKind::Order)
        && m.get("channel").and_then(Value::as_str) == Some("store")
        && m.get("status").and_then(Value::as_str) == Some("placed")
        && !m.contains_key("store")
    {
        out.push(
            "no_store at store: a `store` channel order placed without `store` counts for no \
             store's KPIs (`location` is where its stock is taken)"
                .to_string(),
        );
    }
    // ids are exact: a space at either end makes another store, SKU, location or dealer
    for field in [
        "store", "sku", "location", "dealer", "rep", "campaign", "order", "code", "batch", "prefix",
    ] {
        if let Some(v) = m.get(field).and_then(Value::as_str) {
            out.extend(padded(field, v, field));
        }
    }
    // the all-zero id is what an id never set looks like: every later event sent with it,
    // whatever it is, is a duplicate of this one
    if m.get("id").and_then(Value::as_str).is_some_and(nil_id) {
        out.push(
            "nil_id at id: the all-zero UUID is what an id never set looks like; taken, but \
             every later event sent with it is answered duplicate and not applied"
                .to_string(),
        );
    }
    // an order's lines: a key a line does not have (a discount, a name) is not read, and a
    // line's SKU is exact as the event's
    if let Some(Value::Array(lines)) = m.get("lines") {
        for (i, l) in lines.iter().enumerate() {
            let Value::Object(l) = l else { continue };
            for key in l.keys().filter(|k| !LINE_FIELDS.contains(&k.as_str())) {
                let hint = near_known(key, &LINE_FIELDS, &[]);
                let key = clip(key);
                out.push(match hint {
                    Some(h) => {
                        format!("unknown_field at lines[{i}].{key}: ignored; did you mean `{h}`?")
                    }
                    None => format!(
                        "unknown_field at lines[{i}].{key}: a line has only sku, qty and \
                         unit_price; ignored (a discount belongs in unit_price)"
                    ),
                });
            }
            if let Some(v) = l.get("sku").and_then(Value::as_str) {
                out.extend(padded(&format!("lines[{i}].sku"), v, "sku"));
            }
        }
    }
    // an identity's value is exact too (but a phone's, which is read as its digits): a
    // space at an end is another person; so is a mobile number with a digit missing
    if let Some(Value::Object(ids)) = m.get("member") {
        for (kind, v) in ids {
            if let Some(v) = v.as_str() {
                if kind == "phone" {
                    out.extend(unlikely_phone("member.phone", v));
                }
                if kind != "phone" {
                    let path = format!("member.{}", clip(kind));
                    out.extend(padded(&path, v, "identity (another member)"));
                }
            }
        }
    }
    // a visit's time counts only when plausible (the visit counts either way)
    if kind == Some(EventKind::Visit) {
        match m.get("duration_s").and_then(Value::as_i64) {
            Some(0) => out.push(
                "implausible_duration at duration_s: 0 seconds; the visit counts, as a visit \
                 without a duration (its time is not in the store's or rep's averages)"
                    .to_string(),
            ),
            Some(d) if d > MAX_VISIT_S => out.push(format!(
                "implausible_duration at duration_s: {d} s is over {MAX_VISIT_S} s (12 hours); \
                 the visit counts, its time does not (a door counter that missed the exit?)"
            )),
            _ => {}
        }
    }
    // open lists: another channel or identity kind is kept as sent, so a near miss of one
    // of the contract's (`Tmall`, `Phone`, `mobile`) is a second channel or another person
    if let Some(c) = m.get("channel").and_then(Value::as_str) {
        if let Some(h) = near_known(c, &crate::Channel::KNOWN, &[]) {
            out.push(format!(
                "unknown_channel at channel: `{c}` is none of the contract's channels; did you \
                 mean `{h}`? kept as sent, a channel apart from `{h}`"
            ));
        }
    }
    if let Some(Value::Object(ids)) = m.get("member") {
        const SYNONYMS: &[(&str, &str)] = &[
            ("mobile", "phone"),
            ("tel", "phone"),
            ("telephone", "phone"),
            ("cellphone", "phone"),
            ("open_id", "openid"),
            ("union_id", "unionid"),
            ("memberid", "member_id"),
        ];
        for kind in ids.keys() {
            if let Some(h) = near_known(kind, &crate::IdKind::KNOWN, SYNONYMS) {
                out.push(format!(
                    "unknown_kind at member.{kind}: `{kind}` is none of the contract's identity \
                     kinds; did you mean `{h}`? kept as sent, an identity apart from `{h}` (its \
                     member is another unless a `{h}` joins them)"
                ));
            }
        }
    }
    out
}

/// The contract's channel a channel name not among them likely means (`Tmall`, `tmal`):
/// None for one of them, or for one too far from any.
pub fn near_channel(s: &str) -> Option<&'static str> {
    near_known(s, &crate::Channel::KNOWN, &[])
}

/// The known name `s` likely means, when it is not one itself: the same but for case, a
/// synonym, or one edit from it (two for names longer than four characters).
fn near_known(
    s: &str,
    known: &[&'static str],
    synonyms: &[(&str, &'static str)],
) -> Option<&'static str> {
    if known.contains(&s) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    known
        .iter()
        .find(|k| **k == lower)
        .copied()
        .or_else(|| synonyms.iter().find(|(w, _)| *w == lower).map(|(_, k)| *k))
        .or_else(|| {
            known
                .iter()
                .filter(|k| near(k, &lower))
                .min_by_key(|k| edit_distance(k, &lower))
                .copied()
        })
}

/// Whether `a` is likely a typo of `b`: two edits apart is a typo of a long name, and
/// another word for a short one (`qty` is not `ts`), so one edit for four characters or fewer.
fn near(a: &str, b: &str) -> bool {
    // an edit distance is at least the difference in characters, and a character is at most
    // 4 bytes: names whose lengths differ by more than 8 bytes are never within 2 (and a
    // key of 60 KB is not compared cell by cell with every field's name)
    if a.len().abs_diff(b.len()) > 8 {
        return false;
    }
    edit_distance(a, b) <= if a.len().min(b.len()) <= 4 { 1 } else { 2 }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A consumer order's status change without `member` is refused saying every status
    /// names it (a POS sending only the order id on a status change).
    #[test]
    fn a_consumer_status_without_its_member_says_every_status_names_it() {
        let d = Decoder::new(crate::Pii::new(b"k"));
        let paid = r#"{"id":"00000000-0000-7000-8000-000000000001","type":"order","ts":"2026-11-11T10:00:00+08:00","channel":"store","order":"P1","status":"paid","kind":"consumer"}"#;
        let refused = d.decode(paid.as_bytes()).unwrap_err();
        let text = format!("{refused:?}");
        assert!(
            text.contains("on every status, not only on `placed`"),
            "{text}"
        );
    }

    /// What lint may warn of is noted while decoding, by the fast reader and by serde's
    /// alike (a nested unknown field sends an event to serde), and nothing else is.
    #[test]
    fn decoding_notes_what_lint_may_warn_of() {
        let d = Decoder::new(crate::Pii::new(b"k"));
        let click = |extra: &str| {
            format!(
                r#"{{"id":"00000000-0000-7000-8000-000000000001","type":"click","ts":"2026-11-11T10:00:00+08:00","channel":"mall","member":{{"openid":"o1"}},"target":"ad1"{extra}}}"#
            )
        };
        let noted = |text: &str| d.decode_noting(text.as_bytes()).1;
        assert!(!noted(&click("")));
        assert!(noted(&click(r#","tagret":"x""#)));
        assert!(noted(&click(
            r#","deep":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]"#
        )));
        assert!(noted(&click("").replace(r#""mall""#, r#""Mall""#)));
        // a field of another type (an order's, on a click) is noted, as lint warns of it
        assert!(noted(&click(r#","order":"x""#)));
        assert!(lint(click(r#","order":"x""#).as_bytes())
            .iter()
            .any(|w| w.starts_with("unknown_field at order:")));
        assert!(noted(&click("").replace(r#""openid""#, r#""open_id""#)));
        assert!(d.decode_noting(click("").as_bytes()).0.is_ok());
        // a brand's own channel is not a near miss of the contract's: nothing to lint
        assert!(!noted(&click("").replace(r#""mall""#, r#""xiaohongshu""#)));
        // what lint says of decoded fields is noted too: a POS order placed without its store,
        // a visit's other visitor's field or implausible duration, an id padded with a space
        let visit = |extra: &str| {
            format!(
                r#"{{"id":"00000000-0000-7000-8000-000000000002","type":"visit","ts":"2026-11-11T10:00:00+08:00","channel":"store","store":"st-1","visitor":"member","member":{{"openid":"o1"}}{extra}}}"#
            )
        };
        assert!(!noted(&visit(r#","duration_s":600"#)));
        for odd in [
            r#","duration_s":0"#,
            r#","duration_s":864000"#,
            r#","rep":"r1""#,
        ] {
            assert!(noted(&visit(odd)), "{odd}");
            assert!(!lint(visit(odd).as_bytes()).is_empty(), "{odd}");
        }
        assert!(noted(&visit("").replace(r#""st-1""#, r#""st-1 ""#)));
        assert!(noted(&visit("").replace(r#""o1""#, r#""o1 ""#)));
        let phone = |p: &str| visit("").replace(r#""openid":"o1""#, &format!(r#""phone":"{p}""#));
        assert!(noted(&phone("1391234567")));
        assert!(!noted(&phone("13912345678")));
        let pos = r#"{"id":"00000000-0000-7000-8000-000000000003","type":"order","ts":"2026-11-11T10:00:00+08:00","channel":"store","order":"o1","status":"placed","kind":"consumer","member":{"openid":"o1"},"lines":[{"sku":"S1","qty":1,"unit_price":100}],"location":"st-1"}"#;
        assert!(d.decode_noting(pos.as_bytes()).0.is_ok());
        assert!(noted(pos));
        let stored = pos.replace(r#""location""#, r#""store":"st-1","location""#);
        assert!(!noted(&stored));
        // an order id, a line's SKU padded with a space, a key a line does not have, the nil id
        for (from, to, said) in [
            (
                "00000000-0000-7000-8000-000000000003",
                "00000000-0000-0000-0000-000000000000",
                "nil_id at id:",
            ),
            (
                r#""o1","status""#,
                r#""o1 ","status""#,
                "padded_id at order:",
            ),
            (
                r#""sku":"S1""#,
                r#""sku":"S1 ""#,
                "padded_id at lines[0].sku:",
            ),
            (
                r#""unit_price":100}"#,
                r#""unit_price":100,"discount":10}"#,
                "unknown_field at lines[0].discount:",
            ),
            (
                r#""unit_price":100}"#,
                r#""unit_prise":100}"#,
                "did you mean `unit_price`",
            ),
        ] {
            let odd = stored.replace(from, to);
            assert!(noted(&odd), "{odd}");
            let w = lint(odd.as_bytes());
            assert!(w.iter().any(|s| s.contains(said)), "{said}: {w:?}");
            // serde's reading (an escape elsewhere sends the event to it) notes it too
            let slow = odd.replace(r#""consumer""#, r#""consum\u0065r""#);
            let (read, noted) = d.decode_noting(slow.as_bytes());
            // (a line without its unit_price is refused)
            assert!(noted && (read.is_ok() || said.contains("mean")), "{slow}");
        }
        // a long unknown key is near no field's name (none is compared with it cell by cell)
        // and is quoted clipped; a line over the event limit is refused unread, and linted not
        // at all
        let long = "k".repeat(60_000);
        assert!(!near("location", &long) && near("location", "lcoation"));
        let w = lint(click(&format!(r#","{long}":1"#)).as_bytes());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].len() < 200, "{}", w[0]);
        let huge = "k".repeat(MAX_EVENT_BYTES);
        assert!(lint(click(&format!(r#","{huge}":1"#)).as_bytes()).is_empty());
    }

    /// An IPv4 address written as IPv6 is read as the IPv4 address: one client, one address
    /// to count and to block, however the channel writes it.
    #[test]
    fn an_ipv4_address_written_as_ipv6_reads_as_ipv4() {
        let d = Decoder::new(crate::Pii::new(b"k"));
        let scan = |ip: &str| {
            let text = format!(
                r#"{{"id":"00000000-0000-7000-8000-000000000001","type":"scan","ts":"2026-11-11T10:00:00+08:00","channel":"campaign","code":"C1","sku":"S1","campaign":"c1","member":{{"openid":"o1"}},"device":"d1","ip":"{ip}"}}"#
            );
            match d.decode(text.as_bytes()).map(|e| e.body) {
                Ok(crate::Body::Scan(s)) => s.ip.to_string(),
                other => format!("{other:?}"),
            }
        };
        assert_eq!(scan("::ffff:198.51.100.9"), "198.51.100.9");
        assert_eq!(scan("198.51.100.9"), "198.51.100.9");
        assert_eq!(scan("2408:8207::1"), "2408:8207::1");
    }

    #[test]
    fn plain_ipv4_reads_what_the_standard_parser_reads() {
        for s in [
            "112.65.3.18",
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4",
            "10.0.0.1",
        ] {
            assert_eq!(plain_ipv4(s), s.parse::<IpAddr>().ok(), "{s}");
            assert!(plain_ipv4(s).is_some(), "{s}");
        }
        for s in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1..3.4",
            "1.2.3.4.",
            ".1.2.3",
            "1.2.3.-4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.1000",
            "::1",
            "1.2.3.a",
        ] {
            assert_eq!(plain_ipv4(s), None, "{s}");
        }
    }

    proptest! {
        /// Whatever the short reader accepts, the standard parser accepts as the same address.
        #[test]
        fn plain_ipv4_agrees_with_the_standard_parser(s in "[0-9.]{0,17}|(0|[1-9][0-9]{0,2})(\\.(0|[0-9]{1,4})){3}") {
            if let Some(ip) = plain_ipv4(&s) {
                prop_assert_eq!(Some(ip), s.parse::<IpAddr>().ok());
            } else {
                prop_assert!(s.parse::<std::net::Ipv4Addr>().is_err(), "{} refused", s);
            }
        }
    }
}

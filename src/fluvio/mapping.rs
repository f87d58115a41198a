//! The pure mapping between omnistream and topics: which topic an event goes to, its record
//! key, which partition a key lands in, and the topic and key of every output. No I/O.
//!
//! Record values are the event's JSON line exactly as received; the key is the entity key that
//! owns the event's first command (the router's [`Key`], displayed as `kind/value`), so every
//! event about one entity lands in one partition and keeps its order.

use crate::config::FluvioTopics;
use omnistream_actors::engine::Emitted;
use omnistream_actors::{Key, Output};
use omnistream_schemas::{Body, Event};

/// The input streams, one topic each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `scan` events.
    Scans,
    /// `click` events.
    Clicks,
    /// `order` events.
    Orders,
    /// `visit` events.
    Visits,
    /// Reference events: `stock`, `payment`, `dealer`, `code_batch`, `identify`, and
    /// anything whose type cannot be read (the service dead-letters it).
    Ops,
}

impl Stream {
    /// Every input stream.
    pub const ALL: [Stream; 5] = [
        Stream::Scans,
        Stream::Clicks,
        Stream::Orders,
        Stream::Visits,
        Stream::Ops,
    ];

    /// The stream an event type (the `type` field) belongs to.
    pub fn of_type(event_type: &str) -> Stream {
        match event_type {
            "scan" => Stream::Scans,
            "click" => Stream::Clicks,
            "order" => Stream::Orders,
            "visit" => Stream::Visits,
            _ => Stream::Ops,
        }
    }

    /// The configured topic name of this stream.
    pub fn topic(self, t: &FluvioTopics) -> &str {
        match self {
            Stream::Scans => &t.scans,
            Stream::Clicks => &t.clicks,
            Stream::Orders => &t.orders,
            Stream::Visits => &t.visits,
            Stream::Ops => &t.ops,
        }
    }
}

/// The entity key that owns an event's first command, as `kind/value`: the member's first
/// identity for scans, clicks, member visits and identifies (`identity/openid/…`, values of
/// personal kinds already hashed), `order/channel:order` for orders, `sku/…` for stock,
/// `dealer/…` for payments and dealer info, `store/…` for rep visits, `code_batch/…` for code
/// batches (reference data, owned by no entity).
pub fn event_key(ev: &Event) -> String {
    if let Some((key, _)) = omnistream_actors::router::route(ev).into_iter().next() {
        return key.to_string();
    }
    match &ev.body {
        Body::CodeBatch(b) => format!("code_batch/{}", b.batch),
        Body::Visit(v) => Key::Store(v.store.clone()).to_string(),
        // the decoder guarantees an identity or a member id, so routing found a key above
        _ => format!("event/{}", ev.id),
    }
}

/// The key of a line that does not decode: its id when readable, else empty (any partition
/// of the ops topic will do: it only produces a dead letter).
pub fn raw_key(line: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| {
            v.get("id")
                .and_then(|i| i.as_str())
                .map(|s| format!("event/{s}"))
        })
        .unwrap_or_default()
}

/// The stream of a raw line, by its `type` field (unreadable lines go to `ops`).
pub fn raw_stream(line: &[u8]) -> Stream {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(Stream::of_type))
        .unwrap_or(Stream::Ops)
}

/// A stable 64-bit FNV-1a hash: the same on every machine, build and run (unlike std's
/// randomly seeded hasher), so every process agrees on who owns a key.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The partition of a key: `stable_hash(key) % partitions`. This is the one function that
/// decides ownership: records are produced to this partition, and a process owns a key when it
/// owns the key's partition (partitions 0 when there are none).
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    // the remainder is below `partitions`, a u32, so it fits
    u32::try_from(stable_hash(key.as_bytes()) % u64::from(partitions)).unwrap_or(0)
}

/// The output sinks, one topic each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sink {
    /// Scan decisions and review resolutions, keyed by member.
    Decisions,
    /// Ledger entries, pending points, points debt, keyed by member.
    Points,
    /// Member changes (tags, tiers, merges, caps), keyed by member; budget exhaustion keyed
    /// by campaign.
    Members,
    /// Order results, keyed by order.
    OrderUpdates,
    /// Stock levels and stock alerts, keyed by SKU.
    Stock,
    /// Dealer credit, keyed by dealer.
    Credit,
    /// Diversions (keyed by dealer) and flagged rings (keyed by ring).
    Alerts,
    /// Rejected input, keyed by event id when readable.
    DeadLetter,
}

impl Sink {
    /// Every sink.
    pub const ALL: [Sink; 8] = [
        Sink::Decisions,
        Sink::Points,
        Sink::Members,
        Sink::OrderUpdates,
        Sink::Stock,
        Sink::Credit,
        Sink::Alerts,
        Sink::DeadLetter,
    ];

    /// The configured topic name of this sink.
    pub fn topic(self, t: &FluvioTopics) -> &str {
        match self {
            Sink::Decisions => &t.decisions,
            Sink::Points => &t.points,
            Sink::Members => &t.members,
            Sink::OrderUpdates => &t.order_updates,
            Sink::Stock => &t.stock,
            Sink::Credit => &t.credit,
            Sink::Alerts => &t.alerts,
            Sink::DeadLetter => &t.dead_letter,
        }
    }
}

/// The sink and record key of one output: keyed by the entity it is about, so a consumer of a
/// sink topic sees each entity's changes in order.
pub fn output_route(o: &Output) -> (Sink, Key) {
    match o {
        Output::Ledger { member, .. }
        | Output::Pending { member, .. }
        | Output::PointsDebt { member, .. }
        | Output::PointsAdjusted { member, .. } => (Sink::Points, Key::Member(member.clone())),
        Output::Tag { member, .. }
        | Output::Tier { member, .. }
        | Output::MergeConflict { member, .. }
        | Output::UnknownMember { member, .. }
        | Output::PhoneReplaced { member, .. }
        | Output::MergeApproved { member, .. }
        | Output::RewardCapped { member, .. } => (Sink::Members, Key::Member(member.clone())),
        Output::Merged { survivor, .. } => (Sink::Members, Key::Member(survivor.clone())),
        Output::BudgetExhausted { campaign } => (Sink::Members, Key::Campaign(campaign.clone())),
        Output::OrderAccepted { order, .. }
        | Output::OrderRejected { order, .. }
        | Output::OrderHeld { order, .. }
        | Output::OrderReleased { order, .. }
        | Output::OrderStatus { order, .. }
        | Output::OrderIgnored { order, .. }
        | Output::OrderDeferred { order, .. } => (Sink::OrderUpdates, Key::Order(order.clone())),
        Output::Stock { sku, .. }
        | Output::LowStock { sku, .. }
        | Output::StockOut { sku, .. }
        | Output::StockShort { sku, .. }
        | Output::StockCountIgnored { sku, .. }
        | Output::StockMoveIgnored { sku, .. } => (Sink::Stock, Key::Sku(sku.clone())),
        Output::Credit { dealer, .. }
        | Output::PaymentIgnored { dealer, .. }
        | Output::DealerIgnored { dealer, .. } => (Sink::Credit, Key::Dealer(dealer.clone())),
        Output::Decision { member, .. } | Output::ReviewResolved { member, .. } => {
            (Sink::Decisions, Key::Member(member.clone()))
        }
        Output::BlockSet { on, value, .. } | Output::BlockLifted { on, value, .. } => {
            (Sink::Decisions, on.key(value))
        }
        Output::Diversion { dealer, .. } => (Sink::Alerts, Key::Dealer(dealer.clone())),
        Output::RingFlagged { ring, .. } => (Sink::Alerts, Key::Ring(ring.clone())),
    }
}

/// The sink and key of one stored output row (an [`Emitted`] or a dead letter, as JSON);
/// `None` when the row is neither (it is then counted and skipped by the caller).
pub fn stored_output_route(row: &[u8]) -> Option<(Sink, String)> {
    let v: serde_json::Value = serde_json::from_slice(row).ok()?;
    if v.get("output").and_then(|o| o.as_str()) == Some("dead_letter") {
        let key = v
            .get("id")
            .and_then(|i| i.as_str())
            .map(|i| format!("event/{i}"))
            .unwrap_or_default();
        return Some((Sink::DeadLetter, key));
    }
    let e: Emitted = serde_json::from_value(v).ok()?;
    let (sink, key) = output_route(&e.output);
    Some((sink, key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistream_schemas::{Decoder, Pii};

    fn decode(line: &str) -> Event {
        Decoder::new(Pii::new(b"test-key"))
            .decode(line.as_bytes())
            .unwrap()
    }

    const SCAN: &str = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03.120+08:00","channel":"campaign","code":"HZ8K2M9Q4T7W","sku":"SKU-COLA-500","campaign":"cny-2027","member":{"openid":"o6_bmjrPTlm6"},"device":"d-7f3a91","ip":"112.65.3.18"}"#;

    #[test]
    fn event_keys_are_the_owner_of_the_first_command() {
        let k = event_key(&decode(SCAN));
        assert!(k.starts_with("identity/openid/"), "{k}");
        let order = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e12","type":"order","ts":"2026-11-11T20:15:03+08:00","channel":"tmall","order":"T-1","status":"placed","kind":"dealer","dealer":"D-9","location":"WH-1","lines":[{"sku":"S1","qty":1,"unit_price":100}]}"#;
        assert_eq!(event_key(&decode(order)), "order/tmall:T-1");
        let stock = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e13","type":"stock","ts":"2026-11-11T20:15:03+08:00","sku":"S1","location":"WH-1","op":"receive","qty":5}"#;
        assert_eq!(event_key(&decode(stock)), "sku/S1");
        let pay = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e14","type":"payment","ts":"2026-11-11T20:15:03+08:00","dealer":"D-9","amount":5,"ref":"r1"}"#;
        assert_eq!(event_key(&decode(pay)), "dealer/D-9");
        let batch = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e15","type":"code_batch","ts":"2026-11-11T20:15:03+08:00","batch":"B7","prefix":"HZ","sku":"S1","dealer":"D-9"}"#;
        assert_eq!(event_key(&decode(batch)), "code_batch/B7");
        let visit = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e16","type":"visit","ts":"2026-11-11T20:15:03+08:00","channel":"sfa","store":"ST-3","visitor":"rep","rep":"R1"}"#;
        assert_eq!(event_key(&decode(visit)), "store/ST-3");
    }

    #[test]
    fn a_phone_never_appears_in_a_key() {
        let line = SCAN.replace(r#"{"openid":"o6_bmjrPTlm6"}"#, r#"{"phone":"13800138000"}"#);
        let k = event_key(&decode(&line));
        assert!(k.starts_with("identity/phone/"), "{k}");
        assert!(!k.contains("13800138000"), "{k}");
    }

    #[test]
    fn streams_by_type_and_unreadable_lines_go_to_ops() {
        let t = FluvioTopics::default();
        assert_eq!(raw_stream(SCAN.as_bytes()).topic(&t), "scans");
        assert_eq!(Stream::of_type("click").topic(&t), "clicks");
        assert_eq!(Stream::of_type("order").topic(&t), "orders");
        assert_eq!(Stream::of_type("visit").topic(&t), "visits");
        assert_eq!(Stream::of_type("stock").topic(&t), "ops");
        assert_eq!(raw_stream(b"not json").topic(&t), "ops");
        assert_eq!(
            raw_key(SCAN.as_bytes()),
            "event/0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11"
        );
        assert_eq!(raw_key(b"{"), "");
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // pinned values: a change of the hash would move every key to another owner
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(partition_of("sku/S1", 1), 0);
        assert_eq!(partition_of("anything", 0), 0);
        let p = partition_of("dealer/D-9", 6);
        for _ in 0..3 {
            assert_eq!(partition_of("dealer/D-9", 6), p);
        }
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[partition_of(&format!("sku/S{i}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 60), "{seen:?}");
    }

    #[test]
    fn outputs_go_to_their_sink_keyed_by_entity() {
        let t = FluvioTopics::default();
        let credit: Output = serde_json::from_str(
            r#"{"output":"credit","dealer":"D-9","limit":1,"exposure":0,"available":1,"held":0}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (s, k) = output_route(&credit);
        assert_eq!(
            (s.topic(&t), k.to_string().as_str()),
            ("credit", "dealer/D-9")
        );
        let (s, k) = output_route(&Output::StockOut {
            sku: "S1".into(),
            location: "W".into(),
        });
        assert_eq!((s.topic(&t), k.to_string().as_str()), ("stock", "sku/S1"));
        let (s, k) = output_route(&Output::RingFlagged {
            ring: "m1".into(),
            size: 5,
        });
        assert_eq!((s.topic(&t), k.to_string().as_str()), ("alerts", "ring/m1"));
        let dead = br#"{"output":"dead_letter","source":"http","id":"x1","reasons":[],"raw":"{"}"#;
        assert_eq!(
            stored_output_route(dead),
            Some((Sink::DeadLetter, "event/x1".to_string()))
        );
        assert_eq!(stored_output_route(b"[]"), None);
        // a stock output stored by a build before `cause` and `order` still goes out
        let old = br#"{"event":"00000000-0000-7000-8000-000000000003","at":"2026-11-11T09:00:00.000+08:00","output":"stock","sku":"S1","location":"wh","on_hand":100,"reserved":2,"safety":0,"atp":98}"#;
        assert_eq!(
            stored_output_route(old),
            Some((Sink::Stock, "sku/S1".to_string()))
        );
        let names: std::collections::HashSet<&str> =
            Sink::ALL.iter().map(|s| s.topic(&t)).collect();
        assert_eq!(names.len(), Sink::ALL.len(), "every sink has its own topic");
    }
}

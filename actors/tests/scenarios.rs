//! Whole scenarios through the deterministic engine: events in (as channels send them, through
//! the real decoder), states and outputs checked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use omnistream_actors::engine::{Applied, Emitted, Engine, State};
use omnistream_actors::inorder::Spread;
use omnistream_actors::order::Phase;
use omnistream_actors::output::StockCause;
use omnistream_actors::sharded::Sharded;
use omnistream_actors::{Output, Rules};
use omnistream_schemas::{Decoder, Event, Pii};

const KEY: &[u8] = b"test-key";

struct World {
    engine: Engine,
    out: Vec<Emitted>,
    n: u32,
    decoder: Decoder,
}

impl World {
    fn new(rules: Rules) -> Self {
        World::keyed(rules, KEY)
    }

    /// A world whose personal data is hashed with `key` (member ids, and so which of two
    /// merging members survives, follow from it).
    fn keyed(rules: Rules, key: &[u8]) -> Self {
        World {
            engine: Engine::new(rules),
            out: Vec::new(),
            n: 0,
            decoder: Decoder::new(Pii::new(key)),
        }
    }

    /// Sends one event given as JSON without `id` (a fresh one is added).
    fn send(&mut self, json: &str) -> Applied {
        self.n += 1;
        let with_id = format!(
            "{{\"id\":\"00000000-0000-7000-8000-{:012}\",{}",
            self.n,
            &json[1..]
        );
        self.send_raw(&with_id)
    }

    fn send_raw(&mut self, json: &str) -> Applied {
        let ev: Event = self
            .decoder
            .decode(json.as_bytes())
            .unwrap_or_else(|r| panic!("{r}: {json}"));
        self.engine.apply(&ev, &mut self.out)
    }

    /// Sends one event (as [`World::send`]) and answers what it emitted.
    fn said(&mut self, json: &str) -> Vec<Output> {
        let before = self.out.len();
        self.send(json);
        self.out[before..]
            .iter()
            .map(|e| e.output.clone())
            .collect()
    }

    /// A person's command to member `who` (as the service's admin routes send it, at one
    /// fixed service time, under command id `n` of kind `kind`): what it emitted.
    fn persons(
        &mut self,
        who: &str,
        cmd: omnistream_actors::MemberCmd,
        kind: u64,
        n: u64,
    ) -> Vec<Output> {
        use omnistream_actors::{Cmd, Key};
        self.persons_to(Key::Member(who.into()), Cmd::Member(cmd), kind, n)
    }

    /// A person's command `cmd` to the entity of `key` (as [`World::persons`]).
    fn persons_to(
        &mut self,
        key: omnistream_actors::Key,
        cmd: omnistream_actors::Cmd,
        kind: u64,
        n: u64,
    ) -> Vec<Output> {
        let before = self.out.len();
        // T1
        let at = omnistream_schemas::EventTime::from_unix_ms(1_794_366_000_000);
        let id = uuid::Uuid::from_u64_pair(kind, n);
        self.engine.command(key, cmd, id, at, &mut self.out);
        self.out[before..]
            .iter()
            .map(|e| e.output.clone())
            .collect()
    }

    fn outputs(&self) -> Vec<&Output> {
        self.out.iter().map(|e| &e.output).collect()
    }

    fn member_by(
        &self,
        kind: &str,
        value: &str,
    ) -> std::borrow::Cow<'_, omnistream_actors::member::Member> {
        let v = if kind == "phone" || kind == "card" {
            Pii::new(KEY)
                .protect(&omnistream_schemas::IdKind::parse(kind), value)
                .unwrap()
        } else {
            value.into()
        };
        self.engine
            .member_of(kind, &v)
            .unwrap_or_else(|| panic!("no member for {kind}"))
    }

    fn ledger_sum(&self, member: &str) -> i64 {
        self.out
            .iter()
            .filter_map(|e| match &e.output {
                Output::Ledger {
                    member: m, delta, ..
                } if m == member => Some(*delta),
                _ => None,
            })
            .sum()
    }
}

fn stock(sku: &str, qty: i64, ts: &str) -> String {
    format!(
        r#"{{"type":"stock","ts":"{ts}","sku":"{sku}","location":"wh","op":"receive","qty":{qty}}}"#
    )
}

fn order(id: &str, status: &str, member: &str, extra: &str, ts: &str) -> String {
    format!(
        r#"{{"type":"order","ts":"{ts}","channel":"mall","order":"{id}","status":"{status}","kind":"consumer","member":{member}{extra}}}"#
    )
}

const T0: &str = "2026-11-11T10:00:00+08:00";
const T1: &str = "2026-11-11T11:00:00+08:00";
const T2: &str = "2026-11-12T11:00:00+08:00";
const T3: &str = "2026-11-13T11:00:00+08:00";

/// An order naming two members' identities (an openid with 500 points, a phone with 10)
/// redeems from the person's 510, whichever of the two survives the merge it causes: it ran
/// at the survivor before the other's points arrived, so it was refused, and had it
/// redeemed less, it would have passed under one personal-data key and not another.
#[test]
fn an_order_that_merges_two_members_redeems_from_both_sides_points() {
    let mut survivors = std::collections::BTreeSet::new();
    for key in ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10"] {
        let mut w = World::keyed(Rules::default(), key.as_bytes());
        w.send(&stock("S1", 100, T0));
        let line = |fen: u32| {
            format!(r#","lines":[{{"sku":"S1","qty":1,"unit_price":{fen}}}],"location":"wh""#)
        };
        let rich = r#"{"openid":"traveller"}"#;
        let phone = r#"{"phone":"13800138000"}"#;
        w.send(&order("o1", "placed", rich, &line(50_000), T0));
        w.send(&order("o1", "fulfilled", rich, "", T0));
        w.send(&order("o2", "placed", phone, &line(1_000), T0));
        w.send(&order("o2", "fulfilled", phone, "", T0));
        let rich_id = w.member_by("openid", "traveller").id.clone();
        let both = r#"{"openid":"traveller","phone":"13800138000"}"#;
        let redeem = format!(r#"{},"points_redeemed":505"#, line(100));
        let said = w.said(&order("o3", "placed", both, &redeem, T1));
        // the checkout's answer says what was taken and what is left
        assert!(
            said.iter().any(|o| matches!(
                o,
                Output::OrderAccepted {
                    points_redeemed: Some(505),
                    balance: Some(5),
                    ..
                }
            )),
            "key {key}: {said:?}"
        );
        let m = w.member_by("openid", "traveller").clone();
        assert_eq!(m.points.balance, 5, "key {key}");
        assert_eq!(w.ledger_sum(&m.id), 5, "key {key}");
        survivors.insert(m.id == rich_id);
    }
    assert_eq!(survivors.len(), 2, "both members survive under some key");
}

/// A `paid` sent again under a new id changes nothing and says so, as a second `fulfilled`
/// does.
#[test]
fn a_second_paid_is_said_ignored() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    let lines = r#","lines":[{"sku":"S1","qty":1,"unit_price":100}],"location":"wh""#;
    w.send(&order("o7", "placed", r#"{"openid":"oz"}"#, lines, T1));
    w.send(&order("o7", "paid", r#"{"openid":"oz"}"#, "", T1));
    let said = w.said(&order("o7", "paid", r#"{"openid":"oz"}"#, "", T2));
    assert!(
        matches!(&said[..], [Output::OrderIgnored { status, reason, .. }] if status == "paid" && reason == "already paid"),
        "{said:?}"
    );
}

/// An order refused for stock is placed again under the same order id once stock came:
/// a placement anew (it was `already placed`, though the refused order held nothing).
#[test]
fn an_order_refused_for_stock_is_placed_again_when_stock_comes() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 1, T0));
    let lines = r#","lines":[{"sku":"S1","qty":2,"unit_price":100}],"location":"wh""#;
    w.send(&order("n1", "placed", r#"{"openid":"on"}"#, lines, T1));
    assert!(w.outputs().iter().any(
        |o| matches!(o, Output::OrderRejected { reason, .. } if reason == "insufficient_stock")
    ));
    w.send(&stock("S1", 5, T1));
    let said = w.said(&order("n1", "placed", r#"{"openid":"on"}"#, lines, T2));
    assert!(
        said.iter().any(
            |o| matches!(o, Output::OrderAccepted { order, amount: 200, .. } if order == "mall:n1")
        ),
        "{said:?}"
    );
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 4);
    let o = w.engine.order("mall:n1").unwrap();
    assert!(o.rejection.is_none() && o.refused.is_none());
    // accepted now: a further `placed` is a repeat again
    let said = w.said(&order("n1", "placed", r#"{"openid":"on"}"#, lines, T2));
    assert!(matches!(
        &said[..],
        [Output::OrderIgnored { reason, .. }] if reason == "already placed"
    ));
}

/// Status events naming only some of the order's lines: a `cancelled` of some lines is
/// refused (cancelling it all would free the stock of goods still to ship), a `fulfilled`
/// of some ships it whole and says so; the lines in full (or none) act on the whole order.
#[test]
fn statuses_naming_some_lines_say_what_they_did() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    w.send(&stock("S2", 10, T0));
    let lines = r#","lines":[{"sku":"S1","qty":2,"unit_price":100},{"sku":"S2","qty":3,"unit_price":100}],"location":"wh""#;
    let one = r#","lines":[{"sku":"S2","qty":3,"unit_price":100}]"#;
    w.send(&order("p1", "placed", r#"{"openid":"op"}"#, lines, T1));
    let said = w.said(&order("p1", "cancelled", r#"{"openid":"op"}"#, one, T1));
    assert!(
        matches!(&said[..], [Output::OrderIgnored { status, reason, .. }] if status == "cancelled" && reason.starts_with("cancelling some lines is not supported")),
        "{said:?}"
    );
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 8, "still reserved");
    let view = || w.engine.order("mall:p1").unwrap().view("mall:p1", None);
    let v = view();
    assert_eq!((v.reserved.len(), v.shipped.len()), (2, 0), "{v:?}");
    // a fulfilment of one line ships the order whole, saying so
    let said = w.said(&order("p1", "fulfilled", r#"{"openid":"op"}"#, one, T2));
    let detail = said.iter().find_map(|o| match o {
        Output::OrderStatus { status, detail, .. } if status == "fulfilled" => Some(detail.clone()),
        _ => None,
    });
    assert!(
        detail
            .flatten()
            .is_some_and(|d| d.starts_with("fulfilled whole")),
        "{said:?}"
    );
    assert_eq!(
        w.engine.sku("S1").unwrap().view().locations["wh"].on_hand,
        8
    );
    assert_eq!(
        w.engine.sku("S2").unwrap().view().locations["wh"].on_hand,
        7
    );
    // shipped: its SKUs hold no units for it any more
    let v = w.engine.order("mall:p1").unwrap().view("mall:p1", None);
    assert_eq!((v.reserved.len(), v.shipped.len()), (0, 2), "{v:?}");
    // the lines in full cancel (and fulfil) as no lines do, with no detail
    w.send(&order("p2", "placed", r#"{"openid":"op"}"#, lines, T2));
    w.send(&order("p2", "cancelled", r#"{"openid":"op"}"#, lines, T2));
    assert!(w.outputs().iter().any(
        |o| matches!(o, Output::OrderStatus { order, status, .. } if order == "mall:p2" && status == "cancelled")
    ));
    w.send(&order("p3", "placed", r#"{"openid":"op"}"#, lines, T2));
    let said = w.said(&order("p3", "fulfilled", r#"{"openid":"op"}"#, lines, T3));
    assert!(said.iter().any(|o| matches!(
        o,
        Output::OrderStatus { status, detail: None, .. } if status == "fulfilled"
    )));
}

/// Double points on Double 11 (the order's own local date, in the channels named): an
/// order placed late on the 11th in Shanghai earns double, one the next morning does not.
#[test]
fn a_promotion_multiplies_the_points_of_orders_placed_on_its_days() {
    let rules: Rules = toml::from_str(
        "[[points.promotions]]\nname = \"double 11\"\nfrom = \"2026-11-11\"\nto = \"2026-11-11\"\nmultiplier = 2.0\nchannels = [\"mall\"]\n",
    )
    .unwrap();
    let mut w = World::new(rules);
    w.send(&stock("S1", 10, T0));
    let line = r#","lines":[{"sku":"S1","qty":1,"unit_price":10000}],"location":"wh""#;
    let who = r#"{"openid":"oa"}"#;
    w.send(&order(
        "late",
        "placed",
        who,
        line,
        "2026-11-11T23:30:00+08:00",
    ));
    assert_eq!(w.member_by("openid", "oa").points.pending, 200);
    w.send(&order(
        "next",
        "placed",
        who,
        line,
        "2026-11-12T08:00:00+08:00",
    ));
    assert_eq!(w.member_by("openid", "oa").points.pending, 300);
}

#[test]
fn a_consumer_order_through_fulfilment_and_a_partial_return() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    w.send(&stock("S2", 5, T0));
    let lines = r#","lines":[{"sku":"S1","qty":2,"unit_price":10000},{"sku":"S2","qty":1,"unit_price":5000}],"location":"wh""#;
    w.send(&order("o1", "placed", r#"{"openid":"oa"}"#, lines, T1));
    assert!(w.outputs().iter().any(
        |o| matches!(o, Output::OrderAccepted { order, amount: 25000, .. } if order == "mall:o1")
    ));
    let m = w.member_by("openid", "oa").clone();
    assert_eq!(m.points.pending, 250, "1 point per yuan");
    assert_eq!(m.points.balance, 0);
    let s1 = w.engine.sku("S1").unwrap().view();
    assert_eq!(s1.atp, 8);

    w.send(&order("o1", "fulfilled", r#"{"openid":"oa"}"#, "", T2));
    let m = w.member_by("openid", "oa").clone();
    assert_eq!((m.points.balance, m.points.pending), (250, 0));
    assert_eq!(
        w.engine.sku("S1").unwrap().view().atp,
        8,
        "commit keeps ATP"
    );

    // one of the two S1 units comes back: ¥100 of ¥250 → 100 points reversed (rounded up)
    w.send(&order(
        "o1",
        "returned",
        r#"{"openid":"oa"}"#,
        r#","lines":[{"sku":"S1","qty":1,"unit_price":10000}]"#,
        T3,
    ));
    let m = w.member_by("openid", "oa").clone();
    assert_eq!(m.points.balance, 150);
    assert_eq!(w.ledger_sum(&m.id), 150);
    assert_eq!(
        w.engine.sku("S1").unwrap().view().atp,
        9,
        "returned unit back on hand"
    );
    // returning more than was bought reverses no more than the rest; this time at a store,
    // whose stock takes the goods back (the warehouse's stays as it was)
    w.send(&order(
        "o1",
        "returned",
        r#"{"openid":"oa"}"#,
        r#","location":"st-9""#,
        "2026-11-14T11:00:00+08:00",
    ));
    let m = w.member_by("openid", "oa").clone();
    assert_eq!(m.points.balance, 0);
    let s1 = w.engine.sku("S1").unwrap().view();
    let at = |l: &str| s1.locations.get(l).map(|x| x.on_hand);
    assert_eq!((at("wh"), at("st-9")), (Some(9), Some(1)), "{s1:?}");
    assert_eq!(s1.atp, 10);
    assert_eq!(w.engine.sku("S2").unwrap().view().atp, 5);
}

#[test]
fn the_last_unit_goes_to_exactly_one_order_and_the_other_is_released_whole() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 1, T0));
    w.send(&stock("S2", 10, T0));
    let l = r#","lines":[{"sku":"S2","qty":1,"unit_price":100},{"sku":"S1","qty":1,"unit_price":100}],"location":"wh""#;
    w.send(&order("a", "placed", r#"{"openid":"oa"}"#, l, T1));
    w.send(&order("b", "placed", r#"{"openid":"ob"}"#, l, T1));
    let accepted = w
        .outputs()
        .iter()
        .filter(|o| matches!(o, Output::OrderAccepted { .. }))
        .count();
    let rejected: Vec<_> = w
        .outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::OrderRejected { order, reason, .. } => Some((order.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, 1);
    assert_eq!(
        rejected,
        vec![("mall:b".into(), "insufficient_stock".into())]
    );
    assert_eq!(w.engine.sku("S2").unwrap().view().atp, 9);
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 0);
    // the losing order asked both SKUs first and reserved neither: no stock output names it
    // (its S2 line was reserved and released, two outputs channels acted on)
    let b_moves = w
        .outputs()
        .into_iter()
        .filter(|o| matches!(o, Output::Stock { order: Some(o), .. } if o == "mall:b"))
        .count();
    assert_eq!(b_moves, 0);
    assert_eq!(w.engine.order("mall:b").unwrap().phase, Phase::Rejected);
}

/// When another order takes the units between an order's check and its reservation (two
/// orders in one epoch on two shards: both checks pass before either reserves), the
/// reservation refuses and the line it reserved is released, as before the check.
#[test]
fn a_unit_taken_between_check_and_reservation_still_releases_the_other_lines() {
    let decoder = Decoder::new(Pii::new(KEY));
    let ev = |n: u32, json: &str| {
        let with_id = format!(
            "{{\"id\":\"00000000-0000-7000-8000-{n:012}\",{}",
            &json[1..]
        );
        decoder.decode(with_id.as_bytes()).unwrap()
    };
    let mut s = Sharded::new(Rules::default(), 2);
    let mut out = Vec::new();
    s.apply_epoch(&[ev(1, &stock("S1", 1, T0))], &mut out);
    s.apply_epoch(&[ev(2, &stock("S2", 10, T0))], &mut out);
    let l = r#","lines":[{"sku":"S2","qty":1,"unit_price":100},{"sku":"S1","qty":1,"unit_price":100}],"location":"wh""#;
    let both = [
        ev(3, &order("a", "placed", r#"{"openid":"oa"}"#, l, T1)),
        ev(4, &order("b", "placed", r#"{"openid":"ob"}"#, l, T1)),
    ];
    s.apply_epoch(&both, &mut out);
    let phases: Vec<_> = ["mall:a", "mall:b"]
        .iter()
        .map(|k| s.order(k).unwrap().phase)
        .collect();
    assert!(
        phases.contains(&Phase::Accepted) && phases.contains(&Phase::Rejected),
        "{phases:?}"
    );
    // the race happened: the loser reserved S2 and released it
    let released = out
        .iter()
        .filter(|e| {
            matches!(&e.output, Output::Stock { sku, cause: Some(StockCause::Release), .. } if sku == "S2")
        })
        .count();
    assert_eq!(released, 1);
    let s2 = s.sku("S2").unwrap().view();
    assert_eq!((s2.atp, s2.open_orders), (9, 1));
    assert_eq!(s.sku("S1").unwrap().view().atp, 0);
}

/// An order for a location where its SKU never had stock (a typo, stock not loaded) is
/// refused as `not_stocked`, saying so, not as a stock-out; short of stock where the SKU is
/// stocked stays `insufficient_stock`.
#[test]
fn an_order_where_its_sku_was_never_stocked_says_so() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 1, T0));
    let at = |loc: &str, qty: u32| {
        format!(r#","lines":[{{"sku":"S1","qty":{qty},"unit_price":100}}],"location":"{loc}""#)
    };
    w.send(&order(
        "a",
        "placed",
        r#"{"openid":"oa"}"#,
        &at("hw", 1),
        T1,
    ));
    w.send(&order(
        "b",
        "placed",
        r#"{"openid":"ob"}"#,
        &at("wh", 2),
        T1,
    ));
    let rejected: Vec<_> = w
        .outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::OrderRejected {
                order,
                reason,
                detail,
                ..
            } => Some((order.to_string(), reason.to_string(), detail.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(
        (rejected[0].0.as_str(), rejected[0].1.as_str()),
        ("mall:a", "not_stocked")
    );
    assert!(
        rejected[0].2.contains("S1 never had stock at hw"),
        "{rejected:?}"
    );
    assert_eq!(rejected[1].1, "insufficient_stock", "{rejected:?}");
    let view = |k: &str| w.engine.order(k).unwrap().view(k, None);
    assert!(view("mall:a").refused.unwrap().never_stocked);
    assert!(!view("mall:b").refused.unwrap().never_stocked);
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 1);
}

#[test]
fn two_lines_of_one_sku_count_together() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 3, T0));
    let l = r#","lines":[{"sku":"S1","qty":2,"unit_price":100},{"sku":"S1","qty":2,"unit_price":100}],"location":"wh""#;
    w.send(&order("a", "placed", r#"{"openid":"oa"}"#, l, T1));
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::OrderRejected { .. })));
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 3);
}

#[test]
fn redeeming_more_than_the_balance_rejects_the_order_before_any_stock_is_reserved() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    let l = r#","lines":[{"sku":"S1","qty":1,"unit_price":10000}],"location":"wh","points_redeemed":500"#;
    w.send(&order("a", "placed", r#"{"openid":"oa"}"#, l, T1));
    let reasons: Vec<_> = w
        .outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::OrderRejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec!["insufficient_points"]);
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 10);
    // the channels following stock saw no reservation come and go
    assert!(!w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::Stock { order: Some(o), .. } if o == "mall:a")));
    let m = w.member_by("openid", "oa");
    assert_eq!(m.points.balance, 0);
}

/// With `redeem-fen-per-point` set, points worth more than the order are refused before the
/// points or the stock are asked; worth no more, the order goes on as before.
#[test]
fn points_worth_more_than_the_order_refuse_it_when_a_point_has_a_value() {
    let mut rules = Rules::default();
    rules.points.redeem_fen_per_point = 1;
    let who = r#"{"openid":"ov"}"#;
    let mut w = World::new(rules);
    w.send(&stock("S1", 10, T0));
    buy(&mut w, who, "a", 1, 50_000, T0, T0);
    w.send(&order("b", "placed", who, &redeeming(101), T1));
    let rejected: Vec<_> = w
        .outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::OrderRejected { reason, detail, .. } => Some((reason.clone(), detail.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, "points_over_value");
    assert!(
        rejected[0].1.contains("101 points are worth 101 fen"),
        "{rejected:?}"
    );
    assert_eq!(w.member_by("openid", "ov").points.balance, 500);
    assert_eq!(
        w.engine.sku("S1").unwrap().view().atp,
        9,
        "b reserved nothing"
    );
    w.send(&order("c", "placed", who, &redeeming(100), T1));
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::OrderAccepted { order, .. } if order == "mall:c")));
    assert_eq!(w.member_by("openid", "ov").points.balance, 400);
}

#[test]
fn points_earned_in_one_channel_pay_in_another_and_a_cancel_refunds_them() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    let l = r#","lines":[{"sku":"S1","qty":1,"unit_price":50000}],"location":"wh""#;
    w.send(&order(
        "a",
        "placed",
        r#"{"tmall":"tb1","phone":"13800138000"}"#,
        l,
        T0,
    ));
    w.send(&order("a", "fulfilled", r#"{"tmall":"tb1"}"#, "", T1));
    // at the store by phone: the same member
    let store_order = redeeming(300).replace("\"location\"", "\"store\":\"st1\",\"location\"");
    w.send(&order(
        "b",
        "placed",
        r#"{"phone":"+86 138-0013-8000"}"#,
        &store_order,
        T2,
    ));
    let m = w.member_by("phone", "13800138000").clone();
    assert_eq!(m.points.balance, 200);
    w.send(&order(
        "b",
        "cancelled",
        r#"{"phone":"13800138000"}"#,
        "",
        T3,
    ));
    let m = w.member_by("tmall", "tb1").clone();
    assert_eq!(m.points.balance, 500);
    assert_eq!(w.ledger_sum(&m.id), 500);
}

/// The ledger entries of one member: (reason, about, delta, debt delta, debt after).
fn ledger_of(w: &World, member: &str) -> Vec<(String, String, i64, i64, i64)> {
    w.out
        .iter()
        .filter_map(|e| match &e.output {
            Output::Ledger {
                member: m,
                reason,
                about,
                delta,
                debt_delta,
                debt,
                ..
            } if m == member => Some((
                reason.to_string(),
                about.as_deref().unwrap_or("").to_string(),
                *delta,
                *debt_delta,
                *debt,
            )),
            _ => None,
        })
        .collect()
}

/// `who` buys `qty` of S1 at `price` fen in order `id`, placed and fulfilled at the times
/// given.
fn buy(w: &mut World, who: &str, id: &str, qty: i64, price: i64, placed: &str, fulfilled: &str) {
    let lines =
        format!(r#","lines":[{{"sku":"S1","qty":{qty},"unit_price":{price}}}],"location":"wh""#);
    w.send(&order(id, "placed", who, &lines, placed));
    w.send(&order(id, "fulfilled", who, "", fulfilled));
}

/// A world with 10 of S1 in `wh`, where `who` [`buy`]s.
fn bought(who: &str, id: &str, qty: i64, price: i64, placed: &str, fulfilled: &str) -> World {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    buy(&mut w, who, id, qty, price, placed, fulfilled);
    w
}

/// The rest of an order of one S1 at 1 yuan paying with `points`.
fn redeeming(points: i64) -> String {
    format!(
        r#","lines":[{{"sku":"S1","qty":1,"unit_price":100}}],"location":"wh","points_redeemed":{points}"#
    )
}

/// A world where `who` bought S1 at `price` (order `a`, at T0), spent `spent` of the points
/// in order `b` at `at`, and then returned order `a` whole at `back`: what the return takes
/// back beyond the balance is owed.
fn owing(who: &str, price: i64, spent: i64, at: &str, back: &str) -> World {
    let mut w = bought(who, "a", 1, price, T0, T0);
    w.send(&order("b", "placed", who, &redeeming(spent), at));
    w.send(&order("a", "returned", who, "", back));
    w
}

#[test]
fn a_clawback_beyond_the_balance_and_its_payment_are_in_the_ledger() {
    let who = r#"{"openid":"od"}"#;
    // every point spent, then the order that earned them comes back whole
    let mut w = owing(who, 50000, 500, T1, T2);
    buy(&mut w, who, "c", 1, 10000, T2, T3);
    let m = w.member_by("openid", "od").clone();
    assert_eq!((m.points.balance, m.points.debt), (0, 400));
    let s = |r: &str, a: &str, d, dd, debt| (r.to_string(), a.to_string(), d, dd, debt);
    assert_eq!(
        ledger_of(&w, &m.id),
        vec![
            s("earned", "mall:a", 500, 0, 0),
            s("redeemed", "mall:b", -500, 0, 0),
            // the return takes 500 the balance no longer holds: all of it owed
            s("reversed", "mall:a", 0, 500, 500),
            // order c's 100 points pay the debt, none reach the balance
            s("earned", "mall:c", 0, -100, 400),
        ]
    );
}

#[test]
fn identities_seen_together_merge_members_and_keep_every_point_once() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    let l = r#","lines":[{"sku":"S1","qty":1,"unit_price":10000}],"location":"wh""#;
    for (i, who) in [r#"{"openid":"oa"}"#, r#"{"card":"VIP-1"}"#]
        .iter()
        .enumerate()
    {
        w.send(&order(&format!("o{i}"), "placed", who, l, T0));
        w.send(&order(&format!("o{i}"), "fulfilled", who, "", T1));
    }
    let a = w.member_by("openid", "oa").id.clone();
    let b = w.member_by("card", "VIP-1").id.clone();
    assert_ne!(a, b);
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T2}","member":{{"openid":"oa","card":"VIP-1"}}}}"#
    ));
    let m = w.member_by("openid", "oa").clone();
    assert_eq!(m.id, w.member_by("card", "VIP-1").id, "one member now");
    assert_eq!(
        m.id,
        std::cmp::min(a.clone(), b.clone()),
        "the smaller id survives"
    );
    assert_eq!(m.points.balance, 200);
    let alias = if m.id == a { &b } else { &a };
    assert_eq!(
        w.engine.member(alias).unwrap().id,
        m.id,
        "the alias still resolves"
    );
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::Merged { .. })));
    let total: i64 = [&a, &b].iter().map(|id| w.ledger_sum(id)).sum();
    assert_eq!(total, 200, "ledgers of both sum to the merged balance");
    assert_eq!(m.days.iter().map(|d| d.orders).sum::<u32>(), 2);
}

#[test]
fn two_phones_never_merge_automatically() {
    let mut w = World::new(Rules::default());
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T0}","member":{{"openid":"oa","phone":"13800000001"}}}}"#
    ));
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T0}","member":{{"tmall":"tb","phone":"13800000002"}}}}"#
    ));
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T1}","member":{{"openid":"oa","tmall":"tb"}}}}"#
    ));
    let a = w.member_by("openid", "oa").id.clone();
    let b = w.member_by("tmall", "tb").id.clone();
    assert_ne!(a, b);
    assert!(w.outputs().iter().any(
        |o| matches!(o, Output::MergeConflict { reason, .. } if reason == "different phone numbers")
    ));
    // a second phone at a member who has one: left unbound, and the conflict says which
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T1}","member":{{"openid":"oa","phone":"13800000003"}}}}"#
    ));
    let third = Pii::new(KEY)
        .protect(&omnistream_schemas::IdKind::parse("phone"), "13800000003")
        .unwrap();
    let named: Vec<_> = w
        .outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::MergeConflict {
                other,
                reason,
                value,
                ..
            } if reason == "a second phone number" => Some((other.clone(), value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(named, [("phone".into(), Some(third))]);
}

/// A world of two members, each an identity given (`"kind":"value"`) with a phone of its
/// own: the first earned 300 points (order `a`), the second 200 (order `b`).
fn two_phones(first: &str, second: &str) -> World {
    let mut w = bought(
        &format!(r#"{{{first},"phone":"13800000001"}}"#),
        "a",
        1,
        30000,
        T0,
        T0,
    );
    let second = format!(r#"{{{second},"phone":"13800000002"}}"#);
    buy(&mut w, &second, "b", 1, 20000, T0, T0);
    w
}

/// Two members the service refused to merge (two phones) are one person to customer
/// service: a person merges them keeping one phone; the other is released (the number then
/// starts a member of its own), the points of both are the person's, and identities of
/// either lead to the survivor. Without a phone to keep, the merge is refused as before.
#[test]
fn a_person_merges_two_members_the_service_refused_keeping_one_phone() {
    use omnistream_actors::MemberCmd;
    for keep_larger in [false, true] {
        let mut w = two_phones(r#""openid":"oa""#, r#""tmall":"tb""#);
        w.send(&format!(
            r#"{{"type":"identify","ts":"{T1}","member":{{"openid":"oa","tmall":"tb"}}}}"#
        ));
        let a = w.member_by("openid", "oa").id.clone();
        let b = w.member_by("tmall", "tb").id.clone();
        assert_ne!(a, b, "refused: two phones");
        let (small, large) = if a < b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let phone_of = |w: &World, m: &str| {
            w.engine
                .member(m)
                .unwrap()
                .ids
                .of_kind("phone")
                .unwrap()
                .to_string()
        };
        let mut n = 0u64;
        let mut join = |w: &mut World, at: &str, with: &str, keep: Option<String>| {
            n += 1;
            let cmd = MemberCmd::Join {
                with: with.into(),
                keep: keep.map(Into::into),
                reference: "CS-9".into(),
            };
            w.persons(at, cmd, 78, n)
        };
        // no phone to keep: the survivor refuses as it did for the identities
        let said = join(&mut w, &a, &b, None);
        assert!(
            said.iter().any(|o| matches!(o, Output::MergeConflict { reason, .. } if reason == "different phone numbers")),
            "{said:?}"
        );
        assert!(
            !said.iter().any(|o| matches!(o, Output::Merged { .. })),
            "{said:?}"
        );
        assert_ne!(
            w.member_by("openid", "oa").id,
            w.member_by("tmall", "tb").id
        );
        // kept: the phone of one; the command runs at the other, which gives its phone up
        let (keeper, giver) = if keep_larger {
            (&large, &small)
        } else {
            (&small, &large)
        };
        let (kept, given_up) = (phone_of(&w, keeper), phone_of(&w, giver));
        let said = join(&mut w, giver, keeper, Some(kept.clone()));
        let approved = said.iter().find_map(|o| match o {
            Output::MergeApproved {
                member,
                with,
                phone,
                released,
                ..
            } => Some((
                member.clone(),
                with.clone(),
                phone.clone(),
                released.clone(),
            )),
            _ => None,
        });
        assert_eq!(
            approved,
            Some((
                giver.clone(),
                keeper.clone(),
                Some(kept.clone().into()),
                Some(given_up.clone().into())
            )),
            "{said:?}"
        );
        assert!(
            said.iter().any(|o| matches!(o, Output::Merged { survivor, alias } if *survivor == small && *alias == large)),
            "{said:?}"
        );
        let m = w.member_by("openid", "oa").clone();
        assert_eq!(m.id, small);
        assert_eq!(w.member_by("tmall", "tb").id, small);
        assert_eq!(
            m.ids.of_kind("phone"),
            Some(kept.as_str()),
            "keep_larger {keep_larger}"
        );
        assert_eq!(w.engine.member_of("phone", &kept).unwrap().id, small);
        assert!(w.engine.member_of("phone", &given_up).is_none(), "released");
        assert_eq!(m.points.balance, 500, "300 + 200: both sides' points");
        assert_eq!(w.ledger_sum(&a) + w.ledger_sum(&b), 500);
        // the number given up starts a member of its own
        let other = if given_up == hashed("13800000001") {
            "13800000001"
        } else {
            "13800000002"
        };
        w.send(&format!(
            r#"{{"type":"click","ts":"{T2}","channel":"mall","member":{{"phone":"{other}"}},"target":"ad1"}}"#
        ));
        let fresh = w.member_by("phone", other).id.clone();
        assert!(
            fresh != a && fresh != b,
            "a new member for the released number"
        );
        // sent again to the survivor with itself: one member, nothing happens (the service
        // answers a retry `unchanged` before sending anything: tests/service.rs)
        assert!(join(&mut w, &small, &small, Some(kept.clone())).is_empty());
    }
}

/// An event whose commands each resolve its identities (a redeeming order asks the member
/// for its points, redeems, then places) says a merge refused for two phones once: one case
/// for customer service, counted once.
#[test]
fn a_merge_refused_for_two_phones_is_said_once_an_event() {
    let mut w = two_phones(r#""jd":"jP1""#, r#""tmall":"tP2""#);
    let said = w.said(&order(
        "c",
        "placed",
        r#"{"tmall":"tP2","jd":"jP1"}"#,
        &redeeming(50),
        T1,
    ));
    let refused: Vec<_> = said
        .iter()
        .filter(|o| matches!(o, Output::MergeConflict { .. }))
        .collect();
    assert_eq!(refused.len(), 1, "{said:?}");
    let conflicts: u32 = [("jd", "jP1"), ("tmall", "tP2")]
        .iter()
        .map(|(k, v)| w.member_by(k, v).conflicts)
        .sum();
    assert_eq!(conflicts, 1);
}

/// A phone as stored (hashed with the worlds' key).
fn hashed(phone: &str) -> String {
    Pii::new(KEY)
        .protect(&omnistream_schemas::IdKind::Phone, phone)
        .unwrap()
        .to_string()
}

/// An event naming three members, two of them with different phones: which two become one
/// follows the event's identities in the order of their kinds (phone, openid, unionid, tmall,
/// jd, douyin, card, ...), under any personal-data key (the survivor took the others in by
/// their ids, so the key decided which one was refused).
#[test]
fn a_merge_of_three_with_two_phones_follows_the_kinds_order() {
    // (kind of the first phone's member, kind of the second's): the earlier kind joins
    for (early, late) in [("openid", "douyin"), ("unionid", "jd")] {
        for key in ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10"] {
            let mut w = World::keyed(Rules::default(), key.as_bytes());
            for who in [
                format!(r#"{{"{late}":"x","phone":"13800000001"}}"#),
                r#"{"tmall":"tb","card":"kb"}"#.to_string(),
                format!(r#"{{"{early}":"x","phone":"13800000002"}}"#),
            ] {
                w.send(&format!(
                    r#"{{"type":"identify","ts":"{T0}","member":{who}}}"#
                ));
            }
            let left_out = w.member_by(late, "x").id.clone();
            // named late kind first: the JSON order does not count
            let said = w.said(&format!(
                r#"{{"type":"identify","ts":"{T1}","member":{{"{late}":"x","tmall":"tb","{early}":"x"}}}}"#
            ));
            let tb = w.member_by("tmall", "tb").id.clone();
            assert_eq!(
                tb,
                w.member_by(early, "x").id,
                "key {key}, {early}: the earlier kind joins"
            );
            assert_eq!(
                w.member_by(late, "x").id,
                left_out,
                "key {key}, {late}: left out"
            );
            assert_ne!(tb, left_out, "key {key}");
            let conflicts: Vec<_> = said
                .iter()
                .filter_map(|o| match o {
                    Output::MergeConflict {
                        member,
                        other,
                        reason,
                        ..
                    } => Some((member.clone(), other.clone(), reason.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(
                conflicts,
                [(
                    tb.clone(),
                    left_out.clone(),
                    "different phone numbers".into()
                )],
                "key {key}, {early}"
            );
            assert_eq!(w.member_by("tmall", "tb").conflicts, 1, "key {key}");
        }
    }
}

/// The decision a scan got, with its reasons and the block it met.
fn decided(said: &[Output]) -> (String, Vec<String>, Option<(String, String, String)>) {
    said.iter()
        .find_map(|o| match o {
            Output::Decision {
                decision,
                reasons,
                scan,
                ..
            } => Some((
                decision.as_str().to_string(),
                reasons
                    .iter()
                    .map(|c| c.reason.as_str().to_string())
                    .collect(),
                scan.as_ref().and_then(|s| s.blocked.as_ref()).map(|b| {
                    let on = b.on.as_str().to_string();
                    (on, b.value.to_string(), b.reference.to_string())
                }),
            )),
            _ => None,
        })
        .expect("a decision")
}

/// A person's blocks: a device blocked in one campaign blocks its scans there (reason
/// `blocked`, naming the block), not in another; lifted, it blocks nothing; a member blocked in
/// every campaign is blocked on any device until the block's end, and the block follows the
/// member into a merge.
#[test]
fn a_persons_block_stops_a_device_or_a_member_until_it_ends_or_is_lifted() {
    use omnistream_actors::fraud::block::{BlockCmd, BlockOn};
    use omnistream_actors::{Cmd, CrowdCmd, Key, MemberCmd};
    let mut w = World::new(Rules::default());
    for who in ["oa", "ob", "oc"] {
        w.send(&format!(
            r#"{{"type":"click","ts":"2026-10-01T10:00:00+08:00","channel":"mall","member":{{"openid":"{who}"}},"target":"ad1"}}"#
        ));
    }
    let scan = |code: &str, who: &str, device: &str, campaign: &str, ts: &str| {
        format!(
            r#"{{"type":"scan","ts":"{ts}","channel":"campaign","code":"{code}","sku":"S1","campaign":"{campaign}","member":{{"openid":"{who}"}},"device":"{device}","ip":"1.2.3.4"}}"#
        )
    };
    let set = |campaign: Option<&str>, until: Option<&str>, r: &str| BlockCmd::Set {
        campaign: campaign.map(Into::into),
        until: until.map(|u| omnistream_schemas::EventTime::parse(u).unwrap()),
        reference: r.into(),
    };
    let device = |block| {
        Cmd::Crowd(CrowdCmd::Block {
            value: "d-bad".into(),
            block,
        })
    };
    let said = w.persons_to(
        Key::Device("d-bad".into()),
        device(set(Some("c1"), None, "R-1")),
        9,
        1,
    );
    assert!(
        matches!(&said[..], [Output::BlockSet { on: BlockOn::Device, value, .. }] if value == "d-bad"),
        "{said:?}"
    );
    let hit = Some(("device".into(), "d-bad".into(), "R-1".into()));
    let (d, reasons, met) = decided(&w.said(&scan("K1", "oa", "d-bad", "c1", T2)));
    assert_eq!((d.as_str(), met), ("block", hit.clone()));
    assert_eq!(reasons.last().map(String::as_str), Some("blocked"));
    assert_eq!(
        decided(&w.said(&scan("K2", "oa", "d-bad", "c2", T2))).0,
        "allow",
        "another campaign"
    );
    assert_eq!(
        decided(&w.said(&scan("K3", "oa", "d-ok", "c1", T2))).0,
        "allow",
        "another device"
    );
    let lift = BlockCmd::Lift {
        campaign: Some("c1".into()),
        reference: "R-2".into(),
    };
    let said = w.persons_to(Key::Device("d-bad".into()), device(lift), 9, 2);
    assert!(matches!(&said[..], [Output::BlockLifted { lifted, .. }] if lifted == "R-1"));
    assert_eq!(
        decided(&w.said(&scan("K4", "oa", "d-bad", "c1", T2))).0,
        "allow",
        "lifted"
    );
    // a member blocked in every campaign until noon of the 12th
    let b = w.member_by("openid", "ob").id.to_string();
    let until = "2026-11-12T12:00:00+08:00";
    w.persons(&b, MemberCmd::Block(set(None, Some(until), "R-3")), 9, 3);
    let (d, _, met) = decided(&w.said(&scan("K5", "ob", "d-ob", "c2", T2)));
    assert_eq!(
        (d.as_str(), met),
        ("block", Some(("member".into(), b.clone(), "R-3".into())))
    );
    // merged with another member, the person is still blocked, whichever id survives
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T2}","member":{{"openid":"ob","card":"VIP-9"}}}}"#
    ));
    w.send(&format!(
        r#"{{"type":"click","ts":"{T2}","channel":"mall","member":{{"openid":"oc","card":"VIP-9"}},"target":"ad1"}}"#
    ));
    let merged = w.member_by("openid", "oc").id.clone();
    assert_eq!(merged, w.member_by("openid", "ob").id, "one member now");
    let (d, _, _) = decided(&w.said(&scan("K6", "oc", "d-oc", "c1", T2)));
    assert_eq!(d, "block", "the block follows the person");
    assert_eq!(
        decided(&w.said(&scan("K7", "oc", "d-oc", "c1", T3))).0,
        "allow",
        "ended"
    );
}

#[test]
fn dormant_turns_on_by_timer_without_an_event_of_that_member() {
    let mut w = World::new(Rules::default());
    w.send(r#"{"type":"identify","ts":"2026-01-01T10:00:00+08:00","member":{"openid":"sleepy","unionid":"u1"}}"#);
    // somebody else's event 61 days later moves the watermark
    w.send(r#"{"type":"identify","ts":"2026-03-03T10:00:00+08:00","member":{"openid":"other","unionid":"u2"}}"#);
    let m = w.member_by("openid", "sleepy");
    assert!(m.tags.contains(&"dormant".into()), "{:?}", m.tags);
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::Tag { tag, on: true, member } if tag == "dormant" && *member == m.id)));
}

/// One order of 1,500 yuan.
const BIG: &str = r#","lines":[{"sku":"S1","qty":1,"unit_price":150000}],"location":"wh""#;

/// Member `oa` placed [`BIG`] at T1 and had it fulfilled at `fulfilled`: 1,500 points and
/// `high_value`.
fn big_spender(fulfilled: &str) -> World {
    let w = bought(r#"{"openid":"oa"}"#, "o1", 1, 150_000, T1, fulfilled);
    let m = w.member_by("openid", "oa").clone();
    assert_eq!(m.points.balance, 1500);
    assert!(m.tags.contains(&"high_value".into()), "{:?}", m.tags);
    w
}

/// A dormant member's points still expire and its windowed tags still drop: the dormant
/// time, once behind, used to be the earliest of the member's next times, so no timer was
/// armed again and the points stayed for good.
#[test]
fn a_dormant_members_points_expire_and_its_windowed_tags_drop() {
    let mut w = big_spender(T2);
    // others' events move the watermark: past the dormant time (60 days), then past the
    // 90-day window of high_value, then past a year
    for (n, ts) in [
        (1, "2027-01-20T12:00:00+08:00"),
        (2, "2027-03-01T12:00:00+08:00"),
        (3, "2027-11-20T12:00:00+08:00"),
    ] {
        w.send(&format!(
            r#"{{"type":"click","ts":"{ts}","channel":"mall","member":{{"openid":"other{n}"}},"target":"ad1"}}"#
        ));
        let m = w.member_by("openid", "oa").clone();
        assert!(m.tags.contains(&"dormant".into()), "{ts}: {:?}", m.tags);
        match n {
            1 => assert!(m.tags.contains(&"high_value".into()), "{ts}: {:?}", m.tags),
            _ => assert!(!m.tags.contains(&"high_value".into()), "{ts}: {:?}", m.tags),
        }
        let left = if n == 3 { 0 } else { 1500 };
        assert_eq!(m.points.balance, left, "{ts}");
    }
    assert!(w.out.iter().any(|e| matches!(
        &e.output,
        Output::Ledger { delta: -1500, reason, .. } if reason == "expired"
    )));
}

/// A windowed tag drops at the local midnight its last counted day leaves the window, with no
/// event of the member's, also when an older day (an order a day before, or one a merge
/// brought) is kept beyond the window: the member's timer went by the oldest day alone, which
/// had left the window already, so `clicker` stayed on for a year. The midnight is the
/// member's own (its events' offset), also when the events moving time come in another.
#[test]
fn a_windowed_tag_drops_when_its_day_leaves_though_an_older_day_stays() {
    for (merged, utc) in [(false, false), (true, false), (false, true)] {
        let mut rules = Rules::default();
        rules.tags.push(omnistream_actors::config::TagRule {
            name: "clicker".into(),
            when: omnistream_actors::config::TagCond::ClicksAtLeast { days: 7, count: 1 },
        });
        let mut w = World::new(rules);
        let clicker = if merged { "o6" } else { "jd1" };
        w.send(r#"{"type":"stock","ts":"2026-09-01T08:00:00+08:00","sku":"A","location":"wh","op":"receive","qty":10}"#);
        w.send(r#"{"type":"order","ts":"2026-09-03T09:00:00+08:00","channel":"jd","order":"O1","status":"placed","kind":"consumer","lines":[{"sku":"A","qty":1,"unit_price":1000}],"location":"wh","member":{"jd":"jd1"}}"#);
        let kind = if merged { "openid" } else { "jd" };
        w.send(&format!(
            r#"{{"type":"click","ts":"2026-09-04T10:00:00+08:00","channel":"mall","member":{{"{kind}":"{clicker}"}},"target":"ad"}}"#
        ));
        if merged {
            w.send(r#"{"type":"identify","ts":"2026-09-04T11:00:00+08:00","member":{"jd":"jd1","openid":"o6"}}"#);
        }
        let tags = |w: &World| w.member_by("jd", "jd1").tags.to_vec();
        // another member's events move time: the last minute of 09-10, then past midnight
        // (in Shanghai; sent in UTC by a sender of another offset)
        let [before, after] = if utc {
            ["2026-09-10T15:59:00Z", "2026-09-10T16:01:00Z"]
        } else {
            ["2026-09-10T23:59:00+08:00", "2026-09-11T00:01:00+08:00"]
        };
        w.send(&format!(r#"{{"type":"click","ts":"{before}","channel":"mall","member":{{"openid":"x1"}},"target":"ad"}}"#));
        assert_eq!(tags(&w), ["clicker"], "merged: {merged}, utc: {utc}");
        w.send(&format!(r#"{{"type":"click","ts":"{after}","channel":"mall","member":{{"openid":"x2"}},"target":"ad"}}"#));
        assert!(
            tags(&w).is_empty(),
            "merged: {merged}, utc: {utc}: {:?}",
            tags(&w)
        );
        // dropped by the member's timer at the midnight 09-04 left the 7 days
        let off = w
            .out
            .iter()
            .find(|e| matches!(&e.output, Output::Tag { on: false, .. }))
            .expect("the tag dropped");
        let midnight = omnistream_schemas::EventTime::parse("2026-09-11T00:00:00+08:00").unwrap();
        assert_eq!(off.at.unix_us, midnight.unix_us, "merged: {merged}");
    }
}

/// The id merged away says it holds its tags no more (as its points leave with
/// `merged_out`): a follower of `tag` outputs does not keep an alias tagged.
#[test]
fn a_member_merged_away_drops_its_tags() {
    let mut rules = Rules::default();
    rules.tags.push(omnistream_actors::config::TagRule {
        name: "clicker".into(),
        when: omnistream_actors::config::TagCond::ClicksAtLeast { days: 7, count: 1 },
    });
    let mut w = World::new(rules);
    for who in ["ta", "tb"] {
        w.send(&format!(
            r#"{{"type":"click","ts":"{T0}","channel":"mall","member":{{"openid":"{who}"}},"target":"ad"}}"#
        ));
    }
    let ids = ["ta", "tb"].map(|o| w.member_by("openid", o).id.clone());
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T1}","member":{{"openid":"ta","tmall":"x"}}}}"#
    ));
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T1}","member":{{"openid":"tb","tmall":"x"}}}}"#
    ));
    let survivor = w.member_by("openid", "ta").id.clone();
    assert_eq!(survivor, w.member_by("openid", "tb").id, "merged");
    let alias = ids.iter().find(|i| **i != survivor).unwrap().clone();
    let offs: Vec<_> = w
        .outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Tag {
                member,
                tag,
                on: false,
            } => Some((member.clone(), tag.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(offs, [(alias, "clicker".into())]);
    assert_eq!(w.member_by("openid", "tb").tags.to_vec(), ["clicker"]);
}

/// A shorter `points.expiry-days` taken in between (a restart under new rules): points
/// already held expire at the time they fall due under it, by the member's own timer, with
/// no event of the member's (its timer, set for the old expiry, comes that much earlier).
#[test]
fn a_shorter_expiry_taken_in_between_expires_held_points_when_they_fall_due() {
    let mut w = big_spender(T2);
    let mut rules = w.engine.rules.clone();
    rules.points.expiry_days = 20;
    w.engine.set_rules(rules);
    // another member's event 25 days on moves the watermark past the new due time (and
    // before any of oa's own timers under the old rules)
    w.send(r#"{"type":"click","ts":"2026-12-07T12:00:00+08:00","channel":"mall","member":{"openid":"ob"},"target":"ad1"}"#);
    let m = w.member_by("openid", "oa").clone();
    assert_eq!(m.points.balance, 0);
    let expired = w
        .out
        .iter()
        .find(|e| matches!(&e.output, Output::Ledger { reason, .. } if reason == "expired"))
        .expect("an expired entry");
    // a timer's entry: the nil id, at the lot's due time under the new rules (earned at
    // T2, 20 days on, to the millisecond a timer's time is stamped with)
    assert!(expired.event.is_nil(), "{expired:?}");
    let earned = omnistream_schemas::EventTime::parse(T2).unwrap().unix_us;
    assert_eq!(expired.at.unix_us, earned + 20 * 86_400_000_000);
    // no tag went and came back on the way (the early tick ran at the switch's time)
    let tags = w
        .out
        .iter()
        .filter(|e| matches!(&e.output, Output::Tag { .. }))
        .count();
    assert_eq!(tags, 1, "high_value once");
    // a longer one: nothing more to expire, and the member's timer still fires later
    let mut rules = w.engine.rules.clone();
    rules.points.expiry_days = 365;
    w.engine.set_rules(rules);
    w.send(r#"{"type":"click","ts":"2027-03-01T12:00:00+08:00","channel":"mall","member":{"openid":"ob"},"target":"ad1"}"#);
    let m = w.member_by("openid", "oa").clone();
    assert!(!m.tags.contains(&"high_value".into()), "{:?}", m.tags);
}

/// A whole order returned, or an order cancelled, no longer counts in the windows: the
/// monetary tag drops at once, the tier it earned after the downgrade grace. (Both were
/// counted gross: bought and returned, a member stayed `silver` and `high_value`.)
#[test]
fn a_returned_or_cancelled_order_leaves_the_tag_and_tier_windows() {
    let mut w = big_spender(T1);
    let lines = BIG;
    assert_eq!(w.member_by("openid", "oa").tier, "silver");
    w.send(&order("o1", "returned", r#"{"openid":"oa"}"#, "", T2));
    let m = w.member_by("openid", "oa").clone();
    assert!(!m.tags.contains(&"high_value".into()), "{:?}", m.tags);
    assert_eq!(m.points.balance, 0);
    assert_eq!(m.tier, "silver", "kept for the grace");
    let rfm = m.view(w.engine.watermark(), 20769, &Rules::default());
    assert_eq!(rfm.xrfm[0].monetary, 0, "{:?}", rfm.xrfm);
    // a cancelled order never counted: no monetary tag
    w.send(&order("o2", "placed", r#"{"openid":"ob"}"#, lines, T2));
    w.send(&order("o2", "cancelled", r#"{"openid":"ob"}"#, "", T3));
    let m = w.member_by("openid", "ob").clone();
    assert!(!m.tags.contains(&"high_value".into()), "{:?}", m.tags);
    // nor an order in X-RFM: frequency and monetary leave it out in every window
    let rfm = m.view(w.engine.watermark(), 20769, &Rules::default());
    assert!(
        rfm.xrfm.iter().all(|x| (x.frequency, x.monetary) == (0, 0)),
        "{:?}",
        rfm.xrfm
    );
    // past the 30-day grace (another member's click moves the watermark): the tier goes
    w.send(r#"{"type":"click","ts":"2026-12-20T12:00:00+08:00","channel":"mall","member":{"openid":"oc"},"target":"ad1"}"#);
    let m = w.member_by("openid", "oa").clone();
    assert_eq!(m.tier, "member");
}

/// A lowered tier threshold taken in between (a reload): a member that now qualifies moves
/// up at the next event anywhere (its timer brought to the switch), not at its own next
/// event; so does a new tag rule's tag.
#[test]
fn a_lowered_threshold_taken_in_between_moves_members_up_at_once() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    buy(&mut w, r#"{"openid":"ol"}"#, "a", 1, 30_000, T0, T0);
    let m = w.member_by("openid", "ol").clone();
    assert_eq!((m.tier.as_str(), m.points.balance), ("member", 300));
    let mut rules = w.engine.rules.clone();
    let first = rules.tiers.levels[0].name.clone();
    rules.tiers.levels[0].min_earned = 300;
    rules.tags.push(
        toml::from_str(
            r#"name = "bought_lately"
when = { rule = "orders-at-least", days = 30, count = 1 }"#,
        )
        .unwrap(),
    );
    w.engine.set_rules(rules);
    w.send(r#"{"type":"click","ts":"2026-11-11T12:00:00+08:00","channel":"mall","member":{"openid":"other"},"target":"ad1"}"#);
    let m = w.member_by("openid", "ol").clone();
    assert_eq!(m.tier, first, "moved up with no event of its own");
    assert!(m.tags.contains(&"bought_lately".into()), "{:?}", m.tags);
}

/// A shorter downgrade grace taken in between (a reload): a member in its grace loses the
/// tier when the new grace ends, by its own timer (set for the old grace's end, it comes
/// that much earlier), with no event of its own.
#[test]
fn a_shorter_grace_taken_in_between_ends_the_grace_sooner() {
    let mut w = big_spender(T1);
    w.send(&order("o1", "returned", r#"{"openid":"oa"}"#, "", T2));
    assert_eq!(w.member_by("openid", "oa").tier, "silver", "in its grace");
    let mut rules = w.engine.rules.clone();
    rules.tiers.downgrade_grace_days = 5;
    w.engine.set_rules(rules);
    // six days on, others' clicks move the watermark (the first runs the tick brought to the
    // switch, which sets the timer for the new grace's end; the next fires that): the 5-day
    // grace is over, and the tier went at its end
    for ts in ["2026-11-18T12:00:00+08:00", "2026-11-18T12:01:00+08:00"] {
        w.send(&format!(
            r#"{{"type":"click","ts":"{ts}","channel":"mall","member":{{"openid":"oc"}},"target":"ad1"}}"#
        ));
    }
    assert_eq!(w.member_by("openid", "oa").tier, "member");
    let dropped = w
        .out
        .iter()
        .rev()
        .find(|e| matches!(&e.output, Output::Tier { tier, .. } if tier == "member"))
        .expect("the tier dropped");
    let end = omnistream_schemas::EventTime::parse("2026-11-17T11:00:00+08:00").unwrap();
    assert_eq!(dropped.at.unix_us, end.unix_us);
}

#[test]
fn scan_rewards_respect_the_daily_cap_and_the_budget() {
    let mut rules = Rules::default();
    rules.campaigns.insert(
        "c1".into(),
        omnistream_actors::config::CampaignRules {
            points: 10,
            daily_cap: 2,
            budget: 30,
            ..Default::default()
        },
    );
    let mut w = World::new(rules);
    // established members, each on their own phone: the caps are what this is about, not
    // new accounts scanning back to back on one device
    for who in ["oa", "ob", "oc"] {
        w.send(&format!(
            r#"{{"type":"click","ts":"2026-10-01T10:00:00+08:00","channel":"mall","member":{{"openid":"{who}"}},"target":"ad1"}}"#
        ));
    }
    let scan = |code: &str, who: &str, ts: &str| {
        format!(
            r#"{{"type":"scan","ts":"{ts}","channel":"campaign","code":"{code}","sku":"S1","campaign":"c1","member":{{"openid":"{who}"}},"device":"d-{who}","ip":"1.2.3.4"}}"#
        )
    };
    for c in ["a", "b", "c"] {
        w.send(&scan(c, "oa", T0));
    }
    assert_eq!(
        w.member_by("openid", "oa").points.balance,
        20,
        "third scan of the day capped"
    );
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::RewardCapped { .. })));
    w.send(&scan("d", "ob", T0));
    w.send(&scan("e", "oc", T0));
    assert_eq!(w.member_by("openid", "ob").points.balance, 10);
    assert_eq!(
        w.member_by("openid", "oc").points.balance,
        0,
        "budget of 30 spent"
    );
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::BudgetExhausted { .. })));
    // each allowed scan's decision says why it paid nothing, in the order they came
    let unpaid: Vec<_> = w
        .outputs()
        .iter()
        .filter_map(|o| match o {
            Output::Decision {
                decision: omnistream_actors::fraud::Decision::Allow,
                reward,
                no_reward,
                ..
            } => Some((*reward, *no_reward)),
            _ => None,
        })
        .collect();
    use omnistream_actors::fraud::NoReward;
    assert_eq!(
        unpaid,
        [
            (10, None),
            (10, None),
            (0, Some(NoReward::DailyCap)),
            (10, None),
            (0, Some(NoReward::BudgetExhausted)),
        ]
    );
}

/// Dealer d1's credit limit set at `T0`.
fn dealer_d1(limit: i64) -> String {
    format!(r#"{{"type":"dealer","ts":"{T0}","dealer":"d1","credit_limit":{limit}}}"#)
}

/// A status event of d1's order `id`, with its line of `qty` units of S1 at ¥10 from `wh`.
fn dealer_order(id: &str, status: &str, qty: i64, ts: &str) -> String {
    format!(
        r#"{{"type":"order","ts":"{ts}","channel":"dealer","order":"{id}","status":"{status}","kind":"dealer","dealer":"d1","lines":[{{"sku":"S1","qty":{qty},"unit_price":1000}}],"location":"wh"}}"#
    )
}

#[test]
fn a_dealer_order_beyond_credit_is_held_then_released_by_a_payment() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 200, T0));
    w.send(&dealer_d1(100000));
    let d = |id: &str, qty: i64, ts: &str| dealer_order(id, "placed", qty, ts);
    w.send(&d("p1", 80, T1)); // 80,000 of 100,000
    w.send(&d("p2", 30, T1)); // 30,000 more: held, short 10,000
    assert!(w.outputs().iter().any(
        |o| matches!(o, Output::OrderHeld { order, shortfall: 10000, .. } if order == "dealer:p2")
    ));
    assert_eq!(
        w.engine.sku("S1").unwrap().view().atp,
        120,
        "held orders reserve no stock"
    );
    w.send(&format!(
        r#"{{"type":"order","ts":"{T2}","channel":"dealer","order":"p1","status":"fulfilled","kind":"dealer","dealer":"d1"}}"#
    ));
    w.send(&format!(
        r#"{{"type":"payment","ts":"{T3}","dealer":"d1","amount":50000,"ref":"BANK-1"}}"#
    ));
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::OrderReleased { .. })));
    assert!(w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::OrderAccepted { order, .. } if order == "dealer:p2")));
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 90);
    // the same payment reference again changes nothing
    let before = w.engine.dealer("d1").unwrap().into_owned();
    w.send(&format!(
        r#"{{"type":"payment","ts":"{T3}","dealer":"d1","amount":50000,"ref":"BANK-1"}}"#
    ));
    assert_eq!(*w.engine.dealer("d1").unwrap(), before);
}

/// A held order's `fulfilled` waits for credit; the order cancelled while held drops it, and
/// says so under the fulfilment's own id (goods shipped while on credit hold), as it says of a
/// status that comes after the cancellation; the order's view keeps nothing waiting.
#[test]
fn a_status_waiting_on_a_held_order_is_said_ignored_when_the_order_is_cancelled() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 200, T0));
    w.send(&dealer_d1(1000));
    let ev = |status: &str, ts: &str| dealer_order("p9", status, 5, ts);
    w.send(&ev("placed", T1));
    w.send(&ev("fulfilled", T2)); // event 4
    assert!(w.outputs().iter().any(
        |o| matches!(o, Output::OrderDeferred { status, waits_for, .. } if status == "fulfilled" && waits_for == "credit")
    ));
    w.send(&ev("cancelled", T3));
    let shipped = uuid::Uuid::parse_str("00000000-0000-7000-8000-000000000004").unwrap();
    let said: Vec<(&Emitted, &str)> = w
        .out
        .iter()
        .filter_map(|e| match &e.output {
            Output::OrderIgnored { status, reason, .. } if status == "fulfilled" => {
                Some((e, reason.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].1, "order was cancelled while held for credit");
    assert_eq!(said[0].0.event, shipped, "under the fulfilment's own id");
    let view = w.engine.order("dealer:p9").unwrap().view("dealer:p9", None);
    assert!(view.deferred.is_empty(), "{view:?}");
    assert_eq!(
        w.engine.sku("S1").unwrap().view().atp,
        200,
        "no stock taken"
    );
}

/// A held order is cancelled whole, as an accepted one: a `cancelled` naming some of its
/// lines is refused (`partial_cancel`), the order still held for its whole amount.
#[test]
fn cancelling_some_lines_of_a_held_order_is_refused_as_for_an_accepted_one() {
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 200, T0));
    w.send(&stock("S2", 200, T0));
    w.send(&dealer_d1(1000));
    let two = dealer_order("h1", "placed", 5, T1).replace(
        r#""unit_price":1000}]"#,
        r#""unit_price":1000},{"sku":"S2","qty":1,"unit_price":100}]"#,
    );
    w.send(&two);
    assert_eq!(w.engine.dealer("d1").unwrap().view().held.len(), 1);
    // the S2 line alone
    let some = dealer_order("h1", "cancelled", 1, T2).replace(r#""S1""#, r#""S2""#);
    w.send(&some);
    assert!(
        w.outputs().iter().any(|o| matches!(o,
            Output::OrderIgnored { code: Some(c), status, .. } if c == "partial_cancel" && status == "cancelled")),
        "{:?}",
        w.outputs()
    );
    assert_eq!(
        w.engine.dealer("d1").unwrap().view().held.len(),
        1,
        "still held"
    );
    // without lines: cancelled, no longer held
    w.send(&order_dealer_cancel("h1", T3));
    assert!(w.engine.dealer("d1").unwrap().view().held.is_empty());
}

/// `cancelled` of d1's order `id`, without lines.
fn order_dealer_cancel(id: &str, ts: &str) -> String {
    format!(
        r#"{{"type":"order","ts":"{ts}","channel":"dealer","order":"{id}","status":"cancelled","kind":"dealer","dealer":"d1"}}"#
    )
}

/// A stock receipt of one unit at `ts`, with id number `n`.
fn receipt(n: u32, ts: &str) -> String {
    format!(
        r#"{{"id":"00000000-0000-7000-8000-{n:012}","type":"stock","ts":"{ts}","sku":"S1","location":"wh","op":"receive","qty":1}}"#
    )
}

#[test]
fn a_repeat_is_a_duplicate_or_too_late_never_applied_twice() {
    let mut w = World::new(Rules {
        max_lateness_s: 86_400,
        ..Rules::default()
    });
    assert!(matches!(
        w.send_raw(&receipt(1, "2026-11-01T00:00:00Z")),
        Applied::Done(_)
    ));
    assert!(matches!(
        w.send_raw(&receipt(2, "2026-11-04T00:00:00Z")),
        Applied::Done(_)
    ));
    // two days before the watermark, over the one-day window: refused, not remembered
    assert_eq!(
        w.send_raw(&receipt(3, "2026-11-02T00:00:00Z")),
        Applied::Late
    );
    assert_eq!(
        w.send_raw(&receipt(3, "2026-11-02T00:00:00Z")),
        Applied::Late
    );
    // twelve hours late is inside it
    assert!(matches!(
        w.send_raw(&receipt(4, "2026-11-03T12:00:00Z")),
        Applied::Done(_)
    ));
    // a repeat still remembered is a duplicate, however late
    assert_eq!(
        w.send_raw(&receipt(1, "2026-11-01T00:00:00Z")),
        Applied::Duplicate
    );
    // eight days on, event 1's id is forgotten (7-day horizon), and its repeat is too late
    assert!(matches!(
        w.send_raw(&receipt(5, "2026-11-12T00:00:00Z")),
        Applied::Done(_)
    ));
    assert_eq!(
        w.send_raw(&receipt(1, "2026-11-01T00:00:00Z")),
        Applied::Late
    );
    assert_eq!(
        w.engine.sku("S1").unwrap().view().atp,
        4,
        "events 1, 2, 4 and 5"
    );
    assert_eq!(w.engine.stats.late, 3);
}

/// Past `max-remembered-ids` the oldest seconds' ids are forgotten and events that old are
/// refused as too late: the repeat of every event is then a duplicate or too late, the stock
/// counts each event once, and the set never holds more than the bound.
#[test]
fn under_the_id_bound_a_repeat_is_still_never_applied_twice() {
    let mut w = World::new(Rules {
        max_remembered_ids: 8,
        ..Rules::default()
    });
    let at = |n: u32| format!("2026-11-01T00:{:02}:{:02}Z", n / 60, n % 60);
    for n in 1..=40 {
        assert!(matches!(w.send_raw(&receipt(n, &at(n))), Applied::Done(_)));
        assert!(w.engine.remembered_ids() <= 8);
    }
    assert!(w.engine.stats.forgotten >= 32, "{:?}", w.engine.stats);
    let floor = w.engine.remembered_from_us();
    assert!(floor > 0, "the bound raised the floor");
    let (mut dup, mut late) = (0, 0);
    for n in 1..=40 {
        match w.send_raw(&receipt(n, &at(n))) {
            Applied::Duplicate => dup += 1,
            Applied::Late => late += 1,
            other => panic!("repeat of {n} applied: {other:?}"),
        }
    }
    assert!(dup > 0 && late > 0, "{dup} duplicates, {late} too late");
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 40);
    // a new event older than the floor is refused as well: its id cannot be checked
    assert_eq!(w.send_raw(&receipt(99, &at(1))), Applied::Late);
    // and one at the newest second goes through
    assert!(matches!(
        w.send_raw(&receipt(100, &at(40))),
        Applied::Done(_)
    ));
}

#[test]
fn a_repeated_event_id_changes_nothing() {
    let mut w = World::new(Rules::default());
    let ev = format!(
        r#"{{"id":"00000000-0000-7000-8000-999999999999","type":"stock","ts":"{T0}","sku":"S1","location":"wh","op":"receive","qty":5}}"#
    );
    assert!(matches!(w.send_raw(&ev), Applied::Done(_)));
    let snap = serde_json::to_string(&w.engine.snapshot()).unwrap();
    assert_eq!(w.send_raw(&ev), Applied::Duplicate);
    assert_eq!(serde_json::to_string(&w.engine.snapshot()).unwrap(), snap);
}

/// The streamed snapshot (`Engine::write_snapshot`, what `replay` writes) is the serialised
/// snapshot byte for byte, also when identity kinds hold characters that sort before the `/`
/// a snapshot shows between kind and value (stored, the two are split by a NUL), and also
/// with most entities passivated to a cold tier.
#[test]
fn the_streamed_snapshot_is_the_snapshot() {
    use omnistream_actors::cold::MemCold;
    for bound in [0, 2] {
        let cold = MemCold::default();
        let mut w = World::new(Rules::default());
        if bound > 0 {
            w.engine.set_cold(Box::new(cold.clone()), bound, 64);
        }
        for (i, (kind, value)) in [
            ("a", "z"),
            ("a-b", "c"),
            ("a.b", "c"),
            ("ab", "c"),
            ("a", "b/c"),
            ("a", "b-c"),
            ("openid", "o1"),
            ("open", "id"),
        ]
        .iter()
        .enumerate()
        {
            w.send(&format!(
                r#"{{"type":"click","ts":"{T0}","channel":"mall","member":{{"{kind}":"{value}"}},"target":"p{i}"}}"#
            ));
            if i % 3 == 2 && bound > 0 {
                let cp = w.engine.checkpoint().unwrap();
                cold.write(cp.states);
            }
        }
        assert_eq!(w.engine.take_cold_error(), None);
        let whole = serde_json::to_string(&w.engine.try_snapshot().unwrap()).unwrap();
        for spread in [
            Spread::default(),
            Spread {
                threads: 2,
                chunk: 3,
            },
        ] {
            let mut streamed = Vec::new();
            let mut members = 0;
            let view = |kind, _: &str, _: State<'_>, buf: &mut Vec<u8>| {
                buf.extend(u8::from(kind == omnistream_actors::cold::Kind::Member).to_le_bytes());
                Ok(())
            };
            w.engine
                .write_snapshot(&mut streamed, spread, &view, &mut |_, marks| {
                    members += marks.iter().map(|&m| usize::from(m)).sum::<usize>();
                    Ok(())
                })
                .unwrap();
            assert_eq!(whole, String::from_utf8(streamed).unwrap(), "bound {bound}");
            assert_eq!(members, 8, "bound {bound}");
        }
    }
}

/// A return of more than is left to return applies what is left and says what was not;
/// the price of a returned line is the price paid, whatever the return event says.
#[test]
fn a_return_beyond_the_order_says_what_was_not_returned() {
    let who = r#"{"openid":"or"}"#;
    let mut w = bought(who, "r1", 2, 5000, T0, T1);
    let back =
        r#","lines":[{"sku":"S1","qty":5,"unit_price":1},{"sku":"S9","qty":1,"unit_price":1}]"#;
    w.send(&order("r1", "returned", who, back, T2));
    let said: Vec<String> = w
        .outputs()
        .iter()
        .filter_map(|o| match o {
            Output::OrderStatus {
                status,
                detail: Some(d),
                ..
            } if status == "returned" => Some(d.to_string()),
            Output::OrderIgnored { reason, .. } => Some(reason.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        ["S1: 5 asked back, only 2 left to return: 2 returned; \
          S1: unit_price 1 is not a price the order paid: the price paid is refunded; \
          S9: not in the order"]
    );
    // all 100 points taken back: the value is the price paid, not the 1 fen the event says
    let m = w.member_by("openid", "or").clone();
    assert_eq!(m.points.balance, 0);
    w.send(&order("r1", "returned", who, back, T3));
    assert!(w.outputs().iter().any(|o| matches!(o,
        Output::OrderIgnored { reason, .. }
            if reason == "no returnable lines: S1: 5 asked back, none left to return; S9: not in the order")));
}

/// A return naming no lines returns all that is left, and says no shortfall: what an earlier
/// return took is not asked back again.
#[test]
fn a_return_without_lines_after_a_partial_one_returns_the_rest_and_says_nothing_more() {
    let who = r#"{"openid":"ow"}"#;
    let mut w = bought(who, "r4", 4, 100, T0, T1);
    let one = r#","lines":[{"sku":"S1","qty":1,"unit_price":100}]"#;
    w.send(&order("r4", "returned", who, one, T2));
    w.send(&order("r4", "returned", who, "", T3));
    let said: Vec<(Option<String>, Option<i64>)> = w
        .outputs()
        .iter()
        .filter_map(|o| match o {
            Output::OrderStatus {
                status,
                detail,
                refund,
                ..
            } if status == "returned" => Some((detail.as_ref().map(|d| d.to_string()), *refund)),
            _ => None,
        })
        .collect();
    assert_eq!(said, [(None, Some(100)), (None, Some(300))]);
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 10);
    // once more: nothing left, and that is what is said
    w.send(&order(
        "r4",
        "returned",
        who,
        "",
        "2026-11-11T14:00:00+08:00",
    ));
    assert!(w.outputs().iter().any(|o| matches!(o,
        Output::OrderIgnored { reason, .. }
            if reason == "no returnable lines: every unit was returned already (S1: 4 of 4)")));
}

/// A merge of a member owing points with one holding some pays the debt at once: the merged
/// points could otherwise be spent while the debt stood.
#[test]
fn a_merge_pays_one_sides_debt_from_the_others_points() {
    let mut w = owing(r#"{"openid":"ox"}"#, 100_000, 900, T0, T1);
    assert_eq!(w.member_by("openid", "ox").points.debt, 900);
    let y = r#"{"openid":"oy"}"#;
    buy(&mut w, y, "c", 1, 50000, T1, T1);
    for who in ["ox", "oy"] {
        w.send(&format!(
            r#"{{"type":"identify","ts":"{T2}","member":{{"openid":"{who}","unionid":"u-1"}}}}"#
        ));
    }
    let m = w.member_by("openid", "oy").clone();
    assert_eq!(w.member_by("openid", "ox").id, m.id, "merged");
    assert_eq!((m.points.balance, m.points.debt), (0, 400));
    let last = ledger_of(&w, &m.id).pop().unwrap();
    assert_eq!(
        (last.0.as_str(), last.2, last.3, last.4),
        ("debt_paid", -500, -500, 400)
    );
    // nothing left to spend
    w.send(&order("d", "placed", y, &redeeming(500), T3));
    assert!(w.outputs().iter().any(|o| matches!(o,
        Output::OrderRejected { order, reason, .. } if order == "mall:d" && reason == "insufficient_points")));
}

/// With `rules.stock.cancel-unpaid-after-s`, a consumer order neither paid nor cancelled in
/// time lets its stock go and gives its points back, under an id of its own; a `paid`
/// after that is ignored; an order paid in time, and an order of a world without the
/// setting, keep theirs.
#[test]
fn an_order_left_unpaid_is_cancelled_after_the_configured_time() {
    let mut rules = Rules::default();
    rules.stock.cancel_unpaid_after_s = 1800;
    let who = r#"{"openid":"ou"}"#;
    let run = |rules: Rules| {
        let mut w = World::new(rules);
        w.send(&stock("S1", 10, T0));
        buy(&mut w, who, "a", 1, 100_000, T0, T0); // 1,000 points earned
        w.send(&order(
            "b",
            "placed",
            who,
            &redeeming(300),
            "2026-11-11T12:00:00+08:00",
        ));
        w.send(&order(
            "c",
            "placed",
            who,
            &redeeming(0),
            "2026-11-11T12:00:00+08:00",
        ));
        w.send(&order("c", "paid", who, "", "2026-11-11T12:29:00+08:00"));
        // 31 minutes on: the watermark passes b's due time
        w.send(&stock("S2", 1, "2026-11-11T12:31:00+08:00"));
        w
    };
    // before it comes due: b's timer waits, c's was dropped when c was paid
    let mut early = World::new(rules.clone());
    early.send(&stock("S1", 10, T0));
    for o in ["b", "c"] {
        let placed = "2026-11-11T12:00:00+08:00";
        early.send(&order(o, "placed", who, &redeeming(0), placed));
    }
    early.send(&order("c", "paid", who, "", "2026-11-11T12:29:00+08:00"));
    let timer = |o: &str| {
        early
            .engine
            .timer_of(omnistream_actors::Key::Order(o.into()))
    };
    let due = omnistream_schemas::EventTime::parse("2026-11-11T12:30:00+08:00").unwrap();
    // (a microsecond after the due time: a `paid` stamped at it counts)
    assert_eq!(
        (timer("mall:b"), timer("mall:c")),
        (Some(due.unix_us + 1), None)
    );
    early.send(&order("b", "paid", who, "", "2026-11-11T12:30:00+08:00"));
    let b = early.engine.order("mall:b").unwrap().into_owned();
    assert!(b.paid && b.status == Some(omnistream_schemas::OrderStatus::Placed));
    let mut w = run(rules.clone());
    let b = w.engine.order("mall:b").unwrap().into_owned();
    assert_eq!(b.status, Some(omnistream_schemas::OrderStatus::Cancelled));
    let c = w.engine.order("mall:c").unwrap().into_owned();
    assert!(c.paid && c.status == Some(omnistream_schemas::OrderStatus::Placed));
    // a (shipped) 1 and c 1 out of 10; b's unit came back
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 8);
    let m = w.member_by("openid", "ou").clone();
    assert_eq!(m.points.balance, 1000, "the 300 redeemed came back");
    let ledger = ledger_of(&w, &m.id);
    assert_eq!(
        ledger.last().map(|l| (l.0.as_str(), l.1.as_str(), l.2)),
        Some(("redeem_refund", "mall:b", 300))
    );
    // the cancellation says why, and what it did carries its own id and the due time
    let id = omnistream_actors::order::unpaid_cancel_id("mall:b");
    let said: Vec<_> = w.out.iter().filter(|e| e.event == id).collect();
    // (in the offset of the event that made it due: the sender's local day and hour)
    let due = omnistream_schemas::EventTime::parse("2026-11-11T12:30:00+08:00").unwrap();
    assert!(
        !said.is_empty() && said.iter().all(|e| e.at == due),
        "{said:?}"
    );
    let kinds: Vec<String> = said
        .iter()
        .map(|e| match &e.output {
            Output::OrderStatus { status, detail, .. } => {
                format!("{status}: {}", detail.as_deref().unwrap_or(""))
            }
            Output::Stock { cause, order, .. } => format!("stock {cause:?} {order:?}"),
            o => o.stream().to_string(),
        })
        .collect();
    assert!(
        kinds.contains(
            &"cancelled: not paid by 2026-11-11T12:30:00.000+08:00 (cancel-unpaid-after-s)"
                .to_string()
        ),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&r#"stock Some(Release) Some("mall:b")"#.to_string()),
        "{kinds:?}"
    );
    // the payment that comes too late is refused with the reason
    w.send(&order("b", "paid", who, "", "2026-11-11T12:40:00+08:00"));
    assert!(w.outputs().iter().any(|o| matches!(o,
        Output::OrderIgnored { order, reason, .. } if order == "mall:b" && reason == "order was cancelled")));
    // without the setting nothing is cancelled
    let w = run(Rules::default());
    let b = w.engine.order("mall:b").unwrap().into_owned();
    assert_eq!(b.status, Some(omnistream_schemas::OrderStatus::Placed));
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 7);
    // and a negative setting is refused by the rules' check, naming the key
    rules.stock.cancel_unpaid_after_s = -1;
    assert_eq!(rules.check().unwrap_err().0, "stock.cancel-unpaid-after-s");
    // and so is one longer than a year
    rules.stock.cancel_unpaid_after_s = 365 * 86_400 + 1;
    assert_eq!(rules.check().unwrap_err().0, "stock.cancel-unpaid-after-s");
}

/// An unpaid store order placed just after midnight in Beijing and cancelled by its timer
/// half an hour later: the store's refund and the member's day are the sale's local day
/// (the timer runs in the offset of the event that made it due; in UTC the refund would
/// land on the day before).
#[test]
fn an_unpaid_orders_cancellation_books_on_the_senders_local_day() {
    let mut rules = Rules::default();
    rules.stock.cancel_unpaid_after_s = 1800;
    let mut w = World::new(rules);
    w.send(&stock("S1", 10, T0));
    let lines =
        r#","lines":[{"sku":"S1","qty":1,"unit_price":5000}],"store":"st1","location":"wh""#;
    let who = r#"{"openid":"on"}"#;
    w.send(&order(
        "n",
        "placed",
        who,
        lines,
        "2026-11-12T00:10:00+08:00",
    ));
    w.send(&stock("S2", 1, "2026-11-12T00:41:00+08:00"));
    let n = w.engine.order("mall:n").unwrap().into_owned();
    assert_eq!(n.status, Some(omnistream_schemas::OrderStatus::Cancelled));
    assert_eq!(
        n.placed_at,
        Some(omnistream_schemas::EventTime::parse("2026-11-12T00:10:00+08:00").unwrap())
    );
    let s = w.engine.store("st1").unwrap().into_owned();
    let local = |t: &str| omnistream_schemas::EventTime::parse(t).unwrap().local_day();
    let day = local("2026-11-12T00:10:00+08:00");
    assert_eq!(
        s.days.keys().copied().collect::<Vec<_>>(),
        vec![day],
        "{:?}",
        s.days
    );
    assert_eq!((s.days[&day].sales, s.days[&day].refunds), (5000, 5000));
    // the member's day: the order's value is taken off the day it was added to
    let m = w.member_by("openid", "on").clone();
    let view = m.view(
        local("2026-11-12T00:41:00+08:00") * 86_400_000_000,
        day,
        &Rules::default(),
    );
    assert!(
        view.xrfm
            .iter()
            .all(|x| (x.frequency, x.monetary) == (0, 0)),
        "{:?}",
        view.xrfm
    );
}

/// More unpaid orders come due at once than one cascade may run (`MAX_CASCADE` commands):
/// every one is cancelled and its stock comes back (the limit counts per timer, as it did
/// when each tick ran its own cascade).
#[test]
fn a_burst_of_unpaid_orders_coming_due_together_all_let_their_stock_go() {
    let mut rules = Rules::default();
    rules.stock.cancel_unpaid_after_s = 1800;
    let mut w = World::new(rules);
    let n = omnistream_actors::engine::MAX_CASCADE / 2;
    w.send(&stock("S1", n as i64, T0));
    let lines = r#","lines":[{"sku":"S1","qty":1,"unit_price":100}],"location":"wh""#;
    for i in 0..n {
        let who = format!(r#"{{"openid":"b{}"}}"#, i % 500);
        w.send(&order(&format!("b{i}"), "placed", &who, lines, T1));
    }
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 0);
    w.send(&stock("S2", 1, T2));
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, n as i64);
    assert_eq!(w.engine.stats.runaway, 0);
}

/// The profile shows where a member stands against the tiers and when its points expire:
/// points earned in the period, the next tier and what it still needs, the tier kept through
/// the grace period once the points no longer qualify, and the points expiring soon.
#[test]
fn a_profile_shows_tier_progress_and_points_expiring() {
    let mut rules = Rules::default();
    rules.tiers.period_days = 30;
    rules.points.expiry_days = 60;
    let mut w = World::new(rules.clone());
    w.send(&stock("S1", 100, T0));
    // 1,500 points: silver (1,000), gold (5,000) 3,500 away
    let l = r#","lines":[{"sku":"S1","qty":1,"unit_price":150000}],"location":"wh""#;
    w.send(&order("a", "placed", r#"{"openid":"oa"}"#, l, T1));
    w.send(&order("a", "fulfilled", r#"{"openid":"oa"}"#, "", T1));
    let view = |w: &World, at: &str| {
        let t = omnistream_schemas::EventTime::parse(at).unwrap();
        let m = w.member_by("openid", "oa");
        m.view(t.unix_us, t.unix_us.div_euclid(86_400_000_000), &rules)
    };
    let v = view(&w, T2);
    assert_eq!(v.tier, "silver");
    // the change says the points it follows from
    assert!(
        w.outputs().iter().any(|o| matches!(o,
            Output::Tier { tier, from, earned: Some(1500), .. } if tier == "silver" && from == "member")),
        "{:?}",
        w.outputs()
    );
    let p = &v.tier_progress;
    assert_eq!((p.earned, p.period_days), (1500, 30));
    assert_eq!(
        (p.qualifies_for.as_str(), p.next.as_deref(), p.needed),
        ("silver", Some("gold"), Some(3500))
    );
    assert_eq!((p.kept_until, p.needed_to_keep), (None, None));
    assert_eq!(v.expiring_30d, 0, "60 days to go");
    let next = v.next_expiry.unwrap();
    assert_eq!(next.points, 1500);
    // 40 days on: the period no longer holds the points, the tier is kept through the grace,
    // and the points expire within 30 days
    let v = view(&w, "2026-12-21T11:00:00+08:00");
    let p = &v.tier_progress;
    assert_eq!((p.earned, p.qualifies_for.as_str()), (0, "member"));
    // the grace (30 days by default) from its next reckoning, which is when it stopped
    // qualifying: its timer at the midnight the order's day left the 30-day period
    let left = omnistream_schemas::EventTime::parse("2026-12-11T00:00:00+08:00")
        .unwrap()
        .unix_us;
    assert_eq!(p.kept_until, Some(left + 30 * 86_400_000_000));
    // what keeps silver (1,000 within the period), beside what reaches gold
    assert_eq!((p.needed_to_keep, p.needed), (Some(1000), Some(5000)));
    assert_eq!(v.expiring_30d, 1500);
}

/// The downgrade grace runs from when the member stopped qualifying, not from when the tier
/// was last reckoned: silver re-reckoned 13 days after it was reached, then the order behind
/// it returned, is kept the whole 14 days after the return (it was kept one day before).
#[test]
fn the_downgrade_grace_runs_from_when_the_member_stopped_qualifying() {
    let mut rules = Rules::default();
    rules.tiers.period_days = 60;
    rules.tiers.downgrade_grace_days = 14;
    let mut w = World::new(rules.clone());
    w.send(&stock("S1", 100, T0));
    let l = r#","lines":[{"sku":"S1","qty":1,"unit_price":150000}],"location":"wh""#;
    w.send(&order("g", "placed", r#"{"openid":"og"}"#, l, T1));
    w.send(&order("g", "fulfilled", r#"{"openid":"og"}"#, "", T1));
    let click = |ts: &str, who: &str| {
        format!(
            r#"{{"type":"click","ts":"{ts}","channel":"mall","member":{{"openid":"{who}"}},"target":"ad1"}}"#
        )
    };
    let tier = |w: &World| w.member_by("openid", "og").tier.to_string();
    // 13 days on: the member's own click reckons silver again
    w.send(&click("2026-11-24T10:00:00+08:00", "og"));
    // the order returned an hour later: no longer qualifying, the grace starts here
    w.send(&order(
        "g",
        "returned",
        r#"{"openid":"og"}"#,
        "",
        "2026-11-24T11:00:00+08:00",
    ));
    assert_eq!(tier(&w), "silver");
    let returned = omnistream_schemas::EventTime::parse("2026-11-24T11:00:00+08:00")
        .unwrap()
        .unix_us;
    let v = w.member_by("openid", "og").view(returned, 0, &rules);
    assert_eq!(
        v.tier_progress.kept_until,
        Some(returned + 14 * 86_400_000_000)
    );
    // others' events move time on: a day later, and 13 days later, still silver
    w.send(&click("2026-11-25T12:00:00+08:00", "other"));
    assert_eq!(
        tier(&w),
        "silver",
        "a day after the grace's old start + 14 days"
    );
    w.send(&click("2026-12-08T10:59:00+08:00", "other"));
    assert_eq!(tier(&w), "silver");
    // 14 days after the return: member
    w.send(&click("2026-12-08T11:01:00+08:00", "other"));
    assert_eq!(tier(&w), "member");
    assert!(
        w.outputs().iter().any(|o| matches!(o,
            Output::Tier { tier, from, .. } if tier == "member" && from == "silver")),
        "{:?}",
        w.outputs()
    );
}

/// A `member_id` this system never issued (a mistyped digit) starts no member and gets
/// nothing: each event's part for the member is refused and said, the order's stock and sale
/// stand, a redemption is rejected, a scan is blocked with its code left unclaimed, and the
/// real member's identities are never merged into the unknown id. A known id works as before.
#[test]
fn a_member_id_never_issued_starts_no_member_and_is_said() {
    use omnistream_actors::fraud::{Decision, NoReward};
    let mut rules = Rules::default();
    rules.campaigns.insert(
        "c1".into(),
        omnistream_actors::config::CampaignRules {
            points: 10,
            ..Default::default()
        },
    );
    let mut w = World::new(rules);
    w.send(r#"{"type":"click","ts":"2026-10-01T10:00:00+08:00","channel":"mall","member":{"openid":"oa"},"target":"ad1"}"#);
    w.send(&stock("S1", 10, T0));
    let real = w.member_by("openid", "oa").id.clone();
    // the same id with its last digit changed
    let last = real.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &real[..real.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let unknown = |said: &[Output]| -> Vec<(String, Option<String>)> {
        said.iter()
            .filter_map(|o| match o {
                Output::UnknownMember {
                    member,
                    about,
                    order,
                } if *member == typo => {
                    Some((about.to_string(), order.as_ref().map(|o| o.to_string())))
                }
                _ => None,
            })
            .collect()
    };
    let by = |id: &str| format!(r#"{{"member_id":"{id}"}}"#);

    let said = w.said(&format!(
        r#"{{"type":"click","ts":"{T0}","channel":"mall","member":{},"target":"ad1"}}"#,
        by(&typo)
    ));
    assert_eq!(unknown(&said), [("click".to_string(), None)], "{said:?}");

    // an order: its stock and sale stand, its points are said not applied
    let line = r#","lines":[{"sku":"S1","qty":1,"unit_price":1000}],"location":"wh","store":"st1""#;
    let said = w.said(&order("t1", "placed", &by(&typo), line, T0));
    assert!(
        said.iter()
            .any(|o| matches!(o, Output::OrderAccepted { order, .. } if order == "mall:t1")),
        "{said:?}"
    );
    let placed = ("order_placed".to_string(), Some("mall:t1".to_string()));
    assert_eq!(unknown(&said), [placed], "{said:?}");
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 9);
    let said = w.said(&order("t1", "fulfilled", &by(&typo), "", T1));
    let fulfilled = ("order_fulfilled".to_string(), Some("mall:t1".to_string()));
    assert_eq!(unknown(&said), [fulfilled], "{said:?}");
    assert!(!said.iter().any(|o| matches!(o, Output::Ledger { .. })));

    // a redemption: rejected, holding nothing
    let redeem = format!(r#"{line},"points_redeemed":10"#);
    let said = w.said(&order("t2", "placed", &by(&typo), &redeem, T1));
    assert!(
        said.iter().any(|o| matches!(
            o,
            Output::OrderRejected { order, reason, .. } if order == "mall:t2" && reason == "unknown_member"
        )),
        "{said:?}"
    );
    let redeem = ("order_redeem".to_string(), Some("mall:t2".to_string()));
    assert_eq!(unknown(&said), [redeem], "{said:?}");
    assert_eq!(w.engine.sku("S1").unwrap().view().atp, 9);

    // a scan: blocked, nothing checked or paid, the code left for its real owner
    let scan = |who: &str| {
        format!(
            r#"{{"type":"scan","ts":"{T1}","channel":"campaign","code":"K1","sku":"S1","campaign":"c1","member":{},"device":"d1","ip":"1.2.3.4"}}"#,
            by(who)
        )
    };
    let said = w.said(&scan(&typo));
    assert!(
        matches!(
            &said[..],
            [Output::Decision {
                decision: Decision::Block,
                reward: 0,
                no_reward: Some(NoReward::UnknownMember),
                member,
                ..
            }] if *member == typo
        ),
        "{said:?}"
    );
    let said = w.said(&scan(&real));
    assert!(
        said.iter().any(|o| matches!(
            o,
            Output::Decision { decision: Decision::Allow, reward: 10, member, .. } if *member == real
        )),
        "{said:?}"
    );

    // with other identities: refused whole; a new one stays unbound, a known one's member is
    // not merged into the unknown id
    for ids in [
        format!(r#"{{"member_id":"{typo}","openid":"ob"}}"#),
        format!(r#"{{"openid":"oa","member_id":"{typo}"}}"#),
    ] {
        let said = w.said(&format!(
            r#"{{"type":"identify","ts":"{T2}","member":{ids}}}"#
        ));
        assert_eq!(unknown(&said), [("identify".to_string(), None)], "{said:?}");
    }
    assert!(w.engine.member_of("openid", "ob").is_none());
    assert_eq!(w.member_by("openid", "oa").id, real);
    assert!(w.engine.member(&typo).is_none(), "no member started");
    assert!(!w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::Merged { .. })));

    // the issued id: binds a new identity and counts the event, as before
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T2}","member":{{"member_id":"{real}","openid":"oc"}}}}"#
    ));
    assert_eq!(w.member_by("openid", "oc").id, real);
    let m = w.member_by("openid", "oa");
    assert_eq!(m.points.balance, 10, "the scan's reward");

    // an order placed under the mistyped id, then fulfilled naming the member rightly: the
    // member gets the order then, and earns its points
    w.send(&order("t3", "placed", &by(&typo), line, T2));
    assert!(w.engine.order("mall:t3").unwrap().member_unknown);
    let said = w.said(&order("t3", "fulfilled", &by(&real), "", T3));
    assert!(unknown(&said).is_empty(), "{said:?}");
    assert!(
        said.iter().any(|o| matches!(
            o,
            Output::Ledger { member, reason, about: Some(about), .. }
                if *member == real && reason == "earned" && about == "mall:t3"
        )),
        "{said:?}"
    );
    assert!(!w.engine.order("mall:t3").unwrap().member_unknown);

    // shipped under the mistyped id, then shipped again naming the member: it earns them
    w.send(&order("t4", "placed", &by(&typo), line, T2));
    w.send(&order("t4", "fulfilled", &by(&typo), "", T2));
    let said = w.said(&order("t4", "fulfilled", &by(&real), "", T3));
    assert!(
        said.iter().any(|o| matches!(
            o,
            Output::Ledger { member, reason, about: Some(about), .. }
                if *member == real && reason == "earned" && about == "mall:t4"
        )),
        "{said:?}"
    );
    let m = w.member_by("openid", "oa");
    assert_eq!(m.points.pending, 0, "nothing left pending");
}

/// A person replaces a member's phone: the new one is bound to it and the old one released
/// (the old number then starts a new member, the new one finds this one); a phone another
/// member has is refused, naming that member, and nothing moves.
#[test]
fn a_phone_replaced_by_a_person_moves_the_member_to_the_new_number() {
    use omnistream_actors::MemberCmd;
    let mut w = World::new(Rules::default());
    // `a` is started by its phone: the old number's next owner must not get `a`'s id
    w.send(&format!(
        r#"{{"type":"click","ts":"{T0}","channel":"store","member":{{"phone":"13800000001"}},"target":"ad1"}}"#
    ));
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T0}","member":{{"openid":"oa","phone":"13800000001"}}}}"#
    ));
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T0}","member":{{"openid":"ob","phone":"13800000002"}}}}"#
    ));
    let a = w.member_by("openid", "oa").id.clone();
    let b = w.member_by("openid", "ob").id.clone();
    let mut n = 0u64;
    let mut replace = |w: &mut World, who: &str, phone: &str| -> Vec<Output> {
        n += 1;
        let cmd = MemberCmd::ReplacePhone {
            phone: hashed(phone).into(),
            reference: "CS-1".into(),
        };
        w.persons(who, cmd, 77, n)
    };
    // another member's phone: refused, naming it
    let said = replace(&mut w, &a, "13800000002");
    assert!(
        matches!(&said[..], [Output::MergeConflict { member, other, value: Some(v), .. }] if *member == a && *other == b && *v == hashed("13800000002")),
        "{said:?}"
    );
    assert_eq!(w.member_by("phone", "13800000002").id, b);
    assert_eq!(w.member_by("phone", "13800000001").id, a);
    // a new number: bound, the old one released
    let said = replace(&mut w, &a, "13900000009");
    assert!(
        matches!(&said[..], [Output::PhoneReplaced { member, phone, previous: Some(old), .. }]
            if *member == a && *phone == hashed("13900000009") && *old == hashed("13800000001")),
        "{said:?}"
    );
    let m = w.member_by("phone", "13900000009");
    assert_eq!(m.id, a);
    assert_eq!(m.ids.of_kind("phone"), Some(hashed("13900000009").as_str()));
    assert_eq!(m.ids.len(), 2, "openid and the new phone");
    assert!(w
        .engine
        .member_of("phone", &hashed("13800000001"))
        .is_none());
    // the same again changes nothing
    assert!(replace(&mut w, &a, "13900000009").is_empty());
    // the old number, now nobody's, starts a member of its own; the new one finds `a`
    w.send(&format!(
        r#"{{"type":"click","ts":"{T1}","channel":"mall","member":{{"phone":"13800000001"}},"target":"ad1"}}"#
    ));
    assert_ne!(w.member_by("phone", "13800000001").id, a);
    w.send(&format!(
        r#"{{"type":"identify","ts":"{T1}","member":{{"openid":"oa","phone":"13900000009"}}}}"#
    ));
    assert_eq!(
        w.member_by("openid", "oa").conflicts,
        1,
        "only the refusal above"
    );
}

/// Timers set for a time with a fraction of a millisecond (an event stamped to the
/// microsecond) fire and do what they were set for: the points expire, the grace ends.
#[test]
fn timers_at_a_microsecond_fraction_fire_once_and_act() {
    let mut rules = Rules::default();
    rules.points.expiry_days = 30;
    rules.tiers.period_days = 60;
    rules.tiers.downgrade_grace_days = 14;
    let mut w = World::new(rules.clone());
    w.send(&stock("S1", 100, T0));
    let l = r#","lines":[{"sku":"S1","qty":1,"unit_price":150000}],"location":"wh""#;
    let at = "2026-11-11T11:00:00.000500+08:00";
    w.send(&order("u", "placed", r#"{"openid":"ou"}"#, l, at));
    w.send(&order("u", "fulfilled", r#"{"openid":"ou"}"#, "", at));
    w.send(&order(
        "u",
        "returned",
        r#"{"openid":"ou"}"#,
        "",
        "2026-11-12T11:00:00.000700+08:00",
    ));
    let click = |ts: &str| {
        format!(
            r#"{{"type":"click","ts":"{ts}","channel":"mall","member":{{"openid":"other"}},"target":"ad1"}}"#
        )
    };
    w.send(&click("2027-01-30T12:00:00+08:00"));
    let m = w.member_by("openid", "ou");
    assert_eq!(m.tier.as_str(), "member");
    assert_eq!(m.points.balance, 0);
}

/// A return takes back the points the order brought from the lot it credited, not from the
/// member's oldest points (taking those would leave the order's points a year of life and
/// expire the member's own sooner); what that lot no longer holds comes from the oldest.
#[test]
fn a_return_takes_back_the_points_of_the_order_returned() {
    const EARLY: &str = "2026-11-11T10:00:00+08:00";
    const LATER: &str = "2027-06-01T10:00:00+08:00";
    let who = r#"{"openid":"oq"}"#;
    let at = |ts: &str| omnistream_schemas::EventTime::parse(ts).unwrap().unix_us;
    let lots = |w: &World| {
        w.member_by("openid", "oq")
            .points
            .lots
            .iter()
            .collect::<Vec<_>>()
    };
    let mut w = bought(who, "a", 1, 30_000, EARLY, EARLY);
    buy(&mut w, who, "c", 2, 10_000, LATER, LATER);
    assert_eq!(lots(&w), [(at(EARLY), 300), (at(LATER), 200)]);
    // half of the later order back: 100 of its own lot, the early points untouched (they
    // expire first, and the order returned did not bring them)
    let one = r#","lines":[{"sku":"S1","qty":1,"unit_price":10000}]"#;
    w.send(&order(
        "c",
        "returned",
        who,
        one,
        "2027-07-01T10:00:00+08:00",
    ));
    assert_eq!(lots(&w), [(at(EARLY), 300), (at(LATER), 100)]);
    // the rest, once 50 of the later lot were spent with the early 300: 50 from its own lot,
    // and the other 50 are owed (nothing else is left)
    w.send(&order(
        "b",
        "placed",
        who,
        &redeeming(350),
        "2027-07-02T10:00:00+08:00",
    ));
    assert_eq!(lots(&w), [(at(LATER), 50)]);
    w.send(&order(
        "c",
        "returned",
        who,
        one,
        "2027-07-03T10:00:00+08:00",
    ));
    let m = w.member_by("openid", "oq").clone();
    assert_eq!((m.points.balance, m.points.debt), (0, 50));
    assert!(lots(&w).is_empty());
    // the lot is the fulfilment's: an order placed first and fulfilled last takes back the
    // later lot
    let mut w = World::new(Rules::default());
    w.send(&stock("S1", 10, T0));
    let a = r#","lines":[{"sku":"S1","qty":1,"unit_price":30000}],"location":"wh""#;
    w.send(&order("a", "placed", who, a, EARLY));
    buy(&mut w, who, "c", 1, 20_000, EARLY, EARLY);
    w.send(&order("a", "fulfilled", who, "", LATER));
    assert_eq!(lots(&w), [(at(EARLY), 200), (at(LATER), 300)]);
    w.send(&order(
        "a",
        "returned",
        who,
        "",
        "2027-07-01T10:00:00+08:00",
    ));
    assert_eq!(
        lots(&w),
        [(at(EARLY), 200)],
        "the later lot was the order's"
    );
    let id = w.member_by("openid", "oq").id.clone();
    assert_eq!(w.ledger_sum(&id), 200);
}

/// Points paid with and given back (a cancellation, a return) keep the dates of the lots
/// they were taken from: they expire when they would have had they never been spent (they
/// came back as a lot of the refund's time, a fresh year of life). A part given back is the
/// youngest part taken (what stays spent is what a smaller redemption would have taken); a
/// lot given back after its expiry expires at once.
#[test]
fn points_given_back_keep_the_dates_they_were_earned_on() {
    const EARLY: &str = "2026-11-11T10:00:00+08:00";
    const LATER: &str = "2027-06-01T10:00:00+08:00";
    const SPENT: &str = "2027-09-01T10:00:00+08:00";
    let lots = |w: &World| {
        w.member_by("openid", "og")
            .points
            .lots
            .iter()
            .collect::<Vec<_>>()
    };
    let at = |ts: &str| omnistream_schemas::EventTime::parse(ts).unwrap().unix_us;
    let who = r#"{"openid":"og"}"#;
    let spend = |w: &mut World, qty: i64| {
        let l = format!(
            r#","lines":[{{"sku":"S1","qty":{qty},"unit_price":100}}],"location":"wh","points_redeemed":400"#
        );
        w.send(&order("b", "placed", who, &l, SPENT));
    };
    let earned = || {
        let mut w = bought(who, "a", 1, 30_000, EARLY, EARLY);
        buy(&mut w, who, "c", 1, 20_000, LATER, LATER);
        assert_eq!(lots(&w), [(at(EARLY), 300), (at(LATER), 200)]);
        w
    };
    // cancelled: every lot back as it was, and the oldest expires on its day
    let mut w = earned();
    spend(&mut w, 1);
    assert_eq!(
        lots(&w),
        [(at(LATER), 100)],
        "300 of the early lot, 100 of the later"
    );
    w.send(&order(
        "b",
        "cancelled",
        who,
        "",
        "2027-10-01T10:00:00+08:00",
    ));
    assert_eq!(lots(&w), [(at(EARLY), 300), (at(LATER), 200)]);
    // the profile shows when each of them expires
    let m = w.member_by("openid", "og").clone();
    let view = m.view(w.engine.watermark(), 0, &w.engine.rules);
    let year = 365 * 86_400_000_000;
    let expiries: Vec<_> = view.expiries.iter().map(|e| (e.at, e.points)).collect();
    assert_eq!(expiries, [(at(EARLY) + year, 300), (at(LATER) + year, 200)]);
    assert_eq!(view.next_expiry.map(|e| e.points), Some(300));
    w.send(r#"{"type":"click","ts":"2027-11-12T10:00:00+08:00","channel":"mall","member":{"openid":"other"},"target":"ad"}"#);
    assert_eq!(
        lots(&w),
        [(at(LATER), 200)],
        "the early lot expired a year on"
    );
    let id = w.member_by("openid", "og").id.clone();
    assert_eq!(w.ledger_sum(&id), 200);
    // half returned: the 200 given back are the later lot's 100 and 100 of the early one
    let mut w = earned();
    spend(&mut w, 2);
    w.send(&order(
        "b",
        "fulfilled",
        who,
        "",
        "2027-09-02T10:00:00+08:00",
    ));
    let back = r#","lines":[{"sku":"S1","qty":1,"unit_price":100}]"#;
    w.send(&order(
        "b",
        "returned",
        who,
        back,
        "2027-09-03T10:00:00+08:00",
    ));
    let m = w.member_by("openid", "og").clone();
    assert_eq!(
        m.points.balance, 301,
        "100 left, 2 earned, 1 of them reversed, 200 back"
    );
    // (the refund came first, then the reversal of 1 took from the lot the order earned)
    let fulfilled = at("2027-09-02T10:00:00+08:00");
    assert_eq!(
        lots(&w),
        [(at(EARLY), 100), (at(LATER), 200), (fulfilled, 1)]
    );
    // cancelled after the early lot's expiry: given back, then expired in the same breath
    let mut w = earned();
    spend(&mut w, 1);
    w.send(&order(
        "b",
        "cancelled",
        who,
        "",
        "2027-11-20T10:00:00+08:00",
    ));
    let id = w.member_by("openid", "og").id.clone();
    let tail: Vec<_> = ledger_of(&w, &id)
        .into_iter()
        .rev()
        .take(2)
        .rev()
        .map(|(reason, _, delta, _, _)| (reason, delta))
        .collect();
    assert_eq!(
        tail,
        [
            ("redeem_refund".to_string(), 400),
            ("expired".to_string(), -300)
        ]
    );
    assert_eq!(lots(&w), [(at(LATER), 200)]);
    assert_eq!(w.ledger_sum(&id), 200);
}

/// Points given back after their expiry pay no debt: they expire as they would have had
/// they never been spent, and the reversal of what the returned order earned is owed in
/// full (a member spending points about to expire, then returning the order, keeps
/// nothing of them).
#[test]
fn points_given_back_past_their_expiry_pay_no_debt() {
    let who = r#"{"openid":"ox"}"#;
    let mut w = bought(who, "a", 1, 10_000, T0, T0);
    let l = r#","lines":[{"sku":"S1","qty":1,"unit_price":5000}],"location":"wh","points_redeemed":100"#;
    w.send(&order("b", "placed", who, l, "2027-11-10T10:00:00+08:00"));
    w.send(&order(
        "b",
        "fulfilled",
        who,
        "",
        "2027-11-10T11:00:00+08:00",
    ));
    w.send(&order(
        "c",
        "placed",
        who,
        &redeeming(50),
        "2027-11-10T12:00:00+08:00",
    ));
    let m = w.member_by("openid", "ox").clone();
    assert_eq!((m.points.balance, m.points.debt), (0, 0));
    w.send(&order(
        "b",
        "returned",
        who,
        "",
        "2027-11-12T10:00:00+08:00",
    ));
    let m = w.member_by("openid", "ox").clone();
    assert_eq!((m.points.balance, m.points.debt), (0, 50));
    let tail: Vec<_> = ledger_of(&w, &m.id)
        .into_iter()
        .rev()
        .take(3)
        .rev()
        .map(|(reason, _, delta, debt_delta, _)| (reason, delta, debt_delta))
        .collect();
    assert_eq!(
        tail,
        [
            ("redeem_refund".to_string(), 100, 0),
            ("expired".to_string(), -100, 0),
            ("reversed".to_string(), 0, 50),
        ]
    );
}

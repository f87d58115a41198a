//! Scan fraud through the engine: each pattern of the issue and its legitimate look-alike as
//! JSON events through the real decoder, with the decisions and their reasons checked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use omnistream_actors::cmd::{Cmd, MemberCmd};
use omnistream_actors::config::CampaignRules;
use omnistream_actors::engine::{Emitted, Engine};
use omnistream_actors::fraud::{Decision, Reason};
use omnistream_actors::{Key, Output, Rules};
use omnistream_schemas::{Decoder, EventTime, Pii};

struct World {
    engine: Engine,
    out: Vec<Emitted>,
    n: u32,
    decoder: Decoder,
}

/// One scan's decision, as the tests look at it.
#[derive(Debug, Clone)]
struct D {
    code: String,
    member: String,
    decision: Decision,
    score: u8,
    reasons: Vec<Reason>,
    reward: i64,
    held: i64,
    shadow: Option<Decision>,
    event: uuid::Uuid,
}

/// Seconds after 2026-11-11T00:00:00+08:00 (negative: before) as RFC 3339.
fn ts(s: i64) -> String {
    EventTime {
        unix_us: (1_794_326_400 + s) * 1_000_000,
        offset_min: 480,
    }
    .to_string()
}

/// A scan: `who` is an openid; geo as `(lat, lon)`.
fn scan(t: i64, code: &str, who: &str, device: &str, ip: &str, geo: Option<(f64, f64)>) -> String {
    let geo = geo
        .map(|(la, lo)| format!(r#","geo":{{"lat":{la},"lon":{lo}}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"type":"scan","ts":"{}","channel":"campaign","code":"{code}","sku":"S1","campaign":"c1","member":{{"openid":"{who}"}},"device":"{device}","ip":"{ip}"{geo}}}"#,
        ts(t)
    )
}

/// Codes starting with `prefix` registered as batch `batch` of `sku`, shipped to `dealer`,
/// at second `t`.
fn code_batch(batch: &str, prefix: &str, sku: &str, dealer: &str, t: i64) -> String {
    format!(
        r#"{{"type":"code_batch","ts":"{}","batch":"{batch}","prefix":"{prefix}","sku":"{sku}","dealer":"{dealer}"}}"#,
        ts(t)
    )
}

/// Activity long before the campaign: the member is an established one.
fn history(t: i64, who: &str) -> String {
    format!(
        r#"{{"type":"click","ts":"{}","channel":"mall","member":{{"openid":"{who}"}},"target":"ad1"}}"#,
        ts(t)
    )
}

/// Activity on a device: a click in the mall from `device`.
fn click_on(t: i64, who: &str, device: &str) -> String {
    format!(
        r#"{{"type":"click","ts":"{}","channel":"mall","member":{{"openid":"{who}"}},"target":"ad1","device":"{device}"}}"#,
        ts(t)
    )
}

const SHANGHAI: (f64, f64) = (31.23, 121.47);
const BEIJING: (f64, f64) = (39.90, 116.40);

impl World {
    fn new(rules: Rules) -> Self {
        World::keyed(rules, b"fraud-key")
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

    fn default() -> Self {
        World::new(Rules::default())
    }

    fn send(&mut self, json: &str) {
        self.n += 1;
        let json = format!(
            "{{\"id\":\"00000000-0000-7000-8000-{:012}\",{}",
            self.n,
            &json[1..]
        );
        let ev = self
            .decoder
            .decode(json.as_bytes())
            .unwrap_or_else(|r| panic!("{r}: {json}"));
        self.engine.apply(&ev, &mut self.out);
    }

    fn decisions(&self) -> Vec<D> {
        self.out
            .iter()
            .filter_map(|e| match &e.output {
                Output::Decision {
                    scan_event: event,
                    code,
                    member,
                    decision,
                    score,
                    reasons,
                    reward,
                    held,
                    shadow_decision,
                    ..
                } => Some(D {
                    code: code.to_string(),
                    member: member.to_string(),
                    decision: *decision,
                    score: *score,
                    reasons: reasons.iter().map(|r| r.reason).collect(),
                    reward: *reward,
                    held: *held,
                    shadow: *shadow_decision,
                    event: *event,
                }),
                _ => None,
            })
            .collect()
    }

    /// The decision on the latest scan.
    fn last(&self) -> D {
        self.decisions().pop().expect("a decision")
    }

    fn balance(&self, who: &str) -> i64 {
        self.engine
            .member_of("openid", who)
            .map_or(0, |m| m.points.balance)
    }
}

fn count(ds: &[D], f: impl Fn(&D) -> bool) -> usize {
    ds.iter().filter(|d| f(d)).count()
}

fn flagged(d: &D) -> bool {
    matches!(d.decision, Decision::Review | Decision::Block)
}

#[test]
fn a_plain_scan_is_allowed_and_rewarded_with_one_decision() {
    let mut w = World::default();
    w.send(&scan(
        3_600,
        "C1",
        "oa",
        "d1",
        "112.65.3.18",
        Some(SHANGHAI),
    ));
    let ds = w.decisions();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].decision, Decision::Allow);
    assert_eq!((ds[0].score, ds[0].reward, ds[0].held), (0, 10, 0));
    assert_eq!(ds[0].code, "C1");
    assert_eq!(w.balance("oa"), 10);
    assert_eq!(
        ds[0].member,
        w.engine.member_of("openid", "oa").unwrap().id.as_str()
    );
}

#[test]
fn a_decision_line_names_the_scan_once_and_carries_its_reasons() {
    let mut w = World::default();
    w.send(&scan(60, "X1", "a", "da", "5.5.5.5", None));
    w.send(&scan(120, "X1", "b", "db", "5.5.5.6", None));
    let e = w
        .out
        .iter()
        .rev()
        .find(|e| matches!(e.output, Output::Decision { .. }))
        .unwrap();
    let line = serde_json::to_string(e).unwrap();
    assert_eq!(line.matches("\"event\":").count(), 1, "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["scan_event"], v["event"]);
    assert_eq!(v["decision"], "block");
    assert_eq!(v["reasons"][0]["reason"], "code_shared");
    assert_eq!(v["reasons"][0]["points"], 100);
    assert_eq!(e.output.stream(), "decisions");
}

#[test]
fn a_shared_code_photo_is_blocked_for_everyone_but_the_first_and_a_rescan_is_a_duplicate() {
    let mut w = World::default();
    w.send(&scan(100, "PHOTO1", "owner", "d0", "10.1.0.1", None));
    for i in 0..6 {
        w.send(&scan(
            200 + i * 60,
            "PHOTO1",
            &format!("o{i}"),
            &format!("d{i}x"),
            &format!("10.2.{i}.1"),
            None,
        ));
    }
    let ds = w.decisions();
    assert_eq!(ds[0].decision, Decision::Allow);
    for d in &ds[1..] {
        assert_eq!(d.decision, Decision::Block, "{d:?}");
        assert_eq!(d.reasons, vec![Reason::CodeShared]);
        assert_eq!(d.reward, 0);
    }
    // the owner scanning their own cap again: no second reward, not fraud
    w.send(&scan(900, "PHOTO1", "owner", "d0", "10.1.0.1", None));
    let d = w.last();
    assert_eq!(d.decision, Decision::Duplicate);
    assert_eq!(d.reasons, vec![Reason::CodeRepeat]);
    assert_eq!(w.balance("owner"), 10);
    assert_eq!(w.engine.code("PHOTO1").unwrap().others, 6);
}

#[test]
fn a_device_farm_is_caught_from_its_second_new_account() {
    let mut w = World::default();
    // the system has known the brand's members for a month: first seen today means new
    w.send(&history(-86_400 * 30, "someone"));
    for i in 0..12 {
        let ip = format!("36.1.{}.7", i % 3);
        w.send(&scan(
            i * 90,
            &format!("F{i}"),
            &format!("farm{i}"),
            "emu-1",
            &ip,
            None,
        ));
    }
    let ds = w.decisions();
    assert!(!flagged(&ds[0]), "one new account on a new phone is anyone");
    assert!(
        ds[1..4]
            .iter()
            .all(|d| flagged(d) && d.reasons.contains(&Reason::FreshAccounts)),
        "new accounts only, no established member: not a household's phone {:?}",
        ds[1..4]
            .iter()
            .map(|d| (d.decision, d.score))
            .collect::<Vec<_>>()
    );
    assert!(
        ds[4..].iter().all(flagged),
        "{:?}",
        ds[4..]
            .iter()
            .map(|d| (d.decision, d.score))
            .collect::<Vec<_>>()
    );
    assert!(ds[4..]
        .iter()
        .all(|d| d.reasons.contains(&Reason::DeviceShared)));
    assert!(
        ds[8..].iter().all(|d| d.decision == Decision::Block),
        "twice the family size blocks"
    );
}

#[test]
fn a_family_sharing_a_phone_is_never_flagged() {
    let mut w = World::default();
    for (i, who) in ["mum", "dad", "kid", "gran"].iter().enumerate() {
        w.send(&history(-86_400 * 30 - i as i64, who));
    }
    for round in 0..2 {
        for (i, who) in ["mum", "dad", "kid", "gran"].iter().enumerate() {
            let t = 3_600 * (round * 4 + i as i64);
            w.send(&scan(
                t,
                &format!("FAM{round}{i}"),
                who,
                "home-phone",
                "58.1.2.3",
                Some(SHANGHAI),
            ));
        }
    }
    let ds = w.decisions();
    assert_eq!(ds.len(), 8);
    assert!(ds.iter().all(|d| d.decision == Decision::Allow), "{ds:?}");
}

#[test]
fn a_household_phone_with_new_relatives_next_to_an_established_member_is_allowed() {
    let mut w = World::default();
    w.send(&history(-86_400 * 30, "mum"));
    // mum scans first; then three relatives who never used the brand before, half an hour
    // apart, on her phone and home address
    let people = ["mum", "newdad", "newkid", "newgran"];
    for (i, who) in people.iter().enumerate() {
        w.send(&scan(
            1_800 * i as i64,
            &format!("HH{i}"),
            who,
            "home-phone",
            "58.1.2.4",
            Some(SHANGHAI),
        ));
    }
    let ds = w.decisions();
    assert_eq!(ds.len(), 4);
    assert!(ds.iter().all(|d| d.decision == Decision::Allow), "{ds:?}");
}

#[test]
fn new_relatives_on_a_phone_in_use_for_weeks_are_allowed_and_a_farm_phone_clicking_today_is_not() {
    let mut w = World::default();
    // the parent browsed the mall from the home phone a month ago, and has not scanned today
    w.send(&history(-86_400 * 30, "mum"));
    w.send(&click_on(-86_400 * 30 + 60, "mum", "home-phone"));
    for (i, who) in ["newdad", "newkid", "newgran"].iter().enumerate() {
        w.send(&scan(
            1_800 * i as i64,
            &format!("HK{i}"),
            who,
            "home-phone",
            "58.1.2.5",
            Some(SHANGHAI),
        ));
    }
    // a farm's phone that clicked an ad an hour before its accounts scan
    w.send(&click_on(-3_600, "farm0", "emu-2"));
    for i in 0..3 {
        w.send(&scan(
            i * 90,
            &format!("FK{i}"),
            &format!("farm{i}"),
            "emu-2",
            &format!("36.2.{i}.7"),
            None,
        ));
    }
    let ds = w.decisions();
    assert_eq!(ds.len(), 6);
    assert!(
        ds[..3].iter().all(|d| d.decision == Decision::Allow),
        "{:?}",
        &ds[..3]
    );
    assert!(
        ds[4..]
            .iter()
            .all(|d| flagged(d) && d.reasons.contains(&Reason::FreshAccounts)),
        "{:?}",
        &ds[3..]
    );
}

#[test]
fn two_new_relatives_hours_apart_on_a_new_phone_are_allowed_and_a_third_is_reviewed() {
    let mut w = World::default();
    w.send(&history(-86_400 * 30, "someone"));
    for (i, who) in ["newmum", "newkid", "newgran"].iter().enumerate() {
        w.send(&scan(
            3 * 3_600 * i as i64,
            &format!("HR{i}"),
            who,
            "new-home-phone",
            "58.1.2.6",
            Some(SHANGHAI),
        ));
    }
    let ds = w.decisions();
    assert_eq!(ds.len(), 3);
    assert!(
        ds[..2].iter().all(|d| d.decision == Decision::Allow),
        "{:?}",
        &ds[..2]
    );
    assert!(
        flagged(&ds[2]) && ds[2].reasons.contains(&Reason::FreshAccounts),
        "{:?}",
        ds[2]
    );
}

#[test]
fn on_a_cold_start_account_age_says_nothing() {
    // no memory before today: the family's relatives are not known to be new accounts
    let mut w = World::default();
    for (i, who) in ["ma", "pa", "son"].iter().enumerate() {
        w.send(&scan(
            600 * i as i64,
            &format!("CS{i}"),
            who,
            "family-phone",
            "58.1.2.9",
            Some(SHANGHAI),
        ));
        w.send(&scan(
            600 * i as i64 + 20,
            &format!("CT{i}"),
            who,
            "family-phone",
            "58.1.2.9",
            Some(SHANGHAI),
        ));
    }
    let ds = w.decisions();
    assert_eq!(ds.len(), 6);
    assert!(ds.iter().all(|d| d.decision == Decision::Allow), "{ds:?}");
}

/// `ages-known-from-start`: a programme whose members are all new (or were loaded first)
/// trusts first-seen from the first event, so a farm is caught on the deployment's first
/// day as it is with a month of history.
#[test]
fn with_ages_known_from_start_a_farm_is_caught_on_the_first_day() {
    let farm = |rules: Rules| {
        let mut w = World::new(rules);
        for i in 0..6 {
            w.send(&scan(
                i * 20,
                &format!("F{i}"),
                &format!("farm{i}"),
                "emu-1",
                "36.1.1.7",
                None,
            ));
        }
        w.decisions()
    };
    let cold = farm(Rules::default());
    assert!(
        cold[..4]
            .iter()
            .all(|d| !d.reasons.contains(&Reason::FreshAccounts)),
        "{cold:?}"
    );
    let mut rules = Rules::default();
    rules.fraud.ages_known_from_start = true;
    let known = farm(rules);
    assert!(
        !flagged(&known[0]),
        "one new account on a new phone is anyone"
    );
    assert!(
        known[1..]
            .iter()
            .all(|d| flagged(d) && d.reasons.contains(&Reason::FreshAccounts)),
        "{known:?}"
    );
}

#[test]
fn a_new_members_first_scans_are_allowed() {
    let mut w = World::default();
    // a genuine new customer: scans two caps a few minutes apart at home, then one later
    for (i, t) in [0, 240, 5_400].iter().enumerate() {
        w.send(&scan(
            *t,
            &format!("NEW{i}"),
            "newcomer",
            "own-phone",
            "58.3.4.5",
            Some(SHANGHAI),
        ));
    }
    let ds = w.decisions();
    assert_eq!(ds.len(), 3);
    assert!(ds.iter().all(|d| d.decision == Decision::Allow), "{ds:?}");
}

#[test]
fn scripted_batch_harvesting_is_blocked_within_a_few_scans() {
    let mut w = World::default();
    w.send(&code_batch("B1", "HB", "S1", "dl1", 0));
    w.send(&history(-86_400 * 40, "collector"));
    for i in 0..40 {
        w.send(&scan(
            600 + i * 3,
            &format!("HB{i:06}"),
            "collector",
            "ph-9",
            "61.2.3.4",
            None,
        ));
    }
    let ds = w.decisions();
    assert!(
        count(&ds[..2], flagged) == 0,
        "the first two caps look like anyone's"
    );
    assert!(
        ds[2..].iter().all(flagged),
        "a third cap of one batch within the minute is a script's pace"
    );
    assert!(
        ds[10..].iter().all(|d| d.decision == Decision::Block),
        "{:?}",
        ds.iter().map(|d| d.score).collect::<Vec<_>>()
    );
    let d = &ds[20];
    assert!(
        d.reasons.contains(&Reason::BatchHarvest) && d.reasons.contains(&Reason::MemberVelocity)
    );
    assert_eq!(w.balance("collector"), 20, "two paid before it was caught");
}

#[test]
fn a_shop_owner_scanning_stock_at_a_human_pace_is_allowed() {
    let mut w = World::default();
    w.send(&code_batch("B1", "SB", "S1", "dl1", 0));
    w.send(&history(-86_400 * 10, "shopkeeper"));
    for i in 0..12 {
        w.send(&scan(
            3_600 + i * 150,
            &format!("SB{i:06}"),
            "shopkeeper",
            "shop-phone",
            "61.9.9.9",
            Some(SHANGHAI),
        ));
    }
    let ds = w.decisions();
    assert!(
        ds.iter().all(|d| d.decision == Decision::Allow),
        "{:?}",
        ds.iter()
            .map(|d| (d.score, d.reasons.clone()))
            .collect::<Vec<_>>()
    );
    assert!(
        ds.iter()
            .all(|d| !d.reasons.contains(&Reason::BatchHarvest)),
        "a human pace stays within the batch limit of the window"
    );
}

#[test]
fn a_shop_owner_the_store_saw_arrive_may_scan_more_caps_of_one_batch_at_a_human_pace() {
    let batch = code_batch("B1", "VB", "S1", "dl1", 0);
    // seven caps of one batch 80 s apart: over the five of the batch window
    let stock = |w: &mut World, who: &str, store: &str| {
        for i in 0..7 {
            let json = scan(
                3_600 + i * 80,
                &format!("VB{who}{i:04}"),
                who,
                "sp",
                "61.9.9.7",
                None,
            );
            w.send(&json.replace(r#""ip""#, &format!(r#""store":"{store}","ip""#)));
        }
    };
    let visit = |who: &str| {
        format!(
            r#"{{"type":"visit","ts":"{}","channel":"store","store":"st-1","visitor":"member","member":{{"openid":"{who}"}},"duration_s":3600}}"#,
            ts(3_500)
        )
    };
    // the store recorded the owner's visit: the window's limit doubles
    let mut w = World::default();
    w.send(&batch);
    w.send(&history(-86_400 * 10, "owner"));
    w.send(&visit("owner"));
    stock(&mut w, "owner", "st-1");
    let ds = w.decisions();
    assert_eq!(ds.len(), 7);
    assert!(ds.iter().all(|d| d.decision == Decision::Allow), "{ds:?}");
    // the same scans naming the store without a recorded visit, or naming another store
    for (visited, named) in [(false, "st-1"), (true, "st-2")] {
        let mut w = World::default();
        w.send(&batch);
        w.send(&history(-86_400 * 10, "owner"));
        if visited {
            w.send(&visit("owner"));
        }
        stock(&mut w, "owner", named);
        let ds = w.decisions();
        assert!(
            ds[5..]
                .iter()
                .all(|d| flagged(d) && d.reasons.contains(&Reason::BatchHarvest)),
            "{visited} {named}: {ds:?}"
        );
    }
}

#[test]
fn a_new_shop_owner_scanning_stock_at_a_human_pace_is_not_a_burst() {
    let mut w = World::default();
    for i in 0..12 {
        let t = 3_600 + i * 150;
        w.send(&scan(
            t,
            &format!("NS{i:06}"),
            "newshop",
            "nshop",
            "61.9.9.8",
            Some(SHANGHAI),
        ));
    }
    let ds = w.decisions();
    assert!(
        ds.iter().all(|d| d.decision == Decision::Allow),
        "{:?}",
        ds.iter()
            .map(|d| (d.score, d.reasons.clone()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn rotated_accounts_behind_one_nat_are_caught_and_a_campus_nat_is_not() {
    let mut w = World::default();
    // rotated: brand-new accounts, each with a fresh device, three fast scans each through a
    // proxy pool that hands every request another address of one /24
    for i in 0..30 {
        for k in 0..3 {
            let t = i * 120 + k * 20;
            w.send(&scan(
                t,
                &format!("R{i}-{k}"),
                &format!("rot{i}"),
                &format!("rd{i}"),
                &format!("101.7.7.{}", 2 + (i * 3 + k) % 250),
                None,
            ));
        }
    }
    let ds = w.decisions();
    assert!(!flagged(&ds[0]), "one account on one address is anyone");
    assert!(
        ds[1].reasons.contains(&Reason::IpRotation),
        "its next scan from another address of the prefix is a hop"
    );
    let late = &ds[21..];
    assert!(
        late.iter().all(flagged),
        "{:?}",
        late.iter()
            .map(|d| (d.score, d.reasons.clone()))
            .collect::<Vec<_>>()
    );
    assert!(late.iter().all(|d| d.reasons.contains(&Reason::NetShared)));

    // campus: established students, own phones, one NAT address, one scan each over 2 hours
    let mut w = World::default();
    for i in 0..60 {
        w.send(&history(-86_400 * 100 - i, &format!("stu{i}")));
    }
    for i in 0..60 {
        w.send(&scan(
            7_200 + i * 120,
            &format!("U{i}"),
            &format!("stu{i}"),
            &format!("sd{i}"),
            "202.120.1.1",
            None,
        ));
    }
    let ds = w.decisions();
    assert_eq!(ds.len(), 60);
    assert!(
        ds.iter().all(|d| d.decision == Decision::Allow),
        "{:?}",
        ds.iter().filter(|d| flagged(d)).collect::<Vec<_>>()
    );
}

#[test]
fn impossible_travel_is_reviewed_and_a_flight_is_not() {
    let mut w = World::default();
    w.send(&history(-86_400 * 50, "traveller"));
    w.send(&scan(
        3_600,
        "T1",
        "traveller",
        "d-t",
        "1.1.1.1",
        Some(SHANGHAI),
    ));
    w.send(&scan(
        3_600 + 1_800,
        "T2",
        "traveller",
        "d-t",
        "1.1.1.1",
        Some(BEIJING),
    ));
    let d = w.last();
    assert_eq!(d.decision, Decision::Review, "{d:?}");
    assert_eq!(d.reasons, vec![Reason::ImpossibleTravel]);
    assert_eq!((d.reward, d.held), (0, 10));
    // Beijing to Shanghai in three hours: a flight, 356 km/h
    w.send(&scan(
        3_600 + 1_800 + 3 * 3_600,
        "T3",
        "traveller",
        "d-t",
        "1.1.1.1",
        Some(SHANGHAI),
    ));
    assert_eq!(w.last().decision, Decision::Allow);
    // a few km of GPS noise a second later is not travel at all
    w.send(&scan(
        3_600 + 1_801 + 3 * 3_600,
        "T4",
        "traveller",
        "d-t",
        "1.1.1.1",
        Some((31.25, 121.50)),
    ));
    assert_eq!(w.last().decision, Decision::Allow);
}

/// A person scanning as two members (an openid, and a phone used in the mall) who are then
/// bound together: the scan after the merge is judged on the scans of both, whichever of the
/// two survives. The survivor is the smaller id, so it follows from the personal-data key:
/// with the phone's member surviving, the openid's Shanghai scan was dropped and a Beijing
/// scan 20 minutes after the merge passed; the keys here give both survivors.
#[test]
fn a_merge_keeps_both_members_scans_whichever_survives() {
    let mut survivors = std::collections::BTreeSet::new();
    for key in ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10"] {
        let mut w = World::keyed(Rules::default(), key.as_bytes());
        w.send(&history(-86_400 * 50, "traveller"));
        w.send(&format!(
            r#"{{"type":"click","ts":"{}","channel":"mall","member":{{"phone":"13800138000"}},"target":"ad1"}}"#,
            ts(-86_400 * 40)
        ));
        let by_openid = |t: i64, code: &str, geo: Option<(f64, f64)>| {
            scan(t, code, "traveller", "d-t", "1.1.1.1", geo)
        };
        let by_phone = |t: i64, code: &str, geo: Option<(f64, f64)>| {
            by_openid(t, code, geo)
                .replace(r#"{"openid":"traveller"}"#, r#"{"phone":"13800138000"}"#)
        };
        // each side scans once, the phone's side first (without a position)
        w.send(&by_phone(600, "P1", None));
        w.send(&by_openid(3_600, "T1", Some(SHANGHAI)));
        let openid_member = w.decisions()[1].member.clone();
        w.send(&format!(
            r#"{{"type":"identify","ts":"{}","member":{{"openid":"traveller","phone":"13800138000"}}}}"#,
            ts(3_600 + 600)
        ));
        w.send(&by_phone(3_600 + 1_800, "T2", Some(BEIJING)));
        let d = w.last();
        survivors.insert(d.member == openid_member);
        assert_eq!(d.decision, Decision::Review, "key {key}: {d:?}");
        assert_eq!(d.reasons, vec![Reason::ImpossibleTravel], "key {key}");
    }
    assert_eq!(survivors.len(), 2, "both members survive under some key");
}

#[test]
fn a_new_account_burst_is_flagged_and_an_established_member_scanning_a_few_is_not() {
    let mut w = World::default();
    w.send(&history(-86_400 * 30, "someone"));
    for i in 0..12 {
        w.send(&scan(
            600 + i * 30,
            &format!("N{i}"),
            "fresh",
            "nd",
            "27.1.1.1",
            None,
        ));
    }
    let ds = w.decisions();
    assert!(!flagged(&ds[0]), "a new account's first scan is anyone's");
    assert!(
        ds[1..6]
            .iter()
            .all(|d| flagged(d) && d.reasons.contains(&Reason::NewAccountBurst)),
        "back to back, thirty seconds apart"
    );
    assert!(
        ds[6..].iter().all(flagged),
        "{:?}",
        ds.iter()
            .map(|d| (d.score, d.reasons.clone()))
            .collect::<Vec<_>>()
    );
    assert!(ds[6..]
        .iter()
        .all(|d| d.reasons.contains(&Reason::NewAccountBurst)));

    let mut w = World::default();
    w.send(&history(-86_400 * 3, "regular"));
    for i in 0..5 {
        w.send(&scan(
            600 + i * 300,
            &format!("E{i}"),
            "regular",
            "rd",
            "27.1.1.2",
            None,
        ));
    }
    assert!(w.decisions().iter().all(|d| d.decision == Decision::Allow));
}

#[test]
fn a_ring_linked_through_devices_and_home_ips_is_flagged_and_counted_against_its_members() {
    let mut w = World::default();
    // ten accounts chained over five devices, two accounts per device: no device looks like
    // a farm, but they are one component
    for round in 0..2 {
        for j in 0..10 {
            let device = format!("rg{}", (j + round) % 5);
            let t = round * 3_600 + j * 200;
            w.send(&scan(
                t,
                &format!("RG{round}-{j}"),
                &format!("acct{j}"),
                &device,
                &format!("9.{j}.0.1"),
                None,
            ));
        }
    }
    assert!(w
        .out
        .iter()
        .any(|e| matches!(&e.output, Output::RingFlagged { size, .. } if *size >= 8)));
    // a third round: every member has heard of the ring by now
    for j in 0..10 {
        w.send(&scan(
            3 * 3_600 + j * 200,
            &format!("RG3-{j}"),
            &format!("acct{j}"),
            &format!("own{j}"),
            &format!("9.{j}.0.1"),
            None,
        ));
    }
    let ds = w.decisions();
    let last = &ds[ds.len() - 10..];
    assert!(
        last.iter()
            .filter(|d| d.reasons.contains(&Reason::Ring))
            .count()
            >= 8,
        "{:?}",
        last.iter().map(|d| d.reasons.clone()).collect::<Vec<_>>()
    );
    assert!(
        last.iter().filter(|d| flagged(d)).count() >= 8,
        "{:?}",
        last.iter()
            .map(|d| (d.score, d.reasons.clone()))
            .collect::<Vec<_>>()
    );
    // a week on, the ring's epoch is over: old links no longer count against anyone
    for j in 0..10 {
        let t = 9 * 86_400 + j * 200;
        w.send(&scan(
            t,
            &format!("RG9-{j}"),
            &format!("acct{j}"),
            &format!("own{j}"),
            &format!("9.{j}.0.1"),
            None,
        ));
    }
    let ds = w.decisions();
    assert!(ds[ds.len() - 10..]
        .iter()
        .all(|d| d.decision == Decision::Allow && d.reasons.is_empty()));
}

#[test]
fn neighbours_on_one_dynamic_address_do_not_form_a_ring() {
    let mut w = World::default();
    // twelve households, each on its own phone, each handed the same address once in a day
    for j in 0..12 {
        w.send(&history(-86_400 * 30 - j, &format!("hh{j}")));
        w.send(&scan(
            j * 3_600,
            &format!("DY{j}"),
            &format!("hh{j}"),
            &format!("hp{j}"),
            "183.1.1.1",
            None,
        ));
        w.send(&scan(
            j * 3_600 + 60,
            &format!("DZ{j}"),
            &format!("hh{j}"),
            &format!("hp{j}"),
            &format!("183.2.{j}.1"),
            None,
        ));
    }
    assert!(!w
        .out
        .iter()
        .any(|e| matches!(e.output, Output::RingFlagged { .. })));
    assert!(w.decisions().iter().all(|d| d.decision == Decision::Allow));
}

#[test]
fn a_review_holds_the_reward_until_resolved_and_resolving_twice_pays_once() {
    let mut rules = Rules::default();
    rules.campaigns.insert(
        "c1".into(),
        CampaignRules {
            budget: 100,
            ..CampaignRules::default()
        },
    );
    let mut w = World::new(rules);
    w.send(&history(-86_400 * 50, "tr"));
    w.send(&scan(3_600, "T1", "tr", "d-t", "1.1.1.1", Some(SHANGHAI)));
    w.send(&scan(3_700, "T2", "tr", "d-t", "1.1.1.1", Some(BEIJING)));
    w.send(&scan(3_800, "T3", "tr", "d-t", "1.1.1.1", Some(SHANGHAI)));
    let ds = w.decisions();
    assert_eq!(
        (ds[1].decision, ds[2].decision),
        (Decision::Review, Decision::Review)
    );
    assert_eq!(w.balance("tr"), 10);
    assert_eq!(
        w.engine.campaign("c1").unwrap().spent,
        30,
        "held points are reserved"
    );
    let member = ds[1].member.clone();
    let at = EventTime::from_unix_ms(1_794_000_000_000);
    let resolve = |w: &mut World, event, allow, id| {
        w.engine.command(
            Key::Member(member.as_str().into()),
            Cmd::Member(MemberCmd::ReviewResolve { event, allow }),
            uuid::Uuid::from_u128(id),
            at,
            &mut w.out,
        )
    };
    resolve(&mut w, ds[1].event, true, 1);
    resolve(&mut w, ds[1].event, true, 2);
    assert_eq!(w.balance("tr"), 20, "paid once");
    resolve(&mut w, ds[2].event, false, 3);
    assert_eq!(w.balance("tr"), 20);
    assert_eq!(
        w.engine.campaign("c1").unwrap().spent,
        20,
        "a refused review gives its points back"
    );
    let resolved: Vec<(bool, i64)> = w
        .out
        .iter()
        .filter_map(|e| match &e.output {
            Output::ReviewResolved { allow, reward, .. } => Some((*allow, *reward)),
            _ => None,
        })
        .collect();
    assert_eq!(resolved, vec![(true, 10), (false, 0)]);
    assert!(w.engine.member_of("openid", "tr").unwrap().held.is_empty());
}

#[test]
fn cross_region_diversion_is_reported_against_the_dealer_not_the_consumer() {
    let mut w = World::default();
    w.send(&format!(
        r#"{{"type":"dealer","ts":"{}","dealer":"sh-dealer","credit_limit":1000,"region":{{"lat":31.23,"lon":121.47,"radius_km":150}}}}"#,
        ts(0)
    ));
    w.send(&code_batch("SH-B1", "SH", "S1", "sh-dealer", 1));
    w.send(&scan(600, "SH0001", "bj", "dbj", "2.2.2.2", Some(BEIJING)));
    w.send(&scan(700, "SH0002", "sh", "dsh", "3.3.3.3", Some(SHANGHAI)));
    let ds = w.decisions();
    assert_eq!(ds[0].decision, Decision::Allow);
    assert_eq!(ds[0].reasons, vec![Reason::CrossRegion]);
    assert_eq!(ds[0].reward, 10);
    assert!(ds[1].reasons.is_empty());
    let diversions: Vec<&Output> = w
        .out
        .iter()
        .map(|e| &e.output)
        .filter(|o| matches!(o, Output::Diversion { .. }))
        .collect();
    assert_eq!(diversions.len(), 1);
    assert!(
        matches!(diversions[0], Output::Diversion { dealer, batch, km_outside, .. } if dealer == "sh-dealer" && batch == "SH-B1" && *km_outside > 800.0)
    );
    assert_eq!(w.engine.dealer("sh-dealer").unwrap().counters.diversions, 1);
    // a new limit from the credit system, without the region: the region stays, and so do
    // the diversion checks
    w.send(&format!(
        r#"{{"type":"dealer","ts":"{}","dealer":"sh-dealer","credit_limit":5000}}"#,
        ts(800)
    ));
    let d = w.engine.dealer("sh-dealer").unwrap();
    assert_eq!((d.limit, d.region.is_some()), (5000, true));
    w.send(&scan(
        900,
        "SH0003",
        "bj2",
        "dbj2",
        "2.2.2.9",
        Some(BEIJING),
    ));
    assert_eq!(w.last().reasons, vec![Reason::CrossRegion]);
    assert_eq!(w.engine.dealer("sh-dealer").unwrap().counters.diversions, 2);
}

#[test]
fn unknown_codes_are_blocked_for_registered_skus_or_where_the_campaign_requires_it() {
    let batch = |sku: &str, prefix: &str| code_batch(&format!("B{sku}"), prefix, sku, "dl1", 0);
    // codes are registered for another SKU only: nothing says this one is forged
    let mut w = World::default();
    w.send(&batch("S9", "NINE"));
    w.send(&scan(60, "FORGED1", "f", "df", "4.4.4.4", None));
    assert_eq!(w.last().decision, Decision::Allow);
    // the consumer scanning that code again (to see the reward) is a duplicate, not a second
    // unknown code: it was blocked before
    w.send(&scan(90, "FORGED1", "f", "df", "4.4.4.4", None));
    let d = w.last();
    assert_eq!(
        (d.decision, d.reasons.clone()),
        (Decision::Duplicate, vec![Reason::CodeRepeat])
    );
    // once the SKU's codes are registered, a code matching none of them is forged
    w.send(&batch("S1", "OK"));
    w.send(&scan(120, "FORGED2", "f", "df", "4.4.4.4", None));
    let d = w.last();
    assert_eq!(
        (d.decision, d.reasons.clone()),
        (Decision::Block, vec![Reason::UnknownCode])
    );
    w.send(&scan(180, "OK123", "f", "df", "4.4.4.4", None));
    assert_eq!(w.last().decision, Decision::Allow);

    // a campaign that requires registered codes refuses unknown codes of any SKU
    let mut rules = Rules::default();
    rules.default_campaign.fraud.require_registered_codes = true;
    let mut w = World::new(rules);
    w.send(&batch("S9", "NINE"));
    w.send(&scan(60, "FORGED1", "f", "df", "4.4.4.4", None));
    let d = w.last();
    assert_eq!(
        (d.decision, d.reasons.clone()),
        (Decision::Block, vec![Reason::UnknownCode])
    );
}

#[test]
fn a_shadow_rule_is_reported_but_not_enforced() {
    let mut rules = Rules::default();
    rules.default_campaign.fraud.shadow = vec![Reason::CodeShared];
    let mut w = World::new(rules);
    w.send(&scan(60, "X1", "a", "da", "5.5.5.5", None));
    w.send(&scan(120, "X1", "b", "db", "5.5.5.6", None));
    let d = w.last();
    assert_eq!(
        (d.decision, d.score, d.shadow),
        (Decision::Allow, 0, Some(Decision::Block))
    );
    assert_eq!(d.reasons, vec![Reason::CodeShared]);
    assert_eq!(w.balance("b"), 10);
    assert_eq!(w.engine.campaign("c1").unwrap().decisions.shadow_differs, 1);
}

/// A real code of one product claimed as another: the code's batch is registered for S9 and
/// the scan names S1. Alone it sends the scan to review (weight 45); the same code claimed
/// as its own SKU is allowed.
#[test]
fn a_code_of_another_skus_batch_is_sent_to_review() {
    let mut w = World::default();
    w.send(&code_batch("B9", "NINE", "S9", "dl1", 0));
    // `scan` names S1
    w.send(&scan(60, "NINE0001", "m", "dm", "4.4.4.4", None));
    let d = w.last();
    assert_eq!(
        (d.decision, d.reasons.clone()),
        (Decision::Review, vec![Reason::SkuMismatch])
    );
    let own = scan(120, "NINE0002", "n", "dn", "5.5.5.5", None).replace("\"S1\"", "\"S9\"");
    w.send(&own);
    let d = w.last();
    assert_eq!((d.decision, d.reasons.clone()), (Decision::Allow, vec![]));
}

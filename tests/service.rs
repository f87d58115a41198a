//! The service end to end: `omnistream run` as a child process on port 0 with a temp data
//! directory, driven over real HTTP; restarts with SIGTERM and SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{id, observe, sample, script, texts, Service};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_scripted_day_gives_the_expected_state_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    assert_eq!(s.get("/readyz")["status"], "ready");
    let r = s.post(&script());
    assert_eq!(r["accepted"], 14, "{r}");
    // an order's answer says what became of it: o1 reserved, p2 held for the dealer's credit,
    // then released by the payment, which then reserved its stock (where it ended, with
    // both steps in `orders`); a click has no order result
    let result = |i: usize| r["results"][i]["order"].clone();
    assert_eq!(result(2)["output"], "order_accepted", "{r}");
    assert_eq!(result(2)["amount"], 20000, "{r}");
    assert_eq!(result(6)["output"], "order_held", "{r}");
    assert_eq!(result(6)["shortfall"], 10000, "{r}");
    assert_eq!(result(11)["output"], "order_accepted", "{r}");
    let steps: Vec<&Value> = r["results"][11]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["output"])
        .collect();
    assert_eq!(
        steps,
        [&json!("order_released"), &json!("order_accepted")],
        "{r}"
    );
    assert!(result(0).is_null(), "{r}");
    let o = observe(&s);
    // the order earned 200 points, the return of half took 100 back
    assert_eq!(o["member"]["balance"], 100, "{o}");
    assert_eq!(
        o["same_member"], true,
        "phone at the store and openid are one member: {o}"
    );
    let ledger = o["ledger"]["entries"].as_array().unwrap();
    let sum: i64 = ledger.iter().map(|e| e["delta"].as_i64().unwrap()).sum();
    assert_eq!(sum, 100);
    // the ledger pages as /v1/outputs does: `next` is where the following page starts
    let member = o["member"]["id"].as_str().unwrap();
    let first = s.get(&format!("/v1/members/{member}/ledger?limit=1"));
    assert_eq!(first["entries"].as_array().unwrap().len(), 1, "{first}");
    let next = first["next"].as_u64().unwrap();
    assert_eq!(next, first["entries"][0]["seq"].as_u64().unwrap() + 1);
    let rest = s.get(&format!("/v1/members/{member}/ledger?from={next}"));
    assert_eq!(
        rest["entries"].as_array().unwrap().len(),
        ledger.len() - 1,
        "{rest}"
    );
    let end = next + ledger.len() as u64 - 1;
    assert_eq!(
        (rest["debt"].as_i64(), rest["next"].as_u64()),
        (Some(0), Some(end))
    );
    // no entry asked, none given; a cursor past the end comes back as the end
    let none = s.get(&format!("/v1/members/{member}/ledger?limit=0"));
    assert_eq!(none["entries"], json!([]), "{none}");
    let far = s.get(&format!("/v1/members/{member}/ledger?from=1000"));
    assert_eq!(far["next"].as_u64(), Some(end), "{far}");
    assert_eq!(o["scanner"]["balance"], 20, "two scans of 10 points");
    // 100 − 2 sold + 1 returned − 40 (p1, fulfilled) − 20 (p2, released after the payment)
    assert_eq!(o["stock"]["atp"], 39, "{o}");
    assert_eq!(o["credit"]["held"].as_array().unwrap().len(), 0, "{o}");
    assert_eq!(o["credit"]["exposure"], 20000, "{o}");
    // a repeat of the whole batch changes nothing
    let again = s.post(&script());
    assert_eq!(again["duplicates"], 14);
    assert_eq!(observe(&s), o);
    // more than the pool holds: refused at once, with the reason, and the stock untouched
    let big = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9f01","type":"order","ts":"2026-11-11T18:00:00+08:00","channel":"tmall","order":"t9","status":"placed","kind":"consumer","member":{"tmall":"tz"},"lines":[{"sku":"S1","qty":1000,"unit_price":100}],"location":"wh"}"#;
    let refused = s.post(&[big.to_string()]);
    let order = &refused["results"][0]["order"];
    assert_eq!(refused["results"][0]["status"], "accepted", "{refused}");
    assert_eq!(order["output"], "order_rejected", "{refused}");
    assert_eq!(order["reason"], "insufficient_stock", "{refused}");
    assert_eq!(s.get("/v1/skus/S1/stock")["atp"], 39);
    // the order keeps why, for its view and a retry's answer
    let view = s.get("/v1/orders/tmall/t9");
    assert_eq!(view["rejection"]["reason"], "insufficient_stock", "{view}");
    assert_eq!(view["rejection"]["detail"], order["detail"], "{view}");
    let retry = s.post(&[big.to_string()]);
    assert_eq!(retry["results"][0]["status"], "duplicate", "{retry}");
    assert_eq!(
        retry["results"][0]["order_state"]["rejection"], view["rejection"],
        "{retry}"
    );
    // times read as times: instants in UTC, a store's days as local dates
    assert_eq!(o["member"]["first_seen"], "2026-11-11T01:00:00.000Z", "{o}");
    assert_eq!(o["kpis"]["days"][0]["at"], "2026-11-11", "{o}");
    assert_eq!(o["kpis"]["this_hour"]["at"], "2026-11-11T17:00", "{o}");
    // a channel follows one SKU's stock, or one order, in the outputs
    let page = s.get("/v1/outputs?output=stock&sku=S1&location=wh");
    let items = page["items"].as_array().unwrap();
    assert!(items.len() >= 5, "{page}");
    assert!(items
        .iter()
        .all(|i| i["output"]["output"] == "stock" && i["output"]["sku"] == "S1"));
    let page = s.get("/v1/outputs?order=mall:o1");
    let kinds: Vec<(&str, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let o = &i["output"];
            let what = o["cause"].as_str().or(o["reason"].as_str());
            (o["output"].as_str().unwrap(), what.unwrap_or(""))
        })
        .collect();
    // with the stock it moved (each change saying how) and the points it earned and took
    // back (ledger entries about it)
    let want = [
        ("stock", "reserve"),
        ("order_accepted", ""),
        ("pending", ""),
        ("order_status", ""),
        ("stock", "commit"),
        ("pending", ""),
        ("ledger", "earned"),
        ("order_status", ""),
        ("stock", "restock"),
        ("ledger", "reversed"),
    ];
    assert_eq!(kinds, want, "{page}");
    // o1 through its life: placed, fulfilled, half returned
    assert_eq!(o["order"]["status"], "returned", "{o}");
    assert_eq!(o["order"]["amount"], 20000, "{o}");
    assert_eq!(o["order"]["returned"]["S1"], 1, "{o}");
    // a status that comes before `placed` waits in the order, shown with its id and time
    // (this answered 404 while it waited: the waiting event's id did not render as JSON)
    let order = |status: &str, n: u32, at: &str, extra: Value| {
        let mut v = json!({"id": id(n),"type":"order","ts":at,"channel":"mall","order":"o2",
            "status":status,"kind":"consumer","member":{"openid":"oa"}});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v.to_string()
    };
    let early = order("fulfilled", 901, "2026-11-11T19:10:00+08:00", json!({}));
    let answer = s.post(&[early]);
    assert_eq!(answer["accepted"], 1);
    // and its answer says so
    let said = &answer["results"][0]["order"];
    assert_eq!(said["output"], "order_deferred", "{answer}");
    assert_eq!(
        (said["status"].as_str(), said["waits_for"].as_str()),
        (Some("fulfilled"), Some("placed"))
    );
    let waiting = s.get("/v1/orders/mall/o2");
    assert_eq!(waiting["phase"], "new", "{waiting}");
    assert_eq!(waiting["deferred"][0]["status"], "fulfilled", "{waiting}");
    assert_eq!(waiting["deferred"][0]["event"], id(901), "{waiting}");
    assert_eq!(
        waiting["deferred"][0]["at"], "2026-11-11T19:10:00.000+08:00",
        "{waiting}"
    );
    let placed = order(
        "placed",
        900,
        "2026-11-11T19:00:00+08:00",
        json!({"lines":[{"sku":"S1","qty":1,"unit_price":500}],"location":"wh"}),
    );
    assert_eq!(
        s.post(&[placed])["results"][0]["order"]["output"],
        "order_accepted"
    );
    let settled = s.get("/v1/orders/mall/o2");
    assert_eq!(settled["phase"], "accepted", "{settled}");
    assert_eq!(settled["status"], "fulfilled", "{settled}");
    assert_eq!(settled["deferred"], json!([]), "{settled}");
    let (code, none) = s.request("GET", "/v1/orders/mall/nope", "");
    assert_eq!((code, none["error"].as_str()), (404, Some("not_found")));
    let openapi = s.get("/openapi.json");
    assert!(openapi["paths"]["/v1/events"]["post"].is_object());
    s.stop();
}

/// `unconfigured-campaigns = "no-reward"`: a scan of a campaign nobody configured (a
/// misspelt id) is decided as any other and pays nothing, saying why; the list of campaigns
/// shows it unconfigured, paying 0, and the metric counts it under `other`.
#[test]
fn an_unconfigured_campaign_pays_nothing_when_so_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(
        dir.path(),
        &[("OMNISTREAM_RULES__UNCONFIGURED_CAMPAIGNS", "no-reward")],
    );
    let (code, v) = s.request("POST", "/v1/scan", &script()[7]);
    assert_eq!(code, 200, "{v}");
    let d = &v["decision"];
    assert_eq!(
        (&d["decision"], &d["reward"], &d["no_reward"]),
        (&json!("allow"), &json!(0), &json!("not_configured")),
        "{v}"
    );
    let list = s.get("/v1/campaigns");
    let cny = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "cny")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&cny["configured"], &cny["points"], &cny["spent"]),
        (&json!(false), &json!(0), &json!(0)),
        "{list}"
    );
    let (_, text) = common::http_get(&s.addr, "/metrics", None);
    assert!(
        text.contains(
            r#"omnistream_scan_unrewarded_total{campaign="other",why="not_configured"} 1"#
        ),
        "{text}"
    );
    // a value that is neither stops start-up with the key
    let other = tempfile::tempdir().unwrap();
    let (code, v) = {
        let s2 = Service::spawn(
            other.path(),
            &[],
            &[("OMNISTREAM_RULES__UNCONFIGURED_CAMPAIGNS", "nothing")],
            std::process::Stdio::piped(),
        );
        let out = s2.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(2), "{v}");
    assert!(v.contains("unconfigured-campaigns"), "{v}");
    s.stop();
}

/// A location's stock across SKUs: each SKU's row as the SKU's own view has it at that
/// location, the total ATP, and a 404 for a location never stocked.
#[test]
fn a_locations_stock_lists_every_sku_there() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let mut events = script();
    for (n, (sku, loc, qty)) in [("S2", "wh", 7), ("S3", "st-9", 5)].into_iter().enumerate() {
        events.push(
            json!({"id": id(800 + n as u32), "type":"stock","ts":"2026-11-11T08:30:00+08:00",
                   "sku": sku, "location": loc, "op":"receive", "qty": qty})
            .to_string(),
        );
    }
    s.post(&events);
    let wh = s.get("/v1/locations/wh/stock");
    let skus = texts(&wh["items"], "sku");
    assert_eq!(skus, ["S1", "S2"], "{wh}");
    let s1 = s.get("/v1/skus/S1/stock");
    for field in ["on_hand", "reserved", "safety", "atp"] {
        assert_eq!(
            wh["items"][0][field], s1["locations"]["wh"][field],
            "{field}: {wh} {s1}"
        );
    }
    assert_eq!(wh["items"][1]["atp"], 7, "{wh}");
    assert_eq!(
        wh["atp"].as_i64().unwrap(),
        s1["locations"]["wh"]["atp"].as_i64().unwrap() + 7,
        "{wh}"
    );
    let (code, v) = s.request("GET", "/v1/locations/WH/stock", "");
    assert_eq!(code, 404, "{v}");
    s.stop();
}

/// Two members merged: the id merged away keeps its own ledger up to its `merged_out` and
/// names the survivor; the survivor's ledger names it in its `merged_in`.
#[test]
fn an_id_merged_away_keeps_its_ledger_up_to_the_merge() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    s.post(&script());
    let (ob, oc) = (
        s.get("/v1/identities/openid/ob"),
        s.get("/v1/identities/openid/oc"),
    );
    assert!(ob["balance"].as_i64().unwrap() > 0 && oc["balance"].as_i64().unwrap() > 0);
    let join = |n: u32, who: &str| {
        json!({"id": id(n), "type":"identify","ts":"2026-11-11T18:00:00+08:00","channel":"mall",
               "member":{"openid": who, "unionid": "u-bc"}})
        .to_string()
    };
    s.post(&[join(900, "ob"), join(901, "oc")]);
    let survivor = s.get("/v1/identities/openid/ob")["id"].clone();
    assert_eq!(s.get("/v1/identities/openid/oc")["id"], survivor);
    let gone = if ob["id"] == survivor {
        &oc["id"]
    } else {
        &ob["id"]
    };
    let gone = gone.as_str().unwrap();
    let old = s.get(&format!("/v1/members/{gone}/ledger"));
    assert_eq!(old["member"], gone, "{old}");
    assert_eq!(old["merged_into"], survivor, "{old}");
    assert_eq!(old["survivor"], survivor, "{old}");
    let rows = old["entries"].as_array().unwrap();
    assert!(rows.len() >= 2, "its points, then their leaving: {old}");
    assert_eq!(rows.last().unwrap()["reason"], "merged_out", "{old}");
    assert_eq!(rows.last().unwrap()["balance"], 0, "{old}");
    assert!(rows.iter().all(|r| r["member"] == gone), "{old}");
    let kept = s.get(&format!(
        "/v1/members/{}/ledger",
        survivor.as_str().unwrap()
    ));
    assert!(kept.get("merged_into").is_none(), "{kept}");
    assert!(
        kept["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "merged_in" && r["about"] == gone),
        "{kept}"
    );
    // the person merges on with oa's member: the id merged away first still names the
    // member its points went to, and where the person is now
    let join_oa = json!({"id": id(902), "type":"identify","ts":"2026-11-11T18:30:00+08:00",
        "channel":"mall", "member":{"openid": "oa", "unionid": "u-bc"}});
    s.post(&[join_oa.to_string()]);
    let now = s.get("/v1/identities/openid/oa")["id"].clone();
    assert_eq!(s.get("/v1/identities/openid/ob")["id"], now);
    assert_ne!(
        now, survivor,
        "oa's member, the older, survives: a chain of two merges"
    );
    let old = s.get(&format!("/v1/members/{gone}/ledger"));
    assert_eq!(old["merged_into"], survivor, "{old}");
    assert_eq!(old["survivor"], now, "{old}");
    s.stop();
}

/// A segment of members a page at a time: filtered by tier, tag, channel and points held,
/// ids merged away left out, pages joined by `next` to the whole segment, and filters no
/// rule could match refused with what would.
#[test]
fn members_are_listed_by_segment_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    s.post(&script());
    let all = s.get("/v1/members?limit=1000");
    let loyalty = s.get("/v1/loyalty");
    assert_eq!(all["total"], loyalty["members"], "{all} {loyalty}");
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, all["total"].as_u64().unwrap(), "{all}");
    assert!(all["next"].is_null(), "{all}");
    let ids: Vec<&str> = items.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "by id");
    // the phone's member merged into oa's: only the survivor is listed
    let oa = s.get("/v1/identities/openid/oa");
    assert!(ids.contains(&oa["id"].as_str().unwrap()), "{all}");
    let merged: Vec<&Value> = items.iter().filter(|m| m["id"] == oa["id"]).collect();
    assert_eq!(merged.len(), 1, "{all}");
    assert_eq!(merged[0]["balance"], oa["balance"], "{all}");
    // the mall's buyer and the store's visitor (by phone) are one person who used both
    assert_eq!(merged[0]["channels"], json!(["mall", "store"]), "{all}");
    // one at a time, following `next`, gives the same list
    let mut paged = Vec::new();
    let mut after = String::new();
    for _ in 0..ids.len() + 1 {
        let page = s.get(&format!("/v1/members?limit=1&after={after}"));
        assert_eq!(page["total"], all["total"], "{page}");
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].clone()),
        );
        match page["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, ids, "pages joined");
    // filters: who used the campaign channel; who holds points; by tier
    let scanners = s.get("/v1/members?channel=campaign");
    assert!(scanners["total"].as_u64().unwrap() >= 2, "{scanners}");
    for m in scanners["items"].as_array().unwrap() {
        assert!(
            m["channels"]
                .as_array()
                .unwrap()
                .contains(&json!("campaign")),
            "{m}"
        );
    }
    let rich = s.get("/v1/members?min_balance=50");
    let want = items
        .iter()
        .filter(|m| m["balance"].as_i64().unwrap() >= 50)
        .count();
    assert!(want >= 1 && want < items.len(), "the feed has both: {all}");
    assert_eq!(rich["total"], want, "{rich}");
    for m in rich["items"].as_array().unwrap() {
        assert!(m["balance"].as_i64().unwrap() >= 50, "{m}");
    }
    let base = oa["tier"].as_str().unwrap();
    let tier = s.get(&format!("/v1/members?tier={base}&limit=0"));
    assert_eq!(tier["total"], loyalty["tiers"][base], "{tier} {loyalty}");
    assert_eq!(tier["items"], json!([]), "limit 0: only the size");
    // what no rule could match is refused, saying what would
    let (code, v) = s.request("GET", "/v1/members?tier=Gold", "");
    assert_eq!(code, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("gold"), "{v}");
    let (code, v) = s.request("GET", "/v1/members?tag=nobody", "");
    assert_eq!(code, 400, "{v}");
    assert!(
        v["detail"].as_str().unwrap().starts_with("tag: `nobody`"),
        "{v}"
    );
    let (code, v) = s.request("GET", "/v1/members?min_balance=lots", "");
    assert_eq!(code, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("min_balance"), "{v}");
    s.stop();
}

/// A person adjusts a member's points: goodwill added, a claw-back past the balance owed
/// (never negative), one adjustment per reference (a retry is a duplicate, another amount a
/// 409), all kept across a restart (the log replays the adjustments).
#[test]
fn points_adjustments_are_recorded_once_per_reference_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    s.post(&script());
    let m = s.get("/v1/identities/openid/oa");
    let member = m["id"].as_str().unwrap().to_string();
    let before = m["balance"].as_i64().unwrap();
    let adjust = |s: &Service, who: &str, body: &str| {
        s.request("POST", &format!("/v1/members/{who}/adjustments"), body)
    };
    // the programme's figures: every member, the tiers configured, the points held
    let loyalty = s.get("/v1/loyalty");
    assert!(loyalty["members"].as_u64().unwrap() >= 3, "{loyalty}");
    assert!(
        loyalty["tiers"]["gold"].is_u64(),
        "every tier listed: {loyalty}"
    );
    let held = loyalty["points"]["balance"].as_i64().unwrap();
    assert!(held >= before, "{loyalty}");
    let (code, v) = adjust(
        &s,
        &member,
        r#"{"points": 50, "ref": "case-1", "reviewer": "amy", "note": "parcel lost"}"#,
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("accepted")), "{v}");
    assert_eq!(v["ledger"][0]["reason"], "adjusted", "{v}");
    assert_eq!(v["ledger"][0]["about"], "case-1", "{v}");
    assert_eq!(v["ledger"][0]["balance"], before + 50, "{v}");
    assert_eq!(v["adjustment"]["by"]["reviewer"], "amy", "{v}");
    assert_eq!(s.get("/v1/loyalty")["points"]["balance"], held + 50);
    // a retry, and the same reference with another amount
    let (code, v) = adjust(&s, &member, r#"{"points": 50, "ref": "case-1"}"#);
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("duplicate")),
        "{v}"
    );
    let (code, v) = adjust(&s, &member, r#"{"points": 60, "ref": "case-1"}"#);
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("ref_conflict")),
        "{v}"
    );
    // a claw-back larger than the balance: the balance goes to 0, the rest is owed
    let (code, v) = adjust(&s, &member, r#"{"points": -1000000, "ref": "fraud-7"}"#);
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (&v["adjustment"]["balance"], &v["adjustment"]["debt"]),
        (&json!(0), &json!(1_000_000 - before - 50)),
        "{v}"
    );
    // the answer says what the balance does not show: the debt, and a goodwill paying it
    assert!(
        v["warnings"][0].as_str().unwrap().starts_with("owed: "),
        "{v}"
    );
    let (code, v) = adjust(&s, &member, r#"{"points": 30, "ref": "goodwill-8"}"#);
    assert_eq!(code, 200, "{v}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("debt: 30 of the 30 points paid"),
        "{v}"
    );
    for (body, why) in [
        (r#"{"points": 0, "ref": "x"}"#, "points"),
        (r#"{"points": 5}"#, "ref"),
        (r#"{"points": 5, "ref": " "}"#, "ref: empty"),
        (r#"{"points": 5, "ref": "x", "colour": 1}"#, "colour"),
    ] {
        let (code, v) = adjust(&s, &member, body);
        assert_eq!(
            (code, v["error"].as_str()),
            (400, Some("bad_body")),
            "{body}: {v}"
        );
        assert!(v["detail"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    let (code, _) = adjust(&s, "nobody", r#"{"points": 5, "ref": "x"}"#);
    assert_eq!(code, 404);
    // an adjustment, then a merge: a retry through either id is the same adjustment
    let click = json!({"id": id(501), "type": "click", "ts": "2026-11-11T18:00:00+08:00",
                       "channel": "tmall", "member": {"tmall": "t-adj"}, "target": "ad"});
    s.post(&[click.to_string()]);
    let other = s.get("/v1/identities/tmall/t-adj")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, v) = adjust(&s, &other, r#"{"points": 10, "ref": "case-m"}"#);
    assert_eq!((code, v["status"].as_str()), (200, Some("accepted")), "{v}");
    let join = json!({"id": id(502), "type": "identify", "ts": "2026-11-11T18:01:00+08:00",
                      "member": {"openid": "oa", "tmall": "t-adj"}});
    let v = s.post(&[join.to_string()]);
    assert_eq!(v["results"][0]["merges"][0]["output"], "merged", "{v}");
    for who in [&member, &other] {
        let (code, v) = adjust(&s, who, r#"{"points": 10, "ref": "case-m"}"#);
        assert_eq!(
            (code, v["status"].as_str()),
            (200, Some("duplicate")),
            "{who}: {v}"
        );
    }
    // every adjustment, across members: the ledger's `reason`
    let all = s.get("/v1/outputs?output=ledger&reason=adjusted");
    let refs: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["output"]["about"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["case-1", "fraud-7", "goodwill-8", "case-m"], "{all}");
    let (code, v) = s.request("GET", "/v1/outputs?output=ledger&reason=goodwill", "");
    assert_eq!(code, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("adjusted"), "{v}");
    let ledger = s.get(&format!("/v1/members/{member}/ledger"));
    s.stop();
    let s = Service::start(dir.path());
    assert_eq!(s.get(&format!("/v1/members/{member}/ledger")), ledger);
    let (code, v) = adjust(&s, &member, r#"{"points": 50, "ref": "case-1"}"#);
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("duplicate")),
        "{v}"
    );
    let m = s.get(&format!("/v1/members/{member}"));
    assert_eq!(
        (&m["balance"], &m["debt"]),
        (&json!(0), &json!(1_000_000 - before - 50 - 10 - 30)),
        "{m}"
    );
    s.stop();
}

/// Customer service replaces a member's phone: the new number finds the member and the old
/// one nobody; a number another member has is a 409 naming that member; the same number again
/// is `unchanged`; bad bodies are 400s, an unknown member a 404; all kept across a restart
/// (the log repeats the replacement).
#[test]
fn a_phone_replaced_by_customer_service_moves_the_member_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let ident = |n: u32, ids: Value| {
        json!({"id": id(n), "type": "identify", "ts": "2026-11-11T18:00:00+08:00", "member": ids})
            .to_string()
    };
    s.post(&[
        ident(601, json!({"openid": "o-ph1", "phone": "13800000601"})),
        ident(602, json!({"openid": "o-ph2", "phone": "13800000602"})),
    ]);
    let a = s.get("/v1/identities/openid/o-ph1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.get("/v1/identities/openid/o-ph2")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let replace = |s: &Service, who: &str, body: &str| {
        s.request("POST", &format!("/v1/members/{who}/phone"), body)
    };
    let (code, v) = replace(&s, &a, r#"{"phone": "13800000602", "ref": "CS-9"}"#);
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("phone_taken")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains(&b), "{v}");
    let (code, v) = replace(
        &s,
        &a,
        r#"{"phone": "139 0000 0601", "ref": "CS-10", "reviewer": "amy"}"#,
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("replaced")), "{v}");
    assert_eq!(v["phone_replaced"]["by"]["reviewer"], "amy", "{v}");
    assert!(v["phone_replaced"]["previous"].is_string(), "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    let (code, v) = replace(&s, &a, r#"{"phone": "13900000601", "ref": "CS-10"}"#);
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("unchanged")),
        "{v}"
    );
    for (body, why) in [
        (r#"{"phone": "hello", "ref": "x"}"#, "phone"),
        (r#"{"phone": "13900000601"}"#, "ref"),
        (
            r#"{"phone": "13900000601", "ref": "x", "colour": 1}"#,
            "colour",
        ),
    ] {
        let (code, v) = replace(&s, &a, body);
        assert_eq!(
            (code, v["error"].as_str()),
            (400, Some("bad_body")),
            "{body}: {v}"
        );
        assert!(v["detail"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    let (code, _) = replace(&s, "nobody", r#"{"phone": "13900000601", "ref": "x"}"#);
    assert_eq!(code, 404);
    let check = |s: &Service| {
        assert_eq!(s.get("/v1/identities/phone/13900000601")["id"], a.as_str());
        let (code, v) = s.request("GET", "/v1/identities/phone/13800000601", "");
        assert_eq!(code, 404, "the old number is nobody's: {v}");
    };
    check(&s);
    let all = s.get("/v1/outputs?output=phone_replaced");
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    s.stop();
    let s = Service::start(dir.path());
    check(&s);
    // the old number, now a new person's, starts a member of its own
    s.post(&[ident(
        603,
        json!({"phone": "13800000601", "openid": "o-ph3"}),
    )]);
    let c = s.get("/v1/identities/phone/13800000601")["id"].clone();
    assert!(c.is_string() && c != a.as_str() && c != b.as_str(), "{c}");
    // a reference is one replacement: another number under it is a conflict, and its late
    // retry after a later change does not undo that change (kept across the restart)
    let (code, v) = replace(&s, &a, r#"{"phone": "13700000601", "ref": "CS-10"}"#);
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("ref_conflict")),
        "{v}"
    );
    let (code, v) = replace(&s, &a, r#"{"phone": "13700000601", "ref": "CS-11"}"#);
    assert_eq!((code, v["status"].as_str()), (200, Some("replaced")), "{v}");
    let (code, v) = replace(&s, &a, r#"{"phone": "13900000601", "ref": "CS-10"}"#);
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("unchanged")),
        "{v}"
    );
    assert_eq!(s.get("/v1/identities/phone/13700000601")["id"], a.as_str());
    // a mobile a digit short is taken as sent, and said
    let (code, v) = replace(&s, &b, r#"{"phone": "1390000060", "ref": "CS-12"}"#);
    assert_eq!((code, v["status"].as_str()), (200, Some("replaced")), "{v}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("unlikely_phone at phone:"),
        "{v}"
    );
    s.stop();
}

/// Customer service merges two members the service refused to merge (two phones): it must
/// say whose phone stays; the merge moves the other's points and identities, releases its
/// phone, answers a retry `unchanged`, and survives a restart; a reference is one merge.
#[test]
fn a_person_merges_two_members_the_service_refused_and_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let ident = |n: u32, ids: Value| {
        json!({"id": id(n), "type": "identify", "ts": "2026-11-11T18:00:00+08:00", "member": ids})
            .to_string()
    };
    s.post(&[
        ident(801, json!({"openid": "o-mg1", "phone": "13800000801"})),
        ident(802, json!({"tmall": "t-mg2", "phone": "13800000802"})),
        ident(803, json!({"openid": "o-mg1", "tmall": "t-mg2"})),
        json!({"id": id(804), "type": "click", "ts": "2026-11-11T18:00:00+08:00",
            "channel": "jd", "member": {"jd": "j-mg3", "phone": "13800000803"}, "target": "ad-1"})
        .to_string(),
    ]);
    let who = |s: &Service, path: &str| s.get(path)["id"].as_str().unwrap().to_string();
    let a = who(&s, "/v1/identities/openid/o-mg1");
    let b = who(&s, "/v1/identities/tmall/t-mg2");
    let c = who(&s, "/v1/identities/jd/j-mg3");
    assert_ne!(a, b, "refused for two phones");
    for (m, points, r) in [(&a, 100, "G-1"), (&b, 50, "G-2")] {
        let body = json!({"points": points, "ref": r}).to_string();
        let (code, v) = s.request("POST", &format!("/v1/members/{m}/adjustments"), &body);
        assert_eq!(code, 200, "{v}");
    }
    let merge = |s: &Service, m: &str, body: Value| {
        s.request("POST", &format!("/v1/members/{m}/merge"), &body.to_string())
    };
    // customer service's work list: the merges refused for two phones still two members
    let waiting = |s: &Service, pending: bool| {
        let v = s.get(&format!(
            "/v1/outputs?output=merge_conflict&pending={pending}"
        ));
        v["items"].as_array().unwrap().len()
    };
    let listed = s.get("/v1/outputs?output=merge_conflict&pending=true");
    let item = &listed["items"][0]["output"];
    assert_eq!(item["pending"], true, "{listed}");
    let pair = [
        item["member"].as_str().unwrap(),
        item["other"].as_str().unwrap(),
    ];
    assert!(
        pair.contains(&a.as_str()) && pair.contains(&b.as_str()),
        "{listed}"
    );
    assert_eq!((waiting(&s, true), waiting(&s, false)), (1, 0));
    // and says so on a page of every kind too
    let all = s.get("/v1/outputs?limit=1000");
    let refusal = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["output"]["output"] == "merge_conflict")
        .expect("the refusal listed");
    assert_eq!(refusal["output"]["pending"], true, "{refusal}");
    let (code, v) = s.request("GET", "/v1/outputs?output=ledger&pending=true", "");
    assert_eq!((code, v["error"].as_str()), (400, Some("bad_query")), "{v}");
    let (code, v) = merge(&s, &a, json!({"with": b, "ref": "CS-M1"}));
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("phones_differ")),
        "{v}"
    );
    assert!(
        v["detail"].as_str().unwrap().contains("keep_phone_of"),
        "{v}"
    );
    for (body, code_want, why) in [
        (
            json!({"with": b, "ref": "CS-M1", "keep_phone_of": c}),
            400,
            "keep_phone_of",
        ),
        (json!({"with": b}), 400, "ref"),
        (json!({"with": "", "ref": "x"}), 400, "with"),
        (json!({"with": b, "ref": "x", "colour": 1}), 400, "colour"),
        (json!({"with": a, "ref": "x"}), 400, "with"),
        (
            json!({"with": "m".repeat(100_000), "ref": "x"}),
            400,
            "with",
        ),
        (json!({"with": "nobody", "ref": "x"}), 404, "nobody"),
    ] {
        let (code, v) = merge(&s, &a, body.clone());
        assert_eq!(code, code_want, "{body}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    let (code, v) = merge(
        &s,
        &a,
        json!({"with": b, "keep_phone_of": b, "ref": "CS-M1", "reviewer": "amy", "note": "ID card seen"}),
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("merged")), "{v}");
    let survivor = a.clone().min(b.clone());
    assert_eq!(v["member"], survivor.as_str(), "{v}");
    assert_eq!(v["merge_approved"]["by"]["reviewer"], "amy", "{v}");
    assert_eq!(
        v["merge_approved"]["member"],
        a.as_str(),
        "a gives its phone up: {v}"
    );
    assert!(v["merge_approved"]["released"].is_string(), "{v}");
    assert_eq!(v["merged"]["survivor"], survivor.as_str(), "{v}");
    let (code, v) = merge(&s, &b, json!({"with": a, "ref": "CS-M1"}));
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("unchanged")),
        "{v}"
    );
    let check = |s: &Service| {
        assert_eq!(who(s, "/v1/identities/openid/o-mg1"), survivor);
        assert_eq!(who(s, "/v1/identities/tmall/t-mg2"), survivor);
        assert_eq!(who(s, "/v1/identities/phone/13800000802"), survivor);
        let (code, v) = s.request("GET", "/v1/identities/phone/13800000801", "");
        assert_eq!(code, 404, "the phone not kept is nobody's: {v}");
        let m = s.get(&format!("/v1/members/{survivor}"));
        assert_eq!(m["balance"], 150, "{m}");
        let all = s.get("/v1/outputs?output=merge_approved");
        assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    };
    check(&s);
    assert_eq!(
        (waiting(&s, true), waiting(&s, false)),
        (0, 1),
        "merged: no longer waiting"
    );
    let (_, text) = s.request_text("GET", "/metrics", "");
    assert!(
        text.contains(r#"omnistream_member_merges_total{result="approved"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"omnistream_member_merges_total{result="refused_phones"} 1"#),
        "{text}"
    );
    s.stop();
    let s = Service::start(dir.path());
    check(&s);
    // a reference is one merge of a member: the same one for it and a third member is a
    // conflict; another reference merges them, an id merged away standing for its survivor
    // (in `with` and in `keep_phone_of`)
    let alias = a.clone().max(b.clone());
    let (code, v) = merge(&s, &c, json!({"with": alias, "ref": "CS-M1"}));
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("ref_conflict")),
        "{v}"
    );
    let keep = json!({"with": alias, "keep_phone_of": survivor, "ref": "CS-M2"});
    let (code, v) = merge(&s, &c, keep);
    assert_eq!((code, v["status"].as_str()), (200, Some("merged")), "{v}");
    assert_eq!(
        v["merge_approved"]["member"],
        c.as_str(),
        "c gives its phone up: {v}"
    );
    let person = survivor.clone().min(c.clone());
    assert_eq!(who(&s, "/v1/identities/jd/j-mg3"), person);
    assert_eq!(who(&s, "/v1/identities/phone/13800000802"), person);
    let (code, _) = s.request("GET", "/v1/identities/phone/13800000803", "");
    assert_eq!(code, 404, "c's phone released");
    // the person's refused merges, asked by any of its ids: the refusal between a and b,
    // done since
    let mine = s.get(&format!("/v1/outputs?output=merge_conflict&member={c}"));
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{mine}");
    assert_eq!(items[0]["output"]["pending"], false, "{mine}");
    s.stop();
}

/// The rules reloaded without a restart: a campaign's points changed in the configuration
/// file pay from the reload on (`POST /v1/admin/reload`, then SIGHUP); a file that does not
/// load changes nothing and names its key; another setting is named as needing a restart;
/// after a SIGKILL the log replays each event under the rules it ran under.
#[test]
fn rules_reload_without_a_restart_and_a_replay_keeps_what_ran_under_each() {
    let dir = tempfile::tempdir().unwrap();
    let (data, conf) = (dir.path().join("data"), dir.path().join("omnistream.toml"));
    let write = |points: i64, extra: &str| {
        let text = format!("{extra}[rules.campaigns.cny]\npoints = {points}\n");
        std::fs::write(&conf, text).unwrap();
    };
    write(10, "");
    let conf_arg = conf.to_str().unwrap();
    let start = || Service::start_args(&data, &["--config", conf_arg], &[], Stdio::inherit());
    let s = start();
    let scan = |s: &Service, n: u32| {
        let body = json!({"id": id(n), "type": "scan", "ts": "2026-11-11T18:00:00+08:00",
            "channel": "campaign", "code": format!("RL-{n}"), "sku": "S1", "campaign": "cny",
            "member": {"openid": format!("o-rl{n}")}, "device": format!("d-rl{n}"),
            "ip": format!("10.1.{n}.1")});
        let (code, v) = s.request("POST", "/v1/scan", &body.to_string());
        assert_eq!(code, 200, "{v}");
        v["decision"]["reward"].as_i64().unwrap()
    };
    assert_eq!(scan(&s, 1), 10);
    write(30, "max-batch-events = 500\n");
    let (code, v) = s.request("POST", "/v1/admin/reload", "");
    assert_eq!((code, v["status"].as_str()), (200, Some("reloaded")), "{v}");
    assert_eq!(v["changed"], json!(["rules.campaigns.cny.points"]), "{v}");
    assert_eq!(v["restart_needed"], json!(["max-batch-events"]), "{v}");
    assert_eq!(scan(&s, 2), 30);
    assert_eq!(s.get("/v1/campaigns/cny")["points"], 30);
    let (code, v) = s.request("POST", "/v1/admin/reload", "");
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("unchanged")),
        "{v}"
    );
    assert!(v.get("warnings").is_none(), "{v}");
    // a likely mistake is said in the answer, as check-config says it
    write(
        30,
        "max-batch-events = 500\n[rules.points.channel-multiplier]\nTmall = 2.0\n",
    );
    let (code, v) = s.request("POST", "/v1/admin/reload", "");
    assert_eq!((code, v["status"].as_str()), (200, Some("reloaded")), "{v}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("rules.points.channel-multiplier.Tmall"),
        "{v}"
    );
    // a file that does not load: nothing changes, the key is named
    std::fs::write(&conf, "[rules.campaigns.cny]\npoints = \"many\"\n").unwrap();
    let (code, v) = s.request("POST", "/v1/admin/reload", "");
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("bad_config")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("points"), "{v}");
    assert_eq!(scan(&s, 3), 30);
    // SIGHUP does the same
    write(50, "");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.get("/v1/campaigns/cny")["points"] != 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP reloaded nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(scan(&s, 4), 50);
    // no checkpoint: the restart replays the whole log, each scan under its own rules
    s.kill();
    let s = start();
    for (n, points) in [(1, 10), (2, 30), (3, 30), (4, 50)] {
        let m = s.get(&format!("/v1/identities/openid/o-rl{n}"));
        assert_eq!(m["balance"], points, "scan {n}: {m}");
    }
    s.stop();
}

/// A risk team's blocks over HTTP: a device blocked in one campaign blocks its scans there
/// (`blocked`, the decision naming the block), a prefix given by any address within it
/// blocks its addresses, a member's block follows its id; the blocks are listed, survive a
/// restart (the log repeats them), and a lift ends them; bad requests say why.
#[test]
fn a_risk_team_blocks_a_device_a_prefix_and_a_member_and_lifts_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let scan = |n: u32, who: &str, device: &str, ip: &str, campaign: &str| {
        json!({"id": id(n), "type": "scan", "ts": "2026-11-11T18:00:00+08:00", "channel": "campaign",
            "code": format!("BLK-{n}"), "sku": "S1", "campaign": campaign,
            "member": {"openid": who}, "device": device, "ip": ip})
        .to_string()
    };
    let decide = |s: &Service, body: String| {
        let (code, v) = s.request("POST", "/v1/scan", &body);
        assert_eq!(code, 200, "{v}");
        v["decision"].clone()
    };
    let d = decide(&s, scan(901, "o-blk1", "d-farm", "10.9.8.7", "cny"));
    assert_eq!(d["decision"], "allow", "{d}");
    let member = s.get("/v1/identities/openid/o-blk1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let block = |s: &Service, path: &str, body: Value| s.request("POST", path, &body.to_string());
    let (code, v) = block(
        &s,
        "/v1/blocks",
        json!({"on": "device", "value": "d-farm", "campaign": "cny", "ref": "RISK-1",
            "reviewer": "li", "note": "farm phone"}),
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("blocked")), "{v}");
    assert_eq!(v["block_set"]["by"]["reviewer"], "li", "{v}");
    assert_eq!(v["blocks"][0]["ref"], "RISK-1", "{v}");
    let (code, v) = block(
        &s,
        "/v1/blocks",
        json!({"on": "device", "value": "d-farm", "campaign": "cny", "ref": "RISK-1"}),
    );
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("unchanged")),
        "a retry: {v}"
    );
    // any address of the /24 gives the prefix
    let (code, v) = block(
        &s,
        "/v1/blocks",
        json!({"on": "net", "value": "172.16.5.77", "ref": "RISK-2"}),
    );
    assert_eq!(
        (code, v["value"].as_str()),
        (200, Some("172.16.5.0/24")),
        "{v}"
    );
    let (code, v) = block(
        &s,
        "/v1/blocks",
        json!({"on": "member", "value": member, "campaign": "summer", "until": "2026-11-12T00:00:00+08:00", "ref": "RISK-3"}),
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("blocked")), "{v}");
    let check = |s: &Service| {
        let d = decide(s, scan(902, "o-blk2", "d-farm", "10.9.8.6", "cny"));
        assert_eq!(d["decision"], "block", "{d}");
        assert_eq!(
            d["scan"]["blocked"],
            json!({"on": "device", "value": "d-farm", "campaign": "cny", "ref": "RISK-1"}),
            "{d}"
        );
        assert!(
            d["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["reason"] == "blocked"),
            "{d}"
        );
        let d = decide(s, scan(903, "o-blk2", "d-farm", "10.9.8.6", "summer"));
        assert_eq!(d["decision"], "allow", "another campaign: {d}");
        let d = decide(s, scan(904, "o-blk3", "d-ok3", "172.16.5.200", "summer"));
        assert_eq!(
            (&d["decision"], &d["scan"]["blocked"]["on"]),
            (&json!("block"), &json!("net")),
            "{d}"
        );
        // an IPv4 address written as IPv6 is the same address, in the same prefix
        let d = decide(
            s,
            scan(906, "o-blk3", "d-ok3", "::ffff:172.16.5.201", "summer"),
        );
        assert_eq!(
            (&d["decision"], &d["scan"]["ip"]),
            (&json!("block"), &json!("172.16.5.201")),
            "{d}"
        );
        // an address shows its prefix's blocks too; a prefix may be written with its slash
        let v = s.get("/v1/blocks/ip/172.16.5.9");
        assert_eq!(
            (&v["blocks"], &v["net"]["blocks"][0]["ref"]),
            (&json!([]), &json!("RISK-2")),
            "{v}"
        );
        let v = s.get("/v1/blocks/net/172.16.5.0/24");
        assert_eq!(v["blocks"][0]["ref"], "RISK-2", "{v}");
        let d = decide(s, scan(905, "o-blk1", "d-ok1", "10.9.8.5", "summer"));
        assert_eq!(
            (&d["decision"], &d["scan"]["blocked"]["on"]),
            (&json!("block"), &json!("member")),
            "{d}"
        );
        let v = s.get("/v1/blocks/device/d-farm");
        assert_eq!(v["blocks"].as_array().unwrap().len(), 1, "{v}");
        let v = s.get("/v1/blocks/net/172.16.5.0%2F24");
        assert_eq!(v["blocks"][0]["ref"], "RISK-2", "{v}");
        let v = s.get("/v1/blocks/ip/10.9.8.7");
        assert_eq!(v["blocks"], json!([]), "never blocked: {v}");
        // the risk team's list: every block in force, with who set it
        let all = s.get("/v1/blocks");
        assert_eq!(all["total"], 3, "{all}");
        let refs: Vec<&str> = texts(&all["items"], "ref");
        assert_eq!(
            refs,
            ["RISK-1", "RISK-3", "RISK-2"],
            "by what they are on: {all}"
        );
        assert_eq!(all["items"][0]["by"]["note"], "farm phone", "{all}");
        let cny = s.get("/v1/blocks?campaign=cny");
        assert_eq!(texts(&cny["items"], "ref"), ["RISK-1", "RISK-2"], "{cny}");
        let net = s.get("/v1/blocks?on=net");
        assert_eq!(texts(&net["items"], "ref"), ["RISK-2"], "{net}");
    };
    check(&s);
    s.stop();
    let s = Service::start(dir.path());
    // the same scans again are duplicates; new ones meet the blocks after the restart
    let d = decide(&s, scan(910, "o-blk2", "d-farm", "10.9.8.6", "cny"));
    assert_eq!(d["decision"], "block", "{d}");
    let all = s.get("/v1/blocks");
    assert_eq!(all["total"], 3, "the list after a restart: {all}");
    assert_eq!(all["items"][0]["by"]["reviewer"], "li", "{all}");
    let (code, v) = block(
        &s,
        "/v1/blocks/lift",
        json!({"on": "device", "value": "d-farm", "campaign": "cny", "ref": "RISK-4"}),
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("lifted")), "{v}");
    assert_eq!(v["block_lifted"]["lifted"], "RISK-1", "{v}");
    let (code, v) = block(
        &s,
        "/v1/blocks/lift",
        json!({"on": "device", "value": "d-farm", "campaign": "cny", "ref": "RISK-4"}),
    );
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("not_blocked")),
        "{v}"
    );
    // what the person may have meant: a lift for every campaign of what is blocked in one,
    // a campaign nobody configured or scanned
    block(
        &s,
        "/v1/blocks",
        json!({"on": "device", "value": "d-two", "campaign": "cny", "ref": "RISK-5"}),
    );
    let (code, v) = block(
        &s,
        "/v1/blocks/lift",
        json!({"on": "device", "value": "d-two", "ref": "RISK-6"}),
    );
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("not_blocked")),
        "{v}"
    );
    assert!(
        v["warning"].as_str().unwrap().contains("blocked in cny"),
        "{v}"
    );
    let (code, v) = block(
        &s,
        "/v1/blocks",
        json!({"on": "device", "value": "d-two", "campaign": "cnyy", "ref": "RISK-7"}),
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("blocked")), "{v}");
    assert!(v["warning"].as_str().unwrap().contains("misspelt"), "{v}");
    let (_, v) = block(
        &s,
        "/v1/blocks",
        json!({"on": "device", "value": "d-two", "campaign": "summer", "ref": "RISK-8"}),
    );
    assert!(v.get("warning").is_none(), "a campaign scanned before: {v}");
    // a replacement that ends sooner says it shortens the ban
    block(
        &s,
        "/v1/blocks",
        json!({"on": "device", "value": "d-three", "ref": "RISK-9"}),
    );
    let (code, v) = block(
        &s,
        "/v1/blocks",
        json!({"on": "device", "value": "d-three", "until": "2026-11-12T00:00:00+08:00", "ref": "RISK-10"}),
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("updated")), "{v}");
    assert!(
        v["warning"].as_str().unwrap().contains("RISK-9 (no end)"),
        "{v}"
    );
    let d = decide(&s, scan(911, "o-blk2", "d-farm", "10.9.8.6", "cny"));
    assert_eq!(d["decision"], "allow", "lifted: {d}");
    let all = s.get("/v1/outputs?output=block_set");
    assert_eq!(all["items"].as_array().unwrap().len(), 8, "{all}");
    let all = s.get("/v1/blocks");
    let refs = texts(&all["items"], "ref");
    assert_eq!(
        refs,
        ["RISK-10", "RISK-5", "RISK-7", "RISK-8", "RISK-3", "RISK-2"],
        "{all}"
    );
    // a page at a time, never splitting one thing's blocks over two pages
    let (mut pages, mut after) = (Vec::new(), String::new());
    loop {
        let p = s.get(&format!("/v1/blocks?limit=2{after}"));
        assert_eq!(p["total"], 6, "{p}");
        pages.push(texts(&p["items"], "ref").join(" "));
        match p["next"].as_str() {
            Some(next) => after = format!("&after={}", next.replace('/', "%2F")),
            None => break,
        }
    }
    assert_eq!(pages, ["RISK-10", "RISK-5 RISK-7 RISK-8", "RISK-3 RISK-2"]);
    let (code, v) = s.request("GET", "/v1/blocks?limit=some", "");
    assert_eq!((code, v["error"].as_str()), (400, Some("bad_query")), "{v}");
    let (code, v) = s.request("GET", "/v1/blocks?on=phone", "");
    assert_eq!((code, v["error"].as_str()), (400, Some("bad_query")), "{v}");
    for (body, code_want, why) in [
        (
            json!({"on": "phone", "value": "x", "ref": "R"}),
            400,
            "none of member",
        ),
        (json!({"on": "device", "value": "d", "ref": ""}), 400, "ref"),
        (
            json!({"on": "device", "value": " ", "ref": "R"}),
            400,
            "give the device",
        ),
        (
            json!({"on": "ip", "value": "10.0.0.999", "ref": "R"}),
            400,
            "not an IP address",
        ),
        (
            json!({"on": "net", "value": "10.0.0.0/16", "ref": "R"}),
            400,
            "/24",
        ),
        (
            json!({"on": "ip", "value": "10.0.0.0/24", "ref": "R"}),
            400,
            "\"on\": \"net\"",
        ),
        (
            json!({"on": "device", "value": "d", "ref": "R", "until": "tomorrow"}),
            400,
            "until",
        ),
        (
            json!({"on": "device", "value": "d", "ref": "R", "until": "2020-01-01T00:00:00Z"}),
            400,
            "block nothing",
        ),
        (
            json!({"on": "device", "value": "d", "ref": "R", "colour": 1}),
            400,
            "colour",
        ),
        (
            json!({"on": "member", "value": "nobody", "ref": "R"}),
            404,
            "nobody",
        ),
    ] {
        let (code, v) = block(&s, "/v1/blocks", body.clone());
        assert_eq!(code, code_want, "{body}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    let (code, v) = block(
        &s,
        "/v1/blocks/lift",
        json!({"on": "device", "value": "d", "ref": "R", "until": "2030-01-01T00:00:00Z"}),
    );
    assert_eq!(code, 400, "a lift takes no until: {v}");
    let (code, v) = s.request("GET", "/v1/blocks/phone/x", "");
    assert_eq!(code, 400, "{v}");
    let (_, text) = s.request_text("GET", "/metrics", "");
    for line in [
        r#"omnistream_blocks_total{change="lifted",on="device"} 1"#,
        r#"omnistream_scan_decision_reasons_total{reason="blocked"} 1"#,
        r#"omnistream_scan_decision_reasons_total{reason="ring"} 0"#,
        r#"omnistream_blocks_in_force{on="device"} 4"#,
        r#"omnistream_blocks_in_force{on="member"} 1"#,
        r#"omnistream_blocks_in_force{on="net"} 1"#,
        r#"omnistream_blocks_in_force{on="ip"} 0"#,
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // killed: the log since the last checkpoint replays the blocks and the lift into the list
    let before = s.get("/v1/blocks");
    s.kill();
    let s = Service::start(dir.path());
    assert_eq!(s.get("/v1/blocks"), before);
    // the bans with an end leave the list and the gauges once the service's time passes it
    let later = json!({"id": id(912), "type": "scan", "ts": "2026-11-12T01:00:00+08:00",
        "channel": "campaign", "code": "BLK-912", "sku": "S1", "campaign": "summer",
        "member": {"openid": "o-blk4"}, "device": "d-ok4", "ip": "10.9.7.1"});
    decide(&s, later.to_string());
    let all = s.get("/v1/blocks");
    assert_eq!(
        texts(&all["items"], "ref"),
        ["RISK-5", "RISK-7", "RISK-8", "RISK-2"],
        "{all}"
    );
    let (_, text) = s.request_text("GET", "/metrics", "");
    for line in [
        r#"omnistream_blocks_in_force{on="device"} 3"#,
        r#"omnistream_blocks_in_force{on="member"} 0"#,
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    s.stop();
}

/// A person overturns a block: allowing a blocked scan grants its reward and pays it, as a
/// resolution marked `overturned`; a retry is a duplicate, blocking it then a 409, and the
/// payment survives a restart (the log repeats the overturn).
#[test]
fn a_blocked_scan_can_be_overturned_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let first: Value = serde_json::from_str(&script()[7]).unwrap();
    let mut copy = first.clone();
    copy["id"] = json!(id(700));
    copy["ts"] = json!("2026-11-11T13:30:00+08:00");
    copy["member"] = json!({"openid": "o-copy"});
    copy["device"] = json!("d-copy");
    let v = s.post(&[first.to_string(), copy.to_string()]);
    assert_eq!(v["results"][1]["decision"]["decision"], "block", "{v}");
    let member = v["results"][1]["decision"]["member"]
        .as_str()
        .unwrap()
        .to_string();
    let resolve = |s: &Service, d: &str| {
        s.request(
            "POST",
            &format!("/v1/reviews/{}", id(700)),
            &format!(r#"{{"decision": "{d}", "reviewer": "risk-1", "note": "receipt checked"}}"#),
        )
    };
    // blocking it again says it is blocked already, and how to overturn it
    let (code, v) = resolve(&s, "block");
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("not_under_review")),
        "{v}"
    );
    assert!(
        v["detail"].as_str().unwrap().contains("`allow` overturns"),
        "{v}"
    );
    let (code, v) = resolve(&s, "allow");
    assert_eq!((code, v["status"].as_str()), (200, Some("accepted")), "{v}");
    let r = &v["resolution"];
    assert_eq!(
        (
            &r["allow"],
            &r["overturned"],
            &r["reward"],
            &r["by"]["reviewer"]
        ),
        (&json!(true), &json!(true), &json!(10), &json!("risk-1")),
        "{v}"
    );
    let balance = s.get(&format!("/v1/members/{member}"))["balance"].clone();
    assert_eq!(balance, 10);
    // the decision list shows the block with what became of it; the board's ticker drops it
    let d = s.get(&format!("/v1/decisions?scan_event={}", id(700)));
    assert_eq!(
        d["items"][0]["output"]["resolution"]["overturned"], true,
        "{d}"
    );
    let board = s.get("/v1/board");
    let ticker = board["blocked"].as_array().unwrap();
    assert!(
        !ticker.iter().any(|b| b["event"] == id(700).as_str()),
        "{board}"
    );
    let (code, v) = resolve(&s, "allow");
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("duplicate")),
        "{v}"
    );
    let (code, v) = resolve(&s, "block");
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("already_resolved")),
        "{v}"
    );
    s.stop();
    let s = Service::start(dir.path());
    assert_eq!(s.get(&format!("/v1/members/{member}"))["balance"], 10);
    let (code, v) = resolve(&s, "allow");
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("duplicate")),
        "{v}"
    );
    s.stop();
}

/// An overturn is paid in the scan's local day: a member who reached the daily cap early in
/// its local morning (still the day before in UTC) gets nothing more for it.
#[test]
fn an_overturn_counts_against_the_daily_cap_of_the_scans_local_day() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let base: Value = serde_json::from_str(&script()[7]).unwrap();
    let scan = |n: u32, code: &str, who: &str, device: &str, min: u32| {
        let mut v = base.clone();
        v["id"] = json!(id(800 + n));
        v["code"] = json!(code);
        v["ts"] = json!(format!("2026-11-12T07:{min:02}:00+08:00"));
        v["member"] = json!({"openid": who});
        v["device"] = json!(device);
        v["ip"] = json!(format!("10.8.{n}.1"));
        v.to_string()
    };
    // someone scans X first; the member's three rewarded scans reach the cap (3 a day)
    let v = s.post(&[
        scan(0, "X", "o-first", "d-first", 0),
        scan(1, "A", "o-cap", "d-cap", 1),
        scan(2, "B", "o-cap", "d-cap", 2),
        scan(3, "C", "o-cap", "d-cap", 3),
        scan(4, "X", "o-cap", "d-cap", 4),
    ]);
    let r = &v["results"];
    assert_eq!(r[3]["decision"]["reward"], 10, "{v}");
    assert_eq!(r[4]["decision"]["decision"], "block", "{v}");
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(804)),
        r#"{"decision": "allow"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["resolution"]["reward"], 0,
        "the cap of 2026-11-12 (+08:00) holds: {v}"
    );
    s.stop();
}

#[test]
fn bad_requests_get_4xx_with_reasons_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let (code, v) = s.request("POST", "/v1/events", " [ ] ");
    assert_eq!((code, v["error"].as_str()), (400, Some("empty")), "{v}");
    // an array cut where an element ended: its events applied, and the cut said
    let click = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e77","type":"click","ts":"2026-11-11T10:00:00+08:00","channel":"mall","member":{"openid":"cut"},"target":"ad"}"#;
    let (code, v) = s.request("POST", "/v1/events", &format!("[{click},\n"));
    assert_eq!((code, &v["accepted"]), (200, &json!(1)), "{v}");
    let w = v["warnings"][0].as_str().unwrap_or_default();
    assert!(
        w.starts_with("truncated at body: the array has no closing `]`"),
        "{v}"
    );
    let (_, v) = s.request("POST", "/v1/events", &format!("[{click}]"));
    assert!(v.get("warnings").is_none(), "{v}");
    // a form upload (`curl -F`) is refused whole: its parts would read as lines of events
    let form = "--x\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{}\r\n--x--\r\n";
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 415") && resp.contains("unsupported_media_type"),
        "{resp}"
    );
    // so is a compressed body: its bytes would read as events
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    write!(
        conn,
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 415") && resp.contains("Content-Encoding"),
        "{resp}"
    );
    // gzip without its Content-Encoding, and a charset other than UTF-8: said, not misread
    let raw = |head: &str, body: &[u8]| -> String {
        let mut conn = TcpStream::connect(&s.addr).unwrap();
        write!(
            conn,
            "POST /v1/events HTTP/1.1\r\nHost: t\r\n{head}Content-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(body).unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).unwrap();
        resp
    };
    let resp = raw("", &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    assert!(
        resp.starts_with("HTTP/1.1 415") && resp.contains("gzip"),
        "{resp}"
    );
    let resp = raw("Content-Type: application/json; charset=gbk\r\n", b"{}");
    assert!(
        resp.starts_with("HTTP/1.1 415") && resp.contains("charset `gbk`"),
        "{resp}"
    );
    // JSON lines under the names clients give them
    for (n, t) in [
        "application/jsonlines",
        "text/x-ndjson",
        "application/json; charset=UTF-8",
    ]
    .into_iter()
    .enumerate()
    {
        let click = json!({"id": id(990 + n as u32), "type":"click",
            "ts":"2026-11-11T09:00:00+08:00", "channel":"jd","member":{"jd":"j-1"},
            "target":"ad-1"});
        let resp = raw(
            &format!("Content-Type: {t}\r\n"),
            click.to_string().as_bytes(),
        );
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.contains("accepted"),
            "{t}: {resp}"
        );
    }
    let mut events = script();
    events.insert(1, r#"{"id":"nope","type":"scan"}"#.to_string());
    let r = s.post(&events);
    assert_eq!(
        (r["accepted"].as_u64(), r["rejected"].as_u64()),
        (Some(14), Some(1)),
        "{r}"
    );
    assert_eq!(r["results"][1]["status"], "rejected");
    assert_eq!(r["results"][1]["reasons"][0]["reason"], "bad_uuid");
    let dead = s.get("/v1/outputs?output=dead_letter");
    assert_eq!(dead["items"].as_array().unwrap().len(), 1, "{dead}");
    // when it came, by the service's clock (dead letters have no event time to go by)
    let received = dead["items"][0]["output"]["received_at"]
        .as_str()
        .unwrap_or("");
    let received = omnistream_schemas::EventTime::parse(received);
    let now = omnistream::shard::wall_clock_us();
    assert!(
        received.is_ok_and(|t| (now - 60_000_000..=now).contains(&t.unix_us)),
        "{dead}"
    );
    // a JSON array with a broken element: the others are still answered, the broken one
    // refused and dead-lettered (the whole request was a 400 before)
    let body = format!("[{}, {{\"id\": \"x\", \"type\": }}]", script()[0]);
    let r = s.post(&[body]);
    assert_eq!(r["results"][0]["status"], "duplicate", "{r}");
    assert_eq!(r["results"][1]["status"], "rejected", "{r}");
    assert_eq!(r["results"][1]["reasons"][0]["reason"], "bad_json", "{r}");
    let dead = s.get("/v1/outputs?output=dead_letter");
    assert_eq!(dead["items"].as_array().unwrap().len(), 2, "{dead}");
    // a quote closed in the wrong place in the first element: the two after it stand
    let click = |n: u32, ts: &str| {
        format!(
            r#"{{"id":"{}","type":"click","ts":"{ts}","channel":"jd","member":{{"jd":"j-2"}},"target":"ad-2"}}"#,
            id(n)
        )
    };
    let broken = click(995, "2026-11-11T09:10:00+08:00").replace(r#"+08:00","#, "+08:00,");
    let body = format!(
        "[{broken}, {}, {}]",
        click(996, "2026-11-11T09:11:00+08:00"),
        click(997, "2026-11-11T09:12:00+08:00")
    );
    let r = s.post(&[body]);
    let statuses = texts(&r["results"], "status");
    assert_eq!(statuses, ["rejected", "accepted", "accepted"], "{r}");
    assert_eq!(
        r["results"][0]["id"],
        id(995),
        "the broken one keeps its id: {r}"
    );
    // an integrator finds a refusal later by its reason or by the id it was sent with
    let by_reason = s.get("/v1/outputs?output=dead_letter&reason=bad_uuid");
    let items = by_reason["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{by_reason}");
    assert_eq!(items[0]["output"]["id"], "nope", "{by_reason}");
    let by_id = s.get(&format!("/v1/outputs?output=dead_letter&id={}", id(995)));
    assert_eq!(by_id["items"].as_array().unwrap().len(), 1, "{by_id}");
    let (code, v) = s.request("GET", "/v1/outputs?output=dead_letter&reason=bad_uid", "");
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.request("GET", "/v1/outputs?id=nope", "");
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.request("GET", "/v1/members/nobody", "");
    assert_eq!(code, 404);
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("/v1/identities/{kind}/{value}"),
        "an id not of the issued form says where to look a member up: {v}"
    );
    // a kind none of the contract's: looked up as sent, and the miss says so
    let (code, v) = s.request("GET", "/v1/identities/Phone/13800138000", "");
    assert_eq!(code, 404, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("none of the contract's identity kinds"),
        "{v}"
    );
    let (code, v) = s.request("GET", "/v1/identities/phone/not-a-phone", "");
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.request("POST", "/v1/scan", &script()[2]);
    assert_eq!(code, 400, "an order is not a scan: {v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("is an `order` event"),
        "{v}"
    );
    // a body that is not one scan says what it is instead
    for (body, code, says) in [
        ("{\"id\": 1,", "bad_body", "not JSON"),
        ("{\"id\": \"x\"}", "not_a_scan", "type: missing"),
        ("[]", "not_a_scan", "one JSON object"),
    ] {
        let (status, v) = s.request("POST", "/v1/scan", body);
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some(code)),
            "{body}: {v}"
        );
        assert!(
            v["detail"].as_str().unwrap_or("").contains(says),
            "{body}: {v}"
        );
    }
    // a filter no output has, or a page bound that is not a number: 400 naming it, never an
    // empty page that passes for an answer
    let (code, v) = s.request("GET", "/v1/outputs?output=dead-letter", "");
    assert_eq!(code, 400, "{v}");
    let detail = v["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with("output:") && detail.contains("`dead_letter`"),
        "{v}"
    );
    for path in [
        "/v1/outputs?from=abc",
        "/v1/decisions?limit=-1",
        "/v1/outputs?order=o1",
    ] {
        let (code, v) = s.request("GET", path, "");
        assert_eq!(code, 400, "{path}: {v}");
        assert_eq!(v["error"], "bad_query", "{path}: {v}");
    }
    let (code, v) = s.request("GET", "/v1/members/m1/ledger?from=x", "");
    assert_eq!(code, 400, "{v}");
    assert!(
        v["detail"].as_str().unwrap_or("").starts_with("from:"),
        "{v}"
    );
    // another method on a served path: 405 with the methods it takes (RFC 9110 wants the
    // Allow header); a path not served: 404
    let (code, head, body) = s.raw("DELETE /v1/members/m1 HTTP/1.1\r\nHost: t", b"");
    assert_eq!(code, 405, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nallow: get\r\n"),
        "{head}"
    );
    assert!(
        body.contains("method_not_allowed") && body.contains("it takes GET"),
        "{body}"
    );
    let (code, head, _) = s.raw("GET /v1/events HTTP/1.1\r\nHost: t", b"");
    assert_eq!(code, 405);
    assert!(
        head.to_ascii_lowercase().contains("\r\nallow: post\r\n"),
        "{head}"
    );
    let (code, _, _) = s.raw("HEAD /healthz HTTP/1.1\r\nHost: t", b"");
    assert_eq!(code, 200, "HEAD /healthz");
    let (code, head, _) = s.raw("DELETE /readyz HTTP/1.1\r\nHost: t", b"");
    assert_eq!(code, 405);
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nallow: get, head\r\n"),
        "{head}"
    );
    let (code, v) = s.request("GET", "/v1/nothing", "");
    assert_eq!((code, &v["error"]), (404, &json!("no_route")), "{v}");
    // a query parameter the route does not take: 400 naming it and what the route takes,
    // never an unfiltered answer
    let (code, v) = s.request("GET", "/v1/decisions?campain=cny", "");
    assert_eq!((code, &v["error"]), (400, &json!("bad_query")), "{v}");
    assert_eq!(
        v["detail"],
        "campain: unknown query parameter; /v1/decisions takes campaign, from, limit, decision, \
         member, pending, sku, device, ip, code, reason, scan_event"
    );
    let (code, v) = s.request("GET", "/v1/skus/S1/stock?at=now", "");
    assert_eq!((code, &v["error"]), (400, &json!("bad_query")), "{v}");
    let (code, _) = s.request("GET", "/v1/decisions?campaign=cny&limit=5", "");
    assert_eq!(code, 200);
    // the board page's own switch (ops/board_check.py loads it so)
    let (code, _) = s.request_text("GET", "/?poll", "");
    assert_eq!(code, 200, "/?poll");
}

#[test]
fn restarts_after_sigterm_and_sigkill_reach_the_same_state_as_one_run() {
    let events = script();
    let whole = tempfile::tempdir().unwrap();
    let s = Service::start(whole.path());
    s.post(&events);
    let expected = observe(&s);
    s.stop();

    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    s.post(&events[..5]);
    s.stop();
    let s = Service::start(dir.path());
    s.post(&events[5..9]);
    // answered means durable: a SIGKILL right after loses nothing acknowledged
    s.kill();
    let s = Service::start(dir.path());
    let r = s.post(&events);
    assert_eq!(r["duplicates"], 9, "the first nine were kept: {r}");
    assert_eq!(observe(&s), expected);
    s.stop();
}

#[test]
fn a_scan_sent_to_review_is_paid_once_a_person_allows_it_and_survives_a_restart() {
    review_survives_restarts(&[]);
}

/// With `rules.stock.cancel-unpaid-after-s`, an order left unpaid is cancelled once event
/// time passes its due time, across a restart in between (its timer is state: rebuilt from
/// the log after SIGKILL, kept in the checkpoint after SIGTERM), on one shard or three.
#[test]
fn an_unpaid_order_lets_its_stock_go_after_the_configured_time_across_restarts() {
    for (shards, graceful) in [("1", false), ("3", true)] {
        let env = [
            ("OMNISTREAM_RULES__STOCK__CANCEL_UNPAID_AFTER_S", "1800"),
            ("OMNISTREAM_SHARDS", shards),
        ];
        let dir = tempfile::tempdir().unwrap();
        let s = Service::start_with(dir.path(), &env);
        let ev =
            |n: u32, ts: &str, rest: &str| format!(r#"{{"id":"{}","ts":"{ts}",{rest}}}"#, id(n));
        let stock = r#""type":"stock","sku":"S1","location":"wh","op":"receive","qty":5"#;
        let order = |o: &str, status: &str| {
            format!(
                r#""type":"order","channel":"mall","order":"{o}","status":"{status}","kind":"consumer","member":{{"openid":"ou"}},"lines":[{{"sku":"S1","qty":2,"unit_price":100}}],"location":"wh""#
            )
        };
        let r = s.post(&[
            ev(1, "2026-11-11T10:00:00+08:00", stock),
            ev(2, "2026-11-11T10:00:00+08:00", &order("u1", "placed")),
            ev(3, "2026-11-11T10:05:00+08:00", &order("u2", "placed")),
            ev(4, "2026-11-11T10:20:00+08:00", &order("u2", "paid")),
        ]);
        assert_eq!(r["accepted"], 4, "{r}");
        assert_eq!(s.get("/v1/skus/S1/stock")["atp"], 1);
        // the unpaid order shows when it lets go (in UTC), the paid one nothing
        let due = "2026-11-11T02:30:00.000Z";
        assert_eq!(s.get("/v1/orders/mall/u1")["cancel_unpaid_at"], due);
        assert!(s.get("/v1/orders/mall/u2")["cancel_unpaid_at"].is_null());
        if graceful {
            s.stop();
        } else {
            s.kill();
        }
        let s = Service::start_with(dir.path(), &env);
        assert_eq!(s.get("/v1/orders/mall/u1")["cancel_unpaid_at"], due);
        // event time reaches 10:31 with u3's placement: u1's half hour is up, u2 was paid in
        // time; u3's answer is u3's own result, not the cancellation its time made due
        let r = s.post(&[ev(5, "2026-11-11T10:31:00+08:00", &order("u3", "placed"))]);
        assert_eq!(r["accepted"], 1, "{r}");
        let said = &r["results"][0]["order"];
        assert_eq!(
            (said["output"].as_str(), said["order"].as_str()),
            (Some("order_accepted"), Some("mall:u3")),
            "{r}"
        );
        let u1 = s.get("/v1/orders/mall/u1");
        assert_eq!(
            (u1["phase"].as_str(), u1["status"].as_str()),
            (Some("cancelled"), Some("cancelled")),
            "{u1}"
        );
        assert!(u1["cancel_unpaid_at"].is_null(), "{u1}");
        assert_eq!(
            u1["cancel_detail"],
            "not paid by 2026-11-11T10:30:00.000+08:00 (cancel-unpaid-after-s)",
            "{u1}"
        );
        assert_eq!(u1["placed_at"], "2026-11-11T10:00:00.000+08:00", "{u1}");
        assert_eq!(s.get("/v1/orders/mall/u2")["status"], "placed");
        assert_eq!(
            s.get("/v1/skus/S1/stock")["atp"],
            1,
            "u1's two units are back, u3 took two"
        );
        let said = s.get("/v1/outputs?order=mall:u1&output=order_status");
        assert_eq!(
            said["items"][0]["output"]["detail"],
            "not paid by 2026-11-11T10:30:00.000+08:00 (cancel-unpaid-after-s)",
            "{said}"
        );
        let text = s.request_text("GET", "/metrics", "").1;
        assert_eq!(
            sample(
                &text,
                r#"omnistream_orders_total{result="unpaid_cancelled"}"#
            ),
            1.0,
            "shards {shards}"
        );
        // the payment that comes after is refused with the reason
        let late = s.post(&[ev(6, "2026-11-11T10:40:00+08:00", &order("u1", "paid"))]);
        assert_eq!(
            late["results"][0]["order"]["reason"], "order was cancelled",
            "{late}"
        );
        s.stop();
    }
}

/// Rules changed between runs apply to what comes after the change, never to events that
/// ran before it, whatever kind of stop came between: the events replayed from the log after
/// a SIGKILL run under the rules they ran under (the log records them), and those after the
/// restart under the new ones.
#[test]
fn changed_rules_apply_from_the_restart_on_and_never_to_the_replayed_log() {
    let dir = tempfile::tempdir().unwrap();
    let order = |n: u32, o: &str, status: &str, h: u32| {
        format!(
            r#"{{"id":"{}","ts":"2026-11-11T{h:02}:00:00+08:00","type":"order","channel":"mall","order":"{o}","status":"{status}","kind":"consumer","member":{{"openid":"oa"}},"lines":[{{"sku":"S1","qty":2,"unit_price":10000}}],"location":"wh"}}"#,
            id(n)
        )
    };
    // one order of 200 yuan: 200 points at 100 fen a point, 400 at 50
    let buy = |s: &Service, n: u32, o: &str, h: u32| {
        let r = s.post(&[
            order(n, o, "placed", h),
            order(n + 1, o, "fulfilled", h + 1),
        ]);
        assert_eq!(r["accepted"], 2, "{r}");
    };
    let balance = |s: &Service| s.get("/v1/identities/openid/oa")["balance"].clone();
    let half = [("OMNISTREAM_RULES__POINTS__FEN_PER_POINT", "50")];
    let data = dir.path().join("data");
    let s = Service::start(&data);
    let stock = r#""type":"stock","sku":"S1","location":"wh","op":"receive","qty":100"#;
    let r = s.post(&[format!(
        r#"{{"id":"{}","ts":"2026-11-11T07:00:00+08:00",{stock}}}"#,
        id(100)
    )]);
    assert_eq!(r["accepted"], 1, "{r}");
    buy(&s, 1, "a1", 8);
    assert_eq!(balance(&s), 200);
    s.kill();
    // the log tail replays at 100 fen a point; the new order earns at 50, and the log says
    // so before it (a second SIGKILL replays both alike)
    let log = dir.path().join("stderr.log");
    let s = Service::start_logging(
        &data,
        &half,
        std::process::Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    assert_eq!(
        balance(&s),
        200,
        "the replayed order earned at the new rate"
    );
    buy(&s, 3, "a2", 10);
    assert_eq!(balance(&s), 600);
    s.kill();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("points.fen-per-point") && said.contains("rules differ"),
        "{said}"
    );
    // a checkpoint carries the rules the log after it runs under: one is written (the
    // replayed tail makes it due at the first commit), a5 comes after it, then a SIGKILL
    // and a start on the old rules
    let every = [half[0], ("OMNISTREAM_CHECKPOINT_EVERY_EVENTS", "4")];
    let s = Service::start_with(&data, &every);
    assert_eq!(balance(&s), 600);
    buy(&s, 5, "a4", 12);
    let checkpoints = checkpoints_written(&s);
    assert_eq!(checkpoints, 1, "no checkpoint was written");
    buy(&s, 7, "a5", 14);
    assert_eq!(balance(&s), 1400);
    s.kill();
    let s = Service::start(&data);
    assert_eq!(balance(&s), 1400, "a5 earned again at 100 fen a point");
    buy(&s, 9, "a6", 16);
    assert_eq!(balance(&s), 1600);
    // after a graceful stop, back to the new rate: nothing earned changes
    s.stop();
    let s = Service::start_with(&data, &half);
    assert_eq!(balance(&s), 1600);
    s.stop();
}

/// The shard's checkpoints once one is written (a thread of its own writes it after the
/// commit that made it due), or 0 after 5 s.
fn checkpoints_written(s: &Service) -> u64 {
    for _ in 0..100 {
        let n = s.get("/v1/stats")["shard"]["checkpoints"].as_u64().unwrap();
        if n >= 1 {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    0
}

/// The same on three shards: the review's resolution is an admin command run over the shards
/// (the member may live on any of them) and replayed from the log after a restart.
#[test]
fn on_three_shards_a_review_is_paid_once_and_survives_a_restart() {
    review_survives_restarts(&[("OMNISTREAM_SHARDS", "3")]);
}

/// A scan held for review, allowed by a person after a restart, paid once, kept after another.
fn review_survives_restarts(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(dir.path(), env);
    let scan = |n: u32, code: &str, ts: &str, lat: f64, lon: f64| {
        json!({"id": id(n), "type":"scan","ts":ts,"channel":"campaign","code":code,"sku":"S1","campaign":"cny",
               "member":{"openid":"traveller"},"device":"d9","ip":"10.9.9.9","geo":{"lat":lat,"lon":lon}})
        .to_string()
    };
    // Shanghai, then Beijing ten minutes later: faster than any plane
    let first = s
        .request(
            "POST",
            "/v1/scan",
            &scan(1, "A1", "2026-11-11T10:00:00+08:00", 31.23, 121.47),
        )
        .1;
    assert_eq!(first["decision"]["decision"], "allow", "{first}");
    let second = s
        .request(
            "POST",
            "/v1/scan",
            &scan(2, "A2", "2026-11-11T10:10:00+08:00", 39.90, 116.40),
        )
        .1;
    assert_eq!(second["decision"]["decision"], "review", "{second}");
    assert_eq!(second["decision"]["reward"], 0);
    // what was scanned, for the reviewer: SKU, device, address
    assert_eq!(
        second["decision"]["scan"],
        json!({"sku": "S1", "device": "d9", "ip": "10.9.9.9"}),
        "{second}"
    );
    let profile = s.get("/v1/identities/openid/traveller");
    assert_eq!(profile["balance"], 10);
    assert_eq!(
        (
            &profile["held_reviews"][0]["scan_event"],
            &profile["held_reviews"][0]["points"]
        ),
        (&json!(id(2)), &json!(10)),
        "{profile}"
    );
    // sent again through /v1/events: a duplicate, with the decision it got
    let v = s.post(&[scan(2, "A2", "2026-11-11T10:10:00+08:00", 39.90, 116.40)]);
    assert_eq!(v["results"][0]["status"], "duplicate", "{v}");
    // the decision output itself (/v1/scan also shows the envelope's event and at)
    let mut want = second["decision"].clone();
    for k in ["event", "at"] {
        want.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(v["results"][0]["decision"], want, "{v}");
    assert!(v["results"][0]["resolution"].is_null(), "{v}");
    let listed = s.get("/v1/decisions?campaign=cny");
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    // the risk team's queue: the reviews still waiting for a person
    let queue = s.get("/v1/decisions?campaign=cny&decision=review&pending=true");
    let items = queue["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queue}");
    let (_, metrics) = common::http_get(&s.addr, "/metrics", None);
    assert!(
        metrics.contains("\nomnistream_reviews_pending 1\n"),
        "{metrics}"
    );
    assert_eq!(items[0]["output"]["scan_event"], id(2), "{queue}");
    assert_eq!(items[0]["output"]["pending"], true, "{queue}");
    let member = first["decision"]["member"].as_str().unwrap();
    let allowed = s.get(&format!("/v1/decisions?decision=allow&member={member}"));
    assert_eq!(allowed["items"].as_array().unwrap().len(), 1, "{allowed}");
    // and by what was scanned: both came from one device, neither from another
    let by_device = s.get("/v1/decisions?device=d9&sku=S1&ip=10.9.9.9");
    assert_eq!(
        by_device["items"].as_array().unwrap().len(),
        2,
        "{by_device}"
    );
    let other = s.get("/v1/decisions?device=d1");
    assert!(other["items"].as_array().unwrap().is_empty(), "{other}");
    // by the code scanned, by a reason, by the scan itself
    let count = |q: &str| {
        let v = s.get(&format!("/v1/decisions?{q}"));
        v["items"].as_array().unwrap().len()
    };
    assert_eq!(count("code=A2"), 1);
    assert_eq!(count("code=A3"), 0);
    assert_eq!(count("reason=impossible_travel"), 1);
    assert_eq!(count("reason=code_shared"), 0);
    assert_eq!(count(&format!("scan_event={}", id(2).to_uppercase())), 1);
    assert_eq!(count(&format!("scan_event={}", id(2).replace('-', ""))), 1);
    assert_eq!(count(&format!("scan_event={}", id(3))), 0);
    for (bad, names) in [
        ("decision=maybe", "decision"),
        ("pending=yes", "pending"),
        ("colour=red", "colour"),
        ("decision=allow&pending=true", "pending"),
        (
            "pending=true&pending=false",
            "pending: given more than once",
        ),
        ("scan_event=42", "scan_event"),
        ("reason=batch-harvest", "reason: `batch-harvest` is none of"),
    ] {
        let (code, v) = s.request("GET", &format!("/v1/decisions?{bad}"), "");
        assert_eq!(
            (code, v["error"].as_str()),
            (400, Some("bad_query")),
            "{bad}: {v}"
        );
        assert!(
            v["detail"].as_str().unwrap_or("").starts_with(names),
            "{bad}: {v}"
        );
    }
    // an openid given for a member id: no member has it
    for path in [
        "/v1/decisions?member=traveller",
        "/v1/outputs?member=traveller",
        "/v1/outputs?output=merge_conflict&member=traveller",
        "/v1/outputs/stream?member=traveller",
    ] {
        let (code, v) = s.request("GET", path, "");
        assert_eq!(
            (code, v["error"].as_str()),
            (404, Some("not_found")),
            "{path}: {v}"
        );
    }
    // the campaign (not configured: it runs on default-campaign's rules): 10 paid, 10 held
    let c = s.get("/v1/campaigns/cny");
    assert_eq!(
        (
            &c["configured"],
            &c["points"],
            &c["spent"],
            &c["decisions"]["review"]
        ),
        (&json!(false), &json!(10), &json!(20), &json!(1)),
        "{c}"
    );
    let (code, _) = s.request("GET", "/v1/campaigns/no-such-campaign", "");
    assert_eq!(code, 404);
    // the list holds it, as it reads alone
    let list = s.get("/v1/campaigns");
    assert!(list["items"].as_array().unwrap().contains(&c), "{list}");
    // a cursor past the end answers the end, where the next output will be
    let end = s.get("/v1/outputs?from=99999");
    assert!(end["items"].as_array().unwrap().is_empty(), "{end}");
    let last = listed["items"][1]["seq"].as_u64().unwrap();
    let next = end["next"].as_u64().unwrap();
    assert!(next > last && next < 99999, "{end} after {listed}");
    // a consumer's retry of the first scan: a duplicate, answered with the decision it got
    let resend = |s: &Service, body: String| s.request("POST", "/v1/scan", &body).1;
    let again = resend(
        &s,
        scan(1, "A1", "2026-11-11T10:00:00+08:00", 31.23, 121.47),
    );
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_eq!(again["decision"], first["decision"], "{again}");
    assert!(again.get("warnings").is_none(), "{again}");
    // its id taken again by a scan of another code (a channel's bug): not that scan's
    // decision to give (another consumer's), only why nothing was decided
    let reused = resend(
        &s,
        scan(1, "Z9", "2026-11-11T10:00:00+08:00", 31.23, 121.47),
    );
    assert_eq!(
        (&reused["status"], &reused["decision"]),
        (&json!("duplicate"), &Value::Null),
        "{reused}"
    );
    assert!(
        reused["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("id_reused at id:"),
        "{reused}"
    );
    assert_eq!(s.get("/v1/identities/openid/traveller")["balance"], 10);
    s.stop();
    // the review survives a restart (it is state rebuilt from the log)
    let s = Service::start_with(dir.path(), env);
    // a body the service cannot record is refused with why, and resolves nothing
    let long = "x".repeat(1001);
    for (body, why) in [
        (
            r#"{"decision":"allow","reviewr":"ann"}"#.to_string(),
            "unknown field `reviewr`",
        ),
        (
            r#"{"decision":"allow","reviewer":"  "}"#.to_string(),
            "reviewer: empty",
        ),
        (
            json!({"decision": "allow", "note": long}).to_string(),
            "note: longer than 1000",
        ),
        (
            r#"{"decision":"allow","reviewer":"a\u0007b"}"#.to_string(),
            "reviewer: holds a control",
        ),
    ] {
        let (code, v) = s.request("POST", &format!("/v1/reviews/{}", id(2)), &body);
        assert_eq!(
            (code, v["error"].as_str()),
            (400, Some("bad_body")),
            "{body}: {v}"
        );
        assert!(v["detail"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    let before = std::time::SystemTime::now();
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(2)),
        r#"{"decision":"allow","reviewer":"Ann Li","note":"travelling for work:\r\nticket seen"}"#,
    );
    assert_eq!(code, 200, "{v}");
    // who resolved it and why, and when by the service's clock (no token: access is off)
    let by = &v["resolution"]["by"];
    assert_eq!(
        (&by["reviewer"], &by["note"], &by["token"]),
        (
            &json!("Ann Li"),
            &json!("travelling for work:\r\nticket seen"),
            &Value::Null
        ),
        "{v}"
    );
    let at = by["at"].as_str().unwrap();
    let at_ms = omnistream_schemas::EventTime::parse(at).unwrap().unix_us / 1000;
    let before_ms = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        at.ends_with('Z') && (before_ms..before_ms + 60_000).contains(&at_ms),
        "{v}"
    );
    let profile = s.get("/v1/identities/openid/traveller");
    assert_eq!(profile["balance"], 20);
    assert!(profile.get("held_reviews").is_none(), "{profile}");
    assert_eq!(
        (v["status"].as_str(), v["resolution"]["allow"].as_bool()),
        (Some("accepted"), Some(true)),
        "{v}"
    );
    // the reviewer's retry (its answer lost) gets the resolution, paid once; the other
    // decision is refused, a resolution being final; a scan never held is no review
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(2)),
        r#"{"decision":"allow"}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "duplicate", "{v}");
    assert_eq!(v["resolution"]["allow"], true, "{v}");
    assert_eq!(s.get("/v1/identities/openid/traveller")["balance"], 20);
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(2)),
        r#"{"decision":"block"}"#,
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("already_resolved")),
        "{v}"
    );
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(1)),
        r#"{"decision":"allow"}"#,
    );
    // an allowed scan is no review: the answer says what it was decided
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("not_under_review")),
        "{v}"
    );
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("decided `allow`"),
        "{v}"
    );
    // an id no scan had
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(4242)),
        r#"{"decision":"allow"}"#,
    );
    assert_eq!((code, v["error"].as_str()), (404, Some("no_review")), "{v}");
    // the held scan sent again: answered with the decision it got before the restart (read
    // back from the stored outputs) and the review's resolution
    let again = resend(
        &s,
        scan(2, "A2", "2026-11-11T10:10:00+08:00", 39.90, 116.40),
    );
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_eq!(again["decision"], second["decision"], "{again}");
    assert_eq!(again["resolution"]["allow"], true, "{again}");
    assert_eq!(again["resolution"]["reward"], 10, "{again}");
    // resolved: out of the queue, still listed as a review no longer pending
    let queue = s.get("/v1/decisions?decision=review&pending=true");
    assert!(queue["items"].as_array().unwrap().is_empty(), "{queue}");
    let done = s.get("/v1/decisions?decision=review&pending=false");
    assert_eq!(done["items"][0]["output"]["pending"], false, "{done}");
    // with what became of it
    let resolution = &done["items"][0]["output"]["resolution"];
    assert_eq!(
        (
            &resolution["output"],
            &resolution["allow"],
            &resolution["reward"]
        ),
        (&json!("review_resolved"), &json!(true), &json!(10)),
        "{done}"
    );
    let (code, _) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(1)),
        r#"{"decision":"maybe"}"#,
    );
    assert_eq!(code, 400);
    s.stop();
    // and the resolution itself is in the log: after another restart the reward is still paid
    let s = Service::start_with(dir.path(), env);
    assert_eq!(s.get("/v1/identities/openid/traveller")["balance"], 20);
    // and the queue still says what became of the review (read back from the outputs)
    let done = s.get("/v1/decisions?decision=review");
    assert_eq!(
        done["items"][0]["output"]["resolution"]["allow"], true,
        "{done}"
    );
    // with who resolved it, as the log recorded it
    assert_eq!(
        done["items"][0]["output"]["resolution"]["by"], resolution["by"],
        "{done}"
    );
    assert_eq!(resolution["by"]["reviewer"], "Ann Li", "{resolution}");
    // and both scans sent again are still answered as they were
    let again = resend(
        &s,
        scan(1, "A1", "2026-11-11T10:00:00+08:00", 31.23, 121.47),
    );
    assert_eq!(again["decision"], first["decision"], "{again}");
    assert!(again["resolution"].is_null(), "{again}");
    let again = resend(
        &s,
        scan(2, "A2", "2026-11-11T10:10:00+08:00", 39.90, 116.40),
    );
    assert_eq!(again["decision"], second["decision"], "{again}");
    assert_eq!(again["resolution"]["reward"], 10, "{again}");
    s.stop();
}

/// `POST /v1/events` answers each accepted event with what it did: a scan's decision (and why
/// an allowed scan paid nothing), a payment's credit, or why a payment was not booked.
#[test]
fn a_dealers_events_answer_where_they_ended_and_list_under_the_dealer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let t = |h: u32| format!("2026-11-11T{h:02}:00:00+08:00");
    let ev = |n: u32, v: Value| {
        let mut v = v;
        v["id"] = json!(id(n));
        v.to_string()
    };
    let order = |n: u32, h: u32, o: &str, qty: i64, price: i64| {
        ev(
            n,
            json!({"type":"order","ts":t(h),"channel":"dealer","order":o,"status":"placed","kind":"dealer",
            "dealer":"d2","lines":[{"sku":"SB","qty":qty,"unit_price":price}],"location":"wh"}),
        )
    };
    let v = s.post(&[
        ev(
            1,
            json!({"type":"stock","ts":t(8),"sku":"SB","location":"wh","op":"receive","qty":10}),
        ),
        ev(
            2,
            json!({"type":"dealer","ts":t(8),"dealer":"d2","credit_limit":100_000_000}),
        ),
        // a pallet dear by the unit (¥50,000 each) is an order like any other
        order(3, 9, "big", 2, 5_000_000),
        // more than the stock: taken on credit, then refused for stock, the credit given back
        order(4, 9, "short", 20, 100),
    ]);
    let r = &v["results"];
    assert_eq!(r[2]["order"]["output"], "order_accepted", "{v}");
    assert_eq!(r[3]["order"]["output"], "order_rejected", "{v}");
    assert_eq!(
        (&r[3]["credit"]["exposure"], &r[3]["credit"]["open_orders"]),
        (&json!(10_000_000), &json!(1)),
        "the answer is the credit after the refusal: {v}"
    );
    // a limit cut holds two orders; a raise releases both, which then take their stock:
    // all of it is in the answer
    let v = s.post(&[
        ev(
            5,
            json!({"type":"dealer","ts":t(10),"dealer":"d2","credit_limit":10_000_000}),
        ),
        order(6, 10, "h1", 1, 300),
        order(7, 10, "h2", 1, 400),
        ev(
            8,
            json!({"type":"dealer","ts":t(11),"dealer":"d2","credit_limit":100_000_000}),
        ),
    ]);
    let r = &v["results"];
    assert_eq!(r[1]["order"]["output"], "order_held", "{v}");
    let released: Vec<_> = r[3]["orders"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|o| (o["output"].clone(), o["order"].clone()))
        .collect();
    assert_eq!(
        released,
        [
            (json!("order_released"), json!("dealer:h1")),
            (json!("order_released"), json!("dealer:h2")),
            (json!("order_accepted"), json!("dealer:h1")),
            (json!("order_accepted"), json!("dealer:h2"))
        ],
        "{v}"
    );
    // shipping moves the exposure from open orders to unpaid: published as credit
    let v = s.post(&[ev(
        9,
        json!({"type":"order","ts":t(12),"channel":"dealer","order":"big","status":"fulfilled","kind":"dealer","dealer":"d2"}),
    )]);
    let credit = &v["results"][0]["credit"];
    assert_eq!(
        (&credit["unpaid"], &credit["open_orders"]),
        (&json!(10_000_000), &json!(2)),
        "{v}"
    );
    // the dealer's orders are listed under the dealer: every kind of order output
    let listed = s.get("/v1/outputs?dealer=d2&limit=100");
    let kinds: std::collections::BTreeSet<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["output"]["output"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "order_accepted",
        "order_rejected",
        "order_held",
        "order_released",
        "order_status",
        "credit",
    ] {
        assert!(
            kinds.contains(k),
            "{k} not listed under the dealer: {kinds:?}"
        );
    }
    let short = s.get("/v1/outputs?dealer=d2&output=order_rejected");
    assert_eq!(
        short["items"][0]["output"]["order"], "dealer:short",
        "{short}"
    );
    // 100 fen of room: an order of 250 is held; the scrape says so, as the state does now
    let v = s.post(&[
        ev(
            10,
            json!({"type":"dealer","ts":t(13),"dealer":"d2","credit_limit":10_000_800}),
        ),
        order(11, 13, "h3", 1, 250),
    ]);
    assert_eq!(v["results"][1]["order"]["output"], "order_held", "{v}");
    let (_, text) = s.request_text("GET", "/metrics", "");
    for (series, want) in [
        ("omnistream_dealer_orders_held ", 1.0),
        ("omnistream_dealer_held_fen ", 250.0),
        ("omnistream_dealer_exposure_fen ", 10_000_700.0),
        ("omnistream_dealers_over_limit ", 0.0),
    ] {
        assert_eq!(sample(&text, series), want, "{series}");
    }
    // the same after a restart from the shutdown checkpoint, where no dealer is resident
    // until an event touches it: the gauges read every dealer, stored ones too
    s.stop();
    let s = Service::start(dir.path());
    let (_, text) = s.request_text("GET", "/metrics", "");
    for (series, want) in [
        ("omnistream_dealer_orders_held ", 1.0),
        ("omnistream_dealer_held_fen ", 250.0),
        ("omnistream_dealer_exposure_fen ", 10_000_700.0),
    ] {
        assert_eq!(sample(&text, series), want, "after a restart: {series}");
    }
    // a dealer that paid ahead (exposure below 0) covers nobody else's debt: apart, `prepaid`;
    // one no `dealer` event set up is booked, and the sender told (a mistyped dealer id)
    let v = s.post(&[ev(
        30,
        json!({"type":"payment","ts":t(15),"dealer":"d-ahead","amount":5000,"ref":"PRE-1"}),
    )]);
    let r = &v["results"][0];
    assert_eq!(r["status"], "accepted", "{v}");
    let w = r["warnings"][0].as_str().unwrap_or_default();
    assert!(w.starts_with("unknown_dealer at dealer: "), "{v}");
    assert!(w.contains("`d-ahead`"), "{v}");
    // counted; and a retry (after a timeout) is told again
    let (_, text) = s.request_text("GET", "/metrics", "");
    let series = r#"omnistream_event_warnings_total{code="unknown_dealer"} "#;
    assert_eq!(sample(&text, series), 1.0);
    let v = s.post(&[ev(
        30,
        json!({"type":"payment","ts":t(15),"dealer":"d-ahead","amount":5000,"ref":"PRE-1"}),
    )]);
    let r = &v["results"][0];
    assert_eq!(
        (&r["status"], &r["booked"]),
        (&json!("duplicate"), &json!(5000))
    );
    let w = r["warnings"][0].as_str().unwrap_or_default();
    assert!(w.starts_with("unknown_dealer at dealer: "), "{v}");
    let (_, text) = s.request_text("GET", "/metrics", "");
    for (series, want) in [
        ("omnistream_dealer_exposure_fen ", 10_000_700.0),
        ("omnistream_dealer_prepaid_fen ", 5000.0),
    ] {
        assert_eq!(sample(&text, series), want, "{series}");
    }
    // the credit controller's list: every dealer as its credit view, or those holding orders
    let all = s.get("/v1/dealers");
    assert_eq!(
        (&all["dealers"], &all["prepaid"]),
        (&json!(2), &json!(5000)),
        "{all}"
    );
    let free = s.get("/v1/dealers?held=false");
    assert_eq!(texts(&free["items"], "dealer"), ["d-ahead"], "{free}");
    // the most exposed first, one listed, the count and totals of all
    let top = s.get("/v1/dealers?sort=exposure&limit=1");
    assert_eq!(texts(&top["items"], "dealer"), ["d2"], "{top}");
    assert_eq!(
        (&top["dealers"], &top["prepaid"]),
        (&json!(2), &json!(5000)),
        "{top}"
    );
    let d2 = &top["items"][0];
    assert_eq!(
        d2["open_fen"].as_i64().unwrap() + d2["unpaid"].as_i64().unwrap(),
        d2["exposure"].as_i64().unwrap(),
        "{top}"
    );
    assert_eq!(d2["held_fen"], 250, "{top}");
    let (code, v) = s.request("GET", "/v1/dealers?sort=size", "");
    assert_eq!(code, 400, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("exposure, held_fen, past_limit"),
        "{v}"
    );
    // an old record of the credit system sent again: the newer limit stays, and it is said
    let limit = s.get("/v1/dealers/d2/credit")["limit"].clone();
    let v = s.post(&[ev(
        31,
        json!({"type":"dealer","ts":t(7),"dealer":"d2","credit_limit":5}),
    )]);
    let r = &v["results"][0];
    assert_eq!(
        (&r["status"], &r["credit"]["output"]),
        (&json!("accepted"), &json!("dealer_ignored")),
        "{v}"
    );
    let w = r["warnings"][0].as_str().unwrap_or_default();
    assert!(
        w.starts_with("dealer_ignored: the `dealer` event of d2 was not applied (stamped"),
        "{v}"
    );
    assert_eq!(s.get("/v1/dealers/d2/credit")["limit"], limit);
    let d2 = s.get("/v1/dealers/d2/credit");
    let listed: Vec<&Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["dealer"] == "d2")
        .collect();
    assert_eq!(listed, [&d2], "{all}");
    assert_eq!(all["exposure"], 10_000_700, "{all}");
    let held = s.get("/v1/dealers?held=true");
    assert_eq!(held["dealers"], 1, "{held}");
    assert_eq!(held["held_fen"], 250, "{held}");
    assert_eq!(held["items"][0]["dealer"], "d2", "{held}");
    assert_eq!(s.get("/v1/dealers?over_limit=true")["dealers"], 0);
    let (code, v) = s.request("GET", "/v1/dealers?held=yes", "");
    assert_eq!(code, 400, "{v}");
    // cancelling h2 makes room for h3: the answer is h2's, cancelled; h3's release is listed
    let v = s.post(&[ev(
        12,
        json!({"type":"order","ts":t(14),"channel":"dealer","order":"h2","status":"cancelled","kind":"dealer","dealer":"d2"}),
    )]);
    let r = &v["results"][0];
    assert_eq!(
        (&r["order"]["order"], &r["order"]["status"]),
        (&json!("dealer:h2"), &json!("cancelled")),
        "{v}"
    );
    assert!(
        r["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["output"] == "order_released" && o["order"] == "dealer:h3"),
        "{v}"
    );
    let (_, text) = s.request_text("GET", "/metrics", "");
    assert_eq!(sample(&text, "omnistream_dealer_orders_held "), 0.0);
    // a payment to a dealer a `dealer` event set up: no warning
    let v = s.post(&[ev(
        33,
        json!({"type":"payment","ts":t(15),"dealer":"d2","amount":1,"ref":"D2-1"}),
    )]);
    let r = &v["results"][0];
    assert_eq!(r["status"], "accepted", "{v}");
    assert!(r.get("warnings").is_none(), "{v}");
    // an order placed for a dealer never set up (held: no limit) is told so too
    let v = s.post(&[ev(
        32,
        json!({"type":"order","ts":t(15),"channel":"dealer","order":"typo","status":"placed",
        "kind":"dealer","dealer":"d-nrth","lines":[{"sku":"SB","qty":1,"unit_price":100}],
        "location":"wh"}),
    )]);
    let r = &v["results"][0];
    assert_eq!(r["order"]["output"], "order_held", "{v}");
    let w = r["warnings"][0].as_str().unwrap_or_default();
    assert!(
        w.starts_with("unknown_dealer at dealer: ") && w.contains("the order is held"),
        "{v}"
    );
    // the payment again under a new id: its `ref` was booked, which is what is said (not
    // that it was booked as credit paid ahead)
    let v = s.post(&[ev(
        77,
        json!({"type":"payment","ts":t(16),"dealer":"d-ahead","amount":5000,"ref":"PRE-1"}),
    )]);
    let w = v["results"][0]["warnings"].to_string();
    assert!(
        w.contains("payment_ignored: ") && !w.contains("unknown_dealer"),
        "{v}"
    );
    s.stop();
}

#[test]
fn an_events_answer_says_what_each_event_did() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(
        dir.path(),
        &[("OMNISTREAM_RULES__FRAUD__MAX_HELD_REVIEWS", "1")],
    );
    let scan = |n: u32, code: &str, min: u32| {
        json!({"id": id(n), "type":"scan","ts":format!("2026-11-11T10:{min:02}:00+08:00"),"channel":"campaign",
               "code":code,"sku":"S1","campaign":"cny","member":{"openid":"regular"},"device":"d1","ip":"10.1.1.1"})
        .to_string()
    };
    let dealer = json!({"id": id(10), "type":"dealer","ts":"2026-11-11T09:00:00+08:00","dealer":"d1","credit_limit":100000}).to_string();
    let pay = |n: u32| {
        json!({"id": id(n), "type":"payment","ts":"2026-11-11T11:00:00+08:00","channel":"dealer","dealer":"d1","amount":5000,"ref":"BANK-1"})
            .to_string()
    };
    let v = s.post(&[dealer, pay(11), pay(12)]);
    let r = &v["results"];
    assert_eq!(r[1]["credit"]["output"], "credit", "{v}");
    assert_eq!(r[2]["credit"]["output"], "payment_ignored", "{v}");
    assert!(r[2]["order"].is_null() && r[2]["decision"].is_null(), "{v}");
    // the default campaign pays 3 scans a day: the fourth is allowed but capped, and says so
    let v = s.post(
        &(1..=4)
            .map(|n| scan(n, &format!("C{n}"), n * 10))
            .collect::<Vec<_>>(),
    );
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 4, "{v}");
    for (i, want) in [10, 10, 10, 0].iter().enumerate() {
        assert_eq!(r[i]["decision"]["decision"], "allow", "{v}");
        assert_eq!(r[i]["decision"]["reward"], *want, "{v}");
    }
    assert!(r[0]["decision"].get("no_reward").is_none(), "{v}");
    assert_eq!(r[3]["decision"]["no_reward"], "daily_cap", "{v}");
    // Shanghai, Beijing, Shanghai ten minutes apart: two reviews, and the second refuses the
    // first's hold (one held review at most) under its own id, before its decision: the
    // answer is still the scan's own decision
    let travel = |n: u32, min: u32, lat: f64, lon: f64| {
        json!({"id": id(n), "type":"scan","ts":format!("2026-11-11T11:{min:02}:00+08:00"),"channel":"campaign",
               "code":format!("T{n}"),"sku":"S1","campaign":"cny","member":{"openid":"traveller"},
               "device":"d2","ip":"10.2.2.2","geo":{"lat":lat,"lon":lon}})
        .to_string()
    };
    let v = s.post(&[
        travel(20, 0, 31.23, 121.47),
        travel(21, 10, 39.90, 116.40),
        travel(22, 20, 31.23, 121.47),
    ]);
    let r = &v["results"];
    assert_eq!(r[1]["decision"]["decision"], "review", "{v}");
    assert_eq!(
        (&r[2]["decision"]["output"], &r[2]["decision"]["decision"]),
        (&json!("decision"), &json!("review")),
        "{v}"
    );
    let refused = s.get(&format!(
        "/v1/outputs?output=review_resolved&member={}",
        r[2]["decision"]["member"].as_str().unwrap()
    ));
    assert_eq!(
        refused["items"][0]["output"]["scan_event"],
        id(21),
        "{refused}"
    );
    assert_eq!(refused["items"][0]["output"]["refused"], true, "{refused}");
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(21)),
        r#"{"decision":"allow"}"#,
    );
    assert_eq!(code, 409, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("max-held-reviews"),
        "{v}"
    );
    // a warehouse's stock events: the numbers after each, what an adjustment could not take,
    // and a count older than the one applied, refused
    let stock = |n: u32, min: u32, op: &str, qty: i64| {
        json!({"id": id(n), "type":"stock","ts":format!("2026-11-11T12:{min:02}:00+08:00"),
               "sku":"S9","location":"wh","op":op,"qty":qty})
        .to_string()
    };
    let v = s.post(&[
        stock(30, 0, "receive", 20),
        stock(31, 5, "adjust", -25),
        stock(32, 30, "set", 12),
        stock(33, 20, "set", 99),
        stock(34, 25, "receive", 7),
    ]);
    let r = &v["results"];
    let said = |i: usize, f: &str| r[i]["stock"][f].clone();
    assert_eq!(
        (said(0, "output"), said(0, "atp")),
        (json!("stock"), json!(20)),
        "{v}"
    );
    assert_eq!(
        (said(1, "on_hand"), said(1, "floored")),
        (json!(0), json!(5)),
        "{v}"
    );
    assert!(r[0]["stock"].get("floored").is_none(), "{v}");
    assert_eq!(
        (said(2, "cause"), said(2, "on_hand")),
        (json!("set"), json!(12)),
        "{v}"
    );
    assert_eq!(said(3, "output"), "stock_count_ignored", "{v}");
    assert!(
        said(3, "reason").as_str().unwrap().contains("600 s later"),
        "{v}"
    );
    // a receipt stamped before the count: said to move nothing, not answered as a receipt
    assert_eq!(said(4, "output"), "stock_move_ignored", "{v}");
    assert!(
        said(4, "reason").as_str().unwrap().contains("300 s before"),
        "{v}"
    );
    // both accepted (kept, not to be sent again), each with a warning saying so
    for (i, code) in [(3, "stock_count_ignored"), (4, "stock_move_ignored")] {
        assert_eq!(r[i]["status"], "accepted", "{v}");
        let w = r[i]["warnings"].to_string();
        assert!(
            w.contains(&format!("{code}: ")) && w.contains("not applied"),
            "{v}"
        );
    }
    assert!(r[0].get("warnings").is_none(), "{v}");
    assert!(r[0]["order"].is_null() && r[0]["credit"].is_null(), "{v}");
    // one id for two events of one request: the second is not applied, and it is said; the
    // same event twice is a plain duplicate
    let v = s.post(&[
        stock(35, 40, "receive", 5),
        stock(35, 40, "receive", 7),
        stock(35, 40, "receive", 5),
    ]);
    let r = &v["results"];
    assert_eq!(
        (&r[0]["status"], &r[1]["status"], &r[2]["status"]),
        (&json!("accepted"), &json!("duplicate"), &json!("duplicate")),
        "{v}"
    );
    let w = r[1]["warnings"][0].as_str().unwrap_or_default();
    assert!(
        w.starts_with("id_reused at id: event 0 of this request"),
        "{v}"
    );
    assert!(r[2].get("warnings").is_none(), "{v}");
    // a misspelt field is ignored, as the contract says, and the answer says so; so is a
    // channel spelt another way (a channel apart), and a misspelt required field beside
    // the refusal; a plain event says nothing
    let order = |n: u32, channel: &str, extra: &str| {
        format!(
            r#"{{"id":"{}","type":"order","ts":"2026-11-11T13:00:00+08:00","channel":"{channel}","order":"W{n}","status":"placed","kind":"consumer","member":{{"openid":"w"}},"lines":[{{"sku":"S9","qty":1,"unit_price":100}}]{extra}}}"#,
            id(n)
        )
    };
    let v = s.post(&[
        order(40, "douyin", r#","location":"wh","pointsRedeemed":100"#),
        order(41, "Douyin", r#","location":"wh""#),
        order(42, "douyin", r#","lcoation":"wh""#),
        order(43, "douyin", r#","location":"wh""#),
    ]);
    let r = &v["results"];
    let warned = |i: usize| {
        r[i]["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    assert!(warned(0).contains("did you mean `points_redeemed`"), "{v}");
    assert_eq!(r[0]["status"], "accepted", "{v}");
    assert!(warned(1).starts_with("unknown_channel"), "{v}");
    assert_eq!(r[2]["status"], "rejected", "{v}");
    assert!(warned(2).contains("`location`"), "{v}");
    assert!(r[3].get("warnings").is_none(), "{v}");
    // what a POS or a door counter gets wrong and is still taken: an order placed without
    // its store (no store's KPIs count it), a visit of ten days, an id with a space at an
    // end; a line break in an id is refused
    let visit = |n: u32, store: &str, extra: &str| {
        format!(
            r#"{{"id":"{}","type":"visit","ts":"2026-11-11T13:00:00+08:00","channel":"store","store":"{store}","visitor":"member","member":{{"openid":"w"}}{extra}}}"#,
            id(n)
        )
    };
    let v = s.post(&[
        order(44, "store", r#","location":"wh""#),
        visit(45, "st-1", r#","duration_s":864000"#),
        visit(46, "st-1 ", ""),
        visit(47, r"st-1\n", ""),
    ]);
    let r = &v["results"];
    let warned = |i: usize| r[i]["warnings"].to_string();
    assert_eq!(r[0]["status"], "accepted", "{v}");
    assert!(warned(0).starts_with(r#"["no_store at store"#), "{v}");
    assert!(warned(1).starts_with(r#"["implausible_duration"#), "{v}");
    assert!(warned(2).starts_with(r#"["padded_id at store"#), "{v}");
    assert_eq!(r[3]["status"], "rejected", "{v}");
    assert!(
        v.to_string().contains("a control character (U+000A)"),
        "{v}"
    );
    let (_, m) = common::http_get(&s.addr, "/metrics", None);
    assert!(
        m.contains(r#"omnistream_event_warnings_total{code="implausible_duration"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"omnistream_event_warnings_total{code="unknown_field"} 1"#),
        "{m}"
    );
    s.stop();
}

/// A review that holds nothing (the budget was spent) is no review to resolve; a member's
/// reviews are found under its id after a merge brought them from another id.
#[test]
fn reviews_holding_nothing_are_not_resolvable_and_merged_ones_stay_the_persons() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(
        dir.path(),
        &[("OMNISTREAM_RULES__DEFAULT_CAMPAIGN__BUDGET", "20")],
    );
    let scan = |n: u32, who: &str, min: u32, lat: f64, lon: f64| {
        json!({"id": id(n), "type":"scan","ts":format!("2026-11-11T10:{min:02}:00+08:00"),"channel":"campaign",
               "code":format!("K{n}"),"sku":"S1","campaign":"cny","member":{"openid":who},
               "device":format!("d-{who}"),"ip":"10.3.3.3","geo":{"lat":lat,"lon":lon}})
        .to_string()
    };
    // Shanghai then Beijing: a review holding 10 of the budget of 20; the next review finds
    // the budget spent (10 paid, 10 held) and holds nothing
    let v = s.post(&[
        scan(1, "oa", 0, 31.23, 121.47),
        scan(2, "oa", 10, 39.90, 116.40),
        scan(3, "ob", 0, 31.23, 121.47),
        scan(4, "ob", 10, 39.90, 116.40),
    ]);
    let r = &v["results"];
    assert_eq!(
        (&r[1]["decision"]["decision"], &r[1]["decision"]["held"]),
        (&json!("review"), &json!(10)),
        "{v}"
    );
    assert_eq!(
        (
            &r[3]["decision"]["decision"],
            &r[3]["decision"]["held"],
            &r[3]["decision"]["no_reward"]
        ),
        (&json!("review"), &json!(0), &json!("budget_exhausted")),
        "{v}"
    );
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(4)),
        r#"{"decision":"allow"}"#,
    );
    assert_eq!((code, v["error"].as_str()), (404, Some("no_review")), "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("holds no points (budget_exhausted)"),
        "{v}"
    );
    // ob's member then merges with oa's (one login with both): oa's held review is the
    // person's, whichever id survived, and so is ob's
    let (a, b) = (
        r[1]["decision"]["member"].as_str().unwrap().to_string(),
        r[3]["decision"]["member"].as_str().unwrap().to_string(),
    );
    let login =
        json!({"id": id(5), "type":"identify","ts":"2026-11-11T10:20:00+08:00","channel":"mall",
                       "member":{"openid":"oa","unionid":"u-ab"}})
        .to_string();
    let login2 =
        json!({"id": id(6), "type":"identify","ts":"2026-11-11T10:21:00+08:00","channel":"mall",
                        "member":{"openid":"ob","unionid":"u-ab"}})
        .to_string();
    let v = s.post(&[login, login2]);
    let survivor = s.get("/v1/identities/openid/ob")["id"]
        .as_str()
        .unwrap()
        .to_string();
    // the second login's answer says it joined the two: the channel learns the binding held
    assert_eq!(v["results"][1]["merges"][0]["output"], "merged", "{v}");
    assert_eq!(
        v["results"][1]["merges"][0]["survivor"],
        survivor.as_str(),
        "{v}"
    );
    assert!(v["results"][0].get("merges").is_none(), "{v}");
    // a phone for a member who has another: refused, and the answer says so
    let phones = [
        json!({"id": id(7), "type":"identify","ts":"2026-11-11T10:22:00+08:00","channel":"mall",
               "member":{"openid":"oa","phone":"13800138001"}}),
        json!({"id": id(8), "type":"identify","ts":"2026-11-11T10:23:00+08:00","channel":"mall",
               "member":{"openid":"oa","phone":"13900139002"}}),
    ]
    .map(|j| j.to_string());
    let v = s.post(&phones);
    assert_eq!(
        v["results"][1]["merges"][0]["output"], "merge_conflict",
        "{v}"
    );
    // the same sign-ups sent again (a retry after a timeout): whom each identity leads to
    // now, so the retry learns what the first try did
    let v = s.post(&phones);
    assert_eq!(v["results"][0]["status"], "duplicate", "{v}");
    assert_eq!(v["results"][0]["one_person"], true, "{v}");
    assert_eq!(
        v["results"][0]["members"]["openid"],
        survivor.as_str(),
        "{v}"
    );
    assert_eq!(
        v["results"][0]["members"]["phone"],
        survivor.as_str(),
        "{v}"
    );
    assert_eq!(
        v["results"][1]["one_person"], false,
        "the conflict kept them apart: {v}"
    );
    assert_eq!(
        v["results"][1]["members"]["openid"],
        survivor.as_str(),
        "{v}"
    );
    assert!(
        v["results"][1]["members"]["phone"].is_null(),
        "bound to no one: {v}"
    );
    // a scan naming an identity of another member joins them, and /v1/scan says so too
    let click = json!({"id": id(9), "type":"click","ts":"2026-11-11T10:24:00+08:00","channel":"tmall",
                       "member":{"tmall":"t-z"},"target":"ad-1"});
    s.post(&[click.to_string()]);
    let mut scan: Value = serde_json::from_str(&script()[7]).unwrap();
    scan["id"] = json!(id(10));
    scan["code"] = json!("C-JOIN");
    scan["ts"] = json!("2026-11-11T10:25:00+08:00");
    scan["member"] = json!({"openid": "oa", "tmall": "t-z"});
    let (code, v) = s.request("POST", "/v1/scan", &scan.to_string());
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["merges"][0]["output"], "merged", "{v}");
    assert_eq!(
        survivor,
        s.get("/v1/identities/openid/oa")["id"].as_str().unwrap(),
        "merged"
    );
    // a member id is an identity too: both ids find the survivor's profile
    for who in [&a, &b] {
        let by_id = s.get(&format!("/v1/identities/member_id/{who}"));
        assert_eq!(by_id["id"], survivor.as_str(), "{by_id}");
    }
    for who in [&a, &b, &survivor] {
        let mine = s.get(&format!("/v1/decisions?decision=review&member={who}"));
        let events: Vec<&Value> = mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["output"]["scan_event"])
            .collect();
        assert_eq!(
            events,
            [&json!(id(2)), &json!(id(4))],
            "member={who}: {mine}"
        );
    }
    let queue = s.get(&format!("/v1/decisions?pending=true&member={survivor}"));
    assert_eq!(queue["items"].as_array().unwrap().len(), 1, "{queue}");
    assert_eq!(queue["items"][0]["output"]["scan_event"], id(2), "{queue}");
    // a member id of the issued form that was never issued (the survivor's, a digit changed)
    // starts no member: the event's answer says what was not applied, a scan is blocked
    let typo = format!(
        "{}{}",
        &survivor[..survivor.len() - 1],
        if survivor.ends_with('0') { '1' } else { '0' }
    );
    let click = json!({"id": id(11), "type":"click","ts":"2026-11-11T10:26:00+08:00","channel":"mall",
                       "member":{"member_id": typo, "openid": "o-new"},"target":"ad-1"});
    let v = s.post(&[click.to_string()]);
    assert_eq!(v["results"][0]["status"], "accepted", "{v}");
    assert_eq!(v["results"][0]["unknown_member"]["about"], "click", "{v}");
    assert_eq!(
        v["results"][0]["unknown_member"]["member"],
        typo.as_str(),
        "{v}"
    );
    // looked up by that id, which no member has: the unknown_member outputs, not a 404
    let said = s.get(&format!("/v1/outputs?output=unknown_member&member={typo}"));
    assert_eq!(said["items"].as_array().unwrap().len(), 1, "{said}");
    scan["id"] = json!(id(12));
    scan["code"] = json!("C-TYPO");
    scan["ts"] = json!("2026-11-11T10:27:00+08:00");
    scan["member"] = json!({"member_id": typo});
    let (code, v) = s.request("POST", "/v1/scan", &scan.to_string());
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["decision"]["decision"], "block", "{v}");
    assert_eq!(v["decision"]["no_reward"], "unknown_member", "{v}");
    // nobody to pay: a person cannot overturn it
    let (code, v) = s.request(
        "POST",
        &format!("/v1/reviews/{}", id(12)),
        r#"{"decision": "allow"}"#,
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (409, Some("unknown_member")),
        "{v}"
    );
    let (code, v) = s.request("GET", &format!("/v1/members/{typo}"), "");
    assert_eq!(code, 404, "no member started: {v}");
    let (code, v) = s.request("GET", "/v1/identities/openid/o-new", "");
    assert_eq!(code, 404, "nothing bound: {v}");
    s.stop();
}

#[test]
fn metrics_and_the_board_count_the_scripted_day() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let mut events = script();
    events.push(r#"{"id":"bad","type":"scan"}"#.to_string());
    events.push(r#"{"type":"telepathy"}"#.to_string());
    s.post(&events);
    s.post(&events[..3]);
    let (code, _) = s.request("GET", "/v1/members/m-nobody", "");
    assert_eq!(code, 404);
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert_eq!(
        sample(
            &text,
            r#"omnistream_events_total{outcome="accepted",type="order"}"#
        ),
        6.0
    );
    assert_eq!(
        sample(
            &text,
            r#"omnistream_events_total{outcome="accepted",type="scan"}"#
        ),
        3.0
    );
    // the script knows one SKU and one dealer; entities are counted at each commit
    assert_eq!(
        sample(&text, r#"omnistream_entities{kind="sku",shard="0"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"omnistream_entities{kind="dealer",shard="0"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"omnistream_events_total{outcome="duplicate",type="stock"}"#
        ),
        1.0
    );
    // a refused event is counted under the type it names, `unknown` when it names none
    for kind in ["scan", "unknown"] {
        let series = format!(r#"omnistream_events_total{{outcome="rejected",type="{kind}"}}"#);
        assert_eq!(sample(&text, &series), 1.0, "{series}");
    }
    assert_eq!(
        sample(&text, r#"omnistream_dead_letters_total{reason="bad_uuid"}"#),
        1.0
    );
    // every reason of the refusals, not only each one's first: the bad scan lacks its
    // fields too
    assert_eq!(
        sample(
            &text,
            r#"omnistream_refusal_reasons_total{reason="bad_uuid"}"#
        ),
        1.0
    );
    assert!(
        sample(
            &text,
            r#"omnistream_refusal_reasons_total{reason="missing_field"}"#
        ) >= 1.0
    );
    // answers by route pattern and status: ingest's, a miss by its pattern
    assert!(
        sample(
            &text,
            r#"omnistream_http_responses_total{route="/v1/events",status="200"}"#
        ) >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"omnistream_http_responses_total{route="/v1/members/{id}",status="404"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"omnistream_scan_decisions_total{decision="allow"}"#
        ),
        3.0
    );
    // no campaign is configured here: all of them are `other`
    assert_eq!(
        sample(
            &text,
            r#"omnistream_campaign_decisions_total{campaign="other",decision="allow"}"#
        ),
        3.0
    );
    // o1 (¥200) in the mall; p1 and p2 (¥400 + ¥200) through the dealer portal
    assert_eq!(
        sample(&text, r#"omnistream_gmv_fen_total{channel="mall"}"#),
        20000.0
    );
    assert_eq!(
        sample(&text, r#"omnistream_gmv_fen_total{channel="dealer"}"#),
        60000.0
    );
    // one of o1's two returned: ¥100 back
    assert_eq!(
        sample(&text, r#"omnistream_refunds_fen_total{channel="mall"}"#),
        10000.0
    );
    assert_eq!(
        sample(&text, r#"omnistream_orders_total{result="held"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"omnistream_orders_total{result="released"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"omnistream_points_total{reason="earned"}"#),
        200.0
    );
    assert_eq!(
        sample(&text, r#"omnistream_points_total{reason="reversed"}"#),
        100.0
    );
    assert_eq!(
        sample(&text, r#"omnistream_points_total{reason="scan_reward"}"#),
        30.0
    );
    assert!(sample(&text, "omnistream_store_commit_seconds_count") >= 1.0);
    assert_eq!(sample(&text, "omnistream_ready"), 1.0);
    assert!(
        !text.contains("oa") && !text.contains("d1\""),
        "no entity ids in labels"
    );

    // the board shows the last hour of event time: the day's last event is a store visit at
    // 16:00 (visits move the board's hour too), so its last sale, p2 at 15:00, has just left
    // it; two scans at 15:30 show up beside the visit
    let late: Vec<String> = (0..2)
        .map(|i| {
            json!({"id": id(900 + i), "type":"scan","ts":"2026-11-11T15:30:00+08:00","channel":"campaign",
                   "code":format!("L{i}"),"sku":"S1","campaign":"cny","member":{"openid":format!("late{i}")},
                   "device":format!("dl{i}"),"ip":"10.2.2.2"})
            .to_string()
        })
        .collect();
    s.post(&late);
    let board = s.get("/v1/board");
    let minutes = board["minutes"].as_array().unwrap();
    let allowed: u64 = minutes.iter().map(|m| m["allow"].as_u64().unwrap()).sum();
    assert_eq!(allowed, 2, "{board}");
    let sales: i64 = minutes
        .iter()
        .filter_map(|m| m["sales"]["dealer"].as_i64())
        .sum();
    assert_eq!(sales, 0, "{board}");
    let visits: u64 = minutes.iter().map(|m| m["visits"].as_u64().unwrap()).sum();
    assert_eq!(visits, 1, "{board}");
    // the day's stores: the visit's, with its KPIs
    assert_eq!(board["stores_day"], "2026-11-11", "{board}");
    assert_eq!(board["stores_today"][0]["store"], "st1", "{board}");
    assert_eq!(board["stores_today"][0]["visitors"], 1, "{board}");
    let stats = s.get("/v1/stats");
    assert!(
        stats["latency_us"]["ingest_to_durable"]["count"]
            .as_u64()
            .unwrap()
            >= 2,
        "{stats}"
    );
    let (code, _) = s.request("GET", "/", "");
    assert_eq!(code, 200);
    // the board's event stream sends a frame at once, then one a second
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "GET /v1/board/stream HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\n\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("text/event-stream") && text.contains("data: {\"blocked\""),
        "{text}"
    );
    // a board left open does not hold the graceful stop (it did, until actix's 10 s timeout):
    // the stream ends and the process exits at once
    let started = std::time::Instant::now();
    s.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?} with a board open",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
}

#[test]
fn a_damaged_store_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    s.post(&script());
    s.stop();
    let f = dir.path().join("omnistream.redb");
    let mut bytes = std::fs::read(&f).unwrap();
    for b in bytes.iter_mut().take(4096) {
        *b = !*b;
    }
    std::fs::write(&f, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on a damaged store");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("omnistream.redb"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

/// A store remembers a fingerprint of its personal-data key: started with another key (or
/// without one, on the public development key), the service stops naming the variable
/// instead of hashing new identities apart from the known ones; the store's key starts it.
#[test]
fn another_personal_data_key_stops_start_up_and_the_store_key_starts_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    s.post(&script());
    let before = observe(&s);
    s.stop();
    for key in [Some("another-key-0123456789"), None] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_omnistream"));
        cmd.args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("OMNISTREAM_LOG", "warn")
            .env_remove("OMNISTREAM_PII_KEY");
        if let Some(k) = key {
            cmd.env("OMNISTREAM_PII_KEY", k);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "started with key {key:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("OMNISTREAM_PII_KEY"), "{err}");
        assert!(
            err.contains("not the key this store was written with"),
            "{err}"
        );
        assert!(
            !err.contains("another-key"),
            "the key is never shown: {err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    }
    // the store's own key: it starts, and the state is what it was
    let s = Service::start(dir.path());
    assert_eq!(observe(&s), before);
    s.stop();
    // check-config says the same before a start: another key fails naming the variable, the
    // store's own passes; on a directory with no store it creates nothing
    let check = |data: &std::path::Path, key: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["check-config", "--data-dir"])
            .arg(data)
            .env("OMNISTREAM_LOG", "warn")
            .env("OMNISTREAM_PII_KEY", key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check(dir.path(), "another-key-0123456789");
    assert!(!ok && text.contains("OMNISTREAM_PII_KEY"), "{text}");
    let (ok, text) = check(dir.path(), "service-test-key");
    assert!(
        ok && text.contains("written with this personal-data key"),
        "{text}"
    );
    let fresh = dir.path().join("not-yet/data");
    let (ok, text) = check(&fresh, "service-test-key");
    assert!(ok && text.contains("no store in"), "{text}");
    assert!(
        !dir.path().join("not-yet").exists(),
        "check-config created {fresh:?}"
    );
    let (ok, text) = check(&dir.path().join("omnistream.redb/data"), "service-test-key");
    assert!(!ok && text.contains("is not a directory"), "{text}");
    // while the service runs on the store (a config checked before a restart), the
    // configuration is checked and the store left alone, saying so
    let s = Service::start(dir.path());
    let (ok, text) = check(dir.path(), "service-test-key");
    assert!(ok && text.contains("a running service holds it"), "{text}");
    s.stop();
}

#[test]
fn replay_of_a_file_equals_the_state_run_reaches_over_http() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sample.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let body = std::fs::read_to_string(sample).unwrap();
    let (code, v) = s.request("POST", "/v1/events", &body);
    assert_eq!(code, 200, "{v}");
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    write!(
        conn,
        "GET /v1/admin/snapshot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    let live = resp.split_once("\r\n\r\n").unwrap().1.to_string();
    s.stop();
    let out = dir.path().join("replay");
    let st = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["replay", "--input", sample, "--out"])
        .arg(&out)
        .env("OMNISTREAM_PII_KEY", "service-test-key")
        .output()
        .unwrap();
    assert!(st.status.success());
    let replayed = std::fs::read_to_string(out.join("state.json")).unwrap();
    assert!(live.len() > 1000);
    assert!(
        live == replayed,
        "state after run over HTTP differs from replay of the same file"
    );
}

/// A checkpoint written while no more events come is taken in by the shard's tick: it shows
/// in `/v1/stats` (and the log below it can go) without waiting for the next event.
#[test]
fn a_checkpoint_written_on_an_idle_service_is_taken_in_without_another_event() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(dir.path(), &[("OMNISTREAM_CHECKPOINT_EVERY_EVENTS", "5")]);
    let r = s.post(&script());
    assert_eq!(r["accepted"], 14, "{r}");
    let checkpoints = checkpoints_written(&s);
    assert_eq!(checkpoints, 1, "the written checkpoint was not taken in");
    // the script's three scanned codes are in one run of the code registry
    let codes = &s.get("/v1/stats")["shard"]["code_registry"];
    assert_eq!(
        (&codes["runs"], &codes["records"]),
        (&json!(1), &json!(3)),
        "{codes}"
    );
    let (_, text) = s.request_text("GET", "/metrics", "");
    assert_eq!(sample(&text, "omnistream_code_registry_records"), 3.0);
    // what the checkpoint cost: the shard's longest stop for it, and its write
    assert_eq!(
        sample(&text, "omnistream_checkpoint_stop_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(&text, "omnistream_checkpoint_write_seconds_count"),
        1.0
    );
    let stop = s.get("/v1/stats")["shard"]["checkpoint_longest_stop_seconds"].clone();
    assert!(stop.as_f64().is_some_and(|x| x > 0.0), "{stop}");
    assert!(sample(&text, r#"omnistream_code_registry_bytes{where="disk"}"#) > 0.0);
    s.stop();
}

/// With several shards an answer carries what its event caused, the outputs of the timers its
/// time made due included, as with one shard.
#[test]
fn several_shards_answer_a_scan_with_the_timers_it_made_due() {
    let summer = [
        json!({"type":"stock","ts":"2026-08-01T08:00:00+08:00","sku":"S1","location":"wh","op":"receive","qty":100}),
        json!({"type":"order","ts":"2026-08-01T09:00:00+08:00","channel":"mall","order":"o1","status":"placed","kind":"consumer",
            "member":{"openid":"oa"},"lines":[{"sku":"S1","qty":2,"unit_price":10000}],"location":"wh"}),
        json!({"type":"order","ts":"2026-08-01T10:00:00+08:00","channel":"mall","order":"o1","status":"fulfilled","kind":"consumer","member":{"openid":"oa"}}),
    ];
    let summer: Vec<String> = summer
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            v["id"] = json!(id(900 + i as u32));
            v.to_string()
        })
        .collect();
    // months later: the member's windowed and inactivity tags change before the scan runs
    let scan = json!({"id": id(999), "type":"scan","ts":"2026-11-20T10:00:00+08:00","channel":"campaign","code":"C9",
        "sku":"S1","campaign":"cny","member":{"openid":"oa"},"device":"d9","ip":"10.9.9.9"})
    .to_string();
    let answer = |shards: &str| {
        let dir = tempfile::tempdir().unwrap();
        let s = Service::start_with(dir.path(), &[("OMNISTREAM_SHARDS", shards)]);
        let r = s.post(&summer);
        assert_eq!(r["accepted"], 3, "{r}");
        let (code, v) = s.request("POST", "/v1/scan", &scan);
        assert_eq!(code, 200, "{v}");
        s.stop();
        let mut outputs: Vec<String> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.to_string())
            .collect();
        outputs.sort();
        outputs
    };
    let one = answer("1");
    let timers = one
        .iter()
        .filter(|o| o.contains("\"event\":\"00000000-0000-0000-0000-000000000000\""))
        .count();
    assert!(timers > 0, "no timer output in the answer: {one:?}");
    assert_eq!(answer("3"), one);
}

/// Several shards (`shards = 3`): a request's events run as one epoch on three threads. The
/// same requests reach the same state whether or not the service is stopped (SIGTERM, with a
/// checkpoint) or killed (SIGKILL, the log's epochs replayed) between them, and whatever the
/// shard count it restarts with: one shard replays the logged epochs as they ran (and would
/// then run new requests event by event, another order), two go on in epochs; and the
/// scripted day's business results hold.
#[test]
fn several_shards_reach_one_state_across_restarts_and_shard_counts() {
    let events = script();
    let three = [("OMNISTREAM_SHARDS", "3")];
    let one = [("OMNISTREAM_SHARDS", "1")];
    let whole = tempfile::tempdir().unwrap();
    let s = Service::start_with(whole.path(), &three);
    s.post(&events[..5]);
    s.post(&events[5..9]);
    let r = s.post(&events[9..]);
    assert_eq!(r["accepted"], 5, "{r}");
    let expected = observe(&s);
    assert_eq!(s.get("/v1/stats")["engine"]["shards"], 3);
    s.stop();
    // the scripted day's results (see the first test) hold with epochs of several events
    assert_eq!(expected["member"]["balance"], 100, "{expected}");
    assert_eq!(expected["scanner"]["balance"], 20, "{expected}");
    assert_eq!(expected["stock"]["atp"], 39, "{expected}");
    assert_eq!(expected["credit"]["exposure"], 20000, "{expected}");

    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(dir.path(), &three);
    s.post(&events[..5]);
    s.stop();
    let s = Service::start_with(dir.path(), &three);
    s.post(&events[5..9]);
    // killed: the restart replays the logged epoch of four events as it ran
    s.kill();
    let s = Service::start_with(dir.path(), &one);
    let partial = |s: &Service| {
        [
            "/v1/skus/S1/stock",
            "/v1/dealers/d1/credit",
            "/v1/identities/openid/oa",
            "/v1/identities/openid/ob",
        ]
        .map(|p| s.get(p))
    };
    assert_eq!(partial(&s), {
        // the same two requests on a fresh three-shard service
        let d = tempfile::tempdir().unwrap();
        let t = Service::start_with(d.path(), &three);
        t.post(&events[..5]);
        t.post(&events[5..9]);
        let v = partial(&t);
        t.stop();
        v
    });
    s.stop();
    let s = Service::start_with(dir.path(), &[("OMNISTREAM_SHARDS", "2")]);
    let r = s.post(&events[9..]);
    assert_eq!(r["accepted"], 5, "{r}");
    assert_eq!(observe(&s), expected);
    s.stop();
}

/// Ctrl-C (SIGINT) stops the service as SIGTERM does: a request under way when the signal
/// comes is answered (its events durable) before the process exits, and a restart finds them.
/// (actix-web's own handling stopped at once on SIGINT, dropping such a request unanswered.)
/// The request is surely under way: its connection was served before, and half its body is
/// held back until after the signal, so it cannot be answered before the signal either.
#[test]
fn ctrl_c_answers_the_request_under_way_and_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let clicks: Vec<String> = (0..2_000)
        .map(|i| {
            format!(
                r#"{{"id":"{}","type":"click","ts":"2026-11-11T10:00:00+08:00","channel":"mall","member":{{"openid":"o{i}"}},"target":"ad1"}}"#,
                id(100_000 + i)
            )
        })
        .collect();
    let body = clicks.join("\n");
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // a first request on the connection: it is accepted and served by a worker
    write!(c, "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(r#"{"status":"ok"}"#) {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    write!(
        c,
        "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-INT", &s.pid().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(rest)
        .expect("the connection of a request under way stays open after the signal");
    let mut resp = String::new();
    c.read_to_string(&mut resp)
        .expect("the request under way is answered");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp:.300}");
    let v: Value = serde_json::from_str(resp.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["accepted"], 2_000, "{v:.300}");
    s.wait_exit();

    let s = Service::start(dir.path());
    let r = s.post(&clicks[..10]);
    assert_eq!(r["duplicates"], 10, "{r}");
    s.stop();
}

/// `omnistream demo` feeds the service round after round (new consumers, later event time),
/// so the board keeps moving past one round of the scenario; Ctrl-C stops it cleanly and it
/// removes the store it made for itself.
#[test]
fn demo_keeps_feeding_round_after_round_and_cleans_up_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistream"))
        .args(["demo", "--listen", "127.0.0.1:0", "--rate", "3000"])
        .env("OMNISTREAM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let store = std::env::temp_dir().join(format!("omnistream-demo-{}", child.id()));
    let addr = common::listening_addr(&mut child);
    // the smoke scenario has 5,000 events a round: wait for the second round, bounded
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let applied = loop {
        let (_, body) = common::http_get(&addr, "/v1/stats", None);
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let applied = v["shard"]["applied"].as_u64().unwrap_or(0);
        if applied > 6_000 || std::time::Instant::now() > deadline {
            break applied;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(store.is_dir(), "its store {}", store.display());
    let (_, body) = common::http_get(&addr, "/v1/stats", None);
    let v: Value = serde_json::from_str(&body).unwrap();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        applied > 6_000,
        "only {applied} events applied in 60 s: {v}"
    );
    assert_eq!(v["shard"]["duplicates"], 0, "rounds repeat nothing: {v}");
    assert_eq!(v["shard"]["rejected"], 0, "{v}");
    assert!(status.success(), "{status:?}");
    assert!(
        !store.exists(),
        "the demo's store is removed: {}",
        store.display()
    );
}

/// `--data-dir` and `--listen` win over `OMNISTREAM_DATA_DIR` and `OMNISTREAM_LISTEN`,
/// whichever of the two values sorts first (it once depended on that).
#[test]
fn flags_win_over_the_variables_of_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (var, flag) in [("a-var", "z-flag"), ("z-var", "a-flag")] {
        let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(["check-config", "--listen", "127.0.0.1:18142", "--data-dir"])
            .arg(dir.path().join(flag))
            .env("OMNISTREAM_DATA_DIR", dir.path().join(var))
            .env("OMNISTREAM_LISTEN", "127.0.0.1:18141")
            .env("OMNISTREAM_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let flag_dir = format!("data-dir = \"{}\"", dir.path().join(flag).display());
        assert!(text.contains(&flag_dir), "{flag}: {text}");
        assert!(text.contains("listen = \"127.0.0.1:18142\""), "{text}");
    }
}

/// The commands that run no service refuse `--listen` and `--data-dir` (they took them and
/// did nothing with them), naming the flag.
#[test]
fn commands_without_a_service_refuse_listen_and_data_dir() {
    for args in [
        &["migrate", "--listen", "127.0.0.1:1"][..],
        &["migrate", "--data-dir", "/tmp/x"],
        &["produce", "--data-dir", "/tmp/x", "-"],
        &["topics", "create", "--listen", "127.0.0.1:1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_omnistream"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("unexpected argument '{}'", args[args.len() - 2]))
                || err.contains(&format!("unexpected argument '{}'", args[1])),
            "{args:?}: {err}"
        );
    }
}

/// The OpenAPI document's example answers are what a service on defaults answers after the
/// sample feed: each example's request is asked and the answer compared whole.
#[test]
fn the_openapi_examples_are_the_answers_to_the_sample_feed() {
    let dir = tempfile::tempdir().unwrap();
    // the public development key, as the examples use (an empty key is no key)
    let s = Service::start_with(dir.path(), &[("OMNISTREAM_PII_KEY", "")]);
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sample.jsonl"
    ))
    .unwrap();
    let lines: Vec<String> = sample.lines().map(str::to_string).collect();
    let doc = s.get("/openapi.json");
    let example = |path: &str| {
        let e = &doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
            ["examples"]["sample"];
        (
            e["summary"].as_str().unwrap().to_string(),
            e["value"].clone(),
        )
    };
    // the answer to the POST itself; its last line is the bad one the README shows as a dead
    // letter: after every output
    let answer = s.post(&lines);
    assert_eq!(answer["rejected"], 1);
    assert_eq!(answer, example("/v1/events").1);
    // `/v1/scan`'s: the sample's first scan sent alone after the lines before it (a service
    // of its own: on this one the scan is a duplicate now)
    let (summary, scan) = example("/v1/scan");
    let line: usize = summary
        .strip_prefix("POST /v1/scan of line ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = Service::start_with(dir2.path(), &[("OMNISTREAM_PII_KEY", "")]);
    s2.post(&lines[..line - 1]);
    let (code, got) = s2.request("POST", "/v1/scan", &lines[line - 1]);
    assert_eq!(code, 200, "{got}");
    assert_eq!(got, scan);
    assert!(scan["decision"]["decision"].is_string(), "{scan}");
    s2.stop();
    let mut asked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let ok = &ops["get"]["responses"]["200"]["content"]["application/json"];
        let Some(example) = ok["examples"]["sample"].as_object() else {
            continue;
        };
        let summary = example["summary"].as_str().unwrap();
        let request = summary
            .strip_prefix("GET ")
            .and_then(|r| r.split(',').next())
            .unwrap();
        assert_eq!(s.get(request), example["value"], "{path}: {request}");
        assert!(!example["value"].is_null(), "{path}");
        asked += 1;
    }
    assert_eq!(asked, 20, "every state read has an example");
    s.stop();
}

/// Reads `conn` until what it has read holds `want`; returns all of it.
fn read_until(conn: &mut TcpStream, got: &mut Vec<u8>, want: &str) -> String {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(want) {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(got).into_owned()
}

/// A channel follows its SKU's stock as it moves: `/v1/outputs/stream` pushes each output
/// once durable, from the end when no `from` is given, filtered as `/v1/outputs`; a client
/// reconnecting with `Last-Event-ID` gets what followed it; `limit=0` answers the end.
#[test]
fn a_channel_is_pushed_its_stock_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let stock = |n: u32, sku: &str, qty: i64| {
        json!({"id": id(n), "type":"stock","ts":"2026-11-11T08:01:00+08:00","sku": sku,
               "location":"wh-sh","op":"receive","qty": qty})
        .to_string()
    };
    s.post(&[stock(1, "SKU-A", 5)]);
    let end = s.get("/v1/outputs?limit=0");
    assert_eq!(end["items"], json!([]), "{end}");
    let end = end["next"].as_u64().unwrap();
    assert!(end >= 1, "the end is after the first output: {end}");
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "GET /v1/outputs/stream?output=stock&sku=SKU-A HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    // where its reading starts is the id of an event without data: a client reconnecting
    // before any output came resumes there
    let text = read_until(
        &mut conn,
        &mut got,
        &format!(": outputs from seq {end}\nid: {}\n\n", end - 1),
    );
    assert!(text.contains("text/event-stream"), "{text}");
    // another SKU's change is not sent; this one's is, once durable
    s.post(&[stock(2, "SKU-B", 7)]);
    s.post(&[stock(3, "SKU-A", 4)]);
    read_until(&mut conn, &mut got, "event: output\n");
    let text = read_until(&mut conn, &mut got, "}\n\n");
    assert!(!text.contains("SKU-B"), "{text}");
    let frame = text
        .split("event: output\n")
        .nth(1)
        .expect("an output frame");
    let seq: u64 = frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .and_then(|v| {
            assert_eq!(v["output"]["sku"], "SKU-A", "{v}");
            assert_eq!(v["output"]["on_hand"], 9, "{v}");
            v["seq"].as_u64()
        })
        .expect("the output's seq");
    assert!(text.contains(&format!("id: {seq}\n")), "{text}");
    drop(conn);
    // a client that lost the connection after the output before resumes at this one
    let mut again = TcpStream::connect(&s.addr).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        again,
        "GET /v1/outputs/stream?sku=SKU-A HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n",
        seq - 1
    )
    .unwrap();
    let mut got = Vec::new();
    let text = read_until(&mut again, &mut got, &format!("id: {seq}\n"));
    assert!(
        text.contains(&format!(": outputs from seq {seq}\n")),
        "{text}"
    );
    let (code, v) = s.request("GET", "/v1/outputs/stream?from=x", "");
    assert_eq!((code, v["error"].as_str()), (400, Some("bad_query")), "{v}");
    // a position past the end (a store restored from an older backup) starts at the end,
    // and says where; -1, the id before the first output, starts at the first
    for (last, want) in [((seq + 100).to_string(), seq + 1), ("-1".to_string(), 0)] {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            c,
            "GET /v1/outputs/stream HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {last}\r\n\r\n"
        )
        .unwrap();
        let mut got = Vec::new();
        read_until(&mut c, &mut got, &format!(": outputs from seq {want}\n"));
    }
    s.stop();
    let mut rest = Vec::new();
    let _ = again.read_to_end(&mut rest);
}

/// A channel whose request timed out sends its order event again: the answer is
/// `duplicate`, with where the order stands now (`order_state`, as `GET /v1/orders/...`
/// answers), so it learns whether the order was taken without a second request.
#[test]
fn a_retried_order_event_answers_where_the_order_stands() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let feed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample.jsonl"),
    )
    .unwrap();
    let lines: Vec<String> = feed.lines().map(String::from).collect();
    s.post(&lines);
    let placed = lines
        .iter()
        .find(|l| l.contains("\"T-1001\"") && l.contains("\"placed\""))
        .unwrap()
        .clone();
    let v = s.post(std::slice::from_ref(&placed));
    let r = &v["results"][0];
    assert_eq!(r["status"], "duplicate", "{v}");
    assert_eq!(r["order_state"], s.get("/v1/orders/tmall/T-1001"), "{v}");
    assert_eq!(r["order_state"]["order"], "tmall:T-1001", "{v}");
    assert!(r.get("warnings").is_none(), "a retry: {v}");
    // its id taken again for another order (a channel's bug): the answer says it was lost
    let other = placed.replace("\"T-1001\"", "\"T-1002 \"");
    let v = s.post(&[other]);
    let r = &v["results"][0];
    assert_eq!(
        (&r["status"], &r["order_state"]),
        (&json!("duplicate"), &Value::Null),
        "{v}"
    );
    let w: Vec<&str> = (r["warnings"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    assert!(w[0].starts_with("id_reused at id:"), "{v}");
    assert!(w[1].starts_with("padded_id at order:"), "{v}");
    // a payment sent again: its dealer's credit now and what its `ref` was booked for
    let payment = lines
        .iter()
        .find(|l| l.contains("\"payment\""))
        .unwrap()
        .clone();
    let v = s.post(std::slice::from_ref(&payment));
    let r = &v["results"][0];
    assert_eq!(r["status"], "duplicate", "{v}");
    assert_eq!(
        r["credit_state"],
        s.get("/v1/dealers/dl-north/credit"),
        "{v}"
    );
    assert_eq!(r["booked"], 36000, "{v}");
    assert!(r.get("warnings").is_none(), "a retry: {v}");
    // its id taken again for another payment: not booked, and said so
    let other = payment.replace("\"ref\":\"", "\"ref\":\"X-");
    let v = s.post(&[other]);
    let r = &v["results"][0];
    assert_eq!(
        (&r["status"], &r["booked"]),
        (&json!("duplicate"), &Value::Null),
        "{v}"
    );
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("id_reused at id:"),
        "{v}"
    );
    // other events sent again carry none
    let stock = lines
        .iter()
        .find(|l| l.contains("\"stock\""))
        .unwrap()
        .clone();
    let v = s.post(&[stock]);
    assert!(v["results"][0].get("order_state").is_none(), "{v}");
    s.stop();
}

/// A manager's lists: every store with today's KPIs, and one sales rep across stores.
#[test]
fn configured_stores_are_listed_before_their_first_event_and_a_region_totals_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start_with(
        dir.path(),
        &[
            ("OMNISTREAM_STORES__ST_A__NAME", "Alpha"),
            ("OMNISTREAM_STORES__ST_A__REGION", "east"),
            ("OMNISTREAM_STORES__ST_A__KIND", "own"),
            ("OMNISTREAM_STORES__ST_Z__REGION", "east"),
            ("OMNISTREAM_STORES__ST_Z__KIND", "partner"),
            ("OMNISTREAM_STORES__ST_W__REGION", "west"),
        ],
    );
    let visit = |n: u32, store: &str, hour: u32, who: &str| {
        let mut v = json!({"id": id(n), "type":"visit","channel":"store",
               "ts": format!("2026-11-11T{hour:02}:10:00+08:00"), "store": store,
               "visitor":"member","member":{"openid": who},"duration_s": 600});
        if who.starts_with("rep") {
            v["visitor"] = json!("rep");
            v["rep"] = json!(who);
            v.as_object_mut().unwrap().remove("member");
        }
        v.to_string()
    };
    s.post(&[
        visit(1, "st-a", 10, "o1"),
        visit(2, "st-a", 11, "o2"),
        visit(3, "st-a", 11, "rep-li"),
        visit(4, "st-b", 11, "o3"),
        visit(5, "st-w", 10, "o4"),
    ]);
    // every configured store, visited or not, and the one that is not configured
    let all = s.get("/v1/stores");
    assert_eq!(
        texts(&all["items"], "store"),
        ["st-a", "st-b", "st-w", "st-z"],
        "{all}"
    );
    let a = &all["items"][0];
    assert_eq!(
        (&a["name"], &a["region"], &a["kind"]),
        (&json!("Alpha"), &json!("east"), &json!("own")),
        "{all}"
    );
    assert!(all["items"][1].get("region").is_none(), "{all}");
    // st-z, never visited, is the east's store no rep saw
    let idle = s.get("/v1/stores?region=east&unvisited_days=7");
    assert_eq!(texts(&idle["items"], "store"), ["st-z"], "{idle}");
    // a region's day: each store's and their sum, hour by hour
    let east = s.get("/v1/stores?region=east&day=2026-11-11");
    assert_eq!(texts(&east["items"], "store"), ["st-a", "st-z"], "{east}");
    assert_eq!(east["items"][0]["day"]["member_visits"], 2, "{east}");
    assert_eq!(east["items"][1]["day"]["member_visits"], 0, "{east}");
    assert_eq!(
        (
            &east["total"]["member_visits"],
            &east["total"]["rep_visits"],
            &east["total"]["avg_visit_s"]
        ),
        (&json!(2), &json!(1), &json!(600.0)),
        "{east}"
    );
    let hours: Vec<_> = east["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["at"].as_str().unwrap(),
                h["member_visits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hours,
        [("2026-11-11T10:00", 1), ("2026-11-11T11:00", 1)],
        "{east}"
    );
    let every = s.get("/v1/stores?day=2026-11-11");
    assert_eq!(every["total"]["member_visits"], 4, "{every}");
    // the board's stores carry their configured names
    let board = s.get("/v1/board");
    let named: Vec<_> = board["stores_today"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["store"].as_str().unwrap(), r.get("name").cloned()))
        .collect();
    assert!(named.contains(&("st-a", Some(json!("Alpha")))), "{board}");
    assert!(named.contains(&("st-b", None)), "{board}");
    // a configured store before its first event has its KPIs, all zero
    let z = s.get("/v1/stores/st-z/kpis");
    assert_eq!(
        (&z["today"]["member_visits"], &z["kind"]),
        (&json!(0), &json!("partner")),
        "{z}"
    );
    for bad in ["/v1/stores?region=north", "/v1/stores?day=11-11"] {
        let (code, v) = s.request("GET", bad, "");
        assert_eq!(code, 400, "{bad}: {v}");
    }
    s.stop();
}

/// A merge refused for two phones is found from either account: `member=` matches its
/// `other` too (the lead asked from the second account and found nothing).
#[test]
fn a_refused_merge_is_found_from_both_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let identify = |n: u32, member: Value| {
        json!({"id": id(n), "type":"identify","ts":"2026-11-11T10:00:00+08:00","member": member})
            .to_string()
    };
    s.post(&[
        identify(1, json!({"openid":"wa","phone":"13700001111"})),
        identify(2, json!({"openid":"wb","phone":"13700002222"})),
        identify(3, json!({"openid":"wa","tmall":"t-w"})),
        identify(4, json!({"tmall":"t-w","openid":"wb"})),
    ]);
    let a = s.get("/v1/identities/openid/wa")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = s.get("/v1/identities/openid/wb")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(a, b);
    for who in [&a, &b] {
        let v = s.get(&format!("/v1/outputs?output=merge_conflict&member={who}"));
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{who}: {v}");
        let o = &items[0]["output"];
        let pair = [o["member"].as_str().unwrap(), o["other"].as_str().unwrap()];
        assert!(
            pair.contains(&a.as_str()) && pair.contains(&b.as_str()),
            "{v}"
        );
    }
    s.stop();
}

#[test]
fn stores_and_a_rep_across_them_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let visit = |n: u32, store: &str, minute: u32| {
        json!({"id": id(n), "type":"visit","channel":"store",
               "ts": format!("2026-11-11T10:{minute:02}:00+08:00"),
               "store": store, "visitor":"rep","rep":"rep-li","duration_s": 600})
        .to_string()
    };
    s.post(&[
        visit(1, "st-a", 0),
        visit(2, "st-b", 30),
        visit(3, "st-b", 45),
    ]);
    let stores = s.get("/v1/stores");
    let ids = texts(&stores["items"], "store");
    assert_eq!(ids, ["st-a", "st-b"], "{stores}");
    assert_eq!(stores["items"][1]["today"]["rep_visits"], 2, "{stores}");
    let rep = s.get("/v1/reps/rep-li");
    assert_eq!(
        (
            rep["visits"].as_u64(),
            rep["stores"].as_array().map(Vec::len)
        ),
        (Some(3), Some(2)),
        "{rep}"
    );
    assert_eq!(rep["last_visit"], "2026-11-11T02:45:00.000Z", "{rep}");
    // when, store by store: who visited a store this week
    let at_b: Vec<_> = rep["stores"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["store"] == "st-b")
        .map(|s| s["recent_visits"].clone())
        .collect();
    assert_eq!(
        at_b,
        [json!([
            "2026-11-11T02:30:00.000Z",
            "2026-11-11T02:45:00.000Z"
        ])],
        "{rep}"
    );
    let (code, _) = s.request("GET", "/v1/reps/nobody", "");
    assert_eq!(code, 404);
    let reps = s.get("/v1/reps");
    assert_eq!(
        reps["items"],
        json!([{"rep": "rep-li", "visits": 3, "visits_30d": 3,
                "last_visit": "2026-11-11T02:45:00.000Z", "store_count": 2,
                "visit_seconds": 1800, "timed_visits": 3, "avg_duration_s": 600.0}]),
        "{reps}"
    );
    assert_eq!(
        stores["items"][1]["last_rep_visit"],
        "2026-11-11T02:45:00.000Z"
    );
    assert_eq!(stores["items"][1]["rep_visits_30d"], 2);
    // two days on, a member at st-c, which no rep ever visited: the reps' coverage
    let member = json!({"id": id(4), "type":"visit","channel":"store",
        "ts": "2026-11-13T10:00:00+08:00", "store": "st-c", "visitor":"member",
        "member": {"openid": "o-c"}});
    s.post(&[member.to_string()]);
    let idle = |days: u32| -> Vec<String> {
        s.get(&format!("/v1/stores?unvisited_days={days}"))["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["store"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(idle(1), ["st-a", "st-b", "st-c"]);
    assert_eq!(idle(5), ["st-c"], "never visited by a rep");
    let all = s.get("/v1/stores");
    assert!(all["items"][2]["last_rep_visit"].is_null(), "{all}");
    // a store's hours: today's (none at st-b now), or a day's asked for
    let kpis = s.get("/v1/stores/st-b/kpis");
    assert_eq!(kpis["hours"], json!([]), "{kpis}");
    let kpis = s.get("/v1/stores/st-b/kpis?day=2026-11-11");
    assert_eq!(kpis["hours"][0]["at"], "2026-11-11T10:00", "{kpis}");
    assert_eq!(kpis["hours"][0]["rep_visits"], 2, "{kpis}");
    assert_eq!(kpis["hours"].as_array().unwrap().len(), 1, "{kpis}");
    assert!(kpis.get("hours_note").is_none(), "{kpis}");
    // a day without hours says why: before the days kept, after the newest, or no event then
    for (day, why) in [
        (
            "2026-01-01",
            "before the store's first day with an event (2026-11-11)",
        ),
        ("2027-01-01", "after the newest day with an event ("),
    ] {
        let kpis = s.get(&format!("/v1/stores/st-b/kpis?day={day}"));
        assert_eq!(kpis["hours"], json!([]), "{kpis}");
        assert!(
            kpis["hours_note"].as_str().unwrap().starts_with(why),
            "{kpis}"
        );
    }
    let (code, v) = s.request("GET", "/v1/stores/st-b/kpis?day=11/11", "");
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.request("GET", "/v1/stores?unvisited_days=week", "");
    assert_eq!(code, 400, "{v}");
    s.stop();
}

/// A `code_batch` that takes a prefix over from another batch says so in its answer, and
/// one stamped before the registration in effect (a registry sent again) is not applied
/// and says why; the scans of the prefix's codes are judged by the registration in effect.
#[test]
fn a_code_batch_says_when_it_takes_a_prefix_over_or_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::start(dir.path());
    let batch = |n: u32, ts: &str, b: &str, sku: &str| {
        json!({"id": id(n), "type":"code_batch","ts":ts,"batch":b,"prefix":"HZ","sku":sku,"dealer":"d1"})
            .to_string()
    };
    let warnings = |v: &Value| -> Vec<String> {
        v["results"][0]["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|w| w.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let v = s.post(&[batch(1, "2026-11-11T09:00:00+08:00", "B1", "S1")]);
    assert!(warnings(&v).is_empty(), "{v}");
    // the same registration sent again (another id): nothing to say
    let v = s.post(&[batch(2, "2026-11-11T09:00:00+08:00", "B1", "S1")]);
    assert!(warnings(&v).is_empty(), "{v}");
    let v = s.post(&[batch(3, "2026-11-11T10:00:00+08:00", "B2", "S2")]);
    let w = warnings(&v);
    assert_eq!(w.len(), 1, "{v}");
    assert!(
        w[0].starts_with("prefix_taken at prefix: codes starting `HZ` were batch `B1` (SKU `S1`"),
        "{v}"
    );
    let v = s.post(&[batch(4, "2026-11-11T09:30:00+08:00", "B1", "S1")]);
    let w = warnings(&v);
    assert_eq!(w.len(), 1, "{v}");
    assert!(
        w[0].starts_with("code_batch_ignored at ts: prefix `HZ` is registered to batch `B2`"),
        "{v}"
    );
    // B2 stays: a code of HZ claimed as S2 is its own SKU's
    let scan = json!({"id": id(5), "type":"scan","ts":"2026-11-11T10:05:00+08:00","channel":"campaign",
        "code":"HZ0001","sku":"S2","campaign":"cny","member":{"openid":"o-batch"},"device":"dv","ip":"10.1.1.1"});
    let (status, d) = s.request("POST", "/v1/scan", &scan.to_string());
    assert_eq!(status, 200, "{d}");
    let d = &d["decision"];
    assert_eq!(
        (&d["decision"], &d["scan"]["batch"]),
        (&json!("allow"), &json!("B2")),
        "{d}"
    );
    let (_, text) = s.request_text("GET", "/metrics", "");
    let series = r#"omnistream_event_warnings_total{code="prefix_taken"} "#;
    assert_eq!(sample(&text, series), 1.0);
    // two of one request: each judged after the one before it, as they apply
    let v = s.post(&[
        batch(6, "2026-11-11T12:00:00+08:00", "B6", "S6"),
        batch(7, "2026-11-11T11:00:00+08:00", "B7", "S7"),
    ]);
    let said = |n: usize| {
        v["results"][n]["warnings"][0]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        said(0).starts_with("prefix_taken at prefix: codes starting `HZ` were batch `B2`"),
        "{v}"
    );
    assert!(
        said(1).starts_with("code_batch_ignored at ts: prefix `HZ` is registered to batch `B6`"),
        "{v}"
    );
    s.stop();
}

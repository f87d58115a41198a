//! The contract end to end: every example of shared/EVENTS.md decodes, a corpus of malformed
//! events is rejected with the right reason and path, valid events round-trip, and arbitrary
//! bytes never panic the decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use omnistream_schemas::*;
use proptest::prelude::*;

fn decoder() -> Decoder {
    Decoder::new(Pii::new(b"test-key"))
}

const SCAN: &str = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03.120+08:00","channel":"campaign","code":"HZ8K2M9Q4T7W","sku":"SKU-COLA-500","campaign":"cny-2027","member":{"openid":"o6_bmjrPTlm6_2sgVt7hMZOPfL2M"},"device":"d-7f3a91","ip":"112.65.3.18","geo":{"lat":31.23,"lon":121.47}}"#;

/// One valid event of every type and shape the contract describes.
pub const VALID: &[&str] = &[
    SCAN,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e12","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C1","sku":"S1","campaign":"c","member":{"phone":"13800138000","openid":"o1"},"device":"d","ip":"2001:db8::1","store":"st-1"}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e13","type":"click","ts":"2026-11-11T20:15:03+08:00","channel":"douyin","member":{"douyin":"dy-1"},"target":"ad-9","campaign":"c","sku":"S1","device":"d"}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e14","type":"order","ts":"2026-11-11T20:15:03+08:00","channel":"tmall","order":"T-1","status":"placed","kind":"consumer","lines":[{"sku":"S1","qty":2,"unit_price":1299},{"sku":"S2","qty":1,"unit_price":0}],"location":"wh-sh","store":"st-1","member":{"tmall":"tb_nick"},"points_redeemed":100}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e15","type":"order","ts":"2026-11-11T20:16:03+08:00","channel":"tmall","order":"T-1","status":"fulfilled","kind":"consumer","member":{"tmall":"tb_nick"}}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e16","type":"order","ts":"2026-11-11T20:17:03+08:00","channel":"tmall","order":"T-1","status":"returned","kind":"consumer","member":{"tmall":"tb_nick"},"lines":[{"sku":"S1","qty":1,"unit_price":1299}]}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e17","type":"order","ts":"2026-11-11T20:15:03+08:00","channel":"dealer","order":"D-1","status":"placed","kind":"dealer","dealer":"dl-1","lines":[{"sku":"S1","qty":200,"unit_price":900}],"location":"wh-sh"}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e18","type":"visit","ts":"2026-11-11T20:15:03+08:00","channel":"store","store":"st-1","visitor":"member","member":{"card":"VIP-0042"},"duration_s":300,"geo":{"lat":31.2,"lon":121.4}}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e19","type":"visit","ts":"2026-11-11T20:15:03+08:00","channel":"sfa","store":"st-1","visitor":"rep","rep":"rep-7","duration_s":1200}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e1a","type":"stock","ts":"2026-11-11T20:15:03+08:00","sku":"S1","location":"wh-sh","op":"receive","qty":100,"safety":5}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e1b","type":"stock","ts":"2026-11-11T20:15:03+08:00","sku":"S1","location":"wh-sh","op":"adjust","qty":-3}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e1c","type":"stock","ts":"2026-11-11T20:15:03+08:00","sku":"S1","location":"wh-sh","op":"set","qty":0}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e1d","type":"payment","ts":"2026-11-11T20:15:03+08:00","channel":"dealer","dealer":"dl-1","amount":50000,"ref":"BANK-1"}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e1e","type":"dealer","ts":"2026-11-11T20:15:03+08:00","dealer":"dl-1","credit_limit":1000000,"region":{"lat":31.2,"lon":121.4,"radius_km":300}}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e1f","type":"code_batch","ts":"2026-11-11T20:15:03+08:00","batch":"B-1","prefix":"HZ8K","sku":"SKU-COLA-500","dealer":"dl-1"}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e20","type":"identify","ts":"2026-11-11T20:15:03+08:00","channel":"mall","member":{"phone":"13800138000","openid":"o6_x"}}"#,
    r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e21","type":"click","ts":"2026-11-11T20:15:03+08:00","channel":"kiosk","member":{"email":"a@b.cn"},"target":"t","extra_field":{"ignored":true}}"#,
];

#[test]
fn every_contract_example_decodes() {
    let d = decoder();
    for (i, raw) in VALID.iter().enumerate() {
        let ev = d.decode(raw.as_bytes());
        assert!(ev.is_ok(), "example {i} rejected: {:?}", ev.err());
    }
    let ev = d.decode(SCAN.as_bytes()).unwrap();
    assert_eq!(ev.type_name(), "scan");
    match ev.body {
        Body::Scan(s) => {
            assert_eq!(s.code, "HZ8K2M9Q4T7W");
            assert_eq!(
                s.member.get(&IdKind::Openid),
                Some("o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
            );
            assert_eq!(
                s.geo,
                Some(Geo {
                    lat: 31.23,
                    lon: 121.47
                })
            );
        }
        other => panic!("wrong body {other:?}"),
    }
}

#[test]
fn phones_never_survive_decoding() {
    let d = decoder();
    for raw in VALID {
        let ev = d.decode(raw.as_bytes()).unwrap();
        let out = serde_json::to_string(&ev).unwrap();
        assert!(!out.contains("13800138000"), "plain phone in {out}");
        assert!(!out.contains("VIP-0042"), "plain card in {out}");
        assert!(!out.contains("a@b.cn"), "plain unknown identity in {out}");
    }
}

/// (event, expected reason, expected path). Paths are where the problem is.
const BAD: &[(&str, Reason, &str)] = &[
    // syntax and shape
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan""#,
        Reason::Truncated,
        "",
    ),
    (r#"{"id": "x" "type": "scan"}"#, Reason::BadJson, ""),
    (r#"[1,2,3]"#, Reason::NotAnObject, ""),
    (r#""just a string""#, Reason::NotAnObject, ""),
    (r#"{"qty": NaN}"#, Reason::BadJson, ""),
    (r#"{"qty": Infinity}"#, Reason::BadJson, ""),
    (r#""#, Reason::Truncated, ""),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e12","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::DuplicateField,
        "id",
    ),
    // envelope
    (
        r#"{"type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::MissingField,
        "id",
    ),
    (
        r#"{"id":"not-a-uuid","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::BadUuid,
        "id",
    ),
    (
        r#"{"id":42,"type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::WrongType,
        "id",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::MissingField,
        "type",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"refund","ts":"2026-11-11T20:15:03Z"}"#,
        Reason::UnknownType,
        "type",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::MissingField,
        "ts",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11 20:15:03","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::BadTimestamp,
        "ts",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03","sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::BadTimestamp,
        "ts",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":1731327303,"sku":"S","location":"L","op":"set","qty":1}"#,
        Reason::WrongType,
        "ts",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","ts":"2026-11-11T20:15:03Z","member":{"openid":"o"},"target":"t"}"#,
        Reason::MissingField,
        "channel",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","ts":"2026-11-11T20:15:03Z","channel":"","member":{"openid":"o"},"target":"t"}"#,
        Reason::EmptyString,
        "channel",
    ),
    // scan
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","sku":"S","campaign":"c","member":{"openid":"o"},"device":"d","ip":"1.2.3.4"}"#,
        Reason::MissingField,
        "code",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","skuu":"S","campaign":"c","member":{"openid":"o"},"device":"d","ip":"1.2.3.4"}"#,
        Reason::MissingField,
        "sku",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","member":{"openid":"o"},"device":"d","ip":"1.2.3.4"}"#,
        Reason::MissingField,
        "campaign",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","device":"d","ip":"1.2.3.4"}"#,
        Reason::MissingField,
        "member",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{},"device":"d","ip":"1.2.3.4"}"#,
        Reason::NoIdentity,
        "member",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":"o6_x","device":"d","ip":"1.2.3.4"}"#,
        Reason::WrongType,
        "member",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"openid":7},"device":"d","ip":"1.2.3.4"}"#,
        Reason::WrongType,
        "member.openid",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"phone":"call me maybe"},"device":"d","ip":"1.2.3.4"}"#,
        Reason::BadPhone,
        "member.phone",
    ),
    // a member id this service never issues: taken as given, it would start a member
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","ts":"2026-11-11T20:15:03Z","channel":"mall","member":{"member_id":"hello-i-am-made-up"},"target":"t"}"#,
        Reason::BadValue,
        "member.member_id",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","ts":"2026-11-11T20:15:03Z","channel":"mall","member":{"member_id":"M762F1EF27F372464"},"target":"t"}"#,
        Reason::BadValue,
        "member.member_id",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"openid":"o","openid":"p"},"device":"d","ip":"1.2.3.4"}"#,
        Reason::DuplicateField,
        "member.openid",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"openid":"o"},"ip":"1.2.3.4"}"#,
        Reason::MissingField,
        "device",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"openid":"o"},"device":"d","ip":"1.2.3.400"}"#,
        Reason::BadIp,
        "ip",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"openid":"o"},"device":"d","ip":"1.2.3.4","geo":{"lat":91,"lon":0}}"#,
        Reason::BadGeo,
        "geo.lat",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"openid":"o"},"device":"d","ip":"1.2.3.4","geo":{"lat":"31.2","lon":121}}"#,
        Reason::WrongType,
        "geo.lat",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","ts":"2026-11-11T20:15:03Z","channel":"campaign","code":"C","sku":"S","campaign":"c","member":{"openid":"o"},"device":"d","ip":"1.2.3.4","geo":{"lat":31.2}}"#,
        Reason::MissingField,
        "geo.lon",
    ),
    // order
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L"}"#,
        Reason::MissingField,
        "lines",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[]}"#,
        Reason::NoLines,
        "lines",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":-1,"unit_price":1}]}"#,
        Reason::NegativeQty,
        "lines[0].qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":1,"unit_price":1},{"sku":"S","qty":0,"unit_price":1}]}"#,
        Reason::ZeroQty,
        "lines[1].qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":1.5,"unit_price":1}]}"#,
        Reason::WrongType,
        "lines[0].qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":1,"unit_price":-5}]}"#,
        Reason::NegativeAmount,
        "lines[0].unit_price",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"dealer","order":"P","status":"placed","kind":"dealer","dealer":"d1","location":"L","lines":[{"sku":"S","qty":1,"unit_price":1}],"points_redeemed":500}"#,
        Reason::BadValue,
        "points_redeemed",
    ),
    // a line worth more than 10^15 fen (a dear unit is fine, ¥50,000 here, at a sane count)
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":2,"unit_price":5000000},{"sku":"S","qty":1000000000,"unit_price":5000000}]}"#,
        Reason::OutOfRange,
        "lines[1]",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":100000000000000000000000,"unit_price":1}]}"#,
        Reason::OutOfRange,
        "lines[0].qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":18446744073709551615,"unit_price":1}]}"#,
        Reason::OutOfRange,
        "lines[0].qty",
    ),
    // a whole number written as a decimal is no integer, not an overflow; a huge one is
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":1,"unit_price":5990.0}]}"#,
        Reason::WrongType,
        "lines[0].unit_price",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":1e3,"unit_price":1}]}"#,
        Reason::WrongType,
        "lines[0].qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":1e30,"unit_price":1}]}"#,
        Reason::OutOfRange,
        "lines[0].qty",
    ),
    (
        // each line within the bound, the order above it
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"sku":"S","qty":1,"unit_price":600000000000000},{"sku":"T","qty":1,"unit_price":600000000000000}]}"#,
        Reason::OutOfRange,
        "lines",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[{"qty":1,"unit_price":1}]}"#,
        Reason::MissingField,
        "lines[0].sku",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"location":"L","lines":[7]}"#,
        Reason::WrongType,
        "lines[0]",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"placed","kind":"consumer","member":{"openid":"o"},"lines":[{"sku":"S","qty":1,"unit_price":1}]}"#,
        Reason::MissingField,
        "location",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"shipped","kind":"consumer","member":{"openid":"o"}}"#,
        Reason::BadValue,
        "status",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"paid","kind":"wholesale","member":{"openid":"o"}}"#,
        Reason::BadValue,
        "kind",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"paid","kind":"consumer"}"#,
        Reason::MissingField,
        "member",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"dealer","order":"O","status":"paid","kind":"dealer"}"#,
        Reason::MissingField,
        "dealer",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"mall","order":"O","status":"paid","kind":"consumer","member":{"openid":"o"},"points_redeemed":-10}"#,
        Reason::NegativeAmount,
        "points_redeemed",
    ),
    // visit
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"visit","ts":"2026-11-11T20:15:03Z","channel":"store","store":"S","visitor":"member"}"#,
        Reason::MissingField,
        "member",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"visit","ts":"2026-11-11T20:15:03Z","channel":"sfa","store":"S","visitor":"rep"}"#,
        Reason::MissingField,
        "rep",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"visit","ts":"2026-11-11T20:15:03Z","channel":"sfa","store":"S","visitor":"ghost","rep":"r"}"#,
        Reason::BadValue,
        "visitor",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"visit","ts":"2026-11-11T20:15:03Z","channel":"sfa","store":"S","visitor":"rep","rep":"r","duration_s":-1}"#,
        Reason::OutOfRange,
        "duration_s",
    ),
    // stock
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"receive","qty":-4}"#,
        Reason::NegativeQty,
        "qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"receive","qty":0}"#,
        Reason::ZeroQty,
        "qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":-1}"#,
        Reason::NegativeQty,
        "qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"steal","qty":1}"#,
        Reason::BadValue,
        "op",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":"10"}"#,
        Reason::WrongType,
        "qty",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03Z","sku":"S","location":"L","op":"set","qty":1,"safety":-2}"#,
        Reason::NegativeQty,
        "safety",
    ),
    // payment, dealer, code_batch, identify
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"payment","ts":"2026-11-11T20:15:03Z","dealer":"D","amount":0,"ref":"r"}"#,
        Reason::NegativeAmount,
        "amount",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"payment","ts":"2026-11-11T20:15:03Z","dealer":"D","amount":10}"#,
        Reason::MissingField,
        "ref",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"dealer","ts":"2026-11-11T20:15:03Z","dealer":"D","credit_limit":-1}"#,
        Reason::NegativeAmount,
        "credit_limit",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"dealer","ts":"2026-11-11T20:15:03Z","dealer":"D","credit_limit":1,"region":{"lat":31,"lon":121,"radius_km":0}}"#,
        Reason::OutOfRange,
        "region.radius_km",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"dealer","ts":"2026-11-11T20:15:03Z","dealer":"D","credit_limit":1,"region":[31,121,5]}"#,
        Reason::WrongType,
        "region",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"code_batch","ts":"2026-11-11T20:15:03Z","batch":"B","sku":"S","dealer":"D"}"#,
        Reason::MissingField,
        "prefix",
    ),
    (
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"identify","ts":"2026-11-11T20:15:03Z","member":{"openid":"o"}}"#,
        Reason::NoIdentity,
        "member",
    ),
];

#[test]
fn malformed_corpus_is_rejected_with_the_right_reason() {
    let d = decoder();
    assert!(BAD.len() >= 40);
    for (raw, reason, path) in BAD {
        let rej = d.decode(raw.as_bytes()).expect_err(raw);
        assert!(
            rej.problems
                .iter()
                .any(|p| p.reason == *reason && p.path == *path),
            "expected {reason} at `{path}` for {raw}\n got {:?}",
            rej.problems
        );
    }
    // a zero where a positive amount is due keeps its code and says so
    let zero = d.decode(
        BAD[BAD
            .iter()
            .position(|b| b.0.contains(r#""amount":0"#))
            .unwrap()]
        .0
        .as_bytes(),
    );
    let detail = &zero.unwrap_err().problems[0].detail;
    assert_eq!(detail, "must be greater than zero");
    // a phone sent as a number is that, not also no identity at all
    let number = d
        .decode(br#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","ts":"2026-11-11T20:15:03Z","channel":"mall","member":{"phone":13911112222},"target":"ad"}"#)
        .unwrap_err();
    let said: Vec<(Reason, &str)> = number
        .problems
        .iter()
        .map(|p| (p.reason, p.path.as_str()))
        .collect();
    assert_eq!(said, [(Reason::WrongType, "member.phone")]);
    // broken JSON is placed within the event's own text (not a body's line)
    let cut = d.decode(BAD[0].0.as_bytes()).unwrap_err();
    assert_eq!(
        cut.problems[0].detail,
        "EOF while parsing an object at column 58 of the event's text"
    );
    let two = d.decode(b"{\n\"id\": \"x\" \"type\": 1}").unwrap_err();
    assert!(
        two.problems[0]
            .detail
            .ends_with(" at line 2, column 11 of the event's text"),
        "{:?}",
        two.problems
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let raw = r#"{"id":"nope","type":"scan","ts":"yesterday","channel":"campaign","code":"","sku":"S","member":{},"device":"d","ip":"x"}"#;
    let rej = decoder().decode(raw.as_bytes()).unwrap_err();
    let got: Vec<(Reason, &str)> = rej
        .problems
        .iter()
        .map(|p| (p.reason, p.path.as_str()))
        .collect();
    for want in [
        (Reason::BadUuid, "id"),
        (Reason::BadTimestamp, "ts"),
        (Reason::EmptyString, "code"),
        (Reason::MissingField, "campaign"),
        (Reason::NoIdentity, "member"),
        (Reason::BadIp, "ip"),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {got:?}");
    }
    // a wrong type does not hide the other problems either
    let raw = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"stock","ts":"2026-11-11T20:15:03Z","sku":5,"op":"set","qty":"x"}"#;
    let rej = decoder().decode(raw.as_bytes()).unwrap_err();
    let got: Vec<(Reason, &str)> = rej
        .problems
        .iter()
        .map(|p| (p.reason, p.path.as_str()))
        .collect();
    assert!(got.contains(&(Reason::WrongType, "sku")), "{got:?}");
    assert!(got.contains(&(Reason::WrongType, "qty")), "{got:?}");
    assert!(got.contains(&(Reason::MissingField, "location")), "{got:?}");
    assert!(!got.contains(&(Reason::MissingField, "sku")), "{got:?}");
}

/// Broken JSON keeps its id when it starts as senders write it: the sender can match the
/// rejection to what it sent.
#[test]
fn broken_json_keeps_its_id_when_it_leads() {
    let d = decoder();
    let r = d
        .decode(br#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","target": }"#)
        .unwrap_err();
    assert_eq!(r.primary(), Reason::BadJson);
    assert_eq!(
        r.id.as_deref(),
        Some("0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11")
    );
    let r = d.decode(br#"{"type":"click", "target": }"#).unwrap_err();
    assert_eq!(r.id, None);
}

#[test]
fn size_utf8_and_depth_limits() {
    let d = decoder();
    let mut big =
        String::from(r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","pad":""#);
    big.push_str(&"x".repeat(MAX_EVENT_BYTES));
    big.push_str("\"}");
    let r = d.decode(big.as_bytes()).unwrap_err();
    assert_eq!(r.primary(), Reason::TooLarge);
    // its id is still read from its start, so the sender can match the rejection
    assert_eq!(
        r.id.as_deref(),
        Some("0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11")
    );
    // after a nested object holding an `id` of its own, and a string holding `"id":`
    let later = big.replace(
        r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","#,
        r#"{"x":{"id":"0193a7f2-6c1e-7d4a-9a51-000000000001"},"y":"\"id\":","id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","#,
    );
    let r = d.decode(later.as_bytes()).unwrap_err();
    assert_eq!(
        r.id.as_deref(),
        Some("0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11")
    );
    // a top-level `id` that is not an event id is not taken for one
    let bad = big.replace("0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11", "not-a-uuid");
    assert_eq!(d.decode(bad.as_bytes()).unwrap_err().id, None);

    let bad_utf8 = b"{\"id\":\"\xff\xfe\",\"type\":\"click\"}";
    assert_eq!(d.decode(bad_utf8).unwrap_err().primary(), Reason::BadUtf8);

    let deep = format!("{{\"member\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(
        d.decode(deep.as_bytes()).unwrap_err().primary(),
        Reason::TooDeep
    );
    // deep nesting inside an ignored field is skipped without recursion: still no panic
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(30000), "]".repeat(30000));
    assert!(d
        .decode(deep.as_bytes())
        .unwrap_err()
        .has(Reason::MissingField));

    let long = format!(
        r#"{{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","ts":"2026-11-11T20:15:03Z","channel":"mall","member":{{"openid":"o"}},"target":"{}"}}"#,
        "t".repeat(300)
    );
    let rej = d.decode(long.as_bytes()).unwrap_err();
    assert_eq!(
        (rej.primary(), rej.problems[0].path.as_str()),
        (Reason::TooLong, "target")
    );
}

/// A member id of the issued form is taken; the log's own decoder (stored input) takes any,
/// so a log written before the check replays as it ran.
#[test]
fn member_ids_of_the_issued_form_are_taken() {
    let ok = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"click","ts":"2026-11-11T20:15:03Z","channel":"mall","member":{"member_id":"m762f1ef27f372464"},"target":"t"}"#;
    assert!(decoder().decode(ok.as_bytes()).is_ok());
    let old = ok.replace("m762f1ef27f372464", "hello");
    assert!(decoder().decode(old.as_bytes()).is_err());
    let stored = Decoder::new(Pii::for_stored(b"contract-test-key"));
    assert!(stored.decode(old.as_bytes()).is_ok());
}

/// A dealer order spending points is refused at ingest; the log's own decoder takes one a
/// build before the check logged, so that log replays as it ran (a restart would stop on it).
#[test]
fn a_dealer_order_spending_points_is_refused_but_an_old_log_replays() {
    let raw = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"order","ts":"2026-11-11T20:15:03Z","channel":"dealer","order":"P","status":"placed","kind":"dealer","dealer":"d1","location":"L","lines":[{"sku":"S","qty":1,"unit_price":1}],"points_redeemed":500}"#;
    assert!(decoder().decode(raw.as_bytes()).is_err());
    let none = raw.replace(r#""points_redeemed":500"#, r#""points_redeemed":0"#);
    assert!(decoder().decode(none.as_bytes()).is_ok());
    let stored = Decoder::new(Pii::for_stored(b"contract-test-key"));
    assert!(stored.decode(raw.as_bytes()).is_ok());
}

#[test]
fn rejection_keeps_the_id_when_readable() {
    let raw = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"refund","ts":"2026-11-11T20:15:03Z"}"#;
    let rej = decoder().decode(raw.as_bytes()).unwrap_err();
    assert_eq!(
        rej.id.as_deref(),
        Some("0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11")
    );
}

#[test]
fn lint_points_at_typos_and_unused_fields() {
    let raw = r#"{"id":"0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11","type":"scan","skuu":"S","target":"t","qty":1}"#;
    let w = lint(raw.as_bytes());
    // two edits from `ts`, but another word: no suggestion for a short name
    assert!(
        w.iter()
            .any(|s| s.contains("qty") && s.contains("not used by scan")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|s| s.contains("skuu") && s.contains("did you mean `sku`")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|s| s.contains("target") && s.contains("not used by scan")),
        "{w:?}"
    );
    // near misses of the open lists' known names: a second channel, another person
    let raw = r#"{"type":"order","channel":"Tmall","member":{"Phone":"1","mobile":"2","kuaishou":"3","openid":"4"}}"#;
    let w = lint(raw.as_bytes());
    let has = |at: &str, mean: &str| {
        w.iter()
            .any(|s| s.contains(at) && s.contains(&format!("did you mean `{mean}`")))
    };
    assert!(has("at channel:", "tmall"), "{w:?}");
    assert!(has("at member.Phone:", "phone"), "{w:?}");
    assert!(has("at member.mobile:", "phone"), "{w:?}");
    assert!(
        !w.iter()
            .any(|s| s.contains("kuaishou") || s.contains("member.openid")),
        "{w:?}"
    );
    let raw = r#"{"type":"order","channel":"kuaishou","member":{"phone":"1"}}"#;
    assert!(!lint(raw.as_bytes()).iter().any(|s| s.contains("channel")));
    // a visit's field of the other visitor, and ids padded with a space
    let raw = r#"{"type":"visit","channel":"sfa","store":"st-1 ","visitor":"rep","rep":"r1","member":{"openid":"o"}}"#;
    let w = lint(raw.as_bytes());
    assert!(
        w.iter().any(|s| s.starts_with("ignored_field at member:")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|s| s.starts_with("padded_id at store:") && s.contains("`st-1`")),
        "{w:?}"
    );
    let raw = r#"{"type":"visit","channel":"store","store":"st-1","visitor":"member","member":{"openid":"o"}}"#;
    assert!(lint(raw.as_bytes()).is_empty());
    // an identity's value with a space at an end is another person (not a phone's: digits)
    let padded = raw.replace(
        r#"{"openid":"o"}"#,
        r#"{"openid":" o","phone":"138 0013 8000 "}"#,
    );
    let w = lint(padded.as_bytes());
    assert!(
        w.len() == 1 && w[0].starts_with("padded_id at member.openid:"),
        "{w:?}"
    );
    // a mainland mobile a digit short (or long) is likely mistyped; a landline is not
    for (phone, warned) in [
        ("1391234567", true),
        ("139123456789", true),
        ("+86 139 1234 567", true),
        ("13912345678", false),
        ("12345", true),
        ("1234567890123456", true),
        ("12 34 56 7", false),
        ("021-6123-4567", false),
        ("+1 415 555 0100", false),
    ] {
        let one = raw.replace(r#"{"openid":"o"}"#, &format!(r#"{{"phone":"{phone}"}}"#));
        let w = lint(one.as_bytes());
        assert_eq!(
            w.iter()
                .any(|s| s.starts_with("unlikely_phone at member.phone")),
            warned,
            "{phone}: {w:?}"
        );
    }
    // a null is no field sent (the live answer's noting reads it so too)
    let null = raw.replace(r#""visitor""#, r#""rep":null,"visitor""#);
    assert!(lint(null.as_bytes()).is_empty(), "{null}");
    // a POS order placed without its store
    let pos = r#"{"type":"order","channel":"store","order":"o1","status":"placed","kind":"consumer","location":"st-1"}"#;
    assert!(
        lint(pos.as_bytes())
            .iter()
            .any(|s| s.starts_with("no_store at store:")),
        "{pos}"
    );
    let with_store = pos.replace(r#""location""#, r#""store":"st-1","location""#);
    assert!(lint(with_store.as_bytes()).is_empty(), "{with_store}");
    // a visit's time counts only when plausible
    let visit = |d: i64| {
        format!(
            r#"{{"type":"visit","channel":"store","store":"st-1","visitor":"member","member":{{"openid":"o"}},"duration_s":{d}}}"#
        )
    };
    for d in [0, 864_000] {
        let w = lint(visit(d).as_bytes());
        assert!(
            w.len() == 1 && w[0].starts_with("implausible_duration at duration_s:"),
            "{w:?}"
        );
    }
    assert!(lint(visit(43_200).as_bytes()).is_empty());
}

/// A control character in a value (a NUL, a line break, a tab, U+0085) is refused with where
/// it is: ids are compared exactly, so `st-001\n` was a store apart from `st-001`.
#[test]
fn control_characters_in_values_are_refused() {
    let d = decoder();
    let visit = |store: &str, openid: &str| {
        format!(
            r#"{{"id":"00000000-0000-7000-8000-000000000009","type":"visit","ts":"2026-11-11T10:00:00+08:00","channel":"store","store":"{store}","visitor":"member","member":{{"openid":"{openid}"}}}}"#
        )
    };
    assert!(d.decode(visit("st-001", "o1").as_bytes()).is_ok());
    assert!(
        d.decode(visit("门店-001 ", "o1").as_bytes()).is_ok(),
        "white space is a warning"
    );
    for (store, openid, path, at) in [
        (r"st-001\n", "o1", "store", "U+000A) at byte 6"),
        (r"st-\u0000001", "o1", "store", "U+0000) at byte 3"),
        (r"st\t001", "o1", "store", "U+0009) at byte 2"),
        ("st-001", r"o\u00851", "member.openid", "U+0085) at byte 1"),
    ] {
        let r = d.decode(visit(store, openid).as_bytes()).expect_err(store);
        assert_eq!(r.problems.len(), 1, "{r:?}");
        let p = &r.problems[0];
        assert_eq!(
            (p.reason, p.path.as_str()),
            (Reason::BadValue, path),
            "{r:?}"
        );
        assert!(p.detail.contains(at), "{}", p.detail);
    }
    // nor in an identity's kind: `openid\n` was an identity kind of its own
    let kind = visit("st-001", "o1").replace(r#"{"openid""#, r#"{"openid\n""#);
    let r = d
        .decode(kind.as_bytes())
        .expect_err("a kind with a line break");
    assert_eq!(r.problems[0].path, "member.openid\n", "{r:?}");
    assert!(
        r.problems[0].detail.contains("of the identity kind"),
        "{r:?}"
    );
    // the service's own log, written before the check, replays as it ran
    let stored = Decoder::new(Pii::for_stored(b"contract-test-key"));
    assert!(stored.decode(visit(r"st-001\n", "o1").as_bytes()).is_ok());
    // lint leaves a line break to the refusal: it is no padding
    let w = lint(visit(r"st-001\n", "o1").as_bytes());
    assert!(!w.iter().any(|s| s.starts_with("padded_id")), "{w:?}");
}

#[test]
fn committed_json_schema_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/json/event.schema.json");
    let want = json_schema_text();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "schemas/json/event.schema.json is out of date: run `UPDATE_SCHEMAS=1 cargo test -p omnistream-schemas --test contract` and commit it"
    );
}

// ---------- property tests ----------

fn s() -> impl Strategy<Value = Str> {
    "[A-Za-z0-9_\\-\u{4e00}-\u{4e10}\"\\\\]{1,20}".prop_map(Str::from)
}

fn ids(min: usize) -> impl Strategy<Value = Identities> {
    proptest::collection::btree_map(
        prop_oneof![
            Just("openid"),
            Just("unionid"),
            Just("tmall"),
            Just("jd"),
            Just("douyin"),
            Just("member_id")
        ],
        s(),
        min..4,
    )
    .prop_map(|m| {
        let mut v: Vec<(IdKind, Str)> = m
            .into_iter()
            .map(|(k, v)| {
                // a member id has the issued form (any other is refused)
                let v = if k == "member_id" {
                    Str::from(format!("m{:016x}", v.len() as u64 * 0x9e37_79b9))
                } else {
                    v
                };
                (IdKind::parse(k), v)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Identities(v)
    })
}

fn geo() -> impl Strategy<Value = Geo> {
    (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| Geo { lat, lon })
}

fn line() -> impl Strategy<Value = Line> {
    (s(), 1i64..1000, 0i64..1_000_000).prop_map(|(sku, qty, unit_price)| Line {
        sku,
        qty,
        unit_price,
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (
            s(),
            s(),
            s(),
            ids(1),
            s(),
            // as the decoder keeps it: an IPv4 address written as IPv6 is read as IPv4
            any::<std::net::IpAddr>().prop_map(|ip| ip.to_canonical()),
            proptest::option::of(geo()),
            proptest::option::of(s())
        )
            .prop_map(
                |(code, sku, campaign, member, device, ip, geo, store)| Body::Scan(Scan {
                    code,
                    sku,
                    campaign,
                    member,
                    device,
                    ip,
                    geo,
                    store
                })
            ),
        (
            ids(1),
            s(),
            proptest::option::of(s()),
            proptest::option::of(s()),
            proptest::option::of(s())
        )
            .prop_map(
                |(member, target, campaign, sku, device)| Body::Click(Click {
                    member,
                    target,
                    campaign,
                    sku,
                    device
                })
            ),
        (
            s(),
            proptest::collection::vec(line(), 1..5),
            s(),
            proptest::option::of(s()),
            ids(1),
            proptest::option::of(0i64..10_000)
        )
            .prop_map(|(order, lines, location, store, member, points_redeemed)| {
                Body::Order(Order {
                    order,
                    status: OrderStatus::Placed,
                    kind: OrderKind::Consumer,
                    lines: Some(lines),
                    location: Some(location),
                    store,
                    member: Some(member),
                    dealer: None,
                    points_redeemed,
                })
            }),
        (
            s(),
            s(),
            prop_oneof![
                Just(OrderStatus::Paid),
                Just(OrderStatus::Cancelled),
                Just(OrderStatus::Fulfilled),
                Just(OrderStatus::Returned)
            ]
        )
            .prop_map(|(order, dealer, status)| Body::Order(Order {
                order,
                status,
                kind: OrderKind::Dealer,
                lines: None,
                location: None,
                store: None,
                member: None,
                dealer: Some(dealer),
                points_redeemed: None
            })),
        (
            s(),
            ids(1),
            proptest::option::of(0i64..10_000),
            proptest::option::of(geo())
        )
            .prop_map(|(store, member, duration_s, geo)| Body::Visit(Visit {
                store,
                visitor: Visitor::Member,
                member: Some(member),
                rep: None,
                duration_s,
                geo
            })),
        (s(), s(), -1000i64..1000, proptest::option::of(0i64..100)).prop_map(
            |(sku, location, qty, safety)| Body::Stock(StockChange {
                sku,
                location,
                op: StockOp::Adjust,
                qty,
                safety
            })
        ),
        (s(), 1i64..1_000_000_000, s()).prop_map(|(dealer, amount, reference)| Body::Payment(
            Payment {
                dealer,
                amount,
                reference
            }
        )),
        (
            s(),
            0i64..1_000_000_000,
            proptest::option::of((geo(), 1.0f64..2000.0))
        )
            .prop_map(|(dealer, credit_limit, r)| Body::Dealer(DealerInfo {
                dealer,
                credit_limit,
                region: r.map(|(g, radius_km)| Region {
                    lat: g.lat,
                    lon: g.lon,
                    radius_km
                })
            })),
        (s(), s(), s(), s()).prop_map(|(batch, prefix, sku, dealer)| Body::CodeBatch(CodeBatch {
            batch,
            prefix,
            sku,
            dealer
        })),
        ids(2).prop_map(|member| Body::Identify(Identify { member })),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u128>(),
        0i64..4_000_000_000_000,
        -840i16..=840,
        body(),
        proptest::option::of(prop_oneof![
            Just("mall"),
            Just("tmall"),
            Just("store"),
            Just("kiosk")
        ]),
    )
        .prop_map(|(id, ms, off, body, ch)| {
            let channel = if body.kind().needs_channel() {
                Some(Channel::parse(ch.unwrap_or("mall")))
            } else {
                ch.map(Channel::parse)
            };
            Event {
                id: uuid::Uuid::from_u128(id),
                ts: EventTime {
                    unix_us: ms * 1000,
                    offset_min: off,
                },
                channel,
                body,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_events_round_trip(ev in event()) {
        let bytes = serde_json::to_vec(&ev).unwrap();
        let back = decoder().decode(&bytes);
        prop_assert_eq!(back.as_ref().ok(), Some(&ev), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let r = decoder().decode(&bytes);
        if let Err(rej) = r { prop_assert!(!rej.problems.is_empty()); }
    }

    #[test]
    fn mutated_valid_events_never_panic(idx in 0usize..17, cut in 0usize..400, byte in any::<u8>()) {
        let mut b = VALID[idx % VALID.len()].as_bytes().to_vec();
        if cut < b.len() { b[cut] = byte; }
        let _ = decoder().decode(&b);
        b.truncate(cut.min(b.len()));
        let r = decoder().decode(&b);
        if let Err(rej) = r { prop_assert!(!rej.problems.is_empty()); }
    }

    #[test]
    fn arbitrary_json_objects_never_panic(v in arb_json()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = decoder().decode(&bytes);
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|n| serde_json::json!(n)),
        "[a-z0-9:\\-]{0,12}".prop_map(serde_json::Value::String),
    ];
    let tree = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("type".to_string()),
                    Just("ts".to_string()),
                    Just("member".to_string()),
                    Just("lines".to_string()),
                    Just("qty".to_string()),
                    Just("geo".to_string()),
                    Just("sku".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    // bias toward objects that look like events, so the validator's branches are reached
    (
        tree,
        prop_oneof![
            Just("scan"),
            Just("order"),
            Just("visit"),
            Just("stock"),
            Just("dealer"),
            Just("identify"),
            Just("payment"),
            Just("click"),
            Just("code_batch")
        ],
    )
        .prop_map(|(v, ty)| match v {
            serde_json::Value::Object(mut m) => {
                m.insert("type".into(), serde_json::json!(ty));
                m.entry("id")
                    .or_insert(serde_json::json!("0193a7f2-6c1e-7d4a-9a51-3f0c2b1d9e11"));
                m.entry("ts")
                    .or_insert(serde_json::json!("2026-11-11T20:15:03Z"));
                serde_json::Value::Object(m)
            }
            other => other,
        })
}

/// A time-boxed fuzz run of the decoder over three kinds of hostile input: arbitrary bytes,
/// valid events with several random byte edits (replace, insert, delete, splice of two
/// events), and arbitrary JSON objects shaped like events. Ignored in the normal suite;
/// run for ten minutes with
/// `OMNISTREAM_FUZZ_SECS=600 cargo test --release -p omnistream-schemas --test contract -- --ignored fuzz`.
#[test]
#[ignore = "long fuzz run, see the doc comment"]
fn fuzz_decoder_for_a_while() {
    use proptest::test_runner::{Config, TestRunner};
    let secs: u64 = std::env::var("OMNISTREAM_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let edit = (
        0usize..4,
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<prop::sample::Index>(),
    );
    let mutated = (
        any::<prop::sample::Index>(),
        proptest::collection::vec(edit, 1..8),
    )
        .prop_map(|(i, edits)| {
            let mut b = i.get(VALID).as_bytes().to_vec();
            for (op, at, byte, other) in edits {
                let pos = at.index(b.len() + 1);
                match op {
                    0 if pos < b.len() => b[pos] = byte,
                    1 => b.insert(pos, byte),
                    2 if pos < b.len() => {
                        b.remove(pos);
                    }
                    _ => {
                        let o = other.get(VALID).as_bytes();
                        b.truncate(pos);
                        b.extend_from_slice(&o[other.index(o.len())..]);
                    }
                }
            }
            b
        });
    let input = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1024),
        mutated,
        arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    let config = Config {
        cases: 20_000,
        failure_persistence: None,
        ..Config::default()
    };
    let d = decoder();
    // counted inside the test closure, so the figure is inputs actually decoded
    let cases = std::cell::Cell::new(0u64);
    let rejected = std::cell::Cell::new(0u64);
    let mut round = 0u64;
    while std::time::Instant::now() < deadline {
        // a runner counts its cases once: a fresh one per round, seeded by the round number
        round += 1;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&round.to_le_bytes());
        let rng = proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &seed,
        );
        let mut runner = TestRunner::new_with_rng(config.clone(), rng);
        runner
            .run(&input, |bytes| {
                cases.set(cases.get() + 1);
                if let Err(rej) = d.decode(&bytes) {
                    rejected.set(rejected.get() + 1);
                    prop_assert!(!rej.problems.is_empty());
                }
                Ok(())
            })
            .unwrap();
    }
    let (n, r) = (cases.get(), rejected.get());
    assert!(n > 0, "the fuzz loop decoded nothing");
    eprintln!("fuzz: {n} inputs decoded in {secs} s ({r} rejected), no panic");
}

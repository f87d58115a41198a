//! What the benches share: a context at a given minute and a member with a typical history.

#![allow(dead_code)]

use compact_str::CompactString as Str;
use omnistream_actors::cmd::{LineV, MemberCmd};
use omnistream_actors::member::Member;
use omnistream_actors::{Ctx, Effects, Rules};
use omnistream_schemas::EventTime;
use uuid::Uuid;

/// A context `n` minutes after a fixed instant, with event id `n + 1`.
pub fn ctx(rules: &Rules, n: u64) -> Ctx<'_> {
    Ctx {
        at: EventTime::from_unix_ms(1_794_000_000_000 + (n as i64) * 60_000),
        event: Uuid::from_u128(u128::from(n) + 1),
        rules,
        refs: &omnistream_actors::refdata::NO_REFS,
    }
}

/// One order placed and fulfilled on `m` (one cola at 3.50, no store): what the order
/// benches time.
pub fn order_pair(m: &mut Member, me: &Str, order: Str, c: &Ctx, fx: &mut Effects) {
    let lines = vec![LineV {
        sku: "SKU-COLA-500".into(),
        qty: 1,
        unit_price: 350,
    }];
    m.handle(
        me,
        MemberCmd::OrderPlaced {
            order: order.clone(),
            channel: "mall".into(),
            store: None,
            lines,
            points_redeemed: 0,
        },
        c,
        fx,
    );
    m.handle(me, MemberCmd::OrderFulfilled { order }, c, fx);
}

/// A member with a realistic history: 10 orders over 60 days, scans, clicks, visits.
pub fn typical_member(rules: &Rules) -> (Str, Member) {
    let me = Str::from("m0123456789abcdef");
    let mut m = Member::default();
    let mut fx = Effects::default();
    // a member is known by a hashed phone (64 hex digits) and a mini-program open id
    m.handle(
        &me,
        MemberCmd::Seen {
            bind: vec![
                (
                    "phone".into(),
                    "9f2c4d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d".into(),
                ),
                ("openid".into(), "oX7f_2kq9ZLmA81bC3dEfGhIjK".into()),
            ],
            then: Box::new(MemberCmd::Identify),
        },
        &ctx(rules, 0),
        &mut fx,
    );
    for i in 0..10u64 {
        let c = ctx(rules, i * 8_640); // every 6 days
        let order = compact_str::format_compact!("mall:O{i}");
        let lines = vec![LineV {
            sku: "SKU-COLA-500".into(),
            qty: 2,
            unit_price: 350,
        }];
        m.handle(
            &me,
            MemberCmd::OrderPlaced {
                order: order.clone(),
                channel: "mall".into(),
                store: Some("st-001".into()),
                lines,
                points_redeemed: 0,
            },
            &c,
            &mut fx,
        );
        m.handle(&me, MemberCmd::OrderFulfilled { order }, &c, &mut fx);
        m.handle(
            &me,
            MemberCmd::Click {
                channel: "douyin".into(),
                campaign: None,
            },
            &ctx(rules, i * 8_640 + 1),
            &mut fx,
        );
        m.handle(
            &me,
            MemberCmd::Visit {
                store: "st-001".into(),
                duration_s: Some(600),
                channel: Default::default(),
            },
            &ctx(rules, i * 8_640 + 2),
            &mut fx,
        );
    }
    for i in 0..4u64 {
        let c = ctx(rules, 90_000 + i);
        m.handle(
            &me,
            MemberCmd::ScanReward {
                campaign: "cny-2027".into(),
                code: "C".into(),
                points: 10,
                daily_cap: 3,
                store: None,
                verdict: None,
            },
            &c,
            &mut fx,
        );
    }
    (me, m)
}

/// A `u64` from the environment variable `name`, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's resident set now, in bytes (`/proc/self/statm`).
pub fn rss_bytes() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0
}

//! Nanoseconds per command for the hot handlers (member, SKU, dealer) on hot state, and the
//! serialized size of a typical member. Run: `cargo bench -p omnistream-actors --bench handlers`.

use compact_str::CompactString as Str;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use omnistream_actors::cmd::{DealerCmd, MemberCmd, SkuCmd};
use omnistream_actors::dealer::Dealer;
use omnistream_actors::sku::Sku;
use omnistream_actors::{Effects, Rules};
use omnistream_schemas::StockOp;
use std::hint::black_box;

mod common;
use common::{ctx, order_pair, typical_member};

fn bench(c: &mut Criterion) {
    let rules = Rules::default();
    let (me, member) = typical_member(&rules);
    let size = serde_json::to_vec(&member).map(|v| v.len()).unwrap_or(0);
    eprintln!(
        "typical member: {size} bytes as JSON, {} days of activity, {} identities",
        member.days.len(),
        member.ids.len()
    );

    let mut g = c.benchmark_group("handler");
    g.bench_function("member_click", |b| {
        let mut m = member.clone();
        let mut fx = Effects::default();
        let mut n = 100_000u64;
        b.iter(|| {
            n += 1;
            m.handle(
                &me,
                MemberCmd::Click {
                    channel: "douyin".into(),
                    campaign: None,
                },
                &ctx(&rules, n),
                &mut fx,
            );
            fx.clear();
        })
    });
    g.bench_function("member_order_placed_and_fulfilled", |b| {
        let mut m = member.clone();
        let mut fx = Effects::default();
        let mut n = 100_000u64;
        b.iter(|| {
            n += 1;
            let c = ctx(&rules, n);
            let order = compact_str::format_compact!("mall:B{n}");
            order_pair(&mut m, &me, order, &c, &mut fx);
            fx.clear();
        })
    });
    // the same commands on a fresh copy of the typical member each time (the copy is not
    // timed): above, the member's history grows with the iterations (a day of activity a day,
    // an order kept per iteration), so they time a long-lived member
    g.bench_function("typical_member_click", |b| {
        let c = ctx(&rules, 100_000);
        b.iter_batched_ref(
            || (member.clone(), Effects::default()),
            |(m, fx)| {
                m.handle(
                    &me,
                    MemberCmd::Click {
                        channel: "douyin".into(),
                        campaign: None,
                    },
                    &c,
                    fx,
                );
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("typical_member_order_placed_and_fulfilled", |b| {
        let c = ctx(&rules, 100_000);
        b.iter_batched_ref(
            || (member.clone(), Effects::default()),
            |(m, fx)| order_pair(m, &me, Str::from("mall:B1"), &c, fx),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("sku_reserve_and_release", |b| {
        let sku_id = Str::from("SKU-COLA-500");
        let mut s = Sku::default();
        let mut fx = Effects::default();
        s.handle(
            &sku_id,
            SkuCmd::Stock {
                op: StockOp::Receive,
                location: "wh".into(),
                qty: 1_000_000,
                safety: None,
            },
            &ctx(&rules, 0),
            &mut fx,
        );
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let c = ctx(&rules, n);
            let order = compact_str::format_compact!("mall:S{n}");
            s.handle(
                &sku_id,
                SkuCmd::Reserve {
                    order: order.clone(),
                    location: "wh".into(),
                    qty: 2,
                },
                &c,
                &mut fx,
            );
            s.handle(&sku_id, SkuCmd::Release { order }, &c, &mut fx);
            fx.clear();
        })
    });
    g.bench_function("dealer_open_and_close", |b| {
        let id = Str::from("dl-1");
        let mut d = Dealer::default();
        let mut fx = Effects::default();
        d.handle(
            &id,
            DealerCmd::Info {
                credit_limit: i64::MAX / 4,
                region: None,
            },
            &ctx(&rules, 0),
            &mut fx,
        );
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let c = ctx(&rules, n);
            let order = compact_str::format_compact!("dealer:D{n}");
            d.handle(
                &id,
                DealerCmd::Open {
                    order: order.clone(),
                    amount: 36_000,
                },
                &c,
                &mut fx,
            );
            d.handle(&id, DealerCmd::Close { order }, &c, &mut fx);
            fx.clear();
        })
    });
    g.finish();
    black_box(size);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);

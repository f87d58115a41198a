//! A fixed number of member commands on the typical member, for counting instructions with
//! cachegrind (independent of machine load), e.g.
//! `valgrind --tool=cachegrind --cache-sim=no target/release/deps/handler_count-* click 300000`.
//! Modes: `setup` (only the typical member built: subtract it), `click N` (a click a minute, as
//! the `handlers` bench does: past 1,440 the member has a day of activity a day, and past 32 of
//! them its days are a plain vector), `click-s N` (a click a second: the member keeps its
//! typical dozen days, packed), `order N` (N pairs of placed + fulfilled, a minute apart). Build: `cargo bench -p omnistream-actors --bench handler_count --no-run`.

use omnistream_actors::cmd::MemberCmd;
use omnistream_actors::{Ctx, Effects, Rules};
use omnistream_schemas::EventTime;
use std::hint::black_box;

mod common;
use common::{ctx, order_pair, typical_member};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("setup", String::as_str);
    let count: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let rules = Rules::default();
    let (me, mut m) = typical_member(&rules);
    let mut fx = Effects::default();
    for i in 0..count {
        let n = 100_000 + i;
        let c = match mode {
            "click-s" => Ctx {
                at: EventTime::from_unix_ms(
                    1_794_000_000_000 + 100_000 * 60_000 + (i as i64) * 1_000,
                ),
                event: uuid::Uuid::from_u128(u128::from(n) + 1),
                ..ctx(&rules, n)
            },
            _ => ctx(&rules, n),
        };
        match mode {
            "click" | "click-s" => m.handle(
                &me,
                MemberCmd::Click {
                    channel: "douyin".into(),
                    campaign: None,
                },
                &c,
                &mut fx,
            ),
            "order" => {
                let order = compact_str::format_compact!("mall:B{n}");
                order_pair(&mut m, &me, order, &c, &mut fx);
            }
            _ => {}
        }
        fx.clear();
    }
    black_box(&m);
    println!(
        "{mode} {count}: {} days, {} lots, {} orders",
        m.days.len(),
        m.points.lots.len(),
        m.orders.len()
    );
}

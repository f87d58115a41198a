//! Fraud decision speed: the pure scoring of one scan's features, one whole scan through the
//! engine on hot state (resolution, member, code, device, IP, prefix, campaign, reward), and
//! the code filter's lookups and inserts at 100 million codes.
//! Run: `cargo bench -p omnistream-actors --bench fraud`.

use criterion::{criterion_group, criterion_main, Criterion};
use omnistream_actors::config::FraudRules;
use omnistream_actors::engine::Engine;
use omnistream_actors::fraud::filter::CodeFilter;
use omnistream_actors::fraud::{score, CodeSeen, Features};
use omnistream_actors::Rules;
use omnistream_schemas::{Decoder, Event, EventTime, Pii};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn features() -> Features {
    Features {
        code: CodeSeen::First,
        member_rate: [3, 12, 30],
        device_rate: [3, 12, 30],
        ip_rate: [40, 300, 2_000],
        device_members: 5,
        ip_members: 45,
        net_members: 50,
        ip_fresh: 3,
        net_fresh: 4,
        member_batch: 9,
        device_batch: 9,
        ..Features::default()
    }
}

fn bench_score(c: &mut Criterion) {
    let f = features();
    let r = FraudRules::default();
    c.bench_function("fraud/score (pure, 4 reasons)", |b| {
        b.iter(|| score(black_box(&f), black_box(&r)))
    });
}

/// The `n`th scan of a warm world: 2,000 members on 1,500 devices behind 500 addresses, two
/// minutes of event time per thousand scans, a registered batch.
fn scan_json(n: u64) -> String {
    let t = EventTime {
        unix_us: 1_794_326_400_000_000 + (n as i64) * 120_000,
        offset_min: 480,
    };
    let m = n % 2_000;
    format!(
        r#"{{"id":"00000000-0000-7000-8000-{n:012}","type":"scan","ts":"{t}","channel":"campaign","code":"HB{n:010}","sku":"S1","campaign":"c1","member":{{"openid":"o{m}"}},"device":"d{}","ip":"112.{}.{}.7","geo":{{"lat":31.23,"lon":121.47}}}}"#,
        m % 1_500,
        m % 500 / 100,
        m % 100
    )
}

fn bench_engine(c: &mut Criterion) {
    let d = Decoder::new(Pii::new(b"bench"));
    let decode = |json: String| -> Event {
        d.decode(json.as_bytes())
            .unwrap_or_else(|r| panic!("{r}: {json}"))
    };
    let mut e = Engine::new(Rules::default());
    let mut out = Vec::new();
    e.apply(
        &decode(format!(
            r#"{{"id":"00000000-0000-7000-9000-000000000001","type":"code_batch","ts":"{}","batch":"B1","prefix":"HB","sku":"S1","dealer":"dl"}}"#,
            EventTime {
                unix_us: 1_794_326_400_000_000,
                offset_min: 480
            }
        )),
        &mut out,
    );
    // warm: every member, device and address has state, the maps are grown
    let mut n = 0u64;
    for _ in 0..20_000 {
        e.apply(&decode(scan_json(n)), &mut out);
        n += 1;
    }
    c.bench_function("fraud/one scan through the engine (hot state)", |b| {
        b.iter_custom(|iters| {
            let events: Vec<Event> = (0..iters).map(|i| decode(scan_json(n + i))).collect();
            n += iters;
            let start = Instant::now();
            for ev in &events {
                out.clear();
                black_box(e.apply(ev, &mut out));
            }
            start.elapsed()
        })
    });
}

fn bench_filter(c: &mut Criterion) {
    const N: u64 = 100_000_000;
    let mut f = match CodeFilter::for_rate(N, 0.01) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    // every page must be written, or lookups hit the kernel's shared zero page and look fast
    let mut code = *b"HZ8K0000000000";
    let set = |code: &mut [u8; 14], i: u64| {
        let mut x = i;
        for b in code[4..].iter_mut().rev() {
            *b = b'0' + (x % 10) as u8;
            x /= 10;
        }
    };
    for i in 0..N {
        set(&mut code, i * 7);
        f.insert(&code);
    }
    eprintln!("filter: {N} codes in {} MB", f.memory_bytes() / 1_000_000);
    let mut i = 0u64;
    c.bench_function("fraud/filter contains, 100M codes (1% fpr)", |b| {
        b.iter(|| {
            i = i.wrapping_add(0x9e37_79b9) % (N * 14);
            set(&mut code, i);
            black_box(f.contains(&code))
        })
    });
    c.bench_function("fraud/filter insert, 100M codes (1% fpr)", |b| {
        b.iter(|| {
            i = i.wrapping_add(0x9e37_79b9) % (N * 14);
            set(&mut code, i);
            black_box(f.insert(&code))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_score, bench_engine, bench_filter
}
criterion_main!(benches);

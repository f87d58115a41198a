//! Decode + validate throughput on realistic event lines: scans alone (the campaign hot path)
//! and a mix of every stream. Run: `cargo bench -p omnistream-schemas --bench decode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use omnistream_schemas::{Decoder, Pii};
use std::hint::black_box;

/// A deterministic pseudo-random sequence, so every run decodes the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 17
    }
}

fn uuid(r: &mut Lcg) -> String {
    let a = r.next();
    let b = r.next();
    format!(
        "{:08x}-{:04x}-7{:03x}-a{:03x}-{:012x}",
        a as u32,
        (a >> 32) as u16,
        b & 0xfff,
        (b >> 12) & 0xfff,
        (b >> 24) & 0xffff_ffff_ffff
    )
}

fn ts(r: &mut Lcg) -> String {
    format!(
        "2026-11-11T{:02}:{:02}:{:02}.{:03}+08:00",
        r.next() % 24,
        r.next() % 60,
        r.next() % 60,
        r.next() % 1000
    )
}

fn scan(r: &mut Lcg) -> String {
    let id = uuid(r);
    let t = ts(r);
    let member = if r.next().is_multiple_of(3) {
        format!(r#"{{"phone":"138{:08}"}}"#, r.next() % 100_000_000)
    } else {
        format!(r#"{{"openid":"o6_{:024x}"}}"#, r.next())
    };
    format!(
        r#"{{"id":"{id}","type":"scan","ts":"{t}","channel":"campaign","code":"HZ{:010X}","sku":"SKU-{:05}","campaign":"cny-2027","member":{member},"device":"d-{:06x}","ip":"112.65.{}.{}","geo":{{"lat":31.{:04},"lon":121.{:04}}}}}"#,
        r.next() % 0xff_ffff_ffff,
        r.next() % 2000,
        r.next() % 0xff_ffff,
        r.next() % 256,
        r.next() % 256,
        r.next() % 10000,
        r.next() % 10000
    )
}

fn order(r: &mut Lcg) -> String {
    let id = uuid(r);
    let t = ts(r);
    let n = 1 + r.next() % 4;
    let lines: Vec<String> = (0..n)
        .map(|_| {
            format!(
                r#"{{"sku":"SKU-{:05}","qty":{},"unit_price":{}}}"#,
                r.next() % 2000,
                1 + r.next() % 3,
                100 + r.next() % 50000
            )
        })
        .collect();
    format!(
        r#"{{"id":"{id}","type":"order","ts":"{t}","channel":"tmall","order":"T{:012}","status":"placed","kind":"consumer","lines":[{}],"location":"WH-SH","member":{{"tmall":"tb_{:08x}"}}}}"#,
        r.next() % 1_000_000_000_000,
        lines.join(","),
        r.next() % 0xffff_ffff
    )
}

fn click(r: &mut Lcg) -> String {
    let id = uuid(r);
    let t = ts(r);
    format!(
        r#"{{"id":"{id}","type":"click","ts":"{t}","channel":"douyin","member":{{"douyin":"dy{:010}"}},"target":"ad-{:04}","campaign":"cny-2027"}}"#,
        r.next() % 10_000_000_000,
        r.next() % 1000
    )
}

fn visit(r: &mut Lcg) -> String {
    let id = uuid(r);
    let t = ts(r);
    format!(
        r#"{{"id":"{id}","type":"visit","ts":"{t}","channel":"store","store":"S-{:04}","visitor":"member","member":{{"card":"C{:09}"}},"duration_s":{}}}"#,
        r.next() % 5000,
        r.next() % 1_000_000_000,
        r.next() % 3600
    )
}

/// The scan-only and mixed inputs (70% scans, 15% clicks, 10% orders, 5% visits).
fn inputs() -> (Vec<String>, Vec<String>) {
    let mut r = Lcg(7);
    let scans: Vec<String> = (0..10_000).map(|_| scan(&mut r)).collect();
    let mix = (0..10_000)
        .map(|_| match r.next() % 100 {
            0..=69 => scan(&mut r),
            70..=84 => click(&mut r),
            85..=94 => order(&mut r),
            _ => visit(&mut r),
        })
        .collect();
    (scans, mix)
}

fn bench(c: &mut Criterion) {
    let decoder = Decoder::new(Pii::new(b"bench-key"));
    let (scans, mix) = inputs();
    for (name, lines) in [("scans", &scans), ("mix", &mix)] {
        for l in lines.iter() {
            assert!(
                decoder.decode(l.as_bytes()).is_ok(),
                "bench input must be valid: {l}"
            );
        }
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        let mut g = c.benchmark_group("decode");
        // time per iteration covers 10,000 events: events/s = 10,000 / time
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                for l in lines.iter() {
                    black_box(decoder.decode(black_box(l.as_bytes())).ok());
                }
            })
        });
        // the ceiling on this machine: serde_json reading the same bytes without building anything
        g.bench_function(format!("{name}_parse_only"), |b| {
            b.iter(|| {
                for l in lines.iter() {
                    black_box(
                        serde_json::from_slice::<serde::de::IgnoredAny>(black_box(l.as_bytes()))
                            .ok(),
                    );
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);

//! The workload generator: a seeded world (members, stores, SKUs, dealers, code batches,
//! campaigns) and a discrete-event schedule that turns it into JSON-lines events per
//! shared/EVENTS.md, with fraud episodes and their ground-truth labels.
//!
//! Arrivals follow a Poisson process whose rate jumps during campaign launches; an arrival is
//! one activity (a click, an order's placement, the start of a scan episode...). Activities
//! that span time (an order's life cycle, a device farm's hour of scans) put their later
//! events on a min-heap by event time, so the output is in time order apart from the
//! deliberately late events. Every choice draws from one seeded stream in one order, and no
//! hash-map iteration touches the output, so a seed fixes the bytes.

use crate::rng::{hash3, mix_bits, Rng, Zipf};
use crate::scenario::Scenario;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::io::{self, Write};

/// Milliseconds per minute and hour, for readable schedules.
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// A city the world is spread over: centre, IP prefix pool and relative population.
struct City {
    code: &'static str,
    lat: f64,
    lon: f64,
    ip: (u8, u8),
    weight: f64,
}

const CITIES: [City; 10] = [
    City {
        code: "sh",
        lat: 31.23,
        lon: 121.47,
        ip: (101, 80),
        weight: 10.0,
    },
    City {
        code: "bj",
        lat: 39.90,
        lon: 116.40,
        ip: (123, 112),
        weight: 9.0,
    },
    City {
        code: "gz",
        lat: 23.13,
        lon: 113.26,
        ip: (113, 108),
        weight: 7.0,
    },
    City {
        code: "sz",
        lat: 22.54,
        lon: 114.06,
        ip: (119, 123),
        weight: 7.0,
    },
    City {
        code: "cd",
        lat: 30.57,
        lon: 104.07,
        ip: (171, 88),
        weight: 6.0,
    },
    City {
        code: "hz",
        lat: 30.27,
        lon: 120.16,
        ip: (115, 192),
        weight: 5.0,
    },
    City {
        code: "wh",
        lat: 30.59,
        lon: 114.31,
        ip: (27, 16),
        weight: 5.0,
    },
    City {
        code: "xa",
        lat: 34.34,
        lon: 108.94,
        ip: (113, 200),
        weight: 4.0,
    },
    City {
        code: "nj",
        lat: 32.06,
        lon: 118.80,
        ip: (180, 110),
        weight: 4.0,
    },
    City {
        code: "cq",
        lat: 29.56,
        lon: 106.55,
        ip: (222, 178),
        weight: 6.0,
    },
];

/// Urumqi: a point far from every built-in city, for impossible travel in small worlds.
const FAR_AWAY: (f64, f64) = (43.83, 87.62);

const B32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// hash domains, so attributes of one index drawn for different purposes are independent
const D_KINDS: u64 = 1;
const D_CITY: u64 = 2;
const D_GEO: u64 = 3;
const D_IP: u64 = 4;
const D_OPENID: u64 = 5;
const D_UUID: u64 = 6;
const D_PRICE: u64 = 7;
const D_STORE: u64 = 8;
const D_DEALER: u64 = 9;
const D_FAMILY: u64 = 10;
const D_HISTORY: u64 = 11;

// identity kinds as bits of a member's mask
const K_PHONE: u8 = 1;
const K_OPENID: u8 = 2;
const K_TMALL: u8 = 4;
const K_JD: u8 = 8;
const K_DOUYIN: u8 = 16;
const K_CARD: u8 = 32;

/// Ground truth for one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// Whether the scan is fraudulent.
    pub fraud: bool,
    /// The pattern the scan belongs to (`normal` for ordinary scans).
    pub pattern: &'static str,
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Events written.
    pub events: u64,
    /// Events per type.
    pub by_type: BTreeMap<&'static str, u64>,
    /// Scans per pattern: (fraud, legit).
    pub scans_by_pattern: BTreeMap<&'static str, (u64, u64)>,
    /// Event time of the first and last line written (ms since the epoch).
    pub first_ms: i64,
    /// See `first_ms`.
    pub last_ms: i64,
    /// Events written with a lagging timestamp.
    pub late: u64,
    /// Fresh accounts created by fraud patterns.
    pub fresh_accounts: u64,
    /// Events of members' history before the start (on top of the scenario's `events`).
    pub history: u64,
    /// Bytes of events written.
    pub bytes: u64,
}

/// The `seq` of history events: emitted as they are, never late.
const HISTORY_SEQ: u64 = u64::MAX;

/// One scheduled event: rendered except for id and timestamp, which are fixed on emission.
struct Pending {
    at: i64,
    seq: u64,
    ty: &'static str,
    body: String,
    label: Option<Label>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    // reversed, so the std max-heap pops the earliest event first
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A JSON object body under construction (fields after the envelope).
#[derive(Default)]
struct Body(String);

impl Body {
    fn key(&mut self, k: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }
    fn s(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_json_str(&mut self.0, v);
        self
    }
    fn i(mut self, k: &str, v: i64) -> Self {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }
    fn geo(mut self, k: &str, g: (f64, f64)) -> Self {
        self.key(k);
        let _ = write!(self.0, "{{\"lat\":{:.5},\"lon\":{:.5}}}", g.0, g.1);
        self
    }
    fn ids(mut self, k: &str, ids: &[(&str, String)]) -> Self {
        self.key(k);
        self.0.push('{');
        for (n, (kind, v)) in ids.iter().enumerate() {
            if n > 0 {
                self.0.push(',');
            }
            push_json_str(&mut self.0, kind);
            self.0.push(':');
            push_json_str(&mut self.0, v);
        }
        self.0.push('}');
        self
    }
    fn lines(mut self, k: &str, lines: &[(usize, i64, i64)], skus: &[Sku]) -> Self {
        self.key(k);
        self.0.push('[');
        for (n, (sku, qty, price)) in lines.iter().enumerate() {
            if n > 0 {
                self.0.push(',');
            }
            self.0.push_str("{\"sku\":");
            push_json_str(&mut self.0, &skus[*sku].id);
            let _ = write!(self.0, ",\"qty\":{qty},\"unit_price\":{price}}}");
        }
        self.0.push(']');
        self
    }
}

/// Appends a JSON string literal (our values are ASCII, but escaping keeps that an
/// implementation detail rather than a correctness condition).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Formats epoch milliseconds as RFC 3339 in China time, e.g. `2026-11-11T00:00:01.250+08:00`.
pub fn format_ts(ms: i64) -> String {
    let local = ms + 8 * HOUR;
    let days = local.div_euclid(86_400_000);
    let rem = local.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+08:00",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn encode(mut x: u64, n: usize, alphabet: &[u8], bits: u32) -> String {
    let mut s = vec![0u8; n];
    for c in s.iter_mut().rev() {
        *c = alphabet[(x & ((1 << bits) - 1)) as usize];
        x >>= bits;
    }
    String::from_utf8(s).unwrap_or_default()
}

/// One member's derived attributes (computed from its index, never stored).
struct Member {
    idx: u64,
    city: usize,
    kinds: u8,
    devices: u64,
    home: (f64, f64),
    ip: String,
}

struct Store {
    id: String,
    city: usize,
    geo: (f64, f64),
    owner: u64,
    ip: String,
}

struct Sku {
    id: String,
    price: i64,
}

struct Dealer {
    id: String,
    city: usize,
    outstanding: i64,
}

struct Batch {
    prefix: String,
    sku: usize,
    dealer: usize,
    next_serial: u64,
}

/// A scan about to be scheduled.
#[derive(Clone)]
struct ScanArgs {
    ids: Vec<(&'static str, String)>,
    device: String,
    ip: String,
    geo: Option<(f64, f64)>,
    store: Option<usize>,
    code: String,
    sku: usize,
    campaign: usize,
    label: Label,
}

/// The pattern names, in the order of [`crate::scenario::Patterns::shares`], with each
/// episode's expected number of scans (to turn shares of scans into episode starts).
const EPISODE_SCANS: [f64; 13] = [
    1.0 + 17.5, // shared_code: owner + 5..=30 others
    25.0 * 2.0, // device_farm: 10..=40 accounts × 1..=3
    50.0,       // batch_harvest: 20..=80
    20.0 * 3.5, // nat_rotation: 10..=30 accounts × 2..=5
    1.0 + 2.0,  // impossible_travel: home + 1..=3
    14.0,       // new_account_burst: 8..=20
    9.0 * 3.0,  // ring: 6..=12 accounts × 2..=4
    6.5,        // forged_code: 3..=10
    3.0 * 1.5,  // family: 2..=4 × 1..=2
    40.0 * 1.5, // campus_nat: 20..=60 × 1..=2
    10.0,       // shop_owner: 5..=15
    2.0,        // rescan
    1.0,        // diversion
];

/// The generator; [`generate`] drives it.
struct Gen<'a> {
    sc: &'a Scenario,
    seed: u64,
    rng: Rng,
    t0: i64,
    dur: i64,
    cities: usize,
    city_w: Vec<f64>,
    member_z: Zipf,
    sku_z: Zipf,
    ad_z: Zipf,
    dealer_z: Zipf,
    members_by_city: Vec<Vec<u32>>,
    stores: Vec<Store>,
    stores_by_city: Vec<Vec<u32>>,
    skus: Vec<Sku>,
    dealers: Vec<Dealer>,
    dealers_by_city: Vec<Vec<u32>>,
    batches: Vec<Batch>,
    launches: Vec<i64>,
    burst_ms: i64,
    /// (pattern index, probability an arriving scan starts that episode)
    episode_p: Vec<(usize, f64)>,
    /// One episode of every pattern in use, started at a fixed time in the first half, so
    /// even a small scenario shows each pattern: (time, pattern), latest first.
    forced: Vec<(i64, usize)>,
    heap: BinaryHeap<Pending>,
    seq: u64,
    fresh: u64,
    fresh_devices: u64,
    orders: u64,
    payments: u64,
    expected_units: f64,
    /// Members (below `sizes.members`) who showed up, when recorded for the history pass.
    touched: Option<std::cell::RefCell<Vec<bool>>>,
}

/// The non-empty lines of generated JSON-lines output, one event each.
pub fn lines_of(events: &[u8]) -> Vec<&[u8]> {
    events
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

/// The scenario's events generated in memory, a line each (labels dropped): what the tests
/// and benchmarks that feed a pipeline directly need.
pub fn generated_lines(sc: &Scenario) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    generate(sc, &mut out, &mut io::sink(), &mut |_| {})?;
    Ok(lines_of(&out).into_iter().map(<[u8]>::to_vec).collect())
}

/// Writes the scenario's events to `events` and one label line per scan to `labels`;
/// `progress` is called with the count written every few thousand events.
///
/// With `[history]`, a first pass over the same seed finds the brand's members who show up,
/// and the output starts with one earlier interaction for the scenario's share of them; the
/// scenario's own events follow unchanged (their ids apart), so a run with history is the
/// run without it plus the members' past.
pub fn generate(
    sc: &Scenario,
    events: &mut dyn Write,
    labels: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Summary> {
    let history = if sc.history.days > 0 && sc.history.share > 0.0 {
        let mut g = Gen::new(sc);
        g.touched = Some(std::cell::RefCell::new(vec![
            false;
            sc.sizes.members as usize
        ]));
        run(
            &mut g,
            sc,
            &mut io::sink(),
            &mut io::sink(),
            &mut |_| {},
            Vec::new(),
        )?;
        g.history()
    } else {
        Vec::new()
    };
    let mut g = Gen::new(sc);
    run(&mut g, sc, events, labels, progress, history)
}

fn run(
    g: &mut Gen,
    sc: &Scenario,
    events: &mut dyn Write,
    labels: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
    history: Vec<Pending>,
) -> io::Result<Summary> {
    let mut sum = Summary::default();
    // the history comes on top of the scenario's events
    let budget = sc.events + history.len() as u64;
    sum.history = history.len() as u64;
    let mut line = String::with_capacity(1024);
    let mut emit = |g: &mut Gen, p: Pending, sum: &mut Summary| -> io::Result<()> {
        let n = sum.events;
        let mut at = p.at;
        // history is weeks old and drawn from hashes: it leaves the live stream's draws alone
        if p.seq != HISTORY_SEQ && g.rng.chance(sc.late.share) && sc.late.max_ms > 0 {
            at -= g.rng.range(1, sc.late.max_ms) as i64;
            sum.late += 1;
        }
        let id = g.uuid(n);
        line.clear();
        line.push_str("{\"id\":\"");
        line.push_str(&id);
        line.push_str("\",\"type\":\"");
        line.push_str(p.ty);
        line.push_str("\",\"ts\":\"");
        line.push_str(&format_ts(at));
        line.push('"');
        if !p.body.is_empty() {
            line.push(',');
            line.push_str(&p.body);
        }
        line.push_str("}\n");
        events.write_all(line.as_bytes())?;
        sum.bytes += line.len() as u64;
        if let Some(l) = p.label {
            let verdict = if l.fraud { "fraud" } else { "legit" };
            writeln!(
                labels,
                "{{\"event\":\"{id}\",\"label\":\"{verdict}\",\"pattern\":\"{}\"}}",
                l.pattern
            )?;
            let e = sum.scans_by_pattern.entry(l.pattern).or_default();
            if l.fraud {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        *sum.by_type.entry(p.ty).or_default() += 1;
        if n == 0 {
            sum.first_ms = at;
        }
        sum.last_ms = at;
        sum.events += 1;
        if sum.events & 8191 == 0 {
            progress(sum.events);
        }
        Ok(())
    };

    for p in history {
        emit(g, p, &mut sum)?;
    }
    // reference data first, a few minutes before the activity starts
    let preamble = g.preamble();
    for p in preamble {
        if sum.events >= budget {
            break;
        }
        emit(g, p, &mut sum)?;
    }
    let base_rate = g.base_rate_per_ms();
    let mut t = g.t0 as f64;
    while sum.events < budget {
        // the next arrival of a piecewise-constant Poisson process: a gap that crosses a rate
        // change restarts at the change (memorylessness keeps this exact)
        let now = t as i64;
        let (mult, next_change) = g.rate_at(now);
        let gap = g.rng.exp(1.0 / (base_rate * mult));
        if let Some(c) = next_change {
            if t + gap >= c as f64 {
                t = c as f64;
                continue;
            }
        }
        t += gap;
        let at = t as i64;
        while g.heap.peek().is_some_and(|p| p.at <= at) && sum.events < budget {
            if let Some(p) = g.heap.pop() {
                emit(g, p, &mut sum)?;
            }
        }
        if sum.events >= budget {
            break;
        }
        while let Some(&(ft, p)) = g.forced.last() {
            if ft > at {
                break;
            }
            g.forced.pop();
            let c = g.campaign_at(ft);
            g.episode(p, ft, c);
        }
        g.arrival(at);
    }
    progress(sum.events);
    sum.fresh_accounts = g.fresh;
    events.flush()?;
    labels.flush()?;
    Ok(sum)
}

impl<'a> Gen<'a> {
    fn new(sc: &'a Scenario) -> Self {
        let z = &sc.sizes;
        let seed = sc.seed;
        let cities = z.cities as usize;
        let city_w: Vec<f64> = CITIES[..cities].iter().map(|c| c.weight).collect();
        let t0 = omnistream_schemas::EventTime::parse(&sc.start)
            .map(|t| t.unix_ms())
            .unwrap_or(0);
        let mut g = Gen {
            sc,
            seed,
            rng: Rng::new(seed),
            t0,
            dur: sc.duration as i64 * 1000,
            cities,
            city_w,
            member_z: Zipf::capped(z.members as usize, sc.skew.members, sc.skew.member_cap),
            sku_z: Zipf::new(z.skus as usize, sc.skew.skus),
            ad_z: Zipf::new(200, 1.0),
            dealer_z: Zipf::new(z.dealers as usize, 1.0),
            members_by_city: vec![Vec::new(); cities],
            stores: Vec::new(),
            stores_by_city: vec![Vec::new(); cities],
            skus: Vec::new(),
            dealers: Vec::new(),
            dealers_by_city: vec![Vec::new(); cities],
            batches: Vec::new(),
            launches: Vec::new(),
            burst_ms: (sc.burst.minutes * MIN as f64) as i64,
            episode_p: Vec::new(),
            forced: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            fresh: 0,
            fresh_devices: 0,
            orders: 0,
            payments: 0,
            expected_units: 0.0,
            touched: None,
        };
        for i in 0..z.members {
            let c = g.city_of(D_CITY, i);
            g.members_by_city[c].push(i as u32);
        }
        for i in 0..z.skus {
            // log-uniform between ¥3 and ¥300, in whole jiao
            let u = (hash3(seed, D_PRICE, i) >> 11) as f64 / (1u64 << 53) as f64;
            let price = (300.0 * 100f64.powf(u) / 10.0).round() as i64 * 10;
            g.skus.push(Sku {
                id: format!("SKU-{:05}", i + 1),
                price: price.max(10),
            });
        }
        for i in 0..z.stores {
            let c = g.city_of(D_STORE, i);
            let geo = g.near(
                CITIES[c].lat,
                CITIES[c].lon,
                15.0,
                hash3(seed, D_STORE + 100, i),
            );
            let owner = {
                let pool = &g.members_by_city[c];
                let h = hash3(seed, D_STORE + 200, i);
                if pool.is_empty() {
                    h % z.members
                } else {
                    u64::from(pool[(h % pool.len() as u64) as usize])
                }
            };
            let ip = g.city_ip(c, hash3(seed, D_STORE + 300, i));
            g.stores_by_city[c].push(i as u32);
            g.stores.push(Store {
                id: format!("st-{}-{:04}", CITIES[c].code, i + 1),
                city: c,
                geo,
                owner,
                ip,
            });
        }
        for i in 0..z.dealers {
            let c = g.city_of(D_DEALER, i);
            g.dealers_by_city[c].push(i as u32);
            g.dealers.push(Dealer {
                id: format!("dl-{:04}", i + 1),
                city: c,
                outstanding: 0,
            });
        }
        for d in 0..z.dealers as usize {
            for _ in 0..z.batches_per_dealer {
                let b = g.batches.len() as u64;
                let sku = g.sku_z.sample(&mut g.rng);
                g.batches.push(Batch {
                    prefix: encode(mix_bits(b, 25, seed ^ 0xba7c), 5, B32, 5),
                    sku,
                    dealer: d,
                    next_serial: 0,
                });
            }
        }
        for c in 0..z.campaigns {
            g.launches
                .push(g.t0 + g.dur * c as i64 / z.campaigns as i64);
        }
        // an arriving scan starts pattern p's episode with probability q_p = s_p·T/L_p, where
        // T = 1/(s_0 + Σ s_p/L_p) is the expected scans per arrival: then pattern p's share of
        // all scans comes out as s_p
        let shares = sc.patterns.shares();
        let s0 = 1.0 - shares.iter().map(|(_, s)| s).sum::<f64>();
        let t = 1.0
            / (s0
                + shares
                    .iter()
                    .zip(EPISODE_SCANS)
                    .map(|((_, s), l)| s / l)
                    .sum::<f64>());
        for (i, ((_, s), l)) in shares.iter().zip(EPISODE_SCANS).enumerate() {
            if *s > 0.0 {
                g.episode_p.push((i, s * t / l));
            }
        }
        let used = g.episode_p.len() as i64;
        for (k, &(p, _)) in g.episode_p.iter().enumerate() {
            g.forced
                .push((g.t0 + g.dur * (k as i64 + 1) / (2 * used + 2), p));
        }
        g.forced.reverse();
        let w = sc.mix.weights();
        let total: f64 = w.iter().sum();
        let n = sc.events as f64;
        // units sold: consumer lines × qty, dealer lines × qty; stock is sized from it
        g.expected_units = n * (w[2] / total) * 2.5 * 1.5 + n * (w[5] / total) * 3.0 * 27.5;
        g
    }

    fn city_of(&self, domain: u64, i: u64) -> usize {
        let u = (hash3(self.seed, domain, i) >> 11) as f64 / (1u64 << 53) as f64;
        let total: f64 = self.city_w.iter().sum();
        let mut x = u * total;
        for (c, w) in self.city_w.iter().enumerate() {
            if x < *w {
                return c;
            }
            x -= w;
        }
        self.cities - 1
    }

    /// A point within about `km` of a centre, from a hash.
    fn near(&self, lat: f64, lon: f64, km: f64, h: u64) -> (f64, f64) {
        let a = ((h & 0xffff) as f64 / 65_535.0 - 0.5) * 2.0;
        let b = (((h >> 16) & 0xffff) as f64 / 65_535.0 - 0.5) * 2.0;
        let deg = km / 111.0;
        (lat + a * deg, lon + b * deg / lat.to_radians().cos())
    }

    /// An address in the city's pool: 32 /16s (8,128 /24s), so a /24 holds a handful of
    /// households as in real broadband pools; a single /16 put a hundred members in every
    /// /24 and made ordinary newcomers look like accounts rotated behind one NAT.
    fn city_ip(&self, c: usize, h: u64) -> String {
        let (a, b) = CITIES[c].ip;
        let b = b ^ (h % 32) as u8;
        format!("{a}.{b}.{}.{}", 1 + (h >> 8) % 254, 1 + (h >> 16) % 254)
    }

    fn uuid(&self, n: u64) -> String {
        let hi = (hash3(self.seed, D_UUID, n) & !0xf000) | 0x4000;
        // the low half is a bijection of n, so ids are unique by construction
        let lo = mix_bits(n, 62, self.seed) | (0b10 << 62);
        let h = format!("{hi:016x}{lo:016x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn member(&self, idx: u64) -> Member {
        if let Some(t) = &self.touched {
            if let Some(x) = t.borrow_mut().get_mut(idx as usize) {
                *x = true;
            }
        }
        let h = hash3(self.seed, D_KINDS, idx);
        let fresh = idx >= self.sc.sizes.members;
        let pct = |shift: u32| (h >> shift) % 100;
        let mut kinds = 0u8;
        if fresh {
            // fraud accounts: a WeChat account, sometimes a (virtual) phone number
            kinds |= K_OPENID;
            if pct(0) < 50 {
                kinds |= K_PHONE;
            }
        } else {
            for (bit, shift, p) in [
                (K_PHONE, 0, 80),
                (K_OPENID, 8, 90),
                (K_TMALL, 16, 35),
                (K_JD, 24, 25),
                (K_DOUYIN, 32, 30),
                (K_CARD, 40, 30),
            ] {
                if pct(shift) < p {
                    kinds |= bit;
                }
            }
            if kinds & (K_PHONE | K_OPENID) == 0 {
                kinds |= K_OPENID;
            }
        }
        let city = self.city_of(D_CITY, idx);
        let hg = hash3(self.seed, D_GEO, idx);
        Member {
            idx,
            city,
            kinds,
            devices: if pct(48) < 30 { 2 } else { 1 },
            home: self.near(CITIES[city].lat, CITIES[city].lon, 12.0, hg),
            ip: self.city_ip(city, hash3(self.seed, D_IP, idx)),
        }
    }

    /// One earlier interaction for the scenario's share of the members the first pass saw:
    /// a click in the mall or WeCom (with the phone, for members without WeChat), with the
    /// identity the member scans with and mostly its device, at a time spread over
    /// `history.days` before the start and ending an hour before it; oldest first. Drawn
    /// from hashes of the member, so the live stream's draws are untouched.
    fn history(&self) -> Vec<Pending> {
        let Some(t) = &self.touched else {
            return Vec::new();
        };
        let seen: Vec<u64> = t
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, x)| **x)
            .map(|(i, _)| i as u64)
            .collect();
        let h = &self.sc.history;
        let span = (h.days as i64 * 24 * HOUR - HOUR).max(1) as u64;
        let mut out = Vec::new();
        for idx in seen {
            let u = (hash3(self.seed, D_HISTORY, idx) >> 11) as f64 / (1u64 << 53) as f64;
            if u >= h.share {
                continue; // a new customer: first seen during the scenario
            }
            let m = self.member(idx);
            let x = hash3(self.seed, D_HISTORY + 1, idx);
            let (channel, kind) = if m.kinds & K_OPENID != 0 {
                (if x >> 40 & 1 == 0 { "mall" } else { "wecom" }, K_OPENID)
            } else {
                ("mall", K_PHONE)
            };
            let mut b = Body::default()
                .s("channel", channel)
                .ids("member", &self.ids_of(&m, kind))
                .s("target", &format!("ct-{:04}", 1 + (x >> 20) % 200));
            if (x >> 48) % 10 < 7 {
                b = b.s("device", &self.device(m.idx * 2 + (x >> 56) % m.devices));
            }
            out.push(Pending {
                at: self.t0 - HOUR - (x % span) as i64,
                seq: HISTORY_SEQ,
                ty: "click",
                body: b.0,
                label: None,
            });
        }
        out.sort_by_key(|p| p.at);
        out
    }

    fn identity(&self, kind: u8, idx: u64) -> (&'static str, String) {
        let s = self.seed;
        match kind {
            K_PHONE => {
                // an affine map with a multiplier coprime to 10^9 is a bijection: no two
                // members share a phone by accident
                let x =
                    (idx.wrapping_mul(7_919_393).wrapping_add(s % 1_000_000_000)) % 1_000_000_000;
                let p = [3, 5, 7, 8, 9][(idx % 5) as usize];
                ("phone", format!("1{p}{x:09}"))
            }
            K_OPENID => {
                let head = encode(mix_bits(idx, 60, s ^ 0x0bad), 10, B64, 6);
                let tail = encode(hash3(s, D_OPENID, idx), 10, B64, 6)
                    + &encode(hash3(s, D_OPENID + 1, idx), 7, B64, 6);
                ("openid", format!("o{head}{tail}"))
            }
            K_TMALL => (
                "tmall",
                format!(
                    "tb_{}",
                    encode(mix_bits(idx, 50, s ^ 0x7a), 10, B32, 5).to_lowercase()
                ),
            ),
            K_JD => (
                "jd",
                format!(
                    "jd_{}",
                    encode(mix_bits(idx, 50, s ^ 0x1d), 10, B32, 5).to_lowercase()
                ),
            ),
            K_DOUYIN => (
                "douyin",
                format!(
                    "dy{:012}",
                    (idx.wrapping_mul(3_141_592_653).wrapping_add(s)) % 1_000_000_000_000
                ),
            ),
            _ => (
                "card",
                format!(
                    "6{:015}",
                    (idx.wrapping_mul(2_718_281_829).wrapping_add(s)) % 1_000_000_000_000_000
                ),
            ),
        }
    }

    /// The identities a member shows on a channel where `kind` is native.
    fn ids_of(&self, m: &Member, kind: u8) -> Vec<(&'static str, String)> {
        vec![self.identity(kind, m.idx)]
    }

    /// What a member shows on the scan page: WeChat, sometimes with the bound phone.
    fn scan_ids(&mut self, m: &Member) -> Vec<(&'static str, String)> {
        let mut ids = Vec::with_capacity(2);
        if m.kinds & K_PHONE != 0 && (m.kinds & K_OPENID == 0 || self.rng.chance(0.2)) {
            ids.push(self.identity(K_PHONE, m.idx));
        }
        if m.kinds & K_OPENID != 0 {
            ids.push(self.identity(K_OPENID, m.idx));
        }
        ids
    }

    fn device(&self, x: u64) -> String {
        format!("d-{:012x}", mix_bits(x, 48, self.seed ^ 0xde71ce))
    }

    fn home_device(&mut self, m: &Member) -> String {
        let j = if m.devices > 1 { self.rng.below(2) } else { 0 };
        self.device(m.idx * 2 + j)
    }

    fn fresh_device(&mut self) -> String {
        self.fresh_devices += 1;
        self.device((1 << 40) + self.fresh_devices)
    }

    fn fresh_member(&mut self) -> Member {
        let idx = self.sc.sizes.members + self.fresh;
        self.fresh += 1;
        self.member(idx)
    }

    fn zipf_member(&mut self) -> Member {
        let i = self.member_z.sample(&mut self.rng) as u64;
        self.member(i)
    }

    fn any_member(&mut self) -> Member {
        let i = self.rng.below(self.sc.sizes.members);
        self.member(i)
    }

    fn random_ip(&mut self, c: usize) -> String {
        let h = self.rng.next_u64();
        self.city_ip(c, h)
    }

    fn random_city(&mut self) -> usize {
        let w = self.city_w.clone();
        self.rng.weighted(&w)
    }

    fn fresh_code(&mut self, b: usize) -> String {
        let batch = &mut self.batches[b];
        let serial = batch.next_serial;
        batch.next_serial += 1;
        let tail = encode(mix_bits(serial, 40, self.seed ^ (b as u64) << 8), 8, B32, 5);
        format!("{}{tail}", batch.prefix)
    }

    /// A batch shipped to a dealer of city `c` (any batch when the city has no dealer).
    fn local_batch(&mut self, c: usize) -> usize {
        let per = self.sc.sizes.batches_per_dealer as usize;
        let ds = &self.dealers_by_city[c];
        let d = if ds.is_empty() {
            self.rng.below(self.dealers.len() as u64) as usize
        } else {
            ds[self.rng.below(ds.len() as u64) as usize] as usize
        };
        d * per + self.rng.below(per as u64) as usize
    }

    fn any_batch(&mut self) -> usize {
        self.rng.below(self.batches.len() as u64) as usize
    }

    /// The campaign a scan at `at` claims: mostly the launching one during its burst.
    fn campaign_at(&mut self, at: i64) -> usize {
        let live = self
            .launches
            .iter()
            .take_while(|l| **l <= at)
            .count()
            .max(1);
        let newest = live - 1;
        if at < self.launches[newest] + self.burst_ms && self.rng.chance(self.sc.burst.focus) {
            return newest;
        }
        self.rng.below(live as u64) as usize
    }

    /// An episode's time span, shortened in short scenarios so episodes fit inside them.
    fn span(&self, ms: i64) -> u64 {
        ms.min(self.dur / 2).max(MIN) as u64
    }

    /// The base rate (events per ms) that spreads the events over the duration, bursts
    /// included.
    fn base_rate_per_ms(&self) -> f64 {
        let burst_time: f64 = self
            .launches
            .iter()
            .map(|l| (self.burst_ms.min(self.t0 + self.dur - l)).max(0) as f64)
            .sum();
        let weighted = self.dur as f64 + (self.sc.burst.multiplier - 1.0) * burst_time;
        let arrivals = self.sc.events as f64 / self.events_per_arrival();
        (arrivals / weighted.max(1.0)).max(1e-9)
    }

    /// Expected events one arrival produces (orders have a life cycle, episodes many scans).
    fn events_per_arrival(&self) -> f64 {
        let w = self.sc.mix.weights();
        let total: f64 = w.iter().sum();
        let normal = 1.0 - self.episode_p.iter().map(|(_, q)| q).sum::<f64>();
        let scan = normal
            + self
                .episode_p
                .iter()
                .map(|(i, q)| q * EPISODE_SCANS[*i])
                .sum::<f64>();
        let per = [scan, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0];
        w.iter().zip(per).map(|(w, p)| w * p).sum::<f64>() / total
    }

    /// Rate multiplier at `at` and when it next changes.
    fn rate_at(&self, at: i64) -> (f64, Option<i64>) {
        let mut mult = 1.0;
        let mut next: Option<i64> = None;
        for &l in &self.launches {
            let end = l + self.burst_ms;
            if at >= l && at < end {
                mult += self.sc.burst.multiplier - 1.0;
            }
            for edge in [l, end] {
                if edge > at && next.is_none_or(|n| edge < n) {
                    next = Some(edge);
                }
            }
        }
        (mult, next)
    }

    fn push(&mut self, at: i64, ty: &'static str, body: Body, label: Option<Label>) {
        self.seq += 1;
        self.heap.push(Pending {
            at,
            seq: self.seq,
            ty,
            body: body.0,
            label,
        });
    }

    fn push_scan(&mut self, at: i64, a: ScanArgs) {
        let mut b = Body::default()
            .s("channel", "campaign")
            .s("code", &a.code)
            .s("sku", &self.skus[a.sku].id)
            .s("campaign", &format!("cmp-{:03}", a.campaign + 1))
            .ids("member", &a.ids)
            .s("device", &a.device)
            .s("ip", &a.ip);
        if let Some(g) = a.geo {
            b = b.geo("geo", g);
        }
        if let Some(s) = a.store {
            b = b.s("store", &self.stores[s].id);
        }
        self.push(at, "scan", b, Some(a.label));
    }

    /// Reference data: dealers, code batches, initial stock at warehouses and stores.
    fn preamble(&mut self) -> Vec<Pending> {
        let mut out: Vec<(&'static str, Body)> = Vec::new();
        for d in 0..self.dealers.len() {
            let c = self.dealers[d].city;
            let h = hash3(self.seed, D_DEALER + 100, d as u64);
            let radius = 80 + h % 220;
            let limit = (2_000 + (h >> 16) % 18_000) as i64 * 1_000;
            out.push((
                "dealer",
                Body::default()
                    .s("dealer", &self.dealers[d].id)
                    .i("credit_limit", limit)
                    .geo_region(CITIES[c].lat, CITIES[c].lon, radius as f64),
            ));
        }
        for b in 0..self.batches.len() {
            let bt = &self.batches[b];
            out.push((
                "code_batch",
                Body::default()
                    .s("batch", &format!("B-{:05}", b + 1))
                    .s("prefix", &bt.prefix)
                    .s("sku", &self.skus[bt.sku].id)
                    .s("dealer", &self.dealers[bt.dealer].id),
            ));
        }
        let zipf_total: f64 = (0..self.skus.len())
            .map(|k| 1.0 / ((k + 1) as f64).powf(self.sc.skew.skus))
            .sum();
        let city_total: f64 = self.city_w.iter().sum();
        for (c, city) in CITIES[..self.cities].iter().enumerate() {
            for k in 0..self.skus.len() {
                let p = 1.0 / ((k + 1) as f64).powf(self.sc.skew.skus) / zipf_total;
                let qty = (self.expected_units * p * self.city_w[c] / city_total * 0.8) as i64 + 50;
                out.push((
                    "stock",
                    Body::default()
                        .s("sku", &self.skus[k].id)
                        .s("location", &format!("wh-{}", city.code))
                        .s("op", "receive")
                        .i("qty", qty)
                        .i("safety", 10),
                ));
            }
        }
        let stocked = (self.sc.sizes.store_skus as usize).min(self.skus.len());
        for s in 0..self.stores.len() {
            for k in 0..stocked {
                let p = 1.0 / ((k + 1) as f64).powf(self.sc.skew.skus) / zipf_total;
                let qty = (self.expected_units * 0.25 * p / self.stores.len() as f64) as i64 + 10;
                out.push((
                    "stock",
                    Body::default()
                        .s("sku", &self.skus[k].id)
                        .s("location", &self.stores[s].id)
                        .s("op", "receive")
                        .i("qty", qty)
                        .i("safety", 2),
                ));
            }
        }
        let n = out.len().max(1) as i64;
        let step = (10 * MIN / n).clamp(1, 50);
        let start = self.t0 - n * step - MIN;
        out.into_iter()
            .enumerate()
            .map(|(i, (ty, b))| Pending {
                at: start + i as i64 * step,
                seq: 0,
                ty,
                body: b.0,
                label: None,
            })
            .collect()
    }

    /// One arrival: pick an activity by the mix and schedule its events.
    fn arrival(&mut self, at: i64) {
        let w = self.sc.mix.weights();
        match self.rng.weighted(&w) {
            0 => self.scan_arrival(at),
            1 => self.click(at),
            2 => self.consumer_order(at),
            3 => self.member_visit(at),
            4 => self.rep_visit(at),
            5 => self.dealer_order(at),
            6 => self.payment(at),
            7 => self.restock(at),
            _ => self.identify(at),
        }
    }

    fn scan_arrival(&mut self, at: i64) {
        let mut u = self.rng.f64();
        let mut chosen = None;
        for &(p, q) in &self.episode_p {
            if u < q {
                chosen = Some(p);
                break;
            }
            u -= q;
        }
        let c = self.campaign_at(at);
        match chosen {
            None => self.normal_scan(at, c),
            Some(p) => self.episode(p, at, c),
        }
    }

    /// Starts pattern `p`'s episode (index into [`crate::scenario::Patterns::shares`]).
    fn episode(&mut self, p: usize, at: i64, c: usize) {
        match p {
            0 => self.shared_code(at, c),
            1 => self.device_farm(at, c),
            2 => self.batch_harvest(at, c),
            3 => self.nat_rotation(at, c),
            4 => self.impossible_travel(at, c),
            5 => self.new_account_burst(at, c),
            6 => self.ring(at, c),
            7 => self.forged_code(at, c),
            8 => self.family(at, c),
            9 => self.campus_nat(at, c),
            10 => self.shop_owner(at, c),
            11 => self.rescan(at, c),
            _ => {
                let m = self.zipf_member();
                let far = self.far_batch(m.city);
                self.member_scan(at, c, &m, far, true, legit("diversion"));
            }
        }
    }

    /// An ordinary scan by a Zipf-chosen member of a code from a local batch.
    fn normal_scan(&mut self, at: i64, c: usize) {
        let m = self.zipf_member();
        let b = self.local_batch(m.city);
        self.member_scan(at, c, &m, b, false, legit("normal"));
    }

    /// Schedules a member's scan of a fresh code of batch `b`; returns it for repeats.
    fn member_scan(
        &mut self,
        at: i64,
        c: usize,
        m: &Member,
        b: usize,
        geo: bool,
        label: Label,
    ) -> ScanArgs {
        let a = self.member_scan_args(m, b, c, geo, label);
        self.push_scan(at, a.clone());
        a
    }

    fn member_scan_args(
        &mut self,
        m: &Member,
        b: usize,
        c: usize,
        geo: bool,
        label: Label,
    ) -> ScanArgs {
        let ids = self.scan_ids(m);
        let device = self.home_device(m);
        let ip = if self.rng.chance(0.7) {
            m.ip.clone()
        } else {
            self.random_ip(m.city)
        };
        let mut store = None;
        let mut g = None;
        if self.rng.chance(0.15) && !self.stores_by_city[m.city].is_empty() {
            let ss = &self.stores_by_city[m.city];
            let s = ss[self.rng.below(ss.len() as u64) as usize] as usize;
            store = Some(s);
            g = Some(self.stores[s].geo);
        } else if geo || self.rng.chance(0.6) {
            let h = self.rng.next_u64();
            g = Some(self.near(m.home.0, m.home.1, 3.0, h));
        }
        let code = self.fresh_code(b);
        ScanArgs {
            ids,
            device,
            ip,
            geo: g,
            store,
            code,
            sku: self.batches[b].sku,
            campaign: c,
            label,
        }
    }

    /// A batch shipped to a dealer in another city than `c`.
    fn far_batch(&mut self, c: usize) -> usize {
        for _ in 0..16 {
            let b = self.any_batch();
            if self.dealers[self.batches[b].dealer].city != c {
                return b;
            }
        }
        self.any_batch()
    }

    fn rescan(&mut self, at: i64, c: usize) {
        let m = self.zipf_member();
        let b = self.local_batch(m.city);
        let a = self.member_scan(at, c, &m, b, false, legit("rescan"));
        let later = at + self.rng.range(2_000, 120_000) as i64;
        self.push_scan(later, a);
    }

    fn shared_code(&mut self, at: i64, c: usize) {
        let owner = self.zipf_member();
        let b = self.local_batch(owner.city);
        let a = self.member_scan(at, c, &owner, b, false, legit("shared_code"));
        let n = self.rng.range(5, 30);
        for _ in 0..n {
            let m = self.any_member();
            let when = at + self.rng.range(60_000, self.span(3 * HOUR)) as i64;
            let ids = self.scan_ids(&m);
            let device = self.home_device(&m);
            let h = self.rng.next_u64();
            let geo = self
                .rng
                .chance(0.5)
                .then(|| self.near(m.home.0, m.home.1, 3.0, h));
            self.push_scan(
                when,
                ScanArgs {
                    ids,
                    device,
                    ip: m.ip.clone(),
                    geo,
                    store: None,
                    code: a.code.clone(),
                    sku: a.sku,
                    campaign: c,
                    label: fraud("shared_code"),
                },
            );
        }
    }

    fn device_farm(&mut self, at: i64, c: usize) {
        let device = self.fresh_device();
        let city = self.random_city();
        let ips: Vec<String> = (0..3).map(|_| self.random_ip(city)).collect();
        let fake_geo = self
            .rng
            .chance(0.3)
            .then(|| (CITIES[city].lat, CITIES[city].lon));
        let n = self.rng.range(10, 40);
        let mut t = at;
        for _ in 0..n {
            let m = self.fresh_member();
            let ids = self.scan_ids(&m);
            for _ in 0..self.rng.range(1, 3) {
                let b = self.any_batch();
                let code = self.fresh_code(b);
                let ip = ips[self.rng.below(3) as usize].clone();
                self.push_scan(
                    t,
                    ScanArgs {
                        ids: ids.clone(),
                        device: device.clone(),
                        ip,
                        geo: fake_geo,
                        store: None,
                        code,
                        sku: self.batches[b].sku,
                        campaign: c,
                        label: fraud("device_farm"),
                    },
                );
                t += self.rng.range(5_000, 60_000) as i64;
            }
            t += self.rng.range(30_000, 150_000) as i64;
        }
    }

    fn batch_harvest(&mut self, at: i64, c: usize) {
        let m = if self.rng.chance(0.5) {
            self.fresh_member()
        } else {
            self.any_member()
        };
        let ids = self.scan_ids(&m);
        let device = if m.idx >= self.sc.sizes.members {
            self.fresh_device()
        } else {
            self.home_device(&m)
        };
        let ip = self.random_ip(m.city);
        let b = self.any_batch();
        let geo = self.rng.chance(0.5).then_some(m.home);
        let mut t = at;
        for _ in 0..self.rng.range(20, 80) {
            let code = self.fresh_code(b);
            self.push_scan(
                t,
                ScanArgs {
                    ids: ids.clone(),
                    device: device.clone(),
                    ip: ip.clone(),
                    geo,
                    store: None,
                    code,
                    sku: self.batches[b].sku,
                    campaign: c,
                    label: fraud("batch_harvest"),
                },
            );
            t += self.rng.range(2_000, 10_000) as i64;
        }
    }

    fn nat_rotation(&mut self, at: i64, c: usize) {
        let city = self.random_city();
        let (a, b) = CITIES[city].ip;
        let third = self.rng.range(1, 254);
        for _ in 0..self.rng.range(10, 30) {
            let m = self.fresh_member();
            let ids = self.scan_ids(&m);
            let device = self.fresh_device();
            let mut t = at + self.rng.below(self.span(HOUR)) as i64;
            for _ in 0..self.rng.range(2, 5) {
                let ip = format!("{a}.{b}.{third}.{}", self.rng.range(2, 254));
                let bt = self.local_batch(city);
                let code = self.fresh_code(bt);
                self.push_scan(
                    t,
                    ScanArgs {
                        ids: ids.clone(),
                        device: device.clone(),
                        ip,
                        geo: None,
                        store: None,
                        code,
                        sku: self.batches[bt].sku,
                        campaign: c,
                        label: fraud("nat_rotation"),
                    },
                );
                t += self.rng.range(20_000, 300_000) as i64;
            }
        }
    }

    fn impossible_travel(&mut self, at: i64, c: usize) {
        let m = self.any_member();
        let b = self.local_batch(m.city);
        let first = self.member_scan_args(&m, b, c, true, legit("impossible_travel"));
        let ids = first.ids.clone();
        let mut here = first.geo.unwrap_or(m.home);
        self.push_scan(at, first);
        let far: Vec<usize> = (0..self.cities)
            .filter(|&k| dist_km((CITIES[k].lat, CITIES[k].lon), m.home) > 600.0)
            .collect();
        let mut t = at;
        for hop in 0..self.rng.range(1, 3) {
            t += self.rng.range(10 * MIN as u64, 40 * MIN as u64) as i64;
            let (geo, ip, city) = if hop % 2 == 0 {
                let (pt, city) = if far.is_empty() {
                    (FAR_AWAY, m.city)
                } else {
                    let k = far[self.rng.below(far.len() as u64) as usize];
                    ((CITIES[k].lat, CITIES[k].lon), k)
                };
                let h = self.rng.next_u64();
                (self.near(pt.0, pt.1, 5.0, h), self.random_ip(city), city)
            } else {
                (m.home, m.ip.clone(), m.city)
            };
            debug_assert!(dist_km(here, geo) > 300.0);
            here = geo;
            let device = if city == m.city {
                self.home_device(&m)
            } else {
                self.fresh_device()
            };
            let bt = self.local_batch(city);
            let code = self.fresh_code(bt);
            self.push_scan(
                t,
                ScanArgs {
                    ids: ids.clone(),
                    device,
                    ip,
                    geo: Some(geo),
                    store: None,
                    code,
                    sku: self.batches[bt].sku,
                    campaign: c,
                    label: fraud("impossible_travel"),
                },
            );
        }
    }

    fn new_account_burst(&mut self, at: i64, c: usize) {
        let m = self.fresh_member();
        let ids = self.scan_ids(&m);
        let device = self.fresh_device();
        let ip = self.random_ip(m.city);
        // the account's first sign of life: a click on the campaign's ad
        let click = Body::default()
            .s("channel", "mall")
            .ids("member", &ids)
            .s("target", &format!("ad-{:04}", self.rng.range(1, 200)))
            .s("campaign", &format!("cmp-{:03}", c + 1))
            .s("device", &device);
        self.push(at, "click", click, None);
        let mut t = at + self.rng.range(MIN as u64, 5 * MIN as u64) as i64;
        let geo = self.rng.chance(0.5).then_some(m.home);
        for _ in 0..self.rng.range(8, 20) {
            let b = self.local_batch(m.city);
            let code = self.fresh_code(b);
            self.push_scan(
                t,
                ScanArgs {
                    ids: ids.clone(),
                    device: device.clone(),
                    ip: ip.clone(),
                    geo,
                    store: None,
                    code,
                    sku: self.batches[b].sku,
                    campaign: c,
                    label: fraud("new_account_burst"),
                },
            );
            t += self.rng.range(15_000, 60_000) as i64;
        }
    }

    fn ring(&mut self, at: i64, c: usize) {
        let devices: Vec<String> = (0..3).map(|_| self.fresh_device()).collect();
        let ips: Vec<String> = (0..3)
            .map(|_| {
                let k = self.random_city();
                self.random_ip(k)
            })
            .collect();
        for j in 0..self.rng.range(6, 12) as usize {
            let m = self.fresh_member();
            let ids = self.scan_ids(&m);
            for k in 0..self.rng.range(2, 4) as usize {
                // account j uses devices j and j+1 (and IPs likewise), chaining the ring
                let device = devices[(j + k % 2) % 3].clone();
                let ip = ips[(j + 1 + k % 2) % 3].clone();
                let b = self.any_batch();
                let code = self.fresh_code(b);
                let t = at + self.rng.below(self.span(4 * HOUR)) as i64;
                self.push_scan(
                    t,
                    ScanArgs {
                        ids: ids.clone(),
                        device,
                        ip,
                        geo: None,
                        store: None,
                        code,
                        sku: self.batches[b].sku,
                        campaign: c,
                        label: fraud("ring"),
                    },
                );
            }
        }
    }

    fn forged_code(&mut self, at: i64, c: usize) {
        let m = if self.rng.chance(0.5) {
            self.fresh_member()
        } else {
            self.any_member()
        };
        let ids = self.scan_ids(&m);
        let device = self.fresh_device();
        let ip = self.random_ip(m.city);
        let mut t = at;
        for _ in 0..self.rng.range(3, 10) {
            // a prefix index past the registered batches: the bijection makes it unregistered
            let fake = self.batches.len() as u64 + self.rng.below(1 << 20);
            let prefix = encode(mix_bits(fake, 25, self.seed ^ 0xba7c), 5, B32, 5);
            let code = format!("{prefix}{}", encode(self.rng.next_u64(), 8, B32, 5));
            let sku = self.sku_z.sample(&mut self.rng);
            self.push_scan(
                t,
                ScanArgs {
                    ids: ids.clone(),
                    device: device.clone(),
                    ip: ip.clone(),
                    geo: None,
                    store: None,
                    code,
                    sku,
                    campaign: c,
                    label: fraud("forged_code"),
                },
            );
            t += self.rng.range(5_000, 30_000) as i64;
        }
    }

    fn family(&mut self, at: i64, c: usize) {
        let head = self.zipf_member();
        let device = self.home_device(&head);
        let pool_len = self.members_by_city[head.city].len() as u64;
        // a household is fixed: a head drawn again (Zipf draws popular members often) brings
        // the same people, not a new set of relatives onto the same phone each time
        let hf = hash3(self.seed, D_FAMILY, head.idx);
        let n = 2 + hf % 3;
        for k in 0..n {
            let m = if k == 0 || pool_len == 0 {
                self.member(head.idx)
            } else {
                let i = hash3(self.seed, D_FAMILY + k, head.idx) % pool_len;
                self.member(u64::from(self.members_by_city[head.city][i as usize]))
            };
            for _ in 0..self.rng.range(1, 2) {
                let b = self.local_batch(head.city);
                let code = self.fresh_code(b);
                let ids = self.scan_ids(&m);
                let t = at + self.rng.below(self.span(8 * HOUR)) as i64;
                self.push_scan(
                    t,
                    ScanArgs {
                        ids,
                        device: device.clone(),
                        ip: head.ip.clone(),
                        geo: Some(head.home),
                        store: None,
                        code,
                        sku: self.batches[b].sku,
                        campaign: c,
                        label: legit("family"),
                    },
                );
            }
        }
    }

    fn campus_nat(&mut self, at: i64, c: usize) {
        let city = self.random_city();
        let ip = self.random_ip(city);
        let h = self.rng.next_u64();
        let campus = self.near(CITIES[city].lat, CITIES[city].lon, 10.0, h);
        let pool_len = self.members_by_city[city].len() as u64;
        for _ in 0..self.rng.range(20, 60) {
            let m = if pool_len == 0 {
                self.any_member()
            } else {
                let i = self.rng.below(pool_len) as usize;
                self.member(u64::from(self.members_by_city[city][i]))
            };
            let ids = self.scan_ids(&m);
            let device = self.home_device(&m);
            for _ in 0..self.rng.range(1, 2) {
                let b = self.local_batch(city);
                let code = self.fresh_code(b);
                let t = at + self.rng.below(self.span(8 * HOUR)) as i64;
                let hg = self.rng.next_u64();
                let geo = self
                    .rng
                    .chance(0.5)
                    .then(|| self.near(campus.0, campus.1, 0.5, hg));
                self.push_scan(
                    t,
                    ScanArgs {
                        ids: ids.clone(),
                        device: device.clone(),
                        ip: ip.clone(),
                        geo,
                        store: None,
                        code,
                        sku: self.batches[b].sku,
                        campaign: c,
                        label: legit("campus_nat"),
                    },
                );
            }
        }
    }

    fn shop_owner(&mut self, at: i64, c: usize) {
        let s = self.rng.below(self.stores.len() as u64) as usize;
        let owner = self.member(self.stores[s].owner);
        let visit_ids = self.visit_ids(&owner);
        let visit = Body::default()
            .s("channel", "store")
            .s("store", &self.stores[s].id)
            .s("visitor", "member")
            .ids("member", &visit_ids)
            .i("duration_s", self.rng.range(1_800, 7_200) as i64)
            .geo("geo", self.stores[s].geo);
        self.push(at, "visit", visit, None);
        let ids = self.scan_ids(&owner);
        let device = self.home_device(&owner);
        let city = self.stores[s].city;
        let batches = [self.local_batch(city), self.local_batch(city)];
        let mut t = at + self.rng.range(60_000, 300_000) as i64;
        for _ in 0..self.rng.range(5, 15) {
            let b = batches[self.rng.below(2) as usize];
            let code = self.fresh_code(b);
            self.push_scan(
                t,
                ScanArgs {
                    ids: ids.clone(),
                    device: device.clone(),
                    ip: self.stores[s].ip.clone(),
                    geo: Some(self.stores[s].geo),
                    store: Some(s),
                    code,
                    sku: self.batches[b].sku,
                    campaign: c,
                    label: legit("shop_owner"),
                },
            );
            t += self.rng.range(60_000, 300_000) as i64;
        }
    }

    fn visit_ids(&self, m: &Member) -> Vec<(&'static str, String)> {
        let kind = if m.kinds & K_CARD != 0 {
            K_CARD
        } else if m.kinds & K_PHONE != 0 {
            K_PHONE
        } else {
            K_OPENID
        };
        self.ids_of(m, kind)
    }

    fn click(&mut self, at: i64) {
        let m = self.zipf_member();
        let options: Vec<(&str, u8)> = [
            ("mall", K_OPENID),
            ("wecom", K_OPENID),
            ("tmall", K_TMALL),
            ("jd", K_JD),
            ("douyin", K_DOUYIN),
        ]
        .into_iter()
        .filter(|(_, k)| m.kinds & k != 0)
        .collect();
        let (channel, kind) = if options.is_empty() {
            ("mall", K_PHONE)
        } else {
            options[self.rng.below(options.len() as u64) as usize]
        };
        let ad = self.ad_z.sample(&mut self.rng) + 1;
        let target = if self.rng.chance(0.6) {
            format!("ad-{ad:04}")
        } else {
            format!("ct-{ad:04}")
        };
        let mut b = Body::default()
            .s("channel", channel)
            .ids("member", &self.ids_of(&m, kind))
            .s("target", &target);
        if self.rng.chance(0.4) {
            let c = self.campaign_at(at);
            b = b.s("campaign", &format!("cmp-{:03}", c + 1));
        }
        if self.rng.chance(0.4) {
            let k = self.sku_z.sample(&mut self.rng);
            b = b.s("sku", &self.skus[k].id);
        }
        if self.rng.chance(0.7) {
            b = b.s("device", &self.home_device(&m));
        }
        self.push(at, "click", b, None);
    }

    fn order_lines(
        &mut self,
        n: u64,
        limit: usize,
        qty: (u64, u64),
        price_pct: i64,
    ) -> Vec<(usize, i64, i64)> {
        (0..n)
            .map(|_| {
                let k = self.sku_z.sample(&mut self.rng) % limit.max(1);
                let q = if qty.0 == 1 && self.rng.chance(0.6) {
                    1
                } else {
                    self.rng.range(qty.0, qty.1) as i64
                };
                (k, q, self.skus[k].price * price_pct / 100)
            })
            .collect()
    }

    fn consumer_order(&mut self, at: i64) {
        let m = self.zipf_member();
        let mut options: Vec<&'static str> = Vec::with_capacity(5);
        if m.kinds & K_OPENID != 0 {
            options.push("mall");
        }
        if m.kinds & K_TMALL != 0 {
            options.push("tmall");
        }
        if m.kinds & K_JD != 0 {
            options.push("jd");
        }
        if m.kinds & K_DOUYIN != 0 {
            options.push("douyin");
        }
        if m.kinds & (K_CARD | K_PHONE) != 0 && !self.stores_by_city[m.city].is_empty() {
            options.push("store");
            options.push("store");
        }
        let channel = if options.is_empty() {
            "mall"
        } else {
            options[self.rng.below(options.len() as u64) as usize]
        };
        let ids: Vec<(&'static str, String)> = match channel {
            "tmall" => self.ids_of(&m, K_TMALL),
            "jd" => self.ids_of(&m, K_JD),
            "douyin" => self.ids_of(&m, K_DOUYIN),
            "store" => {
                // a POS that asks for the phone as well as the card links the two (One-ID)
                let mut v = Vec::new();
                if m.kinds & K_PHONE != 0 && (m.kinds & K_CARD == 0 || self.rng.chance(0.4)) {
                    v.push(self.identity(K_PHONE, m.idx));
                }
                if m.kinds & K_CARD != 0 {
                    v.push(self.identity(K_CARD, m.idx));
                }
                v
            }
            _ => {
                let mut v = Vec::new();
                if m.kinds & K_PHONE != 0 && (m.kinds & K_OPENID == 0 || self.rng.chance(0.3)) {
                    v.push(self.identity(K_PHONE, m.idx));
                }
                if m.kinds & K_OPENID != 0 {
                    v.push(self.identity(K_OPENID, m.idx));
                }
                v
            }
        };
        self.orders += 1;
        let prefix = match channel {
            "mall" => "MO",
            "tmall" => "TM",
            "jd" => "JD",
            "douyin" => "DY",
            _ => "PS",
        };
        let order = format!("{prefix}{:010}", self.orders);
        let n = self.rng.range(1, 4);
        let (lines, location, store) = if channel == "store" {
            let ss = &self.stores_by_city[m.city];
            let s = ss[self.rng.below(ss.len() as u64) as usize] as usize;
            let limit = self.sc.sizes.store_skus as usize;
            (
                self.order_lines(n, limit, (1, 3), 100),
                self.stores[s].id.clone(),
                Some(s),
            )
        } else {
            let limit = self.skus.len();
            (
                self.order_lines(n, limit, (1, 3), 100),
                format!("wh-{}", CITIES[m.city].code),
                None,
            )
        };
        let base = |status: &str| {
            Body::default()
                .s("channel", channel)
                .s("order", &order)
                .s("status", status)
                .s("kind", "consumer")
                .ids("member", &ids)
        };
        let mut placed = base("placed")
            .lines("lines", &lines, &self.skus)
            .s("location", &location);
        if let Some(s) = store {
            placed = placed.s("store", &self.stores[s].id);
        }
        if self.rng.chance(0.05) {
            placed = placed.i("points_redeemed", self.rng.range(10, 200) as i64 * 10);
        }
        self.push(at, "order", placed, None);
        if channel == "store" {
            // at the till: paid and handed over within seconds
            let paid = at + self.rng.range(1_000, 5_000) as i64;
            self.push(paid, "order", base("paid"), None);
            let done = paid + self.rng.range(1_000, 10_000) as i64;
            self.push(done, "order", base("fulfilled"), None);
            self.maybe_return(done, &base, &lines);
            return;
        }
        if self.rng.chance(0.08) {
            let t = at + self.rng.range(MIN as u64, 30 * MIN as u64) as i64;
            self.push(t, "order", base("cancelled"), None);
            return;
        }
        let paid = at + self.rng.range(10_000, 10 * MIN as u64) as i64;
        self.push(paid, "order", base("paid"), None);
        if self.rng.chance(0.03) {
            let t = paid + self.rng.range(MIN as u64, 30 * MIN as u64) as i64;
            self.push(t, "order", base("cancelled"), None);
            return;
        }
        let done = paid + self.rng.range(10 * MIN as u64, 3 * HOUR as u64) as i64;
        self.push(done, "order", base("fulfilled"), None);
        self.maybe_return(done, &base, &lines);
    }

    fn maybe_return(
        &mut self,
        done: i64,
        base: &dyn Fn(&str) -> Body,
        lines: &[(usize, i64, i64)],
    ) {
        let u = self.rng.f64();
        let t = done + self.rng.range(30 * MIN as u64, 6 * HOUR as u64) as i64;
        if u < 0.06 {
            // partial: one unit of one line
            let (sku, _, price) = lines[self.rng.below(lines.len() as u64) as usize];
            let b = base("returned").lines("lines", &[(sku, 1, price)], &self.skus);
            self.push(t, "order", b, None);
        } else if u < 0.07 {
            self.push(t, "order", base("returned"), None);
        }
    }

    fn dealer_order(&mut self, at: i64) {
        let d = self.dealer_z.sample(&mut self.rng);
        let city = self.dealers[d].city;
        let n = self.rng.range(1, 5);
        let limit = self.skus.len();
        let lines = self.order_lines(n, limit, (5, 50), 60);
        let total: i64 = lines.iter().map(|(_, q, p)| q * p).sum();
        self.orders += 1;
        let order = format!("DO{:010}", self.orders);
        let dealer = self.dealers[d].id.clone();
        let base = |status: &str| {
            Body::default()
                .s("channel", "dealer")
                .s("order", &order)
                .s("status", status)
                .s("kind", "dealer")
                .s("dealer", &dealer)
        };
        let placed = base("placed")
            .lines("lines", &lines, &self.skus)
            .s("location", &format!("wh-{}", CITIES[city].code));
        self.push(at, "order", placed, None);
        if self.rng.chance(0.05) {
            let t = at + self.rng.range(10 * MIN as u64, 2 * HOUR as u64) as i64;
            self.push(t, "order", base("cancelled"), None);
        } else {
            self.dealers[d].outstanding += total;
            let t = at + self.rng.range(HOUR as u64, 8 * HOUR as u64) as i64;
            self.push(t, "order", base("fulfilled"), None);
        }
    }

    fn payment(&mut self, at: i64) {
        let n = self.dealers.len();
        let start = self.rng.below(n as u64) as usize;
        let d = (0..n)
            .map(|k| (start + k) % n)
            .find(|&d| self.dealers[d].outstanding > 0)
            .unwrap_or(start);
        let owed = self.dealers[d].outstanding;
        let amount = if owed > 0 {
            (owed * self.rng.range(50, 100) as i64 / 100).max(1)
        } else {
            100_000
        };
        self.dealers[d].outstanding -= amount.min(owed.max(0));
        self.payments += 1;
        let b = Body::default()
            .s("dealer", &self.dealers[d].id)
            .i("amount", amount)
            .s("ref", &format!("PAY-{:08}", self.payments));
        self.push(at, "payment", b, None);
    }

    fn restock(&mut self, at: i64) {
        let k = self.sku_z.sample(&mut self.rng);
        let (location, sku, qty) = if self.rng.chance(0.3) && (k as u64) < self.sc.sizes.store_skus
        {
            let s = self.rng.below(self.stores.len() as u64) as usize;
            (self.stores[s].id.clone(), k, self.rng.range(10, 60))
        } else {
            let c = self.random_city();
            (
                format!("wh-{}", CITIES[c].code),
                k,
                self.rng.range(200, 2_000),
            )
        };
        let b = Body::default()
            .s("sku", &self.skus[sku].id)
            .s("location", &location)
            .s("op", "receive")
            .i("qty", qty as i64);
        self.push(at, "stock", b, None);
    }

    fn identify(&mut self, at: i64) {
        let mut m = self.zipf_member();
        for _ in 0..8 {
            if m.kinds.count_ones() >= 2 {
                break;
            }
            m = self.any_member();
        }
        let have: Vec<u8> = (0..6)
            .map(|b| 1u8 << b)
            .filter(|k| m.kinds & k != 0)
            .collect();
        let mut ids = Vec::new();
        if have.len() >= 2 {
            // a login binds the account in hand to one or two others
            let first = have[self.rng.below(have.len() as u64) as usize];
            let mut second = have[self.rng.below(have.len() as u64) as usize];
            if second == first {
                second = *have.iter().find(|k| **k != first).unwrap_or(&first);
            }
            for k in have.iter().filter(|k| **k == first || **k == second) {
                ids.push(self.identity(*k, m.idx));
            }
        } else {
            // a member with one identity gets a store card at sign-up
            ids.push(self.identity(have.first().copied().unwrap_or(K_OPENID), m.idx));
            ids.push(self.identity(K_CARD, m.idx));
        }
        self.push(at, "identify", Body::default().ids("member", &ids), None);
    }

    fn rep_visit(&mut self, at: i64) {
        let reps = self.sc.sizes.reps;
        let r = self.rng.below(reps);
        // each rep covers the stores whose index is congruent to theirs
        let n = self.stores.len() as u64;
        let per = n.div_ceil(reps).max(1);
        let s = ((r + reps * self.rng.below(per)) % n) as usize;
        let h = self.rng.next_u64();
        let geo = self.near(self.stores[s].geo.0, self.stores[s].geo.1, 0.05, h);
        let b = Body::default()
            .s("channel", "sfa")
            .s("store", &self.stores[s].id)
            .s("visitor", "rep")
            .s("rep", &format!("rep-{:03}", r + 1))
            .i("duration_s", self.rng.range(600, 3_600) as i64)
            .geo("geo", geo);
        self.push(at, "visit", b, None);
    }

    fn member_visit(&mut self, at: i64) {
        let m = self.zipf_member();
        let ss = &self.stores_by_city[m.city];
        let s = if ss.is_empty() {
            self.rng.below(self.stores.len() as u64) as usize
        } else {
            ss[self.rng.below(ss.len() as u64) as usize] as usize
        };
        let mut b = Body::default()
            .s("channel", "store")
            .s("store", &self.stores[s].id)
            .s("visitor", "member")
            .ids("member", &self.visit_ids(&m));
        if self.rng.chance(0.7) {
            b = b.i("duration_s", self.rng.range(60, 1_800) as i64);
        }
        if self.rng.chance(0.3) {
            b = b.geo("geo", self.stores[s].geo);
        }
        self.push(at, "visit", b, None);
    }
}

impl Body {
    fn geo_region(mut self, lat: f64, lon: f64, radius_km: f64) -> Self {
        self.key("region");
        let _ = write!(
            self.0,
            "{{\"lat\":{lat:.5},\"lon\":{lon:.5},\"radius_km\":{radius_km:.1}}}"
        );
        self
    }
}

fn legit(pattern: &'static str) -> Label {
    Label {
        fraud: false,
        pattern,
    }
}

fn fraud(pattern: &'static str) -> Label {
    Label {
        fraud: true,
        pattern,
    }
}

fn dist_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    omnistream_schemas::Geo { lat: a.0, lon: a.1 }
        .distance_km(&omnistream_schemas::Geo { lat: b.0, lon: b.1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_china_time_with_millis() {
        // 2026-11-11T00:00:01.250+08:00 is 2026-11-10T16:00:01.250Z
        let ms = omnistream_schemas::EventTime::parse("2026-11-11T00:00:01.250+08:00")
            .map(|t| t.unix_ms())
            .unwrap_or(0);
        assert_eq!(format_ts(ms), "2026-11-11T00:00:01.250+08:00");
        let leap = omnistream_schemas::EventTime::parse("2028-02-29T23:59:59.999+08:00")
            .map(|t| t.unix_ms())
            .unwrap_or(0);
        assert_eq!(format_ts(leap), "2028-02-29T23:59:59.999+08:00");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n");
        assert_eq!(s, "\"a\\\"b\\\\c\\u000a\"");
    }
}

//! Scenario files: the TOML that fixes a workload (seed, sizes, mix, bursts, fraud shares).
//!
//! Every table rejects unknown keys, so a typo (`sedd`, `devce_farm`) fails loudly with the key
//! named instead of silently falling back to a default.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use std::path::Path;

/// The scenarios shipped in `loadtest/scenarios/`, by name.
pub const BUILTIN: [(&str, &str); 4] = [
    ("smoke", include_str!("../scenarios/smoke.toml")),
    ("default", include_str!("../scenarios/default.toml")),
    ("double11", include_str!("../scenarios/double11.toml")),
    ("fraud-heavy", include_str!("../scenarios/fraud-heavy.toml")),
];

/// A complete workload description.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Free text shown in summaries.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice: same seed and scenario, same bytes.
    pub seed: u64,
    /// Exactly this many events are written (reference data included).
    pub events: u64,
    /// Event time of the first activity (RFC 3339 with offset; output is always +08:00).
    #[serde(default = "default_start")]
    pub start: String,
    /// Event-time span the events are spread over, e.g. `"6h"`, `"90m"`, `"3600s"`.
    #[serde(deserialize_with = "duration_s")]
    pub duration: u64,
    /// Entity counts.
    #[serde(default)]
    pub sizes: Sizes,
    /// Skew of activity.
    #[serde(default)]
    pub skew: Skew,
    /// Relative weights of activities.
    #[serde(default)]
    pub mix: Mix,
    /// Campaign launch bursts.
    #[serde(default)]
    pub burst: Burst,
    /// Events whose timestamp lags behind their position (channel delays).
    #[serde(default)]
    pub late: Late,
    /// Shares of all scans that belong to each injected pattern.
    #[serde(default)]
    pub patterns: Patterns,
    /// Members' activity before the start (written before the reference data, on top of
    /// `events`).
    #[serde(default)]
    pub history: History,
}

/// What members did before the scenario starts. A brand's members exist before its campaign:
/// most consumers who show up during a campaign clicked, bought or visited over the weeks
/// before, while accounts made for fraud are new. Without history a replay starts with every
/// member unknown, so an account's age says nothing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct History {
    /// How many days before the start the history reaches back (0: no history).
    pub days: u64,
    /// Share of the brand's members who show up in the scenario (fraud accounts never do)
    /// that were active before it: each gets one earlier interaction (a click in the mall
    /// or WeCom, with the identity and device it scans with). The rest are genuinely new
    /// customers, first seen during the scenario.
    pub share: f64,
}

impl Default for History {
    fn default() -> Self {
        History {
            days: 0,
            share: 0.0,
        }
    }
}

fn default_start() -> String {
    "2026-11-10T20:00:00.000+08:00".into()
}

/// Entity counts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sizes {
    /// Members (consumers) with history; fraud rings add fresh accounts on top.
    pub members: u64,
    /// Stores (spread over the cities).
    pub stores: u64,
    /// SKUs.
    pub skus: u64,
    /// Dealers.
    pub dealers: u64,
    /// Scan campaigns (one launch burst each, spread over the duration).
    pub campaigns: u64,
    /// Code batches shipped to each dealer.
    pub batches_per_dealer: u64,
    /// Cities used, from the built-in list of ten.
    pub cities: u64,
    /// SKUs each store keeps stock of (the most popular ones).
    pub store_skus: u64,
    /// Sales reps doing store visits.
    pub reps: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            members: 10_000,
            stores: 100,
            skus: 100,
            dealers: 20,
            campaigns: 2,
            batches_per_dealer: 4,
            cities: 8,
            store_skus: 20,
            reps: 10,
        }
    }
}

/// Zipf exponents: how concentrated activity is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Skew {
    /// Member activity.
    pub members: f64,
    /// SKU popularity.
    pub skus: f64,
    /// The most active member is at most this many times as active as the average one.
    pub member_cap: f64,
}

impl Default for Skew {
    fn default() -> Self {
        Skew {
            members: 1.0,
            skus: 1.1,
            member_cap: 20.0,
        }
    }
}

/// Relative weights of the activities an arrival can be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mix {
    /// A scan (or the start of a pattern episode of several scans).
    pub scan: f64,
    /// A click.
    pub click: f64,
    /// A consumer order (placed now, later paid, fulfilled, maybe cancelled or returned).
    pub order: f64,
    /// A member store visit.
    pub visit: f64,
    /// A sales rep's store visit.
    pub rep_visit: f64,
    /// A dealer order (placed, later fulfilled).
    pub dealer_order: f64,
    /// A dealer payment.
    pub payment: f64,
    /// A stock receipt at a warehouse or store.
    pub restock: f64,
    /// An identity binding (One-ID merge material).
    pub identify: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            scan: 30.0,
            click: 30.0,
            order: 15.0,
            visit: 8.0,
            rep_visit: 2.0,
            dealer_order: 1.0,
            payment: 0.5,
            restock: 1.0,
            identify: 3.0,
        }
    }
}

impl Mix {
    /// The weights in activity order (scan, click, order, visit, rep_visit, dealer_order,
    /// payment, restock, identify).
    pub fn weights(&self) -> [f64; 9] {
        [
            self.scan,
            self.click,
            self.order,
            self.visit,
            self.rep_visit,
            self.dealer_order,
            self.payment,
            self.restock,
            self.identify,
        ]
    }

    const NAMES: [&'static str; 9] = [
        "scan",
        "click",
        "order",
        "visit",
        "rep_visit",
        "dealer_order",
        "payment",
        "restock",
        "identify",
    ];
}

/// Campaign launch bursts: the arrival rate is multiplied while a campaign launches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Burst {
    /// Rate multiplier during a launch (10 = ten times the base rate).
    pub multiplier: f64,
    /// Length of each launch burst in minutes.
    pub minutes: f64,
    /// Share of scans during a burst that go to the launching campaign.
    pub focus: f64,
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            multiplier: 10.0,
            minutes: 5.0,
            focus: 0.8,
        }
    }
}

/// Late events: written in order but with a timestamp up to `max_ms` earlier.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Late {
    /// Share of events that are late.
    pub share: f64,
    /// Largest lag in milliseconds.
    pub max_ms: u64,
}

impl Default for Late {
    fn default() -> Self {
        Late {
            share: 0.01,
            max_ms: 3_000,
        }
    }
}

/// Shares of all scans per injected pattern (the rest are ordinary scans, pattern `normal`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Patterns {
    /// Fraud: one code's photo shared, scanned by many members after its owner.
    pub shared_code: f64,
    /// Fraud: one device, many fresh accounts.
    pub device_farm: f64,
    /// Fraud: one member and device scanning many codes of one batch, seconds apart.
    pub batch_harvest: f64,
    /// Fraud: fresh accounts rotated behind one /24.
    pub nat_rotation: f64,
    /// Fraud: one member's scans hundreds of kilometres apart within minutes.
    pub impossible_travel: f64,
    /// Fraud: an account first seen minutes ago scanning many codes.
    pub new_account_burst: f64,
    /// Fraud: accounts linked through a small set of shared devices and IPs.
    pub ring: f64,
    /// Fraud: codes with no registered batch prefix (guessed or forged).
    pub forged_code: f64,
    /// Legitimate: a family sharing one device and home IP.
    pub family: f64,
    /// Legitimate: many established members behind one campus IP, each scanning a little.
    pub campus_nat: f64,
    /// Legitimate: a shop owner scanning stock in their own store.
    pub shop_owner: f64,
    /// Legitimate: a member scanning the same code twice (a duplicate, not fraud).
    pub rescan: f64,
    /// Legitimate for the consumer: a code from a batch shipped to another region (窜货).
    pub diversion: f64,
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns {
            shared_code: 0.01,
            device_farm: 0.015,
            batch_harvest: 0.015,
            nat_rotation: 0.01,
            impossible_travel: 0.005,
            new_account_burst: 0.01,
            ring: 0.01,
            forged_code: 0.005,
            family: 0.02,
            campus_nat: 0.02,
            shop_owner: 0.02,
            rescan: 0.01,
            diversion: 0.02,
        }
    }
}

impl Patterns {
    /// (name, share) for every pattern, in a fixed order.
    pub fn shares(&self) -> [(&'static str, f64); 13] {
        [
            ("shared_code", self.shared_code),
            ("device_farm", self.device_farm),
            ("batch_harvest", self.batch_harvest),
            ("nat_rotation", self.nat_rotation),
            ("impossible_travel", self.impossible_travel),
            ("new_account_burst", self.new_account_burst),
            ("ring", self.ring),
            ("forged_code", self.forged_code),
            ("family", self.family),
            ("campus_nat", self.campus_nat),
            ("shop_owner", self.shop_owner),
            ("rescan", self.rescan),
            ("diversion", self.diversion),
        ]
    }
}

fn duration_s<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Parses `"90s"`, `"15m"`, `"6h"`, `"2d"` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected a number and s, m, h or d"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("bad duration {s:?}: unit must be s, m, h or d")),
    };
    Ok(n * mul)
}

impl Scenario {
    /// Parses and checks a scenario's TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let sc: Scenario =
            toml::from_str(text).with_context(|| format!("scenario {origin} is not valid"))?;
        sc.check()
            .with_context(|| format!("scenario {origin} is not valid"))?;
        Ok(sc)
    }

    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::from_toml(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario {name_or_path:?}: not a built-in ({}) and no such file",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        Scenario::from_toml(&text, &path.display().to_string())
    }

    /// Range and consistency checks serde cannot express; each error names its key.
    pub fn check(&self) -> Result<()> {
        if self.events == 0 {
            bail!("events: must be at least 1");
        }
        if self.duration == 0 {
            bail!("duration: must be longer than 0s");
        }
        if omnistream_schemas::EventTime::parse(&self.start).is_err() {
            bail!("start: {:?} is not RFC 3339 with an offset", self.start);
        }
        let z = &self.sizes;
        for (key, v, min) in [
            ("sizes.members", z.members, 10),
            ("sizes.stores", z.stores, 1),
            ("sizes.skus", z.skus, 1),
            ("sizes.dealers", z.dealers, 1),
            ("sizes.campaigns", z.campaigns, 1),
            ("sizes.batches_per_dealer", z.batches_per_dealer, 1),
            ("sizes.cities", z.cities, 1),
            ("sizes.store_skus", z.store_skus, 1),
            ("sizes.reps", z.reps, 1),
        ] {
            if v < min {
                bail!("{key}: {v} is below the minimum {min}");
            }
        }
        if !(self.skew.member_cap >= 1.0 && self.skew.member_cap.is_finite()) {
            bail!(
                "skew.member_cap: {} must be at least 1",
                self.skew.member_cap
            );
        }
        if z.cities > 10 {
            bail!("sizes.cities: {} but only 10 cities are built in", z.cities);
        }
        // ids leave room for this many; far beyond any benchmark here
        if z.members > 100_000_000 {
            bail!("sizes.members: {} is above 100 million", z.members);
        }
        for (key, v) in [
            ("skew.members", self.skew.members),
            ("skew.skus", self.skew.skus),
        ] {
            if !(0.0..=3.0).contains(&v) {
                bail!("{key}: {v} is outside 0..=3");
            }
        }
        let w = self.mix.weights();
        for (name, v) in Mix::NAMES.iter().zip(w) {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("mix.{name}: {v} must be a weight >= 0");
            }
        }
        if w.iter().sum::<f64>() <= 0.0 {
            bail!("mix: all weights are zero");
        }
        if !(self.burst.multiplier >= 1.0 && self.burst.multiplier <= 1000.0) {
            bail!(
                "burst.multiplier: {} is outside 1..=1000",
                self.burst.multiplier
            );
        }
        if !(self.burst.minutes >= 0.0 && self.burst.minutes.is_finite()) {
            bail!("burst.minutes: {} must be >= 0", self.burst.minutes);
        }
        if !(0.0..=1.0).contains(&self.burst.focus) {
            bail!("burst.focus: {} is outside 0..=1", self.burst.focus);
        }
        if !(0.0..=1.0).contains(&self.late.share) {
            bail!("late.share: {} is outside 0..=1", self.late.share);
        }
        let mut sum = 0.0;
        for (name, v) in self.patterns.shares() {
            if !(0.0..=1.0).contains(&v) {
                bail!("patterns.{name}: share {v} is outside 0..=1");
            }
            sum += v;
        }
        if !(0.0..=1.0).contains(&self.history.share) {
            bail!("history.share: {} is outside 0..=1", self.history.share);
        }
        if self.history.days > 365 {
            bail!("history.days: {} is above 365", self.history.days);
        }
        if sum > 0.95 {
            bail!(
                "patterns: shares add up to {sum:.3}; at most 0.95 (the rest are ordinary scans)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (name, text) in BUILTIN {
            let sc = Scenario::from_toml(text, name);
            assert!(sc.is_ok(), "{name}: {:?}", sc.err());
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("6h"), Ok(21_600));
        assert!(parse_duration("6 hours").is_err());
        assert!(parse_duration("h").is_err());
    }
}

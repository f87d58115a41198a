//! Reference data every shard reads and nobody owns: code batches by prefix and dealers'
//! sales regions. It is small (thousands of batches, not billions of codes) and read on every
//! scan, so instead of a hot singleton entity each shard keeps a read-only replica, updated by
//! `code_batch` and `dealer` events in event order. The engine updates it before routing the
//! event, so every command descending from a later event sees it; a sharded runtime must feed
//! every shard the reference events in log order to stay deterministic.

use crate::cmd::RegionV;
use compact_str::CompactString as Str;
use omnistream_schemas::{Body, Event};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A registered batch of codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    /// Batch id.
    pub batch: Str,
    /// SKU the codes are printed on.
    pub sku: Str,
    /// Dealer the batch was shipped to.
    pub dealer: Str,
}

impl From<&omnistream_schemas::CodeBatch> for BatchRef {
    /// The registration a `code_batch` event asks for.
    fn from(b: &omnistream_schemas::CodeBatch) -> Self {
        BatchRef {
            batch: b.batch.clone(),
            sku: b.sku.clone(),
            dealer: b.dealer.clone(),
        }
    }
}

/// Code batches by prefix and dealer regions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefData {
    /// Batches by code prefix.
    pub batches: BTreeMap<Str, BatchRef>,
    /// The distinct prefix lengths in `batches`, longest first: a lookup probes one map
    /// entry per length instead of one per character of the code.
    pub prefix_lens: Vec<usize>,
    /// Dealers' sales regions.
    pub regions: BTreeMap<Str, RegionV>,
    /// SKUs with at least one registered batch.
    #[serde(default)]
    pub skus: BTreeSet<Str>,
    /// Event time of the earliest event observed (µs): where the system's memory of
    /// members begins. A member first seen soon after it may be new or merely unseen.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub since: Option<i64>,
    /// Event time (µs) of each dealer's `dealer` event in effect: an older one changes no
    /// region (as the dealer's own state takes no older limit). Added by store encoding 14.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<14, _, _>"
    )]
    pub dealers_at: BTreeMap<Str, i64>,
    /// Event time (µs) of each prefix's `code_batch` in effect: an older one (a registry
    /// sent again) does not take the prefix back. Added by store encoding 15.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<15, _, _>"
    )]
    pub batches_at: BTreeMap<Str, i64>,
}

/// No reference data, for handlers run outside an engine (tests, benchmarks).
pub static NO_REFS: RefData = RefData {
    batches: BTreeMap::new(),
    prefix_lens: Vec::new(),
    regions: BTreeMap::new(),
    skus: BTreeSet::new(),
    since: None,
    dealers_at: BTreeMap::new(),
    batches_at: BTreeMap::new(),
};

impl RefData {
    /// Takes in a reference event; other events change nothing. Returns whether it was one.
    pub fn observe(&mut self, ev: &Event) -> bool {
        let ts = ev.ts.unix_us;
        if self.since.is_none_or(|s| ts < s) {
            self.since = Some(ts);
        }
        match &ev.body {
            Body::CodeBatch(b) => {
                let at = self.batches_at.entry(b.prefix.clone()).or_insert(ts);
                if ts < *at {
                    return true;
                }
                *at = ts;
                self.batches.insert(b.prefix.clone(), BatchRef::from(b));
                let len = b.prefix.len();
                if let Err(i) = self.prefix_lens.binary_search_by(|l| len.cmp(l)) {
                    self.prefix_lens.insert(i, len);
                }
                self.skus.insert(b.sku.clone());
                true
            }
            // a dealer event without a region (a limit change from the credit system) keeps
            // the one it had: diversion checks go on
            Body::Dealer(d) => {
                let at = self.dealers_at.entry(d.dealer.clone()).or_insert(ts);
                if ts < *at {
                    return true;
                }
                *at = ts;
                if let Some(r) = d.region {
                    self.regions.insert(
                        d.dealer.clone(),
                        RegionV {
                            lat: r.lat,
                            lon: r.lon,
                            radius_km: r.radius_km,
                        },
                    );
                }
                true
            }
            _ => false,
        }
    }

    /// Whether a member first seen at `first_seen` (µs) was seen first more than `span_us`
    /// after the system's memory began: only then does "first seen recently" say "new".
    pub fn age_known(&self, first_seen: i64, span_us: i64) -> bool {
        self.since
            .is_some_and(|s| first_seen.saturating_sub(s) > span_us)
    }

    /// Whether the brand registers code batches at all.
    pub fn any_registered(&self) -> bool {
        !self.batches.is_empty()
    }

    /// Whether any batch is registered for the SKU.
    pub fn sku_registered(&self, sku: &str) -> bool {
        self.skus.contains(sku)
    }

    /// The batch registered under exactly `prefix`, and the time of its `code_batch` (0:
    /// registered before store encoding 15 kept it).
    pub fn registered(&self, prefix: &str) -> Option<(&BatchRef, i64)> {
        let b = self.batches.get(prefix)?;
        Some((b, self.batches_at.get(prefix).copied().unwrap_or(0)))
    }

    /// The batch of a code: the longest registered prefix it starts with.
    pub fn batch_of(&self, code: &str) -> Option<&BatchRef> {
        self.prefix_lens
            .iter()
            .filter_map(|l| code.get(..*l))
            .find_map(|p| self.batches.get(p))
    }

    /// Distance in km by which `(lat, lon)` lies outside the dealer's region (None: inside,
    /// or the dealer has no region).
    pub fn outside_region(&self, dealer: &str, lat: f64, lon: f64) -> Option<f64> {
        let r = self.regions.get(dealer)?;
        let d = omnistream_schemas::Geo {
            lat: r.lat,
            lon: r.lon,
        }
        .distance_km(&omnistream_schemas::Geo { lat, lon });
        (d > r.radius_km).then_some(d - r.radius_km)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(prefixes: &[(&str, &str)]) -> RefData {
        let mut r = RefData::default();
        for (p, b) in prefixes {
            r.batches.insert(
                (*p).into(),
                BatchRef {
                    batch: (*b).into(),
                    sku: "S".into(),
                    dealer: "d".into(),
                },
            );
            let len = p.len();
            if let Err(i) = r.prefix_lens.binary_search_by(|l| len.cmp(l)) {
                r.prefix_lens.insert(i, len);
            }
        }
        r
    }

    /// A dealer's region follows the `dealer` event in effect: an older one sent later does
    /// not move it (as the dealer's own state keeps its limit).
    #[test]
    fn an_older_dealer_event_moves_no_region() {
        let d = omnistream_schemas::Decoder::new(omnistream_schemas::Pii::new(b"k"));
        let ev = |n: u32, ts: &str, lat: f64| {
            let text = format!(
                r#"{{"id":"00000000-0000-7000-8000-{n:012}","type":"dealer","ts":"{ts}","dealer":"d1","credit_limit":1,"region":{{"lat":{lat},"lon":121.0,"radius_km":50}}}}"#
            );
            d.decode(text.as_bytes()).unwrap()
        };
        let mut r = RefData::default();
        assert!(r.observe(&ev(1, "2026-11-11T12:00:00+08:00", 31.0)));
        assert!(r.observe(&ev(2, "2026-11-11T11:00:00+08:00", 23.0)));
        assert_eq!(r.regions["d1"].lat, 31.0);
        assert!(r.observe(&ev(3, "2026-11-11T12:00:00+08:00", 30.0)));
        assert_eq!(r.regions["d1"].lat, 30.0, "the same time: the later sent");
    }

    /// A registry sent again (an older `code_batch`) does not take a prefix back from the
    /// registration stamped later; one of the same time does (the later sent).
    #[test]
    fn an_older_code_batch_takes_no_prefix_back() {
        let d = omnistream_schemas::Decoder::new(omnistream_schemas::Pii::new(b"k"));
        let ev = |n: u32, ts: &str, sku: &str| {
            let text = format!(
                r#"{{"id":"00000000-0000-7000-8000-{n:012}","type":"code_batch","ts":"{ts}","batch":"B{n}","prefix":"HZ","sku":"{sku}","dealer":"d1"}}"#
            );
            d.decode(text.as_bytes()).unwrap()
        };
        let mut r = RefData::default();
        assert!(r.observe(&ev(1, "2026-11-11T12:00:00+08:00", "S1")));
        assert!(r.observe(&ev(2, "2026-11-11T11:00:00+08:00", "S2")));
        let (b, at) = r.registered("HZ").unwrap();
        assert_eq!((b.batch.as_str(), b.sku.as_str()), ("B1", "S1"));
        let noon = omnistream_schemas::EventTime::parse("2026-11-11T12:00:00+08:00").unwrap();
        assert_eq!(at, noon.unix_us);
        assert!(r.observe(&ev(3, "2026-11-11T12:00:00+08:00", "S3")));
        assert_eq!(r.batch_of("HZ1").map(|b| b.sku.as_str()), Some("S3"));
    }

    #[test]
    fn the_longest_prefix_wins_and_unmatched_codes_have_no_batch() {
        let r = with(&[("AB", "b1"), ("ABC1", "b2"), ("X", "b3")]);
        assert_eq!(r.prefix_lens, vec![4, 2, 1]);
        assert_eq!(r.batch_of("ABC1999").map(|b| b.batch.as_str()), Some("b2"));
        assert_eq!(r.batch_of("ABD").map(|b| b.batch.as_str()), Some("b1"));
        assert_eq!(r.batch_of("X").map(|b| b.batch.as_str()), Some("b3"));
        assert_eq!(r.batch_of("QQQ"), None);
        assert_eq!(r.batch_of("A"), None, "shorter than every prefix but one");
    }

    #[test]
    fn outside_region_measures_from_the_edge() {
        let mut r = RefData::default();
        r.regions.insert(
            "d".into(),
            RegionV {
                lat: 31.23,
                lon: 121.47,
                radius_km: 100.0,
            },
        );
        assert_eq!(r.outside_region("d", 31.3, 121.5), None, "Shanghai");
        let beijing = r.outside_region("d", 39.9, 116.4).unwrap_or(0.0);
        assert!((900.0..1100.0).contains(&beijing), "{beijing}");
        assert_eq!(r.outside_region("nobody", 39.9, 116.4), None);
    }
}

//! The member's side of scan fraud: what a member remembers about its own scans (rates,
//! where and when it last scanned, recent batches, its ring) and the member features it adds
//! to a scan: velocity, impossible travel, new-account burst, batch harvesting, ring. It also
//! looks the code's batch up in the reference data, once per scan, for the entities after it.

use super::window::{BatchScans, Rate};
use super::{hash64, ring, ScanCheck};
use crate::{Ctx, DAY_US};
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

const MIN_US: i64 = 60_000_000;

/// The span a new account's burst is counted over (to within a 5-minute bucket).
pub const BURST_US: i64 = 10 * MIN_US;

/// What a member keeps about its scans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanProfile {
    /// Scans in the minute, hour and day windows.
    pub rate: Rate,
    /// The latest located scan: `(lat, lon, µs)`.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub last_geo: Option<(f64, f64, i64)>,
    /// Recent scans by batch.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub batches: BatchScans,
    /// Ring key (`label@epoch`), when linked to other members (None: its own).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub ring: Option<Str>,
    /// Size of its ring when that ring was flagged (0: not flagged).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub ring_size: u32,
    /// Recent addresses: `(prefix hash, address hash, µs)`, the newest last.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub addrs: VecDeque<(u64, u64, i64)>,
    /// Hashes of the member ids merged into this one, newest last (at most [`TRACK_MERGED`]):
    /// crowds that counted them count the survivor in their place.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub merged: Vec<u64>,
    /// The latest store visit the store recorded: `(store hash, from µs, to µs)`.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub visit: Option<(u64, i64, i64)>,
    /// A person's blocks on the member's scans. Added by encoding 13.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<13, _, _>"
    )]
    pub blocks: Vec<super::block::Block>,
}

/// How long a visit without a duration is taken to last.
const VISIT_DEFAULT_S: i64 = 2 * 3_600;

/// The longest a visit is taken to last.
const VISIT_MAX_S: i64 = 12 * 3_600;

/// Merged ids a member remembers for its crowds.
pub const TRACK_MERGED: usize = 4;

/// Addresses a member remembers for address hopping.
const TRACK_ADDRS: usize = 8;

/// The batch key unregistered codes are counted under.
const UNKNOWN_BATCH: u64 = 0x756e_6b6e_6f77_6e21;

impl ScanProfile {
    /// Whether the member never scanned (the profile is then left out of its state).
    pub fn is_empty(&self) -> bool {
        *self == ScanProfile::default()
    }

    /// Records a visit to `store` at `ts` that lasted `duration_s`. Whether the event marks
    /// the arrival or the departure is not in the contract, so it covers that long on both
    /// sides.
    pub fn visited(&mut self, store: &str, ts: i64, duration_s: Option<i64>) {
        let d = duration_s.unwrap_or(VISIT_DEFAULT_S).clamp(0, VISIT_MAX_S) * 1_000_000;
        self.visit = Some((hash64(store), ts.saturating_sub(d), ts.saturating_add(d)));
    }

    /// Counts a scan of member `me` (first seen at `first_seen`) and adds member features.
    pub fn observe(&mut self, me: &Str, first_seen: i64, check: &mut ScanCheck, ctx: &Ctx) {
        let ts = ctx.ts();
        let st = &ctx.rules.fraud;
        check.member = me.clone();
        for h in &self.merged {
            if !check.merged.contains(h) {
                check.merged.push(*h);
            }
        }
        let epoch = ring::epoch(ts, st.ring_epoch_days);
        if self
            .ring
            .as_ref()
            .is_some_and(|r| ring::epoch_of(r) != Some(epoch))
        {
            // a past epoch's ring says nothing about this one
            self.ring = None;
            self.ring_size = 0;
        }
        check.ring = self
            .ring
            .clone()
            .unwrap_or_else(|| ring::ring_key(me, epoch));
        let mut mismatch = false;
        if let Some(b) = ctx.refs.batch_of(&check.code) {
            check.batch = Some(b.batch.clone());
            check.dealer = Some(b.dealer.clone());
            mismatch = b.sku != check.sku;
        }
        let f = &mut check.features;
        f.sku_mismatch = mismatch;
        f.in_store = check.store.as_deref().is_some_and(|s| {
            self.visit
                .is_some_and(|(h, from, to)| h == hash64(s) && (from..=to).contains(&ts))
        });
        f.unknown_code = check.batch.is_none();
        f.sku_registered = ctx.refs.sku_registered(&check.sku);
        f.any_registered = ctx.refs.any_registered();
        let on = super::block::BlockOn::Member;
        super::block::meet(&mut f.block, &self.blocks, on, me, &check.campaign, ts);
        f.member_rate = self.rate.add(ts);
        let age = ts.saturating_sub(first_seen);
        let fresh_window = st.fresh_account_us();
        // "first seen within the day" means "new" only where the system's memory reaches
        // back further than that: on a cold start (a replay without history, a new
        // deployment) every member is first seen recently and age says nothing
        let known = st.ages_known_from_start || ctx.refs.age_known(first_seen, fresh_window);
        check.fresh = known && age <= fresh_window;
        f.fresh = check.fresh;
        if age <= st.new_account_min * MIN_US {
            // a burst is many codes within minutes: a new shop owner scanning stock at a
            // human pace spreads the same count over an hour
            f.new_account_scans = self.rate.recent(BURST_US);
            if known {
                f.new_account_minute = f.member_rate[0];
            }
        }
        let batch_window = st.batch_window_min * MIN_US;
        match &check.batch {
            Some(b) => {
                let b = hash64(b);
                f.member_batch = self.batches.add(b, ts, batch_window, st.track_batch_scans);
                f.batch_minute = self.batches.within(b, ts, MIN_US);
            }
            None => {
                f.member_unknown =
                    self.batches
                        .add(UNKNOWN_BATCH, ts, batch_window, st.track_batch_scans);
            }
        }
        f.member_net_ips = self.hop(hash64(&check.net), hash64(&check.ip), ts);
        if let Some((lat, lon)) = check.geo {
            if let Some((plat, plon, pts)) = self.last_geo {
                f.travel_kmh = travel_kmh((plat, plon, pts), (lat, lon, ts), st.travel_min_km);
            }
            if self.last_geo.is_none_or(|(_, _, t)| t <= ts) {
                self.last_geo = Some((lat, lon, ts));
            }
        } else if self.last_geo.is_some_and(|(_, _, t)| t < ts - DAY_US) {
            // a day-old position says nothing about the next scan
            self.last_geo = None;
        }
        f.ring_size = self.ring_size;
    }
}

impl ScanProfile {
    /// Takes in the scans a merged member remembers, so the person's next scan is judged on
    /// all of them: its rates and batches counted with these, the later of the two last
    /// positions and store visits, the addresses of both; a ring flagged on either side is
    /// kept. The same whichever of the two survives the merge (which one does follows from
    /// the ids, so from the personal-data key: the other's scans were dropped, and a scan 40
    /// minutes after a scan 1,500 km away on the other side passed as no travel at all).
    pub fn absorb(&mut self, other: &ScanProfile, rules: &crate::config::FraudState) {
        self.rate.absorb(&other.rate);
        let window = rules.batch_window_min * MIN_US;
        self.batches
            .absorb(&other.batches, window, rules.track_batch_scans);
        // the later; of two at the same instant, either, the same one on both sides
        let order = |g: &(f64, f64, i64)| (g.2, g.0.to_bits(), g.1.to_bits());
        if let Some(g) = other.last_geo {
            if self.last_geo.is_none_or(|mine| order(&g) > order(&mine)) {
                self.last_geo = Some(g);
            }
        }
        if let Some(v) = other.visit {
            if self
                .visit
                .is_none_or(|mine| (v.2, v.1, v.0) > (mine.2, mine.1, mine.0))
            {
                self.visit = Some(v);
            }
        }
        let mut addrs: Vec<(u64, u64, i64)> = self
            .addrs
            .iter()
            .chain(other.addrs.iter())
            .copied()
            .collect();
        addrs.sort_unstable_by_key(|(n, a, t)| (*t, *a, *n));
        // one entry per address, its latest
        let mut seen = std::collections::HashSet::new();
        let mut newest_first: Vec<_> = addrs
            .into_iter()
            .rev()
            .filter(|(_, a, _)| seen.insert(*a))
            .collect();
        newest_first.truncate(TRACK_ADDRS);
        self.addrs = newest_first.into_iter().rev().collect();
        // the ring of the newer epoch (an older one's is dropped at the next scan anyway),
        // the smaller label of two in one epoch, with its flagged size: a stale ring's size
        // is not carried onto a current one
        let rank = |r: &Option<Str>| {
            let e = r.as_deref().and_then(ring::epoch_of);
            (e, std::cmp::Reverse(r.clone()))
        };
        let theirs = (other.ring.clone(), other.ring_size);
        let mine = (self.ring.take(), self.ring_size);
        let (ring, size) = match rank(&mine.0).cmp(&rank(&theirs.0)) {
            std::cmp::Ordering::Less => theirs,
            std::cmp::Ordering::Greater => mine,
            std::cmp::Ordering::Equal => (mine.0, mine.1.max(theirs.1)),
        };
        self.ring = ring;
        self.ring_size = size;
        // a block follows the person, the same one whichever side survives
        super::block::absorb(&mut self.blocks, &other.blocks);
    }

    /// Remembers that member `from` (with the ids merged into it before) merged into this
    /// one.
    pub fn merged_in(&mut self, from: &str, before: &[u64]) {
        for h in before.iter().copied().chain([hash64(from)]) {
            if !self.merged.contains(&h) {
                self.merged.push(h);
            }
        }
        let extra = self.merged.len().saturating_sub(TRACK_MERGED);
        self.merged.drain(..extra);
    }

    /// Records the scan's address; returns the distinct addresses of its prefix the member
    /// used within the hour, this one included.
    fn hop(&mut self, net: u64, ip: u64, ts: i64) -> u32 {
        let q = &mut self.addrs;
        q.retain(|(_, a, t)| *a != ip && *t > ts - 60 * MIN_US);
        q.push_back((net, ip, ts));
        while q.len() > TRACK_ADDRS {
            q.pop_front();
        }
        let n = q.iter().filter(|(p, _, _)| *p == net).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// Speed between two located scans in km/h; 0 when closer than `min_km` (position noise).
/// Two scans far apart at the same instant count as one second apart, not infinitely fast.
pub fn travel_kmh(a: (f64, f64, i64), b: (f64, f64, i64), min_km: f64) -> f32 {
    let km = omnistream_schemas::Geo { lat: a.0, lon: a.1 }
        .distance_km(&omnistream_schemas::Geo { lat: b.0, lon: b.1 });
    if km <= min_km {
        return 0.0;
    }
    let hours = ((b.2 - a.2).abs().max(1_000_000) as f64) / 3.6e9;
    (km / hours).min(1e9) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A profile from a few scans' worth of remembered facts.
    fn profile() -> impl Strategy<Value = ScanProfile> {
        let t = 0i64..(3 * DAY_US);
        (
            proptest::collection::vec((t.clone(), 0u64..4), 0..12),
            proptest::option::of((0i32..4, 0i32..4, t.clone())),
            proptest::collection::vec((0u64..3, 0u64..6, t.clone()), 0..10),
            proptest::option::of((0u64..3, t.clone(), t)),
            proptest::option::of((0u8..3, 1u8..3)),
            0u32..5,
            proptest::collection::vec((0u8..3, 0u8..3, 0u8..3, 0u8..2, 0i64..3), 0..4),
        )
            .prop_map(|(scans, geo, addrs, visit, ring, ring_size, blocks)| {
                let mut p = ScanProfile::default();
                for (ts, batch) in scans {
                    p.rate.add(ts);
                    p.batches.add(batch, ts, 10 * MIN_US, 5);
                }
                p.last_geo = geo.map(|(la, lo, t)| (f64::from(la), f64::from(lo), t));
                for (n, a, ts) in addrs {
                    p.hop(n, a, ts);
                }
                p.visit = visit;
                p.ring = ring.map(|(r, e)| compact_str::format_compact!("m{r}@{e}"));
                p.ring_size = ring_size;
                // blocks set in any order, for a few campaigns, ends, cases and times
                for (c, until, r, off, at) in blocks {
                    let time = |us: i64, off: u8| omnistream_schemas::EventTime {
                        unix_us: us,
                        offset_min: i16::from(off) * 480,
                    };
                    let cmd = super::super::block::BlockCmd::Set {
                        campaign: (c > 0).then(|| compact_str::format_compact!("c{c}")),
                        until: (until > 0).then(|| time(i64::from(until) * DAY_US, off)),
                        reference: compact_str::format_compact!("R{r}"),
                    };
                    let on = super::super::block::BlockOn::Member;
                    let mut fx = crate::Effects::default();
                    let at = time(at, 0);
                    super::super::block::apply(&mut p.blocks, on, &"m".into(), cmd, at, &mut fx);
                }
                p
            })
    }

    proptest! {
        /// Which of two merging members survives follows from their ids; what the person's
        /// next scan is judged on must not.
        #[test]
        fn absorbing_is_the_same_whichever_side_survives(a in profile(), b in profile()) {
            let rules = crate::config::FraudState {
                batch_window_min: 10,
                track_batch_scans: 5,
                ..Default::default()
            };
            let mut ab = a.clone();
            ab.absorb(&b, &rules);
            let mut ba = b.clone();
            ba.absorb(&a, &rules);
            prop_assert_eq!(ab, ba);
        }
    }

    #[test]
    fn absorbing_counts_both_sides_scans() {
        let rules = crate::config::FraudState::default();
        let (mut a, mut b) = (ScanProfile::default(), ScanProfile::default());
        a.rate.add(10 * MIN_US);
        b.rate.add(11 * MIN_US);
        b.rate.add(12 * MIN_US);
        a.last_geo = Some((31.2, 121.5, 10 * MIN_US));
        b.last_geo = Some((39.9, 116.4, 12 * MIN_US));
        a.absorb(&b, &rules);
        assert_eq!(a.rate.recent(60 * MIN_US), 3);
        assert_eq!(a.last_geo, b.last_geo);
        // a ring of this epoch, flagged at 5, is kept over an older epoch's smaller label
        a.ring = Some("m9@2971".into());
        a.ring_size = 5;
        b.ring = Some("m1@2970".into());
        b.ring_size = 9;
        a.absorb(&b, &rules);
        assert_eq!((a.ring.as_deref(), a.ring_size), (Some("m9@2971"), 5));
    }
}

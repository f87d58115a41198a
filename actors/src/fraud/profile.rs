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
        if let Some(b) = ctx.refs.batch_of(&check.code) {
            check.batch = Some(b.batch.clone());
            check.dealer = Some(b.dealer.clone());
        }
        let f = &mut check.features;
        f.in_store = check.store.as_deref().is_some_and(|s| {
            self.visit
                .is_some_and(|(h, from, to)| h == hash64(s) && (from..=to).contains(&ts))
        });
        f.unknown_code = check.batch.is_none();
        f.sku_registered = ctx.refs.sku_registered(&check.sku);
        f.any_registered = ctx.refs.any_registered();
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

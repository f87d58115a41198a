//! Scan-campaign fraud decisions: the features a scan collects on its way through the keyed
//! entities (member, code, device, IP, network prefix), and the pure scoring that turns them
//! into a decision with explained reasons at the campaign.
//!
//! The chain, one hop per entity so it scales like the rest of the state: the router resolves
//! the scan's member; the member adds member features (velocity, impossible travel, new
//! account burst, batch harvesting, ring) and passes the scan to its [`code`] entity (first scan
//! wins), then to the [`crowd`] entities of the device, the IP and the network prefix (velocity,
//! distinct members), then to the campaign, which scores, takes the budget and sends the reward
//! (or the hold, for a review) back to the member, which writes the one `decision` output.
//!
//! Entities only count; every threshold and weight is judged at the campaign with that
//! campaign's rules, so one risk team can tune a campaign without touching the others.

pub mod block;
pub mod code;
pub mod crowd;
pub mod filter;
pub mod profile;
pub mod ring;
pub mod window;

use crate::config::FraudRules;
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

/// Why a scan scored what it did: stable snake_case names, so label values stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The code was scanned first by another member (a photo of one code shared around).
    CodeShared,
    /// The same member scanned this code before: a duplicate, not fraud.
    CodeRepeat,
    /// The code matches no registered batch (forged or guessed).
    UnknownCode,
    /// The member scans faster than the campaign allows (minute, hour or day).
    MemberVelocity,
    /// The device scans faster than the campaign allows.
    DeviceVelocity,
    /// The IP scans faster than the campaign allows.
    IpVelocity,
    /// Too many members on one device (device farm, emulator).
    DeviceShared,
    /// Many members on one IP (weighted low: shared NATs are normal).
    IpShared,
    /// Many members spread over many addresses of one /24 or /64 (a rotated proxy pool; many
    /// members behind one address are a NAT, `ip_shared`).
    NetShared,
    /// Brand-new accounts crowding one IP or prefix (rotated accounts behind a NAT), or a
    /// device used by several brand-new accounts and no established member (a farm's phone,
    /// a ring's kit). Counted against fresh accounts only.
    FreshAccounts,
    /// The member moved faster than a plane since its previous scan.
    ImpossibleTravel,
    /// A member first seen minutes ago scanning many codes, or scanning back to back.
    NewAccountBurst,
    /// Many codes of one batch from one member or device in a short time, or several
    /// within a minute (collected caps).
    BatchHarvest,
    /// The member belongs to a flagged ring of members linked by devices and home IPs.
    Ring,
    /// Scanned outside the sales region of the batch's dealer (reported against the dealer).
    CrossRegion,
    /// The member hopped over several addresses of one prefix within the hour (a rotating
    /// proxy handing each request a new address).
    IpRotation,
    /// A person blocked the member, the device, the address or its prefix (in this campaign
    /// or in all): the full 100 points, never in shadow (last in [`Reason::ALL`] and in a
    /// decision's reasons).
    Blocked,
    /// The code belongs to a registered batch of another SKU than the scan names: a real
    /// code of one product claimed as another (a cheap product's caps harvested for a dear
    /// product's reward, or a request forged around the scanning app). Listed before
    /// `blocked` in [`Reason::ALL`] (declared after it: the stored encoding of the others
    /// stays).
    SkuMismatch,
}

impl Reason {
    /// Every reason, in a fixed order.
    pub const ALL: [Reason; 18] = [
        Reason::CodeShared,
        Reason::CodeRepeat,
        Reason::UnknownCode,
        Reason::MemberVelocity,
        Reason::DeviceVelocity,
        Reason::IpVelocity,
        Reason::DeviceShared,
        Reason::IpShared,
        Reason::NetShared,
        Reason::FreshAccounts,
        Reason::ImpossibleTravel,
        Reason::NewAccountBurst,
        Reason::BatchHarvest,
        Reason::Ring,
        Reason::CrossRegion,
        Reason::IpRotation,
        Reason::SkuMismatch,
        Reason::Blocked,
    ];

    /// The stable name, as in outputs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CodeShared => "code_shared",
            Reason::CodeRepeat => "code_repeat",
            Reason::UnknownCode => "unknown_code",
            Reason::MemberVelocity => "member_velocity",
            Reason::DeviceVelocity => "device_velocity",
            Reason::IpVelocity => "ip_velocity",
            Reason::DeviceShared => "device_shared",
            Reason::IpShared => "ip_shared",
            Reason::NetShared => "net_shared",
            Reason::FreshAccounts => "fresh_accounts",
            Reason::ImpossibleTravel => "impossible_travel",
            Reason::NewAccountBurst => "new_account_burst",
            Reason::BatchHarvest => "batch_harvest",
            Reason::Ring => "ring",
            Reason::CrossRegion => "cross_region",
            Reason::IpRotation => "ip_rotation",
            Reason::Blocked => "blocked",
            Reason::SkuMismatch => "sku_mismatch",
        }
    }
}

/// Why a scan allowed (or sent to review) got no points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoReward {
    /// The member already had the campaign's `daily-cap` of rewarded scans that local day.
    DailyCap,
    /// The campaign's `budget` could not pay the points.
    BudgetExhausted,
    /// The campaign pays no points (`points = 0`).
    NoPoints,
    /// The campaign is not configured and `unconfigured-campaigns` pays such scans nothing.
    NotConfigured,
    /// A blocked scan whose `member_id` names no member this service issued (a mistyped
    /// digit): nothing was checked or paid, and no member was started (appended last).
    UnknownMember,
}

impl NoReward {
    /// Every kind, in order.
    pub const ALL: [NoReward; 5] = [
        NoReward::DailyCap,
        NoReward::BudgetExhausted,
        NoReward::NoPoints,
        NoReward::NotConfigured,
        NoReward::UnknownMember,
    ];

    /// Why a campaign whose rules pay `points` a scan granted none: they pay none, or its
    /// budget could not.
    pub fn not_granted(points: i64) -> NoReward {
        if points <= 0 {
            NoReward::NoPoints
        } else {
            NoReward::BudgetExhausted
        }
    }

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoReward::DailyCap => "daily_cap",
            NoReward::BudgetExhausted => "budget_exhausted",
            NoReward::NoPoints => "no_points",
            NoReward::NotConfigured => "not_configured",
            NoReward::UnknownMember => "unknown_member",
        }
    }
}

/// What a scan gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Rewarded.
    Allow,
    /// Reward held until a person resolves the review.
    Review,
    /// No reward.
    Block,
    /// The member scanned this code before: no second reward, not fraud.
    Duplicate,
}

impl Decision {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Review => "review",
            Decision::Block => "block",
            Decision::Duplicate => "duplicate",
        }
    }
}

/// What the code registry said about this scan's code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSeen {
    /// Not checked yet (the scan has not reached its code).
    #[default]
    Unchecked,
    /// The first scan of the code.
    First,
    /// Scanned before by the same member.
    Repeat,
    /// Scanned first by another member.
    Shared,
}

/// Counts collected along the chain: what each entity knew when the scan passed it. Counts
/// include the scan itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// The code registry's answer.
    pub code: CodeSeen,
    /// No registered batch prefix matches the code.
    pub unknown_code: bool,
    /// Batches are registered for the scan's SKU.
    #[serde(default)]
    pub sku_registered: bool,
    /// The brand registers code batches at all.
    #[serde(default)]
    pub any_registered: bool,
    /// The member is known to be a fresh account: first seen within the fresh-account window,
    /// and that long after the system's memory began.
    #[serde(default)]
    pub fresh: bool,
    /// Scans of the member in the last minute, hour, day.
    pub member_rate: [u32; 3],
    /// Scans of the device in the last minute, hour, day.
    pub device_rate: [u32; 3],
    /// Scans from the IP in the last minute, hour, day.
    pub ip_rate: [u32; 3],
    /// Distinct members on the device in its window.
    pub device_members: u32,
    /// Distinct fresh accounts on the device in its window.
    #[serde(default)]
    pub device_fresh: u32,
    /// Of those, the ones that scanned within `fraud.crowd-fresh-window-min`.
    #[serde(default)]
    pub device_fresh_recent: u32,
    /// The scan names a store the member is visiting, by the store's own record of the visit.
    #[serde(default)]
    pub in_store: bool,
    /// The device was in ordinary use (clicks) longer ago than the fresh-account window.
    #[serde(default)]
    pub device_known: bool,
    /// Distinct members on the IP in its window.
    pub ip_members: u32,
    /// Distinct members on the network prefix in its window.
    pub net_members: u32,
    /// Distinct addresses of the network prefix in its window.
    #[serde(default)]
    pub net_ips: u32,
    /// Distinct addresses of this scan's prefix the member used within the hour.
    #[serde(default)]
    pub member_net_ips: u32,
    /// Scans of unregistered codes by the member in the batch window.
    #[serde(default)]
    pub member_unknown: u32,
    /// Distinct fresh accounts on the IP in its window.
    pub ip_fresh: u32,
    /// Distinct fresh accounts on the network prefix in its window.
    pub net_fresh: u32,
    /// Speed implied since the member's previous located scan, km/h (0: none or too close).
    pub travel_kmh: f32,
    /// Scans in the last ten minutes, when the member was first seen within the new-account
    /// window (0 otherwise).
    pub new_account_scans: u32,
    /// Scans in the last minute, when the member is known to be new: first seen within the
    /// new-account window, and after the system's memory began (0 otherwise).
    #[serde(default)]
    pub new_account_minute: u32,
    /// Scans of this code's batch by the member in the batch window.
    pub member_batch: u32,
    /// Scans of this code's batch on the device in the batch window.
    pub device_batch: u32,
    /// Scans of this code's batch within the last minute, by the member or on the device
    /// (the larger).
    #[serde(default)]
    pub batch_minute: u32,
    /// Size of the member's flagged ring (0: none).
    pub ring_size: u32,
    /// Scanned outside the region of the dealer the batch was shipped to.
    pub outside_region: bool,
    /// The first block of a person's the scan met on its way (member, device, address,
    /// prefix). Added by encoding 13.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<13, _, _>"
    )]
    pub block: Option<Box<block::BlockHit>>,
    /// The code's batch is registered for another SKU than the scan's. Added by encoding 15.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<15, _, _>"
    )]
    pub sku_mismatch: bool,
}

/// One reason's part in a score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The reason.
    pub reason: Reason,
    /// Points it added (0..=100; 0 for reasons that only inform).
    pub points: u8,
    /// The measured value that triggered it (a count, a speed, a ratio).
    pub value: f32,
    /// The limit it was compared with.
    pub limit: f32,
    /// Shadow mode: scored and reported, not enforced.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub shadow: bool,
}

/// The outcome of scoring one scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The decision enforced.
    pub decision: Decision,
    /// Enforced score, 0..=100.
    pub score: u8,
    /// Every reason that fired, in [`Reason::ALL`] order.
    pub reasons: Vec<Contribution>,
    /// What the decision would be with shadow rules enforced, when that differs.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub shadow_decision: Option<Decision>,
}

/// What a checked scan was, as its decision shows it to a risk team: the SKU, the store,
/// the device and address it came from, and the batch and dealer of its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scanned {
    /// SKU.
    pub sku: Str,
    /// Device fingerprint.
    pub device: Str,
    /// IP address, canonical text.
    pub ip: Str,
    /// Store, when the scan named one.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub store: Option<Str>,
    /// The code's batch, when a registered prefix matched.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub batch: Option<Str>,
    /// The dealer the batch was shipped to.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub dealer: Option<Str>,
    /// The person's block the scan met, when one blocked it. Added by encoding 13.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<13, _, _>"
    )]
    pub blocked: Option<Box<block::BlockHit>>,
}

impl ScanCheck {
    /// What was scanned, as its decision names it.
    pub fn scanned(self) -> Scanned {
        Scanned {
            sku: self.sku,
            device: self.device,
            ip: self.ip,
            store: self.store,
            batch: self.batch,
            dealer: self.dealer,
            blocked: self.features.block,
        }
    }
}

/// A scan on its way through the entities, carrying what it has learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanCheck {
    /// Campaign.
    pub campaign: Str,
    /// The item's code.
    pub code: Str,
    /// SKU.
    pub sku: Str,
    /// Device fingerprint.
    pub device: Str,
    /// IP address, canonical text.
    pub ip: Str,
    /// Network prefix: `a.b.c.0/24` or the /64 of an IPv6 address.
    pub net: Str,
    /// Where, when known: `(lat, lon)`.
    pub geo: Option<(f64, f64)>,
    /// Store, when known.
    pub store: Option<Str>,
    /// The member, once resolved.
    pub member: Str,
    /// The member's ring label (the smallest member id of its linked component known to it).
    pub ring: Str,
    /// The member was first seen within the fresh-account window.
    pub fresh: bool,
    /// Hashes of member ids that merged into this member (One-ID): crowds count them as
    /// this member, not as others.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub merged: Vec<u64>,
    /// The code's batch, when a registered prefix matches.
    pub batch: Option<Str>,
    /// The dealer the batch was shipped to.
    pub dealer: Option<Str>,
    /// Features so far.
    pub features: Features,
}

/// `weight × min(value / limit, 2)` when `value > limit`, else nothing: one limit to tune, and
/// a score that grows with how far over the limit the scan is, up to double its weight.
fn graded(weight: u8, value: f64, limit: f64) -> Option<u8> {
    if limit <= 0.0 || value <= limit {
        return None;
    }
    let ratio = (value / limit).min(2.0);
    Some((f64::from(weight) * ratio).round().clamp(0.0, 100.0) as u8)
}

/// The largest of `counts[i] / limits[i]` over windows whose count exceeds its limit, as
/// `(count, limit)` of that window.
fn worst(counts: &[u32; 3], limits: &[u32; 3]) -> Option<(f64, f64)> {
    let mut best: Option<(f64, f64)> = None;
    for (c, l) in counts.iter().zip(limits) {
        if *l == 0 || c <= l {
            continue;
        }
        let (c, l) = (f64::from(*c), f64::from(*l));
        if best.is_none_or(|(bc, bl)| c / l > bc / bl) {
            best = Some((c, l));
        }
    }
    best
}

/// Scores one scan's features under a campaign's rules. Pure and allocation-light: it runs
/// once per scan on the campaign's hot path.
pub fn score(f: &Features, r: &FraudRules) -> Verdict {
    let w = &r.weights;
    let mut reasons: Vec<Contribution> = Vec::new();
    let mut push = |reason: Reason, points: Option<u8>, value: f64, limit: f64| {
        if let Some(points) = points {
            reasons.push(Contribution {
                reason,
                points,
                value: value as f32,
                limit: limit as f32,
                shadow: r.shadow.contains(&reason),
            });
        }
    };
    match f.code {
        CodeSeen::Shared => push(Reason::CodeShared, Some(w.code_shared), 1.0, 0.0),
        CodeSeen::Repeat => push(Reason::CodeRepeat, Some(0), 1.0, 0.0),
        CodeSeen::First | CodeSeen::Unchecked => {}
    }
    // a code for a SKU whose codes are registered, matching none of them, is forged or
    // guessed; without registered batches for the SKU only a campaign's rule can tell
    if f.unknown_code && (r.require_registered_codes || f.sku_registered) {
        push(Reason::UnknownCode, Some(w.unknown_code), 1.0, 0.0);
    } else if f.unknown_code && f.any_registered && f.code != CodeSeen::Repeat {
        // one unregistered code may be a product whose batches are not registered yet;
        // several from one member within minutes, at a brand that registers its codes, are
        // guessed or generated (a brand registering none has no unknown codes to speak of).
        // A member scanning its own code again brings no new code: it was judged on its
        // first scan, and a consumer checking the reward must not be blocked for it
        let (v, l) = (f64::from(f.member_unknown), f64::from(r.unknown_scans));
        push(Reason::UnknownCode, graded(w.unknown_code / 2, v, l), v, l);
    }
    if let Some((c, l)) = worst(&f.member_rate, &r.member_rate) {
        push(
            Reason::MemberVelocity,
            graded(w.member_velocity, c, l),
            c,
            l,
        );
    }
    if let Some((c, l)) = worst(&f.device_rate, &r.device_rate) {
        push(
            Reason::DeviceVelocity,
            graded(w.device_velocity, c, l),
            c,
            l,
        );
    }
    if let Some((c, l)) = worst(&f.ip_rate, &r.ip_rate) {
        push(Reason::IpVelocity, graded(w.ip_velocity, c, l), c, l);
    }
    let over = |v: u32, l: u32| (f64::from(v), f64::from(l));
    let (v, l) = over(f.device_members, r.device_members);
    push(Reason::DeviceShared, graded(w.device_shared, v, l), v, l);
    let (v, l) = over(f.ip_members, r.ip_members);
    push(Reason::IpShared, graded(w.ip_shared, v, l), v, l);
    // members on a prefix count only as far as they are spread over its addresses: a campus
    // or an office behind one NAT address is many members on few addresses
    let (v, l) = over(f.net_members.min(f.net_ips), r.net_members);
    push(Reason::NetShared, graded(w.net_shared, v, l), v, l);
    // fresh accounts, counted against fresh accounts only (an established member behind a
    // busy NAT is no newcomer): the worst of IP, prefix, and a device only new accounts use,
    // one reason. A household's phone carries its established members within the device's
    // day-long window, or has been in ordinary use for longer than an account stays fresh;
    // a farm's phone and a ring's kit do neither. (Addresses are not judged so: their
    // hour-long window often misses the household's established members, and dynamic
    // addresses pass from one household to the next.)
    if f.fresh {
        let net_fresh = f.net_fresh.min(f.net_ips);
        // new accounts switching on one phone within minutes, or more of them in a day than a
        // household gains
        let only = f.device_fresh >= f.device_members && !f.device_known;
        let (switching, day) = if only {
            (f.device_fresh_recent, f.device_fresh)
        } else {
            (0, 0)
        };
        let mut best: Option<(u8, u32, u32)> = None;
        for (v, l) in [
            (f.ip_fresh, r.ip_fresh),
            (net_fresh, r.net_fresh),
            (switching, r.crowd_fresh),
            (day, r.crowd_fresh_day),
        ] {
            if let Some(p) = graded(w.fresh_accounts, f64::from(v), f64::from(l)) {
                if best.is_none_or(|(b, _, _)| p > b) {
                    best = Some((p, v, l));
                }
            }
        }
        if let Some((p, v, l)) = best {
            push(Reason::FreshAccounts, Some(p), f64::from(v), f64::from(l));
        }
    }
    // faster than a plane is faster than a plane: how much faster says nothing more
    let (v, l) = (f64::from(f.travel_kmh), r.travel_kmh);
    push(
        Reason::ImpossibleTravel,
        (v > l).then_some(w.impossible_travel),
        v,
        l,
    );
    // a new account: many scans within minutes, or scans back to back (a shop owner scanning
    // stock goes at a human pace, minutes apart)
    // in a store the member is visiting (the store recorded the visit), scanning stock or a
    // shelf of purchases: counts over minutes are allowed more, the per-minute pace is not
    let in_store = if f.in_store { r.in_store_factor } else { 1 };
    let (v, l) = over(
        f.new_account_scans,
        r.new_account_scans.saturating_mul(in_store),
    );
    let burst = graded(w.new_account_burst, v, l);
    let (pv, pl) = over(f.new_account_minute, r.new_account_minute);
    let pace = (r.new_account_minute > 0 && pv > pl).then_some(w.new_account_pace);
    if pace.unwrap_or(0) > burst.unwrap_or(0) {
        push(Reason::NewAccountBurst, pace, pv, pl);
    } else {
        push(Reason::NewAccountBurst, burst, v, l);
    }
    // caps of one batch: many within the batch window, or several within a minute
    let (v, l) = over(
        f.member_batch.max(f.device_batch),
        r.batch_scans.saturating_mul(in_store),
    );
    let many = graded(w.batch_harvest, v, l);
    let (mv, ml) = over(f.batch_minute, r.batch_scans_minute);
    let fast = graded(w.batch_harvest, mv, ml);
    if fast.unwrap_or(0) > many.unwrap_or(0) {
        push(Reason::BatchHarvest, fast, mv, ml);
    } else {
        push(Reason::BatchHarvest, many, v, l);
    }
    if f.ring_size > 0 {
        // a flagged ring is already over the global flagging size: at least the full weight
        let (v, l) = over(f.ring_size, r.ring_size);
        push(
            Reason::Ring,
            graded(w.ring, v, l).or((f.ring_size >= r.ring_size).then_some(w.ring)),
            v,
            l,
        );
    }
    if f.outside_region {
        push(Reason::CrossRegion, Some(w.cross_region), 1.0, 0.0);
    }
    let (v, l) = over(f.member_net_ips, r.member_net_ips);
    push(Reason::IpRotation, graded(w.ip_rotation, v, l), v, l);
    if f.sku_mismatch {
        push(Reason::SkuMismatch, Some(w.sku_mismatch), 1.0, 0.0);
    }
    if f.block.is_some() {
        // a person decided: whatever the campaign's weights, thresholds and shadow list
        reasons.push(Contribution {
            reason: Reason::Blocked,
            points: 100,
            value: 1.0,
            limit: 0.0,
            shadow: false,
        });
    }
    let (mut enforced, mut all) = (0u32, 0u32);
    for c in &reasons {
        all += u32::from(c.points);
        if !c.shadow {
            enforced += u32::from(c.points);
        }
    }
    let enforced = enforced.min(100) as u8;
    let all = all.min(100) as u8;
    let decide = |s: u8| {
        if s >= r.block_at {
            Decision::Block
        } else if f.code == CodeSeen::Repeat {
            Decision::Duplicate
        } else if s >= r.review_at {
            Decision::Review
        } else {
            Decision::Allow
        }
    };
    let blocked = f.block.is_some();
    let decision = if blocked {
        Decision::Block
    } else {
        decide(enforced)
    };
    let shadow = if blocked {
        Decision::Block
    } else {
        decide(all)
    };
    Verdict {
        decision,
        score: enforced,
        reasons,
        shadow_decision: (shadow != decision).then_some(shadow),
    }
}

/// The /24 of an IPv4 address or the /64 of an IPv6 address, as text: the unit a carrier or a
/// proxy pool hands addresses out of.
pub fn net_prefix(ip: &std::net::IpAddr) -> Str {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            compact_str::format_compact!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            compact_str::format_compact!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// A 64-bit FNV-1a hash of a string: deterministic across runs and platforms, for the
/// bounded member and batch sets the entities keep (ids themselves would cost 24 bytes each).
pub fn hash64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> FraudRules {
        FraudRules::default()
    }

    fn first() -> Features {
        Features {
            code: CodeSeen::First,
            member_rate: [1, 1, 1],
            device_rate: [1, 1, 1],
            ip_rate: [1, 1, 1],
            device_members: 1,
            ip_members: 1,
            net_members: 1,
            ..Features::default()
        }
    }

    fn reasons(v: &Verdict) -> Vec<Reason> {
        v.reasons.iter().map(|c| c.reason).collect()
    }

    #[test]
    fn an_ordinary_scan_scores_zero_with_no_reasons() {
        let v = score(&first(), &rules());
        assert_eq!((v.decision, v.score), (Decision::Allow, 0));
        assert!(v.reasons.is_empty() && v.shadow_decision.is_none());
    }

    #[test]
    fn a_shared_code_blocks_and_a_repeat_is_a_duplicate_not_fraud() {
        let mut f = first();
        f.code = CodeSeen::Shared;
        let v = score(&f, &rules());
        assert_eq!((v.decision, v.score), (Decision::Block, 100));
        assert_eq!(reasons(&v), vec![Reason::CodeShared]);
        f.code = CodeSeen::Repeat;
        let v = score(&f, &rules());
        assert_eq!((v.decision, v.score), (Decision::Duplicate, 0));
        // a repeat that is also fraud on other counts is blocked, not a mere duplicate
        f.device_members = 20;
        f.member_rate = [30, 30, 30];
        assert_eq!(score(&f, &rules()).decision, Decision::Block);
    }

    #[test]
    fn an_unknown_code_counts_only_when_the_campaign_requires_registered_codes() {
        let mut f = first();
        f.unknown_code = true;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
        let r = FraudRules {
            require_registered_codes: true,
            ..rules()
        };
        let v = score(&f, &r);
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Block, vec![Reason::UnknownCode])
        );
    }

    #[test]
    fn velocity_takes_the_worst_window_and_grows_with_the_excess() {
        let mut f = first();
        f.member_rate = [6, 40, 80];
        assert!(
            score(&f, &rules()).reasons.is_empty(),
            "at the limits is fine"
        );
        f.member_rate = [7, 41, 81];
        let v = score(&f, &rules());
        assert_eq!(reasons(&v), vec![Reason::MemberVelocity]);
        let c = v.reasons[0];
        assert_eq!(
            (c.value, c.limit),
            (7.0, 6.0),
            "the minute is furthest over"
        );
        assert_eq!(c.points, 35);
        f.member_rate = [60, 60, 60];
        assert_eq!(
            score(&f, &rules()).reasons[0].points,
            60,
            "capped at twice the weight"
        );
        // a busy NAT address alone is not a reason to refuse anyone
        let mut f = first();
        f.ip_rate = [200, 5_000, 50_000];
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
    }

    #[test]
    fn a_device_with_a_family_on_it_is_fine_and_a_farm_is_not() {
        let mut f = first();
        f.device_members = 4;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
        f.device_members = 5;
        assert_eq!(score(&f, &rules()).decision, Decision::Review);
        f.device_members = 8;
        assert_eq!(score(&f, &rules()).decision, Decision::Block);
    }

    #[test]
    fn shared_nats_are_tolerated_unless_their_accounts_are_fresh() {
        let mut f = first();
        f.fresh = true;
        f.ip_members = 63; // a campus NAT at its busiest, all its members on one address
        f.net_members = 63;
        f.net_ips = 1;
        f.net_fresh = 63;
        let v = score(&f, &rules());
        assert_eq!(v.decision, Decision::Allow, "{v:?}");
        assert_eq!(reasons(&v), vec![Reason::IpShared]);
        f.ip_fresh = 50; // more new accounts on one address than any NAT carries
        let v = score(&f, &rules());
        assert_eq!(v.decision, Decision::Review);
        assert!(reasons(&v).contains(&Reason::FreshAccounts));
        // ... counted against the new accounts, not an established member behind the NAT
        f.fresh = false;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
    }

    #[test]
    fn new_accounts_on_a_device_or_address_no_established_member_uses_are_a_farm() {
        // a farm's phone: its second brand-new account, minutes after the first
        let mut f = first();
        f.fresh = true;
        f.device_members = 2;
        f.device_fresh = 2;
        f.device_fresh_recent = 2;
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::FreshAccounts])
        );
        assert_eq!((v.reasons[0].value, v.reasons[0].limit), (2.0, 1.0));
        // with more members than a family it blocks
        f.device_members = 6;
        f.device_fresh = 6;
        f.device_fresh_recent = 6;
        assert_eq!(score(&f, &rules()).decision, Decision::Block);
        // two new accounts hours apart are a household's; a third in the day is not
        let mut f = first();
        f.fresh = true;
        f.device_members = 2;
        f.device_fresh = 2;
        f.device_fresh_recent = 1;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
        f.device_members = 3;
        f.device_fresh = 3;
        assert_eq!(score(&f, &rules()).decision, Decision::Review);
        // an address used only by new accounts within its hour is not enough: the
        // household's established members may have scanned earlier in the day
        let mut f = first();
        f.fresh = true;
        f.ip_members = 3;
        f.ip_fresh = 3;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
        // a new member's own phone and home address: one account, nothing shared
        let mut f = first();
        f.fresh = true;
        f.device_fresh = 1;
        f.ip_fresh = 1;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
        // a family phone: two new relatives next to an established parent
        f.device_members = 3;
        f.device_fresh = 2;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
        // ... or before the parent scanned today, on a phone in ordinary use for weeks
        f.device_members = 2;
        f.device_fresh_recent = 2;
        f.device_known = true;
        assert_eq!(score(&f, &rules()).decision, Decision::Allow);
        f.device_known = false;
        assert_eq!(score(&f, &rules()).decision, Decision::Review);
        // a campus NAT: a few new students among many established ones
        let mut f = first();
        f.fresh = true;
        f.ip_members = 40;
        f.ip_fresh = 6;
        f.net_members = 40;
        f.net_fresh = 6;
        f.net_ips = 1;
        assert!(score(&f, &rules()).reasons.is_empty());
        // an established member on a farm's phone is not a new account
        let mut f = first();
        f.device_members = 3;
        f.device_fresh = 3;
        assert!(score(&f, &rules()).reasons.is_empty());
    }

    #[test]
    fn in_a_store_the_member_is_visiting_counts_over_minutes_allow_more_and_pace_does_not() {
        let mut f = first();
        f.member_batch = 6;
        f.new_account_scans = 6;
        let flagged = score(&f, &rules());
        assert_eq!(
            reasons(&flagged),
            vec![Reason::NewAccountBurst, Reason::BatchHarvest]
        );
        f.in_store = true;
        assert!(score(&f, &rules()).reasons.is_empty());
        f.member_batch = 11;
        let v = score(&f, &rules());
        assert_eq!(reasons(&v), vec![Reason::BatchHarvest]);
        assert_eq!((v.reasons[0].value, v.reasons[0].limit), (11.0, 10.0));
        // three caps of one batch within a minute is a script's pace, in a store or not
        f.member_batch = 3;
        f.batch_minute = 3;
        assert_eq!(reasons(&score(&f, &rules())), vec![Reason::BatchHarvest]);
        // a factor of 1 makes no difference
        let mut r = rules();
        r.in_store_factor = 1;
        f.batch_minute = 0;
        f.member_batch = 6;
        assert_eq!(
            reasons(&score(&f, &r)),
            vec![Reason::NewAccountBurst, Reason::BatchHarvest]
        );
    }

    #[test]
    fn new_accounts_spread_over_a_prefix_count_against_new_accounts_only() {
        let mut f = first();
        f.fresh = true;
        f.net_members = 3;
        f.net_fresh = 3;
        f.net_ips = 3;
        assert!(
            score(&f, &rules()).reasons.is_empty(),
            "three newcomers in a /24 within an hour happen"
        );
        f.net_members = 4;
        f.net_fresh = 4;
        f.net_ips = 4;
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::FreshAccounts])
        );
        f.fresh = false;
        assert!(score(&f, &rules()).reasons.is_empty());
    }

    #[test]
    fn members_spread_over_a_prefix_are_a_rotated_pool() {
        let mut f = first();
        f.net_members = 6; // a few households on a /24
        f.net_ips = 9;
        assert!(score(&f, &rules()).reasons.is_empty());
        f.net_members = 8;
        f.net_ips = 30;
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::NetShared])
        );
        // one member hopping over addresses of one prefix within the hour
        let mut f = first();
        f.member_net_ips = 2;
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::IpRotation])
        );
    }

    #[test]
    fn one_unregistered_code_is_allowed_and_several_are_not() {
        let mut f = first();
        f.unknown_code = true;
        f.member_unknown = 2;
        assert_eq!(
            score(&f, &rules()).decision,
            Decision::Allow,
            "a brand that registers no batches has no unknown codes"
        );
        f.any_registered = true;
        let off = FraudRules {
            unknown_scans: 0,
            ..rules()
        };
        assert_eq!(score(&f, &off).decision, Decision::Allow, "0 is off");
        let r = rules();
        f.member_unknown = 1;
        assert_eq!(score(&f, &r).decision, Decision::Allow);
        f.member_unknown = 2;
        let v = score(&f, &r);
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Block, vec![Reason::UnknownCode])
        );
        // the same code again by the same member (counted again on the member's side): a
        // duplicate, not a second unknown code
        f.code = CodeSeen::Repeat;
        let v = score(&f, &r);
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Duplicate, vec![Reason::CodeRepeat])
        );
    }

    #[test]
    fn impossible_travel_reviews_and_a_flight_does_not() {
        let mut f = first();
        f.travel_kmh = 700.0;
        assert!(score(&f, &rules()).reasons.is_empty());
        f.travel_kmh = 5_000.0;
        let v = score(&f, &rules());
        assert_eq!((v.decision, v.score), (Decision::Review, 45));
    }

    #[test]
    fn travel_speed_ignores_position_noise_and_same_instant_jumps_are_finite() {
        let t = 1_000_000; // a second in µs
        assert_eq!(profile_kmh((31.23, 121.47, 0), (31.25, 121.5, t)), 0.0);
        let v = profile_kmh((31.23, 121.47, 0), (39.9, 116.4, 3 * 3_600 * t));
        assert!((300.0..400.0).contains(&v), "{v}");
        let v = profile_kmh((31.23, 121.47, 0), (39.9, 116.4, 0));
        assert!(v.is_finite() && v > 1e6, "{v}");
    }

    fn profile_kmh(a: (f64, f64, i64), b: (f64, f64, i64)) -> f32 {
        profile::travel_kmh(a, b, 50.0)
    }

    #[test]
    fn a_new_account_burst_and_batch_harvesting_need_more_than_a_couple_of_scans() {
        let mut f = first();
        f.new_account_scans = 2;
        f.member_batch = 2;
        assert!(
            score(&f, &rules()).reasons.is_empty(),
            "a new member scanning two caps"
        );
        f.new_account_scans = 7;
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::NewAccountBurst])
        );
        let mut f = first();
        f.device_batch = 5;
        assert!(
            score(&f, &rules()).reasons.is_empty(),
            "a shop owner's stock at a human pace is not fraud"
        );
        f.device_batch = 8;
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::BatchHarvest]),
            "eight caps of one batch within minutes are collected caps"
        );
        f.member_rate = [12, 12, 12];
        assert_eq!(
            score(&f, &rules()).decision,
            Decision::Block,
            "at a script's pace it is"
        );
    }

    #[test]
    fn a_new_account_scanning_back_to_back_is_reviewed_and_a_human_pace_is_not() {
        // a new member's first scans, minutes apart
        let mut f = first();
        f.fresh = true;
        f.new_account_scans = 2;
        f.new_account_minute = 1;
        assert!(score(&f, &rules()).reasons.is_empty());
        // a new shop owner scanning stock a few minutes apart
        f.new_account_scans = 4;
        f.member_rate = [1, 4, 4];
        assert!(score(&f, &rules()).reasons.is_empty());
        // a new account's second scan within the minute
        f.new_account_scans = 2;
        f.new_account_minute = 2;
        f.member_rate = [2, 2, 2];
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::NewAccountBurst])
        );
        assert_eq!((v.reasons[0].value, v.reasons[0].limit), (2.0, 1.0));
        // an established member scanning two caps at once, or a member whose age is unknown
        // (first seen soon after the system's memory began): no new-account count
        f.new_account_minute = 0;
        assert!(score(&f, &rules()).reasons.is_empty());
        // off
        f.new_account_minute = 2;
        let off = FraudRules {
            new_account_minute: 0,
            ..rules()
        };
        assert!(score(&f, &off).reasons.is_empty());
    }

    #[test]
    fn three_caps_of_one_batch_within_a_minute_are_collected_caps() {
        let mut f = first();
        f.batch_minute = 2; // two caps of a pack, scanned together
        f.member_batch = 2;
        assert!(score(&f, &rules()).reasons.is_empty());
        f.batch_minute = 3;
        f.member_batch = 3;
        let v = score(&f, &rules());
        assert_eq!(
            (v.decision, reasons(&v)),
            (Decision::Review, vec![Reason::BatchHarvest])
        );
        assert_eq!((v.reasons[0].value, v.reasons[0].limit), (3.0, 2.0));
        // a shop owner: five of one batch over ten minutes, one a minute at most
        let mut f = first();
        f.batch_minute = 1;
        f.member_batch = 5;
        assert!(score(&f, &rules()).reasons.is_empty());
    }

    #[test]
    fn a_flagged_ring_counts_against_its_members_and_cross_region_only_informs() {
        let mut f = first();
        f.ring_size = 6;
        let v = score(&f, &rules());
        assert_eq!((v.decision, v.score), (Decision::Review, 40));
        let mut f = first();
        f.outside_region = true;
        let v = score(&f, &rules());
        assert_eq!((v.decision, v.score), (Decision::Allow, 0));
        assert_eq!(reasons(&v), vec![Reason::CrossRegion]);
    }

    #[test]
    fn shadow_reasons_are_reported_not_enforced() {
        let mut f = first();
        f.code = CodeSeen::Shared;
        f.device_members = 5;
        let r = FraudRules {
            shadow: vec![Reason::CodeShared],
            ..rules()
        };
        let v = score(&f, &r);
        assert_eq!((v.decision, v.score), (Decision::Review, 44));
        assert_eq!(v.shadow_decision, Some(Decision::Block));
        assert!(v
            .reasons
            .iter()
            .any(|c| c.reason == Reason::CodeShared && c.shadow));
    }

    #[test]
    fn thresholds_are_per_campaign() {
        let mut f = first();
        f.device_members = 5;
        let strict = FraudRules {
            review_at: 20,
            block_at: 40,
            ..rules()
        };
        assert_eq!(score(&f, &strict).decision, Decision::Block);
        assert_eq!(score(&f, &rules()).decision, Decision::Review);
    }

    #[test]
    fn reason_names_are_stable_snake_case() {
        for r in Reason::ALL {
            let json = serde_json::to_string(&r).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(Reason::ALL.len(), 18);
    }

    #[test]
    fn a_persons_block_blocks_whatever_the_weights_thresholds_and_shadow_list() {
        let mut r = rules();
        r.block_at = 100;
        r.review_at = 100;
        r.shadow = vec![Reason::Blocked];
        let f = Features {
            code: CodeSeen::Repeat,
            block: Some(Box::new(block::BlockHit {
                on: block::BlockOn::Device,
                value: "d-1".into(),
                campaign: None,
                reference: "R-1".into(),
            })),
            ..first()
        };
        let v = score(&f, &r);
        assert_eq!(
            (v.decision, v.score, v.shadow_decision),
            (Decision::Block, 100, None)
        );
        // a repeat is said (at no points), the block is the score
        assert_eq!(reasons(&v), vec![Reason::CodeRepeat, Reason::Blocked]);
        assert!(v.reasons.iter().all(|c| !c.shadow));
        // the same scan without the block is a duplicate
        let f = Features { block: None, ..f };
        assert_eq!(score(&f, &r).decision, Decision::Duplicate);
    }

    #[test]
    fn prefixes_are_a_slash_24_or_a_slash_64() {
        let v4: std::net::IpAddr = [112, 65, 3, 18].into();
        assert_eq!(net_prefix(&v4), "112.65.3.0/24");
        let v6: std::net::IpAddr = "2408:8207:1:2:aaaa::1".parse().unwrap_or(v4);
        assert_eq!(net_prefix(&v6), "2408:8207:1:2::/64");
    }
}

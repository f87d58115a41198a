//! Business rules in configuration: points, tiers, tags, stock thresholds, store KPIs, scan
//! campaigns. Every field has a default; unknown keys are errors (a typo must not silently
//! fall back to a default).

use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// All rules the entity logic reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Rules {
    /// Points earning, expiry.
    pub points: PointsRules,
    /// Tiers by points earned in a rolling period.
    pub tiers: TierRules,
    /// Tag rules, evaluated on every member change and on timers.
    pub tags: Vec<TagRule>,
    /// Member profile windows and bounds.
    pub member: MemberRules,
    /// Stock thresholds.
    pub stock: StockRules,
    /// Store KPIs.
    pub store: StoreRules,
    /// Rules for campaigns not listed in `campaigns`.
    pub default_campaign: CampaignRules,
    /// Per-campaign rules, by campaign id.
    pub campaigns: BTreeMap<Str, CampaignRules>,
    /// How far behind the latest event time the watermark trails, in seconds: timers (dormant
    /// tags, expiry) fire when the watermark passes them.
    pub watermark_lag_s: i64,
    /// Lateness window, in seconds: an event stamped more than this before the watermark is
    /// refused (`too_late`) instead of applied. It must be under the 7 days for which event ids
    /// are remembered, so every event accepted is one whose repeat is still recognised: a
    /// repeat is either remembered (a duplicate) or older than the window (refused). 0 turns
    /// the window off (old events are applied, and a repeat older than 7 days is caught only by
    /// the entities' own guards).
    pub max_lateness_s: i64,
    /// Most event ids remembered for deduplication (about 54 bytes an id measured at 10 million:
    /// a hash set and a queue per second, see `seen.rs`). Past it each new id makes the oldest
    /// one be forgotten and events that old are refused as `too_late`: under id pressure the
    /// lateness window shrinks, so memory stays bounded and an event is never applied twice.
    /// 0: no bound (ids are kept for the 7-day horizon, however many).
    pub max_remembered_ids: u64,
    /// How the fraud entities keep their windows and sets (the same for every campaign).
    pub fraud: FraudState,
    /// What a scan naming a campaign not in `campaigns` is paid: `pay` (the default) runs it
    /// on `default-campaign`'s rules, points and all; `no-reward` scores and decides it the
    /// same but pays nothing (its decision says `no_reward: not_configured`), so a misspelt
    /// or made-up campaign id spends no points.
    pub unconfigured_campaigns: Unconfigured,
}

/// What scans of a campaign nobody configured are paid (`unconfigured-campaigns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unconfigured {
    /// `default-campaign`'s points.
    #[default]
    Pay,
    /// Nothing.
    NoReward,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            points: PointsRules::default(),
            tiers: TierRules::default(),
            tags: vec![
                TagRule {
                    name: "high_value".into(),
                    when: TagCond::MonetaryOver {
                        days: 90,
                        fen: 100_000,
                    },
                },
                TagRule {
                    name: "dormant".into(),
                    when: TagCond::InactiveFor { days: 60 },
                },
                TagRule {
                    name: "new_product_fan".into(),
                    when: TagCond::BoughtAny {
                        days: 30,
                        skus: Vec::new(),
                    },
                },
                TagRule {
                    name: "price_sensitive".into(),
                    when: TagCond::RedeemShareOver {
                        days: 180,
                        share: 0.5,
                        min_orders: 2,
                    },
                },
            ],
            member: MemberRules::default(),
            stock: StockRules::default(),
            store: StoreRules::default(),
            default_campaign: CampaignRules::default(),
            campaigns: BTreeMap::new(),
            watermark_lag_s: 0,
            max_lateness_s: DEFAULT_MAX_LATENESS_S,
            max_remembered_ids: DEFAULT_MAX_REMEMBERED_IDS,
            fraud: FraudState::default(),
            unconfigured_campaigns: Unconfigured::Pay,
        }
    }
}

/// The default bound on remembered event ids: 20 million, about 0.5-1 GB; at 1,000 events a
/// second that is five and a half hours of ids.
pub const DEFAULT_MAX_REMEMBERED_IDS: u64 = 20_000_000;

/// The default lateness window: six days, a day inside the deduplication horizon.
pub const DEFAULT_MAX_LATENESS_S: i64 = 6 * 86_400;

/// The longest `stock.cancel-unpaid-after-s`: a year.
const MAX_UNPAID_S: i64 = 365 * 86_400;

impl Rules {
    /// The rules of one campaign.
    pub fn campaign(&self, id: &str) -> &CampaignRules {
        self.campaigns.get(id).unwrap_or(&self.default_campaign)
    }

    /// Whether scans of campaign `id` are paid its rules' points: it is configured, or
    /// `unconfigured-campaigns` pays the others.
    pub fn pays(&self, id: &str) -> bool {
        self.unconfigured_campaigns == Unconfigured::Pay || self.campaigns.contains_key(id)
    }

    /// The points a rewarded scan of campaign `id` is paid (0 when it [`pays`](Self::pays)
    /// nothing).
    pub fn campaign_points(&self, id: &str) -> i64 {
        if self.pays(id) {
            self.campaign(id).points.max(0)
        } else {
            0
        }
    }

    /// What the configuration takes but is likely a mistake: a points multiplier for a
    /// channel none of the contract's (a typo such as `tmal`; channels are open, so it is
    /// kept, and applies to events naming that channel).
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .points
            .channel_multiplier
            .keys()
            .filter(|c| !omnistream_schemas::Channel::KNOWN.contains(&c.as_str()))
            .map(|c| {
                let hint = omnistream_schemas::near_channel(c)
                    .map(|h| format!("did you mean `{h}`? "))
                    .unwrap_or_default();
                format!(
                    "points.channel-multiplier.{c}: `{c}` is none of the contract's channels \
                     ({}); {hint}only events naming it exactly get this multiplier",
                    omnistream_schemas::Channel::KNOWN.join(", ")
                )
            })
            .collect();
        // the unpaid timer runs on the newest event time: one sender's clock running fast
        // cancels every channel's unpaid orders early
        if self.stock.cancel_unpaid_after_s > 0 && self.watermark_lag_s == 0 {
            out.push(
                "stock.cancel-unpaid-after-s: with watermark-lag-s = 0, an event stamped ahead \
                 of the others (a sender's clock running fast: the service takes events up to \
                 max-future-s ahead of its own) cancels unpaid orders that much early, and a \
                 `paid` stamped in time that comes after it is refused; set watermark-lag-s \
                 to how far clocks and payments may lag"
                    .to_string(),
            );
        }
        out
    }

    /// Checks values serde cannot: returns the first problem as `(key, why)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, why: &str| Err((k.to_string(), why.to_string()));
        if self.points.fen_per_point <= 0 {
            return bad("points.fen-per-point", "must be > 0");
        }
        if self.points.expiry_days <= 0 {
            return bad("points.expiry-days", "must be > 0");
        }
        if !(0..=1_000_000).contains(&self.points.redeem_fen_per_point) {
            return bad(
                "points.redeem-fen-per-point",
                "must be 0 (not checked) to 1000000",
            );
        }
        for (k, m) in self
            .points
            .channel_multiplier
            .iter()
            .chain(self.points.sku_multiplier.iter())
        {
            if !(m.is_finite() && *m >= 0.0 && *m <= 100.0) {
                return Err((
                    format!("points multiplier {k}"),
                    "must be in 0..=100".into(),
                ));
            }
        }
        for (i, pr) in self.points.promotions.iter().enumerate() {
            let key = format!("points.promotions[{i}] ({})", pr.name);
            let (from, to) = (day_number(&pr.from), day_number(&pr.to));
            if from.is_none() || to.is_none() {
                return Err((key, "from and to must be dates, YYYY-MM-DD".into()));
            }
            if from > to {
                return Err((key, format!("from {} is after to {}", pr.from, pr.to)));
            }
            if !(pr.multiplier.is_finite() && (0.0..=100.0).contains(&pr.multiplier)) {
                return Err((key, "multiplier must be in 0..=100".into()));
            }
            if pr
                .utc_offset_minutes
                .is_some_and(|o| !(-840..=840).contains(&o))
            {
                return Err((
                    key,
                    "utc-offset-minutes must be -840..=840 minutes (UTC-14:00 to UTC+14:00)".into(),
                ));
            }
        }
        if self
            .tiers
            .levels
            .windows(2)
            .any(|w| w[0].min_earned >= w[1].min_earned)
        {
            return bad(
                "tiers.levels",
                "min-earned must increase from level to level",
            );
        }
        if let Some(l) = self.tiers.levels.first().filter(|l| l.min_earned <= 0) {
            return Err((
                format!("tiers.levels.{}", l.name),
                "min-earned must be >= 1 (at 0 every member, even one who never earned, is in \
                 the level: that is `base`)"
                    .into(),
            ));
        }
        let names = self.tiers.names();
        for (i, n) in names.clone().enumerate() {
            if n.trim().is_empty() || n.chars().any(char::is_control) {
                return bad(
                    "tiers",
                    "a tier name (base or a level's) is empty or holds a control character",
                );
            }
            if names.clone().take(i).any(|o| o == n) {
                return Err((
                    format!("tiers.{n}"),
                    "a second tier of this name (base and levels must all differ)".into(),
                ));
            }
        }
        // (no levels: no tiers to reckon, and the period is not read)
        if !self.tiers.levels.is_empty()
            && !(1..=self.member.history_days).contains(&self.tiers.period_days)
        {
            return bad(
                "tiers.period-days",
                "must be in 1..=member.history-days (a member keeps its days that long)",
            );
        }
        if !(0..=3660).contains(&self.tiers.downgrade_grace_days) {
            return bad(
                "tiers.downgrade-grace-days",
                "must be in 0..=3660 (0: downgrade at once)",
            );
        }
        if self
            .member
            .rfm_windows_days
            .iter()
            .any(|d| *d <= 0 || *d > self.member.history_days)
        {
            return bad(
                "member.rfm-windows-days",
                "each window must be in 1..=member.history-days",
            );
        }
        for (i, t) in self.tags.iter().enumerate() {
            // a second rule of one name: the member's tag would be one, its meaning either
            if self.tags[..i].iter().any(|o| o.name == t.name) {
                return Err((
                    format!("tags.{}", t.name),
                    "a second tag rule of this name (names must be unique)".into(),
                ));
            }
            if t.name.trim().is_empty() || t.name.chars().any(char::is_control) {
                return bad(
                    "tags",
                    "a tag rule's name is empty or holds a control character",
                );
            }
            let tag = |why: &str| Err((format!("tags.{}", t.name), why.to_string()));
            if t.when.days() < 1 {
                return tag("days must be >= 1");
            }
            match &t.when {
                TagCond::RedeemShareOver {
                    share, min_orders, ..
                } => {
                    if !(share.is_finite() && (0.0..=1.0).contains(share)) {
                        return tag("share must be in 0..=1");
                    }
                    if *min_orders < 1 {
                        return tag("min-orders must be >= 1");
                    }
                }
                TagCond::OrdersAtLeast { count, .. }
                | TagCond::ScansAtLeast { count, .. }
                | TagCond::ClicksAtLeast { count, .. }
                    if *count < 1 =>
                {
                    return tag("count must be >= 1 (at 0 every member holds the tag)");
                }
                TagCond::MonetaryOver { fen, .. } if *fen < 0 => {
                    return tag("fen must be >= 0");
                }
                _ => {}
            }
            if t.when.days() > self.member.history_days {
                return Err((
                    format!("tags.{}", t.name),
                    "window longer than member.history-days".into(),
                ));
            }
        }
        if !(0..=MAX_UNPAID_S).contains(&self.stock.cancel_unpaid_after_s) {
            return bad(
                "stock.cancel-unpaid-after-s",
                "must be 0..=31536000 seconds (0: unpaid orders are never cancelled; at most a year)",
            );
        }
        if self.watermark_lag_s < 0 {
            return bad("watermark-lag-s", "must be >= 0");
        }
        if !(1..=3660).contains(&self.store.kpi_days) {
            return bad(
                "store.kpi-days",
                "must be 1..=3660 days (a store keeps a bucket an hour and a day for as long)",
            );
        }
        if self
            .store
            .utc_offset_minutes
            .is_some_and(|m| !(-840..=840).contains(&m))
        {
            return bad(
                "store.utc-offset-minutes",
                "must be -840..=840 minutes (UTC-14:00 to UTC+14:00)",
            );
        }
        if !(0..=8760).contains(&self.store.conversion_window_hours) {
            return bad(
                "store.conversion-window-hours",
                "must be 0..=8760 hours (at most a year)",
            );
        }
        if !(0..crate::engine::DEDUP_HORIZON_US / 1_000_000).contains(&self.max_lateness_s) {
            return bad(
                "max-lateness-s",
                "must be between 0 (off) and 604799 (under 7 days, how long event ids are \
                 remembered): an older event could not be told from a repeat",
            );
        }
        self.fraud.check()?;
        let cap = u32::try_from(self.fraud.track_members).unwrap_or(u32::MAX);
        for (name, c) in std::iter::once(("default-campaign".to_string(), &self.default_campaign))
            .chain(
                self.campaigns
                    .iter()
                    .map(|(id, c)| (format!("campaigns.{id}"), c)),
            )
        {
            if c.points < 0 {
                return Err((format!("{name}.points"), "must be >= 0".into()));
            }
            if c.budget < 0 {
                return Err((
                    format!("{name}.budget"),
                    "must be >= 0 (0: no limit)".into(),
                ));
            }
            c.fraud
                .check(cap)
                .map_err(|(k, why)| (format!("{name}.fraud.{k}"), why))?;
        }
        Ok(())
    }
}

/// How members earn and lose points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct PointsRules {
    /// Fen of order value per base point (100: one point per yuan).
    pub fen_per_point: i64,
    /// Multiplier per channel (missing: 1).
    pub channel_multiplier: BTreeMap<Str, f64>,
    /// Multiplier per SKU, applied to that SKU's lines (missing: 1).
    pub sku_multiplier: BTreeMap<Str, f64>,
    /// Points expire this many days after they were earned, oldest first.
    pub expiry_days: i64,
    /// An order's points record is kept this long after its last change (returns after that
    /// reverse nothing).
    pub order_days: i64,
    /// Promotions: orders placed on their days earn more (double points on Double 11).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<Promotion>,
    /// What a point paid with is worth, in fen (1: 100 points pay one yuan): an order whose
    /// `points_redeemed` are worth more than its value is refused (`points_over_value`), a
    /// channel's mistake rather than a member's wish. 0 (the default): not checked.
    #[serde(skip_serializing_if = "is_zero")]
    pub redeem_fen_per_point: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A points promotion: a consumer order placed from `from` to `to` (its local date, both
/// included), in one of `channels` (none: every channel), earns `multiplier` times its points,
/// on top of the channel and SKU multipliers. Where promotions overlap, the largest applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Promotion {
    /// A name for people (the configuration's diff and errors name it).
    pub name: Str,
    /// First day, `YYYY-MM-DD`.
    pub from: Str,
    /// Last day, `YYYY-MM-DD` (the same as `from` for one day).
    pub to: Str,
    /// Points earned are multiplied by this (0..=100).
    pub multiplier: f64,
    /// The channels it applies in (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Str>,
    /// The UTC offset its days are reckoned in, in minutes (480: China time); absent, each
    /// order's own (its `ts`'s offset), so a feed stamped in UTC would reckon them in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i16>,
}

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD` date; None when it is not one.
pub fn day_number(date: &str) -> Option<i64> {
    let ok = date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-';
    if !ok {
        return None;
    }
    let t = omnistream_schemas::EventTime::parse(&format!("{date}T00:00:00Z")).ok()?;
    Some(t.local_day())
}

impl PointsRules {
    /// The multiplier of the promotions that cover an order placed at `at` in `channel` (1
    /// when none does): on one of its days, reckoned in its offset or the order's own.
    pub fn promotion(&self, at: omnistream_schemas::EventTime, channel: &str) -> f64 {
        self.promotions
            .iter()
            .filter(|p| p.channels.is_empty() || p.channels.iter().any(|c| c == channel))
            .filter(|p| {
                let offset_min = p.utc_offset_minutes.unwrap_or(at.offset_min);
                let day = omnistream_schemas::EventTime { offset_min, ..at }.local_day();
                let (from, to) = (day_number(&p.from), day_number(&p.to));
                from.is_some_and(|f| f <= day) && to.is_some_and(|t| day <= t)
            })
            .map(|p| p.multiplier)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            .unwrap_or(1.0)
    }
}

impl Default for PointsRules {
    fn default() -> Self {
        PointsRules {
            fen_per_point: 100,
            channel_multiplier: BTreeMap::new(),
            sku_multiplier: BTreeMap::new(),
            expiry_days: 365,
            order_days: 120,
            promotions: Vec::new(),
            redeem_fen_per_point: 0,
        }
    }
}

/// Tiers by points earned over a rolling period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct TierRules {
    /// Name of the tier below every level.
    pub base: Str,
    /// Levels, by increasing threshold.
    pub levels: Vec<TierLevel>,
    /// The rolling period, in days.
    pub period_days: i64,
    /// A member keeps a tier at least this many days after last qualifying for it
    /// (0: downgrade at once).
    pub downgrade_grace_days: i64,
}

impl TierRules {
    /// Every tier's name: `base`, then the levels'.
    pub fn names(&self) -> impl Iterator<Item = &Str> + Clone {
        std::iter::once(&self.base).chain(self.levels.iter().map(|l| &l.name))
    }
}

impl Default for TierRules {
    fn default() -> Self {
        TierRules {
            base: "member".into(),
            levels: vec![
                TierLevel {
                    name: "silver".into(),
                    min_earned: 1_000,
                },
                TierLevel {
                    name: "gold".into(),
                    min_earned: 5_000,
                },
                TierLevel {
                    name: "platinum".into(),
                    min_earned: 20_000,
                },
            ],
            period_days: 365,
            downgrade_grace_days: 30,
        }
    }
}

/// One tier level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TierLevel {
    /// Name.
    pub name: Str,
    /// Points earned in the period to qualify.
    pub min_earned: i64,
}

/// A tag and the condition that turns it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TagRule {
    /// Tag name.
    pub name: Str,
    /// Condition.
    pub when: TagCond,
}

/// A tag condition over the member's recent activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "rule", rename_all = "kebab-case")]
pub enum TagCond {
    /// Order value in the last `days` above `fen`.
    #[serde(rename_all = "kebab-case")]
    MonetaryOver {
        /// Window.
        days: i64,
        /// Threshold in fen.
        fen: i64,
    },
    /// At least `count` orders in the last `days`.
    #[serde(rename_all = "kebab-case")]
    OrdersAtLeast {
        /// Window.
        days: i64,
        /// Threshold.
        count: u32,
    },
    /// No activity for `days` (turns on by timer, without a new event).
    #[serde(rename_all = "kebab-case")]
    InactiveFor {
        /// Days.
        days: i64,
    },
    /// Bought one of `skus` in the last `days`.
    #[serde(rename_all = "kebab-case")]
    BoughtAny {
        /// Window.
        days: i64,
        /// SKUs (e.g. new products).
        skus: Vec<Str>,
    },
    /// At least `count` campaign scans in the last `days`.
    #[serde(rename_all = "kebab-case")]
    ScansAtLeast {
        /// Window.
        days: i64,
        /// Threshold.
        count: u32,
    },
    /// At least `count` ad clicks in the last `days`.
    #[serde(rename_all = "kebab-case")]
    ClicksAtLeast {
        /// Window.
        days: i64,
        /// Threshold.
        count: u32,
    },
    /// Of at least `min_orders` orders in the last `days`, a share of at least `share` paid
    /// partly with points.
    #[serde(rename_all = "kebab-case")]
    RedeemShareOver {
        /// Window.
        days: i64,
        /// Share, 0..=1.
        share: f64,
        /// Minimum orders before the tag can apply.
        min_orders: u32,
    },
}

impl TagCond {
    /// The window the condition looks back over, in days.
    pub fn days(&self) -> i64 {
        match self {
            TagCond::MonetaryOver { days, .. }
            | TagCond::OrdersAtLeast { days, .. }
            | TagCond::InactiveFor { days }
            | TagCond::BoughtAny { days, .. }
            | TagCond::ScansAtLeast { days, .. }
            | TagCond::ClicksAtLeast { days, .. }
            | TagCond::RedeemShareOver { days, .. } => *days,
        }
    }

    /// The window of the days of activity the condition sums, in days; None when it reads
    /// no days (inactivity, SKUs bought).
    pub fn day_window(&self) -> Option<i64> {
        match self {
            TagCond::MonetaryOver { days, .. }
            | TagCond::OrdersAtLeast { days, .. }
            | TagCond::ScansAtLeast { days, .. }
            | TagCond::ClicksAtLeast { days, .. }
            | TagCond::RedeemShareOver { days, .. } => Some(*days),
            TagCond::InactiveFor { .. } | TagCond::BoughtAny { .. } => None,
        }
    }
}

/// Member profile windows and bounds on state size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct MemberRules {
    /// X-RFM windows reported in profiles, in days.
    pub rfm_windows_days: Vec<i64>,
    /// Daily activity is kept this many days (the longest window any rule may use).
    pub history_days: i64,
    /// Most stores remembered per member (the most recent are kept).
    pub max_stores: usize,
    /// Most identities bound to one member; more are not bound (and reported).
    pub max_identities: usize,
}

impl Default for MemberRules {
    fn default() -> Self {
        MemberRules {
            rfm_windows_days: vec![30, 90, 365],
            history_days: 400,
            max_stores: 16,
            max_identities: 16,
        }
    }
}

/// Stock thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct StockRules {
    /// ATP at or below this is low stock.
    pub low_stock_atp: i64,
    /// A consumer order accepted and neither paid, cancelled nor fulfilled this many seconds
    /// after it was placed is cancelled: its stock released, redeemed points given back
    /// (`order_status` `cancelled` with the reason in `detail`). Event time: once the
    /// watermark (the newest event time less `watermark-lag-s`) passes that moment, so a
    /// `paid` stamped before it but arriving after a later event is refused; the lag is what
    /// protects payments that arrive late. 0, the default: never, the channel's own
    /// `cancelled` does it. Dealer orders are left to the dealer's credit. A change applies
    /// to orders accepted after it.
    pub cancel_unpaid_after_s: i64,
}

impl Default for StockRules {
    fn default() -> Self {
        StockRules {
            low_stock_atp: 10,
            cancel_unpaid_after_s: 0,
        }
    }
}

/// Store KPI settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct StoreRules {
    /// A visitor who orders within this many hours of a visit counts as converted.
    pub conversion_window_hours: i64,
    /// Hourly and daily KPI buckets are kept this many days.
    pub kpi_days: i64,
    /// The UTC offset, in minutes (-840..=840; 480 is China time), that stores' hours and
    /// days are counted in whatever offset each event was sent with, so a POS sending
    /// `+08:00` and a sales-rep app sending UTC fill the same buckets. Not set: each event's
    /// own offset, as for members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i16>,
}

impl Default for StoreRules {
    fn default() -> Self {
        StoreRules {
            conversion_window_hours: 24,
            kpi_days: 35,
            utc_offset_minutes: None,
        }
    }
}

/// A scan campaign's reward rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct CampaignRules {
    /// Points per rewarded scan.
    pub points: i64,
    /// Most rewarded scans per member per local day.
    pub daily_cap: u32,
    /// Total points the campaign may pay (0: no limit).
    pub budget: i64,
    /// How the campaign judges scans for fraud.
    pub fraud: FraudRules,
}

impl Default for CampaignRules {
    fn default() -> Self {
        CampaignRules {
            points: 10,
            daily_cap: 3,
            budget: 0,
            fraud: FraudRules::default(),
        }
    }
}

/// How the fraud entities keep state: windows and bounds shared by every campaign (the
/// entities count for all campaigns at once; each campaign judges the counts with its own
/// [`FraudRules`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct FraudState {
    /// Window for distinct members per device, in hours (families share a phone for years;
    /// farms cycle through accounts within a day).
    pub device_members_window_h: i64,
    /// Window for distinct members per IP and prefix, in minutes.
    pub net_members_window_min: i64,
    /// Most members a device, IP or prefix remembers; member counts saturate here.
    pub track_members: usize,
    /// A member first seen this many minutes ago or less is a new account (burst signal).
    pub new_account_min: i64,
    /// A member first seen this many hours ago or less is a fresh account (rotated accounts).
    pub fresh_account_h: i64,
    /// Fresh accounts that follow each other on one device within this many minutes are
    /// account switching (a farm's phone); a household's new members mostly come hours
    /// apart. Shorter spares more households and misses more of a ring's slower accounts
    /// (BENCHMARKS.md, fraud quality, has the trade measured at 30, 60 and 120).
    pub crowd_fresh_window_min: i64,
    /// Window for same-batch scans by a member or device, in minutes.
    pub batch_window_min: i64,
    /// Most recent scans a member or device remembers for batch counts.
    pub track_batch_scans: usize,
    /// Consecutive located scans closer than this (km) are never impossible travel: GPS and
    /// cell-tower positions jump a few km.
    pub travel_min_km: f64,
    /// A device links its members into rings only while it has at most this many (a shared
    /// phone, not a store's kiosk scanned by every customer).
    pub ring_device_max_members: u32,
    /// An IP links its members only while it has at most this many in its window (0: IPs
    /// never link). Off by default: dynamic addresses are handed from one household to
    /// the next, and random links among many members percolate into one giant "ring".
    pub ring_ip_max_members: u32,
    /// ... and while it carried at most this many scans in the last day.
    pub ring_link_max_ip_scans: u32,
    /// Rings are kept per epoch of this many days: a component only grows, so without an
    /// end every chance link would add up over months.
    pub ring_epoch_days: i64,
    /// A ring is flagged when it reaches this many members.
    pub ring_flag_size: u32,
    /// Most member ids a ring remembers (to tell them it was flagged); the count goes on.
    pub ring_track: usize,
    /// Most reviews a member keeps on hold; beyond it the oldest is refused.
    pub max_held_reviews: usize,
    /// Whether a member's first-seen time says "new" from the first event on. Off (the
    /// default), the new-account signals (`fresh_accounts`, `new_account_pace`, a new
    /// account's per-minute rate) wait until the system's memory reaches back further than
    /// `fresh-account-h`: on a cold start every member is first seen recently, so age says
    /// nothing. On for a programme whose members are all new (a launch), or a deployment
    /// that loaded its members' history before the campaign: a device farm is then caught
    /// from the first day.
    pub ages_known_from_start: bool,
}

impl Default for FraudState {
    fn default() -> Self {
        FraudState {
            device_members_window_h: 24,
            net_members_window_min: 60,
            track_members: 64,
            new_account_min: 60,
            fresh_account_h: 24,
            crowd_fresh_window_min: 60,
            batch_window_min: 10,
            track_batch_scans: 64,
            travel_min_km: 50.0,
            ring_device_max_members: 6,
            ring_ip_max_members: 0,
            ring_link_max_ip_scans: 100,
            ring_epoch_days: 7,
            ring_flag_size: 6,
            ring_track: 256,
            max_held_reviews: 32,
            ages_known_from_start: false,
        }
    }
}

impl FraudState {
    /// The fresh-account window in µs: a member first seen this recently is new, and a
    /// device in ordinary use for longer is not.
    pub fn fresh_account_us(&self) -> i64 {
        self.fresh_account_h * 3_600_000_000
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, why: &str| Err((format!("fraud.{k}"), why.to_string()));
        if self.device_members_window_h <= 0 || self.net_members_window_min <= 0 {
            return bad("device-members-window-h", "windows must be > 0");
        }
        if self.new_account_min <= 0 || self.fresh_account_h <= 0 || self.batch_window_min <= 0 {
            return bad("new-account-min", "windows must be > 0");
        }
        if self.crowd_fresh_window_min <= 0 {
            return bad("crowd-fresh-window-min", "must be > 0");
        }
        if !(1..=4096).contains(&self.track_members) {
            return bad("track-members", "must be in 1..=4096");
        }
        if !(1..=4096).contains(&self.track_batch_scans) {
            return bad("track-batch-scans", "must be in 1..=4096");
        }
        if self.max_held_reviews == 0 {
            // a review would refuse its own hold while its decision says it holds the points
            return bad("max-held-reviews", "must be >= 1");
        }
        if self.ring_epoch_days <= 0 {
            return bad("ring-epoch-days", "must be > 0");
        }
        if !(1..=65_536).contains(&self.ring_track) || self.ring_flag_size < 2 {
            return bad("ring-track", "must be in 1..=65536, ring-flag-size >= 2");
        }
        if !(self.travel_min_km.is_finite() && self.travel_min_km >= 0.0) {
            return bad("travel-min-km", "must be >= 0");
        }
        Ok(())
    }
}

/// A campaign's fraud judgement: thresholds, limits, weights and shadow rules. Every limit is
/// "more than this is suspicious"; a counted signal over its limit adds `weight × min(value /
/// limit, 2)` points, a yes/no signal (code shared, unknown code, impossible travel, cross
/// region) its weight; the score (at most 100) is compared with `review-at` and `block-at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct FraudRules {
    /// A score at or above this sends the scan to review.
    pub review_at: u8,
    /// A score at or above this blocks the scan.
    pub block_at: u8,
    /// Codes matching no registered batch prefix count as `unknown_code` even for SKUs
    /// without registered batches (codes of a SKU with registered batches always do).
    pub require_registered_codes: bool,
    /// Reasons scored and reported but not enforced (snake_case reason names).
    pub shadow: Vec<crate::fraud::Reason>,
    /// Scans per member in a minute, hour, day.
    pub member_rate: [u32; 3],
    /// Scans per device in a minute, hour, day.
    pub device_rate: [u32; 3],
    /// Scans per IP in a minute, hour, day (high: NATs carry many people).
    pub ip_rate: [u32; 3],
    /// Distinct members per device in its window (a family shares a phone).
    pub device_members: u32,
    /// Distinct members per IP in its window: the NAT tolerance.
    pub ip_members: u32,
    /// Distinct members per /24 or /64 in its window, counted no higher than the distinct
    /// addresses they came from (many members behind one NAT address are `ip-members`).
    pub net_members: u32,
    /// Distinct fresh accounts per IP in its window.
    pub ip_fresh: u32,
    /// Distinct fresh accounts per prefix in its window, counted no higher than the distinct
    /// addresses.
    pub net_fresh: u32,
    /// Distinct fresh accounts within `fraud.crowd-fresh-window-min` on a device that no
    /// established member used in its window and that was not in ordinary use before (account
    /// switching on a farm's phone; a household's phone carries its established members).
    pub crowd_fresh: u32,
    /// ... and within the device's whole window (a household's new members come hours
    /// apart, and rarely three of them in a day).
    pub crowd_fresh_day: u32,
    /// Distinct addresses of one prefix a member used within the hour.
    pub member_net_ips: u32,
    /// Scans of unregistered codes (of SKUs without registered batches) by one member in the
    /// batch window; beyond it they count as `unknown_code` at half its weight and up (0:
    /// off). Only at a brand that registers batches at all: one that registers none would
    /// flag every member's second scan.
    pub unknown_scans: u32,
    /// Speed between consecutive scans of a member above which travel is impossible, km/h.
    pub travel_kmh: f64,
    /// Scans within ten minutes by a new account.
    pub new_account_scans: u32,
    /// Scans within a minute by a new account (0: off): back-to-back scans, not a person
    /// scanning what they bought one by one.
    pub new_account_minute: u32,
    /// Scans of one batch by one member or device in the batch window.
    pub batch_scans: u32,
    /// Scans of one batch by one member or device within a minute.
    pub batch_scans_minute: u32,
    /// `new-account-scans` and `batch-scans` are multiplied by this for a scan naming a store
    /// the member is visiting by the store's record (a `visit` event covering the scan's
    /// time): a shop owner scanning stock, a customer scanning a shelf of purchases. The
    /// per-minute limits are not (1: no difference).
    pub in_store_factor: u32,
    /// Ring size counted against its members.
    pub ring_size: u32,
    /// Points per signal.
    pub weights: Weights,
}

impl Default for FraudRules {
    fn default() -> Self {
        FraudRules {
            review_at: 40,
            block_at: 70,
            require_registered_codes: false,
            shadow: Vec::new(),
            member_rate: [6, 40, 80],
            device_rate: [8, 60, 120],
            ip_rate: [60, 1_000, 10_000],
            device_members: 4,
            ip_members: 40,
            net_members: 6,
            ip_fresh: 40,
            net_fresh: 3,
            crowd_fresh: 1,
            crowd_fresh_day: 2,
            member_net_ips: 1,
            unknown_scans: 1,
            travel_kmh: 800.0,
            new_account_scans: 5,
            new_account_minute: 1,
            batch_scans: 5,
            batch_scans_minute: 2,
            in_store_factor: 2,
            ring_size: 6,
            weights: Weights::default(),
        }
    }
}

impl FraudRules {
    fn check(&self, cap: u32) -> Result<(), (String, String)> {
        let bad = |k: &str, why: &str| Err((k.to_string(), why.to_string()));
        if self.review_at == 0 || self.review_at > self.block_at || self.block_at > 100 {
            return bad("review-at", "need 0 < review-at <= block-at <= 100");
        }
        for (k, v) in [
            ("device-members", self.device_members),
            ("ip-members", self.ip_members),
            ("net-members", self.net_members),
            ("ip-fresh", self.ip_fresh),
            ("net-fresh", self.net_fresh),
            ("crowd-fresh", self.crowd_fresh),
            ("crowd-fresh-day", self.crowd_fresh_day),
        ] {
            if v >= cap {
                return bad(
                    k,
                    "must be below fraud.track-members, where counts saturate",
                );
            }
        }
        if !(self.travel_kmh.is_finite() && self.travel_kmh > 0.0) {
            return bad("travel-kmh", "must be > 0");
        }
        if self.in_store_factor == 0 {
            return bad("in-store-factor", "must be >= 1 (1: no difference)");
        }
        if self.shadow.contains(&crate::fraud::Reason::Blocked) {
            return bad(
                "shadow",
                "`blocked` is a person's block, not a rule: lift the block instead",
            );
        }
        Ok(())
    }
}

/// Points each signal adds at its limit (up to twice that far over it), 0..=100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Weights {
    /// Another member scanned the code first.
    pub code_shared: u8,
    /// No registered batch matches (when required).
    pub unknown_code: u8,
    /// Member velocity.
    pub member_velocity: u8,
    /// Device velocity.
    pub device_velocity: u8,
    /// IP velocity.
    pub ip_velocity: u8,
    /// Members per device.
    pub device_shared: u8,
    /// Members per IP.
    pub ip_shared: u8,
    /// Members per prefix.
    pub net_shared: u8,
    /// Fresh accounts per IP or prefix.
    pub fresh_accounts: u8,
    /// Impossible travel.
    pub impossible_travel: u8,
    /// New-account burst.
    pub new_account_burst: u8,
    /// A new account scanning back to back (flat, not graded).
    pub new_account_pace: u8,
    /// Batch harvesting.
    pub batch_harvest: u8,
    /// Flagged ring.
    pub ring: u8,
    /// Cross-region diversion (0: reported against the dealer, not the consumer).
    pub cross_region: u8,
    /// A member hopping over addresses of one prefix.
    pub ip_rotation: u8,
    /// A code of a batch registered for another SKU than the scan's (alone: a review).
    pub sku_mismatch: u8,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            code_shared: 100,
            unknown_code: 80,
            member_velocity: 30,
            device_velocity: 20,
            ip_velocity: 15,
            device_shared: 35,
            ip_shared: 10,
            net_shared: 35,
            fresh_accounts: 30,
            impossible_travel: 45,
            new_account_burst: 35,
            new_account_pace: 40,
            batch_harvest: 35,
            ring: 40,
            cross_region: 0,
            ip_rotation: 22,
            sku_mismatch: 45,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_round_trip_through_toml() {
        let r = Rules::default();
        assert_eq!(r.check(), Ok(()));
        let text = toml::to_string(&r).unwrap();
        let back: Rules = toml::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key() {
        let e = toml::from_str::<Rules>("[points]\nfen-per-pont = 5\n").unwrap_err();
        assert!(e.to_string().contains("fen-per-pont"), "{e}");
        let r: Rules = toml::from_str("[points]\nfen-per-point = 0\n").unwrap();
        assert_eq!(r.check().unwrap_err().0, "points.fen-per-point");
        let r: Rules = toml::from_str(
            "[[tags]]\nname = \"vip\"\nwhen = { rule = \"monetary-over\", days = 30, fen = 5 }\n",
        )
        .unwrap();
        assert_eq!(r.tags.len(), 1);
        let twice =
            "[[tags]]\nname = \"x\"\nwhen = { rule = \"clicks-at-least\", days = 7, count = 1 }\n";
        let r: Rules = toml::from_str(&format!("{twice}{twice}")).unwrap();
        assert_eq!(
            r.check().unwrap_err(),
            (
                "tags.x".into(),
                "a second tag rule of this name (names must be unique)".into()
            )
        );
        // a share that is not a number would not even be stored (JSON has no NaN)
        for share in ["nan", "inf", "1.5", "-0.1"] {
            let r: Rules = toml::from_str(&format!(
                "[[tags]]\nname = \"ps\"\nwhen = {{ rule = \"redeem-share-over\", days = 30, share = {share}, min-orders = 2 }}\n"
            ))
            .unwrap();
            assert_eq!(
                r.check().unwrap_err(),
                ("tags.ps".into(), "share must be in 0..=1".into()),
                "{share}"
            );
        }
    }

    #[test]
    fn promotions_cover_their_days_and_channels_and_bad_ones_are_refused() {
        let r: Rules = toml::from_str(
            "[[points.promotions]]\nname = \"d11\"\nfrom = \"2026-11-11\"\nto = \"2026-11-11\"\nmultiplier = 2.0\n\
             [[points.promotions]]\nname = \"tmall week\"\nfrom = \"2026-11-10\"\nto = \"2026-11-16\"\nmultiplier = 3.0\nchannels = [\"tmall\"]\n",
        )
        .unwrap();
        assert_eq!(r.check(), Ok(()));
        assert_eq!(day_number("1970-01-02"), Some(1));
        let at = |s: &str| omnistream_schemas::EventTime::parse(s).unwrap();
        let p = &r.points;
        assert_eq!(p.promotion(at("2026-11-11T10:00:00+08:00"), "mall"), 2.0);
        assert_eq!(
            p.promotion(at("2026-11-11T10:00:00+08:00"), "tmall"),
            3.0,
            "the largest"
        );
        assert_eq!(p.promotion(at("2026-11-12T10:00:00+08:00"), "mall"), 1.0);
        assert_eq!(p.promotion(at("2026-11-16T23:00:00+08:00"), "tmall"), 3.0);
        assert_eq!(p.promotion(at("2026-11-17T00:00:00+08:00"), "tmall"), 1.0);
        // each order's own offset, unless the promotion names one: 20:00Z on the 10th is the
        // 11th in China
        let utc_evening = at("2026-11-10T20:00:00Z");
        assert_eq!(p.promotion(utc_evening, "mall"), 1.0);
        let mut china = r.clone();
        china.points.promotions[0].utc_offset_minutes = Some(480);
        assert_eq!(china.check(), Ok(()));
        assert_eq!(china.points.promotion(utc_evening, "mall"), 2.0);
        china.points.promotions[0].utc_offset_minutes = Some(900);
        assert!(china.check().unwrap_err().1.contains("-840..=840"));
        let back: Rules = toml::from_str(&toml::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        for (body, why) in [
            (
                "from = \"2026-11-12\"\nto = \"2026-11-11\"\nmultiplier = 2.0",
                "after",
            ),
            (
                "from = \"11/11/2026\"\nto = \"2026-11-11\"\nmultiplier = 2.0",
                "YYYY-MM-DD",
            ),
            (
                "from = \"2026-11-11\"\nto = \"2026-11-11\"\nmultiplier = 200.0",
                "0..=100",
            ),
        ] {
            let r: Rules =
                toml::from_str(&format!("[[points.promotions]]\nname = \"x\"\n{body}\n")).unwrap();
            let (key, e) = r.check().unwrap_err();
            assert_eq!(key, "points.promotions[0] (x)");
            assert!(e.contains(why), "{e}");
        }
        let e = toml::from_str::<Rules>(
            "[[points.promotions]]\nname = \"x\"\nfrom = \"2026-11-11\"\nto = \"2026-11-11\"\nmultiplier = 2.0\nchanels = []\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("chanels"), "{e}");
    }

    /// Values a busy manager mistypes that serde takes but that would quietly give wrong
    /// tiers or tags are refused, naming the key.
    #[test]
    fn tier_and_tag_values_that_would_mislead_are_refused() {
        let level = |name: &str, min: i64| {
            format!("[[tiers.levels]]\nname = \"{name}\"\nmin-earned = {min}\n")
        };
        let tag =
            |name: &str, when: &str| format!("[[tags]]\nname = \"{name}\"\nwhen = {{ {when} }}\n");
        for (text, key) in [
            (
                "[tiers]\nperiod-days = 0\n".to_string(),
                "tiers.period-days",
            ),
            (
                "[tiers]\nperiod-days = 999\n".to_string(),
                "tiers.period-days",
            ),
            (
                "[tiers]\ndowngrade-grace-days = -1\n".to_string(),
                "tiers.downgrade-grace-days",
            ),
            (level("silver", -10), "tiers.levels.silver"),
            (level("silver", 0), "tiers.levels.silver"),
            (
                format!("{}{}", level("silver", 10), level("silver", 20)),
                "tiers.silver",
            ),
            (
                format!("[tiers]\nbase = \"silver\"\n{}", level("silver", 10)),
                "tiers.silver",
            ),
            (level(" ", 10), "tiers"),
            (
                tag("", r#"rule = "orders-at-least", days = 90, count = 2"#),
                "tags",
            ),
            (
                tag("rb", r#"rule = "orders-at-least", days = 90, count = 0"#),
                "tags.rb",
            ),
            (
                tag("rb", r#"rule = "clicks-at-least", days = 0, count = 1"#),
                "tags.rb",
            ),
            (tag("rb", r#"rule = "inactive-for", days = 0"#), "tags.rb"),
            (
                tag("rb", r#"rule = "monetary-over", days = 9, fen = -1"#),
                "tags.rb",
            ),
            (
                tag(
                    "rb",
                    r#"rule = "redeem-share-over", days = 9, share = 0.5, min-orders = 0"#,
                ),
                "tags.rb",
            ),
        ] {
            let r: Rules = toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.check().map_err(|e| e.0), Err(key.to_string()), "{text}");
        }
        // a channel none of the contract's is taken (channels are open) but warned of
        let r: Rules =
            toml::from_str("[points.channel-multiplier]\ntmal = 2.0\ntmall = 2.0\n").unwrap();
        assert_eq!(r.check(), Ok(()));
        let w = r.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("points.channel-multiplier.tmal"), "{w:?}");
        // the unpaid timer on the newest event time, with no lag: one fast clock cancels early
        let r: Rules = toml::from_str("[stock]\ncancel-unpaid-after-s = 1800\n").unwrap();
        let w = r.warnings();
        assert!(
            w.len() == 1
                && w[0].starts_with("stock.cancel-unpaid-after-s: with watermark-lag-s = 0"),
            "{w:?}"
        );
        let lagged = "watermark-lag-s = 120\n[stock]\ncancel-unpaid-after-s = 1800\n";
        let r: Rules = toml::from_str(lagged).unwrap();
        assert!(r.warnings().is_empty());
        assert!(Rules::default().warnings().is_empty());
    }

    #[test]
    fn fraud_rules_read_per_campaign_with_shadow_reasons_and_are_checked() {
        let r: Rules = toml::from_str(
            "[campaigns.cny.fraud]\nreview-at = 30\nshadow = [\"ip_shared\"]\n\
             [campaigns.cny.fraud.weights]\nring = 50\n[fraud]\nring-flag-size = 6\n",
        )
        .unwrap();
        let f = &r.campaign("cny").fraud;
        assert_eq!(f.review_at, 30);
        assert_eq!(f.shadow, vec![crate::fraud::Reason::IpShared]);
        assert_eq!((f.weights.ring, f.weights.code_shared), (50, 100));
        assert_eq!(r.fraud.ring_flag_size, 6);
        assert_eq!(
            r.campaign("other").fraud.review_at,
            40,
            "defaults elsewhere"
        );
        assert_eq!(r.check(), Ok(()));
        let e = toml::from_str::<Rules>("[default-campaign.fraud]\nshadow = [\"no_such\"]\n");
        assert!(e.is_err(), "unknown reason names are refused");
        let r: Rules =
            toml::from_str("[default-campaign.fraud]\nshadow = [\"blocked\"]\n").unwrap();
        let (key, why) = r.check().unwrap_err();
        assert_eq!(key, "default-campaign.fraud.shadow");
        assert!(why.contains("person's block"), "{why}");
        let r: Rules = toml::from_str("[default-campaign.fraud]\nip-members = 64\n").unwrap();
        assert_eq!(
            r.check().unwrap_err().0,
            "default-campaign.fraud.ip-members"
        );
        let r: Rules =
            toml::from_str("[campaigns.x.fraud]\nreview-at = 80\nblock-at = 70\n").unwrap();
        assert_eq!(r.check().unwrap_err().0, "campaigns.x.fraud.review-at");
        for (toml, key) in [
            ("[store]\nkpi-days = -3\n", "store.kpi-days"),
            ("[store]\nkpi-days = 0\n", "store.kpi-days"),
            (
                "[store]\nconversion-window-hours = -5\n",
                "store.conversion-window-hours",
            ),
            (
                "[store]\nutc-offset-minutes = 900\n",
                "store.utc-offset-minutes",
            ),
        ] {
            let r: Rules = toml::from_str(toml).unwrap();
            assert_eq!(r.check().unwrap_err().0, key, "{toml}");
        }
    }
}

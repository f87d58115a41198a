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
        }
    }
}

impl Rules {
    /// The rules of one campaign.
    pub fn campaign(&self, id: &str) -> &CampaignRules {
        self.campaigns.get(id).unwrap_or(&self.default_campaign)
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
        for t in &self.tags {
            if t.when.days() > self.member.history_days {
                return Err((
                    format!("tags.{}", t.name),
                    "window longer than member.history-days".into(),
                ));
            }
        }
        if self.watermark_lag_s < 0 {
            return bad("watermark-lag-s", "must be >= 0");
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
}

impl Default for PointsRules {
    fn default() -> Self {
        PointsRules {
            fen_per_point: 100,
            channel_multiplier: BTreeMap::new(),
            sku_multiplier: BTreeMap::new(),
            expiry_days: 365,
            order_days: 120,
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
}

impl Default for StockRules {
    fn default() -> Self {
        StockRules { low_stock_atp: 10 }
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
}

impl Default for StoreRules {
    fn default() -> Self {
        StoreRules {
            conversion_window_hours: 24,
            kpi_days: 35,
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
}

impl Default for CampaignRules {
    fn default() -> Self {
        CampaignRules {
            points: 10,
            daily_cap: 3,
            budget: 0,
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
    }
}

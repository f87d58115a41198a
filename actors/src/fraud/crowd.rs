//! Crowd actors: one per device fingerprint, per IP address and per network prefix (/24 or
//! /64). Each counts the scans passing through it in sliding windows and the distinct members
//! behind them (fresh accounts apart), adds its counts to the scan's features and passes the
//! scan on: device → IP → prefix → campaign.
//!
//! Devices and home-sized IPs also link their members into rings: each keeps the smallest
//! ring label among its members; when a member arrives with another label, the two rings are
//! one component and the larger label merges into the smaller ([`super::ring`]). Labels reach
//! other members lazily, when they next scan through a linking crowd.

use super::block::{self, Block, BlockOn};
use super::window::{BatchScans, Distinct, Rate};
use super::{hash64, ring, ScanCheck};
use crate::cmd::{CampaignCmd, Cmd, CrowdCmd, MemberCmd, RingCmd};
use crate::{Ctx, Effects, Key};
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

const MIN_US: i64 = 60_000_000;

/// Which kind of crowd an entity is (its key says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrowdKind {
    /// A device fingerprint.
    Device,
    /// An IP address.
    Ip,
    /// A /24 or /64 prefix.
    Net,
}

impl CrowdKind {
    /// What a block on such a crowd is on.
    pub fn on(self) -> BlockOn {
        match self {
            CrowdKind::Device => BlockOn::Device,
            CrowdKind::Ip => BlockOn::Ip,
            CrowdKind::Net => BlockOn::Net,
        }
    }
}

/// One device's, IP's or prefix's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crowd {
    /// Scans in the minute, hour and day windows (devices and IPs).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub rate: Rate,
    /// Distinct members in the window.
    pub members: Distinct,
    /// Distinct addresses in the window (prefixes): a NAT is many members on one address, a
    /// rotated proxy pool many members on many.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub ips: Distinct,
    /// Recent scans by batch (devices).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub batches: BatchScans,
    /// Ring key: the smallest ring key among the members linked here in its epoch.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub label: Option<Str>,
    /// When the device was first seen in ordinary use, a click (µs; 0: never). Scans do not
    /// set it: a farm's phone that only scans stays as new as its accounts.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub seen: i64,
    /// A person's blocks on the scans from here. Added by encoding 13.
    #[serde(
        default,
        skip_serializing_if = "crate::cold::omit",
        deserialize_with = "crate::cold::since::<13, _, _>"
    )]
    pub blocks: Vec<Block>,
}

impl Crowd {
    /// Handles one command for the crowd of kind `kind`.
    pub fn handle(&mut self, kind: CrowdKind, cmd: CrowdCmd, ctx: &Ctx, fx: &mut Effects) {
        let ts = ctx.ts();
        let mut check = match cmd {
            CrowdCmd::Check(check) => check,
            CrowdCmd::Seen => {
                if self.seen == 0 || ts < self.seen {
                    self.seen = ts;
                }
                return;
            }
            CrowdCmd::Block { value, block } => {
                block::apply(&mut self.blocks, kind.on(), &value, block, ctx.at, fx);
                return;
            }
        };
        let value = match kind {
            CrowdKind::Device => &check.device,
            CrowdKind::Ip => &check.ip,
            CrowdKind::Net => &check.net,
        };
        let hit = &mut check.features.block;
        block::meet(hit, &self.blocks, kind.on(), value, &check.campaign, ts);
        let st = &ctx.rules.fraud;
        let member = hash64(&check.member);
        let f = &mut check.features;
        let next = match kind {
            CrowdKind::Device => {
                f.device_rate = self.rate.add(ts);
                let window = st.device_members_window_h * 60 * MIN_US;
                let fresh = self.members.forget(&check.merged) || check.fresh;
                let c = self
                    .members
                    .add(member, ts, fresh, window, st.track_members);
                f.device_members = c.members;
                f.device_fresh = c.fresh;
                f.device_fresh_recent = self
                    .members
                    .fresh_within(ts, st.crowd_fresh_window_min * MIN_US);
                // a phone in ordinary use for longer than an account stays fresh is a
                // household's, whoever scans with it today
                f.device_known =
                    self.seen != 0 && ts.saturating_sub(self.seen) > st.fresh_account_us();
                if let Some(b) = &check.batch {
                    let b = hash64(b);
                    f.device_batch =
                        self.batches
                            .add(b, ts, st.batch_window_min * MIN_US, st.track_batch_scans);
                    f.batch_minute = f.batch_minute.max(self.batches.within(b, ts, MIN_US));
                }
                if c.members <= st.ring_device_max_members {
                    self.link(&mut check, ctx, fx);
                }
                (
                    Key::Ip(check.ip.clone()),
                    Cmd::Crowd(CrowdCmd::Check(check)),
                )
            }
            CrowdKind::Ip => {
                f.ip_rate = self.rate.add(ts);
                let window = st.net_members_window_min * MIN_US;
                let fresh = self.members.forget(&check.merged) || check.fresh;
                let c = self
                    .members
                    .add(member, ts, fresh, window, st.track_members);
                f.ip_members = c.members;
                f.ip_fresh = c.fresh;
                // a home links its members; a campus NAT or a carrier gateway must not
                if c.members <= st.ring_ip_max_members && f.ip_rate[2] <= st.ring_link_max_ip_scans
                {
                    self.link(&mut check, ctx, fx);
                }
                (
                    Key::Net(check.net.clone()),
                    Cmd::Crowd(CrowdCmd::Check(check)),
                )
            }
            CrowdKind::Net => {
                let window = st.net_members_window_min * MIN_US;
                let fresh = self.members.forget(&check.merged) || check.fresh;
                let c = self
                    .members
                    .add(member, ts, fresh, window, st.track_members);
                f.net_members = c.members;
                f.net_fresh = c.fresh;
                f.net_ips = self
                    .ips
                    .add(hash64(&check.ip), ts, false, window, st.track_members)
                    .members;
                (
                    Key::Campaign(check.campaign.clone()),
                    Cmd::Campaign(CampaignCmd::Decide(check)),
                )
            }
        };
        fx.send(next.0, next.1);
    }

    /// Joins the scanning member's ring and this crowd's ring: they are one component now.
    fn link(&mut self, check: &mut ScanCheck, ctx: &Ctx, fx: &mut Effects) {
        let mine = check.ring.clone();
        let now = ring::epoch(ctx.ts(), ctx.rules.fraud.ring_epoch_days);
        let current = self
            .label
            .clone()
            .filter(|l| ring::epoch_of(l) == Some(now));
        let Some(here) = current else {
            self.label = Some(mine);
            return;
        };
        if here == mine {
            return;
        }
        let (root, other) = if here < mine {
            (here, mine.clone())
        } else {
            (mine.clone(), here)
        };
        fx.send(
            Key::Ring(other),
            Cmd::Ring(RingCmd::MergeInto { into: root.clone() }),
        );
        if root != mine {
            fx.send(
                Key::Member(check.member.clone()),
                Cmd::Member(MemberCmd::RingLabel {
                    label: root.clone(),
                }),
            );
        }
        check.ring = root.clone();
        self.label = Some(root);
    }
}

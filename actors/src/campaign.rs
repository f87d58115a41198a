//! Campaign actors: a scan campaign's reward budget and fraud decisions. A checked scan
//! (`Decide`, at the end of the fraud chain) is scored with the campaign's rules; an allowed
//! or reviewed scan is granted the campaign's points while the budget covers them (a review's
//! points stay reserved until it is resolved), and the verdict goes to the member, who pays,
//! holds or refuses and writes the decision. Points the member could not be paid (its daily
//! cap, a refused review) come back. `Claim` is the unchecked path, for trusted channels.

use crate::cmd::{CampaignCmd, Cmd, MemberCmd, ScanDecided};
use crate::fraud::{Decision, NoReward};
use crate::{Ctx, Effects, Key, Output, Recent};
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

/// How many claim event ids a campaign remembers for deduplication: enough for the
/// redeliveries right after a restart, small because the state is written on every claim.
pub const CLAIMS_SEEN_CAP: usize = 512;
/// How many refund event ids a campaign remembers.
pub const REFUNDS_SEEN_CAP: usize = 128;

/// One campaign's budget.
///
/// A campaign is a hot key: every scan of a national campaign hits the same entity. The
/// runtime issue (#5) will hand budget out to shards in blocks, so this state must stay small
/// (counters and two short dedup lists) and the handler cheap (no per-member data, no scans
/// of anything but the dedup list).
///
/// Invariants: `spent == granted - refunded`, `spent >= 0`, and `spent <= budget` while the
/// budget (when > 0) is not lowered below what was already spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// The budget in the rules the last command saw (0: no limit); kept for the view.
    pub budget: i64,
    /// Points handed out and not given back.
    pub spent: i64,
    /// Points granted to claims in all.
    pub granted: i64,
    /// Points given back by members who could not be paid.
    pub refunded: i64,
    /// Claims received (each event once).
    pub claims: u64,
    /// Claims granted their points.
    pub rewarded: u64,
    /// Claims granted nothing because the budget could not cover them.
    pub denied: u64,
    /// The budget ran out and `BudgetExhausted` was emitted; cleared when room comes back.
    pub exhausted: bool,
    /// Recently applied claim event ids.
    pub claims_seen: Recent,
    /// Recently applied refund event ids; kept apart from claims because a refund travels
    /// under the id of the scan that claimed.
    pub refunds_seen: Recent,
    /// Checked scans per decision.
    #[serde(default)]
    pub decisions: DecisionCounts,
}

/// Checked scans per decision, for boards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionCounts {
    /// Allowed.
    pub allow: u64,
    /// Sent to review.
    pub review: u64,
    /// Blocked.
    pub block: u64,
    /// Duplicates.
    pub duplicate: u64,
    /// Decided differently by shadow rules.
    pub shadow_differs: u64,
}

impl Campaign {
    /// Handles one command.
    pub fn handle(&mut self, me: &Str, cmd: CampaignCmd, ctx: &Ctx, fx: &mut Effects) {
        // claims and refunds are deduplicated apart: a refund travels under the id of the
        // scan that claimed
        let first = match &cmd {
            CampaignCmd::Claim { .. } | CampaignCmd::Decide(_) | CampaignCmd::Overturn { .. } => {
                self.claims_seen
                    .insert(ctx.event.as_u128(), CLAIMS_SEEN_CAP)
            }
            CampaignCmd::Refund { .. } => self
                .refunds_seen
                .insert(ctx.event.as_u128(), REFUNDS_SEEN_CAP),
        };
        if !first {
            return;
        }
        let rules = ctx.rules.campaign(me);
        self.budget = rules.budget;
        let paid = ctx.rules.pays(me);
        let points = ctx.rules.campaign_points(me);
        match cmd {
            CampaignCmd::Claim { ids, code, store } => {
                self.claims += 1;
                if ids.is_empty() {
                    // nobody to pay: granting would leak budget
                    return;
                }
                // a campaign that pays nothing grants nothing: no grant counted
                let granted = if paid { self.grant(me, points, fx) } else { 0 };
                let reward = MemberCmd::ScanReward {
                    campaign: me.clone(),
                    code,
                    points: granted,
                    daily_cap: rules.daily_cap,
                    store,
                    verdict: None,
                };
                if let Some((key, cmd)) = crate::identity::resolve(&ids, reward) {
                    fx.send(key, cmd);
                }
            }
            CampaignCmd::Decide(check) => {
                self.claims += 1;
                let v = crate::fraud::score(&check.features, &rules.fraud);
                let d = &mut self.decisions;
                match v.decision {
                    Decision::Allow => d.allow += 1,
                    Decision::Review => d.review += 1,
                    Decision::Block => d.block += 1,
                    Decision::Duplicate => d.duplicate += 1,
                }
                d.shadow_differs += u64::from(v.shadow_decision.is_some());
                let granted = match v.decision {
                    Decision::Allow | Decision::Review if paid => self.grant(me, points, fx),
                    Decision::Allow | Decision::Review => 0,
                    Decision::Block | Decision::Duplicate => 0,
                };
                let not_granted = match v.decision {
                    Decision::Allow | Decision::Review if granted == 0 => Some(if paid {
                        NoReward::not_granted(points)
                    } else {
                        NoReward::NotConfigured
                    }),
                    _ => None,
                };
                let mut check = *check;
                let (member, code) = (
                    std::mem::take(&mut check.member),
                    std::mem::take(&mut check.code),
                );
                fx.send(
                    Key::Member(member),
                    Cmd::Member(MemberCmd::ScanDecided(Box::new(ScanDecided {
                        campaign: me.clone(),
                        code,
                        points: granted,
                        daily_cap: rules.daily_cap,
                        verdict: v,
                        scanned: check.scanned(),
                        not_granted,
                    }))),
                );
            }
            CampaignCmd::Overturn { member, scan } => {
                let granted = if paid { self.grant(me, points, fx) } else { 0 };
                fx.send(
                    Key::Member(member),
                    Cmd::Member(MemberCmd::Overturn {
                        event: scan,
                        campaign: me.clone(),
                        points: granted,
                        daily_cap: rules.daily_cap,
                    }),
                );
            }
            CampaignCmd::Refund { points: back } => {
                let back = back.clamp(0, self.spent);
                self.spent -= back;
                self.refunded += back;
                if self.exhausted && self.covers(points) {
                    self.exhausted = false;
                }
            }
        }
    }

    /// Takes `points` from the budget when it covers them; returns what was granted.
    fn grant(&mut self, me: &Str, points: i64, fx: &mut Effects) -> i64 {
        if self.covers(points) {
            self.spent += points;
            self.granted += points;
            self.rewarded += 1;
            self.exhausted = false;
            points
        } else {
            self.denied += 1;
            if !self.exhausted {
                self.exhausted = true;
                fx.out(Output::BudgetExhausted {
                    campaign: me.clone(),
                });
            }
            0
        }
    }

    /// Whether the budget can pay `points` more (the sums must also stay representable).
    fn covers(&self, points: i64) -> bool {
        let (Some(spent), Some(_)) = (
            self.spent.checked_add(points),
            self.granted.checked_add(points),
        ) else {
            return false;
        };
        self.budget <= 0 || spent <= self.budget
    }

    /// The campaign's budget as a board shows it.
    pub fn view(&self) -> CampaignView {
        CampaignView {
            budget: self.budget,
            spent: self.spent,
            remaining: (self.budget > 0).then(|| (self.budget - self.spent).max(0)),
            granted: self.granted,
            refunded: self.refunded,
            claims: self.claims,
            rewarded: self.rewarded,
            denied: self.denied,
            exhausted: self.exhausted,
            decisions: self.decisions,
        }
    }
}

/// A campaign's budget for queries and boards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignView {
    /// Total points the campaign may pay (0: no limit).
    pub budget: i64,
    /// Points handed out and not given back.
    pub spent: i64,
    /// Budget left; None when there is no limit.
    pub remaining: Option<i64>,
    /// Points granted in all.
    pub granted: i64,
    /// Points given back.
    pub refunded: i64,
    /// Claims received.
    pub claims: u64,
    /// Claims granted their points.
    pub rewarded: u64,
    /// Claims refused for lack of budget.
    pub denied: u64,
    /// Whether the budget is used up.
    pub exhausted: bool,
    /// Checked scans per decision.
    pub decisions: DecisionCounts,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cmd::{Cmd, Id, IdentityCmd};
    use crate::config::CampaignRules;
    use crate::{Key, Rules};
    use omnistream_schemas::EventTime;
    use proptest::prelude::*;

    fn rules(points: i64, budget: i64) -> Rules {
        let mut r = Rules::default();
        r.campaigns.insert(
            "cny".into(),
            CampaignRules {
                points,
                daily_cap: 2,
                budget,
                ..CampaignRules::default()
            },
        );
        r
    }

    fn phone() -> Vec<Id> {
        vec![("phone".into(), "h1".into())]
    }

    fn claim(ids: Vec<Id>) -> CampaignCmd {
        CampaignCmd::Claim {
            ids,
            code: "C1".into(),
            store: Some("s1".into()),
        }
    }

    fn run(c: &mut Campaign, rules: &Rules, id: u128, cmd: CampaignCmd) -> Effects {
        let ctx = Ctx {
            at: EventTime::from_unix_ms(1_767_225_600_000),
            event: uuid::Uuid::from_u128(id),
            rules,
            refs: &crate::refdata::NO_REFS,
        };
        let mut fx = Effects::default();
        c.handle(&"cny".into(), cmd, &ctx, &mut fx);
        fx
    }

    /// The member command inside a resolution's envelope (`Seen`, when resolution wraps it;
    /// `Given`, when the member is named by id).
    fn inner(m: &MemberCmd) -> &MemberCmd {
        match m {
            MemberCmd::Seen { then, .. } => inner(then),
            other => other,
        }
    }

    /// The `ScanReward` a claim sent, whatever the resolution path.
    fn reward(fx: &Effects) -> Option<&MemberCmd> {
        let (_, cmd) = fx.sends.first()?;
        let then = match cmd {
            Cmd::Identity(IdentityCmd::Resolve(r)) => &r.then,
            Cmd::Member(MemberCmd::Given(r)) => &r.then,
            Cmd::Member(m) => m,
            _ => return None,
        };
        Some(inner(then))
    }

    /// The points of the `ScanReward` a claim sent.
    fn reward_points(fx: &Effects) -> Option<i64> {
        match reward(fx)? {
            MemberCmd::ScanReward { points, .. } => Some(*points),
            _ => None,
        }
    }

    #[test]
    fn a_claim_is_granted_and_sent_to_the_member_through_resolution() {
        let r = rules(10, 0);
        let mut c = Campaign::default();
        let fx = run(&mut c, &r, 1, claim(phone()));
        assert!(fx.outputs.is_empty());
        assert_eq!(fx.sends.len(), 1);
        let (key, cmd) = &fx.sends[0];
        assert_eq!(*key, Key::Identity("phone".into(), "h1".into()));
        let Cmd::Identity(IdentityCmd::Resolve(res)) = cmd else {
            panic!("expected a resolution hop, got {cmd:?}");
        };
        assert_eq!(res.ids, phone());
        assert_eq!(
            *inner(&res.then),
            MemberCmd::ScanReward {
                campaign: "cny".into(),
                code: "C1".into(),
                points: 10,
                daily_cap: 2,
                store: Some("s1".into()),
                verdict: None,
            }
        );
        assert_eq!((c.spent, c.granted, c.claims, c.rewarded), (10, 10, 1, 1));
    }

    #[test]
    fn a_member_id_goes_straight_to_the_member_and_no_ids_sends_nothing() {
        let r = rules(10, 0);
        let mut c = Campaign::default();
        let fx = run(
            &mut c,
            &r,
            1,
            claim(vec![("member_id".into(), "m1".into())]),
        );
        assert_eq!(fx.sends[0].0, Key::Member("m1".into()));
        assert_eq!(reward_points(&fx), Some(10));
        let fx = run(&mut c, &r, 2, claim(Vec::new()));
        assert_eq!(fx, Effects::default());
        assert_eq!(
            (c.claims, c.granted),
            (2, 10),
            "an unaddressed claim is counted, not paid"
        );
    }

    #[test]
    fn default_rules_apply_to_unlisted_campaigns() {
        let r = Rules::default();
        let mut c = Campaign::default();
        let fx = run(&mut c, &r, 1, claim(phone()));
        assert_eq!(reward_points(&fx), Some(r.default_campaign.points));
        assert_eq!(c.view().remaining, None);
    }

    #[test]
    fn a_redelivered_claim_is_applied_once() {
        let r = rules(10, 0);
        let mut c = Campaign::default();
        run(&mut c, &r, 1, claim(phone()));
        let before = c.clone();
        let fx = run(&mut c, &r, 1, claim(phone()));
        assert_eq!(fx, Effects::default());
        assert_eq!(c, before);
    }

    #[test]
    fn the_budget_runs_out_once_and_refunds_make_room_again() {
        let r = rules(10, 25);
        let mut c = Campaign::default();
        assert_eq!(reward_points(&run(&mut c, &r, 1, claim(phone()))), Some(10));
        assert_eq!(reward_points(&run(&mut c, &r, 2, claim(phone()))), Some(10));
        let fx = run(&mut c, &r, 3, claim(phone()));
        assert_eq!(
            reward_points(&fx),
            Some(0),
            "the member still hears of the scan"
        );
        assert_eq!(
            fx.outputs,
            vec![Output::BudgetExhausted {
                campaign: "cny".into()
            }]
        );
        let fx = run(&mut c, &r, 4, claim(phone()));
        assert_eq!(reward_points(&fx), Some(0));
        assert!(fx.outputs.is_empty(), "exhaustion is reported once");
        assert_eq!((c.spent, c.denied, c.exhausted), (20, 2, true));
        // a refund of 5 leaves 10 free: enough for one claim
        let fx = run(&mut c, &r, 1, CampaignCmd::Refund { points: 5 });
        assert_eq!(fx, Effects::default());
        assert_eq!((c.spent, c.refunded, c.exhausted), (15, 5, false));
        assert_eq!(reward_points(&run(&mut c, &r, 5, claim(phone()))), Some(10));
        let fx = run(&mut c, &r, 6, claim(phone()));
        assert_eq!(fx.outputs.len(), 1, "runs out again, reported again");
        let v = c.view();
        assert_eq!(
            (v.budget, v.spent, v.remaining, v.granted),
            (25, 25, Some(0), 30)
        );
        assert_eq!(
            (v.claims, v.rewarded, v.denied, v.exhausted),
            (6, 3, 3, true)
        );
    }

    #[test]
    fn a_small_refund_keeps_the_budget_exhausted() {
        let r = rules(10, 10);
        let mut c = Campaign::default();
        run(&mut c, &r, 1, claim(phone()));
        run(&mut c, &r, 2, claim(phone()));
        run(&mut c, &r, 1, CampaignCmd::Refund { points: 3 });
        assert!(c.exhausted, "7 spent of 10: no room for 10 more");
    }

    #[test]
    fn refunds_never_take_spent_below_zero_and_are_deduplicated() {
        let r = rules(10, 0);
        let mut c = Campaign::default();
        run(&mut c, &r, 1, claim(phone()));
        // the refund carries the claim's event id (one chain): it must still apply
        run(&mut c, &r, 1, CampaignCmd::Refund { points: 4 });
        run(&mut c, &r, 1, CampaignCmd::Refund { points: 4 });
        assert_eq!((c.spent, c.refunded), (6, 4));
        run(&mut c, &r, 2, CampaignCmd::Refund { points: 100 });
        run(&mut c, &r, 3, CampaignCmd::Refund { points: -5 });
        assert_eq!((c.spent, c.refunded, c.granted), (0, 10, 10));
    }

    #[test]
    fn zero_points_are_granted_without_exhausting() {
        let r = rules(0, 5);
        let mut c = Campaign::default();
        let fx = run(&mut c, &r, 1, claim(phone()));
        assert_eq!(reward_points(&fx), Some(0));
        assert!(fx.outputs.is_empty());
        assert!(!c.exhausted);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Claim(u128, bool),
        Refund(u128, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u128..40, proptest::bool::weighted(0.9)).prop_map(|(id, with_ids)| Op::Claim(id, with_ids)),
            1 => (0u128..40, -5i64..30).prop_map(|(id, p)| Op::Refund(id, p)),
        ]
    }

    fn apply(c: &mut Campaign, r: &Rules, op: &Op) -> Effects {
        match op {
            Op::Claim(id, true) => run(c, r, *id, claim(phone())),
            Op::Claim(id, false) => run(c, r, *id, claim(Vec::new())),
            Op::Refund(id, p) => run(c, r, *id, CampaignCmd::Refund { points: *p }),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_budget_is_never_overspent_and_replays_are_deterministic(
            ops in proptest::collection::vec(op(), 1..120),
            points in 0i64..20,
            budget in 0i64..150,
        ) {
            let r = rules(points, budget);
            let mut c = Campaign::default();
            let mut claims_seen = std::collections::BTreeSet::new();
            let mut refunds_seen = std::collections::BTreeSet::new();
            let mut unaddressed = 0u64;
            let mut exhausted_outputs = 0u64;
            for op in &ops {
                let before = c.clone();
                let fx = apply(&mut c, &r, op);
                prop_assert!(c.spent >= 0);
                prop_assert_eq!(c.spent, c.granted - c.refunded);
                if budget > 0 {
                    prop_assert!(c.spent <= budget, "spent {} over budget {}", c.spent, budget);
                }
                prop_assert_eq!(c.granted, points * c.rewarded as i64);
                match op {
                    Op::Claim(id, with_ids) => {
                        let first = claims_seen.insert(*id);
                        unaddressed += u64::from(first && !*with_ids);
                        let expect_send = first && *with_ids;
                        prop_assert_eq!(fx.sends.len(), usize::from(expect_send));
                        if !first {
                            prop_assert_eq!(&c, &before, "a repeated claim changes nothing");
                        }
                        if let Some(p) = reward_points(&fx) {
                            prop_assert!(p == points || p == 0);
                            prop_assert_eq!(p == 0 && points > 0, c.denied > before.denied);
                        }
                    }
                    Op::Refund(id, _) => {
                        prop_assert!(fx.sends.is_empty() && fx.outputs.is_empty());
                        if !refunds_seen.insert(*id) {
                            prop_assert_eq!(&c, &before, "a repeated refund changes nothing");
                        }
                    }
                }
                prop_assert_eq!(c.claims, c.rewarded + c.denied + unaddressed);
                // an exhaustion is reported exactly when the flag turns on
                let reported = fx.outputs.len() as u64;
                prop_assert_eq!(reported, u64::from(c.exhausted && !before.exhausted));
                exhausted_outputs += reported;
            }
            prop_assert!(exhausted_outputs <= c.denied);
            let v = c.view();
            prop_assert_eq!(v.remaining, (budget > 0).then(|| budget - c.spent));
            // the same sequence on a fresh campaign gives byte-identical state
            let mut again = Campaign::default();
            for op in &ops {
                apply(&mut again, &r, op);
            }
            prop_assert_eq!(serde_json::to_vec(&again).unwrap(), serde_json::to_vec(&c).unwrap());
        }
    }
}

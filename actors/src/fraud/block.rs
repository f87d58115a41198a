//! A person's blocks: a risk team stops a member, a device, an IP address or a network prefix
//! from being rewarded, in one campaign or in all, until a time or until lifted.
//!
//! A block lives with what it blocks (the member's scan profile; the device's, address's or
//! prefix's crowd), so a scan meets it on its way through the check it takes anyway (member →
//! code → device → IP → prefix → campaign): no lookup of its own, no table to keep in step.
//! The first block met is carried in the scan's features; the campaign scores it as reason
//! `blocked` (the full 100 points, never in shadow: a person decided) and the decision names
//! the block. Counting goes on while blocked: the crowd still sees the scans.
//!
//! Set and lifted by a person's command, logged like an event, running at the service's event
//! time: a replay blocks the same scans. A block holds for every scan that reaches it after it
//! was set, whatever the scan's own event time (a late scan too), up to its `until`, judged on
//! the scan's event time. An ended block stays in the state until the next person's command
//! on the same member, device, address or prefix drops it: a late scan from before its end
//! meets it until then.

use crate::output::Output;
use crate::Effects;
use compact_str::CompactString as Str;
use omnistream_schemas::EventTime;
use serde::{Deserialize, Serialize};

/// What a block is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockOn {
    /// A member (by id; an id merged away blocks its survivor).
    Member,
    /// A device fingerprint.
    Device,
    /// An IP address.
    Ip,
    /// A network prefix: an IPv4 /24 or an IPv6 /64.
    Net,
}

impl BlockOn {
    /// Every kind, in the order a scan meets them.
    pub const ALL: [BlockOn; 4] = [BlockOn::Member, BlockOn::Device, BlockOn::Ip, BlockOn::Net];

    /// The stable name, as in requests, outputs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockOn::Member => "member",
            BlockOn::Device => "device",
            BlockOn::Ip => "ip",
            BlockOn::Net => "net",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<BlockOn> {
        BlockOn::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The key of the entity that keeps the blocks on `value`.
    pub fn key(self, value: &Str) -> crate::Key {
        let v = value.clone();
        match self {
            BlockOn::Member => crate::Key::Member(v),
            BlockOn::Device => crate::Key::Device(v),
            BlockOn::Ip => crate::Key::Ip(v),
            BlockOn::Net => crate::Key::Net(v),
        }
    }
}

/// One block, as its member or crowd keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The campaign it holds in (None: every campaign).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub campaign: Option<Str>,
    /// When it ends, in event time (None: when a person lifts it).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub until: Option<EventTime>,
    /// The case it was set under.
    #[serde(rename = "ref")]
    pub reference: Str,
    /// The event time it was set at.
    pub since: EventTime,
}

impl Block {
    /// Whether it holds for a scan in `campaign` at `ts` (µs).
    pub fn holds(&self, campaign: &str, ts: i64) -> bool {
        self.campaign.as_deref().is_none_or(|c| c == campaign) && self.in_force(ts)
    }

    /// Whether it has not ended at `ts` (µs).
    pub fn in_force(&self, ts: i64) -> bool {
        self.until.is_none_or(|u| ts < u.unix_us)
    }

    /// Which of two blocks for one campaign a merge keeps (the greater): the one ending later
    /// (or never), then the smaller case, then every other field, so the same one whichever
    /// member survives.
    fn rank(&self) -> impl Ord + '_ {
        let end = self.until.map_or(i64::MAX, |u| u.unix_us);
        let offset = self.until.map(|u| u.offset_min);
        let since = (self.since.unix_us, self.since.offset_min);
        (end, std::cmp::Reverse(&self.reference), offset, since)
    }
}

/// Takes `other`'s blocks into `blocks` (a member merged in): of two for one campaign, the
/// one [`Block::rank`] puts first; kept in campaign order, as [`apply`] keeps them.
pub fn absorb(blocks: &mut Vec<Block>, other: &[Block]) {
    for b in other {
        match blocks.iter_mut().find(|m| m.campaign == b.campaign) {
            None => blocks.push(b.clone()),
            Some(m) if b.rank() > m.rank() => *m = b.clone(),
            Some(_) => {}
        }
    }
    blocks.sort_by(|a, b| a.campaign.cmp(&b.campaign));
}

/// A person's command on the blocks of one member, device, address or prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockCmd {
    /// Block it in `campaign` (None: every campaign) until `until` (None: until lifted). A
    /// block already set for the same campaign (or for every campaign) is replaced.
    Set {
        /// The campaign (None: every campaign).
        campaign: Option<Str>,
        /// When it ends.
        until: Option<EventTime>,
        /// The case.
        reference: Str,
    },
    /// Lift the block set for `campaign` (None: the one for every campaign).
    Lift {
        /// The campaign (None: every campaign).
        campaign: Option<Str>,
        /// The case the lift is recorded under.
        reference: Str,
    },
}

/// What a command does to the blocks it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new block.
    Set,
    /// A block for the same campaign replaced (another end or another case).
    Updated,
    /// The same block is set already (a retry).
    Unchanged,
    /// The block is lifted.
    Lifted,
    /// No block for that campaign to lift (lifted before, ended, or never set).
    NotBlocked,
}

impl Change {
    /// The stable name, as the API answers it.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Set => "blocked",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
            Change::Lifted => "lifted",
            Change::NotBlocked => "not_blocked",
        }
    }
}

/// The block a scan in `campaign` at `ts` (µs) meets: the campaign's own before one for every
/// campaign.
pub fn met<'a>(blocks: &'a [Block], campaign: &str, ts: i64) -> Option<&'a Block> {
    let mut all = None;
    for b in blocks.iter().filter(|b| b.holds(campaign, ts)) {
        if b.campaign.is_some() {
            return Some(b);
        }
        all = all.or(Some(b));
    }
    all
}

/// What `cmd` would do to `blocks` at `at`: the service asks before it logs a command, so a
/// retry is answered without one.
pub fn plan(blocks: &[Block], cmd: &BlockCmd, at: EventTime) -> Change {
    let (campaign, set) = match cmd {
        BlockCmd::Set {
            campaign,
            until,
            reference,
        } => (campaign, Some((until, reference))),
        BlockCmd::Lift { campaign, .. } => (campaign, None),
    };
    // an ended block says nothing more
    let found = (blocks.iter()).find(|b| b.in_force(at.unix_us) && b.campaign == *campaign);
    match (found, set) {
        (None, Some(_)) => Change::Set,
        (Some(b), Some((until, reference))) => {
            // the same instant in another offset is the same end
            let end = |u: &Option<EventTime>| u.map(|u| u.unix_us);
            if end(&b.until) == end(until) && b.reference == *reference {
                Change::Unchanged
            } else {
                Change::Updated
            }
        }
        (Some(_), None) => Change::Lifted,
        (None, None) => Change::NotBlocked,
    }
}

/// Runs `cmd` on the blocks of `value` (of kind `on`) at `at`, saying what it changed
/// (`block_set`, `block_lifted`); ended blocks are dropped on the way.
pub fn apply(
    blocks: &mut Vec<Block>,
    on: BlockOn,
    value: &Str,
    cmd: BlockCmd,
    at: EventTime,
    fx: &mut Effects,
) -> Change {
    let change = plan(blocks, &cmd, at);
    blocks.retain(|b| b.in_force(at.unix_us));
    match cmd {
        BlockCmd::Set {
            campaign,
            until,
            reference,
        } => {
            if change == Change::Unchanged {
                return change;
            }
            let replaced = blocks
                .iter()
                .position(|b| b.campaign == campaign)
                .map(|i| blocks.remove(i).reference);
            // in campaign order (every campaign first): the same list whatever the order set
            let i = blocks.partition_point(|b| b.campaign < campaign);
            let block = Block {
                campaign: campaign.clone(),
                until,
                reference: reference.clone(),
                since: at,
            };
            blocks.insert(i, block);
            fx.out(Output::BlockSet {
                on,
                value: value.clone(),
                campaign,
                until,
                reference,
                replaced,
                by: None,
            });
        }
        BlockCmd::Lift {
            campaign,
            reference,
        } => {
            let Some(i) = blocks.iter().position(|b| b.campaign == campaign) else {
                return change;
            };
            let lifted = blocks.remove(i);
            fx.out(Output::BlockLifted {
                on,
                value: value.clone(),
                campaign,
                reference,
                lifted: lifted.reference,
                by: None,
            });
        }
    }
    change
}

/// The block a scan met, as its decision names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHit {
    /// What is blocked.
    pub on: BlockOn,
    /// The member id, device, address or prefix blocked.
    pub value: Str,
    /// The campaign the block holds in (absent: every campaign).
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub campaign: Option<Str>,
    /// The case it was set under.
    #[serde(rename = "ref")]
    pub reference: Str,
}

impl BlockHit {
    /// The hit of `block` on `value`.
    pub fn of(on: BlockOn, value: &Str, block: &Block) -> Box<BlockHit> {
        Box::new(BlockHit {
            on,
            value: value.clone(),
            campaign: block.campaign.clone(),
            reference: block.reference.clone(),
        })
    }
}

/// Notes in `hit` the block a scan in `campaign` at `ts` meets among `blocks`, unless it met
/// one earlier on its way.
pub fn meet(
    hit: &mut Option<Box<BlockHit>>,
    blocks: &[Block],
    on: BlockOn,
    value: &Str,
    campaign: &str,
    ts: i64,
) {
    if hit.is_none() {
        if let Some(b) = met(blocks, campaign, ts) {
            *hit = Some(BlockHit::of(on, value, b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> EventTime {
        EventTime {
            unix_us: s * 1_000_000,
            offset_min: 480,
        }
    }

    fn set(campaign: Option<&str>, until: Option<i64>, reference: &str) -> BlockCmd {
        BlockCmd::Set {
            campaign: campaign.map(Into::into),
            until: until.map(at),
            reference: reference.into(),
        }
    }

    fn lift(campaign: Option<&str>) -> BlockCmd {
        BlockCmd::Lift {
            campaign: campaign.map(Into::into),
            reference: "lift".into(),
        }
    }

    fn run(blocks: &mut Vec<Block>, cmd: BlockCmd, s: i64) -> (Change, Vec<Output>) {
        let mut fx = Effects::default();
        let change = apply(blocks, BlockOn::Device, &"d-1".into(), cmd, at(s), &mut fx);
        (change, fx.outputs)
    }

    #[test]
    fn a_block_holds_in_its_campaign_until_its_end() {
        let mut b = Vec::new();
        let (c, out) = run(&mut b, set(Some("cny"), Some(100), "R-1"), 10);
        assert_eq!(c, Change::Set);
        assert!(matches!(
            &out[..],
            [Output::BlockSet { replaced: None, .. }]
        ));
        assert!(met(&b, "cny", 50_000_000).is_some());
        assert!(met(&b, "cny", 99_999_999).is_some());
        assert!(met(&b, "cny", 100_000_000).is_none(), "ended");
        assert!(met(&b, "summer", 50_000_000).is_none(), "another campaign");
    }

    #[test]
    fn a_block_for_every_campaign_holds_in_each_and_one_of_its_own_is_met_first() {
        let mut b = Vec::new();
        run(&mut b, set(None, None, "ALL-1"), 10);
        run(&mut b, set(Some("cny"), None, "CNY-1"), 11);
        assert_eq!(
            met(&b, "summer", 20).map(|b| b.reference.as_str()),
            Some("ALL-1")
        );
        assert_eq!(
            met(&b, "cny", 20).map(|b| b.reference.as_str()),
            Some("CNY-1")
        );
        // lifting the campaign's leaves the one for every campaign
        let (c, out) = run(&mut b, lift(Some("cny")), 12);
        assert_eq!(c, Change::Lifted);
        assert!(matches!(&out[..], [Output::BlockLifted { lifted, .. }] if lifted == "CNY-1"));
        assert_eq!(
            met(&b, "cny", 20).map(|b| b.reference.as_str()),
            Some("ALL-1")
        );
    }

    #[test]
    fn the_same_block_again_is_unchanged_and_another_end_or_case_updates_it() {
        let mut b = Vec::new();
        run(&mut b, set(Some("cny"), Some(100), "R-1"), 10);
        let (c, out) = run(&mut b, set(Some("cny"), Some(100), "R-1"), 11);
        assert_eq!((c, out.len()), (Change::Unchanged, 0));
        let (c, out) = run(&mut b, set(Some("cny"), Some(200), "R-2"), 12);
        assert_eq!(c, Change::Updated);
        assert!(matches!(&out[..], [Output::BlockSet { replaced: Some(r), .. }] if r == "R-1"));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].until, Some(at(200)));
        // the same instant written in another offset is the same end
        let utc = EventTime {
            offset_min: 0,
            ..at(200)
        };
        let again = BlockCmd::Set {
            campaign: Some("cny".into()),
            until: Some(utc),
            reference: "R-2".into(),
        };
        assert_eq!(plan(&b, &again, at(13)), Change::Unchanged);
    }

    #[test]
    fn lifting_what_is_not_there_changes_nothing_and_an_ended_block_is_not_there() {
        let mut b = Vec::new();
        let (c, out) = run(&mut b, lift(None), 10);
        assert_eq!((c, out.len()), (Change::NotBlocked, 0));
        run(&mut b, set(None, Some(20), "R-1"), 10);
        let (c, out) = run(&mut b, lift(None), 30);
        assert_eq!((c, out.len()), (Change::NotBlocked, 0));
        assert!(b.is_empty(), "the ended block is dropped");
        // setting it again after its end is a new block
        run(&mut b, set(None, Some(20), "R-1"), 10);
        assert_eq!(plan(&b, &set(None, Some(20), "R-1"), at(25)), Change::Set);
    }

    #[test]
    fn a_hit_keeps_the_first_block_met() {
        let mut b = Vec::new();
        run(&mut b, set(None, None, "R-1"), 10);
        let mut hit = None;
        meet(&mut hit, &b, BlockOn::Device, &"d-1".into(), "cny", 20);
        meet(&mut hit, &b, BlockOn::Ip, &"10.0.0.1".into(), "cny", 20);
        let h = hit.expect("met");
        assert_eq!((h.on, h.value.as_str()), (BlockOn::Device, "d-1"));
        assert_eq!(
            serde_json::to_value(&*h).unwrap_or_default(),
            serde_json::json!({"on": "device", "value": "d-1", "ref": "R-1"})
        );
    }

    /// A block's stored layout, pinned (a device's counts holding one): see
    /// `crate::cold::STATE_VERSION` for what changing it needs.
    #[test]
    fn a_stored_block_is_pinned() {
        let mut c = crate::fraud::crowd::Crowd::default();
        run(&mut c.blocks, set(Some("cny"), Some(100), "R-1"), 10);
        let stored = crate::cold::encode(&c).unwrap_or_default();
        let hex: String = stored.iter().map(|b| format!("{b:02x}")).collect();
        // the campaign, the end and the time set as RFC 3339 text with the offset given
        let want = concat!(
            "100000000000000000010103636e79011d313937302d30312d30315430383a30313a34302e303030",
            "2b30383a303003522d311d313937302d30312d30315430383a30303a31302e3030302b30383a3030"
        );
        assert_eq!(hex, want);
        assert_eq!(
            crate::cold::decode::<crate::fraud::crowd::Crowd>(&stored).ok(),
            Some(c)
        );
    }

    #[test]
    fn kinds_read_back_from_their_names() {
        for k in BlockOn::ALL {
            assert_eq!(BlockOn::parse(k.as_str()), Some(k));
        }
        assert_eq!(BlockOn::parse("phone"), None);
    }
}

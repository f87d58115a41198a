//! Ring actors: components of members linked through shared devices and home-sized IPs,
//! found by min-label propagation through the keyed entities. Every member starts as its own
//! ring, labelled by its id; when a device or IP links two rings, the one with the larger
//! label merges into the smaller: it hands over its members and becomes an alias that
//! forwards later merges. When a ring reaches the flagging size it tells its members, who
//! count it against their next scans.
//!
//! Rings live per epoch (`fraud.ring-epoch-days`): a ring's key is `label@epoch`, and
//! members and crowds drop labels of past epochs, so chance links do not add up forever.
//!
//! Limits, on purpose: a ring remembers at most `fraud.ring-track` member ids (it keeps
//! counting beyond, so flagging still works, but members past the cap are not told); labels
//! reach members lazily (when they next scan through a linking device or IP), so a member can
//! scan once more under an old label; within an epoch rings never split (a device sold
//! second-hand links two households until the epoch ends) — the flag is a score
//! contribution, not a block on its own; IPs do not link by default (see the config).

use crate::cmd::{Cmd, MemberCmd, RingCmd};
use crate::{Ctx, Effects, Key, Output};
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

/// The epoch number of event time `ts` (µs) for epochs of `days` days.
pub fn epoch(ts: i64, days: i64) -> i64 {
    ts.div_euclid(days.max(1) * crate::DAY_US)
}

/// The key of the ring labelled `label` in `epoch`: `label@epoch`.
pub fn ring_key(label: &str, epoch: i64) -> Str {
    compact_str::format_compact!("{label}@{epoch}")
}

/// The epoch of a ring key (None: not a ring key).
pub fn epoch_of(key: &str) -> Option<i64> {
    key.rsplit_once('@')?.1.parse().ok()
}

/// One ring's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    /// Set when this ring merged into a smaller label.
    #[serde(default, skip_serializing_if = "crate::cold::omit")]
    pub into: Option<Str>,
    /// Member ids remembered, sorted.
    pub members: Vec<Str>,
    /// Members counted (at least `members.len()`).
    pub size: u32,
    /// Whether the ring reached the flagging size.
    pub flagged: bool,
}

impl Ring {
    /// Handles one command for the ring labelled `me`.
    pub fn handle(&mut self, me: &Str, cmd: RingCmd, ctx: &Ctx, fx: &mut Effects) {
        if self.size == 0 && self.into.is_none() {
            // every member is a ring of one, labelled by its own id
            let member = me.rsplit_once('@').map_or(me.as_str(), |(m, _)| m);
            self.members.push(Str::from(member));
            self.size = 1;
        }
        let st = &ctx.rules.fraud;
        match cmd {
            RingCmd::MergeInto { into } => {
                if into == *me {
                    return;
                }
                if let Some(to) = &self.into {
                    // already merged: the two remaining labels are one component
                    if *to != into {
                        let (small, large) = if into < *to {
                            (into, to.clone())
                        } else {
                            (to.clone(), into)
                        };
                        fx.send(
                            Key::Ring(large),
                            Cmd::Ring(RingCmd::MergeInto { into: small }),
                        );
                    }
                    return;
                }
                if into > *me {
                    // the other label is larger: it merges into this one
                    fx.send(
                        Key::Ring(into),
                        Cmd::Ring(RingCmd::MergeInto { into: me.clone() }),
                    );
                    return;
                }
                let members = std::mem::take(&mut self.members);
                fx.send(
                    Key::Ring(into.clone()),
                    Cmd::Ring(RingCmd::Absorb {
                        members,
                        size: self.size,
                    }),
                );
                self.into = Some(into);
                self.size = 0;
                self.flagged = false;
            }
            RingCmd::Absorb { members, size } => {
                if let Some(to) = &self.into {
                    // merged away meanwhile: the members go on to the survivor
                    fx.send(
                        Key::Ring(to.clone()),
                        Cmd::Ring(RingCmd::Absorb { members, size }),
                    );
                    return;
                }
                let known = u32::try_from(members.len()).unwrap_or(u32::MAX);
                let mut added = Vec::new();
                for m in members {
                    if let Err(i) = self.members.binary_search(&m) {
                        if self.members.len() < st.ring_track {
                            self.members.insert(i, m.clone());
                        }
                        added.push(m);
                    }
                }
                // members the other ring only counted cannot be checked for overlap: count them
                let uncounted = size.saturating_sub(known);
                self.size = self
                    .size
                    .saturating_add(u32::try_from(added.len()).unwrap_or(u32::MAX))
                    .saturating_add(uncounted);
                if self.size >= st.ring_flag_size {
                    let tell: Vec<Str> = if self.flagged {
                        added
                    } else {
                        self.flagged = true;
                        fx.out(Output::RingFlagged {
                            ring: me.clone(),
                            size: self.size,
                        });
                        self.members.clone()
                    };
                    for m in tell {
                        fx.send(
                            Key::Member(m),
                            Cmd::Member(MemberCmd::RingSize {
                                ring: me.clone(),
                                size: self.size,
                            }),
                        );
                    }
                }
            }
        }
    }
}

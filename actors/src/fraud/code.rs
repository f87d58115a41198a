//! Code actors: the registry entry of one item code. First scan wins: the state is who scanned
//! it first, when, in which event, and how often it was scanned since. A few dozen bytes per
//! code, so billions fit a disk-backed store; the runtime puts [`super::filter::CodeFilter`]
//! in front of it, so the first scan of a code (most scans) is answered without a disk read.
//!
//! The code is also where cross-region diversion is checked, once per code (its first scan):
//! a second scan of the same item is not a second diversion.

use super::{CodeSeen, ScanCheck};
use crate::cmd::{Cmd, CodeCmd, CrowdCmd, DealerCmd};
use crate::{Ctx, Effects, Key, Output};
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

/// One code's registry entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// The member who scanned it first (empty: never scanned).
    pub first: Str,
    /// Time of the first scan (µs).
    pub at: i64,
    /// The first scan's event id, so a redelivery of it is still the first scan.
    pub event: u128,
    /// Scans in all.
    pub scans: u32,
    /// Scans by members other than the first.
    pub others: u32,
}

impl Code {
    /// Handles one command for the code `me`.
    pub fn handle(&mut self, me: &Str, cmd: CodeCmd, ctx: &Ctx, fx: &mut Effects) {
        let CodeCmd::Check(mut check) = cmd;
        let event = ctx.event.as_u128();
        let seen = if self.first.is_empty() || self.event == event {
            if self.first.is_empty() {
                self.first = check.member.clone();
                self.at = ctx.ts();
                self.event = event;
                self.scans += 1;
                diversion(me, &mut check, ctx, fx);
            } else {
                check.features.outside_region = self.diverted(&check, ctx);
            }
            CodeSeen::First
        } else if self.first == check.member || check.merged.contains(&super::hash64(&self.first)) {
            // the first scanner merged into this member since is the same person: a repeat,
            // whichever of the two survived (the code then names the survivor)
            self.first = check.member.clone();
            self.scans = self.scans.saturating_add(1);
            CodeSeen::Repeat
        } else {
            self.scans = self.scans.saturating_add(1);
            self.others = self.others.saturating_add(1);
            CodeSeen::Shared
        };
        check.features.code = seen;
        fx.send(
            Key::Device(check.device.clone()),
            Cmd::Crowd(CrowdCmd::Check(check)),
        );
    }

    fn diverted(&self, check: &ScanCheck, ctx: &Ctx) -> bool {
        match (&check.dealer, check.geo) {
            (Some(d), Some((lat, lon))) => ctx.refs.outside_region(d, lat, lon).is_some(),
            _ => false,
        }
    }
}

/// On a code's first scan: a scan outside the region of its batch's dealer is an output and a
/// count against the dealer (not a reason to refuse the consumer by default).
fn diversion(code: &Str, check: &mut ScanCheck, ctx: &Ctx, fx: &mut Effects) {
    let (Some(dealer), Some(batch), Some((lat, lon))) = (&check.dealer, &check.batch, check.geo)
    else {
        return;
    };
    let Some(km) = ctx.refs.outside_region(dealer, lat, lon) else {
        return;
    };
    check.features.outside_region = true;
    fx.out(Output::Diversion {
        dealer: dealer.clone(),
        batch: batch.clone(),
        code: code.clone(),
        km_outside: (km * 10.0).round() / 10.0,
    });
    fx.send(
        Key::Dealer(dealer.clone()),
        Cmd::Dealer(DealerCmd::Diversion {
            batch: batch.clone(),
            km,
        }),
    );
}

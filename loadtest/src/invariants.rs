//! The business invariants a final state must keep, whatever the input: points never negative
//! and equal to their lots, no location's stock reserved beyond what is on hand, no dealer's
//! exposure (open orders plus unpaid shipments) above its limit — an order that would pass it
//! waits on hold instead.

use omnistream_actors::dealer::Dealer;
use omnistream_actors::engine::{Engine, Snapshot};
use omnistream_actors::member::Member;
use omnistream_actors::sku::Sku;
use omnistream_schemas::Str;

/// Every violation in a snapshot (as `replay` writes it or `/v1/admin/snapshot` serves it).
pub fn check(s: &Snapshot) -> Vec<String> {
    check_parts(s.members.iter(), s.skus.iter(), s.dealers.iter())
}

/// Every violation in a live engine's state, without copying it.
pub fn check_engine(e: &Engine) -> Vec<String> {
    check_parts(e.members(), e.skus(), e.dealers())
}

/// Every violation, one line each; empty when the state is sound.
fn check_parts<'a>(
    members: impl Iterator<Item = (&'a Str, &'a Member)>,
    skus: impl Iterator<Item = (&'a Str, &'a Sku)>,
    dealers: impl Iterator<Item = (&'a Str, &'a Dealer)>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (id, m) in members {
        let p = &m.points;
        let lots: i64 = p.lots.iter().map(|(_, n)| n).sum();
        if p.balance < 0 {
            bad.push(format!("member {id}: balance {} < 0", p.balance));
        }
        if p.balance != lots {
            bad.push(format!(
                "member {id}: balance {} is not the sum of its lots {lots}",
                p.balance
            ));
        }
        if p.pending < 0 {
            bad.push(format!("member {id}: pending {} < 0", p.pending));
        }
    }
    for (sku, v) in skus {
        for (loc, l) in v.locations.sorted() {
            if !(0..=l.on_hand).contains(&l.reserved) {
                bad.push(format!(
                    "{sku} at {loc}: reserved {} of {} on hand (oversold)",
                    l.reserved, l.on_hand
                ));
            }
        }
    }
    for (id, d) in dealers {
        let exposure = d.open_total + d.unpaid;
        if exposure > d.limit {
            bad.push(format!(
                "dealer {id}: exposure {exposure} over its limit {} without a hold",
                d.limit
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversold_location_and_a_negative_balance_are_reported() {
        let mut s = Snapshot::default();
        assert!(check(&s).is_empty());
        let mut m = omnistream_actors::member::Member::default();
        m.points.balance = -5;
        s.members.insert("m1".into(), m);
        let mut k = omnistream_actors::sku::Sku::default();
        k.locations.insert(
            "wh".into(),
            omnistream_actors::sku::Loc {
                on_hand: 1,
                reserved: 2,
                ..Default::default()
            },
        );
        s.skus.insert("S".into(), k);
        let bad = check(&s);
        assert_eq!(bad.len(), 3, "{bad:?}"); // negative, not the lots' sum, oversold
    }
}

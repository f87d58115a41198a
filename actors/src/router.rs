//! The router: turns one input event into the first commands for the entities it touches.

use crate::cmd::*;
use crate::identity::resolve;
use crate::Key;
use compact_str::{format_compact, CompactString as Str};
use omnistream_schemas::{Body, Event, Identities, Visitor};

/// An event's identities as `(kind, value)` pairs.
pub fn ids(i: &Identities) -> Vec<Id> {
    i.iter()
        .map(|(k, v)| (Str::from(k.as_str()), v.clone()))
        .collect()
}

/// The key of an order's coordinator: order ids are unique per channel.
pub fn order_key(channel: &str, order: &str) -> Str {
    format_compact!("{channel}:{order}")
}

/// The commands one event starts with, in the order they are sent.
pub fn route(ev: &Event) -> Vec<(Key, Cmd)> {
    let channel = ev.channel.as_ref().map_or("", |c| c.as_str());
    let mut out = Vec::with_capacity(2);
    match &ev.body {
        Body::Scan(s) => {
            out.push((
                Key::Campaign(s.campaign.clone()),
                Cmd::Campaign(CampaignCmd::Claim {
                    ids: ids(&s.member),
                    code: s.code.clone(),
                    store: s.store.clone(),
                }),
            ));
            if let Some(st) = &s.store {
                out.push((Key::Store(st.clone()), Cmd::Store(StoreCmd::Scan)));
            }
        }
        Body::Click(c) => out.extend(resolve(
            &ids(&c.member),
            MemberCmd::Click {
                channel: channel.into(),
                campaign: c.campaign.clone(),
            },
        )),
        Body::Order(o) => {
            let lines = o.lines.as_ref().map(|ls| {
                ls.iter()
                    .map(|l| LineV {
                        sku: l.sku.clone(),
                        qty: l.qty,
                        unit_price: l.unit_price,
                    })
                    .collect()
            });
            out.push((
                Key::Order(order_key(channel, &o.order)),
                Cmd::Order(OrderCmd::Event(Box::new(OrderEvent {
                    status: o.status,
                    kind: o.kind,
                    channel: channel.into(),
                    lines,
                    location: o.location.clone(),
                    store: o.store.clone(),
                    member: o.member.as_ref().map(ids),
                    dealer: o.dealer.clone(),
                    points_redeemed: o.points_redeemed,
                }))),
            ));
        }
        Body::Visit(v) => match (&v.visitor, &v.member, &v.rep) {
            (Visitor::Member, Some(m), _) => out.extend(resolve(
                &ids(m),
                MemberCmd::Visit {
                    store: v.store.clone(),
                    duration_s: v.duration_s,
                },
            )),
            (Visitor::Rep, _, Some(rep)) => out.push((
                Key::Store(v.store.clone()),
                Cmd::Store(StoreCmd::RepVisit {
                    rep: rep.clone(),
                    duration_s: v.duration_s,
                }),
            )),
            _ => {}
        },
        Body::Stock(s) => out.push((
            Key::Sku(s.sku.clone()),
            Cmd::Sku(SkuCmd::Stock {
                op: s.op,
                location: s.location.clone(),
                qty: s.qty,
                safety: s.safety,
            }),
        )),
        Body::Payment(p) => out.push((
            Key::Dealer(p.dealer.clone()),
            Cmd::Dealer(DealerCmd::Payment {
                amount: p.amount,
                reference: p.reference.clone(),
            }),
        )),
        Body::Dealer(d) => out.push((
            Key::Dealer(d.dealer.clone()),
            Cmd::Dealer(DealerCmd::Info {
                credit_limit: d.credit_limit,
                region: d.region.map(|r| RegionV {
                    lat: r.lat,
                    lon: r.lon,
                    radius_km: r.radius_km,
                }),
            }),
        )),
        // code batches feed the code registry of the fraud issue (#4)
        Body::CodeBatch(_) => {}
        Body::Identify(i) => out.extend(resolve(&ids(&i.member), MemberCmd::Identify)),
    }
    out
}

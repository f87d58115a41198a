//! The router: turns one input event into the first commands for the entities it touches.

use crate::cmd::*;
use crate::fraud::{net_prefix, Features, ScanCheck};
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

/// The key of an order's coordinator, `channel:order`: order ids are unique per channel. A
/// `:` or `%` in the channel is written `%3A` or `%25`, so a channel named `douyin:shopA`
/// and an order id holding a `:` never make one key (`douyin` + `shopA:1` and `douyin:shopA`
/// + `1` were both `douyin:shopA:1`: one order); keys of other channels are unchanged.
pub fn order_key(channel: &str, order: &str) -> Str {
    if !channel.contains([':', '%']) {
        return format_compact!("{channel}:{order}");
    }
    let escaped = channel.replace('%', "%25").replace(':', "%3A");
    format_compact!("{escaped}:{order}")
}

/// The channel of an order's key ([`order_key`]'s first part, as sent).
pub fn order_channel(key: &str) -> std::borrow::Cow<'_, str> {
    let c = key.split_once(':').map_or("", |(c, _)| c);
    if !c.contains('%') {
        return c.into();
    }
    c.replace("%3A", ":").replace("%25", "%").into()
}

/// The commands one event starts with, in the order they are sent.
pub fn route(ev: &Event) -> Vec<(Key, Cmd)> {
    let channel = ev.channel.as_ref().map_or("", |c| c.as_str());
    let mut out = Vec::with_capacity(2);
    match &ev.body {
        Body::Scan(s) => {
            // the fraud chain starts at the member: member → code → device → IP → prefix →
            // campaign → member, which writes the decision
            let check = ScanCheck {
                campaign: s.campaign.clone(),
                code: s.code.clone(),
                sku: s.sku.clone(),
                device: s.device.clone(),
                ip: compact_str::format_compact!("{}", s.ip),
                net: net_prefix(&s.ip),
                geo: s.geo.map(|g| (g.lat, g.lon)),
                store: s.store.clone(),
                member: Str::default(),
                ring: Str::default(),
                fresh: false,
                merged: Vec::new(),
                batch: None,
                dealer: None,
                features: Features::default(),
            };
            // the decoder guarantees at least one identity, so resolution always starts
            out.extend(resolve(&ids(&s.member), MemberCmd::Scan(Box::new(check))));
            if let Some(st) = &s.store {
                out.push((Key::Store(st.clone()), Cmd::Store(StoreCmd::Scan)));
            }
        }
        Body::Click(c) => {
            out.extend(resolve(
                &ids(&c.member),
                MemberCmd::Click {
                    channel: channel.into(),
                    campaign: c.campaign.clone(),
                },
            ));
            // how long a device has been in ordinary use tells a household's phone from a
            // farm's (fraud: fresh accounts)
            if let Some(d) = &c.device {
                out.push((Key::Device(d.clone()), Cmd::Crowd(CrowdCmd::Seen)));
            }
        }
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
                    channel: channel.into(),
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
        // code batches and dealer regions are reference data: the engine keeps them in
        // `RefData` for every handler, not in an entity
        Body::CodeBatch(_) => {}
        Body::Identify(i) => out.extend(resolve(&ids(&i.member), MemberCmd::Identify)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_of_different_channels_and_ids_never_meet() {
        assert_eq!(order_key("douyin", "DY-1"), "douyin:DY-1");
        assert_ne!(
            order_key("douyin", "shopA:1"),
            order_key("douyin:shopA", "1")
        );
        assert_ne!(order_key("a%3Ab", "1"), order_key("a:b", "1"));
        for (c, o) in [
            ("douyin:shopA", "1"),
            ("a%3Ab", "x"),
            ("mall", "o:1"),
            ("%", ""),
        ] {
            assert_eq!(order_channel(&order_key(c, o)), c);
        }
    }
}

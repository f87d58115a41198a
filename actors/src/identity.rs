//! Identity actors: one per identity value, holding the member it belongs to. Resolution of
//! an event's identities visits each identity key in turn (so it scales like any keyed state),
//! then decides at the last hop: a new member, the one member found, or a merge of several.

use crate::cmd::{Cmd, Id, IdentityCmd, MemberCmd, Probe, Resolve};
use crate::{Ctx, Effects, Key};
use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

/// What one identity knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The member this identity belongs to, once bound.
    pub member: Option<Str>,
    /// How many times a member gave it up (a person replaced a member's phone): a member
    /// started by it later gets an id of its own ([`member_id_at`]), not the id of the member
    /// that had it, which that identity may have started (store encoding 11).
    #[serde(
        default,
        deserialize_with = "crate::cold::since::<11, _, _>",
        skip_serializing_if = "crate::cold::omit"
    )]
    pub released: u32,
}

/// The member id a new member created from this identity gets: deterministic, so a replay
/// (or two shards racing on the same new identity) issues the same id.
pub fn member_id_for(id: &Id) -> Str {
    member_id_at(id, 0)
}

/// The member id a new member created from this identity gets after the identity was given
/// up `released` times (0: never, [`member_id_for`]): the member that gave it up may have
/// been started by it and keeps that id.
pub fn member_id_at(id: &Id, released: u32) -> Str {
    // FNV-1a over kind and value (and the count, once given up), 64 bits
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let count = (released > 0).then(|| released.to_le_bytes());
    let tail = count
        .iter()
        .flat_map(|c| std::iter::once(0u8).chain(c.iter().copied()));
    for b in id.0.bytes().chain([0u8]).chain(id.1.bytes()).chain(tail) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    member_id_of(h)
}

/// The member id of a number: `m` + 16 lowercase hex digits, the form every issued id has.
pub(crate) fn member_id_of(n: u64) -> Str {
    compact_str::format_compact!("m{n:016x}")
}

/// The number of a member id of the issued form ([`member_id_of`]'s inverse); None for an id
/// of any other form (a channel's own, an uppercase digit, another length).
pub(crate) fn member_number(id: &str) -> Option<u64> {
    if !omnistream_schemas::pii::issued_member_id(id) {
        return None;
    }
    u64::from_str_radix(&id[1..], 16).ok()
}

/// Starts resolving `ids` and delivering `then` to their member. A `member_id` names the
/// member directly: it is asked first whether it exists ([`MemberCmd::Given`]), then the
/// others are visited in order ([`first_hop`]). None when `ids` is empty.
pub fn resolve(ids: &[Id], then: MemberCmd) -> Option<(Key, Cmd)> {
    let given = ids
        .iter()
        .find(|(k, _)| k == "member_id")
        .map(|(_, v)| v.clone());
    let hops: Vec<Id> = ids
        .iter()
        .filter(|(k, _)| k != "member_id")
        .cloned()
        .collect();
    let r = Box::new(Resolve {
        found: Vec::with_capacity(hops.len()),
        ids: hops,
        given,
        then,
        first_released: 0,
    });
    match &r.given {
        Some(m) => Some((Key::Member(m.clone()), Cmd::Member(MemberCmd::Given(r)))),
        None => first_hop(r).ok(),
    }
}

/// The first identity of a resolution to visit, or, with none to visit, the resolution back
/// (its given member, known, takes the command itself).
pub(crate) fn first_hop(r: Box<Resolve>) -> Result<(Key, Cmd), Box<Resolve>> {
    match r.ids.first() {
        Some((k, v)) => Ok((
            Key::Identity(k.clone(), v.clone()),
            Cmd::Identity(IdentityCmd::Resolve(r)),
        )),
        None => Err(r),
    }
}

impl Identity {
    /// Handles one command for this identity.
    pub fn handle(&mut self, cmd: IdentityCmd, _ctx: &Ctx, fx: &mut Effects) {
        match cmd {
            IdentityCmd::Bind { member } => match &self.member {
                None => self.member = Some(member),
                Some(m) if *m == member => {}
                Some(m) => {
                    // bound meanwhile to another member: the two are one person; the larger
                    // id merges into the smaller, the same rule as in resolution
                    let (survivor, other) = if *m < member {
                        (m.clone(), member)
                    } else {
                        (member, m.clone())
                    };
                    self.member = Some(survivor.clone());
                    fx.send(
                        Key::Member(other),
                        Cmd::Member(MemberCmd::MergeInto { survivor }),
                    );
                }
            },
            IdentityCmd::Rebind { from, to } => {
                if self.member.as_ref() == Some(&from) {
                    self.member = Some(to);
                }
            }
            IdentityCmd::Claim {
                member,
                phone,
                reference,
            } => {
                let taken_by = match &self.member {
                    Some(m) if *m != member => Some(m.clone()),
                    _ => {
                        self.member = Some(member.clone());
                        None
                    }
                };
                fx.send(
                    Key::Member(member),
                    Cmd::Member(MemberCmd::PhoneClaimed {
                        phone,
                        reference,
                        taken_by,
                    }),
                );
            }
            IdentityCmd::Release { member } => {
                if self.member.as_ref() == Some(&member) {
                    self.member = None;
                    self.released += 1;
                }
            }
            IdentityCmd::Resolve(mut r) => {
                if r.found.is_empty() {
                    r.first_released = self.released;
                }
                r.found.push(self.member.clone());
                if r.found.len() < r.ids.len() {
                    let next = &r.ids[r.found.len()];
                    fx.send(
                        Key::Identity(next.0.clone(), next.1.clone()),
                        Cmd::Identity(IdentityCmd::Resolve(r)),
                    );
                    return;
                }
                decide(*r, fx);
            }
        }
    }
}

/// The last hop: pick the member, merge the others into it, deliver the command. Three or
/// more members are asked for their phones first ([`settle`]).
fn decide(r: Resolve, fx: &mut Effects) {
    // the members in the order the event names them, each once
    let mut named: Vec<Str> = Vec::new();
    for m in r.given.iter().chain(r.found.iter().flatten()) {
        if !named.contains(m) {
            named.push(m.clone());
        }
    }
    if named.len() < 3 {
        // one member, or two: the pair merges or not whichever id is the smaller
        return merge(r, named, fx);
    }
    // Three or more, of which two may have different phones: the survivor takes the others
    // in one at a time and refuses one whose phone differs from those taken so far, so which
    // are refused would follow from the order they reach it, that is from their ids (from the
    // personal-data key). Their phones are gathered first instead, and the event's order
    // decides: each member in turn joins unless its phone differs from one joined before.
    let first = named[0].clone();
    let probe = Probe {
        resolve: r,
        phones: Vec::with_capacity(named.len()),
        members: named,
    };
    fx.send(
        Key::Member(first),
        Cmd::Member(MemberCmd::Phones(Box::new(probe))),
    );
}

/// A member's answer to [`MemberCmd::Phones`]: with `phone`, that of the member `by` that
/// answered, added, the probe goes on to the next member, or, all asked, the merge is made of
/// those whose phones agree.
pub fn probed(mut p: Probe, by: Str, phone: Option<Str>, fx: &mut Effects) {
    p.phones.push((by, phone));
    if let Some(next) = p.members.get(p.phones.len()) {
        let next = next.clone();
        return fx.send(
            Key::Member(next),
            Cmd::Member(MemberCmd::Phones(Box::new(p))),
        );
    }
    let (join, refused) = settle(&p.members, &p.phones);
    if let Some(target) = join.iter().min() {
        for other in refused {
            fx.send(
                Key::Member(target.clone()),
                Cmd::Member(MemberCmd::MergeRefused { other }),
            );
        }
    }
    merge(p.resolve, join, fx);
}

/// Which of `members` (in the event's order) merge: each in turn, unless its phone differs
/// from the phone of one taken before; and which are refused. A member that answered through
/// another listed before it (an alias whose identities still named it) is that member: it
/// goes with it, and is neither counted nor refused again.
fn settle(members: &[Str], phones: &[(Str, Option<Str>)]) -> (Vec<Str>, Vec<Str>) {
    let (mut join, mut refused) = (Vec::new(), Vec::new());
    let mut phone: Option<&Str> = None;
    let mut answered: Vec<&Str> = Vec::new();
    for (m, (by, p)) in members.iter().zip(phones) {
        if answered.contains(&by) {
            continue;
        }
        answered.push(by);
        match (phone, p) {
            (Some(a), Some(b)) if a != b => refused.push(m.clone()),
            _ => {
                phone = phone.or(p.as_ref());
                join.push(m.clone());
            }
        }
    }
    (join, refused)
}

/// Merges `members` (the first is the member of the event's first identity that had one) into
/// the smallest of them and delivers the command.
fn merge(r: Resolve, named: Vec<Str>, fx: &mut Effects) {
    // should a merge be refused: the member of the first identity that had one
    let home = named.first().cloned();
    let mut members = named;
    members.sort();
    let target = match members.first() {
        Some(m) => m.clone(),
        // nobody yet: a new member, named after the event's first identity
        None => member_id_at(&r.ids[0], r.first_released),
    };
    for other in members.iter().skip(1) {
        fx.send(
            Key::Member(other.clone()),
            Cmd::Member(MemberCmd::MergeInto {
                survivor: target.clone(),
            }),
        );
    }
    let home = home.unwrap_or_else(|| target.clone());
    // binding is the member's call (it checks phone conflicts): it gets the unbound ones
    let bind = r
        .ids
        .into_iter()
        .zip(r.found)
        .filter_map(|(id, m)| m.is_none().then_some(id))
        .collect();
    let seen = MemberCmd::Seen {
        bind,
        then: Box::new(r.then),
    };
    let (Some(via), true) = (members.last(), members.len() > 1) else {
        return fx.send(Key::Member(target), Cmd::Member(seen));
    };
    // with a merge to make, the event goes to the target through the last member merging
    // into it: sent after its MergeInto, it waits in that member's stash until the target has
    // taken in its state, then reaches the target with it (whose scan memory then names the
    // merged members, for the crowds and the code). Sent to the target at once, it ran before
    // that state arrived (a redemption checked against one side's points), and which side
    // that was followed from the ids, so from the personal-data key. Should the target refuse
    // the merge (two phones: two people), the event goes to the member of its first identity
    // that had one, which no key decides either.
    let via_cmd = MemberCmd::Via {
        home,
        seen: Box::new(seen),
    };
    fx.send(Key::Member(via.clone()), Cmd::Member(via_cmd));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_deterministic_and_distinct() {
        let a = member_id_for(&("openid".into(), "o1".into()));
        assert_eq!(a, member_id_for(&("openid".into(), "o1".into())));
        assert_ne!(a, member_id_for(&("openid".into(), "o2".into())));
        assert_ne!(a, member_id_for(&("tmall".into(), "o1".into())));
        // an identity given up starts a member of another id each time
        let id = ("openid".into(), "o1".into());
        assert_eq!(member_id_at(&id, 0), a);
        assert_ne!(member_id_at(&id, 1), a);
        assert_ne!(member_id_at(&id, 1), member_id_at(&id, 2));
        assert_eq!(a.len(), 17);
        // every issued id is of the form the timers hold as a number (`timers::Tk`)
        let n = member_number(&a).expect("an issued id reads as its number");
        assert_eq!(member_id_of(n), a);
        assert_eq!(member_number("m1"), None);
    }

    #[test]
    fn members_join_in_the_events_order_unless_their_phone_differs() {
        let m = |s: &str| Str::from(s);
        let p = |s: &str| Some(Str::from(s));
        let members = [m("m3"), m("m1"), m("m2"), m("m4")];
        let each = |phones: [Option<Str>; 4]| -> Vec<(Str, Option<Str>)> {
            members.iter().cloned().zip(phones).collect()
        };
        // no phone on the first: the first phone taken decides
        let (join, refused) = settle(&members, &each([None, p("x"), p("y"), p("x")]));
        assert_eq!(join, [m("m3"), m("m1"), m("m4")]);
        assert_eq!(refused, [m("m2")]);
        // members without phones always join
        let (join, refused) = settle(&members, &each([p("y"), None, p("x"), None]));
        assert_eq!(join, [m("m3"), m("m1"), m("m4")]);
        assert_eq!(refused, [m("m2")]);
        let (join, refused) = settle(&members, &each([None, None, None, None]));
        assert_eq!(join, members);
        assert!(refused.is_empty());
        // m4 answered through m2 (an alias of it still named by an identity): refused once
        let mut through = each([None, p("x"), p("y"), p("y")]);
        through[3].0 = m("m2");
        let (join, refused) = settle(&members, &through);
        assert_eq!(join, [m("m3"), m("m1")]);
        assert_eq!(refused, [m("m2")]);
    }

    #[test]
    fn a_member_id_is_asked_first_whether_it_exists() {
        let (k, c) = resolve(&[("member_id".into(), "m1".into())], MemberCmd::Identify).unwrap();
        assert_eq!(k, Key::Member("m1".into()));
        let Cmd::Member(MemberCmd::Given(r)) = c else {
            panic!("{c:?}")
        };
        assert!(r.ids.is_empty());
        assert!(first_hop(r).is_err());
        // with other identities too: the member first, then its identities in turn
        let ids = [
            ("openid".into(), "o1".into()),
            ("member_id".into(), "m1".into()),
        ];
        let (k, c) = resolve(&ids, MemberCmd::Identify).unwrap();
        assert_eq!(k, Key::Member("m1".into()));
        let Cmd::Member(MemberCmd::Given(r)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(r.given.as_deref(), Some("m1"));
        let (k, _) = first_hop(r).unwrap();
        assert_eq!(k, Key::Identity("openid".into(), "o1".into()));
        assert!(resolve(&[], MemberCmd::Identify).is_none());
    }
}

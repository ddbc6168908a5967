//! The iq a room answers: disco, ping and XEP-0410 self-ping, iq between occupants,
//! moderation (`muc#admin`: kick, voice, affiliations and their lists) and ownership
//! (`muc#owner`: configuration, instant rooms, destruction) (XEP-0045 §8–§10).

use super::roles::{Affiliation, Role};
use super::room::{ItemExtras, Room, error, stanza, status};
use super::{Effect, ns};
use crate::stanza::{ErrorCondition, iq_result, set_attr};
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

pub(super) fn iq(room: &mut Room, from: &Jid, to: &Jid, st: &Element, _now_ms: u64) -> Vec<Effect> {
    let ty = st.attr("type").unwrap_or("");
    if let Some(nick) = to.resource() {
        return to_occupant(room, from, nick.as_str(), st);
    }
    if ty != "get" && ty != "set" {
        return Vec::new();
    }
    let Some(q) = st.children().next() else {
        return error(st, ErrorCondition::BadRequest, None);
    };
    let reply = |payload: Option<Element>| vec![Effect::Send(iq_result(st, payload))];
    match (ty, q.name(), q.ns().as_str()) {
        ("get", "query", ns::DISCO_INFO) => {
            if q.attr("node").is_some() {
                return error(st, ErrorCondition::ItemNotFound, None);
            }
            reply(Some(room_info(room)))
        }
        ("get", "query", ns::DISCO_ITEMS) => reply(Some(Element::bare("query", ns::DISCO_ITEMS))),
        ("get", "ping", ns::PING) => reply(None),
        ("get", "query", ns::ADMIN) => admin_get(room, from, st, q),
        ("set", "query", ns::ADMIN) => admin_set(room, from, st, q),
        ("get", "query", ns::OWNER) => {
            if room.affiliation(&from.to_bare()) != Affiliation::Owner {
                return error(
                    st,
                    ErrorCondition::Forbidden,
                    Some("only owners configure the room"),
                );
            }
            let mut query = Element::bare("query", ns::OWNER);
            query.append_child(room.config.form(room.limits.max_occupants));
            reply(Some(query))
        }
        ("set", "query", ns::OWNER) => owner_set(room, from, st, q),
        _ => error(st, ErrorCondition::ServiceUnavailable, None),
    }
}

/// disco#info of a room (§6.4): its identity and what it is.
pub fn room_info(room: &Room) -> Element {
    let mut q = Element::bare("query", ns::DISCO_INFO);
    let mut id = Element::bare("identity", ns::DISCO_INFO);
    set_attr(&mut id, "category", "conference");
    set_attr(&mut id, "type", "text");
    let name = if room.config.name.is_empty() {
        room.jid
            .node()
            .map(|n| n.as_str().to_string())
            .unwrap_or_default()
    } else {
        room.config.name.clone()
    };
    set_attr(&mut id, "name", &name);
    q.append_child(id);
    let mut features = vec![
        ns::MUC,
        ns::DISCO_INFO,
        ns::PING,
        ns::OCCUPANT_ID,
        "http://jabber.org/protocol/muc#self-ping-optimization",
    ];
    features.extend(room.config.features());
    for f in features {
        let mut e = Element::bare("feature", ns::DISCO_INFO);
        set_attr(&mut e, "var", f);
        q.append_child(e);
    }
    q
}

/// disco#info of the room service itself.
pub fn service_info(name: &str) -> Element {
    let mut q = Element::bare("query", ns::DISCO_INFO);
    let mut id = Element::bare("identity", ns::DISCO_INFO);
    set_attr(&mut id, "category", "conference");
    set_attr(&mut id, "type", "text");
    set_attr(&mut id, "name", name);
    q.append_child(id);
    for f in [
        ns::MUC,
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::OCCUPANT_ID,
    ] {
        let mut e = Element::bare("feature", ns::DISCO_INFO);
        set_attr(&mut e, "var", f);
        q.append_child(e);
    }
    q
}

/// disco#items of the service: the public rooms, as (JID, name).
pub fn service_items(rooms: &[(String, String)]) -> Element {
    let mut q = Element::bare("query", ns::DISCO_ITEMS);
    for (jid, name) in rooms {
        let mut i = Element::bare("item", ns::DISCO_ITEMS);
        set_attr(&mut i, "jid", jid);
        if !name.is_empty() {
            set_attr(&mut i, "name", name);
        }
        q.append_child(i);
    }
    q
}

/// An iq to room/nick: self-ping (XEP-0410) is answered; any other is passed between
/// occupants (§7.5 private iq), the reply back the same way.
fn to_occupant(room: &Room, from: &Jid, nick: &str, st: &Element) -> Vec<Effect> {
    let ty = st.attr("type").unwrap_or("");
    let Some(sender) = room.occupants.by_jid(from) else {
        // XEP-0410 §3: the client is not joined (under this nick or at all)
        return error(
            st,
            ErrorCondition::NotAcceptable,
            Some("you are not an occupant"),
        );
    };
    if sender.nick == nick && ty == "get" && st.has_child("ping", ns::PING) {
        return vec![Effect::Send(iq_result(st, None))];
    }
    let Some(target) = room.occupants.by_nick(nick) else {
        return error(st, ErrorCondition::ItemNotFound, Some("no such occupant"));
    };
    let Some(to) = target.jids().next() else {
        return Vec::new();
    };
    let mut fwd = st.clone();
    set_attr(&mut fwd, "from", &room.room_jid(&sender.nick));
    set_attr(&mut fwd, "to", to.as_str());
    vec![Effect::Send(fwd)]
}

fn item(attrs: &[(&str, &str)]) -> Element {
    let mut i = Element::bare("item", ns::ADMIN);
    for (k, v) in attrs {
        set_attr(&mut i, k, v);
    }
    i
}

fn admin_get(room: &Room, from: &Jid, st: &Element, q: &Element) -> Vec<Effect> {
    let Some(it) = q.get_child("item", ns::ADMIN) else {
        return error(st, ErrorCondition::BadRequest, None);
    };
    let me = room.affiliation(&from.to_bare());
    let mut list = Element::bare("query", ns::ADMIN);
    if let Some(a) = it.attr("affiliation") {
        let Some(a) = Affiliation::parse(a).filter(|a| *a != Affiliation::None) else {
            return error(st, ErrorCondition::BadRequest, None);
        };
        if me < Affiliation::Admin {
            return error(
                st,
                ErrorCondition::Forbidden,
                Some("only admins and owners see these lists"),
            );
        }
        for (j, _) in room.affiliations.iter().filter(|(_, x)| **x == a) {
            let nick = room
                .occupants
                .iter()
                .find(|o| &o.bare == j)
                .map(|o| o.nick.as_str());
            let mut e = item(&[("affiliation", a.as_str()), ("jid", j.as_str())]);
            if let Some(n) = nick {
                set_attr(&mut e, "nick", n);
            }
            list.append_child(e);
        }
    } else if let Some(r) = it.attr("role") {
        let Some(r) = Role::parse(r).filter(|r| *r != Role::None) else {
            return error(st, ErrorCondition::BadRequest, None);
        };
        if room
            .occupants
            .by_jid(from)
            .is_none_or(|o| o.role != Role::Moderator)
        {
            return error(
                st,
                ErrorCondition::Forbidden,
                Some("only moderators see these lists"),
            );
        }
        for o in room.occupants.iter().filter(|o| o.role == r) {
            let mut e = item(&[
                ("role", r.as_str()),
                ("nick", &o.nick),
                ("affiliation", o.affiliation.as_str()),
            ]);
            if let Some(j) = o.jids().next() {
                set_attr(&mut e, "jid", j.as_str());
            }
            list.append_child(e);
        }
    } else {
        return error(st, ErrorCondition::BadRequest, None);
    }
    vec![Effect::Send(iq_result(st, Some(list)))]
}

/// One change asked for in a `muc#admin` set, checked.
enum Change {
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    Affiliation {
        jid: BareJid,
        aff: Affiliation,
        reason: Option<String>,
    },
}

/// Check one item against the requester's rights; an error condition when refused.
fn check(room: &Room, from: &Jid, it: &Element) -> Result<Change, ErrorCondition> {
    let me_aff = room.affiliation(&from.to_bare());
    let me_role = room.occupants.by_jid(from).map_or(Role::None, |o| o.role);
    let reason = it.get_child("reason", ns::ADMIN).map(|r| r.text());
    if let Some(a) = it.attr("affiliation") {
        let aff = Affiliation::parse(a).ok_or(ErrorCondition::BadRequest)?;
        let jid = match (it.attr("jid"), it.attr("nick")) {
            (Some(j), _) => BareJid::new(j)
                .or_else(|_| Jid::new(j).map(|j| j.to_bare()))
                .map_err(|_| ErrorCondition::JidMalformed)?,
            (None, Some(n)) => room
                .occupants
                .by_nick(n)
                .ok_or(ErrorCondition::ItemNotFound)?
                .bare
                .clone(),
            (None, None) => return Err(ErrorCondition::BadRequest),
        };
        let current = room.affiliation(&jid);
        if !me_aff.may_change(current, aff) {
            return Err(if me_aff >= Affiliation::Admin {
                ErrorCondition::NotAllowed
            } else {
                ErrorCondition::Forbidden
            });
        }
        return Ok(Change::Affiliation { jid, aff, reason });
    }
    let (Some(r), Some(nick)) = (it.attr("role"), it.attr("nick")) else {
        return Err(ErrorCondition::BadRequest);
    };
    let role = Role::parse(r).ok_or(ErrorCondition::BadRequest)?;
    if me_role != Role::Moderator {
        return Err(ErrorCondition::Forbidden);
    }
    let target = room
        .occupants
        .by_nick(nick)
        .ok_or(ErrorCondition::ItemNotFound)?;
    // §8.2, §8.4: admins and owners cannot be kicked or silenced, nor can anyone
    // with a higher affiliation than the moderator's
    if role < Role::Moderator
        && (target.affiliation >= Affiliation::Admin || target.affiliation > me_aff)
    {
        return Err(ErrorCondition::NotAllowed);
    }
    // §9.6: granting or revoking moderator is for admins and owners
    if (role == Role::Moderator || target.role == Role::Moderator) && me_aff < Affiliation::Admin {
        return Err(ErrorCondition::NotAllowed);
    }
    Ok(Change::Role {
        nick: nick.to_string(),
        role,
        reason,
    })
}

fn admin_set(room: &mut Room, from: &Jid, st: &Element, q: &Element) -> Vec<Effect> {
    let mut changes = Vec::new();
    for it in q.children().filter(|c| c.is("item", ns::ADMIN)) {
        match check(room, from, it) {
            Ok(c) => changes.push(c),
            Err(cond) => return error(st, cond, None),
        }
    }
    if changes.is_empty() {
        return error(st, ErrorCondition::BadRequest, None);
    }
    // the last owner stays (§10.5)
    let owners_after = room
        .affiliations
        .iter()
        .filter(|(j, a)| {
            **a == Affiliation::Owner
                && !changes.iter().any(|c| matches!(c, Change::Affiliation { jid, aff, .. } if jid == *j && *aff != Affiliation::Owner))
        })
        .count()
        + changes.iter().filter(|c| matches!(c, Change::Affiliation { aff: Affiliation::Owner, .. })).count();
    if owners_after == 0 {
        return error(
            st,
            ErrorCondition::Conflict,
            Some("a room keeps at least one owner"),
        );
    }
    let actor = room.occupants.by_jid(from).map(|o| o.nick.clone());
    let mut out = vec![Effect::Send(iq_result(st, None))];
    let mut save = false;
    for c in changes {
        match c {
            Change::Role { nick, role, reason } => {
                let extras = ItemExtras {
                    actor: actor.as_deref(),
                    reason: reason.as_deref(),
                    ..Default::default()
                };
                if role == Role::None {
                    out.extend(room.remove_occupant(&nick, &[status::KICKED], extras));
                } else if let Some(o) = room.occupants.by_nick_mut(&nick) {
                    let was = o.role;
                    o.role = role;
                    room.broadcast_presence(&nick, None, &[], extras, &mut out);
                    room.reveal_jids_to(&nick, was, &mut out);
                }
            }
            Change::Affiliation { jid, aff, reason } => {
                save = true;
                if aff == Affiliation::None {
                    room.affiliations.remove(&jid);
                } else {
                    room.affiliations.insert(jid.clone(), aff);
                }
                let extras = ItemExtras {
                    actor: actor.as_deref(),
                    reason: reason.as_deref(),
                    ..Default::default()
                };
                for nick in room.occupants.nicks_of(&jid) {
                    if aff == Affiliation::Outcast {
                        if let Some(o) = room.occupants.by_nick_mut(&nick) {
                            o.affiliation = aff;
                        }
                        out.extend(room.remove_occupant(&nick, &[status::BANNED], extras));
                    } else if room.config.members_only && aff < Affiliation::Member {
                        if let Some(o) = room.occupants.by_nick_mut(&nick) {
                            o.affiliation = aff;
                        }
                        out.extend(room.remove_occupant(
                            &nick,
                            &[status::AFFILIATION_CHANGED],
                            extras,
                        ));
                    } else {
                        let moderated = room.config.moderated;
                        let mut was = Role::None;
                        if let Some(o) = room.occupants.by_nick_mut(&nick) {
                            was = o.role;
                            o.affiliation = aff;
                            o.role = aff.default_role(moderated);
                        }
                        room.broadcast_presence(&nick, None, &[], extras, &mut out);
                        room.reveal_jids_to(&nick, was, &mut out);
                    }
                }
            }
        }
    }
    if save {
        out.extend(room.save());
    }
    out
}

fn owner_set(room: &mut Room, from: &Jid, st: &Element, q: &Element) -> Vec<Effect> {
    if room.affiliation(&from.to_bare()) != Affiliation::Owner {
        return error(
            st,
            ErrorCondition::Forbidden,
            Some("only owners configure the room"),
        );
    }
    if let Some(d) = q.get_child("destroy", ns::OWNER) {
        return destroy(room, st, d);
    }
    let Some(x) = q.get_child("x", ns::DATA) else {
        return error(st, ErrorCondition::BadRequest, None);
    };
    match x.attr("type") {
        Some("cancel") => {
            if room.locked {
                // §10.1.3: cancelling the initial configuration destroys the room
                let d = Element::bare("destroy", ns::OWNER);
                return destroy(room, st, &d);
            }
            vec![Effect::Send(iq_result(st, None))]
        }
        Some("submit") => {
            let was_persistent = room.config.persistent;
            let was_members_only = room.config.members_only;
            let was_non_anonymous = room.config.whois_anyone;
            match room.config.apply(x, room.limits.max_occupants) {
                Ok(c) => room.config = c,
                Err(_) => {
                    return error(
                        st,
                        ErrorCondition::NotAcceptable,
                        Some("a field has a value it cannot take"),
                    );
                }
            }
            room.locked = false;
            let mut out = vec![Effect::Send(iq_result(st, None))];
            if room.config.persistent {
                out.push(Effect::Save);
            } else if was_persistent {
                out.push(Effect::Delete);
            }
            // §10.2.1: occupants are told the configuration changed, and how the
            // anonymity changed when it did
            let mut m = stanza("message", room.jid.as_str(), None, Some("groupchat"));
            let mut ux = Element::bare("x", ns::USER);
            let mut codes = vec![status::CONFIG_CHANGED];
            match (was_non_anonymous, room.config.whois_anyone) {
                (false, true) => codes.push(status::NOW_NON_ANONYMOUS),
                (true, false) => codes.push(status::NOW_SEMI_ANONYMOUS),
                _ => {}
            }
            for code in codes {
                let mut s = Element::bare("status", ns::USER);
                set_attr(&mut s, "code", &code.to_string());
                ux.append_child(s);
            }
            m.append_child(ux);
            out.push(Effect::Fanout {
                stanza: m,
                to: room.occupants.all_jids(),
            });
            // §9.3: a room made members-only removes who is not a member (status 322)
            if room.config.members_only && !was_members_only {
                let outsiders: Vec<String> = room
                    .occupants
                    .iter()
                    .filter(|o| o.affiliation < Affiliation::Member)
                    .map(|o| o.nick.clone())
                    .collect();
                for nick in outsiders {
                    out.extend(room.remove_occupant(
                        &nick,
                        &[status::MEMBERS_ONLY],
                        ItemExtras::default(),
                    ));
                }
            }
            out
        }
        _ => error(st, ErrorCondition::BadRequest, None),
    }
}

/// §10.9: everyone leaves with the reason and the alternate venue; the room is gone.
fn destroy(room: &mut Room, st: &Element, d: &Element) -> Vec<Effect> {
    let mut out = vec![Effect::Send(iq_result(st, None))];
    let mut notice = Element::bare("destroy", ns::USER);
    if let Some(j) = d.attr("jid") {
        set_attr(&mut notice, "jid", j);
    }
    if let Some(r) = d.get_child("reason", ns::OWNER) {
        let mut re = Element::bare("reason", ns::USER);
        re.append_text(r.text());
        notice.append_child(re);
    }
    for o in room.occupants.iter() {
        for to in o.jids() {
            let mut p = stanza(
                "presence",
                &room.room_jid(&o.nick),
                Some(to.as_str()),
                Some("unavailable"),
            );
            let mut x = Element::bare("x", ns::USER);
            let mut it = Element::bare("item", ns::USER);
            set_attr(&mut it, "affiliation", "none");
            set_attr(&mut it, "role", "none");
            x.append_child(it);
            x.append_child(notice.clone());
            let mut s = Element::bare("status", ns::USER);
            set_attr(&mut s, "code", &status::SELF.to_string());
            x.append_child(s);
            p.append_child(x);
            out.push(Effect::Send(p));
        }
    }
    room.occupants = Default::default();
    room.destroyed = true;
    out.push(Effect::Delete);
    out.push(Effect::Empty);
    out
}

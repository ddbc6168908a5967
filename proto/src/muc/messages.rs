//! Messages in a room: groupchat fan-out with reflection and history, subject changes,
//! private messages between occupants, mediated invitations and declines (XEP-0045
//! §7.4, §7.5, §7.8, §8.1).

use super::config::AllowPm;
use super::roles::{Affiliation, Role};
use super::room::{Room, cleaned, cleaned_except, error, stanza};
use super::{Effect, ns};
use crate::stanza::{ErrorCondition, set_attr};
use minidom::Element;
use std::collections::VecDeque;
use xmpp_parsers::jid::{BareJid, Jid};

/// Invitees of one invitation message at most; beyond: `not-acceptable`.
pub const MAX_INVITEES: usize = 10;
/// Pending invitations a room remembers at most (the oldest are forgotten first).
pub const MAX_PENDING_INVITATIONS: usize = 256;
/// How long an invitation may be declined, in milliseconds (one hour).
pub const INVITATION_TTL_MS: u64 = 3_600_000;
/// Affiliations a members-only room holds at most for invitations to grant
/// membership; beyond it invitations there are refused (`resource-constraint`).
pub const MAX_MEMBERS_BY_INVITATION: usize = 1000;

/// Invitations a room sent that may still be declined: (invitee, inviter, expiry in ms),
/// oldest first, at most [`MAX_PENDING_INVITATIONS`].
#[derive(Debug, Default)]
pub struct Invitations(VecDeque<(BareJid, Jid, u64)>);

impl Invitations {
    fn add(&mut self, invitee: BareJid, inviter: Jid, now_ms: u64) {
        self.expire(now_ms);
        if self.0.len() >= MAX_PENDING_INVITATIONS {
            self.0.pop_front();
        }
        self.0
            .push_back((invitee, inviter, now_ms.saturating_add(INVITATION_TTL_MS)));
    }

    /// Take the invitation of `invitee` by `inviter` (compared as bare JIDs), if pending.
    fn take(&mut self, invitee: &BareJid, inviter: &Jid, now_ms: u64) -> Option<Jid> {
        self.expire(now_ms);
        let want = inviter.to_bare();
        let i = self
            .0
            .iter()
            .position(|(e, r, _)| e == invitee && r.to_bare() == want)?;
        self.0.remove(i).map(|(_, r, _)| r)
    }

    fn expire(&mut self, now_ms: u64) {
        while self.0.front().is_some_and(|(_, _, exp)| *exp <= now_ms) {
            self.0.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(super) fn message(
    room: &mut Room,
    from: &Jid,
    to: &Jid,
    st: &Element,
    now_ms: u64,
) -> Vec<Effect> {
    let ty = st.attr("type");
    if ty == Some("error") {
        return match to.resource() {
            Some(nick) => relay_error(room, from, nick.as_str(), st, now_ms),
            None => delivery_error(room, from, st),
        };
    }
    if let Some(nick) = to.resource() {
        return private(room, from, nick.as_str(), st, now_ms);
    }
    if ty == Some("groupchat") {
        return groupchat(room, from, st, now_ms);
    }
    if let Some(x) = st.get_child("x", ns::USER) {
        if x.has_child("decline", ns::USER) {
            return decline(room, from, st, x, now_ms);
        }
        if x.has_child("invite", ns::USER) {
            return invite(room, from, st, x, now_ms);
        }
    }
    error(
        st,
        ErrorCondition::BadRequest,
        Some("messages to the room are of type groupchat"),
    )
}

/// An error from an occupant's own JID saying it cannot be reached: a message from
/// the room bounced. The occupant is removed (status 333) rather than written to
/// again; other errors change nothing. Only errors to the bare room get here: those
/// to room/nick are a client refusing what another occupant sent (`relay_error`).
fn delivery_error(room: &mut Room, from: &Jid, st: &Element) -> Vec<Effect> {
    const GONE: [&str; 5] = [
        "service-unavailable",
        "recipient-unavailable",
        "item-not-found",
        "remote-server-not-found",
        "gone",
    ];
    let unreachable = st
        .get_child("error", ns::CLIENT)
        .is_some_and(|e| GONE.iter().any(|c| e.has_child(c, ns::STANZAS)));
    let Some(nick) = room.occupants.by_jid(from).map(|o| o.nick.clone()) else {
        return Vec::new();
    };
    if !unreachable {
        return Vec::new();
    }
    room.remove_occupant(
        &nick,
        &[super::room::status::ERROR],
        super::room::ItemExtras::default(),
    )
}

/// An error from an occupant to room/nick: its client refused something that occupant
/// sent it (a private message). It goes on to the sessions of `nick`, from the
/// erring occupant's room JID; it says nothing about the erring occupant being gone.
/// Errors are never answered: from a non-occupant, to no one, or past the sender's
/// message rate they are dropped.
fn relay_error(room: &mut Room, from: &Jid, nick: &str, st: &Element, now_ms: u64) -> Vec<Effect> {
    let Some(sender) = room.occupants.by_jid(from).map(|o| o.nick.clone()) else {
        return Vec::new();
    };
    let Some(to) = room
        .occupants
        .by_nick(nick)
        .map(|o| o.jids().cloned().collect::<Vec<_>>())
    else {
        return Vec::new();
    };
    if !within_rate(room, from, now_ms) {
        return Vec::new();
    }
    let mut e = cleaned(st, "message");
    set_attr(&mut e, "from", &room.room_jid(&sender));
    vec![Effect::Fanout { stanza: e, to }]
}

/// The occupant-id element of XEP-0421.
fn occupant_id(id: &str) -> Element {
    let mut e = Element::bare("occupant-id", ns::OCCUPANT_ID);
    set_attr(&mut e, "id", id);
    e
}

/// Count a message against the sender's rate; `false` when over it.
fn within_rate(room: &mut Room, from: &Jid, now_ms: u64) -> bool {
    let per_minute = room.limits.messages_per_minute;
    let Some(bare) = room.occupants.by_jid(from).map(|o| o.bare.clone()) else {
        return false;
    };
    let counted = super::occupants::Counted::Message;
    room.rates.allow(&bare, counted, now_ms, per_minute)
}

/// A groupchat message as the room broadcasts it: [`cleaned`], and without what only
/// the room may put in: a delay stamp (XEP-0203: the room stamps its history, a forged
/// one would pass for it) and a stanza id claiming to be the room's (XEP-0359 §3.1).
fn reflected(st: &Element, room: &str) -> Element {
    cleaned_except(st, "message", |c| {
        c.is("delay", ns::DELAY)
            || c.is("x", ns::LEGACY_DELAY)
            || (c.is("stanza-id", ns::SID)
                && c.attr("by").is_some_and(|b| b.eq_ignore_ascii_case(room)))
    })
}

fn groupchat(room: &mut Room, from: &Jid, st: &Element, now_ms: u64) -> Vec<Effect> {
    let Some(o) = room.occupants.by_jid(from) else {
        return error(
            st,
            ErrorCondition::NotAcceptable,
            Some("only occupants may send to the room"),
        );
    };
    let (nick, role, id) = (o.nick.clone(), o.role, o.occupant_id.clone());
    let subject = st.get_child("subject", ns::CLIENT);
    let body = st.has_child("body", ns::CLIENT);
    let changes_subject = subject.is_some() && !body;
    if changes_subject {
        let allowed =
            role == Role::Moderator || (room.config.change_subject && role >= Role::Participant);
        if !allowed {
            return error(
                st,
                ErrorCondition::Forbidden,
                Some("you may not change the subject"),
            );
        }
    } else if role < Role::Participant {
        return error(
            st,
            ErrorCondition::Forbidden,
            Some("visitors have no voice in this room"),
        );
    }
    if !within_rate(room, from, now_ms) {
        return error(
            st,
            ErrorCondition::ResourceConstraint,
            Some("too many messages: slow down"),
        );
    }
    let mut m = reflected(st, room.jid.as_str());
    set_attr(&mut m, "from", &room.room_jid(&nick));
    m.append_child(occupant_id(&id));
    let mut out = Vec::new();
    if let (true, Some(s)) = (changes_subject, subject) {
        room.subject = s.text();
        room.subject_by = nick;
        out.extend(room.save());
    } else if body {
        room.history.push(&m, room.jid.as_str(), now_ms / 1000);
    }
    out.insert(
        0,
        Effect::Fanout {
            stanza: m,
            to: room.occupants.all_jids(),
        },
    );
    out
}

fn private(room: &mut Room, from: &Jid, nick: &str, st: &Element, now_ms: u64) -> Vec<Effect> {
    if st.attr("type") == Some("groupchat") {
        return error(
            st,
            ErrorCondition::BadRequest,
            Some("groupchat goes to the room"),
        );
    }
    let Some(sender) = room.occupants.by_jid(from) else {
        return error(
            st,
            ErrorCondition::NotAcceptable,
            Some("only occupants may send private messages"),
        );
    };
    let allowed = match room.config.allow_pm {
        AllowPm::Anyone => true,
        AllowPm::Participants => sender.role >= Role::Participant,
        AllowPm::Moderators => sender.role == Role::Moderator,
        AllowPm::None => false,
    };
    if !allowed {
        return error(
            st,
            ErrorCondition::Forbidden,
            Some("private messages are not allowed here"),
        );
    }
    let (sender_nick, id) = (sender.nick.clone(), sender.occupant_id.clone());
    let Some(target) = room.occupants.by_nick(nick) else {
        return error(st, ErrorCondition::ItemNotFound, Some("no such occupant"));
    };
    let to = target.jids().cloned().collect();
    if !within_rate(room, from, now_ms) {
        return error(
            st,
            ErrorCondition::ResourceConstraint,
            Some("too many messages: slow down"),
        );
    }
    let mut m = cleaned(st, "message");
    set_attr(&mut m, "from", &room.room_jid(&sender_nick));
    m.append_child(Element::bare("x", ns::USER));
    m.append_child(occupant_id(&id));
    vec![Effect::Fanout { stanza: m, to }]
}

fn invite(room: &mut Room, from: &Jid, st: &Element, x: &Element, now_ms: u64) -> Vec<Effect> {
    let Some(o) = room.occupants.by_jid(from) else {
        return error(
            st,
            ErrorCondition::NotAcceptable,
            Some("only occupants may invite"),
        );
    };
    let aff = o.affiliation;
    if room.config.members_only && !room.config.allow_invites && aff < Affiliation::Admin {
        return error(
            st,
            ErrorCondition::Forbidden,
            Some("only admins may invite to this room"),
        );
    }
    let mut invitees = Vec::new();
    for i in x.children().filter(|c| c.is("invite", ns::USER)) {
        match i.attr("to").map(Jid::new) {
            Some(Ok(j)) => invitees.push((j, i.get_child("reason", ns::USER).map(|r| r.text()))),
            _ => {
                return error(
                    st,
                    ErrorCondition::JidMalformed,
                    Some("an invitation needs a valid 'to'"),
                );
            }
        }
    }
    if invitees.len() > MAX_INVITEES {
        return error(
            st,
            ErrorCondition::NotAcceptable,
            Some("too many invitees in one message"),
        );
    }
    let grants = room.config.members_only
        && invitees
            .iter()
            .any(|(j, _)| room.affiliation(&j.to_bare()) == Affiliation::None);
    if grants && room.affiliations.len() + invitees.len() > MAX_MEMBERS_BY_INVITATION {
        return error(
            st,
            ErrorCondition::ResourceConstraint,
            Some("the room has too many members to invite more"),
        );
    }
    // each invitee counts as one message against the sender's rate
    for _ in &invitees {
        if !within_rate(room, from, now_ms) {
            return error(
                st,
                ErrorCondition::ResourceConstraint,
                Some("too many messages: slow down"),
            );
        }
    }
    let mut out = Vec::new();
    let mut save = false;
    for (to, reason) in invitees {
        room.invitations.add(to.to_bare(), from.clone(), now_ms);
        let mut m = stanza("message", room.jid.as_str(), Some(to.as_str()), None);
        let mut ux = Element::bare("x", ns::USER);
        let mut inv = Element::bare("invite", ns::USER);
        set_attr(&mut inv, "from", from.as_str());
        if let Some(r) = &reason {
            let mut re = Element::bare("reason", ns::USER);
            re.append_text(r);
            inv.append_child(re);
        }
        ux.append_child(inv);
        if !room.config.password.is_empty() {
            let mut p = Element::bare("password", ns::USER);
            p.append_text(&room.config.password);
            ux.append_child(p);
        }
        m.append_child(ux);
        // a body for clients that show invitations as text
        let mut body = Element::bare("body", ns::CLIENT);
        body.append_text(format!("{from} invites you to the room {}", room.jid));
        m.append_child(body);
        out.push(Effect::Send(m));
        // §7.8.2: in a members-only room the invitee becomes a member
        let bare = to.to_bare();
        if room.config.members_only && room.affiliation(&bare) == Affiliation::None {
            room.affiliations.insert(bare, Affiliation::Member);
            save = true;
        }
    }
    if save {
        out.extend(room.save());
    }
    out
}

/// A decline goes only to someone who really invited the decliner (a pending
/// invitation, which it uses up); anything else is refused.
fn decline(room: &mut Room, from: &Jid, st: &Element, x: &Element, now_ms: u64) -> Vec<Effect> {
    let Some(d) = x.get_child("decline", ns::USER) else {
        return Vec::new();
    };
    let Some(Ok(to)) = d.attr("to").map(Jid::new) else {
        return error(
            st,
            ErrorCondition::JidMalformed,
            Some("a decline needs a valid 'to'"),
        );
    };
    if room
        .invitations
        .take(&from.to_bare(), &to, now_ms)
        .is_none()
    {
        return error(
            st,
            ErrorCondition::NotAcceptable,
            Some("no pending invitation from that JID"),
        );
    }
    let mut m = stanza("message", room.jid.as_str(), Some(to.as_str()), None);
    let mut ux = Element::bare("x", ns::USER);
    let mut dec = Element::bare("decline", ns::USER);
    set_attr(&mut dec, "from", from.to_bare().as_str());
    if let Some(r) = d.get_child("reason", ns::USER) {
        dec.append_child(r.clone());
    }
    ux.append_child(dec);
    m.append_child(ux);
    vec![Effect::Send(m)]
}

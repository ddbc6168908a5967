//! The room: its state, and entering, presence updates, nick changes and leaving
//! (XEP-0045 §7.1–7.2, §7.6, §7.14).

use super::config::Config;
use super::history::{History, Request};
use super::occupants::{Occupant, Occupants};
use super::roles::{Affiliation, Role};
use super::{Effect, Limits, ns};
use crate::stanza::{ErrorCondition, error_reply, set_attr};
use base64::Engine;
use minidom::Element;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use xmpp_parsers::jid::{BareJid, Jid};

/// Status codes of `muc#user` (§15.6).
pub mod status {
    pub const NON_ANONYMOUS: u16 = 100;
    pub const SELF: u16 = 110;
    pub const CONFIG_CHANGED: u16 = 104;
    /// The room became non-anonymous (§10.2.1).
    pub const NOW_NON_ANONYMOUS: u16 = 172;
    /// The room became semi-anonymous (§10.2.1).
    pub const NOW_SEMI_ANONYMOUS: u16 = 173;
    pub const CREATED: u16 = 201;
    pub const BANNED: u16 = 301;
    pub const NICK_CHANGED: u16 = 303;
    pub const KICKED: u16 = 307;
    pub const AFFILIATION_CHANGED: u16 = 321;
    /// Removed: the room became members-only.
    pub const MEMBERS_ONLY: u16 = 322;
    pub const ERROR: u16 = 333;
}

/// What is kept of a persistent room across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub config: Config,
    /// Bare JID and affiliation (never `none`).
    pub affiliations: Vec<(String, Affiliation)>,
    pub subject: String,
    pub subject_by: String,
    /// The key occupant ids are derived with.
    pub secret: String,
    /// The bare JID that created the room (counted against its `max_rooms_per_user`);
    /// absent in rooms saved before it was kept.
    #[serde(default)]
    pub creator: Option<String>,
}

/// One room.
pub struct Room {
    pub jid: BareJid,
    pub config: Config,
    pub affiliations: BTreeMap<BareJid, Affiliation>,
    pub occupants: Occupants,
    pub subject: String,
    /// The nick that set the subject (empty: the room).
    pub subject_by: String,
    pub history: History,
    /// Created and not configured yet: only owners may enter (§10.1.1).
    pub locked: bool,
    /// Never entered: the first to enter creates it and becomes its owner.
    pub fresh: bool,
    /// Who created the room (the first to enter), when known.
    pub creator: Option<BareJid>,
    pub destroyed: bool,
    pub limits: Limits,
    /// Message and presence rates per user, kept across leaving and re-joining.
    pub rates: super::occupants::Rates,
    /// Invitations sent and not yet declined or expired (only these may be declined).
    pub invitations: super::messages::Invitations,
    secret: String,
}

/// Extras of the `<item/>` in an occupant's presence.
#[derive(Default, Clone, Copy)]
pub(super) struct ItemExtras<'a> {
    pub nick: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub reason: Option<&'a str>,
}

pub(super) fn error(st: &Element, cond: ErrorCondition, text: Option<&str>) -> Vec<Effect> {
    error_reply(st, cond, text)
        .map(Effect::Send)
        .into_iter()
        .collect()
}

/// An element `name` with `from`, `to` and `type` set when given.
pub(super) fn stanza(name: &str, from: &str, to: Option<&str>, ty: Option<&str>) -> Element {
    let mut e = Element::bare(name, ns::CLIENT);
    set_attr(&mut e, "from", from);
    if let Some(to) = to {
        set_attr(&mut e, "to", to);
    }
    if let Some(ty) = ty {
        set_attr(&mut e, "type", ty);
    }
    e
}

/// A copy of what a client sent, without what only the room may say: its own
/// `muc`/`muc#user` payloads and occupant ids (XEP-0421 §4: a sender's are removed).
pub(super) fn cleaned(st: &Element, name: &str) -> Element {
    cleaned_except(st, name, |_| false)
}

/// [`cleaned`], also without the children `skip` picks.
pub(super) fn cleaned_except(st: &Element, name: &str, skip: impl Fn(&Element) -> bool) -> Element {
    let mut e = Element::bare(name, ns::CLIENT);
    if let Some(ty) = st.attr("type") {
        set_attr(&mut e, "type", ty);
    }
    if let Some(id) = st.attr("id") {
        set_attr(&mut e, "id", id);
    }
    for c in st.children() {
        if c.is("x", ns::MUC)
            || c.is("x", ns::USER)
            || c.is("occupant-id", ns::OCCUPANT_ID)
            || skip(c)
        {
            continue;
        }
        e.append_child(c.clone());
    }
    e
}

impl Room {
    /// A room no one has entered yet.
    pub fn new(jid: BareJid, limits: Limits) -> Room {
        let secret: [u8; 16] = rand::random();
        Room {
            jid,
            config: Config::default(),
            affiliations: BTreeMap::new(),
            occupants: Occupants::default(),
            subject: String::new(),
            subject_by: String::new(),
            history: History::new(limits.history),
            locked: false,
            fresh: true,
            creator: None,
            destroyed: false,
            invitations: Default::default(),
            rates: Default::default(),
            limits,
            secret: base64::engine::general_purpose::STANDARD.encode(secret),
        }
    }

    /// A persistent room as it was saved.
    pub fn restore(jid: BareJid, saved: Saved, limits: Limits) -> Room {
        let mut r = Room::new(jid, limits);
        r.fresh = false;
        r.config = saved.config;
        r.affiliations = saved
            .affiliations
            .into_iter()
            .filter_map(|(j, a)| Some((BareJid::new(&j).ok()?, a)))
            .filter(|(_, a)| *a != Affiliation::None)
            .collect();
        r.subject = saved.subject;
        r.subject_by = saved.subject_by;
        r.secret = saved.secret;
        r.creator = saved.creator.and_then(|c| BareJid::new(&c).ok());
        r
    }

    pub fn saved(&self) -> Saved {
        Saved {
            config: self.config.clone(),
            affiliations: self
                .affiliations
                .iter()
                .map(|(j, a)| (j.to_string(), *a))
                .collect(),
            subject: self.subject.clone(),
            subject_by: self.subject_by.clone(),
            secret: self.secret.clone(),
            creator: self.creator.as_ref().map(|c| c.to_string()),
        }
    }

    /// `Save` when the room is persistent.
    pub(super) fn save(&self) -> Option<Effect> {
        self.config.persistent.then_some(Effect::Save)
    }

    pub fn affiliation(&self, bare: &BareJid) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn max_users(&self) -> usize {
        match self.config.max_users {
            0 => self.limits.max_occupants,
            n => n.min(self.limits.max_occupants),
        }
    }

    pub(super) fn room_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid, nick)
    }

    /// XEP-0421: the same for a user every time, different in every room.
    pub fn occupant_id(&self, bare: &BareJid) -> String {
        let mut h = Sha256::new();
        h.update(self.secret.as_bytes());
        h.update([0]);
        h.update(bare.as_str().as_bytes());
        base64::engine::general_purpose::STANDARD.encode(&h.finalize()[..18])
    }

    /// Handle one stanza addressed to the room or to one of its occupants. `from` is the
    /// sender's real JID, `to` the room or room/nick; `stanza` carries both.
    pub fn handle(&mut self, from: &Jid, to: &Jid, st: &Element, now_ms: u64) -> Vec<Effect> {
        if self.destroyed {
            return error(
                st,
                ErrorCondition::ItemNotFound,
                Some("the room was destroyed"),
            );
        }
        match st.name() {
            "presence" => self.presence(from, to, st, now_ms),
            "message" => super::messages::message(self, from, to, st, now_ms),
            "iq" => super::admin::iq(self, from, to, st, now_ms),
            _ => Vec::new(),
        }
    }

    /// The presence of `o` as `to` sees it.
    pub(super) fn presence_of(
        &self,
        o: &Occupant,
        to: &Jid,
        unavailable: Option<&Element>,
        codes: &[u16],
        extras: ItemExtras,
        extra: Option<Element>,
    ) -> Element {
        let mut p = match unavailable {
            Some(u) => {
                let mut p = cleaned(u, "presence");
                set_attr(&mut p, "type", "unavailable");
                p
            }
            None => o
                .presence()
                .cloned()
                .unwrap_or_else(|| Element::bare("presence", ns::CLIENT)),
        };
        crate::stanza::remove_attr(&mut p, "id");
        set_attr(&mut p, "from", &self.room_jid(&o.nick));
        set_attr(&mut p, "to", to.as_str());
        let own = o.jids().any(|j| j == to);
        let show_jid = own
            || self.config.whois_anyone
            || self
                .occupants
                .by_jid(to)
                .is_some_and(|r| r.role == Role::Moderator);
        let mut x = Element::bare("x", ns::USER);
        let mut item = Element::bare("item", ns::USER);
        let (aff, role) = if unavailable.is_some() {
            (o.affiliation, Role::None)
        } else {
            (o.affiliation, o.role)
        };
        set_attr(&mut item, "affiliation", aff.as_str());
        set_attr(&mut item, "role", role.as_str());
        if show_jid && let Some(j) = o.jids().next() {
            set_attr(&mut item, "jid", j.as_str());
        }
        if let Some(n) = extras.nick {
            set_attr(&mut item, "nick", n);
        }
        if let Some(a) = extras.actor {
            let mut actor = Element::bare("actor", ns::USER);
            set_attr(&mut actor, "nick", a);
            item.append_child(actor);
        }
        if let Some(r) = extras.reason {
            let mut reason = Element::bare("reason", ns::USER);
            reason.append_text(r);
            item.append_child(reason);
        }
        x.append_child(item);
        if let Some(e) = extra {
            x.append_child(e);
        }
        let mut codes = codes.to_vec();
        if own {
            codes.push(status::SELF);
        }
        codes.sort_unstable();
        codes.dedup();
        for c in codes {
            let mut s = Element::bare("status", ns::USER);
            set_attr(&mut s, "code", &c.to_string());
            x.append_child(s);
        }
        p.append_child(x);
        let mut id = Element::bare("occupant-id", ns::OCCUPANT_ID);
        set_attr(&mut id, "id", &o.occupant_id);
        p.append_child(id);
        p
    }

    /// Occupant `nick` became a moderator of a semi-anonymous room: its sessions get
    /// the others' presence again, now with their real JIDs (as Prosody does).
    pub(super) fn reveal_jids_to(&self, nick: &str, was: Role, out: &mut Vec<Effect>) {
        let Some(me) = self.occupants.by_nick(nick) else {
            return;
        };
        if self.config.whois_anyone || was == Role::Moderator || me.role != Role::Moderator {
            return;
        }
        for to in me.jids() {
            for other in self.occupants.iter().filter(|x| x.nick != me.nick) {
                out.push(Effect::Send(self.presence_of(
                    other,
                    to,
                    None,
                    &[],
                    ItemExtras::default(),
                    None,
                )));
            }
        }
    }

    /// The presence of occupant `nick` to every session in the room (its own with 110).
    pub(super) fn broadcast_presence(
        &self,
        nick: &str,
        unavailable: Option<&Element>,
        codes: &[u16],
        extras: ItemExtras,
        out: &mut Vec<Effect>,
    ) {
        let Some(o) = self.occupants.by_nick(nick) else {
            return;
        };
        for to in self.occupants.all_jids() {
            out.push(Effect::Send(self.presence_of(
                o,
                &to,
                unavailable,
                codes,
                extras,
                None,
            )));
        }
    }

    fn presence(&mut self, from: &Jid, to: &Jid, st: &Element, now_ms: u64) -> Vec<Effect> {
        match st.attr("type") {
            None => {}
            Some("unavailable") => return self.leave(from, st),
            Some("error") => {
                // XEP-0045 §7.2.2 note: an occupant whose client errors is removed
                let Some(nick) = self.occupants.by_jid(from).map(|o| o.nick.clone()) else {
                    return Vec::new();
                };
                return self.remove_occupant(&nick, &[status::ERROR], ItemExtras::default());
            }
            // subscriptions and probes mean nothing to a room
            Some(_) => return Vec::new(),
        }
        let Some(nick) = to.resource().map(|r| r.as_str().to_string()) else {
            return error(
                st,
                ErrorCondition::JidMalformed,
                Some("a nickname is required"),
            );
        };
        // entering, presence updates and nick changes: one rate per user
        let per_minute = self.limits.presences_per_minute;
        let counted = super::occupants::Counted::Presence;
        if !self
            .rates
            .allow(&from.to_bare(), counted, now_ms, per_minute)
        {
            return error(
                st,
                ErrorCondition::ResourceConstraint,
                Some("too many presence changes: slow down"),
            );
        }
        match self.occupants.by_jid(from).map(|o| o.nick.clone()) {
            Some(current) if current == nick => self.update_presence(from, &nick, st),
            Some(current) => self.change_nick(from, &current, &nick, st),
            None => self.enter(from, &nick, st, now_ms),
        }
    }

    fn enter(&mut self, from: &Jid, nick: &str, st: &Element, now_ms: u64) -> Vec<Effect> {
        let bare = from.to_bare();
        let x = st.get_child("x", ns::MUC);
        let mut created = false;
        if self.fresh {
            self.fresh = false;
            created = true;
            // §10.1: a client speaking MUC gets a locked room to configure; an old
            // groupchat 1.0 client an instant room
            self.locked = x.is_some();
            self.affiliations.insert(bare.clone(), Affiliation::Owner);
            self.creator = Some(bare.clone());
        }
        let aff = self.affiliation(&bare);
        if self.locked && aff != Affiliation::Owner {
            return error(
                st,
                ErrorCondition::ItemNotFound,
                Some("the room is not configured yet"),
            );
        }
        if aff == Affiliation::Outcast {
            return error(
                st,
                ErrorCondition::Forbidden,
                Some("you are banned from this room"),
            );
        }
        if self.config.members_only && aff < Affiliation::Member {
            return error(
                st,
                ErrorCondition::RegistrationRequired,
                Some("the room is members-only"),
            );
        }
        if !self.config.password.is_empty() {
            let given = x
                .and_then(|x| x.get_child("password", ns::MUC))
                .map(|p| p.text());
            if given.as_deref() != Some(self.config.password.as_str()) {
                return error(
                    st,
                    ErrorCondition::NotAuthorized,
                    Some("a password is required"),
                );
            }
        }
        if let Some(o) = self.occupants.by_nick(nick) {
            if o.bare != bare {
                return error(st, ErrorCondition::Conflict, Some("the nickname is in use"));
            }
            if o.sessions.len() >= self.limits.sessions_per_occupant {
                return error(
                    st,
                    ErrorCondition::ResourceConstraint,
                    Some("too many sessions under this nickname"),
                );
            }
            return self.add_session(from, nick, st, x, now_ms);
        }
        // admins and owners pass the owner's limit, never the service's bound (which
        // an owner's grants would otherwise lift)
        let n = self.occupants.len();
        if (n >= self.max_users() && aff < Affiliation::Admin) || n >= self.limits.max_occupants {
            return error(
                st,
                ErrorCondition::ServiceUnavailable,
                Some("the room is full"),
            );
        }
        let mut presence = cleaned(st, "presence");
        crate::stanza::remove_attr(&mut presence, "type");
        let o = Occupant {
            nick: nick.to_string(),
            bare: bare.clone(),
            sessions: vec![(from.clone(), presence)],
            role: aff.default_role(self.config.moderated),
            affiliation: aff,
            occupant_id: self.occupant_id(&bare),
        };
        let mut out = Vec::new();
        // in first: what the others' presence shows depends on the newcomer's role (a
        // moderator sees their JIDs in a semi-anonymous room)
        self.occupants.insert(o);
        let Some(me) = self.occupants.by_nick(nick) else {
            return out;
        };
        // §7.2.3: the others' presence to the newcomer, then the newcomer's to the others
        for other in self.occupants.iter().filter(|x| x.nick != me.nick) {
            out.push(Effect::Send(self.presence_of(
                other,
                from,
                None,
                &[],
                ItemExtras::default(),
                None,
            )));
        }
        for to in self.occupants.all_jids() {
            if &to == from {
                continue;
            }
            out.push(Effect::Send(self.presence_of(
                me,
                &to,
                None,
                &[],
                ItemExtras::default(),
                None,
            )));
        }
        let mut codes = Vec::new();
        if self.config.whois_anyone {
            codes.push(status::NON_ANONYMOUS);
        }
        if created {
            codes.push(status::CREATED);
        }
        out.push(Effect::Send(self.presence_of(
            me,
            from,
            None,
            &codes,
            ItemExtras::default(),
            None,
        )));
        self.history_and_subject(from, x, now_ms, &mut out);
        if created && let Some(s) = self.save() {
            out.push(s);
        }
        out
    }

    /// Another resource of an occupant joins under the same nick: it gets the room as
    /// a newcomer would; the others see nothing new.
    fn add_session(
        &mut self,
        from: &Jid,
        nick: &str,
        st: &Element,
        x: Option<&Element>,
        now_ms: u64,
    ) -> Vec<Effect> {
        let mut presence = cleaned(st, "presence");
        crate::stanza::remove_attr(&mut presence, "type");
        if let Some(o) = self.occupants.by_nick_mut(nick) {
            o.sessions.push((from.clone(), presence));
        }
        let mut out = Vec::new();
        for other in self.occupants.iter().filter(|o| o.nick != nick) {
            out.push(Effect::Send(self.presence_of(
                other,
                from,
                None,
                &[],
                ItemExtras::default(),
                None,
            )));
        }
        if let Some(me) = self.occupants.by_nick(nick) {
            let codes: &[u16] = if self.config.whois_anyone {
                &[status::NON_ANONYMOUS]
            } else {
                &[]
            };
            out.push(Effect::Send(self.presence_of(
                me,
                from,
                None,
                codes,
                ItemExtras::default(),
                None,
            )));
        }
        self.history_and_subject(from, x, now_ms, &mut out);
        out
    }

    fn history_and_subject(
        &self,
        to: &Jid,
        x: Option<&Element>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let req = Request::from_x(x);
        for m in self.history.select(&req, now_ms / 1000) {
            let mut m = m.clone();
            set_attr(&mut m, "to", to.as_str());
            out.push(Effect::Send(m));
        }
        // §7.2.15: the subject comes last, empty when none is set
        let from = if self.subject_by.is_empty() {
            self.jid.to_string()
        } else {
            self.room_jid(&self.subject_by)
        };
        let mut m = stanza("message", &from, Some(to.as_str()), Some("groupchat"));
        let mut s = Element::bare("subject", ns::CLIENT);
        s.append_text(&self.subject);
        m.append_child(s);
        out.push(Effect::Send(m));
    }

    fn update_presence(&mut self, from: &Jid, nick: &str, st: &Element) -> Vec<Effect> {
        let mut presence = cleaned(st, "presence");
        crate::stanza::remove_attr(&mut presence, "type");
        if let Some(o) = self.occupants.by_nick_mut(nick) {
            // the latest presence of any session is the occupant's
            o.sessions.retain(|(j, _)| j != from);
            o.sessions.push((from.clone(), presence));
        }
        let mut out = Vec::new();
        self.broadcast_presence(nick, None, &[], ItemExtras::default(), &mut out);
        out
    }

    fn change_nick(&mut self, from: &Jid, old: &str, new: &str, st: &Element) -> Vec<Effect> {
        if self.occupants.by_nick(new).is_some() {
            return error(st, ErrorCondition::Conflict, Some("the nickname is in use"));
        }
        if self
            .occupants
            .by_nick(old)
            .is_some_and(|o| o.sessions.len() > 1)
        {
            return error(
                st,
                ErrorCondition::NotAcceptable,
                Some("change the nickname with one session only"),
            );
        }
        let mut out = Vec::new();
        let leave = Element::bare("presence", ns::CLIENT);
        self.broadcast_presence(
            old,
            Some(&leave),
            &[status::NICK_CHANGED],
            ItemExtras {
                nick: Some(new),
                ..Default::default()
            },
            &mut out,
        );
        if let Some(o) = self.occupants.by_nick_mut(old) {
            o.nick = new.to_string();
            let mut presence = cleaned(st, "presence");
            crate::stanza::remove_attr(&mut presence, "type");
            o.sessions = vec![(from.clone(), presence)];
        }
        self.broadcast_presence(new, None, &[], ItemExtras::default(), &mut out);
        out
    }

    fn leave(&mut self, from: &Jid, st: &Element) -> Vec<Effect> {
        let Some(o) = self.occupants.by_jid(from) else {
            return Vec::new();
        };
        if o.sessions.len() > 1 {
            // one of several sessions leaves: only it is told
            let p = self.presence_of(o, from, Some(st), &[], ItemExtras::default(), None);
            if let Some(o) = self.occupants.by_jid_mut(from) {
                o.sessions.retain(|(j, _)| j != from);
            }
            return vec![Effect::Send(p)];
        }
        let nick = o.nick.clone();
        let mut out = Vec::new();
        self.broadcast_presence(&nick, Some(st), &[], ItemExtras::default(), &mut out);
        self.occupants.remove(&nick);
        self.after_removal(&mut out);
        out
    }

    /// Remove an occupant (every session) and tell everyone, with status codes.
    pub(super) fn remove_occupant(
        &mut self,
        nick: &str,
        codes: &[u16],
        extras: ItemExtras,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let leave = Element::bare("presence", ns::CLIENT);
        self.broadcast_presence(nick, Some(&leave), codes, extras, &mut out);
        self.occupants.remove(nick);
        self.after_removal(&mut out);
        out
    }

    fn after_removal(&mut self, out: &mut Vec<Effect>) {
        if self.occupants.is_empty() {
            if self.locked {
                // §10.1.3: a room left before it was configured is gone
                self.destroyed = true;
            }
            out.push(Effect::Empty);
        }
    }
}

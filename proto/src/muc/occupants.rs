//! The occupant table: who is in the room under which nick, with which sessions.

use super::roles::{Affiliation, Role};
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

/// One occupant: a nick held by one user, joined from one or more of their resources
/// (XEP-0045 §7.2.2: several sessions of one user may share a nick).
#[derive(Debug, Clone)]
pub struct Occupant {
    pub nick: String,
    pub bare: BareJid,
    /// The user's joined resources, in join order, each with its latest presence.
    pub sessions: Vec<(Jid, Element)>,
    pub role: Role,
    pub affiliation: Affiliation,
    /// XEP-0421: stable per user and room, opaque to others.
    pub occupant_id: String,
}

impl Occupant {
    pub fn jids(&self) -> impl Iterator<Item = &Jid> {
        self.sessions.iter().map(|(j, _)| j)
    }

    /// The presence broadcast for the occupant: the latest one of its sessions.
    pub fn presence(&self) -> Option<&Element> {
        self.sessions.last().map(|(_, p)| p)
    }
}

/// Users whose rates a room remembers at most (across leaving and re-joining); when
/// full, a user whose windows are over is forgotten, else the one seen longest ago.
pub const MAX_RATES: usize = 1024;

/// One rate window: how many in it, and when it started (ms).
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    count: u32,
    start: u64,
}

impl Window {
    fn allow(&mut self, now_ms: u64, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        if now_ms.saturating_sub(self.start) >= 60_000 {
            *self = Window {
                count: 0,
                start: now_ms,
            };
        }
        if self.count >= per_minute {
            return false;
        }
        self.count += 1;
        true
    }
}

/// What kind of stanza a rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Message,
    Presence,
}

/// Message and presence rates per user (bare JID), kept when the user leaves so that
/// leaving and re-joining does not start a fresh window; at most [`MAX_RATES`] users.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    map: std::collections::HashMap<BareJid, (Window, Window, u64)>,
}

impl Rates {
    /// Count one stanza of `bare` against `per_minute` (0: no limit); false when over.
    pub fn allow(&mut self, bare: &BareJid, what: Counted, now_ms: u64, per_minute: u32) -> bool {
        if !self.map.contains_key(bare) && self.map.len() >= MAX_RATES {
            self.map
                .retain(|_, (m, p, _)| now_ms.saturating_sub(m.start.max(p.start)) < 60_000);
            if self.map.len() >= MAX_RATES
                && let Some(old) = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, _, seen))| *seen)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&old);
            }
        }
        let (m, p, seen) = self.map.entry(bare.clone()).or_default();
        *seen = now_ms;
        match what {
            Counted::Message => m.allow(now_ms, per_minute),
            Counted::Presence => p.allow(now_ms, per_minute),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The occupants, in the order they entered.
#[derive(Debug, Clone, Default)]
pub struct Occupants {
    list: Vec<Occupant>,
}

impl Occupants {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Occupant> {
        self.list.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Occupant> {
        self.list.iter_mut()
    }

    pub fn by_nick(&self, nick: &str) -> Option<&Occupant> {
        self.list.iter().find(|o| o.nick == nick)
    }

    pub fn by_nick_mut(&mut self, nick: &str) -> Option<&mut Occupant> {
        self.list.iter_mut().find(|o| o.nick == nick)
    }

    /// The occupant a real (full) JID is joined as.
    pub fn by_jid(&self, jid: &Jid) -> Option<&Occupant> {
        self.list.iter().find(|o| o.jids().any(|j| j == jid))
    }

    pub fn by_jid_mut(&mut self, jid: &Jid) -> Option<&mut Occupant> {
        self.list.iter_mut().find(|o| o.jids().any(|j| j == jid))
    }

    /// Occupants of one user (a user holds at most one nick here, but a ban or an
    /// affiliation change concerns them all the same).
    pub fn nicks_of(&self, bare: &BareJid) -> Vec<String> {
        self.list
            .iter()
            .filter(|o| &o.bare == bare)
            .map(|o| o.nick.clone())
            .collect()
    }

    pub fn insert(&mut self, o: Occupant) {
        self.list.push(o);
    }

    pub fn remove(&mut self, nick: &str) -> Option<Occupant> {
        let i = self.list.iter().position(|o| o.nick == nick)?;
        Some(self.list.remove(i))
    }

    /// Every joined real JID (what a fan-out goes to).
    pub fn all_jids(&self) -> Vec<Jid> {
        self.list.iter().flat_map(|o| o.jids().cloned()).collect()
    }

    pub fn sessions(&self) -> usize {
        self.list.iter().map(|o| o.sessions.len()).sum()
    }
}

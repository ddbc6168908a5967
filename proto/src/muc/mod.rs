//! Multi-User Chat (XEP-0045): a room's rules as a pure state machine.
//!
//! A [`room::Room`] holds the occupants, affiliations, configuration, subject and
//! history. Each stanza addressed to the room (or to an occupant's room JID) is handed
//! to [`room::Room::handle`], which changes the state and returns the [`Effect`]s the
//! actor carries out: stanzas to send, the same stanza fanned out to many occupants,
//! storage writes, and "the room is empty". No actix, no clock: the time is an
//! argument.
//!
//! One file a concern: [`roles`] (roles, affiliations, permissions), [`config`] (the
//! `muc#roomconfig` form), [`history`], [`occupants`] (the occupant table), [`room`]
//! (state, entering and leaving), [`messages`] (groupchat, private messages, subject,
//! invitations), [`admin`] (the `muc#admin` and `muc#owner` iq, disco, self-ping).

pub mod admin;
pub mod config;
pub mod history;
pub mod messages;
pub mod occupants;
pub mod roles;
pub mod room;

#[cfg(test)]
mod tests;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

/// May `creator` create rooms on this server (XEP-0045 §10.1.1)? With
/// `muc.local_creators_only`, only users of a hosted domain may; others get
/// `not-allowed`.
pub fn may_create(s: &crate::config::Settings, creator: &BareJid) -> bool {
    !s.muc.local_creators_only
        || s.domains
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(creator.domain().as_str()))
}

/// Namespaces of XEP-0045 and the XEPs rooms speak.
pub mod ns {
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    pub const USER: &str = "http://jabber.org/protocol/muc#user";
    pub const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    pub const OWNER: &str = "http://jabber.org/protocol/muc#owner";
    pub const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
    pub const DATA: &str = "jabber:x:data";
    pub const DELAY: &str = "urn:xmpp:delay";
    /// XEP-0091, the legacy delay stamp.
    pub const LEGACY_DELAY: &str = "jabber:x:delay";
    /// XEP-0359 stanza ids.
    pub const SID: &str = "urn:xmpp:sid:0";
    pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
    pub const CONFERENCE: &str = "jabber:x:conference";
    pub use crate::ns::{CLIENT, DISCO_INFO, DISCO_ITEMS, PING, STANZAS};
}

/// What the actor holding a room does after a stanza was handled, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a stanza; its `from` and `to` are set.
    Send(Element),
    /// Send the same stanza (its `from` set, no `to`) to each of these JIDs: the actor
    /// serialises it once and gives each recipient the same bytes with its `to`.
    Fanout { stanza: Element, to: Vec<Jid> },
    /// What is saved of the room changed (only for a persistent room): write
    /// [`room::Room::saved`].
    Save,
    /// The room was destroyed or made temporary: delete what is saved of it.
    Delete,
    /// No occupant is left (a temporary room stops; a persistent one may).
    Empty,
}

/// Bounds the service sets for every room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Occupants at most (a room's own `max_users` may be lower).
    pub max_occupants: usize,
    /// Messages kept in the history.
    pub history: usize,
    /// Messages one occupant may send per minute (groupchat, private, subject); beyond
    /// it: `resource-constraint`. 0: no limit.
    pub messages_per_minute: u32,
    /// Resources of one user joined under one nick at most.
    pub sessions_per_occupant: usize,
    /// Presences (entering, updates, nick changes) one user may send a room per
    /// minute, kept across leaving and re-joining; beyond: `resource-constraint`.
    /// 0: no limit.
    pub presences_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_occupants: 200,
            history: 20,
            messages_per_minute: 120,
            sessions_per_occupant: 16,
            presences_per_minute: 30,
        }
    }
}

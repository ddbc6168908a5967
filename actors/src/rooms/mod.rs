//! Chat rooms (XEP-0045): a [`service::RoomService`] per hosted domain, attached to the
//! registry's domain table, and one [`chatroom::Chatroom`] actor per room, started on
//! the first stanza that addresses it. The room's rules are `xmppd_proto::muc`; the
//! actors hold its state and carry out its effects.

pub mod chatroom;
pub mod service;

use actix::prelude::*;
use xmpp_parsers::jid::BareJid;
use xmppd_proto::config::MucSettings;
use xmppd_proto::muc::Limits;

/// A room has had nobody in it long enough (or is gone): may it stop? The service says
/// yes unless it has replaced the room already; after a yes it sends it nothing more.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RoomIdle {
    pub jid: BareJid,
    pub addr: Addr<chatroom::Chatroom>,
}

/// The server is stopping: store what is not stored yet (a room answers once its
/// pending writes are committed; the service once all its rooms answered).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// How a room appears in the service's disco#items: `None` when it no longer exists.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Listing {
    pub jid: BareJid,
    pub entry: Option<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub public: bool,
    pub persistent: bool,
    /// Who created the room: a saved room counts against its creator's
    /// `max_rooms_per_user` while it exists, running or not.
    pub creator: Option<BareJid>,
}

/// The bounds of every room, from the settings.
pub fn limits(s: &MucSettings) -> Limits {
    Limits {
        max_occupants: s.max_occupants,
        history: s.history,
        messages_per_minute: s.messages_per_minute,
        ..Limits::default()
    }
}

/// The lower-case key of a room (JIDs' domain parts compare case-insensitively; node
/// parts are case-folded by nodeprep).
pub fn key(jid: &BareJid) -> String {
    jid.as_str().to_lowercase()
}

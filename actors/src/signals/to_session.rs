//! What actors send a client's session, and the handle they reach it by.

use super::{Serialised, Signal};
use minidom::Element;
use std::sync::Arc;
use xmppd_proto::stream::error::StreamError;

/// Everything a session actor is sent (besides its stream's events from the I/O task).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub enum ToSession {
    /// A routed signal to deliver to the client.
    Signal(Signal),
    /// A message on the direct path, already serialised by the sender's session.
    Serialised(Serialised),
    /// A stanza the account actor produced (pushes, presence).
    Write(Element),
    /// Stored offline messages, oldest first: the session writes what it can and
    /// answers how many (a prefix); the account deletes only those from storage.
    Offline(OfflineBatch),
    /// The account's blocklist changed (XEP-0191).
    Blocklist(Arc<Vec<String>>),
    /// Close the client's stream with a stream error and end the session (its routes
    /// go at once; the I/O task writes the error and closes).
    Close(StreamError),
    /// The connection under the session is gone.
    Ended,
}

/// The handle a session is reached by.
pub type SessionRef = super::handle::Handle<ToSession>;

/// The direct path's hand-over of a message to the session `addr` (a client session's
/// or an inbound server stream's): `None` when it is delivered, bounced with
/// `resource-constraint` because the session's mailbox is full (as the registry would),
/// or dropped because its bytes do not parse back (logged); the signal back when the
/// session has ended, for the registry to decide.
pub fn deliver_serialised(
    addr: &SessionRef,
    m: Serialised,
    registry: &super::RegistryRef,
    log: &slog::Logger,
) -> Option<Signal> {
    use actix::dev::SendError;
    let (m, full) = match addr.try_send(ToSession::Serialised(m)) {
        Ok(()) => return None,
        Err(SendError::Full(ToSession::Serialised(m))) => (m, true),
        Err(SendError::Closed(ToSession::Serialised(m))) => (m, false),
        Err(_) => return None,
    };
    let sig = m.parsed(log)?;
    if !full {
        return Some(sig);
    }
    if let Some(b) = sig.bounce(
        xmppd_proto::stanza::ErrorCondition::ResourceConstraint,
        Some("recipient is overloaded"),
    ) {
        registry.route(b);
    }
    None
}

/// Offline messages handed to a session, and where it answers how many it wrote. A
/// session that is gone drops the sender: the account then keeps them all.
#[derive(Debug)]
pub struct OfflineBatch {
    pub messages: Vec<Element>,
    pub written: tokio::sync::oneshot::Sender<usize>,
}

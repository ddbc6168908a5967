//! What actors send a client's session, and the handle they reach it by.

use super::{Serialised, Signal};
use actix::prelude::*;
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
    /// A stanza the account actor produced (pushes, presence, offline messages).
    Write(Element),
    /// The account's blocklist changed (XEP-0191).
    Blocklist(Arc<Vec<String>>),
    /// Close the client's stream with a stream error (shutdown, conflict, admin).
    Close(StreamError),
    /// The connection under the session is gone.
    Ended,
}

/// A session's address, shared by the route table, its replicas and the account actor:
/// cloning it is one reference count, and two handles are equal when they name the same
/// session (the same actor).
#[derive(Clone)]
pub struct SessionRef(Arc<Recipient<ToSession>>);

impl SessionRef {
    pub fn new(r: Recipient<ToSession>) -> Self {
        SessionRef(Arc::new(r))
    }

    /// Hand over a message; a full mailbox or a stopped session gives it back.
    // the message comes back by value, as from actix's own try_send
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, m: ToSession) -> Result<(), SendError<ToSession>> {
        self.0.try_send(m)
    }

    /// Hand over a message whatever the mailbox holds (internal senders only).
    pub fn do_send(&self, m: ToSession) {
        self.0.do_send(m)
    }

    pub fn connected(&self) -> bool {
        self.0.connected()
    }
}

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for SessionRef {}

impl std::fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionRef({:p})", Arc::as_ptr(&self.0))
    }
}

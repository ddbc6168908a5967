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

/// Offline messages handed to a session, and where it answers how many it wrote. A
/// session that is gone drops the sender: the account then keeps them all.
#[derive(Debug)]
pub struct OfflineBatch {
    pub messages: Vec<Element>,
    pub written: tokio::sync::oneshot::Sender<usize>,
}

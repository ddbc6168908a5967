//! What actors send an account actor, and the handle they reach it by.

use super::Signal;
use super::to_session::SessionRef;
use actix::prelude::*;
use minidom::Element;
use std::sync::Arc;

/// Everything an account actor is sent.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub enum ToAccount {
    /// A signal for the account's bare JID (subscriptions, probes, iq, messages to store).
    Signal(Signal),
    /// A session of this account came up.
    Attach {
        resource: String,
        session: SessionRef,
    },
    /// A session ended (its presence becomes unavailable, RFC 6121 §4.5.3).
    Detach { resource: String },
    /// Presence or an own-account iq from one of the user's resources.
    FromClient { resource: String, stanza: Element },
}

/// An account actor's address; cloning it is one reference count.
#[derive(Clone)]
pub struct AccountRef(Arc<Recipient<ToAccount>>);

impl AccountRef {
    pub fn new(r: Recipient<ToAccount>) -> Self {
        AccountRef(Arc::new(r))
    }

    // the message comes back by value, as from actix's own try_send
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, m: ToAccount) -> Result<(), SendError<ToAccount>> {
        self.0.try_send(m)
    }

    pub fn do_send(&self, m: ToAccount) {
        self.0.do_send(m)
    }

    /// Wait for room in the mailbox (a session holding back its client).
    pub async fn send(&self, m: ToAccount) -> Result<(), MailboxError> {
        self.0.send(m).await
    }

    pub fn connected(&self) -> bool {
        self.0.connected()
    }
}

impl PartialEq for AccountRef {
    fn eq(&self, other: &Self) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for AccountRef {}

impl std::fmt::Debug for AccountRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccountRef({:p})", Arc::as_ptr(&self.0))
    }
}

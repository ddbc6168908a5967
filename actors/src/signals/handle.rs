//! The handle an actor is reached by: one `Arc` around an actix `Recipient`, shared by
//! everyone who holds the actor's address (the route table, its replicas, the account):
//! cloning it is one reference count (an actix `Addr` or `Recipient` clone allocates),
//! and two handles are equal when they name the same actor.

use actix::prelude::*;
use std::sync::Arc;

pub struct Handle<M>(Arc<Recipient<M>>)
where
    M: Message<Result = ()> + Send;

impl<M> Handle<M>
where
    M: Message<Result = ()> + Send,
{
    pub fn new(r: Recipient<M>) -> Self {
        Handle(Arc::new(r))
    }

    /// Hand over a message; a full mailbox or a stopped actor gives it back.
    // the message comes back by value, as from actix's own try_send
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, m: M) -> Result<(), SendError<M>> {
        self.0.try_send(m)
    }

    /// Hand over a message whatever the mailbox holds (internal senders only).
    pub fn do_send(&self, m: M) {
        self.0.do_send(m)
    }

    /// Wait for room in the mailbox (a session holding back its client).
    pub async fn send(&self, m: M) -> Result<(), MailboxError> {
        self.0.send(m).await
    }

    pub fn connected(&self) -> bool {
        self.0.connected()
    }
}

impl<M> Clone for Handle<M>
where
    M: Message<Result = ()> + Send,
{
    fn clone(&self) -> Self {
        Handle(self.0.clone())
    }
}

impl<M> PartialEq for Handle<M>
where
    M: Message<Result = ()> + Send,
{
    fn eq(&self, other: &Self) -> bool {
        *self.0 == *other.0
    }
}

impl<M> Eq for Handle<M> where M: Message<Result = ()> + Send {}

impl<M> std::fmt::Debug for Handle<M>
where
    M: Message<Result = ()> + Send,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handle({:p})", Arc::as_ptr(&self.0))
    }
}

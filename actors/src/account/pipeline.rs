//! Offline messages handed to the storage writer without waiting for each commit.
//!
//! The account queues each message it stores with the writer and goes on with the next
//! signal; the writer's queue is FIFO, so the messages commit in the order they arrived,
//! and one transaction takes many of them (group commit) instead of one fsync per
//! message. The outcomes come back in the same order and are answered here: a stored
//! message is counted and logged, a refused one (quota, storage failure) goes back to
//! its sender. Every other storage call of the account waits until the queued messages
//! are answered ([`Account::store`]), so a read (the offline messages at login, say)
//! sees all of them. Bounded by the writer's queue (`storage.write_queue`): when it is
//! full the account waits for room, and its mailbox, then the registry, then the
//! sending sessions' reads wait behind it.

use super::*;
use crate::storage::Ack;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Offline stores queued with the writer and not yet answered, oldest first, each with
/// the signal it stores (to answer its sender if it fails).
#[derive(Default)]
pub(super) struct Pipeline(VecDeque<(Signal, Ack)>, Running);

/// A spawned [`Acks`] is alive (it may not have seen the queue empty yet): no second
/// one is spawned, so they do not pile up while the account waits on a storage call.
#[derive(Default)]
pub(super) struct Running(bool);

impl Pipeline {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Answers the queued stores in order as their outcomes arrive; ready once none is left.
/// Spawned when a store is queued and none is spawned yet (`spawned`), and waited for
/// before any other storage call (two may run at once: they share the actor's task and
/// its waker, so whichever runs answers the next outcome).
pub(super) struct Acks {
    pub(super) spawned: bool,
}

impl ActorFuture<Account> for Acks {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Account,
        _: &mut Context<Account>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        while let Some((_, ack)) = act.pipeline.0.front_mut() {
            let r = match Pin::new(ack).poll(task) {
                Poll::Pending => return Poll::Pending,
                // the writer dropped the write without an answer (it stopped)
                Poll::Ready(r) => r.unwrap_or(Err(StorageError::Cancelled)),
            };
            if let Some((sig, _)) = act.pipeline.0.pop_front() {
                act.offline_stored(sig, r);
            }
        }
        if self.spawned {
            act.pipeline.1 = Running(false);
        }
        Poll::Ready(())
    }
}

impl Account {
    /// Store a message for later; the sender learns if it cannot be.
    pub(super) fn store_offline(&mut self, xml: String, sig: Signal, ctx: &mut Context<Self>) {
        let limit = self.ctx.settings.get().storage.max_offline_messages;
        // a login from now on looks for stored messages (their commit is awaited first)
        self.state.offline_waiting = true;
        let (domain, user) = (&self.domain, &self.user);
        if let Some(ack) = self
            .ctx
            .storage
            .backend()
            .offline_try_queue(domain, user, &xml, limit)
        {
            return self.queued(sig, ack, ctx);
        }
        // the writer's queue is full: wait for room (on the blocking pool), and let
        // nothing else of this account run meanwhile, so that order is kept
        let storage = self.ctx.storage.clone();
        let (domain, user) = (self.domain.clone(), self.user.clone());
        async move {
            storage
                .run(move |b| Ok(b.offline_queue(&domain, &user, &xml, limit)))
                .await
        }
        .into_actor(self)
        .map(move |r, act, ctx| {
            let ack = r.unwrap_or_else(|e| crate::storage::ready(Err(e)));
            act.queued(sig, ack, ctx)
        })
        .wait(ctx);
    }

    fn queued(&mut self, sig: Signal, ack: Ack, ctx: &mut Context<Self>) {
        self.pipeline.0.push_back((sig, ack));
        if !std::mem::replace(&mut self.pipeline.1.0, true) {
            ctx.spawn(Acks { spawned: true });
        }
    }

    /// The outcome of one offline store.
    fn offline_stored(&mut self, sig: Signal, r: Result<(), StorageError>) {
        match r {
            Ok(()) => {
                crate::metrics::METRICS.signal(&sig, crate::metrics::Outcome::StoredOffline);
                slog::info!(self.log, "message stored offline"; "from" => %sig.from())
            }
            Err(StorageError::Full) => {
                slog::warn!(self.log, "offline storage full"; "from" => %sig.from());
                self.bounce(
                    &sig,
                    ErrorCondition::ServiceUnavailable,
                    Some("offline storage is full"),
                );
            }
            Err(e) => {
                slog::warn!(self.log, "offline message not stored"; "error" => %e);
                self.bounce(
                    &sig,
                    ErrorCondition::InternalServerError,
                    Some("message could not be stored"),
                );
            }
        }
    }
}

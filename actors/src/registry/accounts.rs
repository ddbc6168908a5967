//! Handing signals to account actors: started on demand, and when an account's mailbox
//! is full its signals wait in order (`waiting.rs`), are handed over as it empties, and
//! bounce after waiting too long.

use super::*;

/// Hand over what waits for an account (its mailbox had no room).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(super) struct DrainWaiting(BareJid);

impl Registry {
    /// The account actor for `bare`, started on a worker arbiter if not running.
    pub(super) fn account(&mut self, bare: &BareJid) -> Option<AccountRef> {
        if let Some(a) = self.accounts.get(bare).filter(|a| a.connected()) {
            return Some(a.clone());
        }
        let ctx = self.ctx.clone()?;
        let start = self.start_account.as_ref()?;
        let worker = self
            .workers
            .get(self.next_worker % self.workers.len().max(1));
        let addr = start(bare.clone(), ctx, worker);
        self.next_worker = self.next_worker.wrapping_add(1);
        self.accounts.insert(bare.clone(), addr.clone());
        Some(addr)
    }

    /// Hand a signal to the account actor of its recipient; when its mailbox is full,
    /// the signal waits (in order, bounded) instead of bouncing.
    pub(super) fn for_account(&mut self, sig: Signal) {
        self.for_account_at(sig.to().to_bare(), sig)
    }

    /// [`Registry::for_account`] to the account `bare` (the recipient's, or for an
    /// administration command the sender's); without an actor the signal bounces with
    /// `internal-server-error`.
    pub(super) fn for_account_at(&mut self, bare: BareJid, sig: Signal) {
        if self.waiting.is_waiting(&bare) {
            return self.wait(bare, sig);
        }
        if let Some(sig) = self.try_account(&bare, sig) {
            self.wait(bare, sig);
        }
    }

    /// One attempt to hand `sig` to the account; the signal back when it must wait
    /// (mailbox full, or the actor just stopped: the next attempt starts a new one).
    fn try_account(&mut self, bare: &BareJid, sig: Signal) -> Option<Signal> {
        let Some(a) = self.account(bare) else {
            self.bounce(sig, ErrorCondition::InternalServerError, None);
            return None;
        };
        match a.try_send(ToAccount::Signal(sig)) {
            Ok(()) => None,
            Err(SendError::Full(ToAccount::Signal(sig))) => Some(sig),
            Err(SendError::Closed(ToAccount::Signal(sig))) => {
                self.accounts.remove(bare);
                Some(sig)
            }
            Err(_) => None,
        }
    }

    pub(super) fn wait(&mut self, bare: BareJid, sig: Signal) {
        let first = !self.waiting.is_waiting(&bare);
        match self.waiting.push(&bare, sig, self.sender.clone()) {
            None if first => self.drain_later(bare),
            None => {}
            Some(sig) => self.bounce(
                sig,
                ErrorCondition::ResourceConstraint,
                Some("recipient is overloaded"),
            ),
        }
    }

    /// Try the account again in a moment (its mailbox empties as it works).
    fn drain_later(&self, bare: BareJid) {
        let Some(me) = self.me.as_ref().and_then(|m| m.upgrade()) else {
            return;
        };
        actix::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            me.do_send(DrainWaiting(bare));
        });
    }

    /// Every few seconds: what waited too long for a stuck account goes back to its
    /// senders (and their sessions read again).
    pub(super) fn expire_waiting(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(waiting::WAIT_TIMEOUT / 6, |act, _| {
            let Some(before) = std::time::Instant::now().checked_sub(waiting::WAIT_TIMEOUT) else {
                return;
            };
            for e in act.waiting.expire(before) {
                if let Some(b) = &e.from {
                    b.done();
                }
                act.bounce(
                    e.sig,
                    ErrorCondition::ResourceConstraint,
                    Some("recipient is overloaded"),
                );
            }
        });
    }
}

impl Handler<DrainWaiting> for Registry {
    type Result = ();
    fn handle(&mut self, DrainWaiting(bare): DrainWaiting, _: &mut Context<Self>) {
        while let Some(mut e) = self.waiting.pop(&bare) {
            // the sender's backlog is counted down only once the signal is handed over
            let from = e.from.take();
            match self.try_account(&bare, e.sig) {
                Some(sig) => {
                    let since = e.since;
                    self.waiting
                        .unpop(&bare, waiting::Entry { sig, from, since });
                    return self.drain_later(bare);
                }
                None => {
                    if let Some(b) = from {
                        b.done();
                    }
                }
            }
        }
    }
}

//! What the registry does for the administration commands (XEP-0133,
//! `features::adhoc`): hand a command from a user of one hosted domain to another to
//! the sender's account actor, and hand an account actor a message for its account
//! (an administrator's delete-user).

use super::Registry;
use crate::signals::Signal;
use crate::signals::to_registry::ForAccount;
use actix::prelude::*;

impl Registry {
    /// A command from a local user to another hosted domain: the sender's account
    /// actor runs it (it holds the sender's command sessions and checks the rights);
    /// the answer is routed back from the domain addressed.
    /// It takes the account's waiting path: a full mailbox delays it (bounded), an
    /// account that cannot be reached bounces it (`internal-server-error`).
    pub(super) fn command_to_senders_account(&mut self, sig: Signal) {
        self.for_account_at(sig.from().to_bare(), sig)
    }
}

impl Handler<ForAccount> for Registry {
    type Result = ();
    fn handle(&mut self, m: ForAccount, _: &mut Context<Self>) {
        // without an actor the message (and any reply channel in it) is dropped
        if let Some(a) = self.account(&m.bare) {
            a.do_send(m.msg);
        }
    }
}

//! What the registry does for the administration commands (XEP-0133,
//! `features::adhoc`): hand a command from a user of one hosted domain to another to
//! the sender's account actor, and hand an account actor a message for its account
//! (an administrator's delete-user).

use super::Registry;
use crate::signals::to_registry::ForAccount;
use crate::signals::{Signal, ToAccount};
use actix::prelude::*;
use xmppd_proto::stanza::ErrorCondition;

impl Registry {
    /// A command from a local user to another hosted domain: the sender's account
    /// actor runs it (it holds the sender's command sessions and checks the rights);
    /// the answer is routed back from the domain addressed.
    pub(super) fn command_to_senders_account(&mut self, sig: Signal) {
        let bare = sig.from().to_bare();
        let Some(a) = self.account(&bare) else {
            return;
        };
        match a.try_send(ToAccount::Signal(sig)) {
            Ok(()) => {}
            Err(SendError::Full(ToAccount::Signal(sig))) => self.bounce(
                sig,
                ErrorCondition::ResourceConstraint,
                Some("the account is busy"),
            ),
            Err(SendError::Closed(ToAccount::Signal(sig))) => {
                self.accounts.remove(&bare);
                self.bounce(sig, ErrorCondition::InternalServerError, None)
            }
            Err(_) => {}
        }
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

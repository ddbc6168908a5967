//! An administrator's removal of an account: handed to the account's actor (started
//! when not running), which removes it the way XEP-0077 `<remove/>` does.

use super::Registry;
use crate::signals::ToAccount;
use crate::signals::to_registry::RemoveAccount;
use crate::storage::StorageError;
use actix::dev::SendError;
use actix::prelude::*;

impl Handler<RemoveAccount> for Registry {
    type Result = ();
    fn handle(&mut self, m: RemoveAccount, _: &mut Context<Self>) {
        let mut done = m.done;
        // a stopped actor is replaced once; a full mailbox is reported, not waited for
        for _ in 0..2 {
            let Some(a) = self.account(&m.bare) else {
                let _ = done.send(Err(StorageError::Backend("the server is not ready".into())));
                return;
            };
            match a.try_send(ToAccount::Remove { done }) {
                Ok(()) => return,
                Err(SendError::Closed(ToAccount::Remove { done: d })) => {
                    self.accounts.remove(&m.bare);
                    done = d;
                }
                Err(SendError::Full(ToAccount::Remove { done: d })) => {
                    let _ = d.send(Err(busy()));
                    return;
                }
                Err(_) => return,
            }
        }
        let _ = done.send(Err(busy()));
    }
}

fn busy() -> StorageError {
    StorageError::Backend("the account is busy: try again".into())
}

//! In-band registration for a registered user (XEP-0077): what is on file, password
//! change (when the domain's "Allow to Modify Password" is on, read per request;
//! rate-limited per account and run among the bounded key derivations), and account
//! removal: from the moment it starts the account takes no more writes from its
//! sessions; once the delete has committed the subscriptions are cancelled, the
//! requester is answered and every session ends (§3.2).

use super::*;
use std::time::Instant;
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xep::register::{self, Refusal, SetRequest};

/// Where the account stands with an in-band removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    None,
    /// `<remove/>` was accepted; the delete has not committed yet.
    Running,
    /// The account was deleted; its state is empty until a load finds the name
    /// registered again.
    Done,
}

impl Account {
    pub(super) fn register_iq(&mut self, resource: String, iq: Element, ctx: &mut Context<Self>) {
        let Some(query) = features::single_payload(&iq).cloned() else {
            return;
        };
        if self.state.exists != Some(true) {
            // an anonymous session: there is no registration to read, change or cancel
            let r = stanza::error_reply(
                &iq,
                ErrorCondition::RegistrationRequired,
                Some("this session has no registered account"),
            );
            if let Some(r) = r {
                self.write(&resource, r);
            }
            return;
        }
        if iq.attr("type") == Some("get") {
            let r = stanza::iq_result(&iq, Some(register::registered(&self.user)));
            return self.write(&resource, r);
        }
        let refused = |act: &Self, r: Refusal| {
            if let Some(e) = stanza::error_reply(&iq, r.cond, Some(r.text)) {
                act.write(&resource, e);
            }
        };
        match register::parse_set(&query) {
            Err(r) => refused(self, r),
            Ok(SetRequest::Remove) => self.remove_account(resource, iq, ctx),
            Ok(SetRequest::Fields(f)) => {
                let settings = self.ctx.settings.get();
                let Some(domain) = settings.domain(&self.domain) else {
                    return refused(self, register::NOT_HOSTED);
                };
                // §3.3: a new password in the clear only where PLAIN would be offered
                if !register::cleartext_ok(domain, self.sessions.tls(&resource)) {
                    return refused(self, register::NOT_SAFE);
                }
                let allowed = domain.allow_modify_password;
                let password = match register::password_change(&self.user, allowed, f) {
                    Err(r) => return refused(self, r),
                    Ok(p) => p,
                };
                let bare = self.state.bare.to_string();
                let limits = &settings.limits;
                if self
                    .ctx
                    .password_changes
                    .take(&bare, limits, Instant::now())
                    .is_err()
                {
                    slog::warn!(self.log, # "XMPPI", "password change refused: too many");
                    return refused(
                        self,
                        Refusal {
                            cond: ErrorCondition::ResourceConstraint,
                            text: "too many password changes: try again later",
                        },
                    );
                }
                self.change_password(resource, iq, password, ctx)
            }
        }
    }

    /// New SCRAM keys (fresh salt, the configured iterations), derived on the blocking
    /// pool among the bounded derivations (as a login's), replace the stored ones.
    fn change_password(
        &mut self,
        resource: String,
        iq: Element,
        password: String,
        ctx: &mut Context<Self>,
    ) {
        let storage = self.ctx.storage.clone();
        let settings = self.ctx.settings.get();
        let (domain, user) = (self.domain.clone(), self.user.clone());
        async move {
            storage
                .store_password(domain, user, password, &settings.auth, false)
                .await
        }
        .into_actor(self)
        .map(move |r, act, _| {
            let reply = match r {
                Ok(()) => {
                    slog::info!(act.log, "password changed in-band"; "resource" => &resource);
                    Some(stanza::iq_result(&iq, None))
                }
                Err(e) => {
                    slog::error!(act.log, "password not changed"; "error" => %e);
                    stanza::error_reply(&iq, ErrorCondition::InternalServerError, None)
                }
            };
            if let Some(r) = reply {
                act.write(&resource, r);
            }
        })
        .wait(ctx);
    }

    /// §3.2: the requester's `<remove/>`; answered once the removal committed (or
    /// with `internal-server-error` when it failed).
    fn remove_account(&mut self, resource: String, iq: Element, ctx: &mut Context<Self>) {
        self.remove(ctx, move |act, r| {
            let reply = match r {
                Ok(()) => {
                    slog::info!(act.log, "account removed in-band"; "resource" => &resource);
                    Some(stanza::iq_result(&iq, None))
                }
                Err(_) => stanza::error_reply(&iq, ErrorCondition::InternalServerError, None),
            };
            if let Some(r) = reply {
                act.write(&resource, r);
            }
        });
    }

    /// An administrator's delete-user (XEP-0133): the same removal, its outcome sent
    /// to `done` (`NotFound` when there is no such account, or it is being removed
    /// already). An account not known to exist is looked up again first: it may have
    /// been registered since this actor last looked.
    pub(super) fn removal_by_admin(
        &mut self,
        done: tokio::sync::oneshot::Sender<Result<(), StorageError>>,
        ctx: &mut Context<Self>,
    ) {
        let go = move |act: &mut Self, ctx: &mut Context<Self>| {
            if act.state.exists != Some(true) || act.removal != Removal::None {
                let _ = done.send(Err(StorageError::NotFound));
                return;
            }
            act.remove(ctx, move |act, r| {
                if r.is_ok() {
                    slog::info!(act.log, "account removed by an administrator");
                }
                let _ = done.send(r);
            });
        };
        if self.state.exists == Some(true) && self.removal == Removal::None {
            go(self, ctx);
        } else {
            self.load_then(ctx, go);
        }
    }

    /// From now on the sessions' writes are refused; delete the account; once that
    /// committed, cancel the subscriptions both ways (what
    /// [`register::removal_routes`] decided), tell `answer` (the requester's reply goes
    /// out before the sessions close), and close every session with `not-authorized`.
    /// A failed delete changes nothing and sends nothing but `answer`'s error.
    fn remove(
        &mut self,
        ctx: &mut Context<Self>,
        answer: impl FnOnce(&mut Self, Result<(), StorageError>) + 'static,
    ) {
        let routes = register::removal_routes(&self.state);
        self.removal = Removal::Running;
        let limits = self.ctx.settings.get().limits.clone();
        // a stream that authenticated before the delete binds within this
        let keep = Duration::from_secs(limits.auth_timeout.max(1) + limits.tls_timeout);
        self.store(
            ctx,
            |b, d, u| match b.delete_account(d, u) {
                Err(StorageError::NotFound) => Ok(()),
                r => r,
            },
            move |act, r, _| {
                if let Err(e) = r {
                    slog::error!(act.log, "account not removed"; "error" => %e);
                    act.removal = Removal::None;
                    return answer(act, Err(e));
                }
                act.ctx
                    .removals
                    .record(act.state.bare.as_str(), Instant::now(), keep);
                for el in routes {
                    act.route(el);
                }
                answer(act, Ok(()));
                for session in act.sessions.all() {
                    session.do_send(ToSession::Close(StreamError::with_text(
                        Condition::NotAuthorized,
                        "the account was removed",
                    )));
                }
                let resources = std::mem::take(&mut act.state.resources);
                act.state = State::new(act.state.bare.clone());
                act.state.resources = resources;
                act.state.exists = Some(false);
                act.state.offline_waiting = false;
                act.removal = Removal::Done;
            },
        );
    }

    /// A client stanza while the account is being (or was) removed: an iq request is
    /// refused, anything else dropped; nothing is written for the account.
    pub(super) fn after_removal(&self, resource: &str, stanza: &Element) {
        if stanza.name() == "iq" && matches!(stanza.attr("type"), Some("get" | "set")) {
            let r = stanza::error_reply(
                stanza,
                ErrorCondition::RegistrationRequired,
                Some("the account was removed"),
            );
            if let Some(r) = r {
                self.write(resource, r);
            }
        }
    }
}

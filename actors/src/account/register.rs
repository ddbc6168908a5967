//! In-band registration for a registered user (XEP-0077): what is on file, password
//! change (when the domain's "Allow to Modify Password" is on, read per request), and
//! account removal, which cancels the account's subscriptions, deletes everything
//! stored for it and ends every session of the account after the answer (§3.2).

use super::*;
use xmppd_proto::auth::scram::Credentials;
use xmppd_proto::config::PasswordFormat;
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xep::register::{self, Refusal, SetRequest};

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
                match register::password_change(&self.user, allowed, f) {
                    Err(r) => refused(self, r),
                    Ok(password) => {
                        let iterations = settings.auth.scram_iterations;
                        let keep_plain = settings.auth.password_format == PasswordFormat::Plain;
                        self.change_password(resource, iq, password, iterations, keep_plain, ctx)
                    }
                }
            }
        }
    }

    /// New SCRAM keys (fresh salt, the configured iterations), derived on the blocking
    /// pool, replace the stored ones.
    fn change_password(
        &mut self,
        resource: String,
        iq: Element,
        password: String,
        iterations: u32,
        keep_plain: bool,
        ctx: &mut Context<Self>,
    ) {
        self.store(
            ctx,
            move |b, d, u| {
                let creds = Credentials::derive(&password, iterations, keep_plain);
                b.set_credentials(d, u, &creds)
            },
            move |act, r, _| {
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
            },
        );
    }

    /// §3.2: cancel the subscriptions both ways (RFC 6121 §2.5.2 for each contact, and
    /// decline the requests waiting), delete the account, answer, then close every
    /// session with `not-authorized`.
    fn remove_account(&mut self, resource: String, iq: Element, ctx: &mut Context<Self>) {
        let contacts: Vec<String> = self.state.roster.keys().cloned().collect();
        for c in contacts {
            if let Ok(fx) = self.state.remove_contact(&c) {
                // the routed stanzas only: the stored roster goes with the account
                for e in fx {
                    if let xmppd_proto::im::account::Effect::Route(el) = e {
                        self.route(el);
                    }
                }
            }
        }
        for contact in std::mem::take(&mut self.state.pending).into_keys() {
            let mut p = Element::bare("presence", ns::CLIENT);
            stanza::set_attr(&mut p, "from", self.state.bare.as_str());
            stanza::set_attr(&mut p, "to", &contact);
            stanza::set_attr(&mut p, "type", "unsubscribed");
            self.route(p);
        }
        self.store(
            ctx,
            |b, d, u| match b.delete_account(d, u) {
                Err(StorageError::NotFound) => Ok(()),
                r => r,
            },
            move |act, r, _| {
                if let Err(e) = r {
                    slog::error!(act.log, "account not removed"; "error" => %e);
                    if let Some(e) =
                        stanza::error_reply(&iq, ErrorCondition::InternalServerError, None)
                    {
                        act.write(&resource, e);
                    }
                    return;
                }
                slog::info!(act.log, "account removed in-band"; "resource" => &resource);
                act.write(&resource, stanza::iq_result(&iq, None));
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
                act.removed = true;
            },
        );
    }
}

//! In-band registration before authentication (XEP-0077 §3.1) on a client stream,
//! registered in the feature table where the domain's "Auto Signup" is on: the form,
//! then the account created in storage. The setting, the TLS rule (that of SASL PLAIN)
//! and the per-address limit are read from the live settings on every request, so a
//! reload applies at once.

use super::c2s::parts;
use super::core::Connection;
use crate::features::{self, IqError};
use crate::storage::StorageError;
use actix::prelude::*;
use minidom::Element;
use std::time::Instant;
use xmppd_proto::stanza::{self, ErrorCondition};
use xmppd_proto::xep::register::{self, Refusal, SetRequest, SignupContext};
use xmppd_proto::xep::register_limit::{LimitPolicy, Limited};

fn refuse(conn: &mut Connection, el: &Element, r: Refusal) {
    let reply = stanza::error_reply(el, r.cond, Some(r.text));
    conn.core.send_opt(reply);
}

/// `jabber:iq:register` before a resource is bound.
pub fn register_iq(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    let settings = core.ctx.settings.get();
    let here = SignupContext {
        tls: core.tls.is_some(),
        authenticated: c.auth.is_some(),
        registered_here: c.registered_here,
    };
    let domain = c.domain_name().to_string();
    if let Err(r) = register::signup_allowed(settings.domain(&domain), here)
        .and_then(|()| register::signup_addressed(el.attr("to"), &domain))
    {
        return refuse(conn, &el, r);
    }
    let Some(query) = features::single_payload(&el) else {
        return;
    };
    if el.attr("type") == Some("get") {
        let r = stanza::iq_result(&el, Some(register::form()));
        return core.send_el(&r);
    }
    let fields = match register::parse_set(query) {
        Ok(SetRequest::Fields(f)) => f,
        // §3.2: an entity that is not registered cannot cancel a registration
        Ok(SetRequest::Remove) => {
            let r = stanza::error_reply(
                &el,
                ErrorCondition::RegistrationRequired,
                Some("authenticate to remove your account"),
            );
            return core.send_opt(r);
        }
        Err(r) => return refuse(conn, &el, r),
    };
    let signup = match register::signup(fields)
        .and_then(|s| register::not_an_admin_name(&settings, &s.username, &domain).map(|()| s))
    {
        Ok(s) => s,
        Err(r) => return refuse(conn, &el, r),
    };
    let policy = LimitPolicy::from(&settings.limits);
    if let Err(why) = core
        .ctx
        .registrations
        .take(&policy, core.peer.ip(), Instant::now())
    {
        slog::warn!(core.log, # "XMPPI", "registration refused: limit reached"; "user" => &signup.username, "why" => ?why);
        let text = match why {
            Limited::Spent => "too many registrations from this address: try again later",
            Limited::Full => "too many registrations at the moment: try again later",
        };
        let r = stanza::error_reply(&el, ErrorCondition::ResourceConstraint, Some(text));
        return core.send_opt(r);
    }
    let storage = core.ctx.storage.clone();
    let user = signup.username.clone();
    core.busy = true;
    async move {
        // one key derivation: a few at a time (Storage::store_password)
        storage
            .store_password(
                domain,
                signup.username,
                signup.password,
                &settings.auth,
                true,
            )
            .await
    }
    .into_actor(conn)
    .map(move |res, act, ctx| {
        act.core.busy = false;
        if act.core.closing() {
            return;
        }
        let answer: Result<Option<Element>, IqError> = match res {
            Ok(()) => {
                slog::info!(act.core.log, # "XMPPI", "account registered in-band"; "user" => &user);
                if let Some((_, c)) = parts(act) {
                    c.registered_here = true;
                }
                Ok(None)
            }
            Err(StorageError::Exists) => Err(IqError {
                cond: ErrorCondition::Conflict,
                text: Some("the username is taken"),
            }),
            Err(e) => {
                slog::error!(act.core.log, "in-band registration failed"; "error" => %e);
                Err(ErrorCondition::InternalServerError.into())
            }
        };
        let r = features::reply(&el, answer);
        act.core.send_el(&r);
        act.pump(ctx);
    })
    .wait(ctx);
}

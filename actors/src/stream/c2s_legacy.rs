//! Non-SASL authentication (XEP-0078) on a client stream, registered in the feature
//! table: the fields offered, the password or digest checked, then binding.

use super::c2s::{bind, parts};
use super::c2s_sasl::{
    THROTTLE_WAIT, check_failures, derivation_permit, nodeprep, reserve, throttle_policy, wait_turn,
};
use super::core::Connection;
use crate::features;
use actix::prelude::*;
use minidom::Element;
use std::sync::atomic::Ordering;
use std::time::Instant;
use xmppd_proto::auth::legacy;
use xmppd_proto::auth::sasl::Authenticated;
use xmppd_proto::config::PasswordFormat;
use xmppd_proto::stanza::{self, ErrorCondition};

/// `jabber:iq:auth` before a resource is bound.
pub fn legacy_auth_iq(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    if c.auth.is_some() {
        let r = stanza::error_reply(&el, ErrorCondition::ServiceUnavailable, None);
        return core.send_opt(r);
    }
    if !c.auth_allowed(core) {
        let r = stanza::error_reply(
            &el,
            ErrorCondition::PolicyViolation,
            Some("TLS is required before authentication"),
        );
        return core.send_opt(r);
    }
    let plain = core.settings.auth.password_format == PasswordFormat::Plain;
    match el.attr("type") {
        Some("get") => {
            if let Some(p) = features::single_payload(&el) {
                let r = stanza::iq_result(&el, Some(legacy::fields(p, plain)));
                core.send_el(&r);
            }
        }
        Some("set") => authenticate(conn, el, ctx),
        _ => {
            let r = stanza::error_reply(&el, ErrorCondition::BadRequest, None);
            core.send_opt(r)
        }
    }
}

fn authenticate(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    let req = match legacy::parse(&el) {
        Ok(r) => r,
        Err(cond) => {
            let r = stanza::error_reply(&el, cond, None);
            return core.send_opt(r);
        }
    };
    let Some(user) = nodeprep(&req.username) else {
        let r = stanza::error_reply(&el, ErrorCondition::NotAuthorized, None);
        return core.send_opt(r);
    };
    let domain = c.domain_name().to_string();
    let account = format!("{user}@{domain}");
    let attempt = match reserve(core, Some(&account)) {
        Ok(Some(a)) => {
            c.throttle_waits = 0;
            a
        }
        Ok(None) if wait_turn(core, c) => {
            // attempts in flight hold the budget: wait for their outcome
            ctx.run_later(THROTTLE_WAIT, move |act, ctx| {
                act.core.busy = false;
                if !act.core.closing() {
                    authenticate(act, el, ctx);
                }
                act.pump(ctx);
            });
            return;
        }
        Ok(None) | Err(_) => {
            crate::metrics::METRICS
                .auth_throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = stanza::error_reply(
                &el,
                ErrorCondition::ResourceConstraint,
                Some("too many failed authentications: try again later"),
            );
            core.send_opt(r);
            c.failures += 1;
            return check_failures(core, c);
        }
    };
    // the lookup and the check (one key derivation, against a decoy for an unknown
    // account: the same work either way) run on the blocking pool
    c.auth_at = Some(std::time::Instant::now());
    let storage = core.ctx.storage.clone();
    let server = core.ctx.clone();
    let iterations = core.ctx.decoy_iterations.load(Ordering::Relaxed);
    let stream_id = core.stream_id.clone();
    let check = req.clone();
    core.busy = true;
    let u = user.clone();
    async move {
        // one key derivation: a few at a time (see c2s_sasl::derivation_permit)
        let _permit = derivation_permit().await;
        storage
            .run(move |b| {
                let creds = b.credentials(&domain, &u)?;
                Ok(match &creds {
                    Some(creds) => legacy::verify(&check, creds, &stream_id),
                    None => {
                        let decoy = server.decoy.decoy(&u, iterations);
                        let _ = legacy::verify(&check, &decoy, &stream_id);
                        false
                    }
                })
            })
            .await
    }
    .into_actor(conn)
    .map(move |res, act, ctx| {
        act.core.busy = false;
        if act.core.closing() {
            return;
        }
        let Some((core, c)) = parts(act) else { return };
        let ok = match res {
            Ok(ok) => ok,
            Err(e) => {
                slog::error!(core.log, "credential lookup failed"; "error" => %e);
                let r = stanza::error_reply(&el, ErrorCondition::InternalServerError, None);
                core.send_opt(r);
                return act.pump(ctx);
            }
        };
        if !ok {
            attempt.failed(&throttle_policy(core), Instant::now());
            c.failures += 1;
            core.ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            crate::metrics::METRICS.auth("legacy", false);
            slog::warn!(core.log, # "XMPPI", "legacy authentication failed"; "user" => &user);
            let r = stanza::error_reply(&el, ErrorCondition::NotAuthorized, None);
            core.send_opt(r);
            check_failures(core, c);
            return act.pump(ctx);
        }
        slog::debug!(core.log, # "XMPPI", "authenticated (legacy)"; "user" => &user);
        crate::metrics::METRICS.auth("legacy", true);
        core.conn.set_mechanism("legacy");
        attempt.succeeded();
        c.auth = Some(Authenticated {
            username: user,
            anonymous: false,
        });
        core.authenticated();
        bind(act, el, Some(req.resource.clone()), true, ctx);
        act.pump(ctx);
    })
    .wait(ctx);
}

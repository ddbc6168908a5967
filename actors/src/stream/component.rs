//! The trusted-component strategy (`jabber:component:accept`, XEP-0114): the header's
//! `to` names a configured component, the peer proves the shared secret with
//! `<handshake/>`, the registry attaches it to its domain, and the stream goes to a new
//! `Component` actor.
//!
//! XEP-0114 streams have no STARTTLS and no features: a component connects in clear
//! text from a loopback address (where it normally runs, beside the server), or over
//! a direct-TLS listener from anywhere else; a clear-text component stream from any
//! other address is refused with `policy-violation`.

use super::Kind;
use super::core::{Connection, Phase, Strategy, StreamCore};
use crate::component::Component;
use crate::signals::to_registry::{AttachComponent, AttachError};
use actix::prelude::*;
use minidom::Element;
use std::time::Instant;
use xmppd_proto::auth::throttle::{self, AuthThrottle};
use xmppd_proto::component::handshake_ok;
use xmppd_proto::config::ComponentSettings;
use xmppd_proto::ns;
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xml::stream_parser::StreamHeader;

pub const STRATEGY: Strategy = Strategy {
    ns: ns::COMPONENT,
    start,
    header,
    element,
};

/// A component stream's negotiation state: the component its header named.
pub struct ComponentStream {
    config: Option<ComponentSettings>,
}

fn start(_: &StreamCore) -> Kind {
    Kind::Component(Box::new(ComponentStream { config: None }))
}

fn parts(conn: &mut Connection) -> Option<(&mut StreamCore, &mut ComponentStream)> {
    let Connection { core, kind, .. } = conn;
    match kind {
        Kind::Component(c) => Some((core, c)),
        _ => None,
    }
}

fn header(conn: &mut Connection, h: StreamHeader, _: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    // XEP-0114 streams carry no version and answer with none
    core.version = false;
    if core.tls.is_none() && !core.peer.ip().is_loopback() {
        return core.fail(StreamError::with_text(
            Condition::PolicyViolation,
            "component streams without TLS are accepted from loopback addresses only",
        ));
    }
    let Some(to) = h.to.as_deref() else {
        return core.fail(StreamError::new(Condition::ImproperAddressing));
    };
    let Some(config) = core.settings.component(to).cloned() else {
        return core.fail(StreamError::new(Condition::HostUnknown));
    };
    core.send_header(Some(&config.name), None);
    c.config = Some(config);
    core.phase = Phase::Negotiating;
}

fn element(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    if !el.is("handshake", ns::COMPONENT) {
        // nothing but the handshake before it succeeded
        return conn.core.fail(StreamError::new(Condition::NotAuthorized));
    }
    let Some((core, c)) = parts(conn) else { return };
    let Some(config) = c.config.clone() else {
        return core.fail(StreamError::new(Condition::NotAuthorized));
    };
    // wrong secrets count against the address like failed logins (limits.auth_failures_per_ip)
    let policy = throttle::Policy::from(&core.settings.limits);
    let (ip, now) = (core.peer.ip(), Instant::now());
    if let Err(e) = AuthThrottle::global().check(&policy, ip, None, now) {
        slog::warn!(core.log, # "XMPPI", "component handshake refused"; "component" => &config.name, "why" => %e);
        return core.fail(StreamError::with_text(
            Condition::PolicyViolation,
            e.to_string(),
        ));
    }
    if !handshake_ok(&core.stream_id, &config.secret, &el.text()) {
        slog::warn!(core.log, # "XMPPI", "component handshake failed"; "component" => &config.name);
        AuthThrottle::global().failed(&policy, ip, None, now);
        return core.fail(StreamError::new(Condition::NotAuthorized));
    }
    attach(conn, config, ctx);
}

/// Attach the component to its domain in the registry, then start its actor, confirm
/// the handshake and hand the stream over.
fn attach(conn: &mut Connection, config: ComponentSettings, ctx: &mut Context<Connection>) {
    let mut comp_ctx: Context<Component> = Context::new();
    comp_ctx.set_mailbox_capacity(crate::component::MAILBOX);
    let addr = comp_ctx.address();
    let domain = config.name.to_ascii_lowercase();
    conn.core.busy = true;
    conn.core
        .ctx
        .registry
        .attach_component
        .send(AttachComponent {
            domain: domain.clone(),
            signals: addr.clone().recipient(),
            replaced: addr.clone().recipient(),
            replace: config.replace,
        })
        .into_actor(conn)
        .map(move |res, act, ctx| {
            act.core.busy = false;
            if act.core.closing() {
                // gone meanwhile: leave the domain again
                act.core.ctx.registry.detach_service.do_send(
                    crate::signals::to_registry::DetachService {
                        domain,
                        signals: addr.recipient(),
                    },
                );
                return;
            }
            match res {
                Ok(Ok(())) => {}
                Ok(Err(AttachError::Taken)) => {
                    return act.core.fail(StreamError::with_text(
                        Condition::Conflict,
                        "another connection serves this component",
                    ));
                }
                Ok(Err(AttachError::Hosted)) | Err(_) => {
                    return act.core.fail(StreamError::new(Condition::HostUnknown));
                }
            }
            let core = &mut act.core;
            core.authenticated();
            slog::info!(core.log, # "XMPPI", "component connected"; "component" => &domain);
            let log = core.ctx.log.new(slog::o!(
                "component" => domain.clone(),
                "peer" => core.peer.to_string()
            ));
            core.send("<handshake/>");
            comp_ctx.run(Component::new(
                domain,
                core.ctx.clone(),
                core.out.clone(),
                log,
            ));
            core.hand_over(addr.clone().recipient(), addr.recipient());
            act.pump(ctx);
        })
        .wait(ctx);
}

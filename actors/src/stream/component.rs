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
use crate::component::{Attached, Component};
use crate::net::io::FromIo;
use crate::signals::to_registry::{AttachComponent, AttachError};
use actix::prelude::*;
use minidom::Element;
use std::time::Instant;
use xmppd_proto::auth::throttle::{self, AuthThrottle};
use xmppd_proto::component::{accept_header, handshake_ok};
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
    let settings = core.settings.clone();
    let config = match accept_header(
        core.tls.is_some(),
        core.peer.ip(),
        h.to.as_deref(),
        &settings,
    ) {
        Ok(config) => config.clone(),
        Err(e) => return core.fail(e),
    };
    core.send_header(Some(&config.name), None);
    c.config = Some(config);
    core.phase = Phase::Negotiating;
}

/// The throttle key of a component's handshakes: its own, apart from the client
/// addresses (a component on loopback shares its address with local clients, and
/// neither may lock the other out).
fn throttle_key(name: &str) -> String {
    format!("component:{}", name.to_ascii_lowercase())
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
    // wrong secrets count per component name (limits.auth_failures_per_account), not
    // per address
    let policy = throttle::Policy {
        per_ip: 0,
        ..throttle::Policy::from(&core.settings.limits)
    };
    let key = throttle_key(&config.name);
    let (ip, now) = (core.peer.ip(), Instant::now());
    if let Err(e) = AuthThrottle::global().check(&policy, ip, Some(&key), now) {
        slog::warn!(core.log, # "XMPPI", "component handshake refused"; "component" => &config.name, "why" => %e);
        return core.fail(StreamError::with_text(
            Condition::PolicyViolation,
            "too many failed handshakes for this component",
        ));
    }
    if !handshake_ok(&core.stream_id, &config.secret, &el.text()) {
        slog::warn!(core.log, # "XMPPI", "component handshake failed"; "component" => &config.name);
        AuthThrottle::global().failed(&policy, ip, Some(&key), now);
        return core.fail(StreamError::new(Condition::NotAuthorized));
    }
    AuthThrottle::global().succeeded(&key);
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
            secret: config.secret.clone(),
            signals: addr.clone().recipient(),
            dismiss: addr.clone().recipient(),
            replace: config.replace,
        })
        .into_actor(conn)
        .map(move |res, act, ctx| {
            act.core.busy = false;
            let refused = match res {
                Ok(Ok(())) => None,
                Ok(Err(AttachError::Taken)) => Some(StreamError::with_text(
                    Condition::Conflict,
                    "another connection serves this component",
                )),
                Ok(Err(AttachError::SecretChanged)) => Some(StreamError::with_text(
                    Condition::NotAuthorized,
                    "the component's secret changed",
                )),
                Ok(Err(AttachError::Hosted | AttachError::Unknown)) => {
                    Some(StreamError::new(Condition::HostUnknown))
                }
                // the registry is gone: the server is stopping
                Err(_) => Some(StreamError::new(Condition::SystemShutdown)),
            };
            if let Some(e) = refused {
                if !act.core.closing() {
                    act.core.fail(e);
                }
                return;
            }
            let core = &mut act.core;
            let log = core.ctx.log.new(slog::o!(
                "component" => domain.clone(),
                "peer" => core.peer.to_string()
            ));
            let component = Component::new(Attached {
                domain: domain.clone(),
                secret: config.secret.clone(),
                ctx: core.ctx.clone(),
                out: core.out.clone(),
                conn: core.conn.clone(),
                log,
            });
            if core.closing() {
                // gone meanwhile, but attached: the actor runs to return what reaches it
                // until it has detached again
                comp_ctx.run(component);
                addr.do_send(FromIo::Closed("gone while attaching".into()));
                return;
            }
            core.authenticated();
            core.conn.set_identity(&domain);
            slog::info!(core.log, # "XMPPI", "component connected"; "component" => &domain);
            core.send("<handshake/>");
            comp_ctx.run(component);
            core.hand_over(addr.clone().recipient(), addr.recipient());
            act.pump(ctx);
        })
        .wait(ctx);
}

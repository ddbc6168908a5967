//! The client stream strategy (`jabber:client`, RFC 6120): the domain and version from
//! the header, the stream features, STARTTLS, SASL ([`super::c2s_sasl`]), the pre-session
//! iq routed through the feature table (legacy authentication in
//! [`super::c2s_legacy`], resource binding here), and the hand-over of the stream to the
//! new `Session`.

use super::Kind;
use super::core::{Connection, Phase, Strategy, StreamCore};
use crate::features::{self, Entity, Env, IqHandler, Who};
use crate::session::{Negotiated, Session};
use crate::signals::SessionRef;
use crate::signals::to_registry::{Bind, BindError};
use actix::prelude::*;
use minidom::Element;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmppd_proto::auth::sasl::{self, Authenticated, Mech, OfferContext};
use xmppd_proto::auth::throttle::Attempt;
use xmppd_proto::config::{DomainSettings, Settings};
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition};
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xml::stream_parser::StreamHeader;

pub const STRATEGY: Strategy = Strategy {
    ns: ns::CLIENT,
    start,
    header,
    element,
};

/// A client stream's negotiation state.
pub struct ClientStream {
    pub(super) domain: Option<DomainSettings>,
    /// Pre-1.0 stream (no features): only legacy authentication.
    pub(super) legacy_stream: bool,
    pub(super) auth: Option<Authenticated>,
    /// When `auth` was set (the session's account must not have been removed since).
    pub(super) auth_at: Option<std::time::Instant>,
    pub(super) sasl: Option<super::c2s_sasl::SaslRun>,
    /// `<auth/>` came without an initial response; the mechanism waits for it.
    pub(super) sasl_pending: Option<Mech>,
    /// The mechanism of the latest `<auth/>` (what the metrics count a failure under).
    pub(super) tried: Option<Mech>,
    /// `user@domain` the running exchange claims (for the failure throttle).
    pub(super) sasl_account: Option<String>,
    /// The running attempt's place in the failure throttle.
    pub(super) attempt: Option<Attempt>,
    /// How often the running attempt waited for others in flight.
    pub(super) throttle_waits: u32,
    pub(super) failures: u32,
    /// An account was registered in-band on this stream (one per stream).
    pub(super) registered_here: bool,
}

fn start(_: &StreamCore) -> Kind {
    Kind::Client(Box::new(ClientStream {
        domain: None,
        legacy_stream: false,
        auth: None,
        auth_at: None,
        sasl: None,
        sasl_pending: None,
        tried: None,
        sasl_account: None,
        attempt: None,
        throttle_waits: 0,
        failures: 0,
        registered_here: false,
    }))
}

/// The core and the client state of a connection that runs this strategy.
pub(super) fn parts(conn: &mut Connection) -> Option<(&mut StreamCore, &mut ClientStream)> {
    let Connection { core, kind, .. } = conn;
    match kind {
        Kind::Client(c) => Some((core, c)),
        _ => None,
    }
}

impl ClientStream {
    pub(super) fn domain_name(&self) -> &str {
        self.domain.as_ref().map(|d| d.name.as_str()).unwrap_or("")
    }

    pub(super) fn offer(&self, core: &StreamCore) -> OfferContext {
        let d = self.domain.as_ref();
        OfferContext {
            tls: core.tls.is_some(),
            channel_binding: core.tls.as_ref().is_some_and(|cb| !cb.types().is_empty()),
            plain_without_tls: d.is_some_and(|d| d.plain_without_tls),
            anonymous: d.is_some_and(|d| d.anonymous),
        }
    }

    /// Authentication may happen on this stream (TLS done, or not required).
    pub(super) fn auth_allowed(&self, core: &StreamCore) -> bool {
        core.tls.is_some() || self.domain.as_ref().is_some_and(|d| !d.require_tls)
    }

    /// `<stream:features/>`: the negotiation's own (STARTTLS, SASL) and what enabled
    /// features contribute (legacy authentication before, binding, roster versioning and
    /// the RFC 3921 session after authentication).
    /// `settings` is the snapshot `self.domain` was read from at this header, so that
    /// STARTTLS-required, the mechanisms and what features offer (Auto Signup) agree.
    fn features(&self, core: &StreamCore, settings: &Settings) -> String {
        let env = Env::stream(settings, self.domain_name(), core.tls.is_some());
        let mut f = String::from("<stream:features>");
        if self.auth.is_none() {
            if core.tls.is_none() {
                let required = if self.domain.as_ref().is_none_or(|d| d.require_tls) {
                    "<required/>"
                } else {
                    ""
                };
                f.push_str(&format!(
                    "<starttls xmlns='{}'>{required}</starttls>",
                    ns::TLS
                ));
            }
            if self.auth_allowed(core) {
                f.push_str(&format!("<mechanisms xmlns='{}'>", ns::SASL));
                for m in sasl::offered(self.offer(core)) {
                    f.push_str(&format!("<mechanism>{}</mechanism>", m.name()));
                }
                f.push_str("</mechanisms>");
                if let Some(cb) = &core.tls {
                    let types = cb.types();
                    if !types.is_empty() {
                        f.push_str(&format!("<sasl-channel-binding xmlns='{}'>", ns::SASL_CB));
                        for t in types {
                            f.push_str(&format!("<channel-binding type='{t}'/>"));
                        }
                        f.push_str("</sasl-channel-binding>");
                    }
                }
                f.push_str(&features::stream_features(&env, false));
            }
        } else {
            f.push_str(&features::stream_features(&env, true));
        }
        f.push_str("</stream:features>");
        f
    }
}

fn header(conn: &mut Connection, h: StreamHeader, _: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    let first = c.domain.is_none();
    // RFC 6120 §4.7.2: without 'to' the server may pick its default domain.
    let requested = h.to.as_deref().map(|t| t.to_ascii_lowercase());
    // the live settings, read once for this header: what a reload turns on or off
    // (Auto Signup, TLS rules, mechanisms) shows at once, all from the same snapshot
    let settings = core.ctx.settings.get();
    let domain = match requested.as_deref() {
        Some(t) => settings.domain(t).cloned(),
        None => settings.domains.first().cloned(),
    };
    let Some(domain) = domain else {
        return core.fail(StreamError::new(Condition::HostUnknown));
    };
    if !first && c.domain.as_ref().is_some_and(|d| d.name != domain.name) {
        return core.fail(StreamError::new(Condition::HostUnknown));
    }
    c.domain = Some(domain);
    let name = c.domain_name().to_string();
    // Version: 1.x speaks RFC 6120; none at all is a pre-1.0 client (legacy auth only).
    let major = h.version.as_deref().map(|v| {
        v.split('.')
            .next()
            .and_then(|m| m.trim().parse::<u32>().ok())
    });
    match major {
        Some(Some(1)) => {}
        None if core.settings.auth.legacy_auth && c.auth_allowed(core) => {
            c.legacy_stream = true;
            // a pre-1.0 stream is answered without a version (XEP-0078 clients)
            core.version = false;
        }
        _ => {
            core.send_header(Some(&name), None);
            return core.fail(StreamError::new(Condition::UnsupportedVersion));
        }
    }
    let features = (!c.legacy_stream).then(|| c.features(core, &settings));
    core.send_header(Some(&name), features.as_deref());
    core.phase = Phase::Negotiating;
}

fn element(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let name = el.name();
    if el.has_ns(ns::TLS) && name == "starttls" {
        return starttls(conn);
    }
    if el.has_ns(ns::SASL) {
        return super::c2s_sasl::element(conn, el, ctx);
    }
    if el.has_ns(ns::CLIENT) {
        return match name {
            "iq" => pre_session_iq(conn, el, ctx),
            // RFC 6120 §7: no stanzas before authentication and binding
            "message" | "presence" => conn.core.fail(StreamError::new(Condition::NotAuthorized)),
            _ => conn
                .core
                .fail(StreamError::new(Condition::UnsupportedStanzaType)),
        };
    }
    if matches!(name, "iq" | "message" | "presence") {
        return conn
            .core
            .fail(StreamError::new(Condition::InvalidNamespace));
    }
    conn.core
        .fail(StreamError::new(Condition::UnsupportedStanzaType))
}

fn starttls(conn: &mut Connection) {
    let Some((core, c)) = parts(conn) else { return };
    if core.tls.is_some() || c.auth.is_some() || c.legacy_stream {
        return core.refuse_tls();
    }
    core.start_tls();
}

/// An iq before a resource is bound: what the feature table routes to the stream
/// (legacy authentication, binding); anything else ends the stream.
fn pre_session_iq(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    let settings = core.ctx.settings.get();
    let env = Env::stream(&settings, c.domain_name(), core.tls.is_some());
    let route = features::lookup(&env, Entity::Stream, Who::Owner, &el);
    match route.map(|r| (r, r.handler)) {
        Some((_, IqHandler::Stream(f))) => f(conn, el, ctx),
        Some((r, IqHandler::Pure(_))) => {
            let reply = features::run_pure(r, &env, &el);
            core.send_opt(reply);
        }
        Some((_, IqHandler::Account(_))) | None => {
            let not_offered = features::single_payload(&el)
                .is_some_and(|p| p.is("query", ns::IQ_AUTH) || p.is("query", ns::IQ_REGISTER));
            if not_offered {
                // XEP-0078 §3, XEP-0077 §3.1: a server that does not offer it answers
                // service-unavailable
                let r = stanza::error_reply(&el, ErrorCondition::ServiceUnavailable, None);
                core.send_opt(r);
            } else if c.auth.is_none() {
                core.fail(StreamError::new(Condition::NotAuthorized));
            } else {
                core.fail(StreamError::with_text(
                    Condition::NotAuthorized,
                    "bind a resource first",
                ));
            }
        }
    }
}

/// Resource binding (RFC 6120 §7), registered in the feature table.
pub fn bind_iq(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    if c.auth.is_none() {
        return core.fail(StreamError::new(Condition::NotAuthorized));
    }
    let requested = features::single_payload(&el)
        .and_then(|p| p.get_child("resource", ns::BIND))
        .map(|r| r.text());
    bind(conn, el, requested, false, ctx);
}

pub use super::c2s_legacy::legacy_auth_iq;
pub use super::c2s_register::register_iq;

/// Bind a resource: reserve it in the registry, start the session, answer, hand the
/// stream over.
pub(super) fn bind(
    conn: &mut Connection,
    el: Element,
    requested: Option<String>,
    legacy: bool,
    ctx: &mut Context<Connection>,
) {
    let Some((core, c)) = parts(conn) else { return };
    let Some(auth) = c.auth.clone() else {
        return;
    };
    // an anonymous session has no stored credentials to have authenticated with
    let authenticated_at = if auth.anonymous {
        None
    } else {
        Some(c.auth_at.unwrap_or_else(std::time::Instant::now))
    };
    let Ok(bare) = BareJid::new(&format!("{}@{}", auth.username, c.domain_name())) else {
        let r = stanza::error_reply(&el, ErrorCondition::InternalServerError, None);
        return core.send_opt(r);
    };
    let resource = match requested
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
    {
        None => None,
        Some(r) => match bare.with_resource_str(&r) {
            Ok(full) => Some(full.resource().to_string()),
            Err(_) => {
                let cond = if legacy {
                    ErrorCondition::NotAcceptable
                } else {
                    ErrorCondition::BadRequest
                };
                let r = stanza::error_reply(&el, cond, Some("invalid resource"));
                return core.send_opt(r);
            }
        },
    };
    if legacy && resource.is_none() {
        let r = stanza::error_reply(
            &el,
            ErrorCondition::NotAcceptable,
            Some("a resource is required"),
        );
        return core.send_opt(r);
    }
    let mut session_ctx: Context<Session> = Context::new();
    // full size before the registry knows the address (the session starts later)
    session_ctx.set_mailbox_capacity(crate::session::MAILBOX);
    let addr = session_ctx.address();
    let me = SessionRef::new(addr.clone().recipient());
    core.busy = true;
    core.ctx
        .registry
        .bind
        .send(Bind {
            bare,
            resource,
            exact: legacy,
            session: me.clone(),
        })
        .into_actor(conn)
        .map(move |res, act, ctx| {
            act.core.busy = false;
            if act.core.closing() {
                return;
            }
            let (full, account): (FullJid, _) = match res {
                Ok(Ok((full, account))) => (full, account),
                Ok(Err(e)) => {
                    let cond = match e {
                        BindError::Conflict => ErrorCondition::Conflict,
                        BindError::TooManySessions => ErrorCondition::ResourceConstraint,
                        BindError::Unavailable => ErrorCondition::InternalServerError,
                    };
                    let r = stanza::error_reply(&el, cond, Some(&e.to_string()));
                    act.core.send_opt(r);
                    return act.pump(ctx);
                }
                Err(_) => {
                    let r = stanza::error_reply(&el, ErrorCondition::InternalServerError, None);
                    act.core.send_opt(r);
                    return act.pump(ctx);
                }
            };
            let core = &mut act.core;
            let log = core
                .ctx
                .log
                .new(slog::o!("jid" => full.to_string(), "peer" => core.peer.to_string()));
            let mut session = Session::new(
                full.clone(),
                me,
                account,
                core.ctx.clone(),
                core.out.clone(),
                log,
                Negotiated {
                    tls: core.tls.is_some(),
                    authenticated_at,
                },
            );
            core.conn.set_identity(full.as_str());
            session.conn = Some(core.conn.clone());
            session_ctx.run(session);
            // answer the bind (or legacy auth) before anything the session writes
            let payload = (!legacy).then(|| {
                let mut b = Element::bare("bind", ns::BIND);
                let mut j = Element::bare("jid", ns::BIND);
                j.append_text(full.as_str());
                b.append_child(j);
                b
            });
            let r = stanza::iq_result(&el, payload);
            core.send_el(&r);
            // the session takes the stream over
            core.hand_over(addr.clone().recipient(), addr.recipient());
            act.pump(ctx);
        })
        .wait(ctx);
}

//! The inbound server stream strategy (`jabber:server`, RFC 6120 with XEP-0220
//! dialback): STARTTLS offered, then SASL EXTERNAL when the peer's certificate
//! validates for the domain it claims (RFC 6120 §13.7, XEP-0178), and dialback. A `db:result` from a peer is verified
//! with the authoritative server of its domain through our outbound queue to it
//! (`db:verify`); a `db:verify` for a key we made is answered here. Several domain pairs
//! may be authorised on one stream (at most `s2s.max_domain_pairs`). Every stanza's
//! `from` domain must have been verified on the stream for its `to` domain
//! (`xmppd_proto::s2s::pairs`), else the stream ends with the error RFC 6120 names;
//! accepted stanzas move to `jabber:client` and become signals for the registry, or,
//! on the direct path, go straight to the recipient's session (see [`direct`]).
//! The stream stays with its `Connection` actor: it has no session to hand over to.

use super::Kind;
use super::core::{Connection, Phase, Strategy, StreamCore};
use crate::registry::routes;
use crate::s2s::queue::dialback_key_matches;
use crate::signals::backlog::Backlog;
use crate::signals::to_outbound::{DialbackVerify, Verify};
use crate::signals::to_registry::FromSession;
use crate::signals::to_session::deliver_serialised;
use crate::signals::{Serialised, Signal};
use actix::prelude::*;
use minidom::Element;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use xmppd_proto::ns;
use xmppd_proto::s2s::dialback::{self, Dialback, Verdict};
use xmppd_proto::s2s::namespace;
use xmppd_proto::s2s::pairs::{Pairs, Refusal};
use xmppd_proto::stanza;
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xml::stream_parser::StreamHeader;

pub const STRATEGY: Strategy = Strategy {
    ns: ns::SERVER,
    start,
    header,
    element,
};

/// An inbound server stream's state.
pub struct ServerStream {
    /// Our domain the stream was opened to (`to` of the first header), if any.
    local: Option<String>,
    /// The domain the peer's header claims (`from`), if any.
    remote: Option<String>,
    /// The peer's TLS certificate validates for `remote`: SASL EXTERNAL is offered.
    external: bool,
    /// SASL EXTERNAL succeeded on this connection.
    sasl_done: bool,
    pairs: Pairs,
    /// This stream's signals handed to the registry and not yet routed by it: while
    /// any are, the direct path is not taken, so it cannot overtake them (RFC 6120
    /// §10.1, as for a client's session).
    via_registry: Arc<AtomicUsize>,
    /// Required by [`FromSession`]; an inbound stream is not paused by it (a peer
    /// that floods the registry's mailbox gets its stanzas back instead).
    backlog: Arc<Backlog>,
}

fn start(_: &StreamCore) -> Kind {
    Kind::Server(Box::new(ServerStream {
        local: None,
        remote: None,
        external: false,
        sasl_done: false,
        pairs: Pairs::default(),
        via_registry: Arc::default(),
        backlog: Arc::default(),
    }))
}

fn parts(conn: &mut Connection) -> Option<(&mut StreamCore, &mut ServerStream)> {
    let Connection { core, kind, .. } = conn;
    match kind {
        Kind::Server(s) => Some((core, s)),
        _ => None,
    }
}

/// A domain of ours for other servers: hosted, our room service, or a component.
fn hosted(core: &StreamCore, domain: &str) -> bool {
    core.settings.served_here(&domain.to_ascii_lowercase())
}

fn header(conn: &mut Connection, h: StreamHeader, _: &mut Context<Connection>) {
    let Some((core, s)) = parts(conn) else { return };
    if !core.settings.s2s.enabled {
        return core.fail(StreamError::with_text(
            Condition::InvalidNamespace,
            "server-to-server streams are not enabled on this server",
        ));
    }
    // RFC 6120 §4.7.2: a server stream names its receiving domain; old dialback-only
    // peers may leave it out (XEP-0220 §2.1: the domain comes with each db:result).
    let to = h.to.as_deref().map(|t| t.to_ascii_lowercase());
    if let Some(t) = &to {
        if !hosted(core, t) {
            return core.fail(StreamError::new(Condition::HostUnknown));
        }
        s.local = Some(t.clone());
    }
    if let Some(f) = h.from.as_deref()
        && hosted(core, f)
    {
        // a peer claiming one of our own domains
        return core.fail(StreamError::new(Condition::InvalidFrom));
    }
    s.remote = h.from.as_deref().map(|f| f.to_ascii_lowercase());
    let mut features = String::from("<stream:features>");
    if core.tls.is_none() {
        features.push_str(&format!("<starttls xmlns='{}'/>", ns::TLS));
    }
    // RFC 6120 §13.7, XEP-0178: a certificate that validates for the claimed domain
    s.external = !s.sasl_done
        && s.local.is_some()
        && match (
            core.tls.as_ref().and_then(|t| t.peer_chain.as_ref()),
            &s.remote,
        ) {
            (Some(chain), Some(remote)) => {
                let roots = crate::s2s::tls::roots(&core.settings.s2s.trusted_certificates);
                crate::s2s::tls::check_chain(roots, chain, &[remote])
                    == crate::s2s::tls::CertCheck::Valid
            }
            _ => false,
        };
    if s.external {
        features.push_str(&format!(
            "<mechanisms xmlns='{}'><mechanism>EXTERNAL</mechanism></mechanisms>",
            ns::SASL
        ));
    }
    features.push_str(&format!(
        "<dialback xmlns='{}'><errors/></dialback></stream:features>",
        ns::DIALBACK_FEATURE
    ));
    let from = s.local.clone();
    // the dialback prefix is declared on our header too (XEP-0220 §2.1): peers take it
    // as the sign that we speak dialback
    core.header_ns = " xmlns:db='jabber:server:dialback'";
    let ver = h.version.is_some();
    core.version = ver;
    core.send_header(from.as_deref(), ver.then_some(features.as_str()));
    core.phase = Phase::Negotiating;
}

fn element(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    if el.is("starttls", ns::TLS) {
        let Some((core, s)) = parts(conn) else { return };
        if core.tls.is_some() || !s.pairs.is_empty() {
            return core.refuse_tls();
        }
        return core.start_tls();
    }
    if el.has_ns(ns::DIALBACK) {
        return dialback(conn, el, ctx);
    }
    if el.is("auth", ns::SASL) {
        return sasl_external(conn, el);
    }
    if el.has_ns(ns::SERVER) && matches!(el.name(), "message" | "presence" | "iq") {
        return stanza_in(conn, el);
    }
    let Some((core, s)) = parts(conn) else { return };
    if s.pairs.is_empty() {
        return core.fail(StreamError::new(Condition::NotAuthorized));
    }
    if matches!(el.name(), "message" | "presence" | "iq") {
        return core.fail(StreamError::new(Condition::InvalidNamespace));
    }
    core.fail(StreamError::new(Condition::UnsupportedStanzaType))
}

/// `<auth mechanism='EXTERNAL'>` (RFC 6120 §6.4, XEP-0178 §3): the authorization
/// identity, if any, must be the domain the certificate was checked for.
fn sasl_external(conn: &mut Connection, el: Element) {
    let Some((core, s)) = parts(conn) else { return };
    let failure = |core: &mut StreamCore, cond: &str| {
        core.send(&format!(
            "<failure xmlns='{}'><{cond}/></failure>",
            ns::SASL
        ))
    };
    if el.attr("mechanism") != Some("EXTERNAL") || !s.external {
        return failure(core, "invalid-mechanism");
    }
    let (Some(remote), Some(local)) = (s.remote.clone(), s.local.clone()) else {
        return failure(core, "not-authorized");
    };
    let text = el.text();
    let text = text.trim();
    let authzid = if text.is_empty() || text == "=" {
        Some(remote.clone())
    } else {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(|a| a.to_ascii_lowercase())
    };
    match authzid {
        Some(a) if a == remote => {}
        Some(_) => return failure(core, "invalid-authzid"),
        None => return failure(core, "incorrect-encoding"),
    }
    slog::info!(core.log, # "XMPPI", "inbound stream authenticated (SASL EXTERNAL)"; "remote" => &remote, "local" => &local);
    core.send(&format!("<success xmlns='{}'/>", ns::SASL));
    s.pairs.grant(&remote, &local);
    s.sasl_done = true;
    s.external = false;
    core.authenticated();
    core.established = true;
    core.restart();
}

fn dialback(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let Some((core, s)) = parts(conn) else { return };
    let db = match Dialback::parse(&el) {
        Ok(d) => d,
        Err(_) => return core.fail(StreamError::new(Condition::ImproperAddressing)),
    };
    match db {
        Dialback::ResultRequest { from, to, key } => {
            if !hosted(core, &to) {
                // XEP-0220 §2.4: the domain is not served here
                core.send(&dialback::result_error(&to, &from, "item-not-found"));
                return;
            }
            if hosted(core, &from) {
                return core.fail(StreamError::new(Condition::InvalidFrom));
            }
            match s
                .pairs
                .begin(&from, &to, core.settings.s2s.max_domain_pairs)
            {
                Ok(()) => {}
                Err(Refusal::TooMany) => {
                    return core.fail(StreamError::with_text(
                        Condition::PolicyViolation,
                        "too many domain pairs on this stream",
                    ));
                }
                Err(Refusal::Duplicate) => return,
                Err(Refusal::Busy) => {
                    core.send(&dialback::result_error(&to, &from, "resource-constraint"));
                    return;
                }
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let asked = core.ctx.registry.dialback_verify.send(DialbackVerify {
                remote: from.clone(),
                local: to.clone(),
                verify: Verify {
                    id: core.stream_id.clone(),
                    key,
                    reply: tx,
                },
            });
            // bounded: an authoritative server that never answers is out of reach
            let wait = Duration::from_secs(core.settings.s2s.verify_timeout.max(1));
            let fut = async move {
                if let Ok(false) = asked.await {
                    // no outbound queue may be started for the authoritative server
                    return Verdict::Busy;
                }
                match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(v)) => v,
                    // the queue ended without an answer, or none came in time
                    Ok(Err(_)) | Err(_) => Verdict::Unreachable,
                }
            };
            ctx.spawn(fut.into_actor(conn).map(move |verdict, conn, _| {
                let Some((core, s)) = parts(conn) else { return };
                if core.closing() {
                    return;
                }
                let valid = verdict == Verdict::Valid;
                s.pairs.finish(&from, &to, valid);
                core.send(&dialback::verdict_answer(&to, &from, verdict));
                match verdict {
                    Verdict::Valid => {
                        slog::info!(core.log, # "XMPPI", "inbound stream authenticated (dialback)"; "remote" => &from, "local" => &to);
                        core.authenticated();
                        core.established = true;
                    }
                    Verdict::Invalid => {
                        slog::warn!(core.log, # "XMPPI", "dialback refused"; "remote" => &from, "local" => &to);
                        core.fail(StreamError::with_text(
                            Condition::NotAuthorized,
                            "dialback key not verified",
                        ));
                    }
                    // a dialback error (XEP-0220 §2.4): the pair is not authorised,
                    // the stream stays for the others
                    Verdict::Unreachable => {
                        slog::info!(core.log, # "XMPPI", "dialback not verified: the authoritative server is out of reach"; "remote" => &from, "local" => &to);
                    }
                    Verdict::Busy => {}
                    Verdict::NotServed => {
                        slog::info!(core.log, # "XMPPI", "dialback not verified: not a domain pair served here"; "remote" => &from, "local" => &to);
                    }
                }
            }));
        }
        Dialback::VerifyRequest { from, to, id, key } => {
            if !hosted(core, &to) {
                // XEP-0220 §2.2.2, §2.4: an error for this key, the stream stays
                core.send(&dialback::verify_error(&to, &from, &id, "item-not-found"));
                return;
            }
            // we made the key for (receiving = from, originating = to, id)
            let valid = dialback_key_matches(&core.ctx, &from, &to, &id, &key);
            core.send(&dialback::verify_answer(&to, &from, &id, valid));
        }
        // answers belong on our outgoing streams, not here
        Dialback::ResultAnswer { .. } | Dialback::VerifyAnswer { .. } => {
            core.fail(StreamError::new(Condition::UnsupportedStanzaType))
        }
    }
}

fn stanza_in(conn: &mut Connection, el: Element) {
    let Some((core, s)) = parts(conn) else { return };
    let (from, to) = match (stanza::jid_attr(&el, "from"), stanza::jid_attr(&el, "to")) {
        (Ok(Some(f)), Ok(Some(t))) => (f, t),
        (Ok(None), _) | (_, Ok(None)) => {
            return core.fail(StreamError::new(Condition::ImproperAddressing));
        }
        _ => return core.fail(StreamError::new(Condition::InvalidFrom)),
    };
    if let Err(c) = s
        .pairs
        .check(from.domain().as_str(), to.domain().as_str(), |d| {
            core.settings.served_here(d)
        })
    {
        return core.fail(StreamError::new(c));
    }
    let el = namespace::rename(&el, ns::SERVER, ns::CLIENT);
    let Some(sig) = Signal::new(from, to, el) else {
        return;
    };
    core.ctx.stats.stanzas_in.fetch_add(1, Ordering::Relaxed);
    // while the registry still holds something of this stream's, the direct path
    // could overtake it: everything goes the registry's way until it has caught up
    let sig = if s.via_registry.load(Ordering::Acquire) == 0 {
        match direct(core, sig) {
            Some(sig) => sig,
            None => return,
        }
    } else {
        sig
    };
    s.via_registry.fetch_add(1, Ordering::Relaxed);
    let m = FromSession {
        sig,
        pending: s.via_registry.clone(),
        backlog: s.backlog.clone(),
    };
    // the registry's mailbox is bounded for streams (as for client sessions); a
    // peer that floods it gets its stanzas back rather than growing it
    if let Err(SendError::Full(m)) | Err(SendError::Closed(m)) =
        core.ctx.registry.from_session.try_send(m)
    {
        s.via_registry.fetch_sub(1, Ordering::Relaxed);
        if let Some(err) = m.sig.bounce(
            stanza::ErrorCondition::ResourceConstraint,
            Some("the server is overloaded"),
        ) {
            core.ctx.registry.route(err);
        }
    }
}

/// The direct path for a message from a peer server: when this arbiter's replica of
/// the routing table knows the session of its recipient's full JID, the message
/// (type chat, normal or headline, or none) goes straight to that session, serialised
/// here; the registry would deliver it to that same session. Anything else (another
/// type, another kind of stanza, a bare JID, an unknown or just-ended session) is given
/// back for the registry to decide. A full recipient's mailbox bounces the message with
/// `resource-constraint`, as the registry does.
fn direct(core: &StreamCore, sig: Signal) -> Option<Signal> {
    let addr = match (&sig, sig.stanza_type()) {
        (Signal::Message(m), None | Some("chat") | Some("normal") | Some("headline")) => {
            m.to.try_as_full()
                .ok()
                .and_then(|full| routes::with_replica(|t| t.lookup(full)))
        }
        _ => None,
    };
    let (addr, m) = match (addr, sig) {
        (Some(addr), Signal::Message(m)) => (addr, m),
        (_, sig) => return Some(sig),
    };
    deliver_serialised(&addr, Serialised::new(m), &core.ctx.registry, &core.log)
}

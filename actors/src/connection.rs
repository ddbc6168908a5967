//! The connection actor: one per TCP connection. It runs stream negotiation (header,
//! features, STARTTLS, SASL, legacy auth, resource binding) and then hands the stream's
//! stanzas to the account's [`Session`].

use crate::context::{Ctx, Gauge};
use crate::net::io::{self, FromIo, Inbound, IoParams, Outbox};
use crate::registry::{Bind, BindError};
use crate::session::{self, Session};
use actix::prelude::*;
use base64::Engine;
use minidom::Element;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmppd_proto::auth::legacy;
use xmppd_proto::auth::sasl::{
    self, Authenticated, Claim, Exchange, Failure, Mech, OfferContext, Step, scram_client_final_ok,
    scram_client_first_ok,
};
use xmppd_proto::auth::throttle::{self, AuthThrottle};
use xmppd_proto::config::{DomainSettings, Settings};
use xmppd_proto::net::tls::ChannelBinding;
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition};
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xml::escape::escape_attr;
use xmppd_proto::xml::stream_parser::{Limits, StreamHeader};

/// Elements queued while an asynchronous step (storage, binding) is in flight.
const MAX_BACKLOG: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the (next) stream header.
    Header,
    /// Stream open, negotiating.
    Negotiating,
    /// STARTTLS proceed sent; waiting for the handshake.
    Tls,
    /// Bound: stanzas belong to the session.
    Bound,
    Closing,
}

struct SaslRun {
    mech: Mech,
    exchange: Exchange,
    /// Client messages fed so far.
    steps: u32,
}

pub struct Connection {
    ctx: Ctx,
    settings: Arc<Settings>,
    out: Outbox,
    peer: SocketAddr,
    log: slog::Logger,
    phase: Phase,
    stream_id: String,
    domain: Option<DomainSettings>,
    /// Pre-1.0 stream (no features): only legacy authentication.
    legacy_stream: bool,
    tls: Option<ChannelBinding>,
    auth: Option<Authenticated>,
    sasl: Option<SaslRun>,
    /// `<auth/>` came without an initial response; the mechanism waits for it.
    sasl_pending: Option<Mech>,
    /// `user@domain` the running exchange claims (for the failure throttle).
    sasl_account: Option<String>,
    failures: u32,
    /// Our stream header went out (stream errors need one first).
    header_sent: bool,
    session: Option<Addr<Session>>,
    backlog: VecDeque<Element>,
    /// An asynchronous step is running; elements wait in the backlog.
    busy: bool,
    _gauge: Gauge,
}

/// How a new connection arrived.
pub struct Accepted {
    pub tcp: tokio::net::TcpStream,
    pub peer: SocketAddr,
    pub direct_tls: bool,
    /// Counts the connection against the `channels` cap while it lives.
    pub channel: Gauge,
}

impl Connection {
    /// Start the actor and its I/O task on the current arbiter.
    pub fn start(ctx: Ctx, acc: Accepted) -> Addr<Connection> {
        let settings = ctx.settings.get();
        let log = ctx.log.new(slog::o!("peer" => acc.peer.to_string()));
        Connection::create(move |actx| {
            let me = actx.address();
            let params = IoParams {
                tcp: acc.tcp,
                direct_tls: acc.direct_tls,
                tls: ctx.tls.clone(),
                limits: Limits {
                    max_stanza: settings.limits.max_stanza_size,
                    max_depth: settings.limits.max_depth,
                    ..Limits::default()
                },
                tls_timeout: Duration::from_secs(settings.limits.tls_timeout),
                write_limit: settings.limits.write_buffer,
                read_rate: settings.limits.read_rate,
                read_burst: settings.limits.read_burst,
                gauges: (Gauge::new(&ctx.stats, |s| &s.io_tasks), acc.channel),
            };
            let out = io::spawn(params, me.clone().recipient(), me.recipient(), log.clone());
            let actor_gauge = Gauge::new(&ctx.stats, |s| &s.connection_actors);
            slog::debug!(log, # "XMPPI", "connection accepted"; "direct_tls" => acc.direct_tls);
            Connection {
                settings,
                out,
                peer: acc.peer,
                log,
                phase: Phase::Header,
                stream_id: String::new(),
                domain: None,
                legacy_stream: false,
                tls: None,
                auth: None,
                sasl: None,
                sasl_pending: None,
                sasl_account: None,
                failures: 0,
                header_sent: false,
                session: None,
                backlog: VecDeque::new(),
                busy: false,
                _gauge: actor_gauge,
                ctx,
            }
        })
    }

    // ------------------------------------------------------------------ output --

    fn send(&mut self, s: &str) {
        let _ = self.out.send_str(s);
    }

    fn send_header(&mut self, from: Option<&str>, features: bool) {
        let mut h = self.header_xml(from);
        if features {
            h.push_str(&self.features());
        }
        self.header_sent = true;
        self.send(&h);
    }

    fn send_el(&mut self, el: &Element) {
        let _ = self.out.send_element(el);
    }

    /// Send a stream error and close. Before any header of ours went out, a header is
    /// sent first (RFC 6120 §4.9.1.2).
    fn fail(&mut self, err: StreamError) {
        if self.phase == Phase::Closing {
            return;
        }
        slog::info!(self.log, # "XMPPI", "stream error"; "error" => %err);
        if !self.header_sent {
            let h = self.header_xml(None);
            self.send(&h);
        }
        self.send(&err.to_xml());
        self.out.close();
        self.phase = Phase::Closing;
        self.backlog.clear();
    }

    fn header_xml(&self, from: Option<&str>) -> String {
        let from = from
            .map(|f| format!(" from='{}'", escape_attr(f)))
            .unwrap_or_default();
        let id = if self.stream_id.is_empty() {
            String::new()
        } else {
            format!(" id='{}'", self.stream_id)
        };
        // a pre-1.0 stream is answered without a version (XEP-0078 clients)
        let version = if self.legacy_stream {
            ""
        } else {
            " version='1.0'"
        };
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}'{from}{id}{version} xml:lang='en'>",
            ns::CLIENT,
            ns::STREAM
        )
    }

    fn sasl_failure(&mut self, f: Failure, ctx: &mut Context<Self>) {
        self.sasl = None;
        self.failures += 1;
        self.ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        slog::warn!(self.log, # "XMPPI", "authentication failed"; "condition" => f.as_str(), "attempt" => self.failures);
        self.send(&format!(
            "<failure xmlns='{}'><{}/></failure>",
            ns::SASL,
            f.as_str()
        ));
        self.check_failures(ctx);
    }

    /// RFC 6120 §6.4.5: after too many retries the stream ends with not-authorized.
    fn check_failures(&mut self, _: &mut Context<Self>) {
        if self.failures >= self.settings.auth.max_failures.max(1) {
            self.fail(StreamError::with_text(
                Condition::NotAuthorized,
                "too many failed authentication attempts",
            ));
        }
    }

    fn throttle_policy(&self) -> throttle::Policy {
        throttle::Policy::from(&self.settings.limits)
    }

    /// Refuse an attempt early when this address or account failed too often lately.
    fn throttled(&self, account: Option<&str>) -> bool {
        let p = self.throttle_policy();
        match AuthThrottle::global().check(&p, self.peer.ip(), account, std::time::Instant::now()) {
            Ok(()) => false,
            Err(why) => {
                slog::warn!(self.log, # "XMPPI", "authentication refused"; "reason" => %why, "account" => account.unwrap_or(""));
                true
            }
        }
    }

    /// A wrong password or proof: count it for the address and the account.
    fn note_auth_failure(&self, account: Option<&str>) {
        let p = self.throttle_policy();
        AuthThrottle::global().failed(&p, self.peer.ip(), account, std::time::Instant::now());
    }

    // -------------------------------------------------------------- negotiation --

    fn domain_name(&self) -> &str {
        self.domain.as_ref().map(|d| d.name.as_str()).unwrap_or("")
    }

    fn offer(&self) -> OfferContext {
        let d = self.domain.as_ref();
        OfferContext {
            tls: self.tls.is_some(),
            channel_binding: self.tls.as_ref().is_some_and(|cb| !cb.types().is_empty()),
            plain_without_tls: d.is_some_and(|d| d.plain_without_tls),
            anonymous: d.is_some_and(|d| d.anonymous),
        }
    }

    /// Authentication may happen on this stream (TLS done, or not required).
    fn auth_allowed(&self) -> bool {
        self.tls.is_some() || self.domain.as_ref().is_some_and(|d| !d.require_tls)
    }

    fn features(&self) -> String {
        let mut f = String::from("<stream:features>");
        if self.auth.is_none() {
            if self.tls.is_none() {
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
            if self.auth_allowed() {
                f.push_str(&format!("<mechanisms xmlns='{}'>", ns::SASL));
                for m in sasl::offered(self.offer()) {
                    f.push_str(&format!("<mechanism>{}</mechanism>", m.name()));
                }
                f.push_str("</mechanisms>");
                if let Some(cb) = &self.tls {
                    let types = cb.types();
                    if !types.is_empty() {
                        f.push_str(&format!("<sasl-channel-binding xmlns='{}'>", ns::SASL_CB));
                        for t in types {
                            f.push_str(&format!("<channel-binding type='{t}'/>"));
                        }
                        f.push_str("</sasl-channel-binding>");
                    }
                }
                if self.settings.auth.legacy_auth {
                    f.push_str(&format!("<auth xmlns='{}'/>", ns::IQ_AUTH_FEATURE));
                }
            }
        } else {
            f.push_str(&format!("<bind xmlns='{}'/>", ns::BIND));
            // RFC 6121: roster versioning and subscription pre-approval
            f.push_str("<ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/>");
            f.push_str(&format!(
                "<session xmlns='{}'><optional/></session>",
                ns::SESSION
            ));
        }
        f.push_str("</stream:features>");
        f
    }

    fn on_header(&mut self, h: StreamHeader) {
        if self.phase != Phase::Header {
            return self.fail(StreamError::with_text(
                Condition::NotWellFormed,
                "unexpected stream header",
            ));
        }
        let first = self.domain.is_none();
        self.stream_id = format!("{:016x}", rand::random::<u64>());
        self.header_sent = false;
        match h.default_ns.as_deref() {
            Some(ns::CLIENT) => {}
            Some(ns::SERVER) => {
                return self.fail(StreamError::with_text(
                    Condition::InvalidNamespace,
                    "server-to-server streams are not enabled on this server",
                ));
            }
            Some(ns::COMPONENT) => {
                return self.fail(StreamError::with_text(
                    Condition::InvalidNamespace,
                    "component streams are not enabled on this server",
                ));
            }
            _ => return self.fail(StreamError::new(Condition::InvalidNamespace)),
        }
        // RFC 6120 §4.7.2: without 'to' the server may pick its default domain.
        let requested = h.to.as_deref().map(|t| t.to_ascii_lowercase());
        let domain = match requested.as_deref() {
            Some(t) => self.settings.domain(t).cloned(),
            None => self.settings.domains.first().cloned(),
        };
        let Some(domain) = domain else {
            return self.fail(StreamError::new(Condition::HostUnknown));
        };
        if !first && self.domain.as_ref().is_some_and(|d| d.name != domain.name) {
            return self.fail(StreamError::new(Condition::HostUnknown));
        }
        self.domain = Some(domain);
        let name = self.domain_name().to_string();
        // Version: 1.x speaks RFC 6120; none at all is a pre-1.0 client (legacy auth only).
        let major = h.version.as_deref().map(|v| {
            v.split('.')
                .next()
                .and_then(|m| m.trim().parse::<u32>().ok())
        });
        match major {
            Some(Some(1)) => {}
            None if self.settings.auth.legacy_auth && self.auth_allowed() => {
                self.legacy_stream = true
            }
            _ => {
                self.send_header(Some(&name), false);
                return self.fail(StreamError::new(Condition::UnsupportedVersion));
            }
        }
        self.send_header(Some(&name), !self.legacy_stream);
        self.phase = Phase::Negotiating;
    }

    /// Process backlog elements until one needs an asynchronous step.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while !self.busy {
            let Some(el) = self.backlog.pop_front() else {
                break;
            };
            match self.phase {
                Phase::Bound => {
                    let rest: Vec<Element> =
                        std::iter::once(el).chain(self.backlog.drain(..)).collect();
                    if let Some(s) = &self.session {
                        s.do_send(Inbound(rest));
                    }
                }
                Phase::Negotiating => self.negotiate(el, ctx),
                Phase::Header | Phase::Tls => {
                    self.fail(StreamError::with_text(
                        Condition::NotWellFormed,
                        "element outside a stream",
                    ));
                }
                Phase::Closing => self.backlog.clear(),
            }
        }
    }

    fn negotiate(&mut self, el: Element, ctx: &mut Context<Self>) {
        let name = el.name();
        if el.has_ns(ns::TLS) && name == "starttls" {
            return self.starttls(ctx);
        }
        if el.has_ns(ns::SASL) {
            return match name {
                "auth" => self.sasl_auth(el, ctx),
                "response" => self.sasl_response(&el, ctx),
                "abort" => {
                    if self.sasl.is_some() {
                        self.sasl_failure(Failure::Aborted, ctx)
                    } else {
                        self.fail(StreamError::new(Condition::PolicyViolation))
                    }
                }
                _ => self.fail(StreamError::new(Condition::UnsupportedStanzaType)),
            };
        }
        if el.has_ns(ns::STREAM) && name == "error" {
            slog::info!(self.log, # "XMPPI", "peer sent a stream error"; "error" => xmppd_proto::xml::writer::to_string(&el));
            self.phase = Phase::Closing;
            return self.out.close();
        }
        if el.has_ns(ns::CLIENT) {
            return match name {
                "iq" => self.pre_session_iq(el, ctx),
                // RFC 6120 §6.4.? / §7: no stanzas before authentication and binding
                "message" | "presence" => self.fail(StreamError::new(Condition::NotAuthorized)),
                _ => self.fail(StreamError::new(Condition::UnsupportedStanzaType)),
            };
        }
        if matches!(name, "iq" | "message" | "presence") {
            return self.fail(StreamError::new(Condition::InvalidNamespace));
        }
        self.fail(StreamError::new(Condition::UnsupportedStanzaType))
    }

    fn starttls(&mut self, _: &mut Context<Self>) {
        if self.tls.is_some() || self.auth.is_some() || self.legacy_stream {
            self.send(&format!("<failure xmlns='{}'/></stream:stream>", ns::TLS));
            self.phase = Phase::Closing;
            return self.out.close();
        }
        if !self.backlog.is_empty() {
            // Plaintext pipelined behind <starttls/> must never be taken as sent over TLS.
            return self.fail(StreamError::with_text(
                Condition::PolicyViolation,
                "data after starttls",
            ));
        }
        self.send(&format!("<proceed xmlns='{}'/>", ns::TLS));
        self.out.start_tls();
        self.phase = Phase::Tls;
    }

    fn sasl_auth(&mut self, el: Element, ctx: &mut Context<Self>) {
        if self.auth.is_some() {
            return self.fail(StreamError::with_text(
                Condition::PolicyViolation,
                "already authenticated",
            ));
        }
        if !self.auth_allowed() {
            self.send(&format!(
                "<failure xmlns='{}'><encryption-required/></failure>",
                ns::SASL
            ));
            return;
        }
        if self.sasl.is_some() {
            // a new <auth/> aborts the exchange in progress
            self.sasl = None;
        }
        let offered = sasl::offered(self.offer());
        let Some(mech) = el
            .attr("mechanism")
            .and_then(Mech::parse)
            .filter(|m| offered.contains(m))
        else {
            return self.sasl_failure(Failure::InvalidMechanism, ctx);
        };
        let text = el.text();
        let initial = match decode_sasl(&text) {
            Ok(Some(d)) => d,
            Ok(None) if mech == Mech::Anonymous => Vec::new(),
            // no initial response: ask for it with an empty challenge
            Ok(None) => {
                self.send(&format!("<challenge xmlns='{}'/>", ns::SASL));
                self.sasl_pending = Some(mech);
                return;
            }
            Err(f) => return self.sasl_failure(f, ctx),
        };
        self.sasl_begin(mech, initial, ctx);
    }

    /// Look up the claimed identity, then run the first step.
    fn sasl_begin(&mut self, mech: Mech, initial: Vec<u8>, ctx: &mut Context<Self>) {
        if is_scram(mech) && !scram_client_first_ok(&initial) {
            return self.sasl_failure(Failure::MalformedRequest, ctx);
        }
        let claim = match sasl::claim(mech, &initial) {
            Ok(c) => c,
            Err(f) => return self.sasl_failure(f, ctx),
        };
        let domain = self.domain_name().to_string();
        let user = match &claim {
            Claim::User(u) => Some(nodeprep(u)),
            Claim::Anonymous => None,
        };
        self.sasl_account = user.clone().flatten().map(|u| format!("{u}@{domain}"));
        if self.throttled(self.sasl_account.clone().as_deref()) {
            return self.sasl_failure(Failure::TemporaryAuthFailure, ctx);
        }
        self.busy = true;
        let storage = self.ctx.storage.clone();
        let lookup = async move {
            match user {
                Some(Some(u)) => storage.run(move |b| b.credentials(&domain, &u)).await,
                _ => Ok(None),
            }
        };
        lookup
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.busy = false;
                if act.phase == Phase::Closing {
                    return;
                }
                let creds = match res {
                    Ok(c) => c,
                    Err(e) => {
                        slog::error!(act.log, "credential lookup failed"; "error" => %e);
                        act.sasl_failure(Failure::TemporaryAuthFailure, ctx);
                        return act.pump(ctx);
                    }
                };
                let cb = act
                    .tls
                    .clone()
                    .filter(|_| mech.is_plus())
                    .unwrap_or_default();
                let domain = act.domain_name().to_string();
                let iterations = act.settings.auth.scram_iterations;
                let decoy = &act.ctx.decoy;
                let started = guarded(|| {
                    Exchange::start(mech, &claim, &domain, creds, cb, decoy, iterations)
                });
                match started.unwrap_or(Err(Failure::MalformedRequest)) {
                    Ok(exchange) => {
                        act.sasl = Some(SaslRun {
                            mech,
                            exchange,
                            steps: 0,
                        });
                        act.sasl_step(&initial, ctx);
                    }
                    Err(f) => act.sasl_failure(f, ctx),
                }
                act.pump(ctx);
            })
            .wait(ctx);
    }

    fn sasl_response(&mut self, el: &Element, ctx: &mut Context<Self>) {
        let data = match decode_sasl(&el.text()) {
            Ok(d) => d.unwrap_or_default(),
            Err(f) => return self.sasl_failure(f, ctx),
        };
        if let Some(mech) = self.sasl_pending.take() {
            return self.sasl_begin(mech, data, ctx);
        }
        if self.sasl.is_none() {
            return self.fail(StreamError::with_text(
                Condition::PolicyViolation,
                "no authentication in progress",
            ));
        }
        self.sasl_step(&data, ctx);
    }

    fn sasl_step(&mut self, data: &[u8], ctx: &mut Context<Self>) {
        let Some(run) = self.sasl.as_mut() else {
            return;
        };
        let run_mech = run.mech;
        run.steps += 1;
        if is_scram(run_mech) && run.steps == 2 && !scram_client_final_ok(data) {
            return self.sasl_failure(Failure::MalformedRequest, ctx);
        }
        let step = match guarded(|| run.exchange.step(data)) {
            Some(s) => s,
            None => {
                slog::error!(self.log, # "XMPPI", "the SASL library panicked on client data"; "mechanism" => run_mech.name());
                Step::Failure(Failure::MalformedRequest)
            }
        };
        match step {
            Step::Challenge(c) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(c);
                self.send(&format!(
                    "<challenge xmlns='{}'>{b64}</challenge>",
                    ns::SASL
                ));
            }
            Step::Success(who, extra) => {
                self.sasl = None;
                let body = match extra {
                    Some(d) if !d.is_empty() => base64::engine::general_purpose::STANDARD.encode(d),
                    Some(_) => "=".into(),
                    None => String::new(),
                };
                slog::debug!(self.log, # "XMPPI", "authenticated"; "user" => &who.username, "domain" => self.domain_name(), "mechanism" => run_mech.name());
                if let Some(a) = self.sasl_account.take() {
                    AuthThrottle::global().succeeded(&a);
                }
                self.send(&format!("<success xmlns='{}'>{body}</success>", ns::SASL));
                self.auth = Some(who);
                self.out.reset_parser();
                self.phase = Phase::Header;
            }
            Step::Failure(f) => {
                if f == Failure::NotAuthorized {
                    let account = self.sasl_account.take();
                    self.note_auth_failure(account.as_deref());
                }
                self.sasl_failure(f, ctx)
            }
        }
    }

    fn pre_session_iq(&mut self, el: Element, ctx: &mut Context<Self>) {
        let payload = crate::server_iq::single_payload(&el);
        let ty = el.attr("type");
        if let Some(p) = payload.filter(|p| p.is("query", ns::IQ_AUTH)) {
            if self.auth.is_some() || !self.settings.auth.legacy_auth {
                let r = stanza::error_reply(&el, ErrorCondition::ServiceUnavailable, None);
                return self.send_opt(r);
            }
            if !self.auth_allowed() {
                let r = stanza::error_reply(
                    &el,
                    ErrorCondition::PolicyViolation,
                    Some("TLS is required before authentication"),
                );
                return self.send_opt(r);
            }
            let plain =
                self.settings.auth.password_format == xmppd_proto::config::PasswordFormat::Plain;
            return match ty {
                Some("get") => {
                    let r = stanza::iq_result(&el, Some(legacy::fields(p, plain)));
                    self.send_el(&r);
                }
                Some("set") => self.legacy_auth(el, ctx),
                _ => {
                    let r = stanza::error_reply(&el, ErrorCondition::BadRequest, None);
                    self.send_opt(r)
                }
            };
        }
        if self.auth.is_none() {
            return self.fail(StreamError::new(Condition::NotAuthorized));
        }
        match payload {
            Some(p) if p.is("bind", ns::BIND) && ty == Some("set") => {
                let requested = p.get_child("resource", ns::BIND).map(|r| r.text());
                self.bind(el, requested, false, ctx);
            }
            _ => self.fail(StreamError::with_text(
                Condition::NotAuthorized,
                "bind a resource first",
            )),
        }
    }

    fn send_opt(&mut self, el: Option<Element>) {
        if let Some(el) = el {
            self.send_el(&el);
        }
    }

    fn legacy_auth(&mut self, el: Element, ctx: &mut Context<Self>) {
        let req = match legacy::parse(&el) {
            Ok(r) => r,
            Err(cond) => {
                let r = stanza::error_reply(&el, cond, None);
                return self.send_opt(r);
            }
        };
        let Some(user) = nodeprep(&req.username) else {
            let r = stanza::error_reply(&el, ErrorCondition::NotAuthorized, None);
            return self.send_opt(r);
        };
        let domain = self.domain_name().to_string();
        let account = format!("{user}@{domain}");
        if self.throttled(Some(&account)) {
            let r = stanza::error_reply(
                &el,
                ErrorCondition::ResourceConstraint,
                Some("too many failed authentications: try again later"),
            );
            self.send_opt(r);
            self.failures += 1;
            return self.check_failures(ctx);
        }
        let storage = self.ctx.storage.clone();
        self.busy = true;
        let u = user.clone();
        async move { storage.run(move |b| b.credentials(&domain, &u)).await }
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.busy = false;
                if act.phase == Phase::Closing {
                    return;
                }
                let ok = match &res {
                    Ok(Some(creds)) => legacy::verify(&req, creds, &act.stream_id),
                    Ok(None) => {
                        // same work as for a real account, so timing does not tell
                        let decoy = xmppd_proto::auth::scram::Credentials::derive_with_salt("", &[0; 16], act.settings.auth.scram_iterations, false);
                        let _ = legacy::verify(&req, &decoy, &act.stream_id);
                        false
                    }
                    Err(e) => {
                        slog::error!(act.log, "credential lookup failed"; "error" => %e);
                        let r = stanza::error_reply(&el, ErrorCondition::InternalServerError, None);
                        act.send_opt(r);
                        return act.pump(ctx);
                    }
                };
                if !ok {
                    act.note_auth_failure(Some(&account));
                    act.failures += 1;
                    act.ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                    slog::warn!(act.log, # "XMPPI", "legacy authentication failed"; "user" => &user);
                    let r = stanza::error_reply(&el, ErrorCondition::NotAuthorized, None);
                    act.send_opt(r);
                    act.check_failures(ctx);
                    return act.pump(ctx);
                }
                slog::debug!(act.log, # "XMPPI", "authenticated (legacy)"; "user" => &user);
                AuthThrottle::global().succeeded(&account);
                act.auth = Some(Authenticated { username: user, anonymous: false });
                act.bind(el, Some(req.resource.clone()), true, ctx);
                act.pump(ctx);
            })
            .wait(ctx);
    }

    /// Bind a resource: reserve it in the registry, start the session, answer.
    fn bind(
        &mut self,
        el: Element,
        requested: Option<String>,
        legacy: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(auth) = self.auth.clone() else {
            return;
        };
        let Ok(bare) = BareJid::new(&format!("{}@{}", auth.username, self.domain_name())) else {
            let r = stanza::error_reply(&el, ErrorCondition::InternalServerError, None);
            return self.send_opt(r);
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
                    return self.send_opt(r);
                }
            },
        };
        if legacy && resource.is_none() {
            let r = stanza::error_reply(
                &el,
                ErrorCondition::NotAcceptable,
                Some("a resource is required"),
            );
            return self.send_opt(r);
        }
        let session_ctx: Context<Session> = Context::new();
        let addr = session_ctx.address();
        self.busy = true;
        self.ctx
            .registry
            .send(Bind {
                bare,
                resource,
                exact: legacy,
                session: addr.clone(),
            })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.busy = false;
                if act.phase == Phase::Closing {
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
                        act.send_opt(r);
                        return act.pump(ctx);
                    }
                    Err(_) => {
                        let r = stanza::error_reply(&el, ErrorCondition::InternalServerError, None);
                        act.send_opt(r);
                        return act.pump(ctx);
                    }
                };
                let log = act
                    .ctx
                    .log
                    .new(slog::o!("jid" => full.to_string(), "peer" => act.peer.to_string()));
                let session =
                    Session::new(full.clone(), account, act.ctx.clone(), act.out.clone(), log);
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
                act.send_el(&r);
                // the session takes the stream over; this actor stops once the I/O
                // task confirms (FromIo::HandedOver), so nothing sent to it is lost
                act.out
                    .handover(addr.clone().recipient(), addr.clone().recipient());
                act.session = Some(addr);
                act.phase = Phase::Bound;
                act.pump(ctx);
                // negotiation is over: keep nothing it needed
                act.backlog = VecDeque::new();
            })
            .wait(ctx);
    }
}

/// Run library code on peer data; a panic in it becomes `None` instead of taking the
/// connection actor down without a word to the client (rsasl 2.3 panics on some
/// malformed SCRAM messages).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

fn is_scram(m: Mech) -> bool {
    !matches!(m, Mech::Plain | Mech::Anonymous)
}

/// Decode SASL data: `None` for an absent initial response, `Some(empty)` for `=`.
fn decode_sasl(text: &str) -> Result<Option<Vec<u8>>, Failure> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t == "=" {
        return Ok(Some(Vec::new()));
    }
    let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map(Some)
        .map_err(|_| Failure::IncorrectEncoding)
}

/// Normalise a username the way a JID's local part is (nodeprep); `None` if invalid.
pub fn nodeprep(user: &str) -> Option<String> {
    let bare = BareJid::new(&format!("{user}@x.invalid")).ok()?;
    let node = bare.node()?.to_string();
    // the local part must not smuggle in a domain or resource
    (!node.is_empty()).then_some(node)
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.ctx.on_shutdown(ctx, |act: &mut Self| {
            act.fail(StreamError::new(Condition::SystemShutdown))
        });
        let timeout = Duration::from_secs(self.settings.limits.auth_timeout.max(1));
        ctx.run_later(timeout, |act, _| {
            if act.session.is_none() && act.phase != Phase::Closing {
                act.fail(StreamError::with_text(
                    Condition::ConnectionTimeout,
                    "authentication took too long",
                ));
            }
        });
    }
}

impl Handler<FromIo> for Connection {
    type Result = ();
    fn handle(&mut self, msg: FromIo, ctx: &mut Context<Self>) {
        match msg {
            FromIo::Header(h) => self.on_header(h),
            FromIo::TlsUp(cb) => {
                slog::debug!(self.log, # "XMPPI", "TLS established"; "channel_binding" => format!("{:?}", cb.types()));
                self.tls = Some(cb);
                if self.phase == Phase::Tls || self.phase == Phase::Header {
                    self.phase = Phase::Header;
                }
            }
            FromIo::End => {
                slog::debug!(self.log, # "XMPPI", "peer closed the stream");
                if self.phase != Phase::Closing {
                    self.phase = Phase::Closing;
                    if !self.header_sent {
                        self.send_header(None, false);
                    }
                    self.send("</stream:stream>");
                    self.out.close();
                }
            }
            FromIo::ParseError(e) => self.fail(e),
            FromIo::HandedOver => {
                // whatever reached us before the handover went on to the session
                self.pump(ctx);
                self.session = None;
                ctx.stop();
            }
            FromIo::Closed(reason) => {
                slog::debug!(self.log, # "XMPPI", "connection gone"; "reason" => reason);
                if let Some(s) = self.session.take() {
                    s.do_send(session::Ended);
                }
                ctx.stop();
            }
        }
    }
}

impl Handler<Inbound> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        if self.phase == Phase::Closing {
            return;
        }
        self.backlog.extend(msg.0);
        if self.backlog.len() > MAX_BACKLOG {
            return self.fail(StreamError::with_text(
                Condition::PolicyViolation,
                "too many stanzas during negotiation",
            ));
        }
        self.pump(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_turns_a_panic_into_none() {
        assert_eq!(guarded(|| 1), Some(1));
        let r: Option<()> = guarded(|| panic!("library bug"));
        assert_eq!(r, None);
    }
}

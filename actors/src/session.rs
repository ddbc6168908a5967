//! The account session: one per bound resource. It acts on the account's behalf:
//! stamps and checks what the client sends, answers what the server answers for the
//! account, hands the rest to the registry as signals, and writes what is delivered
//! to it to the client.

use crate::context::Ctx;
use crate::features::taps::{self, SessionView, TapCall, TapPoint, Verdict};
use crate::features::{self, Entity, Env, IqHandler, Who};
use crate::metrics::{ActorGuard, ActorKind, METRICS, Outcome};
use crate::monitor::ConnInfo;
use crate::net::io::{FromIo, Inbound, Outbox, WriteError};
use crate::registry::routes;
use crate::signals::backlog::Backlog;
use crate::signals::to_registry::{Availability, FromSession, Unbind};
use crate::signals::to_session::deliver_serialised;
use crate::signals::{AccountRef, Serialised, SessionRef, Signal, ToAccount, ToSession};
use actix::prelude::*;
use minidom::Element;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition, Kind};
use xmppd_proto::stream::error::{Condition, StreamError};

mod held;
pub use held::HOLD_TIMEOUT;
use held::Held;

/// Signals waiting for one session before the registry refuses more.
pub const MAILBOX: usize = 1024;

/// What a session knows of its stream's negotiation.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// The stream runs TLS.
    pub tls: bool,
    /// When the stream authenticated with stored credentials (`None`: anonymous).
    pub authenticated_at: Option<std::time::Instant>,
}

pub struct Session {
    jid: FullJid,
    bare: BareJid,
    /// This session's own handle (the registry and the account know it by this).
    me: SessionRef,
    account: AccountRef,
    /// The account's blocklist (XEP-0191), kept current by the account actor.
    blocked: Arc<Vec<String>>,
    ctx: Ctx,
    out: Outbox,
    log: slog::Logger,
    /// The stream runs TLS.
    tls: bool,
    /// When the stream authenticated with stored credentials (`None`: anonymous).
    authenticated_at: Option<std::time::Instant>,
    available: bool,
    priority: i8,
    /// The client is gone; what still arrives is returned to its senders.
    closing: bool,
    /// Our closing tag is queued (nothing more is written after it).
    stream_ended: bool,
    /// Signals for a registry or account actor whose mailbox was full, in order.
    held: Vec<Held>,
    /// A spawned future is handing `held` over (see [`Session::release_held`]).
    releasing: bool,
    /// Reads are paused until the backlog clears (see [`Session::pace`]).
    pacing: bool,
    /// Signals handed to the registry and not yet routed by it (see `FromSession`).
    via_registry: Arc<AtomicUsize>,
    /// Signals of this session waiting in the registry for a busy account: while
    /// any do, the session takes nothing more from its client (see `Session::pace`).
    backlog: Arc<Backlog>,
    /// The connection in the monitor's registry, when the stream came from one.
    pub conn: Option<Arc<ConnInfo>>,
    _gauge: ActorGuard,
}

impl Session {
    pub fn new(
        jid: FullJid,
        me: SessionRef,
        account: AccountRef,
        ctx: Ctx,
        out: Outbox,
        log: slog::Logger,
        Negotiated {
            tls,
            authenticated_at,
        }: Negotiated,
    ) -> Self {
        let gauge = ActorGuard::new(ActorKind::Session);
        let bare = jid.to_bare();
        Session {
            jid,
            bare,
            me,
            account,
            blocked: Arc::new(Vec::new()),
            ctx,
            out,
            log,
            tls,
            authenticated_at,
            available: false,
            priority: 0,
            closing: false,
            stream_ended: false,
            held: Vec::new(),
            releasing: false,
            pacing: false,
            via_registry: Arc::new(AtomicUsize::new(0)),
            backlog: Arc::new(Backlog::default()),
            conn: None,
            _gauge: gauge,
        }
    }

    /// What taps see of this session.
    fn view(&self) -> SessionView<'_> {
        SessionView {
            blocked: &self.blocked,
        }
    }

    /// Close our side of the stream (once), after what is queued.
    fn close_stream(&mut self) {
        if !std::mem::replace(&mut self.stream_ended, true) {
            let _ = self.out.send_str("</stream:stream>");
            self.out.close();
        }
    }

    /// What the sender of a stanza this session could not write gets back.
    fn refused(&self, e: WriteError) -> ErrorCondition {
        match e {
            WriteError::Overflow => {
                slog::warn!(self.log, # "XMPPI", "peer not reading: write buffer full, disconnecting");
                ErrorCondition::ResourceConstraint
            }
            WriteError::Closed => ErrorCondition::RecipientUnavailable,
        }
    }

    /// End the stream with a stream error (the connection then reports it closed).
    fn stream_error(&mut self, err: StreamError) {
        if self.stream_ended {
            return;
        }
        self.stream_ended = true;
        slog::warn!(self.log, # "XMPPI", "stream error"; "error" => %err);
        let _ = self.out.send_str(&err.to_xml());
        self.out.close();
    }

    fn write(&mut self, el: &Element) -> Result<(), WriteError> {
        let r = self.out.send_element(el);
        if r.is_ok() {
            self.ctx.stats.stanzas_out.fetch_add(1, Ordering::Relaxed);
            if let Some(c) = &self.conn {
                c.note_stanza_out();
            }
        }
        r
    }

    fn reply(&mut self, el: Option<Element>) {
        if let Some(el) = el {
            let _ = self.write(&el);
        }
    }

    fn route(&mut self, from: Jid, to: Jid, el: Element) {
        let Some(sig) = Signal::new(from, to, el) else {
            return;
        };
        // while the registry still holds something of ours, the direct path could
        // overtake it: everything goes the registry's way until it has caught up
        // (and while some of ours wait there for a busy account)
        let sig = if self.via_registry.load(Ordering::Acquire) == 0 && self.backlog.is_clear() {
            match self.fast_route(sig) {
                Some(sig) => sig,
                None => return,
            }
        } else {
            sig
        };
        self.via_registry.fetch_add(1, Ordering::Relaxed);
        let m = FromSession {
            sig,
            pending: self.via_registry.clone(),
            backlog: self.backlog.clone(),
        };
        if self.releasing || !self.held.is_empty() {
            // behind what is held: it goes in order
            return self.held.push(Held::Registry(m));
        }
        match self.ctx.registry.from_session.try_send(m) {
            Ok(()) => {}
            Err(SendError::Closed(_)) => {
                self.via_registry.fetch_sub(1, Ordering::Relaxed);
            }
            // the registry is behind: this session waits (and its client with it)
            Err(SendError::Full(m)) => self.held.push(Held::Registry(m)),
        }
    }

    /// Hand a client's stanza to the account actor, or hold it while that is behind.
    fn hand_to_account(&mut self, stanza: Element) {
        let m = ToAccount::FromClient {
            resource: self.jid.resource().to_string(),
            stanza,
        };
        if self.releasing || !self.held.is_empty() {
            return self.held.push(Held::Account(m));
        }
        match self.account.try_send(m) {
            Ok(()) | Err(SendError::Closed(_)) => {}
            Err(SendError::Full(m)) => self.held.push(Held::Account(m)),
        }
    }

    /// The fast path: when this arbiter's replica of the routing table names exactly
    /// one session for the signal, hand it over directly. Anything else (several or no
    /// targets, subscriptions, other domains, a session that just ended) is given back
    /// for the registry to decide.
    fn fast_route(&self, sig: Signal) -> Option<Signal> {
        let to = sig.to();
        if to.node().is_none()
            || to.domain() != self.jid.domain()
            || matches!(sig, Signal::Subscribe(_))
        {
            return Some(sig);
        }
        let target = routes::with_replica(|t| match to.try_as_full() {
            Ok(full) => t.lookup(full),
            Err(bare) => match (&sig, sig.stanza_type()) {
                (Signal::Message(_), None | Some("chat") | Some("normal")) => {
                    t.single_message_target(bare, sig.stanza_type())
                }
                _ => None,
            },
        });
        let Some(addr) = target else { return Some(sig) };
        let sig = match sig {
            Signal::Message(m) => {
                return deliver_serialised(
                    &addr,
                    Serialised::new(m),
                    &self.ctx.registry,
                    &self.log,
                );
            }
            other => other,
        };
        match addr.try_send(ToSession::Signal(sig)) {
            Ok(()) => None,
            Err(SendError::Full(ToSession::Signal(sig))) => {
                if let Some(b) = sig.bounce(
                    ErrorCondition::ResourceConstraint,
                    Some("recipient is overloaded"),
                ) {
                    self.ctx.registry.route(b);
                }
                None
            }
            Err(SendError::Closed(ToSession::Signal(sig))) => Some(sig),
            Err(_) => None,
        }
    }

    fn client_stanza(&mut self, mut el: Element) {
        self.ctx.stats.stanzas_in.fetch_add(1, Ordering::Relaxed);
        if el.is("error", ns::STREAM) {
            // the client ends the stream with an error of its own: close ours
            slog::debug!(self.log, # "XMPPI", "client sent a stream error"; "error" => xmppd_proto::xml::writer::to_string(&el));
            return self.close_stream();
        }
        let Some(kind) = Kind::of(&el) else {
            return self.stream_error(StreamError::with_text(
                Condition::UnsupportedStanzaType,
                el.name().to_string(),
            ));
        };
        if !el.has_ns(ns::CLIENT) {
            return self.stream_error(StreamError::new(Condition::InvalidNamespace));
        }
        // RFC 6120 §8.1.2.1: a client may only use its own address.
        if let Some(f) = el.attr("from") {
            let own = match Jid::new(f) {
                Ok(j) => j.as_str() == self.jid.as_str() || j.as_str() == self.bare.as_str(),
                Err(_) => false,
            };
            if !own {
                return self.stream_error(StreamError::new(Condition::InvalidFrom));
            }
        }
        stanza::set_attr(&mut el, "from", self.jid.as_str());
        let to = match stanza::jid_attr(&el, "to") {
            Ok(t) => t,
            Err(_) => {
                stanza::remove_attr(&mut el, "to");
                let r = stanza::error_reply(&el, ErrorCondition::JidMalformed, None);
                return self.reply(r);
            }
        };
        // what features tap on the way out (XEP-0191 §3.4: nothing to someone blocked)
        if let Some(t) = &to {
            let call = TapCall {
                point: TapPoint::Sent,
                kind,
                ty: el.attr("type"),
                peer: t,
                session: self.view(),
            };
            match taps::run(&call) {
                Verdict::Pass => {}
                Verdict::Drop => return,
                Verdict::Refuse { cond, error } => {
                    if let Some(mut e) = stanza::error_reply(&el, cond, None) {
                        if let Some(make) = error
                            && let Some(err) = e.get_child_mut("error", ns::CLIENT)
                        {
                            *err = make();
                        }
                        stanza::remove_attr(&mut e, "from");
                        self.reply(Some(e));
                    }
                    return;
                }
            }
        }
        match kind {
            Kind::Iq => self.client_iq(el, to),
            Kind::Message => {
                let to = to.unwrap_or_else(|| Jid::from(self.bare.clone()));
                self.route(Jid::from(self.jid.clone()), to, el);
            }
            Kind::Presence => self.client_presence(el, to),
        }
    }

    fn client_iq(&mut self, el: Element, to: Option<Jid>) {
        if !stanza::iq_is_valid(&el) {
            let r = stanza::error_reply(&el, ErrorCondition::BadRequest, Some("malformed iq"));
            return self.reply(r);
        }
        let to_domain = to
            .as_ref()
            .is_some_and(|t| t.node().is_none() && t.domain() == self.jid.domain());
        let to_self = to.as_ref().is_none_or(|t| t.as_str() == self.bare.as_str());
        if !to_self && !to_domain {
            let Some(to) = to else { return };
            return self.route(Jid::from(self.jid.clone()), to, el);
        }
        let settings = self.ctx.settings.get();
        let env =
            Env::new(&settings, self.jid.domain().as_str()).with_components(&self.ctx.components);
        let mut reply = if to_domain {
            match features::lookup(&env, Entity::Server, Who::Owner, &el) {
                // what the account actor does for its own users (XEP-0077 password
                // change, removal): `to` stays, so the answer comes from the domain
                Some(r) if matches!(r.handler, IqHandler::Account(_)) => {
                    return self.hand_to_account(el);
                }
                _ => features::serve(&env, Entity::Server, Who::Anyone, &el),
            }
        } else {
            // the session's own (RFC 3921 session, bind), the account's, the server's
            let route = [Entity::Session, Entity::Account]
                .into_iter()
                .find_map(|e| features::lookup(&env, e, Who::Owner, &el).map(|r| (e, r)));
            match route {
                Some((_, r)) if matches!(r.handler, IqHandler::Account(_)) => {
                    // roster, blocklist, vCard, private XML: the account actor owns them
                    let mut el = el;
                    stanza::remove_attr(&mut el, "to");
                    return self.hand_to_account(el);
                }
                Some((_, r)) => features::run_pure(r, &env, &el),
                None => features::serve(&env, Entity::Server, Who::Owner, &el),
            }
        };
        if let Some(r) = reply.as_mut() {
            // answers come from the address the request went to
            match &to {
                Some(t) => stanza::set_attr(r, "from", t.as_str()),
                None => stanza::remove_attr(r, "from"),
            }
        }
        self.reply(reply);
    }

    fn client_presence(&mut self, el: Element, to: Option<Jid>) {
        if to.is_none() {
            match el.attr("type") {
                None => {
                    let priority = match el
                        .get_child("priority", ns::CLIENT)
                        .map(|p| p.text().trim().parse::<i8>())
                    {
                        None => 0,
                        Some(Ok(p)) => p,
                        Some(Err(_)) => {
                            let r = stanza::error_reply(
                                &el,
                                ErrorCondition::BadRequest,
                                Some("priority must be -128..127"),
                            );
                            return self.reply(r);
                        }
                    };
                    self.set_availability(true, priority);
                }
                Some("unavailable") => self.set_availability(false, 0),
                _ => {}
            }
        }
        // broadcast, directed presence and subscriptions: the account actor knows the roster
        self.hand_to_account(el);
    }

    fn set_availability(&mut self, available: bool, priority: i8) {
        self.available = available;
        self.priority = priority;
        self.ctx.registry.availability.do_send(Availability {
            jid: self.jid.clone(),
            available,
            priority,
        });
    }

    fn deliver(&mut self, sig: Signal) {
        if self.closing {
            return self.undeliverable(sig, ErrorCondition::RecipientUnavailable);
        }
        // what features tap on the way in (XEP-0191 §3.3: nothing from someone blocked)
        let call = TapCall {
            point: TapPoint::Delivered,
            kind: sig.kind(),
            ty: sig.stanza_type(),
            peer: sig.from(),
            session: self.view(),
        };
        match taps::run(&call) {
            Verdict::Pass => {}
            Verdict::Drop => return METRICS.signal(&sig, Outcome::Dropped),
            Verdict::Refuse { cond, .. } => return self.undeliverable(sig, cond),
        }
        match self.write(sig.stanza()) {
            // an error reply's signal was counted when it was made (bounced)
            Ok(()) if sig.is_error() => {}
            Ok(()) => METRICS.signal(&sig, Outcome::Delivered),
            Err(e) => {
                let cond = self.refused(e);
                self.undeliverable(sig, cond);
            }
        }
    }

    /// A message from the direct path: its bytes go straight to the write queue.
    fn deliver_serialised(&mut self, m: Serialised) {
        let call = TapCall {
            point: TapPoint::Delivered,
            kind: Kind::Message,
            ty: m.ty,
            peer: &m.from,
            session: self.view(),
        };
        if self.closing || !taps::run(&call).passes() {
            // the paths that answer the sender need the tree
            if let Some(sig) = m.parsed(&self.log) {
                self.deliver(sig);
            }
            return;
        }
        match self.out.try_send_bytes(m.bytes) {
            Ok(()) => {
                self.ctx.stats.stanzas_out.fetch_add(1, Ordering::Relaxed);
                METRICS.message(Outcome::Delivered);
                if let Some(t) = m.sent {
                    METRICS.observe_routing(t.elapsed());
                }
                if let Some(c) = &self.conn {
                    c.note_stanza_out();
                }
            }
            Err((e, bytes)) => {
                let cond = self.refused(e);
                let m = Serialised { bytes, ..m };
                if let Some(sig) = m.parsed(&self.log) {
                    self.undeliverable(sig, cond);
                }
            }
        }
    }

    fn undeliverable(&mut self, sig: Signal, cond: ErrorCondition) {
        // a message for a resource that just left may still reach another one, or
        // offline storage
        if cond == ErrorCondition::RecipientUnavailable
            && let Signal::Message(m) = &sig
            && matches!(sig.stanza_type(), None | Some("normal") | Some("chat"))
        {
            let to = Jid::from(self.bare.clone());
            let rerouted = Signal::new(m.from.clone(), to, m.stanza.clone());
            if let Some(r) = rerouted {
                return self.ctx.registry.route(r);
            }
        }
        if let Some(b) = sig.bounce(cond, None) {
            self.ctx.registry.route(b);
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.account.do_send(ToAccount::Attach {
            resource: self.jid.resource().to_string(),
            session: self.me.clone(),
            tls: self.tls,
            authenticated_at: self.authenticated_at,
        });
        // a server shutdown ends the stream (before binding the connection does this)
        self.ctx.on_shutdown(ctx, |act: &mut Self| {
            act.stream_error(StreamError::new(Condition::SystemShutdown))
        });
        slog::debug!(self.log, "session started"; "jid" => %self.jid);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // a paused I/O task reads again, finds its target gone and ends
        self.out.resume_reads();
        slog::debug!(self.log, "session ended"; "jid" => %self.jid);
    }
}

impl Handler<Inbound> for Session {
    type Result = ();
    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        for el in msg.0 {
            if self.closing || self.out.is_closed() {
                break;
            }
            self.client_stanza(el);
        }
        self.release_held(ctx);
        self.pace(ctx);
    }
}

impl Handler<ToSession> for Session {
    type Result = ();
    fn handle(&mut self, m: ToSession, ctx: &mut Context<Self>) {
        match m {
            ToSession::Signal(sig) => self.deliver(sig),
            ToSession::Serialised(m) => self.deliver_serialised(m),
            ToSession::Write(el) => {
                if !self.closing && self.write(&el).is_ok() {
                    METRICS.element(&el, Outcome::Delivered);
                }
            }
            ToSession::Offline(batch) => {
                // the account gave up waiting (see OFFLINE_HANDOVER_TIMEOUT): they stay
                // stored, and are handed over again later
                if batch.written.is_closed() {
                    return;
                }
                // stop at the first that cannot be written: it and the rest stay stored
                let written = batch
                    .messages
                    .iter()
                    .take_while(|el| !self.closing && self.write(el).is_ok())
                    .count();
                METRICS
                    .offline_delivered
                    .fetch_add(written as u64, Ordering::Relaxed);
                let _ = batch.written.send(written);
            }
            ToSession::Blocklist(b) => self.blocked = b,
            ToSession::Close(e) => {
                // the server ends the stream: the error goes out after what is queued,
                // and the session leaves the routes at once, so that nothing is handed
                // to a stream that will not write it (what still arrives is rerouted
                // or returned to its sender)
                self.stream_error(e);
                self.end(ctx);
            }
            ToSession::Ended => self.end(ctx),
        }
    }
}

/// After binding the session also takes the stream's events from the I/O task.
impl Handler<FromIo> for Session {
    type Result = ();
    fn handle(&mut self, msg: FromIo, ctx: &mut Context<Self>) {
        match msg {
            FromIo::Header(_) => self.stream_error(StreamError::with_text(
                Condition::NotWellFormed,
                "unexpected stream header",
            )),
            FromIo::End => {
                slog::debug!(self.log, # "XMPPI", "peer closed the stream");
                self.close_stream();
            }
            FromIo::ParseError(e) => self.stream_error(e),
            FromIo::Closed(reason) => {
                slog::debug!(self.log, # "XMPPI", "connection gone"; "reason" => reason);
                self.end(ctx);
            }
            FromIo::TlsUp(_) | FromIo::HandedOver => {}
        }
    }
}

impl Session {
    /// The connection is gone: leave the account and the registry, then stop.
    fn end(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.account.do_send(ToAccount::Detach {
            resource: self.jid.resource().to_string(),
        });
        let unbind = Unbind {
            jid: self.jid.clone(),
            session: self.me.clone(),
        };
        // Once the registry has forgotten us nothing new is routed here; what is already
        // in the mailbox is returned to its senders, then the session stops.
        self.ctx
            .registry
            .unbind
            .send(unbind)
            .into_actor(self)
            .map(|_, _, ctx| ctx.address().do_send(Stop))
            .spawn(ctx);
    }
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Stop> for Session {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

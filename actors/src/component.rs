//! The `Component` actor: one per connected trusted component (XEP-0114), from its
//! handshake until its connection ends. Its domain is attached in the registry's
//! domain table, so every signal for the domain or any JID in it comes here and is
//! written to the component (in its stream's namespace); what the component sends is
//! checked ([`xmppd_proto::component::inbound`]: `from` inside its own domain) and
//! handed to the registry as signals, like any other peer's.

use crate::context::Ctx;
use crate::metrics::{ActorGuard, ActorKind};
use crate::monitor::ConnInfo;
use crate::net::io::{FromIo, Inbound, Outbox, WriteError};
use crate::signals::Signal;
use crate::signals::to_registry::{DetachService, Dismiss, Dismissal};
use actix::prelude::*;
use minidom::Element;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use xmppd_proto::component::{Verdict, inbound, still_configured};
use xmppd_proto::ns;
use xmppd_proto::stanza::ErrorCondition;
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xml::writer;

/// Signals waiting for one component before the registry refuses more
/// (`resource-constraint` to their senders).
pub const MAILBOX: usize = 1024;

pub struct Component {
    domain: String,
    /// The secret the component proved (a reload that changes it ends the stream).
    secret: String,
    ctx: Ctx,
    /// Its row in the connection monitor.
    conn: Arc<ConnInfo>,
    out: Outbox,
    log: slog::Logger,
    /// The connection is gone: what still arrives goes back to its senders.
    closing: bool,
    /// Our side of the stream is closed (nothing more is written).
    stream_ended: bool,
    /// The registry detached us ([`Dismiss`]): what still arrives goes back to it, to
    /// be routed to whoever serves the domain now.
    dismissed: bool,
    /// Signals for the registry while its mailbox was full, in order.
    held: Vec<Signal>,
    _counted: ActorGuard,
}

/// What a `Component` actor is started with.
pub struct Attached {
    pub domain: String,
    pub secret: String,
    pub ctx: Ctx,
    pub out: Outbox,
    pub conn: Arc<ConnInfo>,
    pub log: slog::Logger,
}

impl Component {
    pub fn new(a: Attached) -> Self {
        Component {
            domain: a.domain,
            secret: a.secret,
            ctx: a.ctx,
            conn: a.conn,
            out: a.out,
            log: a.log,
            closing: false,
            stream_ended: false,
            dismissed: false,
            held: Vec::new(),
            _counted: ActorGuard::new(ActorKind::Component),
        }
    }

    fn stream_error(&mut self, err: StreamError) {
        if std::mem::replace(&mut self.stream_ended, true) {
            return;
        }
        slog::warn!(self.log, # "XMPPI", "stream error"; "error" => %err);
        let _ = self.out.send_str(&err.to_xml());
        self.out.close();
    }

    fn close_stream(&mut self) {
        if !std::mem::replace(&mut self.stream_ended, true) {
            let _ = self.out.send_str("</stream:stream>");
            self.out.close();
        }
    }

    /// Write a `jabber:client` stanza to the component: elements in that namespace
    /// carry no declaration, so the component reads them in its stream's namespace.
    fn write(&mut self, el: &Element) -> Result<(), WriteError> {
        if self.stream_ended {
            return Err(WriteError::Closed);
        }
        let r = self.out.send_bytes(writer::to_bytes_in(el, ns::CLIENT));
        match r {
            Ok(()) => {
                self.ctx.stats.stanzas_out.fetch_add(1, Ordering::Relaxed);
                self.conn.note_stanza_out();
            }
            Err(WriteError::Overflow) => {
                slog::warn!(self.log, # "XMPPI", "component not reading: write buffer full, disconnecting");
            }
            Err(WriteError::Closed) => {}
        }
        r
    }

    /// A signal for the component's domain.
    fn deliver(&mut self, sig: Signal) {
        if self.dismissed {
            // the registry no longer sends here: it routes this to the domain's new
            // server (a replacing connection, the hosted domain) or returns it
            return self.ctx.registry.route(sig);
        }
        if self.closing {
            return self.bounce(sig, ErrorCondition::ServiceUnavailable);
        }
        if let Err(e) = self.write(sig.stanza()) {
            let cond = match e {
                WriteError::Overflow => ErrorCondition::ResourceConstraint,
                WriteError::Closed => ErrorCondition::ServiceUnavailable,
            };
            self.bounce(sig, cond);
        }
    }

    fn bounce(&self, sig: Signal, cond: ErrorCondition) {
        if let Some(b) = sig.bounce(cond, None) {
            self.ctx.registry.route(b);
        }
    }

    /// What the component sent: checked, then routed.
    fn component_stanza(&mut self, el: Element) {
        self.ctx.stats.stanzas_in.fetch_add(1, Ordering::Relaxed);
        if el.is("error", ns::STREAM) {
            slog::debug!(self.log, # "XMPPI", "component sent a stream error"; "error" => writer::to_string(&el));
            return self.close_stream();
        }
        // a reload may have made the domain hosted, removed the component or changed
        // its secret: then it must not send as that domain any more
        let settings = self.ctx.settings.get();
        if let Err(e) = still_configured(&settings, &self.domain, &self.secret) {
            return self.stream_error(e);
        }
        let server = settings.domains.first().map_or("", |d| d.name.as_str());
        match inbound(el, &self.domain, server) {
            Verdict::Route { from, to, stanza } => {
                if let Some(sig) = Signal::new(from, to, stanza) {
                    self.route(sig);
                }
            }
            Verdict::Reply(r) => {
                let _ = self.write(&r);
            }
            Verdict::Drop(why) => {
                slog::debug!(self.log, # "XMPPI", "stanza from the component dropped"; "why" => why);
            }
            Verdict::Fail(e) => self.stream_error(e),
        }
    }

    /// Hand a signal to the registry; while its mailbox is full, hold it (and the rest
    /// in order) and stop reading the component until it is taken.
    fn route(&mut self, sig: Signal) {
        if !self.held.is_empty() {
            return self.held.push(sig);
        }
        match self.ctx.registry.signal.try_send(sig) {
            Ok(()) | Err(SendError::Closed(_)) => {}
            Err(SendError::Full(sig)) => self.held.push(sig),
        }
    }

    fn release_held(&mut self, ctx: &mut Context<Self>) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let registry = self.ctx.registry.signal.clone();
        async move {
            for sig in held {
                let _ = registry.send(sig).await;
            }
        }
        .into_actor(self)
        .wait(ctx);
    }

    /// The connection is gone: leave the domain, return what still arrives, stop.
    fn end(&mut self, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.closing, true) {
            return;
        }
        slog::info!(self.log, # "XMPPI", "component disconnected");
        let detach = DetachService {
            domain: self.domain.clone(),
            signals: ctx.address().recipient(),
        };
        self.ctx
            .registry
            .detach_service
            .send(detach)
            .into_actor(self)
            // after what is already in the mailbox (returned to its senders)
            .map(|_, _, ctx| ctx.address().do_send(Stop))
            .spawn(ctx);
    }
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Stop> for Component {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Actor for Component {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.ctx.on_shutdown(ctx, |act: &mut Self| {
            act.stream_error(StreamError::new(Condition::SystemShutdown))
        });
    }
}

impl Handler<Signal> for Component {
    type Result = ();
    fn handle(&mut self, sig: Signal, _: &mut Context<Self>) {
        self.deliver(sig);
    }
}

impl Handler<Dismiss> for Component {
    type Result = ();
    fn handle(&mut self, d: Dismiss, _: &mut Context<Self>) {
        self.dismissed = true;
        let err = match d.0 {
            Dismissal::Replaced => {
                StreamError::with_text(Condition::Conflict, "replaced by a new connection")
            }
            Dismissal::HostGone => StreamError::with_text(
                Condition::HostGone,
                "the component is no longer configured here",
            ),
            Dismissal::SecretChanged => {
                StreamError::with_text(Condition::NotAuthorized, "the component's secret changed")
            }
        };
        self.stream_error(err);
    }
}

impl Handler<Inbound> for Component {
    type Result = ();
    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        for el in msg.0 {
            if self.closing || self.stream_ended {
                break;
            }
            self.component_stanza(el);
        }
        self.release_held(ctx);
    }
}

impl Handler<FromIo> for Component {
    type Result = ();
    fn handle(&mut self, msg: FromIo, ctx: &mut Context<Self>) {
        match msg {
            FromIo::Header(_) => self.stream_error(StreamError::with_text(
                Condition::NotWellFormed,
                "unexpected stream header",
            )),
            FromIo::End => self.close_stream(),
            FromIo::ParseError(e) => self.stream_error(e),
            FromIo::Closed(reason) => {
                slog::debug!(self.log, # "XMPPI", "connection gone"; "reason" => reason);
                self.end(ctx);
            }
            FromIo::TlsUp(_) | FromIo::HandedOver => {}
        }
    }
}

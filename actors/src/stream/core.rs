//! The inbound stream core: the `Connection` actor, one per accepted connection until
//! its stream is handed over. It owns what every kind of stream has: the stream header
//! and its id, TLS, stream errors, the authentication timeout, the backlog of elements
//! that arrive while an asynchronous step runs, and the hand-over to the actor that takes
//! the stream afterwards. What is particular to a kind of peer — which features are
//! offered, how it authenticates, what it may send — is its negotiation [`Strategy`],
//! chosen from the namespace of the first stream header (see [`super::STRATEGIES`]).

use super::Kind;
use crate::context::{Ctx, Gauge};
use crate::metrics::{ActorGuard, ActorKind};
use crate::monitor::{ConnInfo, ConnKind, Registered};
use crate::net::io::{self, FromIo, Inbound, IoParams, Outbox};
use actix::prelude::*;
use minidom::Element;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use xmppd_proto::auth::throttle::{PreAuth, PreAuthSlot};
use xmppd_proto::config::Settings;
use xmppd_proto::net::tls::ChannelBinding;
use xmppd_proto::ns;
use xmppd_proto::stream::error::{Condition, StreamError};
use xmppd_proto::xml::escape::escape_attr;
use xmppd_proto::xml::stream_parser::{Limits, StreamHeader};

/// Elements queued while an asynchronous step (storage, binding) is in flight.
const MAX_BACKLOG: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the (next) stream header.
    Header,
    /// Stream open, negotiating.
    Negotiating,
    /// STARTTLS proceed sent; waiting for the handshake.
    Tls,
    /// Handed over: stanzas belong to the next actor.
    Bound,
    Closing,
}

/// A negotiation strategy: what a kind of stream does with its headers and elements.
pub struct Strategy {
    /// The stream's default namespace (`jabber:client`, `jabber:server`...).
    pub ns: &'static str,
    /// The strategy's state for a new stream (at its first header).
    pub start: fn(&StreamCore) -> Kind,
    /// A stream header (the first, or a restart after TLS or SASL): answer it with ours
    /// and the features, or fail.
    pub header: fn(&mut Connection, StreamHeader, &mut Context<Connection>),
    /// An element during negotiation.
    pub element: fn(&mut Connection, Element, &mut Context<Connection>),
}

/// What every inbound stream has, whatever its kind.
pub struct StreamCore {
    pub ctx: Ctx,
    pub settings: Arc<Settings>,
    pub out: Outbox,
    pub peer: SocketAddr,
    pub log: slog::Logger,
    pub phase: Phase,
    pub stream_id: String,
    /// The namespace our headers carry (the client's until a strategy is chosen).
    pub ns: &'static str,
    /// Our headers carry `version='1.0'` (false for pre-1.0 client streams).
    pub version: bool,
    /// More namespace declarations for our headers (server streams: the dialback
    /// prefix, XEP-0220 §2.1).
    pub header_ns: &'static str,
    /// Our stream header went out (stream errors need one first).
    pub header_sent: bool,
    /// TLS is up, with its channel-binding data.
    pub tls: Option<ChannelBinding>,
    /// An asynchronous step is running; elements wait in the backlog.
    pub busy: bool,
    /// The stream stays with this actor once authenticated (server streams): the
    /// authentication timeout no longer applies.
    pub established: bool,
    backlog: VecDeque<Element>,
    /// Where the stream goes once negotiated; set by [`StreamCore::hand_over`].
    handed_to: Option<(Recipient<Inbound>, Recipient<FromIo>)>,
    /// This stream's place among its address's unauthenticated ones (`None` once
    /// authenticated, or when there was no room: the stream is then refused).
    pre_auth: Option<PreAuthSlot>,
    /// This connection in the monitor's registry.
    pub conn: Arc<ConnInfo>,
    _gauge: ActorGuard,
}

pub struct Connection {
    pub core: StreamCore,
    /// The strategy's state.
    pub kind: Kind,
    strategy: Option<&'static Strategy>,
}

/// How a new connection arrived.
pub struct Accepted {
    pub tcp: tokio::net::TcpStream,
    pub peer: SocketAddr,
    pub direct_tls: bool,
    /// The oldest TLS version the listener accepts.
    pub min_tls: xmppd_proto::config::TlsVersion,
    /// Counts the connection against the `channels` cap while it lives.
    pub channel: Gauge,
}

impl StreamCore {
    pub fn send(&mut self, s: &str) {
        let _ = self.out.send_str(s);
    }

    pub fn send_el(&mut self, el: &Element) {
        let _ = self.out.send_element(el);
    }

    pub fn send_opt(&mut self, el: Option<Element>) {
        if let Some(el) = el {
            self.send_el(&el);
        }
    }

    /// Our stream header, then `features` (a `<stream:features/>` element) if given.
    pub fn send_header(&mut self, from: Option<&str>, features: Option<&str>) {
        let mut h = self.header_xml(from);
        if let Some(f) = features {
            h.push_str(f);
        }
        self.header_sent = true;
        self.send(&h);
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
        let version = if self.version { " version='1.0'" } else { "" };
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}'{}{from}{id}{version} xml:lang='en'>",
            self.ns,
            ns::STREAM,
            self.header_ns
        )
    }

    /// Send a stream error and close. Before any header of ours went out, a header is
    /// sent first (RFC 6120 §4.9.1.2).
    pub fn fail(&mut self, err: StreamError) {
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

    pub fn closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// Answer `<starttls/>` with proceed and upgrade the socket (RFC 6120 §5.4).
    pub fn start_tls(&mut self) {
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

    /// Refuse STARTTLS (RFC 6120 §5.4.2.2: failure, then the stream closes).
    pub fn refuse_tls(&mut self) {
        self.send(&format!("<failure xmlns='{}'/></stream:stream>", ns::TLS));
        self.phase = Phase::Closing;
        self.out.close();
    }

    /// The peer authenticated: it no longer counts against its address's
    /// unauthenticated connections.
    pub fn authenticated(&mut self) {
        self.pre_auth = None;
    }

    /// The peer authenticated: it opens a new stream over the same connection.
    pub fn restart(&mut self) {
        self.out.reset_parser();
        self.phase = Phase::Header;
    }

    /// Negotiation is over: the stream's stanzas and events go to these from now on.
    /// This actor stops once the I/O task confirms (`FromIo::HandedOver`), so nothing sent
    /// to it is lost.
    pub fn hand_over(&mut self, stanzas: Recipient<Inbound>, control: Recipient<FromIo>) {
        self.conn.set_control(control.clone());
        self.out.handover(stanzas.clone(), control.clone());
        self.handed_to = Some((stanzas, control));
        self.phase = Phase::Bound;
    }
}

impl Connection {
    /// Start the actor and its I/O task on the current arbiter.
    pub fn start(ctx: Ctx, acc: Accepted) -> Addr<Connection> {
        let settings = ctx.settings.get();
        let log = ctx.log.new(slog::o!("peer" => acc.peer.to_string()));
        Connection::create(move |actx| {
            let me = actx.address();
            let registered = Registered::new(acc.peer, ConnKind::Unknown);
            let conn = registered.info().clone();
            conn.set_control(me.clone().recipient());
            let params = IoParams {
                tcp: acc.tcp,
                direct_tls: acc.direct_tls,
                tls: ctx.tls.with_min_version(acc.min_tls),
                limits: Limits {
                    max_stanza: settings.limits.max_stanza_size,
                    max_depth: settings.limits.max_depth,
                    ..Limits::default()
                },
                tls_timeout: Duration::from_secs(settings.limits.tls_timeout),
                write_limit: settings.limits.write_buffer,
                read_rate: settings.limits.read_rate,
                read_burst: settings.limits.read_burst,
                channel: acc.channel,
                conn: registered,
            };
            let out = io::spawn(params, me.clone().recipient(), me.recipient(), log.clone());
            let gauge = ActorGuard::new(ActorKind::Connection);
            let pre_auth =
                PreAuth::global().enter(acc.peer.ip(), settings.limits.unauthenticated_per_ip);
            slog::debug!(log, # "XMPPI", "connection accepted"; "direct_tls" => acc.direct_tls);
            Connection {
                core: StreamCore {
                    settings,
                    out,
                    peer: acc.peer,
                    log,
                    phase: Phase::Header,
                    stream_id: String::new(),
                    ns: ns::CLIENT,
                    version: true,
                    header_ns: "",
                    header_sent: false,
                    tls: None,
                    busy: false,
                    established: false,
                    backlog: VecDeque::new(),
                    handed_to: None,
                    pre_auth,
                    conn,
                    _gauge: gauge,
                    ctx,
                },
                kind: Kind::Undecided,
                strategy: None,
            }
        })
    }

    fn on_header(&mut self, h: StreamHeader, ctx: &mut Context<Self>) {
        if self.core.phase != Phase::Header {
            return self.core.fail(StreamError::with_text(
                Condition::NotWellFormed,
                "unexpected stream header",
            ));
        }
        self.core.stream_id = format!("{:016x}", rand::random::<u64>());
        self.core.header_sent = false;
        let found = super::strategy_for(h.default_ns.as_deref());
        let strategy = match (found, self.strategy) {
            (Ok(s), None) => {
                self.core.ns = s.ns;
                self.core.conn.set_kind(ConnKind::of_namespace(s.ns));
                self.kind = (s.start)(&self.core);
                self.strategy = Some(s);
                s
            }
            // a restarted stream keeps its kind
            (Ok(s), Some(current)) if std::ptr::eq(s, current) => s,
            (Ok(_), Some(_)) => {
                return self
                    .core
                    .fail(StreamError::new(Condition::InvalidNamespace));
            }
            (Err(e), _) => return self.core.fail(e),
        };
        (strategy.header)(self, h, ctx);
    }

    /// Process backlog elements until one needs an asynchronous step.
    pub fn pump(&mut self, ctx: &mut Context<Self>) {
        while !self.core.busy {
            let Some(el) = self.core.backlog.pop_front() else {
                break;
            };
            match self.core.phase {
                Phase::Bound => {
                    let rest: Vec<Element> = std::iter::once(el)
                        .chain(self.core.backlog.drain(..))
                        .collect();
                    if let Some((stanzas, _)) = &self.core.handed_to {
                        stanzas.do_send(Inbound(rest));
                    }
                }
                Phase::Negotiating => self.negotiate(el, ctx),
                Phase::Header | Phase::Tls => {
                    self.core.fail(StreamError::with_text(
                        Condition::NotWellFormed,
                        "element outside a stream",
                    ));
                }
                Phase::Closing => self.core.backlog.clear(),
            }
        }
        if self.core.phase == Phase::Bound {
            // negotiation is over: keep nothing it needed
            self.core.backlog = VecDeque::new();
        }
    }

    fn negotiate(&mut self, el: Element, ctx: &mut Context<Self>) {
        if el.is("error", ns::STREAM) {
            slog::info!(self.core.log, # "XMPPI", "peer sent a stream error"; "error" => xmppd_proto::xml::writer::to_string(&el));
            self.core.phase = Phase::Closing;
            return self.core.out.close();
        }
        match self.strategy {
            Some(s) => (s.element)(self, el, ctx),
            None => self.core.fail(StreamError::new(Condition::NotAuthorized)),
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.core.pre_auth.is_none() {
            slog::warn!(self.core.log, # "XMPPI", "too many unauthenticated connections from this address");
            return self.core.fail(StreamError::with_text(
                Condition::PolicyViolation,
                "too many unauthenticated connections from your address",
            ));
        }
        self.core.ctx.clone().on_shutdown(ctx, |act: &mut Self| {
            act.core.fail(StreamError::new(Condition::SystemShutdown))
        });
        let timeout = Duration::from_secs(self.core.settings.limits.auth_timeout.max(1));
        ctx.run_later(timeout, |act, _| {
            if act.core.handed_to.is_none()
                && !act.core.established
                && act.core.phase != Phase::Closing
            {
                act.core.fail(StreamError::with_text(
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
            FromIo::Header(h) => self.on_header(h, ctx),
            FromIo::TlsUp(cb) => {
                slog::debug!(self.core.log, # "XMPPI", "TLS established"; "channel_binding" => format!("{:?}", cb.types()));
                self.core.tls = Some(cb);
                if self.core.phase == Phase::Tls || self.core.phase == Phase::Header {
                    self.core.phase = Phase::Header;
                }
            }
            FromIo::End => {
                slog::debug!(self.core.log, # "XMPPI", "peer closed the stream");
                if self.core.phase != Phase::Closing {
                    self.core.phase = Phase::Closing;
                    if !self.core.header_sent {
                        self.core.send_header(None, None);
                    }
                    self.core.send("</stream:stream>");
                    self.core.out.close();
                }
            }
            FromIo::ParseError(e) => self.core.fail(e),
            FromIo::HandedOver => {
                // whatever reached us before the handover went on to the next actor
                self.pump(ctx);
                self.core.handed_to = None;
                ctx.stop();
            }
            FromIo::Closed(reason) => {
                slog::debug!(self.core.log, # "XMPPI", "connection gone"; "reason" => &reason);
                // the stream was being handed over: its new owner hears it too
                if let Some((_, control)) = self.core.handed_to.take() {
                    control.do_send(FromIo::Closed(reason));
                }
                ctx.stop();
            }
        }
    }
}

impl Handler<Inbound> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        if self.core.phase == Phase::Closing {
            return;
        }
        self.core.backlog.extend(msg.0);
        self.pump(ctx);
        // what is left waits for an asynchronous step: bounded. (Counted after the
        // pump: one read may carry many stanzas, e.g. a server stream's batch, which
        // are handled at once when nothing is in flight.)
        if self.core.backlog.len() > MAX_BACKLOG {
            self.core.fail(StreamError::with_text(
                Condition::PolicyViolation,
                "too many stanzas during negotiation",
            ));
        }
    }
}

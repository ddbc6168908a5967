//! Signals: the typed messages stanzas travel as between actors.
//!
//! `<message/>` is a [`Message`], subscription presence is a [`Subscribe`], available,
//! unavailable and error presence is a [`Notify`], `<iq/>` is an [`Info`]. Each carries
//! the parsed addresses and the stanza (with `from` and `to` set on it as well).
//!
//! The other messages between actors live here too, one file per receiving actor
//! ([`to_session`], [`to_account`], [`to_registry`]), with the handles actors reach each
//! other by, so that no actor file needs another's.

pub mod backlog;
pub mod handle;
pub mod to_account;
pub mod to_outbound;
pub mod to_registry;
pub mod to_session;

pub use to_account::{AccountRef, ToAccount};
pub use to_outbound::{OutboundRef, ToOutbound};
pub use to_registry::RegistryRef;
pub use to_session::{SessionRef, ToSession};

use minidom::Element;
use xmpp_parsers::jid::Jid;
pub use xmppd_proto::stanza::SubscribeKind;
use xmppd_proto::stanza::{self, ErrorCondition, Kind};

/// `<message/>`.
#[derive(Debug, Clone)]
pub struct Message {
    pub from: Jid,
    pub to: Jid,
    pub stanza: Element,
}

/// Subscription management presence (RFC 6121 §3).
#[derive(Debug, Clone)]
pub struct Subscribe {
    pub from: Jid,
    pub to: Jid,
    pub kind: SubscribeKind,
    pub stanza: Element,
}

/// Presence events: available, unavailable, error (RFC 6121 §4).
#[derive(Debug, Clone)]
pub struct Notify {
    pub from: Jid,
    pub to: Jid,
    pub stanza: Element,
}

/// `<iq/>`; its reply travels back to `from` as another `Info`.
#[derive(Debug, Clone)]
pub struct Info {
    pub from: Jid,
    pub to: Jid,
    pub stanza: Element,
}

/// A message on the direct path from one session to another (on any worker), already
/// serialised by the sender's session while its tree was still in cache. The receiver
/// only copies the bytes into its connection's write queue, so it never walks a tree
/// that waited, cold, in a mailbox; under many busy connections that walk cost more
/// than the parsing. The tree is rebuilt only on the rare paths that need it (blocked
/// sender, recipient gone, write refused).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Serialised {
    pub from: Jid,
    pub to: Jid,
    /// The message's `type`, for the taps on the receiving side.
    pub ty: Option<&'static str>,
    pub bytes: Vec<u8>,
    /// When the sender handed it on, for one message in
    /// [`crate::metrics::ROUTING_SAMPLE`] (the routing-latency histogram).
    pub sent: Option<std::time::Instant>,
}

impl Serialised {
    pub fn new(m: Message) -> Serialised {
        Serialised {
            ty: Serialised::ty_of(&m.stanza),
            sent: crate::metrics::sample_routing(),
            bytes: xmppd_proto::xml::writer::to_bytes(&m.stanza),
            from: m.from,
            to: m.to,
        }
    }

    /// A message's `type`, as the taps read it.
    pub fn ty_of(stanza: &Element) -> Option<&'static str> {
        match stanza.attr("type") {
            Some("chat") => Some("chat"),
            Some("groupchat") => Some("groupchat"),
            Some("headline") => Some("headline"),
            Some("error") => Some("error"),
            Some("normal") => Some("normal"),
            // RFC 6121 §5.2.2: an unknown type is taken as normal
            Some(_) => Some("normal"),
            None => None,
        }
    }

    /// The message again. Our own writer's output always parses; `None` would mean a
    /// writer bug.
    pub fn into_signal(self) -> Option<Signal> {
        let el: Element = std::str::from_utf8(&self.bytes).ok()?.parse().ok()?;
        Some(Signal::Message(Message {
            from: self.from,
            to: self.to,
            stanza: el,
        }))
    }

    /// [`Serialised::into_signal`], logging the writer bug a `None` would mean.
    pub fn parsed(self, log: &slog::Logger) -> Option<Signal> {
        let sig = self.into_signal();
        if sig.is_none() {
            slog::error!(log, "a serialised message does not parse back: dropped");
        }
        sig
    }
}

/// Any signal, as routed by the registry.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub enum Signal {
    Message(Message),
    Subscribe(Subscribe),
    Notify(Notify),
    Info(Info),
}

impl Signal {
    /// Classify a stanza whose `from` and `to` are already set and parsed.
    pub fn new(from: Jid, to: Jid, stanza: Element) -> Option<Signal> {
        Some(match Kind::of(&stanza)? {
            Kind::Message => Signal::Message(Message { from, to, stanza }),
            Kind::Iq => Signal::Info(Info { from, to, stanza }),
            Kind::Presence => {
                let kind = stanza.attr("type").and_then(SubscribeKind::from_type);
                match kind {
                    Some(kind) => Signal::Subscribe(Subscribe {
                        from,
                        to,
                        kind,
                        stanza,
                    }),
                    None => Signal::Notify(Notify { from, to, stanza }),
                }
            }
        })
    }

    /// Build a signal from a stanza, reading its `from` and `to` attributes.
    pub fn from_stanza(stanza: Element) -> Option<Signal> {
        let from = stanza::jid_attr(&stanza, "from").ok()??;
        let to = stanza::jid_attr(&stanza, "to").ok()??;
        Signal::new(from, to, stanza)
    }

    pub fn from(&self) -> &Jid {
        match self {
            Signal::Message(m) => &m.from,
            Signal::Subscribe(s) => &s.from,
            Signal::Notify(n) => &n.from,
            Signal::Info(i) => &i.from,
        }
    }

    pub fn to(&self) -> &Jid {
        match self {
            Signal::Message(m) => &m.to,
            Signal::Subscribe(s) => &s.to,
            Signal::Notify(n) => &n.to,
            Signal::Info(i) => &i.to,
        }
    }

    pub fn stanza(&self) -> &Element {
        match self {
            Signal::Message(m) => &m.stanza,
            Signal::Subscribe(s) => &s.stanza,
            Signal::Notify(n) => &n.stanza,
            Signal::Info(i) => &i.stanza,
        }
    }

    pub fn into_stanza(self) -> Element {
        match self {
            Signal::Message(m) => m.stanza,
            Signal::Subscribe(s) => s.stanza,
            Signal::Notify(n) => n.stanza,
            Signal::Info(i) => i.stanza,
        }
    }

    /// The kind of stanza the signal carries.
    pub fn kind(&self) -> Kind {
        match self {
            Signal::Message(_) => Kind::Message,
            Signal::Subscribe(_) | Signal::Notify(_) => Kind::Presence,
            Signal::Info(_) => Kind::Iq,
        }
    }

    /// The `type` attribute of the stanza.
    pub fn stanza_type(&self) -> Option<&str> {
        self.stanza().attr("type")
    }

    pub fn is_error(&self) -> bool {
        self.stanza_type() == Some("error")
    }

    /// The error signal that returns this one to its sender; `None` for signals that
    /// must not be answered (errors, iq results).
    /// Every caller routes what it returns, so this is where bounces are counted.
    /// An undeliverable iq result is counted `dropped`; an error is not counted again.
    pub fn bounce(&self, cond: ErrorCondition, text: Option<&str>) -> Option<Signal> {
        use crate::metrics::{METRICS, Outcome};
        let Some(reply) = stanza::error_reply(self.stanza(), cond, text) else {
            if !self.is_error() {
                METRICS.signal(self, Outcome::Dropped);
            }
            return None;
        };
        METRICS.signal(self, Outcome::Bounced);
        Signal::new(self.to().clone(), self.from().clone(), reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialised_message_round_trips() {
        let el: Element = "<message xmlns='jabber:client' from='a@x/r' to='b@x/s' type='chat' \
            id='m&amp;1'><body>1 &lt; 2 &#x1F600;</body><x xmlns='urn:y' a='&apos;'/></message>"
            .parse()
            .expect("xml");
        let Some(Signal::Message(m)) = Signal::from_stanza(el.clone()) else {
            panic!("not a message")
        };
        let s = Serialised::new(m);
        assert_eq!(
            std::str::from_utf8(&s.bytes).ok(),
            Some(xmppd_proto::xml::writer::to_string(&el).as_str())
        );
        let Some(Signal::Message(back)) = s.into_signal() else {
            panic!("does not parse back")
        };
        assert_eq!(back.stanza, el);
        assert_eq!(back.from.to_string(), "a@x/r");
        assert_eq!(back.to.to_string(), "b@x/s");
    }

    #[test]
    fn classify_and_bounce() {
        let el: Element =
            "<presence xmlns='jabber:client' type='subscribe' from='a@x/r' to='b@x'/>"
                .parse()
                .expect("xml");
        let s = Signal::from_stanza(el).expect("signal");
        assert!(matches!(
            s,
            Signal::Subscribe(Subscribe {
                kind: SubscribeKind::Subscribe,
                ..
            })
        ));
        let b = s
            .bounce(ErrorCondition::ServiceUnavailable, None)
            .expect("bounce");
        assert_eq!(b.to().to_string(), "a@x/r");
        assert_eq!(b.from().to_string(), "b@x");
        assert!(b.is_error());
        assert!(
            b.bounce(ErrorCondition::ServiceUnavailable, None).is_none(),
            "errors are never bounced"
        );
    }
}

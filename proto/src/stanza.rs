//! Stanza-level helpers: kinds, addressing attributes and error replies (RFC 6120 §8).
//!
//! Inside the server every stanza is a `minidom::Element` in the `jabber:client`
//! namespace; streams of other kinds map their namespace at the edge.

use crate::ns;
use minidom::Element;
use xmpp_parsers::jid::Jid;

/// The three stanza kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub fn of(el: &Element) -> Option<Kind> {
        match el.name() {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
}

/// Defined stanza error conditions (RFC 6120 §8.3.3) with their default error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCondition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl ErrorCondition {
    pub fn as_str(self) -> &'static str {
        use ErrorCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives for the condition.
    pub fn error_type(self) -> &'static str {
        use ErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation => "modify",
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => "auth",
            InternalServerError | RecipientUnavailable | RemoteServerTimeout
            | ResourceConstraint | UnexpectedRequest => "wait",
            Conflict
            | FeatureNotImplemented
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => "cancel",
        }
    }
}

/// The `<error/>` child for a condition, with optional human-readable text.
pub fn error_element(cond: ErrorCondition, text: Option<&str>, by: Option<&str>) -> Element {
    let mut e = Element::bare("error", ns::CLIENT);
    set_attr(&mut e, "type", cond.error_type());
    if let Some(by) = by {
        set_attr(&mut e, "by", by);
    }
    e.append_child(Element::bare(cond.as_str(), ns::STANZAS));
    if let Some(t) = text {
        let mut text = Element::bare("text", ns::STANZAS);
        text.set_attr(
            rxml::Namespace::xml().clone(),
            rxml::xml_ncname!("lang").to_owned(),
            "en",
        );
        text.append_text(t);
        e.append_child(text);
    }
    e
}

/// Build the error reply to `el`: addresses swapped, `type='error'`, same id.
/// Returns `None` when `el` is itself an error (errors are never answered) or an iq
/// result.
pub fn error_reply(el: &Element, cond: ErrorCondition, text: Option<&str>) -> Option<Element> {
    let ty = el.attr("type");
    if ty == Some("error") || (el.name() == "iq" && ty == Some("result")) {
        return None;
    }
    let mut reply = Element::bare(el.name(), ns::CLIENT);
    if let Some(id) = el.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    if let Some(from) = el.attr("from") {
        set_attr(&mut reply, "to", from);
    }
    if let Some(to) = el.attr("to") {
        set_attr(&mut reply, "from", to);
    }
    set_attr(&mut reply, "type", "error");
    // A message or presence error carries the original payload so the sender can tell
    // which one failed (RFC 6120 §8.3.1 allows it); an iq error does not need it.
    if el.name() != "iq" {
        for child in el.children() {
            reply.append_child(child.clone());
        }
    }
    reply.append_child(error_element(cond, text, None));
    Some(reply)
}

/// Whether an iq is well-formed enough to be handled or routed (RFC 6120 §8.2.3): an
/// `id`, a known `type`, exactly one payload in a get or set, at most one in a result.
/// Anything else is answered with `bad-request`, whoever sent it (client or component).
pub fn iq_is_valid(el: &Element) -> bool {
    el.attr("id").is_some()
        && match el.attr("type") {
            Some("get") | Some("set") => el.children().count() == 1,
            Some("result") => el.children().count() <= 1,
            Some("error") => true,
            _ => false,
        }
}

/// An iq result for `req` with an optional payload.
pub fn iq_result(req: &Element, payload: Option<Element>) -> Element {
    let mut reply = Element::bare("iq", ns::CLIENT);
    if let Some(id) = req.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    if let Some(from) = req.attr("from") {
        set_attr(&mut reply, "to", from);
    }
    if let Some(to) = req.attr("to") {
        set_attr(&mut reply, "from", to);
    }
    set_attr(&mut reply, "type", "result");
    if let Some(p) = payload {
        reply.append_child(p);
    }
    reply
}

/// Set (or replace) an unnamespaced attribute.
pub fn set_attr(el: &mut Element, name: &str, value: &str) {
    if let Ok(n) = rxml::NcName::try_from(name) {
        el.set_attr(rxml::Namespace::NONE, n, value);
    }
}

/// Remove an unnamespaced attribute.
pub fn remove_attr(el: &mut Element, name: &str) {
    el.attrs_mut().remove(&rxml::Namespace::NONE, name);
}

/// Parse an addressing attribute; `Ok(None)` when absent, `Err` when present but invalid.
pub fn jid_attr(el: &Element, name: &str) -> Result<Option<Jid>, xmpp_parsers::jid::Error> {
    match el.attr(name) {
        None => Ok(None),
        Some(s) => Jid::new(s).map(Some),
    }
}

/// The first child element (the iq payload).
pub fn payload(el: &Element) -> Option<&Element> {
    el.children().next()
}

/// The kinds of subscription management presence (RFC 6121 §3) and probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
}

impl SubscribeKind {
    /// The kind a presence `type` names (`None`: available, unavailable, error...).
    pub fn from_type(ty: &str) -> Option<SubscribeKind> {
        Some(match ty {
            "subscribe" => SubscribeKind::Subscribe,
            "subscribed" => SubscribeKind::Subscribed,
            "unsubscribe" => SubscribeKind::Unsubscribe,
            "unsubscribed" => SubscribeKind::Unsubscribed,
            "probe" => SubscribeKind::Probe,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().expect("valid xml")
    }

    #[test]
    fn iq_validity() {
        let ok = |x: &str| iq_is_valid(&parse(&format!("<iq xmlns='jabber:client' {x}")));
        assert!(ok("type='get' id='1'><q xmlns='q'/></iq>"));
        assert!(ok("type='set' id='1'><q xmlns='q'/></iq>"));
        assert!(ok("type='result' id='1'/>"));
        assert!(ok("type='result' id='1'><q xmlns='q'/></iq>"));
        assert!(ok("type='error' id='1'><q xmlns='q'/><error/></iq>"));
        assert!(!ok("type='get'><q xmlns='q'/></iq>"), "no id");
        assert!(!ok("id='1'><q xmlns='q'/></iq>"), "no type");
        assert!(!ok("type='fetch' id='1'><q xmlns='q'/></iq>"), "bad type");
        assert!(!ok("type='get' id='1'/>"), "no payload");
        assert!(
            !ok("type='set' id='1'><q xmlns='q'/><r xmlns='q'/></iq>"),
            "two"
        );
        assert!(!ok(
            "type='result' id='1'><q xmlns='q'/><r xmlns='q'/></iq>"
        ));
    }

    #[test]
    fn error_reply_swaps_addresses() {
        let iq = parse(
            "<iq xmlns='jabber:client' type='get' id='x1' from='a@b/c' to='b'><query xmlns='q'/></iq>",
        );
        let r = error_reply(&iq, ErrorCondition::ServiceUnavailable, None).expect("reply");
        assert_eq!(r.attr("type"), Some("error"));
        assert_eq!(r.attr("to"), Some("a@b/c"));
        assert_eq!(r.attr("from"), Some("b"));
        assert_eq!(r.attr("id"), Some("x1"));
        let e = r.get_child("error", ns::CLIENT).expect("error child");
        assert_eq!(e.attr("type"), Some("cancel"));
        assert!(e.has_child("service-unavailable", ns::STANZAS));
        assert!(r.get_child("query", "q").is_none());
    }

    #[test]
    fn no_reply_to_errors_or_results() {
        let e = parse("<message xmlns='jabber:client' type='error'/>");
        assert!(error_reply(&e, ErrorCondition::ServiceUnavailable, None).is_none());
        let r = parse("<iq xmlns='jabber:client' type='result' id='1'/>");
        assert!(error_reply(&r, ErrorCondition::ServiceUnavailable, None).is_none());
    }

    #[test]
    fn message_error_keeps_payload() {
        let m = parse("<message xmlns='jabber:client' to='x@y'><body>hi</body></message>");
        let r = error_reply(&m, ErrorCondition::ServiceUnavailable, Some("gone")).expect("reply");
        assert!(r.has_child("body", ns::CLIENT));
        let text = r
            .get_child("error", ns::CLIENT)
            .and_then(|e| e.get_child("text", ns::STANZAS));
        assert_eq!(text.map(|t| t.text()), Some("gone".into()));
    }
}

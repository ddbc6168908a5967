//! Trusted components (XEP-0114): the handshake, and what a component may send.
//!
//! A component opens a `jabber:component:accept` stream to its own domain, proves the
//! shared secret with `<handshake>hex(SHA-1(stream id + secret))</handshake>`, and then
//! sends stanzas from any JID of its domain. Inside the server every stanza is in
//! `jabber:client`: [`inbound`] maps what the component sends, and the component's
//! writer maps the way out (`xml::writer::to_bytes_in`).

use crate::auth::scram::constant_time_eq;
use crate::config::{ComponentSettings, Settings};
use crate::ns;
use crate::stanza::{self, ErrorCondition, Kind};
use crate::stream::error::{Condition, StreamError};
use minidom::{Element, Node};
use sha1::{Digest, Sha1};
use std::net::IpAddr;
use xmpp_parsers::jid::Jid;

/// The handshake value for a stream id and secret: lower-case hex of
/// SHA-1(stream id + secret) (XEP-0114 §3).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let d = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `offered` (the text of `<handshake/>`) proves `secret` on the stream
/// `stream_id`. Compared in constant time; hex in either case is accepted.
pub fn handshake_ok(stream_id: &str, secret: &str, offered: &str) -> bool {
    let expect = handshake_digest(stream_id, secret);
    let offered = offered.trim().to_ascii_lowercase();
    constant_time_eq(expect.as_bytes(), offered.as_bytes())
}

/// Refuse a component stream's header, or name the component it is for (XEP-0114 §3).
///
/// A clear-text component stream is accepted from a loopback address only (IPv4-mapped
/// loopback included), anything else needs a direct-TLS listener (`policy-violation`);
/// the header's `to` must name a configured component (`host-unknown`, also when it is
/// missing).
pub fn accept_header<'a>(
    tls: bool,
    peer: IpAddr,
    to: Option<&str>,
    settings: &'a Settings,
) -> Result<&'a ComponentSettings, StreamError> {
    if !tls && !peer.to_canonical().is_loopback() {
        return Err(StreamError::with_text(
            Condition::PolicyViolation,
            "component streams without TLS are accepted from loopback addresses only",
        ));
    }
    let Some(to) = to else {
        return Err(StreamError::with_text(
            Condition::HostUnknown,
            "a component stream names its component in 'to'",
        ));
    };
    settings
        .component(to)
        .ok_or_else(|| StreamError::new(Condition::HostUnknown))
}

/// Whether an attached component may go on under `settings` (read again after a
/// reload): its domain is not hosted here (`host-gone`), it is still configured
/// (`host-gone`) and with the secret it proved (`not-authorized`).
pub fn still_configured(
    settings: &Settings,
    domain: &str,
    secret: &str,
) -> Result<(), StreamError> {
    let gone = |why: &str| Err(StreamError::with_text(Condition::HostGone, why.to_string()));
    if settings
        .domains
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(domain))
    {
        return gone("the component's domain is now hosted here");
    }
    match settings.component(domain) {
        None => gone("the component is no longer configured"),
        Some(c) if c.secret != secret => Err(StreamError::with_text(
            Condition::NotAuthorized,
            "the component's secret changed",
        )),
        Some(_) => Ok(()),
    }
}

/// What to do with an element a connected component sent.
#[derive(Debug)]
pub enum Verdict {
    /// Route it: the addresses and the stanza, now in `jabber:client`, its `from` and
    /// `to` written as the parsed JIDs (normalised).
    Route { from: Jid, to: Jid, stanza: Element },
    /// Answer it with this stanza error (e.g. a malformed `to`), route nothing.
    Reply(Element),
    /// Drop it silently: a broken error or iq result, which is never answered
    /// (RFC 6120 §8.3.1), only logged.
    Drop(&'static str),
    /// End the stream with this error.
    Fail(StreamError),
}

/// Check an element from the component of `domain`: a stanza (message, presence, iq)
/// in the component (or client) namespace, from a JID of its own domain (else
/// `invalid-from`), with both addresses (RFC 6120 §4.9.3.7: `improper-addressing`, as
/// between servers). A `to` that is not a JID gets `jid-malformed` back, a malformed iq
/// (as [`stanza::iq_is_valid`] checks for clients) `bad-request`; errors are sent from
/// `server` (the server's own domain).
pub fn inbound(el: Element, domain: &str, server: &str) -> Verdict {
    if Kind::of(&el).is_none() {
        return Verdict::Fail(StreamError::with_text(
            Condition::UnsupportedStanzaType,
            el.name().to_string(),
        ));
    }
    if !el.has_ns(ns::COMPONENT) && !el.has_ns(ns::CLIENT) {
        return Verdict::Fail(StreamError::new(Condition::InvalidNamespace));
    }
    let from = match stanza::jid_attr(&el, "from") {
        Ok(Some(f)) if f.domain().as_str().eq_ignore_ascii_case(domain) => f,
        Ok(None) => {
            return Verdict::Fail(StreamError::with_text(
                Condition::ImproperAddressing,
                "a stanza from a component needs 'from'",
            ));
        }
        _ => return Verdict::Fail(StreamError::new(Condition::InvalidFrom)),
    };
    let mut el = into_ns(el, ns::CLIENT);
    // the sender's own address, normalised: errors go back to it
    stanza::set_attr(&mut el, "from", from.as_str());
    let reply = |el: &Element, cond: ErrorCondition, text: &str, drop: &'static str| {
        match stanza::error_reply(el, cond, Some(text)) {
            Some(mut r) => {
                stanza::set_attr(&mut r, "from", server);
                Verdict::Reply(r)
            }
            None => Verdict::Drop(drop),
        }
    };
    let to = match stanza::jid_attr(&el, "to") {
        Ok(Some(to)) => to,
        Ok(None) => {
            return Verdict::Fail(StreamError::with_text(
                Condition::ImproperAddressing,
                "a stanza from a component needs 'to'",
            ));
        }
        Err(_) => {
            return reply(
                &el,
                ErrorCondition::JidMalformed,
                "malformed 'to'",
                "an error or iq result with a malformed 'to'",
            );
        }
    };
    if el.name() == "iq" && !stanza::iq_is_valid(&el) {
        return reply(
            &el,
            ErrorCondition::BadRequest,
            "malformed iq",
            "a malformed iq result",
        );
    }
    stanza::set_attr(&mut el, "to", to.as_str());
    Verdict::Route {
        from,
        to,
        stanza: el,
    }
}

/// The element with every part in a stream namespace (`jabber:client` or
/// `jabber:component:accept`) moved to `to`; other namespaces are kept.
pub fn into_ns(mut el: Element, to: &str) -> Element {
    let is_stream_ns = el.has_ns(ns::CLIENT) || el.has_ns(ns::COMPONENT);
    if !is_stream_ns {
        return el;
    }
    let mut out = Element::bare(el.name(), to);
    *out.attrs_mut() = el.attrs().clone();
    for node in el.take_nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(into_ns(child, to));
            }
            Node::Text(t) => out.append_text_node(t),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &str) -> Element {
        s.parse().expect("xml")
    }

    #[test]
    fn handshake_per_xep_0114_example_3() {
        // XEP-0114 example 3: stream id 3BF96D32; the secret behind the example's value
        // is "test" (`printf 3BF96D32test | sha1sum`)
        assert_eq!(
            handshake_digest("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
        assert!(handshake_ok(
            "3BF96D32",
            "test",
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        ));
        let d = handshake_digest("3BF96D32", "sh4k3sp34r3");
        assert_eq!(d, "684d86ce2263c38ce39cf9cd6226805020596251");
        assert!(handshake_ok("3BF96D32", "sh4k3sp34r3", &d));
        assert!(handshake_ok("3BF96D32", "sh4k3sp34r3", &d.to_uppercase()));
        assert!(handshake_ok("3BF96D32", "sh4k3sp34r3", &format!(" {d}\n")));
        assert!(!handshake_ok("3BF96D32", "wrong", &d));
        assert!(!handshake_ok("3BF96D33", "sh4k3sp34r3", &d));
        assert!(!handshake_ok("3BF96D32", "sh4k3sp34r3", ""));
        assert!(!handshake_ok("3BF96D32", "sh4k3sp34r3", &d[..39]));
    }

    #[test]
    fn stanzas_from_the_own_domain_are_routed_in_the_client_namespace() {
        let m = el(
            "<message xmlns='jabber:component:accept' from='#c%irc@irc.example' \
                    to='alice@example.org' type='groupchat'><body>hi</body>\
                    <x xmlns='urn:other'><y/></x></message>",
        );
        let Verdict::Route { from, to, stanza } = inbound(m, "IRC.example", "example.org") else {
            panic!("not routed")
        };
        assert_eq!(from.to_string(), "#c%irc@irc.example");
        assert_eq!(to.to_string(), "alice@example.org");
        assert!(stanza.is("message", ns::CLIENT));
        assert!(stanza.get_child("body", ns::CLIENT).is_some());
        let x = stanza.get_child("x", "urn:other").expect("kept");
        assert!(x.get_child("y", "urn:other").is_some());
        assert_eq!(stanza.attr("type"), Some("groupchat"));
    }

    #[test]
    fn bad_addresses_and_elements() {
        let cond = |v: Verdict| match v {
            Verdict::Fail(e) => Some(e.condition),
            _ => None,
        };
        let c = |x: &str| el(&format!("<{x}"));
        // another domain's JID, a subdomain, a malformed one: invalid-from
        for from in ["a@example.org", "sub.irc.example", "@@"] {
            let v = inbound(
                c(&format!(
                    "message xmlns='jabber:component:accept' from='{from}' to='a@b'/>"
                )),
                "irc.example",
                "example.org",
            );
            assert_eq!(cond(v), Some(Condition::InvalidFrom), "{from}");
        }
        let v = inbound(
            c("message xmlns='jabber:component:accept' to='a@b'/>"),
            "irc.example",
            "example.org",
        );
        assert_eq!(cond(v), Some(Condition::ImproperAddressing));
        let v = inbound(
            c("iq xmlns='jabber:component:accept' from='irc.example' type='get' id='1'/>"),
            "irc.example",
            "example.org",
        );
        assert_eq!(cond(v), Some(Condition::ImproperAddressing));
        let v = inbound(
            c("foo xmlns='jabber:component:accept' from='irc.example' to='a@b'/>"),
            "irc.example",
            "example.org",
        );
        assert_eq!(cond(v), Some(Condition::UnsupportedStanzaType));
        let v = inbound(
            c("message xmlns='urn:x' from='irc.example' to='a@b'/>"),
            "irc.example",
            "example.org",
        );
        assert_eq!(cond(v), Some(Condition::InvalidNamespace));
        // a malformed 'to' is the sender's stanza error, not the stream's
        let v = inbound(
            c("message xmlns='jabber:component:accept' from='u@irc.example' to='a@@b' id='7'/>"),
            "irc.example",
            "example.org",
        );
        let Verdict::Reply(r) = v else {
            panic!("no reply")
        };
        assert_eq!(r.attr("type"), Some("error"));
        assert_eq!(r.attr("to"), Some("u@irc.example"));
        assert_eq!(r.attr("from"), Some("example.org"));
        let err = r.get_child("error", ns::CLIENT).expect("error");
        assert!(err.has_child("jid-malformed", ns::STANZAS));
        // an error or an iq result is never answered (RFC 6120 §8.3.1), not even with
        // an empty stanza
        for bad in [
            "message xmlns='jabber:component:accept' from='u@irc.example' to='a@@b' type='error'/>",
            "iq xmlns='jabber:component:accept' from='u@irc.example' to='a@@b' type='result' id='1'/>",
            "iq xmlns='jabber:component:accept' from='u@irc.example' to='a@@b' type='error' id='1'/>",
        ] {
            let v = inbound(c(bad), "irc.example", "example.org");
            assert!(matches!(v, Verdict::Drop(_)), "{bad}: {v:?}");
        }
    }

    #[test]
    fn malformed_iqs_get_bad_request_as_from_clients() {
        let v = |x: &str| {
            inbound(
                el(&format!(
                    "<iq xmlns='jabber:component:accept' from='u@irc.example' to='a@example.org' {x}"
                )),
                "irc.example",
                "example.org",
            )
        };
        for bad in [
            "type='get'><q xmlns='q'/></iq>",
            "type='get' id='1'/>",
            "type='set' id='1'><q xmlns='q'/><r xmlns='r'/></iq>",
            "type='fetch' id='1'><q xmlns='q'/></iq>",
        ] {
            let Verdict::Reply(r) = v(bad) else {
                panic!("{bad} not answered")
            };
            let err = r.get_child("error", ns::CLIENT).expect("error");
            assert!(err.has_child("bad-request", ns::STANZAS), "{bad}");
            assert_eq!(r.attr("to"), Some("u@irc.example"));
            assert_eq!(r.attr("from"), Some("example.org"));
        }
        // a malformed result: dropped, never answered
        let bad_result = v("type='result' id='1'><a xmlns='q'/><b xmlns='q'/></iq>");
        assert!(matches!(bad_result, Verdict::Drop(_)), "{bad_result:?}");
        assert!(matches!(
            v("type='get' id='1'><q xmlns='q'/></iq>"),
            Verdict::Route { .. }
        ));
    }

    #[test]
    fn routed_addresses_are_normalised() {
        let m = el(
            "<message xmlns='jabber:component:accept' from='U@IRC.Example/R' \
                    to='Alice@Example.ORG/x'><body>hi</body></message>",
        );
        let Verdict::Route { from, to, stanza } = inbound(m, "irc.example", "example.org") else {
            panic!("not routed")
        };
        assert_eq!(stanza.attr("from"), Some(from.as_str()));
        assert_eq!(stanza.attr("to"), Some(to.as_str()));
        assert_eq!(stanza.attr("from"), Some("u@irc.example/R"));
        assert_eq!(stanza.attr("to"), Some("alice@example.org/x"));
    }

    fn settings() -> Settings {
        Settings {
            domains: vec![crate::config::DomainSettings::named("example.org")],
            components: vec![ComponentSettings {
                name: "irc.example.org".into(),
                secret: "long-secret".into(),
                ..ComponentSettings::default()
            }],
            ..Settings::default()
        }
    }

    #[test]
    fn headers_clear_text_from_loopback_only_and_to_a_configured_component() {
        let s = settings();
        let lo4: IpAddr = "127.0.0.2".parse().expect("ip");
        let lo6: IpAddr = "::1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let far: IpAddr = "192.0.2.1".parse().expect("ip");
        let far_mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let cond = |r: Result<&ComponentSettings, StreamError>| r.err().map(|e| e.condition);
        for ip in [lo4, lo6, mapped] {
            let c = accept_header(false, ip, Some("IRC.example.org"), &s).expect("accepted");
            assert_eq!(c.name, "irc.example.org");
        }
        for ip in [far, far_mapped] {
            assert_eq!(
                cond(accept_header(false, ip, Some("irc.example.org"), &s)),
                Some(Condition::PolicyViolation),
                "{ip}"
            );
            // over TLS from anywhere
            assert!(accept_header(true, ip, Some("irc.example.org"), &s).is_ok());
        }
        assert_eq!(
            cond(accept_header(false, lo4, None, &s)),
            Some(Condition::HostUnknown)
        );
        assert_eq!(
            cond(accept_header(false, lo4, Some("other.example.org"), &s)),
            Some(Condition::HostUnknown)
        );
        assert_eq!(
            cond(accept_header(false, lo4, Some("example.org"), &s)),
            Some(Condition::HostUnknown)
        );
    }

    #[test]
    fn a_reload_ends_components_it_no_longer_allows() {
        let mut s = settings();
        let check = |s: &Settings, secret: &str| {
            still_configured(s, "irc.example.org", secret)
                .err()
                .map(|e| e.condition)
        };
        assert_eq!(check(&s, "long-secret"), None);
        assert_eq!(check(&s, "old-secret"), Some(Condition::NotAuthorized));
        // the domain is hosted now: it cannot pose as its users any longer
        s.domains
            .push(crate::config::DomainSettings::named("IRC.example.org"));
        assert_eq!(check(&s, "long-secret"), Some(Condition::HostGone));
        let mut s = settings();
        s.components.clear();
        assert_eq!(check(&s, "long-secret"), Some(Condition::HostGone));
    }

    #[test]
    fn the_way_out_reads_as_the_component_namespace() {
        let m = el(
            "<message xmlns='jabber:client' to='u@irc.example'><body>x</body>\
                    <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        let out = crate::xml::writer::to_bytes_in(&m, ns::CLIENT);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("<message to="), "{text}");
        // wrapped the way the component's stream does, it parses in its namespace
        let wrapped = el(&format!("<w xmlns='jabber:component:accept'>{text}</w>"));
        let back = wrapped.children().next().expect("child");
        assert!(back.is("message", ns::COMPONENT));
        assert!(back.get_child("body", ns::COMPONENT).is_some());
        assert!(
            back.get_child("active", "http://jabber.org/protocol/chatstates")
                .is_some()
        );
    }
}

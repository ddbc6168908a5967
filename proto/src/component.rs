//! Trusted components (XEP-0114): the handshake, and what a component may send.
//!
//! A component opens a `jabber:component:accept` stream to its own domain, proves the
//! shared secret with `<handshake>hex(SHA-1(stream id + secret))</handshake>`, and then
//! sends stanzas from any JID of its domain. Inside the server every stanza is in
//! `jabber:client`: [`inbound`] maps what the component sends, and the component's
//! writer maps the way out (`xml::writer::to_bytes_in`).

use crate::auth::scram::constant_time_eq;
use crate::ns;
use crate::stanza::{self, ErrorCondition, Kind};
use crate::stream::error::{Condition, StreamError};
use minidom::{Element, Node};
use sha1::{Digest, Sha1};
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

/// What to do with an element a connected component sent.
#[derive(Debug)]
pub enum Verdict {
    /// Route it: the addresses and the stanza, now in `jabber:client`.
    Route { from: Jid, to: Jid, stanza: Element },
    /// Answer it with this stanza error (e.g. a malformed `to`), route nothing.
    Reply(Element),
    /// End the stream with this error.
    Fail(StreamError),
}

/// Check an element from the component of `domain`: a stanza (message, presence, iq)
/// in the component (or client) namespace, from a JID of its own domain (else
/// `invalid-from`), with both addresses (RFC 6120 §4.9.3.7: `improper-addressing`, as
/// between servers). A `to` that is not a JID gets `jid-malformed` back.
pub fn inbound(el: Element, domain: &str) -> Verdict {
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
    let el = into_ns(el, ns::CLIENT);
    match stanza::jid_attr(&el, "to") {
        Ok(Some(to)) => Verdict::Route {
            from,
            to,
            stanza: el,
        },
        Ok(None) => Verdict::Fail(StreamError::with_text(
            Condition::ImproperAddressing,
            "a stanza from a component needs 'to'",
        )),
        Err(_) => match stanza::error_reply(&el, ErrorCondition::JidMalformed, None) {
            Some(mut r) => {
                // the error goes back to the sender; it comes from the server
                stanza::remove_attr(&mut r, "from");
                Verdict::Reply(r)
            }
            None => Verdict::Reply(Element::bare("message", ns::CLIENT)),
        },
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
        let Verdict::Route { from, to, stanza } = inbound(m, "IRC.example") else {
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
            );
            assert_eq!(cond(v), Some(Condition::InvalidFrom), "{from}");
        }
        let v = inbound(
            c("message xmlns='jabber:component:accept' to='a@b'/>"),
            "irc.example",
        );
        assert_eq!(cond(v), Some(Condition::ImproperAddressing));
        let v = inbound(
            c("iq xmlns='jabber:component:accept' from='irc.example' type='get' id='1'/>"),
            "irc.example",
        );
        assert_eq!(cond(v), Some(Condition::ImproperAddressing));
        let v = inbound(
            c("foo xmlns='jabber:component:accept' from='irc.example' to='a@b'/>"),
            "irc.example",
        );
        assert_eq!(cond(v), Some(Condition::UnsupportedStanzaType));
        let v = inbound(
            c("message xmlns='urn:x' from='irc.example' to='a@b'/>"),
            "irc.example",
        );
        assert_eq!(cond(v), Some(Condition::InvalidNamespace));
        // a malformed 'to' is the sender's stanza error, not the stream's
        let v = inbound(
            c("message xmlns='jabber:component:accept' from='u@irc.example' to='a@@b' id='7'/>"),
            "irc.example",
        );
        let Verdict::Reply(r) = v else {
            panic!("no reply")
        };
        assert_eq!(r.attr("type"), Some("error"));
        assert_eq!(r.attr("to"), Some("u@irc.example"));
        let err = r.get_child("error", ns::CLIENT).expect("error");
        assert!(err.has_child("jid-malformed", ns::STANZAS));
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

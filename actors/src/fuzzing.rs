//! Fuzz targets: the code that reads what a peer sends, driven with arbitrary bytes.
//!
//! Each target panics when an invariant breaks (and, of course, when the code under
//! test panics). They are run two ways: by cargo-fuzz (`fuzz/`, coverage-guided, needs a
//! nightly toolchain), and by `cargo test` (`actors/tests/fuzz_props.rs`) over a fixed
//! corpus plus pseudo-random mutations, so that the ordinary test run exercises them.

use crate::features::{self, Entity, Env, Who};
use crate::signals::Signal;
use minidom::Element;
use std::sync::OnceLock;
use xmppd_proto::auth::legacy;
use xmppd_proto::auth::sasl::{self, Claim, DecoyKey, Exchange, Mech, Step};
use xmppd_proto::auth::scram::Credentials;
use xmppd_proto::component;
use xmppd_proto::net::tls::ChannelBinding;
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition};
use xmppd_proto::xml::fast_parser::FastParser;
use xmppd_proto::xml::stream_parser::{Limits, StreamEvent};

/// A stream header the stanza targets put in front of their input.
pub const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Parse `data` fed in pieces: the whole result (events, then the error if any).
fn parse_chunked(
    data: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
) -> (Vec<String>, Option<String>) {
    let mut p = FastParser::new(Limits::default());
    let mut out = Vec::new();
    let mut rest = data;
    let mut err = None;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if let Err(e) = p.feed(chunk, &mut out) {
            // an error is final: the parser keeps refusing
            assert!(
                p.feed(b"<x/>", &mut Vec::new()).is_err(),
                "parser recovered"
            );
            err = Some(format!("{:?}", e.condition));
            break;
        }
    }
    (out.iter().map(|e| format!("{e:?}")).collect(), err)
}

/// The stream parser on arbitrary bytes, in arbitrary pieces. The first byte picks the
/// piece sizes. Invariants: no panic; a header comes first; for inputs too small to reach
/// any byte bound, the outcome does not depend on how the bytes were split.
pub fn stream_parser(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    // pieces from 1 to 16 bytes, following the seed
    let mut state = seed as u32 | 1;
    let mut sizes = std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some((state % 16) as usize + 1)
    });
    let (events, err) = parse_chunked(body, &mut sizes);
    if let Some(first) = events.first() {
        assert!(first.starts_with("Header"), "first event {first}");
    }
    let headers = events.iter().filter(|e| e.starts_with("Header")).count();
    assert!(headers <= 1, "{headers} headers");
    if body.len() < Limits::default().max_token {
        let (whole, whole_err) = parse_chunked(body, &mut std::iter::empty());
        assert_eq!(events, whole, "events depend on chunking");
        assert_eq!(err, whole_err, "errors depend on chunking");
    }
}

/// Parse `HEADER + data` into stanzas (what a session would get).
pub fn stanzas_of(data: &[u8]) -> Vec<Element> {
    let mut p = FastParser::new(Limits::default());
    let mut out = Vec::new();
    if p.feed(HEADER.as_bytes(), &mut out).is_err() {
        return Vec::new();
    }
    let _ = p.feed(data, &mut out);
    out.into_iter()
        .filter_map(|e| match e {
            StreamEvent::Stanza(el) => Some(el),
            _ => None,
        })
        .collect()
}

/// What we write must read back as the same element: escaping is complete.
fn round_trips(el: &Element) {
    let bytes = xmppd_proto::xml::writer::to_bytes(el);
    assert!(!bytes.is_empty(), "element did not serialise");
    let mut p = FastParser::new(Limits {
        // what the server writes may be larger than what it accepts
        max_stanza: usize::MAX / 2,
        max_depth: 1000,
        max_token: 1 << 20,
        max_attributes: 1 << 16,
    });
    let mut out = Vec::new();
    p.feed(HEADER.as_bytes(), &mut out).expect("header");
    p.feed(&bytes, &mut out).unwrap_or_else(|e| {
        panic!(
            "our own output does not parse ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let back = out.into_iter().find_map(|e| match e {
        StreamEvent::Stanza(el) => Some(el),
        _ => None,
    });
    // the same wire form again (`xml:lang` is a plain attribute on built elements and a
    // namespaced one on parsed ones, so compare what goes out)
    let again = back.as_ref().map(xmppd_proto::xml::writer::to_bytes);
    assert_eq!(
        again.as_deref(),
        Some(&bytes[..]),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

fn legacy_creds() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| Credentials::derive_with_salt("pencil", &[7; 16], 4096, true))
}

/// The stanza handlers that are pure functions, on every stanza `data` parses into.
/// Invariants: no panic; every element they produce serialises and reads back equal.
pub fn stanza(data: &[u8]) {
    for el in stanzas_of(data) {
        round_trips(&el);
        for cond in [
            ErrorCondition::ServiceUnavailable,
            ErrorCondition::JidMalformed,
            ErrorCondition::ResourceConstraint,
        ] {
            if let Some(r) = stanza::error_reply(&el, cond, Some("fuzz <&'\">")) {
                round_trips(&r);
                assert_eq!(r.attr("type"), Some("error"));
                // never an error in answer to an error
                assert_ne!(el.attr("type"), Some("error"), "error reply to an error");
            }
        }
        let _ = stanza::jid_attr(&el, "to");
        let _ = stanza::jid_attr(&el, "from");
        let _ = stanza::Kind::of(&el);
        if let Some(sig) = Signal::from_stanza(el.clone()) {
            let _ = sig.from();
            let _ = sig.to();
            if let Some(b) = sig.bounce(ErrorCondition::RecipientUnavailable, None) {
                round_trips(b.stanza());
                // a bounce is never bounced again
                assert!(
                    b.bounce(ErrorCondition::RecipientUnavailable, None)
                        .is_none(),
                    "bounce of a bounce"
                );
            }
        }
        let settings = xmppd_proto::config::Settings::default();
        let env = Env::new(&settings, "localhost");
        for to in [Entity::Server, Entity::Account, Entity::Session] {
            if let Some(r) = features::serve(&env, to, Who::Anyone, &el) {
                round_trips(&r);
            }
        }
        // what a component sends (XEP-0114), as the component of `localhost`
        let _ = component::handshake_ok("0123456789abcdef", "secret", &el.text());
        match component::inbound(el.clone(), "gw.localhost", "localhost") {
            component::Verdict::Route { from, stanza, .. } => {
                round_trips(&stanza);
                assert!(stanza.has_ns(ns::CLIENT), "routed outside jabber:client");
                assert!(from.domain().as_str().eq_ignore_ascii_case("gw.localhost"));
                // and back out to a component: it reads the same element in its namespace
                let out = xmppd_proto::xml::writer::to_bytes_in(&stanza, ns::CLIENT);
                let wrapped = format!(
                    "<w xmlns='{}'>{}</w>",
                    ns::COMPONENT,
                    String::from_utf8_lossy(&out)
                );
                let back: Element = wrapped.parse().expect("written for a component");
                let back = back.children().next().cloned().expect("one child");
                // (compared as written: the parser may split text nodes differently)
                let to_bytes = xmppd_proto::xml::writer::to_bytes;
                assert_eq!(
                    to_bytes(&component::into_ns(back, ns::CLIENT)),
                    to_bytes(&stanza)
                );
            }
            component::Verdict::Reply(r) => {
                round_trips(&r);
                // never an answer to an error
                assert_eq!(r.attr("type"), Some("error"));
                assert_ne!(el.attr("type"), Some("error"), "an error answered");
            }
            component::Verdict::Drop(_) | component::Verdict::Fail(_) => {}
        }
        let _ = crate::features::single_payload(&el);
        if let Ok(req) = legacy::parse(&el) {
            let _ = legacy::verify(&req, legacy_creds(), "0123456789abcdef");
        }
        // in-band registration's decisions on whatever the query holds
        if let Some(q) = el.get_child("query", xmppd_proto::ns::IQ_REGISTER) {
            use xmppd_proto::xep::register::{self, SetRequest};
            if let Ok(SetRequest::Fields(f)) = register::parse_set(q) {
                let _ = register::password_change("alice", true, f.clone());
                if let Ok(s) = register::signup(f) {
                    assert!(!s.username.is_empty() && !s.password.is_empty());
                }
            }
        }
        // what the All Info log shows of it
        let _ = xmppd_proto::xml::log_mask::masked(&xmppd_proto::xml::writer::to_string(&el));
    }
}

fn sasl_creds() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| Credentials::derive_with_salt("pencil", &[9; 16], 4096, false))
}

fn decoy() -> &'static DecoyKey {
    static K: OnceLock<DecoyKey> = OnceLock::new();
    K.get_or_init(|| DecoyKey([3; 32]))
}

/// Split `data` into length-prefixed messages: `[len][len bytes]...`; what is left over
/// is the last message.
pub fn frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = (len as usize).min(rest.len());
        v.push(&rest[..n]);
        data = &rest[n..];
    }
    v
}

/// A SASL exchange with arbitrary client data. Byte 0 picks the mechanism (all six,
/// with and without stored credentials and channel binding); the rest is framed into
/// the initial response and the responses. Invariants: no panic; a success names the
/// account that was claimed (never another), and none comes from a wrong password.
pub fn sasl(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mech = Mech::ALL[(sel as usize) % Mech::ALL.len()];
    let with_creds = sel & 0x10 != 0;
    let cb = if sel & 0x20 != 0 {
        ChannelBinding {
            exporter: Some(vec![1; 32]),
            endpoint: Some(vec![2; 32]),
            ..ChannelBinding::default()
        }
    } else {
        ChannelBinding::default()
    };
    let msgs = frames(rest);
    let Some((first, more)) = msgs.split_first() else {
        return;
    };
    // the connection checks the shape of a SCRAM client-first-message before rsasl
    // sees it (rsasl 2.3 panics on some malformed ones)
    if !matches!(mech, Mech::Plain | Mech::Anonymous)
        && !xmppd_proto::auth::scram_messages::scram_client_first_ok(first)
    {
        return;
    }
    let Ok(claim) = sasl::claim(mech, first) else {
        return;
    };
    let creds = with_creds.then(|| sasl_creds().clone());
    let Ok(mut ex) = Exchange::start(mech, &claim, "localhost", creds, cb, decoy(), 4096) else {
        return;
    };
    for (i, m) in std::iter::once(first).chain(more.iter()).enumerate() {
        // the same check the connection makes on the client-final-message
        if !matches!(mech, Mech::Plain | Mech::Anonymous)
            && i == 1
            && !xmppd_proto::auth::scram_messages::scram_client_final_ok(m)
        {
            return;
        }
        match ex.step(m) {
            Step::Challenge(_) => {}
            Step::Success(who, _) => {
                match &claim {
                    Claim::User(u) => {
                        assert_eq!(&who.username, u, "authenticated as someone else");
                        assert!(with_creds, "success without an account");
                        // only PLAIN can be guessed by a fuzzer: with the right password
                        assert!(
                            mech != Mech::Plain || first.ends_with(b"\0pencil"),
                            "PLAIN success with a wrong password"
                        );
                    }
                    Claim::Anonymous => assert!(who.anonymous),
                }
                return;
            }
            Step::Failure(_) => return,
        }
    }
}

/// Starting points for the fuzzers and the property tests.
pub fn stream_seeds() -> Vec<Vec<u8>> {
    let h = HEADER;
    [
        format!("{h}<message to='a@b'><body>hi &amp; bye</body></message></stream:stream>"),
        format!("{h}<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq> <presence/>"),
        format!("{h}<c:message xmlns:c='jabber:client'><c:body>x</c:body></c:message>"),
        format!("{h}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        format!("{h}<message><![CDATA[<x>]]>&#x1F600;&#65;</message>"),
        format!("{h}<a><b><c><d/></c></b></a>"),
        "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream/>".to_string(),
        format!("{h}<message><!-- c --></message><?pi x?>"),
        "<foobar:stream xmlns:foobar='http://etherx.jabber.org/streams'>".to_string(),
        "<stream:stream xmlns:stream='urn:evil' xmlns='jabber:client'>".to_string(),
    ]
    .into_iter()
    .map(|s| {
        let mut v = vec![0x5a];
        v.extend_from_slice(s.as_bytes());
        v
    })
    .collect()
}

pub fn stanza_seeds() -> Vec<Vec<u8>> {
    [
        "<message to='bob@localhost/r' from='alice@localhost/x' type='chat' id='m1'><body>hi</body></message>",
        "<iq type='get' id='1' to='localhost' from='a@localhost/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        "<iq type='get' id='2' to='localhost' from='a@localhost/r'><query xmlns='http://jabber.org/protocol/disco#items' node='x'/></iq>",
        "<iq type='get' id='3' from='a@localhost/r' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='get' id='4' from='a@localhost/r' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
        "<iq type='set' id='5' from='a@localhost/r'><query xmlns='jabber:iq:auth'><username>alice</username><password>pencil</password><resource>r</resource></query></iq>",
        "<iq type='set' id='6'><query xmlns='jabber:iq:auth'><username>alice</username><digest>abc</digest><resource>r</resource></query></iq>",
        "<presence type='subscribe' from='a@localhost' to='b@localhost'/>",
        "<message type='error' from='a@localhost' to='b@localhost'><error type='cancel'/></message>",
        "<iq type='result' id='7' from='a@localhost/r' to='b@localhost/q'/>",
        "<iq type='set' id='8'><query xmlns='jabber:iq:register'><username>bill</username><password>pw</password></query></iq>",
        "<iq type='set' id='9'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>jabber:iq:register</value></field><field var='username'><value>bill</value></field><field var='password' type='text-private'><value>pw</value></field></x></query></iq>",
        "<iq type='set' id='10'><query xmlns='jabber:iq:register'><remove/></query></iq>",
        "<message to='b@localhost' from='a@localhost/r' id='&apos;&lt;'><body>&lt;/body&gt;</body></message>",
    ]
    .into_iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub fn sasl_seeds() -> Vec<Vec<u8>> {
    let framed = |sel: u8, msgs: &[&[u8]]| {
        let mut v = vec![sel];
        for m in msgs {
            v.push(m.len().min(255) as u8);
            v.extend_from_slice(&m[..m.len().min(255)]);
        }
        v
    };
    let plain = Mech::ALL
        .iter()
        .position(|m| *m == Mech::Plain)
        .unwrap_or(0) as u8;
    let anon = Mech::ALL
        .iter()
        .position(|m| *m == Mech::Anonymous)
        .unwrap_or(0) as u8;
    let s256 = Mech::ALL
        .iter()
        .position(|m| *m == Mech::ScramSha256)
        .unwrap_or(0) as u8;
    let s256p = Mech::ALL
        .iter()
        .position(|m| *m == Mech::ScramSha256Plus)
        .unwrap_or(0) as u8;
    vec![
        framed(plain | 0x10, &[b"\0alice\0pencil"]),
        framed(plain, &[b"admin\0alice\0pencil"]),
        framed(anon, &[b"trace"]),
        framed(
            s256 | 0x10,
            &[
                b"n,,n=alice,r=abcdefghijklmnop",
                b"c=biws,r=abcdefghijklmnopXXXX,p=AAAA",
            ],
        ),
        framed(
            s256p | 0x30,
            &[
                b"p=tls-exporter,,n=alice,r=abc",
                b"c=cD10bHMtZXhwb3J0ZXIsLAEBAQE=,r=abcX,p=AAAA",
            ],
        ),
        framed(s256, &[b"y,,n=al=2Cice,r=x"]),
    ]
}

/// The TLS record layer on arbitrary bytes. Byte 0 picks TLS 1.2 or 1.3 and the AEAD
/// ([`RecordLayer::mirrored_pair`]); the rest is framed ([`frames`]). A frame's first
/// byte says what it is: even, raw bytes for `open`; odd, a record the peer seals with
/// the type and content that follow (so the inner content is fuzzed past
/// authentication); either way fed in pieces of `kind / 2` bytes. Invariants: no panic;
/// what the layer writes on its own opens cleanly at the peer; an error (other than the
/// peer's own alert) leaves exactly the alert it names for the peer.
pub fn record_layer(data: &[u8]) {
    use xmppd_proto::net::record_layer::{Event, RecordError, RecordLayer};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (mut peer, mut layer) = RecordLayer::mirrored_pair(sel);
    for f in frames(rest) {
        let Some((&kind, body)) = f.split_first() else {
            continue;
        };
        let mut wire = if kind & 1 == 0 {
            body.to_vec()
        } else {
            let (ty, content) = body.split_first().map_or((23, &[][..]), |(t, c)| (*t, c));
            let mut w = Vec::new();
            if peer.seal_with_type(content, ty, &mut w).is_err() {
                return;
            }
            w
        };
        let step = usize::from(kind >> 1).max(1);
        for chunk in wire.chunks_mut(step) {
            let r = layer.open(chunk, |_| {});
            let out = layer.take_outgoing();
            match r {
                Ok(Some(Event::Closed)) => return,
                Ok(None) => {
                    if let Some(mut out) = out {
                        let r = peer.open(&mut out, |_| {});
                        assert_eq!(r, Ok(None), "the peer refuses our records");
                    }
                }
                Err(RecordError::Alert(_)) => return,
                Err(e) => {
                    let desc = e.alert().expect("an alert for every error of ours");
                    let mut out = out.expect("the alert is queued");
                    let r = peer.open(&mut out, |_| {});
                    assert_eq!(r, Err(RecordError::Alert(desc)), "after {e}");
                    return;
                }
            }
        }
    }
}

pub fn record_layer_seeds() -> Vec<Vec<u8>> {
    use xmppd_proto::net::record_layer::RecordLayer;
    let sealed = |ty: u8, content: &[u8]| [&[1, ty][..], content].concat();
    let mut seeds = Vec::new();
    for sel in 0..4u8 {
        let frames: [Vec<u8>; 7] = [
            sealed(23, b"<message><body>hi</body></message>"),
            // KeyUpdate (update_requested) and data after it
            sealed(22, &[24, 0, 0, 1, 1]),
            sealed(23, b"<presence/>"),
            // a TLS 1.2 ClientHello, split over two records
            sealed(22, &[1, 0, 0, 4, 3]),
            sealed(22, &[3, 0, 0]),
            sealed(21, &[1, 0]),
            // a raw record header: 16 KiB + 300 bytes
            vec![200, 23, 3, 3, 0x41, 0x2c],
        ];
        let mut v = vec![sel];
        for f in frames {
            v.push(f.len() as u8);
            v.extend_from_slice(&f);
        }
        seeds.push(v);
    }
    // a whole valid record as raw bytes, in pieces of 3
    let (mut a, _) = RecordLayer::mirrored_pair(1);
    let mut w = Vec::new();
    if a.seal(b"<iq type='get' id='1'/>", &mut w).is_ok() {
        let mut v = vec![1, (w.len() + 1) as u8, 6];
        v.extend_from_slice(&w);
        seeds.push(v);
    }
    seeds
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stanza_seeds_pass_the_stanza_target() {
        for seed in super::stanza_seeds() {
            assert!(!super::stanzas_of(&seed).is_empty(), "a seed that parses");
            super::stanza(&seed);
        }
    }
}

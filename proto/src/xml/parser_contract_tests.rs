// The unit tests both stream parsers meet, included by `stream_parser.rs` (rxml, the
// reference) and `fast_parser/mod.rs` (the one `io.rs` runs), each naming its parser `P`.

use super::*;

const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>";

fn parse_all(chunks: &[&[u8]]) -> (Vec<StreamEvent>, Result<(), StreamError>) {
    let mut p = P::new(Limits::default());
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = p.feed(c, &mut out) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

#[test]
fn header_and_stanzas_byte_by_byte() {
    let doc = format!(
        "{HDR}<message to='a@b'><body>hi &amp; bye</body></message> <iq type='get' id='1'/></stream:stream>"
    );
    let bytes: Vec<&[u8]> = doc.as_bytes().chunks(1).collect();
    let (evs, r) = parse_all(&bytes);
    r.expect("parses");
    assert_eq!(evs.len(), 4);
    let StreamEvent::Header(h) = &evs[0] else {
        panic!("header first")
    };
    assert_eq!(h.default_ns.as_deref(), Some("jabber:client"));
    assert_eq!(h.to.as_deref(), Some("localhost"));
    assert_eq!(h.version.as_deref(), Some("1.0"));
    assert_eq!(h.lang.as_deref(), Some("en"));
    let StreamEvent::Stanza(m) = &evs[1] else {
        panic!("stanza")
    };
    assert!(m.is("message", "jabber:client"));
    assert_eq!(
        m.get_child("body", "jabber:client").map(|b| b.text()),
        Some("hi & bye".into())
    );
    assert!(matches!(evs[3], StreamEvent::End));
}

fn err_of(doc: &str) -> Condition {
    let (_, r) = parse_all(&[doc.as_bytes()]);
    r.expect_err("must fail").condition
}

#[test]
fn restricted_xml() {
    assert_eq!(
        err_of(&format!("{HDR}<!-- c --><message/>")),
        Condition::RestrictedXml
    );
    assert_eq!(err_of(&format!("{HDR}<?pi x?>")), Condition::RestrictedXml);
    assert_eq!(
        err_of("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream/>"),
        Condition::RestrictedXml
    );
    assert_eq!(
        err_of(&format!("{HDR}<message><body>&lol;</body></message>")),
        Condition::RestrictedXml
    );
}

#[test]
fn malformed() {
    assert_eq!(
        err_of(&format!("{HDR}<message></iq>")),
        Condition::NotWellFormed
    );
    assert_eq!(
        err_of(&format!("{HDR}<a:message/>")),
        Condition::NotWellFormed
    );
    assert_eq!(
        err_of(&format!("{HDR}<stream:stream>")),
        Condition::NotWellFormed
    );
    assert_eq!(
        err_of("<stream xmlns='jabber:client'>"),
        Condition::InvalidNamespace
    );
}

#[test]
fn invalid_utf8() {
    let mut doc = HDR.as_bytes().to_vec();
    doc.extend_from_slice(b"<message><body>\xff\xfe</body></message>");
    let (_, r) = parse_all(&[&doc]);
    assert_eq!(
        r.expect_err("bad utf8").condition,
        Condition::UnsupportedEncoding
    );
}

#[test]
fn size_and_depth_bounds() {
    let big = format!(
        "{HDR}<message><body>{}</body></message>",
        "x".repeat(300 * 1024)
    );
    assert_eq!(err_of(&big), Condition::PolicyViolation);
    let deep = format!("{HDR}<message>{}", "<a>".repeat(40));
    assert_eq!(err_of(&deep), Condition::PolicyViolation);
    let attr = format!("{HDR}<message to='{}'/>", "a".repeat(10_000));
    assert_eq!(err_of(&attr), Condition::PolicyViolation);
    // an element that never ends is cut off at the bound, not buffered forever
    let mut p = P::new(Limits::default());
    let mut out = Vec::new();
    p.feed(HDR.as_bytes(), &mut out).expect("header");
    p.feed(b"<message><body>", &mut out).expect("open");
    let chunk = vec![b'y'; 1024];
    let mut failed = None;
    for _ in 0..400 {
        if let Err(e) = p.feed(&chunk, &mut out) {
            failed = Some(e.condition);
            break;
        }
    }
    assert_eq!(failed, Some(Condition::PolicyViolation));
}

#[test]
fn many_attributes_are_refused() {
    let attrs: String = (0..100).map(|i| format!(" a{i}='x'")).collect();
    assert_eq!(
        err_of(&format!("{HDR}<message{attrs}/>")),
        Condition::PolicyViolation
    );
    assert_eq!(
        err_of(&format!("{HDR}<message><body{attrs}/></message>")),
        Condition::PolicyViolation
    );
    let hdr = HDR.replace(" to=", &format!("{attrs} to="));
    assert_eq!(err_of(&hdr), Condition::PolicyViolation);
    // a handful is fine
    let few: String = (0..10).map(|i| format!(" a{i}='x'")).collect();
    let (_, r) = parse_all(&[format!("{HDR}<message{few}/>").as_bytes()]);
    r.expect("ten attributes");
}

#[test]
fn opening_tag_that_never_closes_is_bounded() {
    // rxml keeps every attribute of an open tag: it must be cut off long before the
    // stanza bound, between stanzas and inside one
    for prefix in ["<message", "<message><body"] {
        let mut p = P::new(Limits::default());
        let mut out = Vec::new();
        p.feed(HDR.as_bytes(), &mut out).expect("header");
        p.feed(prefix.as_bytes(), &mut out).expect("open");
        let mut fed = 0;
        let mut i = 0u64;
        let err = loop {
            let chunk: String = (0..64)
                .map(|_| {
                    i += 1;
                    format!(" a{i}='{}'", "v".repeat(8))
                })
                .collect();
            fed += chunk.len();
            if let Err(e) = p.feed(chunk.as_bytes(), &mut out) {
                break e;
            }
            assert!(fed < 64 * 1024, "open tag grew to {fed} bytes");
        };
        assert_eq!(err.condition, Condition::PolicyViolation);
    }
    // the stream header too
    let mut p = P::new(Limits::default());
    let mut out = Vec::new();
    p.feed(
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'",
        &mut out,
    )
    .expect("open");
    let err = (0..100_000)
        .find_map(|i| p.feed(format!(" b{i}='xxxx'").as_bytes(), &mut out).err())
        .expect("bounded");
    assert_eq!(err.condition, Condition::PolicyViolation);
}

#[test]
fn whitespace_keepalives_never_fill_a_buffer() {
    let mut p = P::new(Limits::default());
    let mut out = Vec::new();
    p.feed(HDR.as_bytes(), &mut out).expect("header");
    for _ in 0..200_000 {
        p.feed(b" ", &mut out).expect("whitespace");
    }
    p.feed(b"<presence/>", &mut out).expect("presence");
    assert!(matches!(out.last(), Some(StreamEvent::Stanza(_))));
}

#[test]
fn encodings_other_than_utf8() {
    assert_eq!(
        err_of("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>"),
        Condition::UnsupportedEncoding
    );
    let utf16: Vec<u8> = HDR.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    let (_, r) = parse_all(&[&utf16]);
    assert_eq!(
        r.expect_err("utf-16").condition,
        Condition::UnsupportedEncoding
    );
    let mut bom = vec![0xfe, 0xff];
    bom.extend_from_slice(&utf16);
    let (_, r) = parse_all(&[&bom]);
    assert_eq!(
        r.expect_err("utf-16 bom").condition,
        Condition::UnsupportedEncoding
    );
    for bad in [
        &b"\xc0\xaf"[..],        // overlong '/'
        b"\xe0\x80\xbc",         // overlong '<'
        b"\xed\xa0\x80",         // UTF-16 surrogate
        b"\xe2\x82",             // truncated, then markup
        b"\xf8\x88\x80\x80\x80", // 5-byte form
        b"\xf4\x90\x80\x80",     // above U+10FFFF
        b"\x80",                 // lone continuation byte
    ] {
        for place in ["body", "attr", "header"] {
            let mut doc = Vec::new();
            match place {
                "body" => {
                    doc.extend_from_slice(HDR.as_bytes());
                    doc.extend_from_slice(b"<message><body>");
                    doc.extend_from_slice(bad);
                    doc.extend_from_slice(b"</body></message>");
                }
                "attr" => {
                    doc.extend_from_slice(HDR.as_bytes());
                    doc.extend_from_slice(b"<message id='");
                    doc.extend_from_slice(bad);
                    doc.extend_from_slice(b"'/>");
                }
                _ => {
                    doc.extend_from_slice(b"<stream:stream to='");
                    doc.extend_from_slice(bad);
                    doc.extend_from_slice(b"'>");
                }
            }
            let (_, r) = parse_all(&[&doc]);
            assert_eq!(
                r.expect_err("bad utf-8").condition,
                Condition::UnsupportedEncoding,
                "{bad:x?} in {place}"
            );
        }
    }
    // well-formed UTF-8 naming characters XML forbids is not-well-formed
    assert_eq!(
        err_of(&format!("{HDR}<message><body>&#0;</body></message>")),
        Condition::NotWellFormed
    );
    assert_eq!(
        err_of(&format!("{HDR}<message><body>&#x110000;</body></message>")),
        Condition::NotWellFormed
    );
    assert_eq!(
        err_of(&format!("{HDR}<message><body>\u{1}</body></message>")),
        Condition::NotWellFormed
    );
    assert_eq!(
        err_of(&format!("{HDR}<message><body>\u{fffe}</body></message>")),
        Condition::NotWellFormed
    );
}

#[test]
fn stream_prefix_and_namespace() {
    let streams = "http://etherx.jabber.org/streams";
    // the stream prefix bound to another namespace
    assert_eq!(
        err_of("<stream:stream xmlns='jabber:client' xmlns:stream='urn:evil'>"),
        Condition::InvalidNamespace
    );
    // the right namespace under another prefix, or none
    assert_eq!(
        err_of(&format!(
            "<foobar:stream xmlns='jabber:client' xmlns:foobar='{streams}'>"
        )),
        Condition::BadNamespacePrefix
    );
    assert_eq!(
        err_of(&format!("<stream xmlns='{streams}'>")),
        Condition::BadNamespacePrefix
    );
    // the prefix never declared
    assert_eq!(
        err_of("<stream:stream xmlns='jabber:client' to='localhost'>"),
        Condition::BadNamespacePrefix
    );
    // the xml and xmlns prefixes cannot be rebound
    assert_eq!(
        err_of(&format!("{HDR}<message xmlns:xml='urn:evil'/>")),
        Condition::NotWellFormed
    );
    assert_eq!(
        err_of(&format!("{HDR}<message xmlns:xmlns='urn:evil'/>")),
        Condition::NotWellFormed
    );
    // a stream header mid-stream under any prefix
    assert_eq!(
        err_of(&format!("{HDR}<s:stream xmlns:s='{streams}'>")),
        Condition::NotWellFormed
    );
    // a stanza declaring the stream prefix for itself is just a stanza
    let (evs, r) = parse_all(&[format!(
        "{HDR}<message xmlns:stream='urn:evil'><stream:error/></message>"
    )
    .as_bytes()]);
    r.expect("parses");
    let StreamEvent::Stanza(m) = &evs[1] else {
        panic!("stanza")
    };
    assert!(m.has_child("error", "urn:evil"));
}

#[test]
fn restricted_xml_anywhere() {
    // before the header, between stanzas, inside one
    for doc in [
        format!("<!-- c -->{HDR}"),
        "<?target data?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
            .to_string(),
        format!("{HDR}<message><!-- c --></message>"),
        format!("{HDR}<message><?pi?></message>"),
        format!("{HDR}<!DOCTYPE x>"),
        format!("{HDR}<message><body>&ext;</body></message>"),
        format!("{HDR}<message to='&ext;'/>"),
    ] {
        assert_eq!(err_of(&doc), Condition::RestrictedXml, "{doc}");
    }
    // the billion laughs never expands
    let lol = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>\
        <!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>\
        <lolz>&lol2;</lolz>";
    assert_eq!(err_of(lol), Condition::RestrictedXml);
}

#[test]
fn prefixed_stanzas_resolve_namespaces() {
    let doc = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:c='jabber:client' xmlns='jabber:server'><c:message/>";
    let (evs, r) = parse_all(&[doc.as_bytes()]);
    r.expect("ok");
    let StreamEvent::Header(h) = &evs[0] else {
        panic!()
    };
    assert_eq!(h.default_ns.as_deref(), Some("jabber:server"));
    assert_eq!(
        h.prefixes
            .iter()
            .find(|(p, _)| p == "c")
            .map(|(_, n)| n.as_str()),
        Some("jabber:client")
    );
    let StreamEvent::Stanza(m) = &evs[1] else {
        panic!()
    };
    assert!(m.is("message", "jabber:client"));
}

#[test]
fn a_parked_stream_resumes_with_its_namespaces() {
    let hdr = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' xmlns:x='urn:x' to='localhost' version='1.0'>";
    let mut p = P::new(Limits::default());
    let mut out = Vec::new();
    p.feed(hdr.as_bytes(), &mut out).expect("header");
    p.feed(b"<message/>", &mut out).expect("one");
    let parked = p.park().expect("between stanzas");
    drop(p);
    let mut p = P::resume(Limits::default(), &parked);
    let mut out = Vec::new();
    p.feed(b"<message><x:y/></message></stream:stream>", &mut out)
        .expect("resumed");
    assert_eq!(out.len(), 2, "no second header event: {out:?}");
    let StreamEvent::Stanza(m) = &out[0] else {
        panic!("stanza")
    };
    assert!(m.is("message", "jabber:client"));
    assert!(m.has_child("y", "urn:x"));
    assert!(matches!(out[1], StreamEvent::End));
    // mid-stanza there is nothing to park
    let mut p = P::new(Limits::default());
    p.feed(hdr.as_bytes(), &mut out).expect("header");
    p.feed(b"<message><body>", &mut out).expect("partial");
    assert!(p.park().is_none());
}

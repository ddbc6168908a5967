//! Attacks that have hit other XMPP servers, sent over real sockets: each one gets the
//! error RFC 6120 names, and a user who is already logged in is served on. Cases that
//! `c2s_bad_input.rs` covers already are extended here, not repeated.

mod common;
mod hostile_common;
use common::*;
use hostile_common::*;
use std::time::Duration;

// ------------------------------------------------------ XML restrictions (§11) --

#[tokio::test]
async fn dtds_entities_comments_and_processing_instructions() {
    let (d, mut b) = setup().await;
    // the billion laughs, complete: nested entity definitions and their use
    let lol = "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY lol 'lol'>\
        <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\
        <!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>]>\
        <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
        to='localhost' version='1.0'><message><body>&lol2;</body></message>";
    let out = attack(
        fresh(&d, false, "").await,
        &mut b,
        lol.as_bytes(),
        "restricted-xml",
    )
    .await;
    assert!(!out.contains("lollol"), "{out}");
    // an external entity (XXE) never reads the file
    let xxe = "<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>\
        <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
        to='&xxe;' version='1.0'>";
    let out = attack(
        fresh(&d, false, "").await,
        &mut b,
        xxe.as_bytes(),
        "restricted-xml",
    )
    .await;
    assert!(!out.contains("root:"), "{out}");
    // a DTD in the middle of an authenticated stream
    attack(
        fresh(&d, true, "dtd").await,
        &mut b,
        b"<!DOCTYPE x>",
        "restricted-xml",
    )
    .await;
    // entity references beyond the predefined five, in text and in attribute values
    for bad in [
        "<message to='bob@localhost'><body>&nbsp;</body></message>",
        "<message to='bob@localhost' id='&copy;'/>",
        "<message to='bob@localhost'><body>&#x26;lol;&amp;&lol;</body></message>",
    ] {
        attack(
            fresh(&d, true, "ent").await,
            &mut b,
            bad.as_bytes(),
            "restricted-xml",
        )
        .await;
    }
    // comments and processing instructions before the header and inside a stanza
    attack(
        fresh(&d, false, "").await,
        &mut b,
        format!(
            "<!-- hi -->{}",
            HDR.trim_start_matches("<?xml version='1.0'?>")
        )
        .as_bytes(),
        "restricted-xml",
    )
    .await;
    attack(
        fresh(&d, false, "").await,
        &mut b,
        format!(
            "<?php exit ?>{}",
            HDR.trim_start_matches("<?xml version='1.0'?>")
        )
        .as_bytes(),
        "restricted-xml",
    )
    .await;
    attack(
        fresh(&d, true, "pi").await,
        &mut b,
        b"<message to='bob@localhost'><body>x<?pi?></body></message>",
        "restricted-xml",
    )
    .await;
    attack(
        fresh(&d, true, "comment").await,
        &mut b,
        b"<message to='bob@localhost'><!-- x --><body>x</body></message>",
        "restricted-xml",
    )
    .await;
    // none of it reached bob
    nothing_delivered(&mut b).await;

    // the five predefined entities and character references are plain XML: delivered,
    // and re-escaped on the way out
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "ok").await;
    a.send("<message to='bob@localhost/bystander' id='e&amp;1'><body>&lt;&gt;&amp;&quot;&apos;&#65;&#x1F600;</body></message>")
        .await;
    let got = next_non_presence(&mut b).await;
    let el: minidom::Element = got.parse().expect("bob receives well-formed XML");
    assert_eq!(el.attr("id"), Some("e&1"));
    assert_eq!(
        el.get_child("body", "jabber:client").map(|b| b.text()),
        Some("<>&\"'A\u{1F600}".to_string())
    );
}

#[tokio::test]
async fn invalid_utf8_in_every_form() {
    let (d, mut b) = setup().await;
    let forms: [(&str, &[u8]); 7] = [
        ("overlong", b"\xc0\xaf"),
        ("overlong-3", b"\xe0\x80\xbc"),
        ("surrogate", b"\xed\xa0\x80"),
        ("truncated", b"\xe2\x82"),
        ("5-byte", b"\xf8\x88\x80\x80\x80"),
        ("above-10ffff", b"\xf4\x90\x80\x80"),
        ("lone-continuation", b"\x80"),
    ];
    for (i, (name, bad)) in forms.iter().enumerate() {
        // rotate where the bytes go: stream header, before auth, text, attribute value
        let (login, mut input) = match i % 4 {
            0 => (false, b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='local".to_vec()),
            1 => (false, format!("{HDR}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-").into_bytes()),
            2 => (true, b"<message to='bob@localhost/bystander'><body>".to_vec()),
            _ => (true, b"<message to='bob@localhost/bystander' id='".to_vec()),
        };
        input.extend_from_slice(bad);
        input.extend_from_slice(b"'/></body></message>");
        let r = fresh(&d, login, name).await;
        attack(r, &mut b, &input, "unsupported-encoding").await;
    }
    // the encoding declared as something else, and a UTF-16 stream
    attack(
        fresh(&d, false, "").await,
        &mut b,
        HDR.replace("version='1.0'?>", "version='1.0' encoding='ISO-8859-1'?>")
            .as_bytes(),
        "unsupported-encoding",
    )
    .await;
    let utf16: Vec<u8> = HDR.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    attack(
        fresh(&d, false, "").await,
        &mut b,
        &utf16,
        "unsupported-encoding",
    )
    .await;
    // well-formed UTF-8 for a code point XML forbids is not-well-formed
    attack(
        fresh(&d, true, "nul").await,
        &mut b,
        b"<message to='bob@localhost/bystander'><body>&#0;</body></message>",
        "not-well-formed",
    )
    .await;
    attack(
        fresh(&d, true, "ctl").await,
        &mut b,
        b"<message to='bob@localhost/bystander'><body>\x1b[2J</body></message>",
        "not-well-formed",
    )
    .await;
    nothing_delivered(&mut b).await;
}

#[tokio::test]
async fn resource_exhaustion_is_policy_violation() {
    let (d, mut b) = setup().await;
    // deep nesting
    let deep = format!("<message>{}", "<a>".repeat(10_000));
    attack(
        fresh(&d, true, "deep").await,
        &mut b,
        deep.as_bytes(),
        "policy-violation",
    )
    .await;
    // an enormous attribute value, before and after authentication
    let big_attr = format!("<message to='{}'/>", "b".repeat(100_000));
    attack(
        fresh(&d, true, "attr").await,
        &mut b,
        big_attr.as_bytes(),
        "policy-violation",
    )
    .await;
    let big_hdr = HDR.replace("to='localhost'", &format!("to='{}'", "x".repeat(100_000)));
    attack(
        fresh(&d, false, "").await,
        &mut b,
        big_hdr.as_bytes(),
        "policy-violation",
    )
    .await;
    // many attributes
    let many: String = (0..1000).map(|i| format!(" a{i}='x'")).collect();
    attack(
        fresh(&d, true, "many").await,
        &mut b,
        format!("<message{many}/>").as_bytes(),
        "policy-violation",
    )
    .await;
    attack(
        fresh(&d, false, "").await,
        &mut b,
        HDR.replace(" to=", &format!("{many} to=")).as_bytes(),
        "policy-violation",
    )
    .await;
    // a stanza over the size limit made of many small children
    let wide = format!(
        "<message to='bob@localhost'>{}</message>",
        "<x/>".repeat(80_000)
    );
    attack(
        fresh(&d, true, "wide").await,
        &mut b,
        wide.as_bytes(),
        "policy-violation",
    )
    .await;
    // a stream header, and a stanza's opening tag, that never close: the server cuts
    // them off after a few KiB instead of buffering what keeps coming (4 MiB sent)
    for (login, start) in [
        (false, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'".to_string()),
        (true, "<message to='bob@localhost'".to_string()),
    ] {
        let mut r = fresh(&d, login, "open").await;
        r.try_send(start.as_bytes()).await;
        let chunk: String = (0..4096).map(|i| format!(" q{i}='{i}'")).collect();
        let mut sent = 0usize;
        for _ in 0..100 {
            if !r.try_send(chunk.as_bytes()).await {
                break;
            }
            sent += chunk.len();
            if sent > 4 << 20 {
                break;
            }
        }
        let out = r.read_to_close().await;
        assert!(out.contains(&stream_error("policy-violation")), "{out}");
        bystander_ok(&mut b).await;
    }
    nothing_delivered(&mut b).await;
}

// -------------------------------------------- namespaces and stanza smuggling --

#[tokio::test]
async fn namespace_confusion() {
    let (d, mut b) = setup().await;
    let header = HDR.trim_start_matches("<?xml version='1.0'?>");
    // the stream prefix rebound to another namespace
    attack(
        fresh(&d, false, "").await,
        &mut b,
        header
            .replace(
                "xmlns:stream='http://etherx.jabber.org/streams'",
                "xmlns:stream='urn:evil'",
            )
            .as_bytes(),
        "invalid-namespace",
    )
    .await;
    // the streams namespace under another prefix, under none, or never declared
    attack(
        fresh(&d, false, "").await,
        &mut b,
        b"<foobar:stream xmlns='jabber:client' xmlns:foobar='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
        "bad-namespace-prefix",
    )
    .await;
    attack(
        fresh(&d, false, "").await,
        &mut b,
        b"<stream xmlns='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
        "bad-namespace-prefix",
    )
    .await;
    attack(
        fresh(&d, false, "").await,
        &mut b,
        b"<stream:stream xmlns='jabber:client' to='localhost' version='1.0'>",
        "bad-namespace-prefix",
    )
    .await;
    // no default namespace at all
    attack(
        fresh(&d, false, "").await,
        &mut b,
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
        "invalid-namespace",
    )
    .await;
    // stanzas in the wrong namespace, smuggled after a good one, before and after auth
    for (login, bad) in [
        (
            true,
            "<iq to='localhost' type='get' id='ok1'><ping xmlns='urn:xmpp:ping'/></iq><message xmlns='jabber:server' from='admin@localhost' to='bob@localhost/bystander'><body>smuggled</body></message>",
        ),
        (true, "<message xmlns='' to='bob@localhost/bystander'/>"),
        (
            true,
            "<message xmlns='http://etherx.jabber.org/streams' to='bob@localhost/bystander'/>",
        ),
        (
            true,
            "<s:message xmlns:s='jabber:server' to='bob@localhost/bystander'/>",
        ),
        (
            true,
            "<iq xmlns='jabber:component:accept' type='result' id='1' from='localhost' to='bob@localhost/bystander'/>",
        ),
        (
            false,
            "<iq xmlns='jabber:server' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        ),
    ] {
        let input = if login {
            bad.to_string()
        } else {
            format!("{HDR}{bad}")
        };
        attack(
            fresh(&d, login, "ns").await,
            &mut b,
            input.as_bytes(),
            "invalid-namespace",
        )
        .await;
    }
    // nothing reached bob
    nothing_delivered(&mut b).await;
    // a second stream header mid-stream under another prefix
    attack(
        fresh(&d, true, "restart").await,
        &mut b,
        b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' to='localhost' version='1.0'>",
        "not-well-formed",
    )
    .await;
    // and the closing tag followed by a new stream in the same packet
    let mut r = fresh(&d, true, "reopen").await;
    r.try_send(format!("</stream:stream>{header}").as_bytes())
        .await;
    let out = r.read_to_close().await;
    assert!(out.trim_end().ends_with("</stream:stream>"), "{out}");
    assert!(!out.contains("<stream:features"), "no second stream: {out}");
    bystander_ok(&mut b).await;

    // the client namespace under a prefix is the same XML: routed like any message,
    // and the stream prefix declared on a stanza only names its own children
    let (mut a, ajid) = Raw::login(d.starttls, D, "alice", "alice-pw", "prefixed").await;
    a.send("<c:message xmlns:c='jabber:client' to='bob@localhost/bystander' id='p1'><c:body>prefixed</c:body></c:message>")
        .await;
    a.send("<message xmlns:stream='http://etherx.jabber.org/streams' to='bob@localhost/bystander' id='p2'><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></message>")
        .await;
    for id in ["p1", "p2"] {
        let got = next_non_presence(&mut b).await;
        let el: minidom::Element = got.parse().expect("well-formed");
        assert!(el.is("message", "jabber:client"), "{got}");
        assert_eq!(el.attr("id"), Some(id));
        assert_eq!(el.attr("from"), Some(ajid.as_str()));
    }
    // bob's stream is still open: the nested error was just payload
    bystander_ok(&mut b).await;
}

#[tokio::test]
async fn markup_in_values_never_escapes_its_attribute() {
    let (d, mut b) = setup().await;
    let (mut a, ajid) = Raw::login(d.starttls, D, "alice", "alice-pw", "inj").await;
    // values that would end the attribute or element if copied out unescaped
    a.send("<message to='bob@localhost/bystander' id='x&apos;/&gt;&lt;message from=&apos;admin@localhost&apos;&gt;' type='chat'><body>&lt;/body&gt;&lt;/message&gt;&lt;presence type='unavailable'/&gt;</body><thread>&quot;'\"</thread></message>")
        .await;
    let got = next_non_presence(&mut b).await;
    let el: minidom::Element = got.parse().expect("one well-formed stanza");
    assert_eq!(el.attr("id"), Some("x'/><message from='admin@localhost'>"));
    assert_eq!(el.attr("from"), Some(ajid.as_str()));
    assert_eq!(
        el.get_child("body", "jabber:client").map(|b| b.text()),
        Some("</body></message><presence type='unavailable'/>".to_string())
    );
    // exactly one stanza arrived
    nothing_delivered(&mut b).await;
}

// --------------------------------------------------------------- identity --

#[tokio::test]
async fn spoofed_from_is_invalid_from() {
    let (d, mut b) = setup().await;
    for (i, spoof) in [
        // someone else's full and bare JID
        "<message from='bob@localhost/bystander' to='bob@localhost/bystander'><body>it is me</body></message>",
        "<message from='bob@localhost' to='bob@localhost/bystander'/>",
        // another resource of the same account
        "<message from='alice@localhost/other' to='bob@localhost/bystander'/>",
        // the server itself: an iq result and a roster push
        "<iq type='result' id='r1' from='localhost' to='bob@localhost/bystander'/>",
        "<iq type='set' id='push1' from='bob@localhost' to='bob@localhost/bystander'><query xmlns='jabber:iq:roster'><item jid='mallory@evil.example' subscription='both'/></query></iq>",
        // a presence claiming another user
        "<presence from='bob@localhost/bystander'/>",
        // a from that is not even a JID
        "<message from='@@' to='bob@localhost/bystander'/>",
        "<message from='' to='bob@localhost/bystander'/>",
    ]
    .iter()
    .enumerate()
    {
        let r = fresh(&d, true, &format!("spoof{i}")).await;
        attack(r, &mut b, spoof.as_bytes(), "invalid-from").await;
    }
    nothing_delivered(&mut b).await;

    // what a client may send: its own bare or full JID, or none; the server stamps its
    // full JID either way, so a roster push from alice is visibly from alice
    let (mut a, ajid) = Raw::login(d.starttls, D, "alice", "alice-pw", "honest").await;
    a.send("<message from='alice@localhost' to='bob@localhost/bystander' id='m1'/>")
        .await;
    a.send(&format!(
        "<message from='{ajid}' to='bob@localhost/bystander' id='m2'/>"
    ))
    .await;
    a.send("<iq type='set' id='push2' to='bob@localhost/bystander'><query xmlns='jabber:iq:roster'><item jid='mallory@evil.example' subscription='both'/></query></iq>")
        .await;
    for id in ["m1", "m2", "push2"] {
        let got = next_non_presence(&mut b).await;
        let el: minidom::Element = got.parse().expect("xml");
        assert_eq!(el.attr("id"), Some(id), "{got}");
        assert_eq!(el.attr("from"), Some(ajid.as_str()), "{got}");
    }
}

#[tokio::test]
async fn invalid_jids_are_jid_malformed() {
    let (d, mut b) = setup().await;
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "jids").await;
    let long = "n".repeat(1024);
    let bad_tos = [
        "@localhost".to_string(),
        "bob@".to_string(),
        "bob@localhost/".to_string(),
        "/res".to_string(),
        format!("{long}@localhost"),
        format!("bob@localhost/{long}"),
        format!("bob@{}.localhost", "d".repeat(300)),
        "bob\"x@localhost".to_string(),
        "a b@localhost".to_string(),
        "bob@local host".to_string(),
        "bob\u{e000}@localhost".to_string(),
        "bob@localhost/\u{e000}".to_string(),
        "bob\u{200e}@localhost".to_string(),
    ];
    for (i, to) in bad_tos.iter().enumerate() {
        let to = to.replace('"', "&quot;");
        a.send(&format!(
            "<message to='{to}' id='j{i}'><body>x</body></message><iq to='{to}' type='get' id='q{i}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        for id in [format!("j{i}"), format!("q{i}")] {
            let r = a.next_stanza().await;
            assert!(
                r.contains(&format!("id='{id}'"))
                    && r.contains("type='error'")
                    && r.contains("<jid-malformed"),
                "to={to:?}: {r}"
            );
        }
    }
    // the stream is still up and nothing reached bob
    a.send("<iq to='localhost' type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert!(a.next_stanza().await.contains("type='result'"));
    nothing_delivered(&mut b).await;

    // bind: resources over 1023 bytes or with forbidden code points are refused
    for (i, res) in [
        long.clone(),
        "\u{e000}".into(),
        "a\u{200e}b".into(),
        "\u{fdd0}".into(),
    ]
    .iter()
    .enumerate()
    {
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        let ok = r.auth_scram("SCRAM-SHA-256", "alice", "alice-pw").await;
        assert!(ok.starts_with("<success"), "{ok}");
        r.open().await;
        r.send(&format!(
            "<iq type='set' id='b{i}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{res}</resource></bind></iq>"
        ))
        .await;
        let reply = r.next_stanza().await;
        assert!(
            reply.contains("type='error'") && reply.contains("<bad-request"),
            "resource {:?}: {reply}",
            &res[..res.len().min(20)]
        );
        // a valid one still binds on the same stream
        r.send("<iq type='set' id='good'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>fine</resource></bind></iq>")
            .await;
        let reply = r.next_stanza().await;
        assert!(reply.contains("type='result'"), "{reply}");
    }
    bystander_ok(&mut b).await;
}

// ------------------------------------------ server and component streams --

#[tokio::test]
async fn server_and_component_streams_are_never_half_accepted() {
    let (d, mut b) = setup().await;
    let s2s = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' xmlns:stream='http://etherx.jabber.org/streams' from='evil.example' to='localhost' version='1.0'>\
        <db:result from='evil.example' to='localhost'>deadbeef</db:result>\
        <db:verify from='evil.example' to='localhost' id='x'>deadbeef</db:verify>";
    let comp = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='evil.localhost'>\
        <handshake>0123456789abcdef0123456789abcdef01234567</handshake>\
        <message from='admin@evil.localhost' to='bob@localhost/bystander'><body>forged</body></message>";
    // no federation yet: invalid-namespace; no such component: host-unknown
    for (input, cond) in [(s2s, "invalid-namespace"), (comp, "host-unknown")] {
        for direct in [false, true] {
            let r = if direct {
                Raw::connect_tls(d.direct_tls, D).await
            } else {
                Raw::connect(d.starttls, D).await
            };
            let out = attack(r, &mut b, input.as_bytes(), cond).await;
            for never in [
                "<stream:features",
                "db:result",
                "db:verify",
                "<handshake",
                "<success",
                "<proceed",
            ] {
                assert!(!out.contains(never), "{never} in {out}");
            }
        }
    }
    // dialback elements on a client stream are not understood, before and after auth
    let db = "<db:result xmlns:db='jabber:server:dialback' from='evil.example' to='localhost'>deadbeef</db:result>";
    attack(
        fresh(&d, false, "").await,
        &mut b,
        format!("{HDR}{db}").as_bytes(),
        "unsupported-stanza-type",
    )
    .await;
    attack(
        fresh(&d, true, "db").await,
        &mut b,
        db.as_bytes(),
        "unsupported-stanza-type",
    )
    .await;
    nothing_delivered(&mut b).await;
}

// ------------------------------------------------------------- compression --

#[tokio::test]
async fn no_stream_compression_at_any_stage() {
    let (d, mut b) = setup().await;
    let no_compression = |f: &str| {
        assert!(
            !f.contains("compression") && !f.contains("jabber.org/features/compress"),
            "compression offered: {f}"
        );
    };
    let mut r = Raw::connect(d.starttls, D).await;
    no_compression(&r.open().await);
    let mut r2 = Raw::connect(d.starttls, D).await;
    no_compression(&r2.starttls().await);
    let ok = r2.auth_scram("SCRAM-SHA-256", "alice", "alice-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
    no_compression(&r2.open().await);
    let mut r3 = Raw::connect_tls(d.direct_tls, D).await;
    no_compression(&r3.open().await);
    // asking for it anyway (XEP-0138), before and after authentication
    let compress =
        b"<compress xmlns='http://jabber.org/protocol/compress'><method>zlib</method></compress>";
    attack(r, &mut b, compress, "unsupported-stanza-type").await;
    attack(r2, &mut b, compress, "unsupported-stanza-type").await;
    attack(
        fresh(&d, true, "z").await,
        &mut b,
        compress,
        "unsupported-stanza-type",
    )
    .await;
    drop(r3);
}

// ------------------------------------------------------ STARTTLS injection --

#[tokio::test]
async fn plaintext_after_starttls_is_never_interpreted() {
    let (d, mut b) = setup().await;
    use base64::Engine;
    let plain = base64::engine::general_purpose::STANDARD.encode("\0alice\0alice-pw");
    let injected = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>\
         <iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
    );
    // CVE-2011-0411: commands pipelined behind <starttls/> in the same packet
    let mut r = Raw::connect(d.starttls, D).await;
    r.open().await;
    let out = attack(
        r,
        &mut b,
        format!("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{injected}").as_bytes(),
        "policy-violation",
    )
    .await;
    for never in [
        "<proceed",
        "<success",
        "<challenge",
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'",
    ] {
        assert!(!out.contains(never), "{never} in {out}");
    }
    // the same with the stream header in that packet too
    let r = Raw::connect(d.starttls, D).await;
    let out = attack(
        r,
        &mut b,
        format!("{HDR}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{injected}").as_bytes(),
        "policy-violation",
    )
    .await;
    assert!(
        !out.contains("<proceed") && !out.contains("<success"),
        "{out}"
    );
    // plaintext after <proceed/> is fed to the TLS handshake, which fails: nothing is
    // answered in plaintext
    let mut r = Raw::connect(d.starttls, D).await;
    r.open().await;
    r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    r.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    r.try_send(format!("{HDR}{injected}").as_bytes()).await;
    let out = r.read_to_close().await;
    assert!(
        !out.contains("<stream:") && !out.contains("<success") && !out.contains("<iq"),
        "answered in plaintext: {out}"
    );
    bystander_ok(&mut b).await;
}

// ----------------------------------------------------------------- limits --

#[tokio::test]
async fn auth_failures_throttle_the_address() {
    let (d, mut b) = setup_with(limits(
        "auth_failures_per_ip = 3\nauth_failures_per_account = 0\nauth_throttle_window = 2",
    ))
    .await;
    // three wrong passwords over two streams (per-stream limit is 3 as well)
    for (user, n) in [("alice", 2), ("nobody", 1)] {
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        for _ in 0..n {
            let f = r.auth_scram("SCRAM-SHA-256", user, "wrong").await;
            assert!(f.contains("<not-authorized/>"), "{f}");
        }
    }
    // now even the right password is refused from this address, before any work
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    let f = r.auth_plain("alice", "alice-pw").await;
    assert!(f.contains("<temporary-auth-failure/>"), "{f}");
    let f = r.auth_scram("SCRAM-SHA-256", "bob", "bob-pw").await;
    assert!(f.contains("<temporary-auth-failure/>"), "{f}");
    // each refused attempt counted once: throttled, not also a failure of its mechanism
    let (_, text) = admin_get(admin_addr(&d), "/metrics", "").await;
    let metric = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {k}: {text}"))
    };
    assert_eq!(metric("xmppd_authentications_throttled_total"), 2.0);
    assert_eq!(
        metric("xmppd_authentications_total{mechanism=\"PLAIN\",result=\"failure\"}"),
        0.0
    );
    assert_eq!(
        metric("xmppd_authentications_total{mechanism=\"SCRAM-SHA-256\",result=\"failure\"}"),
        3.0
    );
    // the bystander's session is not touched
    bystander_ok(&mut b).await;
    // after the window, logins work again
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "back").await;
    bystander_ok(&mut a).await;
}

#[tokio::test]
async fn auth_failures_throttle_the_account() {
    let (d, mut b) = setup_with(limits(
        "auth_failures_per_ip = 0\nauth_failures_per_account = 2\nauth_throttle_window = 300",
    ))
    .await;
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    for _ in 0..2 {
        let f = r.auth_scram("SCRAM-SHA-256", "alice", "guess").await;
        assert!(f.contains("<not-authorized/>"), "{f}");
    }
    // alice is refused, from any stream, with the right password too...
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    let f = r.auth_plain("alice", "alice-pw").await;
    assert!(f.contains("<temporary-auth-failure/>"), "{f}");
    // ...also through legacy authentication...
    r.send("<iq type='set' id='legacy'><query xmlns='jabber:iq:auth'><username>alice</username><password>alice-pw</password><resource>old</resource></query></iq>")
        .await;
    let reply = r.next_stanza().await;
    assert!(
        reply.contains("type='error'") && reply.contains("<resource-constraint"),
        "{reply}"
    );
    // ...while bob logs in from the same address
    let (mut b2, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "second").await;
    bystander_ok(&mut b2).await;
    bystander_ok(&mut b).await;
}

#[tokio::test]
async fn unauthenticated_connections_time_out() {
    let (d, mut b) = setup_with(limits("auth_timeout = 1")).await;
    // idle before the header, after the header, after TLS, in the middle of SCRAM
    let mut idle = Raw::connect(d.starttls, D).await;
    let mut open = Raw::connect(d.starttls, D).await;
    open.open().await;
    let mut tls = Raw::connect(d.starttls, D).await;
    tls.starttls().await;
    let mut direct = Raw::connect_tls(d.direct_tls, D).await;
    direct.open().await;
    let mut sasl = Raw::connect(d.starttls, D).await;
    sasl.starttls().await;
    sasl.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiY2RlZmdoaWprbG1ub3A=</auth>")
        .await;
    sasl.read_until("</challenge>").await;
    for (name, r) in [
        ("idle", &mut idle),
        ("open", &mut open),
        ("tls", &mut tls),
        ("direct", &mut direct),
        ("sasl", &mut sasl),
    ] {
        let out = r.read_to_close().await;
        assert!(
            out.contains(&stream_error("connection-timeout")),
            "{name}: {out}"
        );
    }
    // the bound bystander has been connected far longer and is not timed out
    bystander_ok(&mut b).await;
}

#[tokio::test]
async fn fast_senders_are_slowed_down_not_cut_off() {
    // 20 000 bytes/s after a 16 KiB burst: a 60 KB message takes at least
    // (60 000 - 16 384) / 20 000 ≈ 2.2 s to be read, and arrives whole
    let (d, mut b) = setup_with(limits("read_rate = 20000\nread_burst = 16384")).await;
    let (mut a, ajid) = Raw::login(d.starttls, D, "alice", "alice-pw", "fast").await;
    let body: String = (0..60_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let start = std::time::Instant::now();
    a.send(&format!(
        "<message to='bob@localhost/bystander' id='big'><body>{body}</body></message>"
    ))
    .await;
    let got = next_non_presence(&mut b).await;
    let elapsed = start.elapsed();
    let el: minidom::Element = got.parse().expect("xml");
    assert_eq!(el.attr("from"), Some(ajid.as_str()));
    assert_eq!(
        el.get_child("body", "jabber:client").map(|b| b.text()),
        Some(body)
    );
    // a lower bound only: shaping is what makes it take this long
    assert!(
        elapsed >= Duration::from_millis(1800),
        "not shaped: {elapsed:?}"
    );
    // alice's stream is still up
    bystander_ok(&mut a).await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_and_others_go_on() {
    enable_admin();
    let (d, mut b) = setup_with(limits(
        "max_stanza_size = 65536\nwrite_buffer = 131072\nread_rate = 0",
    ))
    .await;
    let (lazy, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "lazy").await;
    let (mut flood, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "flood").await;
    let before = stats(&d).await;
    assert_eq!(actors(&before), (3, 0, 3, 3), "{before}");
    let rss_before = count(&before, "rss_bytes");
    // 8 KB messages to the peer that never reads, until the server gives up on it:
    // kernel buffers absorb some, then the 128 KiB write queue fills. Every 8 messages a
    // round trip, so the flooder reads its own bounces and is not dropped in turn.
    let body = "z".repeat(8000);
    let mut bounced = false;
    let mut sent = 0usize;
    for i in 0..4096 {
        flood
            .send(&format!(
                "<message to='alice@localhost/lazy' id='f{i}'><body>{body}</body></message>"
            ))
            .await;
        sent += body.len();
        if i % 8 == 7 {
            // a round trip, so the flooder reads its bounces and never blocks itself
            flood
                .send(&format!(
                    "<iq to='localhost' type='get' id='rt{i}'><ping xmlns='urn:xmpp:ping'/></iq>"
                ))
                .await;
            let got = flood.read_until(&format!("id='rt{i}'")).await;
            flood.read_until(">").await;
            if got.contains("type='error'") {
                bounced = true;
                break;
            }
        }
    }
    // the server gave up long before it held 32 MiB for this peer
    assert!(bounced, "no bounce after {sent} bytes");
    // the lazy connection is gone, the others are served
    let after = wait_actors(&d, (2, 0, 2, 2)).await;
    bystander_ok(&mut b).await;
    // the last bounces, then a clean round trip
    flood
        .send("<iq to='localhost' type='get' id='drain'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    flood.read_until("id='drain'").await;
    flood.read_until(">").await;
    bystander_ok(&mut flood).await;
    let rss_after = count(&after, "rss_bytes");
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "memory grew from {rss_before} to {rss_after} after {sent} bytes for a peer that does not read"
    );
    drop(lazy);
}

// ------------------------------------------------------------ SASL parsing --

#[tokio::test]
async fn malformed_scram_never_panics() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (d, mut b) = setup().await;
    // client-first messages that made rsasl 2.3 panic (found by fuzzing)
    for first in [
        "y,>,n=alice,r=x",
        "n,,n=alice,r",
        "n,,n=alice,",
        "n,a,n=alice,r=x",
    ] {
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        r.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
            b64.encode(first)
        ))
        .await;
        let f = r.next_stanza().await;
        assert!(f.contains("<malformed-request/>"), "{first}: {f}");
        // the stream goes on: a proper login on it works
        let ok = r.auth_scram("SCRAM-SHA-256", "alice", "alice-pw").await;
        assert!(ok.starts_with("<success"), "{ok}");
    }
    // a client-final message with a trailing comma
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    r.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
        b64.encode("n,,n=alice,r=abcdefghijklmnop")
    ))
    .await;
    let ch = r.next_stanza().await;
    let server_first = String::from_utf8(b64.decode(inner_text(&ch)).expect("b64")).expect("utf8");
    let nonce = server_first
        .split(',')
        .find_map(|f| f.strip_prefix("r="))
        .expect("nonce");
    r.send(&format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        b64.encode(format!("c=biws,r={nonce},p=AAAA,"))
    ))
    .await;
    let f = r.next_stanza().await;
    assert!(f.contains("<malformed-request/>"), "{f}");
    bystander_ok(&mut b).await;
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

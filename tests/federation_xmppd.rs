//! Two xmppd servers federating on loopback, and the inbound server stream's refusals
//! (hostile input): chat and iq both ways found through SRV records, a forged dialback
//! key, stanzas before authentication or from a domain never verified, a stream that
//! claims one of our domains, a key nobody issued for a stream that does not exist; bounces
//! for unreachable peers, queued messages delivered in order to a peer that comes back,
//! and the secure-domain checks (no STARTTLS, untrusted certificate, wrong name).

mod common;
mod federation_common;
mod hostile_common;
mod xmppd_peers;
use common::*;
use federation_common::*;
use hostile_common::{admin_addr, admin_get, admin_token, enable_admin};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xmppd_peers::*;

#[tokio::test]
async fn two_servers_chat_and_answer_iq_both_ways() {
    enable_admin();
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "");
    let b = server("b.test", &dns, "", "");
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    alice
        .send("<message to='bob@b.test' type='chat' id='m1'><body>hi bob</body></message>")
        .await;
    let m = bob.wait_for("hi bob").await;
    assert!(m.contains("from='alice@a.test/r'"), "{m}");
    bob.send("<message to='alice@a.test/r' type='chat' id='m2'><body>hi alice</body></message>")
        .await;
    let m = alice.wait_for("hi alice").await;
    assert!(m.contains("from='bob@b.test/r'"), "{m}");
    // iq to the remote server itself, both ways
    alice
        .send("<iq to='b.test' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let r = alice.wait_for("id='v1'").await;
    assert!(r.contains("type='result'") && r.contains("xmppd"), "{r}");
    bob.send("<iq to='a.test' type='get' id='v2'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let r = bob.wait_for("id='v2'").await;
    assert!(r.contains("type='result'") && r.contains("xmppd"), "{r}");
    a.wait_log("outgoing stream authenticated", 1);
    // the queue is a visible actor with its state and counters
    let (status, body) = admin_get(admin_addr(&a), "/s2s", &admin_token(&a)).await;
    assert!(status.contains("200"), "{status}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let q = &v["outbound"][0];
    assert_eq!(q["remote"], "b.test", "{v}");
    assert_eq!(q["local"], "a.test", "{v}");
    assert_eq!(q["state"], "connected", "{v}");
    assert_eq!(q["pending"], 0, "{v}");
    assert!(q["sent"].as_u64().is_some_and(|n| n >= 2), "{v}");
}

#[tokio::test]
async fn dialback_refusals() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "");
    let _b = server(
        "b.test",
        &dns,
        "dialback_secret = \"known to the test\"\n",
        "",
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;

    // a stanza before any dialback: not-authorized
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    let f = r.read_until("</stream:features>").await;
    assert!(f.contains("urn:xmpp:features:dialback"), "{f}");
    r.send("<message from='bob@b.test' to='alice@a.test'><body>early</body></message>")
        .await;
    let out = r.read_to_close().await;
    assert!(out.contains("<not-authorized"), "{out}");

    // a stream that claims one of our own domains: invalid-from
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("a.test", "a.test")).await;
    let out = r.read_to_close().await;
    assert!(out.contains("<invalid-from"), "{out}");

    // a forged key: the authoritative server (b.test) says invalid
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    r.send("<db:result from='b.test' to='a.test'>forged</db:result>")
        .await;
    let out = r.read_to_close().await;
    assert!(out.contains("type='invalid'"), "{out}");
    assert!(out.contains("<not-authorized"), "{out}");

    // dialback for a domain not served here: a dialback error (XEP-0220 §2.4), the
    // stream stays
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    r.send("<db:result from='b.test' to='elsewhere.test'>k</db:result>")
        .await;
    let out = r.read_until("</db:result>").await;
    assert!(
        out.contains("type='error'") && out.contains("<item-not-found"),
        "{out}"
    );

    // a verification for a stream id that does not exist, with a key nobody issued:
    // invalid (keys are stateless, XEP-0185: the id is checked through the key, so this
    // is the forged-key case again, for an id of no stream)
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    r.send("<db:verify from='b.test' to='a.test' id='no-such-stream'>abcdef</db:verify>")
        .await;
    let out = r.read_until("/>").await;
    assert!(out.contains("type='invalid'"), "{out}");

    // the right key (the test knows b.test's secret): valid; then only b.test may send
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    let f = r.read_until("</stream:features>").await;
    let id = stream_id(&f);
    let k = key("known to the test", "a.test", "b.test", &id);
    r.send(&format!(
        "<db:result from='b.test' to='a.test'>{k}</db:result>"
    ))
    .await;
    let out = r.read_until("/>").await;
    assert!(out.contains("type='valid'"), "{out}");
    r.send("<message from='bob@b.test/x' to='alice@a.test' type='chat'><body>verified</body></message>")
        .await;
    let m = alice.wait_for("verified").await;
    assert!(m.contains("from='bob@b.test/x'"), "{m}");
    r.send("<message from='eve@c.test/x' to='alice@a.test' type='chat'><body>forged from</body></message>")
        .await;
    let out = r.read_to_close().await;
    assert!(out.contains("<invalid-from"), "{out}");
    alice.expect_only_presence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn unreachable_peers_bounce_after_the_configured_time() {
    let dns = FakeDns::start(vec![]);
    let closed = free_port(Ipv4Addr::LOCALHOST);
    let a = server(
        "a.test",
        &dns,
        "bounce_after = 2\n",
        &format!("[[routes]]\ndomain = \"down.test\"\nhost = \"127.0.0.1\"\nport = {closed}\n"),
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let t = std::time::Instant::now();
    alice
        .send("<message to='x@down.test' type='chat' id='d1'><body>1</body></message>")
        .await;
    // a name the DNS server does not know
    alice
        .send("<message to='x@nowhere.test' type='chat' id='n1'><body>2</body></message>")
        .await;
    let e = alice.wait_for("id='d1'").await;
    assert!(
        e.contains("type='error'") && e.contains("remote-server-timeout"),
        "{e}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "bounced too early"
    );
    let e = alice.wait_for("id='n1'").await;
    assert!(
        e.contains("type='error'") && e.contains("remote-server-not-found"),
        "{e}"
    );
}

#[tokio::test]
async fn a_peer_that_comes_back_gets_the_queued_messages_in_order() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "bounce_after = 60\n", "");
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    for i in 1..=5 {
        alice
            .send(&format!(
                "<message to='bob@b.test' type='chat' id='q{i}'><body>queued {i}</body></message>"
            ))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // b.test appears (its DNS entry with it); bob is online before the queue retries
    let b = Daemon::with(Options {
        domain: "b.test".into(),
        extra: format!("[s2s]\n{}", dns.config()),
        ..Options::default()
    });
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    dns.add("b.test", Ipv4Addr::LOCALHOST, b.starttls.port());
    for i in 1..=5 {
        let m = bob.next_non_presence().await;
        assert!(
            m.contains(&format!("queued {i}")),
            "message {i} out of order: {m}"
        );
    }
    alice.expect_only_presence(Duration::from_millis(300)).await;
}

/// A peer that offers no STARTTLS, only dialback (it never gets further).
async fn plaintext_peer() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
                          xmlns:stream='http://etherx.jabber.org/streams' id='x' \
                          from='plain.test' version='1.0'><stream:features>\
                          <dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
                    )
                    .await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    port
}

/// alice@a.test sends to `to`; the answer (delivery or error) as `bob` sees it or as the
/// error alice gets.
async fn secure_error(a: &Daemon, to: &str) -> String {
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    alice
        .send(&format!(
            "<message to='{to}' type='chat' id='s1'><body>secret</body></message>"
        ))
        .await;
    alice.wait_for("id='s1'").await
}

#[tokio::test]
async fn secure_domain_without_starttls_is_refused() {
    let dns = FakeDns::start(vec![]);
    let port = plaintext_peer().await;
    let a = server(
        "a.test",
        &dns,
        "secure_domains = [\"*.plain.test\"]\n",
        &format!("[[routes]]\ndomain = \"plain.test\"\nhost = \"127.0.0.1\"\nport = {port}\n"),
    );
    let e = secure_error(&a, "x@plain.test").await;
    assert!(e.contains("type='error'") && e.contains("STARTTLS"), "{e}");
}

#[tokio::test]
async fn secure_domain_with_an_untrusted_certificate_is_refused() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "secure_domains = [\"b.test\"]\n", "");
    let _b = server("b.test", &dns, "", "");
    let e = secure_error(&a, "bob@b.test").await;
    assert!(
        e.contains("type='error'") && e.contains("not trusted"),
        "{e}"
    );
}

#[tokio::test]
async fn secure_domain_with_a_certificate_for_another_name_is_refused() {
    let dns = FakeDns::start(vec![]);
    let ca = pki().ca.display().to_string();
    let a = server(
        "a.test",
        &dns,
        &format!("secure_domains = [\"d.test\"]\ntrusted_certificates = [\"{ca}\"]\n"),
        "",
    );
    // the test certificate names localhost, a.test, b.test, c.test: not d.test
    let _d = server("d.test", &dns, "", "");
    let e = secure_error(&a, "bob@d.test").await;
    assert!(
        e.contains("type='error'") && e.contains("names another domain"),
        "{e}"
    );
}

#[tokio::test]
async fn secure_domain_with_a_trusted_certificate_delivers() {
    let dns = FakeDns::start(vec![]);
    let ca = pki().ca.display().to_string();
    let a = server(
        "a.test",
        &dns,
        &format!("secure_domains = [\"b.test\"]\ntrusted_certificates = [\"{ca}\"]\n"),
        "",
    );
    let b = server("b.test", &dns, "", "");
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    alice
        .send("<message to='bob@b.test' type='chat' id='s1'><body>over TLS</body></message>")
        .await;
    let m = bob.wait_for("over TLS").await;
    assert!(m.contains("from='alice@a.test/r'"), "{m}");
}

/// a.test with `s2s` settings `s2s_extra`, every `*.hole.test` routed to a peer that
/// accepts connections and never answers (its dialback verifications stay pending).
async fn server_routing_to_a_silent_peer(dns: &FakeDns, s2s_extra: &str) -> Daemon {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = hole.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    server(
        "a.test",
        dns,
        s2s_extra,
        &format!("[[routes]]\ndomain = \"*.hole.test\"\nhost = \"127.0.0.1\"\nport = {port}\n"),
    )
}

#[tokio::test]
async fn domain_pairs_on_one_stream_are_bounded() {
    // the authoritative servers never answer: every verification stays pending
    let dns = FakeDns::start(vec![]);
    let a = server_routing_to_a_silent_peer(&dns, "max_domain_pairs = 2\n").await;
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("x1.hole.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    for i in 1..=3 {
        r.send(&format!(
            "<db:result from='x{i}.hole.test' to='a.test'>k{i}</db:result>"
        ))
        .await;
    }
    let out = r.read_to_close().await;
    assert!(out.contains("<policy-violation"), "{out}");
    assert!(out.contains("too many domain pairs"), "{out}");
}

#[tokio::test]
async fn running_verifications_on_one_stream_are_bounded() {
    // the authoritative servers never answer
    let dns = FakeDns::start(vec![]);
    let a = server_routing_to_a_silent_peer(&dns, "").await;
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("x1.hole.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    // ten verifications may run at once on a stream; the eleventh must wait
    for i in 1..=11 {
        r.send(&format!(
            "<db:result from='x{i}.hole.test' to='a.test'>k{i}</db:result>"
        ))
        .await;
    }
    let out = r.read_until("</db:result>").await;
    assert!(out.contains("to='x11.hole.test'"), "{out}");
    assert!(
        out.contains("type='error'") && out.contains("<resource-constraint"),
        "{out}"
    );
    assert!(!out.contains("</stream:stream>"), "{out}");
}

#[tokio::test]
async fn outbound_queues_are_bounded() {
    let dns = FakeDns::start(vec![]);
    // b.test and c.test are not in the DNS: the first queue waits (bounce_after is long)
    let a = server(
        "a.test",
        &dns,
        "max_outbound_queues = 1\nbounce_after = 60\n",
        "",
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    alice
        .send("<message to='bob@b.test' type='chat' id='q1'><body>1</body></message>")
        .await;
    alice
        .send("<message to='carol@c.test' type='chat' id='q2'><body>2</body></message>")
        .await;
    let e = alice.wait_for("id='q2'").await;
    assert!(
        e.contains("type='error'") && e.contains("resource-constraint"),
        "{e}"
    );
    // a peer's dialback request would need another queue: refused, the stream stays
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("d.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    r.send("<db:result from='d.test' to='a.test'>k</db:result>")
        .await;
    let out = r.read_until("</db:result>").await;
    assert!(
        out.contains("type='error'") && out.contains("<resource-constraint"),
        "{out}"
    );
    assert!(!out.contains("</stream:stream>"), "{out}");
    // the first message still waits for its server
    alice.expect_only_presence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_peer_that_never_finishes_dialback_is_timed_out() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "[limits]\nauth_timeout = 1\n");
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    let out = r.read_to_close().await;
    assert!(out.contains("<connection-timeout"), "{out}");
}

#[tokio::test]
async fn sasl_external_with_trusted_certificates_and_dialback_without() {
    let dns = FakeDns::start(vec![]);
    let ca = pki().ca.display().to_string();
    let trust = format!("trusted_certificates = [\"{ca}\"]\n");
    // a.test and b.test trust the test CA, whose certificate names both: EXTERNAL
    let a = server("a.test", &dns, &trust, "");
    let b = server("b.test", &dns, &trust, "");
    // c.test trusts nobody: a.test's certificate is not good enough for it
    let c = server("c.test", &dns, "", "");
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    let (mut carol, _) = Raw::login(c.starttls, "c.test", "alice", "alice-pw", "r").await;
    alice
        .send("<message to='bob@b.test' type='chat'><body>by certificate</body></message>")
        .await;
    let m = bob.wait_for("by certificate").await;
    assert!(m.contains("from='alice@a.test/r'"), "{m}");
    a.wait_log("outgoing stream authenticated (SASL EXTERNAL)", 1);
    b.wait_log("inbound stream authenticated (SASL EXTERNAL)", 1);
    alice
        .send("<message to='alice@c.test' type='chat'><body>by dialback</body></message>")
        .await;
    let m = carol.wait_for("by dialback").await;
    assert!(m.contains("from='alice@a.test/r'"), "{m}");
    c.wait_log("inbound stream authenticated (dialback)", 1);
    assert!(!c.log().contains("SASL EXTERNAL"), "{}", c.log());
}

#[tokio::test]
async fn a_full_queue_bounces_at_once() {
    enable_admin();
    let dns = FakeDns::start(vec![]);
    // b.test is not in the DNS: everything waits (bounce_after is long)
    let a = server("a.test", &dns, "queue_limit = 2\nbounce_after = 60\n", "");
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    for i in 1..=3 {
        alice
            .send(&format!(
                "<message to='bob@b.test' type='chat' id='f{i}'><body>{i}</body></message>"
            ))
            .await;
    }
    let e = alice.wait_for("id='f3'").await;
    assert!(
        e.contains("type='error'") && e.contains("resource-constraint"),
        "{e}"
    );
    let (_, body) = admin_get(admin_addr(&a), "/s2s", &admin_token(&a)).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["outbound"][0]["pending"], 2, "{v}");
    assert_eq!(v["outbound"][0]["bounced"], 1, "{v}");
    alice.expect_only_presence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_idle_outgoing_stream_is_closed_and_reopened_on_demand() {
    enable_admin();
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "idle_timeout = 1\n", "");
    let b = server("b.test", &dns, "", "");
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    alice
        .send("<message to='bob@b.test' type='chat'><body>first</body></message>")
        .await;
    bob.wait_for("first").await;
    // idle: the stream closes and the queue ends
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, body) = admin_get(admin_addr(&a), "/s2s", &admin_token(&a)).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        if v["outbound"].as_array().is_some_and(|q| q.is_empty()) {
            gone = true;
            break;
        }
    }
    assert!(gone, "the idle queue did not end:\n{}", a.log());
    a.wait_log("closing an idle outgoing stream", 1);
    alice
        .send("<message to='bob@b.test' type='chat'><body>second</body></message>")
        .await;
    bob.wait_for("second").await;
}

#[tokio::test]
async fn a_peer_found_through_xmpps_server_gets_direct_tls() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "");
    let b = Daemon::with(Options {
        domain: "b.test".into(),
        extra: format!("[s2s]\n{}", dns.config()),
        ..Options::default()
    });
    // only the direct-TLS listener is published (XEP-0368)
    dns.add("xmpps:b.test", Ipv4Addr::LOCALHOST, b.direct_tls.port());
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    alice
        .send("<message to='bob@b.test' type='chat'><body>direct</body></message>")
        .await;
    let m = bob.wait_for("direct").await;
    assert!(m.contains("from='alice@a.test/r'"), "{m}");
    a.wait_log(&format!("127.0.0.1:{}", b.direct_tls.port()), 1);
}

#[tokio::test]
async fn unauthenticated_server_streams_per_address_are_bounded() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "[limits]\nunauthenticated_per_ip = 3\n");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut r = Raw::connect(a.starttls, "a.test").await;
        r.send(&s2s_header("b.test", "a.test")).await;
        r.read_until("</stream:features>").await;
        open.push(r);
    }
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    let out = r.read_to_close().await;
    assert!(out.contains("<policy-violation"), "{out}");
}

/// A peer that says every dialback key is valid, then never reads again.
/// A listener on loopback whose connections have a small receive buffer (32 KiB): what
/// a peer that never reads holds in its kernel stays within what the sending server
/// accounts for as perhaps delivered (its own send buffer and a little more).
fn deaf_listener() -> tokio::net::TcpListener {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(32 * 1024).expect("rcvbuf");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    sock.listen(16).expect("listen")
}

/// Send `n` large messages from `alice` to x@deaf.test until the server refuses one
/// (`resource-constraint`: the sockets, the link's buffer and the queue are full);
/// returns how many were sent and how many error replies came back meanwhile.
async fn fill_towards_deaf(alice: &mut Raw, n: usize) -> (usize, usize) {
    let body = "x".repeat(20_000);
    let (mut sent, mut errors) = (0, 0);
    for i in 0..n {
        alice
            .send(&format!(
                "<message to='x@deaf.test' type='chat' id='d{i}'><body>{body}</body></message>"
            ))
            .await;
        sent += 1;
        let mut full = false;
        while let Some(m) = alice
            .try_read_until("</message>", Duration::from_millis(1))
            .await
        {
            if m.contains("type='error'") {
                errors += 1;
                full |= m.contains("resource-constraint");
            }
        }
        if full {
            break;
        }
    }
    (sent, errors)
}

/// Error replies that reach `alice` until none comes for 8 s.
async fn errors_until_quiet(alice: &mut Raw) -> usize {
    let mut errors = 0;
    while let Some(m) = alice
        .try_read_until("</message>", Duration::from_secs(8))
        .await
    {
        if m.contains("type='error'") {
            errors += 1;
        }
    }
    errors
}

async fn deaf_peer() -> u16 {
    let l = deaf_listener();
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let mut seen = String::new();
            while !seen.contains("</db:result>") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
                if seen.contains("<stream:stream") && !seen.contains("sent-features") {
                    seen.push_str("sent-features");
                    let _ = s
                        .write_all(
                            b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
                              xmlns:stream='http://etherx.jabber.org/streams' \
                              xmlns:db='jabber:server:dialback' id='deaf' from='deaf.test' \
                              version='1.0'><stream:features><dialback \
                              xmlns='urn:xmpp:features:dialback'/></stream:features>",
                        )
                        .await;
                }
            }
            let _ = s
                .write_all(b"<db:result from='deaf.test' to='a.test' type='valid'/>")
                .await;
            held.push(s);
        }
    });
    port
}

#[tokio::test]
async fn a_peer_that_does_not_read_gets_a_bounded_queue() {
    let dns = FakeDns::start(vec![]);
    let port = deaf_peer().await;
    let a = server(
        "a.test",
        &dns,
        "queue_limit = 4\nbounce_after = 2\n",
        &format!(
            "[[routes]]\ndomain = \"deaf.test\"\nhost = \"127.0.0.1\"\nport = {port}\n\n\
             [limits]\nread_rate = 0\nwrite_buffer = 268435456\n"
        ),
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    alice
        .send("<message to='x@deaf.test' type='chat'><body>hello</body></message>")
        .await;
    // (async: the fake peer runs on this test's runtime)
    for _ in 0..100 {
        if a.log().contains("outgoing stream authenticated") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = "x".repeat(60_000);
    // far more than the link's buffer and the sockets hold; the errors are read as
    // they come (alice's own connection has a bounded write queue too)
    let mut refused = false;
    for i in 0..2000 {
        alice
            .send(&format!(
                "<message to='x@deaf.test' type='chat' id='d{i}'><body>{body}</body></message>"
            ))
            .await;
        if alice
            .try_read_until("resource-constraint", Duration::from_millis(1))
            .await
            .is_some()
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "the queue never refused:\n{}", a.log());
    // what waited in the queue goes back too once it waited long enough
    let mut timed_out = false;
    for _ in 0..30 {
        if alice
            .try_read_until("remote-server-timeout", Duration::from_secs(1))
            .await
            .is_some()
        {
            timed_out = true;
            break;
        }
    }
    assert!(timed_out, "nothing waited out bounce_after:\n{}", a.log());
}

/// A peer that says every dialback key is valid, never reads, drops the connection
/// after `hold`, and accepts no other.
async fn deaf_peer_that_hangs_up(hold: Duration) -> u16 {
    let l = deaf_listener();
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        drop(l);
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while !seen.contains("</db:result>") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
            if seen.contains("<stream:stream") && !seen.contains("sent-features") {
                seen.push_str("sent-features");
                let _ = s
                    .write_all(
                        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
                          xmlns:stream='http://etherx.jabber.org/streams' \
                          xmlns:db='jabber:server:dialback' id='deaf' from='deaf.test' \
                          version='1.0'><stream:features><dialback \
                          xmlns='urn:xmpp:features:dialback'/></stream:features>",
                    )
                    .await;
            }
        }
        let _ = s
            .write_all(b"<db:result from='deaf.test' to='a.test' type='valid'/>")
            .await;
        tokio::time::sleep(hold).await;
        drop(s);
    });
    port
}

#[tokio::test]
async fn stanzas_buffered_for_a_stream_that_dies_return_to_their_sender() {
    let dns = FakeDns::start(vec![]);
    let port = deaf_peer_that_hangs_up(Duration::from_secs(3)).await;
    let a = server(
        "a.test",
        &dns,
        "queue_limit = 4\nbounce_after = 2\n",
        &format!(
            "[[routes]]\ndomain = \"deaf.test\"\nhost = \"127.0.0.1\"\nport = {port}\n\n\
             [limits]\nread_rate = 0\nwrite_buffer = 268435456\n"
        ),
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    alice
        .send("<message to='x@deaf.test' type='chat'><body>hello</body></message>")
        .await;
    for _ in 0..100 {
        if a.log().contains("outgoing stream authenticated") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // fill the sockets, the link's buffer (256) and the queue (4)
    let (sent, early) = fill_towards_deaf(&mut alice, 3000).await;
    // the peer hangs up having read nothing: every message (and the first, "hello")
    // comes back as an error, none is lost in silence (those the kernel held when the
    // connection died: "may not have been delivered")
    let returned = early + errors_until_quiet(&mut alice).await;
    assert_eq!(
        returned,
        sent + 1,
        "{returned} of {} came back:\n{}",
        sent + 1,
        a.log()
    );
    assert!(
        a.log().contains("may not have been delivered"),
        "{}",
        a.log()
    );
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_given_up_after_the_write_timeout() {
    let dns = FakeDns::start(vec![]);
    let port = deaf_peer().await;
    let a = server(
        "a.test",
        &dns,
        "queue_limit = 4\nbounce_after = 2\nwrite_timeout = 2\n",
        &format!(
            "[[routes]]\ndomain = \"deaf.test\"\nhost = \"127.0.0.1\"\nport = {port}\n\n\
             [limits]\nread_rate = 0\nwrite_buffer = 268435456\n"
        ),
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    alice
        .send("<message to='x@deaf.test' type='chat'><body>hello</body></message>")
        .await;
    for _ in 0..100 {
        if a.log().contains("outgoing stream authenticated") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // fill the sockets, the link's buffer and the queue; the peer keeps the connection
    // open and never reads
    let (sent, early) = fill_towards_deaf(&mut alice, 3000).await;
    // the link gives up on the write: everything comes back to its sender, what it held
    // and what the kernel held (the peer read nothing: sent = bounced)
    let returned = early + errors_until_quiet(&mut alice).await;
    assert_eq!(
        returned,
        sent + 1,
        "{returned} of {} came back:\n{}",
        sent + 1,
        a.log()
    );
    assert!(a.log().contains("write timed out"), "{}", a.log());
}

/// A port on loopback that accepts no connection and answers no SYN (its accept queue
/// is full): connecting to it hangs until the connector gives up.
async fn blackhole() -> (u16, tokio::net::TcpListener, std::net::TcpStream) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let l = sock.listen(0).expect("listen");
    let port = l.local_addr().expect("addr").port();
    let filler = std::net::TcpStream::connect(("127.0.0.1", port)).expect("fill the queue");
    (port, l, filler)
}

#[tokio::test]
async fn an_address_that_swallows_syns_does_not_use_up_the_connect_time() {
    let dns = FakeDns::start(vec![]);
    let (hole, _l, _filler) = blackhole().await;
    // b.test's direct-TLS record (tried first) names the black hole; its STARTTLS
    // record the real server
    dns.add("xmpps:b.test", Ipv4Addr::LOCALHOST, hole);
    let b = server("b.test", &dns, "", "");
    let a = server(
        "a.test",
        &dns,
        "connect_timeout = 8\nconnect_attempt_timeout = 1\nretry_max = 1\n",
        "",
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    alice
        .send("<message to='bob@b.test' type='chat' id='h1'><body>past the hole</body></message>")
        .await;
    let m = bob.wait_for("past the hole").await;
    assert!(m.contains("from='alice@a.test/r'"), "{m}");
}

#[tokio::test]
async fn an_authoritative_server_out_of_reach_gives_a_dialback_error() {
    let dns = FakeDns::start(vec![]);
    let closed = free_port(Ipv4Addr::LOCALHOST);
    let a = server(
        "a.test",
        &dns,
        "verify_timeout = 2\n",
        &format!("[[routes]]\ndomain = \"down.test\"\nhost = \"127.0.0.1\"\nport = {closed}\n"),
    );
    // nothing listens where down.test's server would be: XEP-0220 §2.4's error, not
    // "invalid", and the stream stays
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("down.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    r.send("<db:result from='down.test' to='a.test'>abc123</db:result>")
        .await;
    let out = r.read_until("</db:result>").await;
    assert!(
        out.contains("type='error'") && out.contains("<remote-server-not-found"),
        "{out}"
    );
    assert!(!out.contains("type='invalid'"), "{out}");
    assert!(!out.contains("</stream:stream>"), "{out}");
    // and the pair was not authorised: a stanza from it is refused
    r.send("<message from='x@down.test' to='alice@a.test'><body>no</body></message>")
        .await;
    let out = r.read_to_close().await;
    assert!(out.contains("<not-authorized"), "{out}");
}

#[tokio::test]
async fn a_verification_that_is_never_answered_times_out_with_a_dialback_error() {
    // the authoritative server accepts the connection and never says a word
    let dns = FakeDns::start(vec![]);
    let a = server_routing_to_a_silent_peer(&dns, "verify_timeout = 2\n").await;
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("x1.hole.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    let t = std::time::Instant::now();
    r.send("<db:result from='x1.hole.test' to='a.test'>abc123</db:result>")
        .await;
    let out = r.read_until("</db:result>").await;
    assert!(
        out.contains("type='error'") && out.contains("<remote-server-not-found"),
        "{out}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(!out.contains("</stream:stream>"), "{out}");
}

#[tokio::test]
async fn a_remote_user_joins_a_room_here_and_gets_its_messages() {
    enable_admin();
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "");
    // the room service is found where a.test is
    dns.add("conference.a.test", Ipv4Addr::LOCALHOST, a.starttls.port());
    let b = server("b.test", &dns, "", "");
    let room = "lounge@conference.a.test";
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    alice
        .send(&format!(
            "<presence to='{room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ))
        .await;
    alice.wait_for("code='110'").await;
    alice.send(&format!("<iq type='set' id='inst' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")).await;
    let res = alice.wait_for("id='inst'").await;
    assert!(res.contains("type='result'"), "{res}");
    // bob, on the other server, enters: his presence crosses b.test → conference.a.test
    // and the room's answers come back from conference.a.test
    bob.send(&format!(
        "<presence to='{room}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    let me = bob.wait_for("code='110'").await;
    assert!(me.contains(&format!("from='{room}/bob'")), "{me}");
    assert!(me.contains("role='participant'"), "{me}");
    let joined = alice.wait_for(&format!("from='{room}/bob'")).await;
    assert!(joined.contains("<presence"), "{joined}");
    alice
        .send(&format!(
            "<message to='{room}' type='groupchat' id='g1'><body>welcome, bob</body></message>"
        ))
        .await;
    let m = bob.wait_for("welcome, bob").await;
    assert!(
        m.contains(&format!("from='{room}/alice'")) && m.contains("type='groupchat'"),
        "{m}"
    );
    bob.send(&format!(
        "<message to='{room}' type='groupchat' id='g2'><body>thanks, alice</body></message>"
    ))
    .await;
    let m = alice.wait_for("thanks, alice").await;
    assert!(m.contains(&format!("from='{room}/bob'")), "{m}");
    // the room's traffic to b.test left through its own queue, authenticated for the
    // pair (b.test, conference.a.test)
    let (status, body) = admin_get(admin_addr(&a), "/s2s", &admin_token(&a)).await;
    assert!(status.contains("200"), "{status}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let queues = v["outbound"].as_array().expect("queues");
    assert!(
        queues.iter().any(|q| q["remote"] == "b.test"
            && q["local"] == "conference.a.test"
            && q["state"] == "connected"),
        "{v}"
    );
}

#[tokio::test]
async fn a_peer_may_send_many_stanzas_in_one_write() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "");
    let _b = server(
        "b.test",
        &dns,
        "dialback_secret = \"known to the test\"\n",
        "",
    );
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    let f = r.read_until("</stream:features>").await;
    let k = key("known to the test", "a.test", "b.test", &stream_id(&f));
    r.send(&format!(
        "<db:result from='b.test' to='a.test'>{k}</db:result>"
    ))
    .await;
    let out = r.read_until("/>").await;
    assert!(out.contains("type='valid'"), "{out}");
    // a busy link: 300 stanzas in one write (far more than one read's worth of
    // negotiation backlog); every one is delivered and the stream stays
    let batch: String = (0..300)
        .map(|i| {
            format!("<message from='bob@b.test/x' to='alice@a.test/r' type='chat'><body>batch {i}.</body></message>")
        })
        .collect();
    r.send(&batch).await;
    for i in 0..300 {
        alice.wait_for(&format!("batch {i}.")).await;
    }
    assert!(!a.log().contains("too many stanzas"), "{}", a.log());
}

#[tokio::test]
async fn a_burst_larger_than_the_links_buffer_is_handed_over_without_bounces() {
    // bounce_after = 2: a queue that handed its link one buffer (256 signals) per tick
    // would hold most of these past their time and bounce them; shaping off on both
    // sides so the test is about the queue, not the read limit
    let dns = FakeDns::start(vec![]);
    let s2s = "bounce_after = 2\nqueue_limit = 100000\n";
    let unshaped = "[limits]\nread_rate = 0\n";
    let a = server("a.test", &dns, s2s, unshaped);
    let b = server("b.test", &dns, s2s, unshaped);
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut bob, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r").await;
    // one message first: the link is up before the burst
    alice
        .send("<message to='bob@b.test/r' type='chat' id='w'><body>warm-up</body></message>")
        .await;
    bob.wait_for("warm-up").await;
    const N: usize = 3000;
    let burst: String = (0..N)
        .map(|i| {
            format!(
                "<message to='bob@b.test/r' type='chat' id='b{i}'><body>burst {i}</body></message>"
            )
        })
        .collect();
    alice.send(&burst).await;
    for i in 0..N {
        let m = bob.next_non_presence().await;
        assert!(m.contains(&format!(">burst {i}<")), "message {i}: {m}");
    }
    // and nothing came back to alice as an error
    alice.expect_only_presence(Duration::from_millis(500)).await;
}

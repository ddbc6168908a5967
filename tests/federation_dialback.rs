//! Dialback errors (XEP-0220 §2.4) on an inbound server stream: an authoritative server
//! that answers `type='error'`, a verification asked for a domain not served here, and a
//! pair for a configured component that is not connected. In each case the pair is not
//! authorised (or gets an error) and the stream stays for the others.

mod common;
mod federation_common;
mod xmppd_peers;
use common::*;
use federation_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xmppd_peers::*;

/// A fake authoritative server for `err.test`: it opens the stream, offers dialback, and
/// answers every `<db:verify>` with `type='error'` (remote-server-not-found).
async fn erring_authority() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = String::new();
                let mut opened = false;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                    if !opened && seen.contains("<stream:stream") {
                        opened = true;
                        let _ = s
                            .write_all(
                                b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
                                  xmlns:stream='http://etherx.jabber.org/streams' \
                                  xmlns:db='jabber:server:dialback' id='err' from='err.test' \
                                  version='1.0'><stream:features><dialback \
                                  xmlns='urn:xmpp:features:dialback'/></stream:features>",
                            )
                            .await;
                    }
                    // answer each complete <db:verify ...>key</db:verify>
                    while let Some(start) = seen.find("<db:verify") {
                        let Some(end) = seen[start..].find("</db:verify>") else {
                            break;
                        };
                        let el = seen[start..start + end].to_string();
                        seen.replace_range(..start + end + "</db:verify>".len(), "");
                        let id = el
                            .split(" id='")
                            .nth(1)
                            .and_then(|r| r.split('\'').next())
                            .unwrap_or("")
                            .to_string();
                        let answer = format!(
                            "<db:verify from='err.test' to='a.test' id='{id}' type='error'>\
                             <error type='cancel'><remote-server-not-found \
                             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>"
                        );
                        let _ = s.write_all(answer.as_bytes()).await;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn an_authoritative_server_answering_error_gives_a_dialback_error_and_the_stream_stays() {
    let dns = FakeDns::start(vec![]);
    let port = erring_authority().await;
    let a = server(
        "a.test",
        &dns,
        "",
        &format!("[[routes]]\ndomain = \"err.test\"\nhost = \"127.0.0.1\"\nport = {port}\n"),
    );
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("err.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    r.send("<db:result from='err.test' to='a.test'>abc123</db:result>")
        .await;
    let out = r.read_until("</db:result>").await;
    // XEP-0220 §2.4: the key could not be checked; not "invalid", not a stream error
    assert!(
        out.contains("type='error'") && out.contains("<remote-server-not-found"),
        "{out}"
    );
    assert!(!out.contains("type='invalid'"), "{out}");
    assert!(!out.contains("</stream:stream>"), "{out}");
    // the stream still serves: a verification of a key we never made is answered
    r.send("<db:verify from='err.test' to='a.test' id='nope'>abcdef</db:verify>")
        .await;
    let out = r.read_until("/>").await;
    assert!(out.contains("type='invalid'"), "{out}");
    // and the pair was not authorised
    r.send("<message from='x@err.test' to='alice@a.test'><body>no</body></message>")
        .await;
    let out = r.read_to_close().await;
    assert!(out.contains("<not-authorized"), "{out}");
}

#[tokio::test]
async fn a_verification_for_a_domain_not_served_here_is_an_error_and_the_stream_stays() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns, "", "");
    let mut r = Raw::connect(a.starttls, "a.test").await;
    r.send(&s2s_header("b.test", "a.test")).await;
    r.read_until("</stream:features>").await;
    r.send("<db:verify from='b.test' to='elsewhere.test' id='i1'>abcdef</db:verify>")
        .await;
    let out = r.read_until("</db:verify>").await;
    // XEP-0220 §2.2.2: an error for this key, not host-unknown for the whole stream
    assert!(
        out.contains("type='error'") && out.contains("<item-not-found") && out.contains("id='i1'"),
        "{out}"
    );
    assert!(!out.contains("<host-unknown"), "{out}");
    assert!(!out.contains("</stream:stream>"), "{out}");
    r.send("<db:verify from='b.test' to='a.test' id='i2'>abcdef</db:verify>")
        .await;
    let out = r.read_until("/>").await;
    assert!(
        out.contains("id='i2'") && out.contains("type='invalid'"),
        "{out}"
    );
}

#[tokio::test]
async fn a_disconnected_components_pair_is_verified_beside_another_on_the_same_stream() {
    let dns = FakeDns::start(vec![]);
    // irc.a.test is configured but no component is connected
    let a = server(
        "a.test",
        &dns,
        "",
        "[[components]]\nname = \"irc.a.test\"\nsecret = \"s3cret-irc\"\n",
    );
    dns.add(
        "irc.a.test",
        std::net::Ipv4Addr::LOCALHOST,
        a.starttls.port(),
    );
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
    let id = stream_id(&f);
    // both pairs on one stream, keys made with b.test's secret
    let k_irc = key("known to the test", "irc.a.test", "b.test", &id);
    let k_a = key("known to the test", "a.test", "b.test", &id);
    r.send(&format!(
        "<db:result from='b.test' to='irc.a.test'>{k_irc}</db:result>"
    ))
    .await;
    let out = r.read_until("/>").await;
    // checked with b.test like any other pair, not refused as not ours
    assert!(
        out.contains("to='b.test'") && out.contains("type='valid'"),
        "{out}"
    );
    assert!(!out.contains("</stream:stream>"), "{out}");
    r.send(&format!(
        "<db:result from='b.test' to='a.test'>{k_a}</db:result>"
    ))
    .await;
    let out = r.read_until("/>").await;
    assert!(out.contains("type='valid'"), "{out}");
    r.send("<message from='bob@b.test/x' to='alice@a.test' type='chat'><body>both pairs</body></message>")
        .await;
    let m = alice.wait_for("both pairs").await;
    assert!(m.contains("from='bob@b.test/x'"), "{m}");
}

//! A client library nobody here wrote (tokio-xmpp, from crates.io) logs in over
//! STARTTLS with SCRAM-SHA-256 (channel-bound) and exchanges messages.

mod common;
use common::*;
use futures::StreamExt;
use std::time::Duration;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event};

async fn online(addr: std::net::SocketAddr, jid: &str, pw: &str) -> (Client, Jid) {
    let jid = Jid::new(jid).expect("jid");
    let mut c = Client::new_starttls(
        jid,
        pw,
        DnsConfig::addr(&addr.to_string()),
        Timeouts::default(),
    );
    let bound = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match c.next().await {
                Some(Event::Online { bound_jid, .. }) => return bound_jid,
                Some(Event::Disconnected(e)) => panic!("disconnected: {e}"),
                Some(_) => {}
                None => panic!("stream ended"),
            }
        }
    })
    .await
    .expect("login in time");
    (c, bound)
}

#[tokio::test]
async fn tokio_xmpp_logs_in_and_chats() {
    let d = Daemon::start();
    let (mut alice, alice_jid) = online(d.starttls, "alice@localhost/tx", "alice-pw").await;
    let (mut bob, bob_jid) = online(d.starttls, "bob@localhost/tx", "bob-pw").await;
    assert_eq!(alice_jid.to_string(), "alice@localhost/tx");
    for c in [&mut alice, &mut bob] {
        c.send_stanza(xmpp_parsers::presence::Presence::available().into())
            .await
            .expect("presence");
    }
    let mut m = Message::new(Some(bob_jid.clone()));
    m.type_ = MessageType::Chat;
    m.bodies
        .insert(Lang::default(), "hello from tokio-xmpp".into());
    alice.send_stanza(m.into()).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob.next().await {
                Some(Event::Stanza(s)) => {
                    if let Ok(m) = Message::try_from(s) {
                        return m;
                    }
                }
                Some(Event::Disconnected(e)) => panic!("bob disconnected: {e}"),
                Some(_) => {}
                None => panic!("bob's stream ended"),
            }
        }
    })
    .await
    .expect("message in time");
    assert_eq!(got.from.map(|f| f.to_string()), Some(alice_jid.to_string()));
    assert_eq!(
        got.bodies.values().next().map(String::as_str),
        Some("hello from tokio-xmpp"),
        "{:?}",
        got.bodies
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), alice.send_end()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), bob.send_end()).await;
    // both logged in with SCRAM-SHA-256 bound to the TLS channel
    let log = d.log();
    assert_eq!(
        log.matches("mechanism: SCRAM-SHA-256-PLUS").count(),
        2,
        "{log}"
    );
}

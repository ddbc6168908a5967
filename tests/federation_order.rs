//! Order of federated messages between two xmppd servers, where the receiving server
//! has two ways to deliver them: a message for a full JID its route replica knows goes
//! straight from the inbound server stream to the session (the direct path), a message
//! for a bare JID with two resources goes through the registry. A burst that mixes both
//! must arrive in the order it was sent (RFC 6120 §10.1).

mod common;
mod federation_common;
use common::*;
use federation_common::*;
use std::net::Ipv4Addr;

/// A daemon for `domain` that resolves peers through `dns`.
fn server(domain: &str, dns: &FakeDns) -> Daemon {
    let d = Daemon::with(Options {
        domain: domain.into(),
        extra: format!("[s2s]\n{}retry_initial = 1\n", dns.config()),
        ..Options::default()
    });
    dns.add(domain, Ipv4Addr::LOCALHOST, d.starttls.port());
    d
}

#[tokio::test]
async fn a_burst_to_a_full_and_a_bare_jid_arrives_in_order() {
    let dns = FakeDns::start(vec![]);
    let a = server("a.test", &dns);
    let b = server("b.test", &dns);
    let (mut alice, _) = Raw::login(a.starttls, "a.test", "alice", "alice-pw", "r").await;
    let (mut r1, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r1").await;
    let (mut r2, _) = Raw::login(b.starttls, "b.test", "bob", "bob-pw", "r2").await;
    // the link is up before the burst, so that the burst crosses one open stream
    alice
        .send("<message to='bob@b.test/r1' type='chat' id='w'><body>warm-up</body></message>")
        .await;
    r1.wait_for("warm-up").await;
    // odd: to r1 by its full JID; even: to the bare JID, which both resources get (the
    // same priority), so the registry decides
    const N: usize = 300;
    let mut burst = String::new();
    for i in 1..=N {
        let to = if i % 2 == 1 {
            "bob@b.test/r1"
        } else {
            "bob@b.test"
        };
        burst.push_str(&format!(
            "<message to='{to}' type='chat' id='m{i}'><body>n{i}.</body></message>"
        ));
    }
    alice.send(&burst).await;
    for i in 1..=N {
        let m = r1.next_non_presence().await;
        assert!(
            m.contains(&format!(">n{i}.<")),
            "r1: message {i} out of order: {m}"
        );
        assert!(m.contains("from='alice@a.test/r'"), "{m}");
    }
    for i in (2..=N).step_by(2) {
        let m = r2.next_non_presence().await;
        assert!(
            m.contains(&format!(">n{i}.<")),
            "r2: message {i} out of order: {m}"
        );
    }
    alice
        .expect_only_presence(std::time::Duration::from_millis(300))
        .await;
}

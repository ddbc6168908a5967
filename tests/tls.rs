//! TLS on the wire: key updates, TLS 1.2, and the record layer's alerts, against the
//! real daemon with rustls and OpenSSL clients.

mod common;
use common::*;

#[tokio::test]
async fn key_update_from_a_rustls_client_keeps_the_chat_going() {
    let d = Daemon::start();
    let (mut alice, a) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await;
    let (mut bob, b) = Raw::login(d.starttls, "localhost", "bob", "bob-pw", "r").await;
    for round in 0..3 {
        // update_requested: the server follows alice's key and answers with its own
        alice.key_update().await;
        alice
            .send(&format!(
                "<message to='{b}' type='chat'><body>hi {round}</body></message>"
            ))
            .await;
        let m = bob.next_non_presence().await;
        assert!(m.contains(&format!("hi {round}")), "{m}");
        bob.send(&format!(
            "<message to='{a}' type='chat'><body>back {round}</body></message>"
        ))
        .await;
        let m = alice.next_non_presence().await;
        assert!(m.contains(&format!("back {round}")), "{m}");
    }
}

#[test]
fn key_update_from_openssl_with_and_without_request() {
    let d = Daemon::start();
    let port = d.direct_tls.port().to_string();
    let out = python(
        "s_client_tls.py",
        &["keyupdate", &port, "localhost", "alice", "alice-pw"],
    );
    assert!(out.contains("k: KeyUpdate sent, ping answered"), "{out}");
    assert!(
        out.contains("K: KeyUpdate sent, the server's KeyUpdate received, ping answered"),
        "{out}"
    );
    assert!(out.contains("chat continues"), "{out}");
}

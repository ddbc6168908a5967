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

/// A TLS 1.2 client: STARTTLS, SCRAM-SHA-256-PLUS with tls-server-end-point (the only
/// binding offered on 1.2), and a chat with a TLS 1.3 client.
#[tokio::test]
async fn tls_1_2_client_logs_in_with_end_point_binding_and_chats() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, "localhost").await;
    static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    r.tls_versions = TLS12;
    let f = r.starttls().await;
    assert_eq!(r.tls_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert!(
        f.contains("<mechanism>SCRAM-SHA-256-PLUS</mechanism>"),
        "{f}"
    );
    assert!(
        f.contains("<channel-binding type='tls-server-end-point'/>"),
        "{f}"
    );
    assert!(
        !f.contains("tls-exporter") && !f.contains("tls-unique"),
        "{f}"
    );
    let cb = ClientCb {
        name: "tls-server-end-point",
        data: r.endpoint.clone().expect("server certificate"),
    };
    let ok = r
        .auth_scram_with("SCRAM-SHA-256-PLUS", "alice", "alice-pw", cb)
        .await;
    assert!(ok.starts_with("<success"), "{ok}");
    let a = r.bind(Some("old")).await;
    r.send("<presence/>").await;
    r.wait_for(&format!("from='{a}' to='{a}'")).await;
    let (mut bob, b) = Raw::login(d.starttls, "localhost", "bob", "bob-pw", "r").await;
    for i in 0..3 {
        // a stanza over one record and one over several
        let body = "x".repeat(if i == 1 { 40_000 } else { 10 });
        r.send(&format!(
            "<message to='{b}' type='chat'><body>{i}{body}</body></message>"
        ))
        .await;
        let m = bob.next_non_presence().await;
        assert!(
            m.contains(&format!("<body>{i}{body}</body>")),
            "{}",
            &m[..80]
        );
        bob.send(&format!(
            "<message to='{a}' type='chat'><body>back {i}</body></message>"
        ))
        .await;
        let m = r.next_non_presence().await;
        assert!(m.contains(&format!("back {i}")), "{m}");
    }
}

/// OpenSSL through Python's ssl module, limited to TLS 1.2, on direct TLS; and the same
/// client refused where the listener requires TLS 1.3.
#[test]
fn tls_1_2_from_openssl_and_min_tls_version() {
    let d = Daemon::start();
    let port = d.direct_tls.port().to_string();
    let out = python(
        "s_client_tls.py",
        &["tls12", &port, "localhost", "alice", "alice-pw"],
    );
    assert!(out.contains("version TLSv1.2"), "{out}");
    assert!(out.contains("ping answered"), "{out}");
    assert!(out.contains("closed with close_notify both ways"), "{out}");
    let d = Daemon::with(Options {
        listener: "min_tls_version = \"1.3\"".into(),
        ..Options::default()
    });
    let port = d.direct_tls.port().to_string();
    let out = python(
        "s_client_tls.py",
        &["tls12", &port, "localhost", "alice", "alice-pw", "refused"],
    );
    assert!(out.contains("refused: "), "{out}");
}

/// The client ends its stream and closes TLS in one write: the server's
/// `</stream:stream>` still goes out, then its close_notify (RFC 8446 §6.1).
#[tokio::test]
async fn close_notify_is_answered_after_what_is_queued() {
    let d = Daemon::start();
    let (mut r, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await;
    r.send_then_close_notify("</stream:stream>").await;
    let (text, end) = r.read_to_end_tls().await;
    assert!(text.contains("</stream:stream>"), "{text}");
    assert_eq!(end, Ok(()), "no close_notify from the server");
    // on TLS 1.2 too, with a close_notify alone
    let mut r = Raw::connect(d.starttls, "localhost").await;
    static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    r.tls_versions = TLS12;
    r.starttls().await;
    r.send_then_close_notify("").await;
    assert_eq!(r.read_to_end_tls().await.1, Ok(()));
}

/// Forged records get the alert RFC 8446 §6.2 names, logged at the problems level.
#[tokio::test]
async fn bad_records_get_the_right_alert() {
    let d = Daemon::with(Options {
        log_level: "problems".into(),
        ..Options::default()
    });
    let cases: [(&[u8], &str, &str); 3] = [
        // 16 KiB + 2049 bytes: over any protected record's bound
        (
            &[23, 3, 3, 0x48, 0x01],
            "RecordOverflow",
            "18433 bytes is over the limit",
        ),
        // five bytes of header and nothing: too short, not "too large"
        (&[23, 3, 3, 0, 0], "DecodeError", "0 bytes is too short"),
        // a record that does not authenticate
        (
            &[&[23, 3, 3, 0, 40][..], &[0x55; 40]].concat(),
            "BadRecordMac",
            "failed authentication",
        ),
    ];
    for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for (record, alert, logged) in &cases {
            let mut r = Raw::connect(d.starttls, "localhost").await;
            let v: &'static [&'static rustls::SupportedProtocolVersion] =
                Box::leak(Box::new([versions]));
            r.tls_versions = v;
            r.starttls().await;
            r.send_raw_record(record).await;
            let (_, end) = r.read_to_end_tls().await;
            let e = end.expect_err("the server must answer with an alert");
            assert!(e.contains(alert), "{versions:?} {record:?}: {e}");
            d.wait_log(logged, 1);
        }
    }
    assert!(d.log().contains("TLS record layer: closing"), "{}", d.log());
}

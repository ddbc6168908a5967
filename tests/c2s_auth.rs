//! Client authentication over real sockets: STARTTLS, every SASL mechanism, direct
//! TLS, legacy auth, resource binding.

mod common;
use common::*;

fn domain() -> &'static str {
    "localhost"
}

#[tokio::test]
async fn features_before_tls_require_starttls_and_hide_plain() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, domain()).await;
    let f = r.open().await;
    assert!(
        f.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{f}"
    );
    assert!(
        !f.contains("<mechanisms"),
        "no SASL before TLS when TLS is required: {f}"
    );
    // trying anyway is refused
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXB3</auth>").await;
    let e = r.next_stanza().await;
    assert!(e.contains("<encryption-required/>"), "{e}");
}

#[tokio::test]
async fn starttls_offers_every_mechanism_and_channel_binding() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, domain()).await;
    let f = r.starttls().await;
    for m in [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
    ] {
        assert!(
            f.contains(&format!("<mechanism>{m}</mechanism>")),
            "{m} missing: {f}"
        );
    }
    assert!(!f.contains("ANONYMOUS"), "anonymous is off by default: {f}");
    assert!(f.contains("<channel-binding type='tls-exporter'/>"), "{f}");
    assert!(
        f.contains("<channel-binding type='tls-server-end-point'/>"),
        "{f}"
    );
    assert!(!f.contains("<starttls"), "no STARTTLS twice: {f}");
}

async fn scram_login(mech: &str) {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, domain()).await;
    r.starttls().await;
    let ok = r.auth_scram(mech, "alice", "alice-pw").await;
    assert!(ok.starts_with("<success"), "{mech}: {ok}");
    let jid = r.bind(Some("res1")).await;
    assert_eq!(jid, "alice@localhost/res1");
}

#[tokio::test]
async fn scram_sha_256() {
    scram_login("SCRAM-SHA-256").await;
}

#[tokio::test]
async fn scram_sha_1() {
    scram_login("SCRAM-SHA-1").await;
}

#[tokio::test]
async fn scram_sha_256_plus_tls_exporter() {
    scram_login("SCRAM-SHA-256-PLUS").await;
}

#[tokio::test]
async fn scram_sha_1_plus_tls_exporter() {
    scram_login("SCRAM-SHA-1-PLUS").await;
}

#[tokio::test]
async fn scram_wrong_password_and_unknown_user_fail_alike() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, domain()).await;
    r.starttls().await;
    let e = r.auth_scram("SCRAM-SHA-256", "alice", "nope").await;
    assert!(e.contains("<not-authorized/>"), "{e}");
    let e = r.auth_scram("SCRAM-SHA-256", "nobody", "nope").await;
    assert!(e.contains("<not-authorized/>"), "{e}");
    // the stream is still usable for a correct attempt (2 failures < 3)
    let ok = r.auth_scram("SCRAM-SHA-256", "alice", "alice-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
}

#[tokio::test]
async fn plain_over_tls() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, domain()).await;
    r.starttls().await;
    let e = r.auth_plain("alice", "wrong").await;
    assert!(e.contains("<not-authorized/>"), "{e}");
    let ok = r.auth_plain("alice", "alice-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
    assert_eq!(
        r.bind(None).await.split('/').next(),
        Some("alice@localhost")
    );
}

#[tokio::test]
async fn too_many_failures_end_the_stream() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, domain()).await;
    r.starttls().await;
    for _ in 0..2 {
        let e = r.auth_plain("alice", "wrong").await;
        assert!(e.contains("<not-authorized/>"), "{e}");
    }
    r.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>",
    )
    .await;
    let rest = r.read_to_close().await;
    assert!(
        rest.contains(
            "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        ),
        "{rest}"
    );
}

#[tokio::test]
async fn direct_tls_login() {
    let d = Daemon::start();
    let mut r = Raw::connect_tls(d.direct_tls, domain()).await;
    let f = r.open().await;
    assert!(!f.contains("<starttls"), "{f}");
    assert!(
        f.contains("<mechanism>SCRAM-SHA-256-PLUS</mechanism>"),
        "{f}"
    );
    let ok = r.auth_scram("SCRAM-SHA-256-PLUS", "bob", "bob-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
    assert_eq!(r.bind(Some("d")).await, "bob@localhost/d");
}

#[tokio::test]
async fn anonymous_when_enabled() {
    let d = Daemon::with(Options {
        domain: "a.test".into(),
        accounts: vec![],
        ..Options::default()
    });
    // anonymous is a per-domain setting: rewrite the config and reload it live
    let cfg = std::fs::read_to_string(&d.config)
        .expect("config")
        .replace("name = \"a.test\"", "name = \"a.test\"\nanonymous = true");
    std::fs::write(&d.config, cfg).expect("write");
    // live: new connections see the setting once the reload is through
    d.signal(libc::SIGHUP);
    let mut tries = 0;
    let mut r = loop {
        let mut r = Raw::connect(d.starttls, "a.test").await;
        let f = r.starttls().await;
        if f.contains("<mechanism>ANONYMOUS</mechanism>") {
            break r;
        }
        tries += 1;
        assert!(tries < 100, "ANONYMOUS never offered after the reload: {f}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        .await;
    let ok = r.next_stanza().await;
    assert!(ok.starts_with("<success"), "{ok}");
    let jid = r.bind(None).await;
    assert!(jid.contains("@a.test/"), "{jid}");
    assert!(jid.starts_with("anon-"), "{jid}");
}

#[tokio::test]
async fn bind_conflict_gets_a_new_resource() {
    let d = Daemon::start();
    let (_a, jid1) = Raw::login(d.starttls, domain(), "alice", "alice-pw", "same").await;
    let (_b, jid2) = Raw::login(d.starttls, domain(), "alice", "alice-pw", "same").await;
    assert_eq!(jid1, "alice@localhost/same");
    assert!(
        jid2.starts_with("alice@localhost/same") && jid2 != jid1,
        "{jid2}"
    );
    let mut r = Raw::connect(d.starttls, domain()).await;
    r.starttls().await;
    assert!(
        r.auth_plain("alice", "alice-pw")
            .await
            .starts_with("<success")
    );
    let generated = r.bind(None).await;
    assert!(
        generated.starts_with("alice@localhost/") && generated.len() > "alice@localhost/".len(),
        "{generated}"
    );
}

#[tokio::test]
async fn legacy_auth_plaintext_password() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, domain()).await;
    let f = r.starttls().await;
    assert!(
        f.contains("<auth xmlns='http://jabber.org/features/iq-auth'/>"),
        "{f}"
    );
    r.send("<iq type='get' id='a1'><query xmlns='jabber:iq:auth'><username>alice</username></query></iq>").await;
    let fields = r.next_stanza().await;
    assert!(
        fields.contains("<password/>") && fields.contains("<resource/>"),
        "{fields}"
    );
    assert!(
        !fields.contains("<digest/>"),
        "no digest with SCRAM-only storage: {fields}"
    );
    r.send("<iq type='set' id='a2'><query xmlns='jabber:iq:auth'><username>alice</username><password>bad</password><resource>old</resource></query></iq>").await;
    let e = r.next_stanza().await;
    assert!(
        e.contains("type='error'") && e.contains("<not-authorized"),
        "{e}"
    );
    r.send("<iq type='set' id='a3'><query xmlns='jabber:iq:auth'><username>alice</username><password>alice-pw</password><resource>old</resource></query></iq>").await;
    let ok = r.next_stanza().await;
    assert!(
        ok.contains("type='result'") && ok.contains("id='a3'"),
        "{ok}"
    );
    // the session works: ping the server
    r.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = r.next_stanza().await;
    assert!(
        pong.contains("type='result'") && pong.contains("id='p1'"),
        "{pong}"
    );
}

#[tokio::test]
async fn legacy_auth_digest_with_plain_storage() {
    let o = Options {
        extra: "[auth]\npassword_format = \"plain\"\n".into(),
        ..Options::default()
    };
    let d = Daemon::with(o);
    let mut r = Raw::connect(d.starttls, domain()).await;
    // the stream id (from the header after STARTTLS) goes into the digest
    let header = r.starttls().await;
    let id_start = header.find(" id='").expect("stream id") + 5;
    let id = &header[id_start..id_start + header[id_start..].find('\'').expect("end")];
    r.send("<iq type='get' id='a1'><query xmlns='jabber:iq:auth'><username>bob</username></query></iq>").await;
    assert!(r.next_stanza().await.contains("<digest/>"));
    use sha1::Digest;
    let digest: String = sha1::Sha1::digest(format!("{id}bob-pw").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    r.send(&format!(
        "<iq type='set' id='a2'><query xmlns='jabber:iq:auth'><username>bob</username><digest>{digest}</digest><resource>dg</resource></query></iq>"
    ))
    .await;
    let ok = r.next_stanza().await;
    assert!(ok.contains("type='result'"), "{ok}");
}

#[tokio::test]
async fn legacy_auth_resource_conflict() {
    let d = Daemon::start();
    let (_a, _) = Raw::login(d.starttls, domain(), "alice", "alice-pw", "taken").await;
    let mut r = Raw::connect(d.starttls, domain()).await;
    r.starttls().await;
    r.send("<iq type='set' id='a3'><query xmlns='jabber:iq:auth'><username>alice</username><password>alice-pw</password><resource>taken</resource></query></iq>").await;
    let e = r.next_stanza().await;
    assert!(e.contains("type='error'") && e.contains("<conflict"), "{e}");
}

/// The first stream header sent in the same segment as the client's TLS Finished is
/// neither lost nor read in the clear: the handshake reads record by record.
#[test]
fn data_pipelined_with_the_tls_finished_is_kept() {
    use std::io::{Read, Write};
    let d = Daemon::start();
    let mut sock = std::net::TcpStream::connect(d.direct_tls).expect("connect");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut c = rustls::ClientConnection::new(client_tls_config(), name).expect("client");
    while c.wants_write() {
        c.write_tls(&mut sock).expect("hello");
    }
    while c.is_handshaking() {
        if c.read_tls(&mut sock).expect("read") == 0 {
            panic!("closed during the handshake");
        }
        c.process_new_packets().expect("process");
    }
    // the client's Finished is queued, not sent: put the stream header behind it
    let hdr = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
    c.writer().write_all(hdr.as_bytes()).expect("queue");
    let mut flight = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut flight).expect("encode");
    }
    sock.write_all(&flight).expect("one write");
    let mut got = String::new();
    while !got.contains("</stream:features>") {
        if c.read_tls(&mut sock).expect("read") == 0 {
            panic!("closed before the features: {got}");
        }
        c.process_new_packets().expect("process");
        let mut buf = [0u8; 4096];
        match c.reader().read(&mut buf) {
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        got.contains("<mechanism>SCRAM-SHA-256-PLUS</mechanism>"),
        "{got}"
    );
}

#[tokio::test]
async fn tls_1_2_is_refused_where_1_3_is_required() {
    let d = Daemon::with(Options {
        listener: "min_tls_version = \"1.3\"".into(),
        ..Options::default()
    });
    let tcp = tokio::net::TcpStream::connect(d.direct_tls)
        .await
        .expect("connect");
    let cfg = client_tls_config_with(&[&rustls::version::TLS12]);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let r = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await;
    // refused for the version, not for anything else about the handshake
    let e = r.expect_err("TLS 1.2 handshake must fail");
    assert!(
        format!("{e:?}").contains("ProtocolVersion"),
        "refused for another reason: {e:?}"
    );
}

#[tokio::test]
async fn scram_sha_256_plus_tls_server_end_point() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, "localhost").await;
    r.starttls().await;
    let good = ClientCb {
        name: "tls-server-end-point",
        data: r.endpoint.clone().expect("server certificate"),
    };
    let ok = r
        .auth_scram_with("SCRAM-SHA-256-PLUS", "alice", "alice-pw", good)
        .await;
    assert!(ok.starts_with("<success"), "{ok}");
    // the hash of another certificate (a man in the middle) fails
    let mut r = Raw::connect(d.starttls, "localhost").await;
    r.starttls().await;
    let bad = ClientCb {
        name: "tls-server-end-point",
        data: vec![0x42; 32],
    };
    let e = r
        .auth_scram_with("SCRAM-SHA-256-PLUS", "alice", "alice-pw", bad)
        .await;
    assert!(e.contains("<not-authorized/>"), "{e}");
}

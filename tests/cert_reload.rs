//! Certificate reload: `xmppd reload` reads the certificate and key files again (global
//! `[tls]` and per domain, also of a domain added live) and serves them to new TLS connections; connections up
//! already keep going; a file that cannot be loaded fails the reload and keeps the
//! certificates served before.

mod common;
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;

/// A self-signed certificate for `name`, written to `cert` and `key` (PEM).
fn self_signed(name: &str, cert: &Path, key: &Path) -> Vec<u8> {
    let k = rcgen::KeyPair::generate().expect("key");
    let c = rcgen::CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .self_signed(&k)
        .expect("cert");
    std::fs::write(cert, c.pem()).expect("write cert");
    std::fs::write(key, k.serialize_pem()).expect("write key");
    c.der().to_vec()
}

/// Accepts any server certificate and keeps the one it saw.
#[derive(Debug)]
struct Record(Mutex<Option<Vec<u8>>>, Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Record {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().expect("lock") = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate a new direct-TLS connection with SNI `name` is served (the
/// handshake checks that the server holds its key).
async fn served(addr: SocketAddr, name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rec = Arc::new(Record(Mutex::new(None), provider.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(rec.clone())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let sni = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    let tls = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(sni, tcp),
    )
    .await
    .expect("handshake timeout")
    .expect("handshake");
    drop(tls);
    let seen = rec.0.lock().expect("lock").take();
    seen.expect("a certificate")
}

fn reload(d: &Daemon) -> (bool, String) {
    let out = d.cli(&["reload"]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn ping(a: &mut Raw, id: &str) {
    a.send(&format!(
        "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    let r = a.wait_for(&format!("id='{id}'")).await;
    assert!(r.contains("type='result'"), "{r}");
}

#[tokio::test]
async fn a_reload_serves_new_certificates_to_new_connections_only() {
    let files = tempfile::tempdir().expect("tmp");
    let p = |n: &str| files.path().join(n);
    let a = self_signed("b.test", &p("b.pem"), &p("b.key"));
    let d = Daemon::with(Options {
        extra: format!(
            "[[domain]]\nname = \"b.test\"\ncertificate = \"{}\"\nkey = \"{}\"\n",
            p("b.pem").display(),
            p("b.key").display()
        ),
        ..Options::default()
    });
    assert_eq!(served(d.direct_tls, "b.test").await, a, "cert A at start");
    // a connection made before the reload (the test CA's certificate for localhost)
    let (mut old, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "old").await;

    // the domain's files replaced in place (same paths): B after the reload
    let b = self_signed("b.test", &p("b.pem"), &p("b.key"));
    assert_eq!(
        served(d.direct_tls, "b.test").await,
        a,
        "nothing before reload"
    );
    let (ok, out) = reload(&d);
    assert!(ok, "{out}");
    assert_eq!(
        served(d.direct_tls, "b.test").await,
        b,
        "cert B after reload"
    );
    ping(&mut old, "after-first").await;

    // the global [tls] certificate changed in the file: served where no domain's fits
    let global = self_signed("other.example", &p("g.pem"), &p("g.key"));
    let text = std::fs::read_to_string(&d.config).expect("config");
    let pki = pki();
    let text = text
        .replace(
            &pki.cert.display().to_string(),
            &p("g.pem").display().to_string(),
        )
        .replace(
            &pki.key.display().to_string(),
            &p("g.key").display().to_string(),
        );
    std::fs::write(&d.config, text).expect("config");
    let (ok, out) = reload(&d);
    assert!(ok && out.contains("tls certificate"), "{out}");
    assert!(!out.contains("needs-restart"), "{out}");
    assert_eq!(served(d.direct_tls, "other.example").await, global);
    assert_eq!(served(d.direct_tls, "b.test").await, b);
    ping(&mut old, "after-second").await;

    // a domain added live with a certificate of its own: served after the same reload
    let live = self_signed("c.test", &p("c-live.pem"), &p("c-live.key"));
    let text = std::fs::read_to_string(&d.config).expect("config");
    let text = format!(
        "{text}\n[[domain]]\nname = \"c.test\"\ncertificate = \"{}\"\nkey = \"{}\"\n",
        p("c-live.pem").display(),
        p("c-live.key").display()
    );
    std::fs::write(&d.config, text).expect("config");
    let (ok, out) = reload(&d);
    assert!(ok && out.contains("added [c.test]"), "{out}");
    assert!(!out.contains("needs-restart"), "{out}");
    assert_eq!(served(d.direct_tls, "c.test").await, live);
    assert_eq!(served(d.direct_tls, "b.test").await, b);

    // a key that does not belong to the certificate: the reload fails, B stays
    self_signed("b.test", &p("c.pem"), &p("c.key"));
    std::fs::copy(p("c.key"), p("b.key")).expect("copy");
    // `xmppd reload` checks the files before it signals; SIGHUP alone reaches the
    // daemon, which must refuse them itself
    let (ok, out) = reload(&d);
    assert!(!ok && out.contains("KeyMismatch"), "{out}");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration not reloaded", 1);
    assert!(d.log().contains("KeyMismatch"), "{}", d.log());
    assert_eq!(served(d.direct_tls, "b.test").await, b, "old cert kept");
    // a file that is not PEM at all: the same
    std::fs::write(p("b.pem"), "not a certificate").expect("write");
    let (ok, out) = reload(&d);
    assert!(!ok && out.contains("b.pem"), "{out}");
    assert_eq!(served(d.direct_tls, "b.test").await, b, "old cert kept");
    ping(&mut old, "after-failures").await;
}

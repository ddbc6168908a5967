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

/// A TLS 1.2 client configuration that accepts any server certificate; one kept for
/// several connections resumes its sessions where the server allows.
fn any_cert_tls12() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rec = Arc::new(Record(Mutex::new(None), provider.clone()));
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(rec)
            .with_no_client_auth(),
    )
}

/// A STARTTLS stream to `domain` upgraded with `cfg`, not yet authenticated.
async fn tls12_stream(d: &Daemon, domain: &str, cfg: &Arc<rustls::ClientConfig>) -> Raw {
    let mut r = Raw::connect(d.starttls, domain).await;
    r.tls_config = Some(cfg.clone());
    r.starttls().await;
    r
}

/// SCRAM-SHA-256-PLUS with tls-server-end-point: the hash of the certificate this
/// client was served on its connection.
async fn plus_login(r: &mut Raw, user: &str, password: &str) -> String {
    let cb = ClientCb {
        name: "tls-server-end-point",
        data: r.endpoint.clone().expect("server certificate"),
    };
    r.auth_scram_with("SCRAM-SHA-256-PLUS", user, password, cb)
        .await
}

fn sha256(der: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(der).to_vec()
}

/// The generation of the daemon's last reload report.
fn status_generation(d: &Daemon) -> (u64, String) {
    let t = std::fs::read_to_string(d.dir.path().join("data").join("reload.status"))
        .unwrap_or_default();
    let g = t
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("generation "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (g, t)
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
    // and one to the domain whose certificate changes, accepted before the reload and
    // authenticated after it; its TLS 1.2 session is cached by client and server
    let out = d.cli(&["account", "add", "bea@b.test", "--password", "bea-pw"]);
    assert!(out.status.success(), "{out:?}");
    let tls12 = any_cert_tls12();
    let mut held = tls12_stream(&d, "b.test", &tls12).await;
    assert_eq!(held.endpoint, Some(sha256(&a)));

    // the domain's files replaced in place (same paths): B after the reload
    let b = self_signed("b.test", &p("b.pem"), &p("b.key"));
    assert_eq!(
        served(d.direct_tls, "b.test").await,
        a,
        "nothing before reload"
    );
    let (ok, out) = reload(&d);
    assert!(ok, "{out}");
    // a renewal in place does not change the settings: the report still shows it
    assert!(out.contains("certificates changed"), "{out}");
    assert_eq!(
        served(d.direct_tls, "b.test").await,
        b,
        "cert B after reload"
    );
    // the held connection is bound to A, the certificate it was served
    let ok = plus_login(&mut held, "bea", "bea-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
    held.bind(Some("held")).await;
    ping(&mut held, "held").await;
    // a new connection with the same client (which offers to resume its session from
    // before the reload) is served B and bound to it
    let mut new = tls12_stream(&d, "b.test", &tls12).await;
    assert_eq!(new.endpoint, Some(sha256(&b)), "a full handshake with B");
    let ok = plus_login(&mut new, "bea", "bea-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
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
    // `xmppd reload` checks the configuration, files included, before it signals: it
    // refuses without signalling, and says which key and certificate do not fit
    let (before, _) = status_generation(&d);
    let (ok, out) = reload(&d);
    assert!(!ok && out.contains("KeyMismatch"), "{out}");
    let (key, cert) = (
        p("b.key").display().to_string(),
        p("b.pem").display().to_string(),
    );
    assert!(out.contains(&key) && out.contains(&cert), "{out}");
    assert_eq!(
        status_generation(&d).0,
        before,
        "the daemon was not signalled"
    );
    // a SIGHUP alone reaches the daemon, which must refuse them itself: its report is
    // the next generation, and the log has its (first) refusal
    d.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        let (g, t) = status_generation(&d);
        if g > before {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no report after SIGHUP: {t}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        status.contains("result failed") && status.contains("KeyMismatch") && status.contains(&key),
        "{status}"
    );
    d.wait_log("configuration not reloaded", 1);
    assert_eq!(served(d.direct_tls, "b.test").await, b, "old cert kept");
    // a file that is not PEM at all: the same
    std::fs::write(p("b.pem"), "not a certificate").expect("write");
    let (ok, out) = reload(&d);
    assert!(!ok && out.contains("b.pem"), "{out}");
    assert_eq!(served(d.direct_tls, "b.test").await, b, "old cert kept");
    ping(&mut old, "after-failures").await;
    ping(&mut held, "held-after-failures").await;
}

/// A reload whose file moves `data_dir` (which needs a restart) and drops the `[tls]`
/// certificate: the generated certificate is made in the data directory the server
/// runs on, not in the file's new one, and served.
#[tokio::test]
async fn a_generated_certificate_goes_to_the_running_data_dir() {
    let d = Daemon::start();
    let running = d.dir.path().join("data");
    let elsewhere = d.dir.path().join("elsewhere");
    let pki = pki();
    let text = std::fs::read_to_string(&d.config).expect("config");
    let text = text
        .replace(&format!("certificate = \"{}\"\n", pki.cert.display()), "")
        .replace(&format!("key = \"{}\"\n", pki.key.display()), "")
        .replace(
            &format!("data_dir = \"{}\"", running.display()),
            &format!("data_dir = \"{}\"", elsewhere.display()),
        );
    assert!(text.contains("elsewhere"), "{text}");
    std::fs::write(&d.config, text).expect("config");
    // SIGHUP itself: `xmppd reload` would look for the daemon in the new data_dir
    let (before, _) = status_generation(&d);
    d.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        let (g, t) = status_generation(&d);
        if g > before {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "no report: {t}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        status.contains("result reloaded") && status.contains("needs-restart data_dir"),
        "{status}"
    );
    assert!(
        !elsewhere.exists(),
        "nothing written to the file's new data_dir"
    );
    let pem = std::fs::read(running.join("certs").join("selfsigned.crt")).expect("generated");
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::from_pem_slice(&pem).expect("pem");
    assert_eq!(served(d.direct_tls, "localhost").await, der.to_vec());
}

//! The outgoing TLS client: rustls with the system's trust store plus the configured
//! trusted certificates. The certificate check (RFC 6125 / XEP-0178: the domain, or the
//! relay host a router record names) never fails the handshake by itself: its outcome
//! is recorded, and the link decides (dialback needs no valid certificate; a secure
//! domain does).

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::{Arc, Mutex};
use xmppd_proto::net::tls::provider;

/// What the peer's certificate turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertCheck {
    /// Not checked (no TLS yet).
    None,
    Valid,
    /// The chain does not lead to a trusted certificate (or is expired, malformed...).
    Untrusted,
    /// Trusted, but names neither the domain nor the relay host.
    WrongName,
}

/// The trusted roots: the system bundle (when present) and the configured PEM files.
pub fn roots(trusted: &[String]) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let system = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ];
    for path in system
        .iter()
        .map(|s| s.to_string())
        .chain(trusted.iter().cloned())
    {
        if let Ok(iter) = CertificateDer::pem_file_iter(&path) {
            for c in iter.flatten() {
                let _ = roots.add(c);
            }
        }
    }
    Arc::new(roots)
}

/// Check a certificate chain against `roots` for any of `names` (RFC 6125 DNS-ID, as
/// XEP-0178 asks of server certificates), now.
pub fn check_chain(
    roots: Arc<RootCertStore>,
    chain: &[CertificateDer<'_>],
    names: &[&str],
) -> CertCheck {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return CertCheck::Untrusted;
    };
    let Ok(v) = WebPkiServerVerifier::builder_with_provider(roots, provider()).build() else {
        return CertCheck::Untrusted;
    };
    let now = UnixTime::now();
    let mut outcome = CertCheck::Untrusted;
    for name in names {
        let Ok(n) = ServerName::try_from(name.to_string()) else {
            continue;
        };
        match v.verify_server_cert(end_entity, intermediates, &n, &[], now) {
            Ok(_) => return CertCheck::Valid,
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                outcome = CertCheck::WrongName
            }
            Err(_) => {}
        }
    }
    outcome
}

#[derive(Debug)]
struct Recording {
    /// `None` when there is no trusted certificate at all: every chain is untrusted.
    inner: Option<Arc<WebPkiServerVerifier>>,
    /// Another name the certificate may carry (the relay host of a router record).
    relay: Option<ServerName<'static>>,
    outcome: Arc<Mutex<CertCheck>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let check = |name: &ServerName<'_>| match &self.inner {
            Some(v) => v.verify_server_cert(end_entity, intermediates, name, ocsp, now),
            None => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        };
        let name_error = |e: &Error| {
            matches!(
                e,
                Error::InvalidCertificate(CertificateError::NotValidForName)
                    | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            )
        };
        let outcome = match check(server_name) {
            Ok(_) => CertCheck::Valid,
            Err(e) if name_error(&e) => match self.relay.as_ref().map(check) {
                Some(Ok(_)) => CertCheck::Valid,
                _ => CertCheck::WrongName,
            },
            Err(_) => CertCheck::Untrusted,
        };
        if let Ok(mut o) = self.outcome.lock() {
            *o = outcome;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Presents our certificate for the local domain as the client certificate.
#[derive(Debug)]
struct OurCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OurCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client configuration for one connection (presenting `ours` as the client
/// certificate when given), and where its certificate check lands.
pub fn client_config(
    roots: Arc<RootCertStore>,
    relay: Option<&str>,
    ours: Option<Arc<rustls::sign::CertifiedKey>>,
) -> Result<(Arc<rustls::ClientConfig>, Arc<Mutex<CertCheck>>), Error> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .ok();
    let outcome = Arc::new(Mutex::new(CertCheck::None));
    let verifier = Recording {
        inner,
        relay: relay.and_then(|r| ServerName::try_from(r.to_string()).ok()),
        outcome: outcome.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let cfg = match ours {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(OurCertificate(ck))),
        None => builder.with_no_client_auth(),
    };
    Ok((Arc::new(cfg), outcome))
}

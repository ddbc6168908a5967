//! The outgoing TLS client: rustls with the system's trust store plus the configured
//! trusted certificates. The certificate check (RFC 6125 / XEP-0178: the domain, or the
//! relay host a router record names) never fails the handshake by itself: its outcome
//! is recorded, and the link decides (dialback needs no valid certificate; a secure
//! domain does).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::{Arc, Mutex};
use xmppd_proto::net::tls::provider;

pub use xmppd_proto::s2s::certs::{CertCheck, check_chain, roots};

#[derive(Debug)]
struct Recording {
    roots: Arc<RootCertStore>,
    /// Another name the certificate may carry (the relay host of a router record).
    relay: Option<String>,
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
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let name = match server_name {
            ServerName::DnsName(n) => n.as_ref().to_string(),
            other => other.to_str().into_owned(),
        };
        let mut names = vec![name.as_str()];
        if let Some(r) = &self.relay {
            names.push(r);
        }
        let _ = (ocsp, now);
        let outcome = check_chain(self.roots.clone(), &chain, &names);
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
    let outcome = Arc::new(Mutex::new(CertCheck::None));
    let verifier = Recording {
        roots,
        relay: relay.map(str::to_string),
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

//! Server certificates (RFC 6125, XEP-0178): which certificates are trusted, and
//! whether a chain validates for a domain (or a relay host's name).

use crate::net::tls::provider;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, Error, RootCertStore};
use std::sync::{Arc, Mutex};

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
/// Read once per list of files and kept (the last list asked for): streams and links
/// ask for every handshake, and the system bundle is some hundred certificates.
pub fn roots(trusted: &[String]) -> Arc<RootCertStore> {
    static CACHE: Mutex<Option<(Vec<String>, Arc<RootCertStore>)>> = Mutex::new(None);
    let mut cache = match CACHE.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some((list, r)) = cache.as_ref()
        && list.as_slice() == trusted
    {
        return r.clone();
    }
    let r = load_roots(trusted);
    *cache = Some((trusted.to_vec(), r.clone()));
    r
}

fn load_roots(trusted: &[String]) -> Arc<RootCertStore> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    struct Ca {
        der: CertificateDer<'static>,
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("ca");
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, names: &[&str]) -> Vec<CertificateDer<'static>> {
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca.issuer).expect("leaf");
        vec![cert.der().clone()]
    }

    fn trusting(ca: &Ca) -> Arc<RootCertStore> {
        let mut r = RootCertStore::empty();
        r.add(ca.der.clone()).expect("root");
        Arc::new(r)
    }

    #[test]
    fn a_chain_to_a_trusted_ca_for_the_domain_is_valid() {
        let ca = ca();
        let chain = leaf(&ca, &["a.example", "*.a.example"]);
        assert_eq!(
            check_chain(trusting(&ca), &chain, &["a.example"]),
            CertCheck::Valid
        );
        assert_eq!(
            check_chain(trusting(&ca), &chain, &["rooms.a.example"]),
            CertCheck::Valid
        );
    }

    #[test]
    fn another_name_is_wrong_unless_it_is_the_relay() {
        let ca = ca();
        let chain = leaf(&ca, &["relay.example"]);
        assert_eq!(
            check_chain(trusting(&ca), &chain, &["a.example"]),
            CertCheck::WrongName
        );
        assert_eq!(
            check_chain(trusting(&ca), &chain, &["a.example", "relay.example"]),
            CertCheck::Valid
        );
    }

    #[test]
    fn untrusted_issuers_and_empty_chains_are_untrusted() {
        let (ca, other) = (ca(), ca());
        let chain = leaf(&ca, &["a.example"]);
        assert_eq!(
            check_chain(trusting(&other), &chain, &["a.example"]),
            CertCheck::Untrusted
        );
        let none = Arc::new(RootCertStore::empty());
        assert_eq!(
            check_chain(none, &chain, &["a.example"]),
            CertCheck::Untrusted
        );
        assert_eq!(
            check_chain(trusting(&ca), &[], &["a.example"]),
            CertCheck::Untrusted
        );
    }

    #[test]
    fn configured_pem_files_are_trusted() {
        let ca = ca();
        let dir = std::env::temp_dir().join(format!("xmppd-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, &ca.pem).expect("write");
        let r = roots(&[pem.display().to_string()]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let chain = leaf(&ca, &["a.example"]);
        assert_eq!(check_chain(r, &chain, &["a.example"]), CertCheck::Valid);
    }
}

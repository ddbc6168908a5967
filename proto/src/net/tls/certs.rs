//! The certificates a TLS configuration serves: PEM files loaded into rustls's
//! `CertifiedKey`, and the store that picks one by SNI.

use super::{TlsError, provider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Load a PEM certificate chain and private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, &e))?;
    if chain.is_empty() {
        return Err(pem_err(cert, &"no certificate in file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, &e))?;
    // a key that does not fit: name both files
    certified_key_from_der(chain, key_der).map_err(|e| match e {
        TlsError::Rustls(error) => TlsError::Pair {
            key: key.display().to_string(),
            cert: cert.display().to_string(),
            error,
        },
        e => e,
    })
}

pub fn certified_key_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let p = provider();
    let ck = CertifiedKey::from_der(chain, key, &p)?;
    Ok(ck)
}

/// Certificates by domain name, with a default for clients that send no SNI.
#[derive(Debug)]
pub(super) struct CertStore {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertStore {
    pub(super) fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name.map(|n| n.to_ascii_lowercase()) else {
            return &self.default;
        };
        if let Some(ck) = self.by_name.get(&name) {
            return ck;
        }
        // a subdomain (rooms.example.org) falls back to its parent's certificate
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(ck) = self.by_name.get(parent) {
                return ck;
            }
            rest = parent;
        }
        &self.default
    }
}

impl CertStore {
    pub(super) fn new(default: CertifiedKey, per_domain: Vec<(String, CertifiedKey)>) -> Self {
        CertStore {
            by_name: per_domain
                .into_iter()
                .map(|(n, ck)| (n.to_ascii_lowercase(), Arc::new(ck)))
                .collect(),
            default: Arc::new(default),
        }
    }
}

impl CertStore {
    /// Every certificate chain (default and per name) is the same as in `other`.
    pub(super) fn same_certificates(&self, other: &CertStore) -> bool {
        self.default.cert == other.default.cert
            && self.by_name.len() == other.by_name.len()
            && self
                .by_name
                .iter()
                .all(|(n, ck)| other.by_name.get(n).is_some_and(|o| o.cert == ck.cert))
    }
}

/// A store never changes: a reload builds a new one with new configurations.
impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()).clone())
    }
}

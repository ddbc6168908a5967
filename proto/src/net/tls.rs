//! TLS for streams: certificates per domain (chosen by SNI), the rustls server
//! configuration, and the channel-binding data SCRAM-*-PLUS needs.

use crate::config::TlsVersion;
use crate::net::record_layer::{HEADER, MAX_PLAINTEXT, RecordLayer, TrafficSecret};

mod certs;
use certs::CertStore;
pub use certs::{certified_key_from_der, load_certified_key};

/// Largest handshake record body read (the TLS 1.2 ciphertext bound, generous for 1.3).
const MAX_HANDSHAKE_RECORD: usize = MAX_PLAINTEXT + 2048;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::cell::RefCell;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("private key {key} and certificate {cert}: {error:?}")]
    Pair {
        key: String,
        cert: String,
        error: rustls::Error,
    },
}

/// The ring provider, named explicitly so that feature unification never changes it.
/// TLS 1.2 suites are ECDHE with an AEAD only (rustls offers nothing weaker).
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// One generation of certificates and the configurations that serve them: a reload
/// builds a new one and swaps it in whole. A connection keeps the bundle it was
/// accepted with, so its channel binding hashes the certificate it was served, and the
/// new configurations start with empty session caches (a TLS 1.2 session resumed
/// across a reload would otherwise be bound to the old certificate).
#[derive(Debug)]
struct Bundle {
    store: Arc<CertStore>,
    /// TLS 1.2 and 1.3.
    tls12: Arc<ServerConfig>,
    /// TLS 1.3 only.
    tls13: Arc<ServerConfig>,
}

impl Bundle {
    fn new(store: CertStore) -> Result<Self, TlsError> {
        let store = Arc::new(store);
        let config = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            // after the handshake the record layer is ours (see record_layer)
            let mut cfg = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)?
                .with_client_cert_verifier(Arc::new(OptionalClientCert))
                .with_cert_resolver(store.clone());
            // Memory per idle session matters more than resumption across restarts.
            cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
            cfg.send_tls13_tickets = 0;
            cfg.enable_secret_extraction = true;
            cfg.key_log = Arc::new(CaptureTrafficSecrets);
            // TLS 1.2 without the extended master secret is open to triple handshakes
            // (RFC 7627); tls-server-end-point is the binding offered there
            cfg.require_ems = true;
            // our order (AES-128-GCM first: its key schedule hashes with SHA-256, cheaper
            // per handshake than SHA-384, and its keys are smaller to keep per session)
            cfg.ignore_client_order = true;
            Ok::<_, TlsError>(Arc::new(cfg))
        };
        Ok(Bundle {
            tls12: config(&[&rustls::version::TLS13, &rustls::version::TLS12])?,
            tls13: config(&[&rustls::version::TLS13])?,
            store,
        })
    }

    fn config(&self, min: TlsVersion) -> &Arc<ServerConfig> {
        match min {
            TlsVersion::Tls12 => &self.tls12,
            TlsVersion::Tls13 => &self.tls13,
        }
    }

    /// Channel-binding data for a connection this bundle's configuration accepted
    /// (RFC 9266, RFC 5929).
    fn channel_binding(&self, conn: &ServerConnection) -> ChannelBinding {
        // tls-exporter only with TLS 1.3 (RFC 9266 §3, XEP-0440); on TLS 1.2 the
        // binding offered is tls-server-end-point (tls-unique never is)
        let exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| {
                conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
                    .ok()
            })
            .flatten();
        // the certificate this bundle's resolver served for the same name (a resumed
        // session was made with this bundle too: its cache is its own)
        let ck = self.store.pick(conn.server_name());
        let endpoint = ck.cert.first().map(|c| server_end_point(c.as_ref()));
        let version = conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("unknown");
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("unknown");
        let peer_chain = conn
            .peer_certificates()
            .filter(|c| !c.is_empty())
            .map(|c| Arc::new(c.iter().map(|d| d.clone().into_owned()).collect()));
        ChannelBinding {
            exporter,
            endpoint,
            version,
            cipher,
            peer_chain,
        }
    }
}

/// Everything a connection needs for TLS: the current [`Bundle`] (shared by every
/// clone, swapped by a reload) and the listener's lowest TLS version.
#[derive(Clone)]
pub struct TlsContext {
    live: Arc<arc_swap::ArcSwap<Bundle>>,
    min: TlsVersion,
}

impl TlsContext {
    pub fn new(
        default: CertifiedKey,
        per_domain: Vec<(String, CertifiedKey)>,
    ) -> Result<Self, TlsError> {
        let bundle = Bundle::new(CertStore::new(default, per_domain))?;
        Ok(TlsContext {
            live: Arc::new(arc_swap::ArcSwap::from_pointee(bundle)),
            min: TlsVersion::Tls12,
        })
    }

    /// Serve these certificates to the handshakes that start from now on (a reload);
    /// connections up already keep theirs. Every clone of this context sees the change.
    /// Returns whether any certificate served differs from before (an in-place renewal
    /// shows as a change).
    pub fn replace_certificates(
        &self,
        default: CertifiedKey,
        per_domain: Vec<(String, CertifiedKey)>,
    ) -> Result<bool, TlsError> {
        let store = CertStore::new(default, per_domain);
        let changed = !store.same_certificates(&self.live.load().store);
        self.live.store(Arc::new(Bundle::new(store)?));
        Ok(changed)
    }

    /// This context, accepting TLS versions from `min` on (a listener's setting).
    pub fn with_min_version(&self, min: TlsVersion) -> TlsContext {
        TlsContext {
            live: self.live.clone(),
            min,
        }
    }

    /// The certificate and key served for `name` (also what an outgoing server stream
    /// presents as its client certificate).
    pub fn certified_key(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        self.live.load().store.pick(name).clone()
    }
}

/// Asks every peer for a certificate and accepts any, or none: only server streams use
/// it (SASL EXTERNAL, RFC 6120 §13.7), and they check the chain against their trusted
/// certificates and the claimed domain themselves. The handshake still proves the peer
/// holds the certificate's key (the signature checks below). Clients send none.
#[derive(Debug)]
struct OptionalClientCert;

impl rustls::server::danger::ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS record layer: {0}")]
    Record(#[from] crate::net::record_layer::RecordError),
    #[error("during the TLS handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake record too large")]
    Oversized,
    #[error("the TLS 1.3 traffic secrets were not captured")]
    Secrets,
}

impl TlsContext {
    /// Run the server side of a TLS 1.3 handshake on `tcp` with rustls, then take its
    /// traffic secrets for our own record layer.
    ///
    /// Records are read one at a time, so nothing the client sends after its Finished
    /// is consumed here: it stays in the socket for the record layer.
    pub async fn accept(
        &self,
        tcp: &mut TcpStream,
    ) -> Result<(RecordLayer, ChannelBinding), HandshakeError> {
        // this connection's bundle: a reload during the handshake does not change it
        let bundle = self.live.load_full();
        let mut conn = ServerConnection::new(bundle.config(self.min).clone())?;
        let mut captured = Captured::take();
        let mut record = Vec::with_capacity(1024);
        let mut out = Vec::new();
        loop {
            while conn.wants_write() {
                out.clear();
                conn.write_tls(&mut out)?;
                tcp.write_all(&out).await?;
            }
            if !conn.is_handshaking() {
                break;
            }
            record.resize(HEADER, 0);
            tcp.read_exact(&mut record[..HEADER]).await?;
            let len = u16::from_be_bytes([record[3], record[4]]) as usize;
            if len > MAX_HANDSHAKE_RECORD {
                return Err(HandshakeError::Oversized);
            }
            record.resize(HEADER + len, 0);
            tcp.read_exact(&mut record[HEADER..]).await?;
            let mut rest = &record[..];
            while !rest.is_empty() {
                conn.read_tls(&mut rest)?;
                let processed = conn.process_new_packets();
                captured.merge(Captured::take());
                if let Err(e) = processed {
                    // tell the client why (the alert), then give up
                    out.clear();
                    let _ = conn.write_tls(&mut out);
                    let _ = tcp.write_all(&out).await;
                    return Err(e.into());
                }
            }
        }
        let cb = bundle.channel_binding(&conn);
        let layer = record_layer(conn, captured)?;
        Ok((layer, cb))
    }
}

/// The record layer for an established connection: rustls's keys, and (TLS 1.3) the
/// traffic secrets they came from, for key updates.
fn record_layer(conn: ServerConnection, captured: Captured) -> Result<RecordLayer, HandshakeError> {
    let traffic = match (captured.client, captured.server) {
        (Some(rx), Some(tx)) => Some((rx, tx)),
        _ if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2) => None,
        _ => return Err(HandshakeError::Secrets),
    };
    Ok(RecordLayer::new(
        conn.dangerous_extract_secrets()?,
        traffic,
    )?)
}

/// The TLS 1.3 application traffic secrets of a handshake. rustls hands them to its
/// `KeyLog` while `process_new_packets` runs (synchronously, on this thread); each call
/// is followed by [`Captured::take`], so a handshake never sees another's secrets.
/// (rustls's `KernelConnection` would derive updates too, but keeps its whole key
/// schedule per connection; the two secrets are 96 bytes.)
#[derive(Default)]
struct Captured {
    client: Option<TrafficSecret>,
    server: Option<TrafficSecret>,
}

thread_local! {
    static CAPTURED: RefCell<Captured> = RefCell::new(Captured::default());
}

impl Captured {
    fn take() -> Captured {
        CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
    }

    fn merge(&mut self, other: Captured) {
        if other.client.is_some() {
            self.client = other.client;
        }
        if other.server.is_some() {
            self.server = other.server;
        }
    }
}

#[derive(Debug)]
struct CaptureTrafficSecrets;

impl rustls::KeyLog for CaptureTrafficSecrets {
    fn will_log(&self, label: &str) -> bool {
        matches!(label, "CLIENT_TRAFFIC_SECRET_0" | "SERVER_TRAFFIC_SECRET_0")
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        CAPTURED.with(|c| {
            let mut c = c.borrow_mut();
            match label {
                "CLIENT_TRAFFIC_SECRET_0" => c.client = TrafficSecret::new(secret),
                "SERVER_TRAFFIC_SECRET_0" => c.server = TrafficSecret::new(secret),
                _ => {}
            }
        });
    }
}

/// Channel-binding values of one TLS connection.
#[derive(Debug, Clone, Default)]
pub struct ChannelBinding {
    pub exporter: Option<Vec<u8>>,
    pub endpoint: Option<Vec<u8>>,
    /// The negotiated protocol version and cipher suite (rustls' names), for the
    /// monitor.
    pub version: &'static str,
    pub cipher: &'static str,
    /// The certificate chain the peer presented, if any (server streams: SASL EXTERNAL).
    pub peer_chain: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl ChannelBinding {
    /// The channel-binding types this connection can offer, in preference order.
    pub fn types(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.exporter.is_some() {
            v.push("tls-exporter");
        }
        if self.endpoint.is_some() {
            v.push("tls-server-end-point");
        }
        v
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.exporter.as_deref(),
            "tls-server-end-point" => self.endpoint.as_deref(),
            _ => None,
        }
    }
}

/// RFC 5929 §4.1: hash of the server certificate with its signature's hash function,
/// SHA-256 when that is MD5 or SHA-1.
fn server_end_point(der: &[u8]) -> Vec<u8> {
    match signature_hash(der) {
        SigHash::Sha384 => Sha384::digest(der).to_vec(),
        SigHash::Sha512 => Sha512::digest(der).to_vec(),
        SigHash::Sha256 => Sha256::digest(der).to_vec(),
    }
}

enum SigHash {
    Sha256,
    Sha384,
    Sha512,
}

/// id-RSASSA-PSS: the hash is in the algorithm's parameters (RFC 4055 §3.1).
const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

/// Read the signatureAlgorithm of a DER certificate (our own, from the config): its
/// OID, or for RSA-PSS the OID of the hash in its parameters (absent: SHA-1).
fn signature_hash(der: &[u8]) -> SigHash {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, .. }
    let oid = (|| {
        let (_, body) = der_header(der)?; // outer SEQUENCE contents
        let (tbs_len, _) = der_header(body)?;
        let rest = body.get(tbs_len..)?; // skip tbsCertificate
        let (_, alg) = der_header(rest)?; // AlgorithmIdentifier contents
        let (oid_len, oid) = der_header(alg)?;
        if oid != RSASSA_PSS {
            return Some(oid.to_vec());
        }
        // RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier, .. }
        let params = alg.get(oid_len..).and_then(der_header).map(|(_, p)| p);
        let hash = params
            .filter(|p| p.first() == Some(&0xa0))
            .and_then(der_header)
            .and_then(|(_, h)| der_header(h))
            .and_then(|(_, h)| der_header(h))
            .map(|(_, oid)| oid.to_vec());
        Some(hash.unwrap_or_default())
    })();
    const SHA384_OIDS: [&[u8]; 3] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02], // id-sha384 (RSA-PSS)
    ];
    const SHA512_OIDS: [&[u8]; 3] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03], // id-sha512 (RSA-PSS)
    ];
    match oid {
        Some(o) if SHA384_OIDS.contains(&o.as_slice()) => SigHash::Sha384,
        Some(o) if SHA512_OIDS.contains(&o.as_slice()) => SigHash::Sha512,
        _ => SigHash::Sha256,
    }
}

/// Parse one DER TLV header: returns (total length of the TLV, contents).
fn der_header(b: &[u8]) -> Option<(usize, &[u8])> {
    let len_byte = *b.get(1)?;
    let (len, hdr) = if len_byte < 0x80 {
        (len_byte as usize, 2)
    } else {
        let n = (len_byte & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let contents = b.get(hdr..hdr.checked_add(len)?)?;
    Some((hdr + len, contents))
}

/// A self-signed certificate for `names` (first one is the subject), as PEM (cert, key).
pub fn self_signed_pem(names: &[String]) -> Result<(String, String), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests;

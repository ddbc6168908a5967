//! TLS handshakes in memory against rustls clients, and the channel-binding hashes.

use super::*;
use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
use std::io::{Read, Write};

/// A rustls client and our server in memory: the handshake, then the server's
/// record layer (as [`TlsContext::accept`] builds it).
fn in_memory(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (rustls::ClientConnection, RecordLayer) {
    in_memory_with(rustls::crypto::ring::default_provider(), versions)
}

fn in_memory_with(
    client_provider: CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (rustls::ClientConnection, RecordLayer) {
    let (pem, key) = self_signed_pem(&["a.test".into()]).expect("cert");
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let ck = certified_key_from_der(vec![der.clone()], key).expect("ck");
    let ctx = TlsContext::new(ck, vec![]).expect("ctx");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let ccfg = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("a.test").expect("name");
    let mut client = rustls::ClientConnection::new(Arc::new(ccfg), name).expect("client");
    let mut server = ServerConnection::new(ctx.live.load().tls12.clone()).expect("server");
    let mut captured = Captured::take();
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).expect("client write");
        if !buf.is_empty() {
            server.read_tls(&mut &buf[..]).expect("server read");
            server.process_new_packets().expect("server process");
            captured.merge(Captured::take());
        }
        buf.clear();
        server.write_tls(&mut buf).expect("server write");
        if !buf.is_empty() {
            client.read_tls(&mut &buf[..]).expect("client read");
            client.process_new_packets().expect("client process");
        }
    }
    (
        client,
        record_layer(server, captured).expect("record layer"),
    )
}

/// The client sends `data`; returns what the server's record layer opened.
fn client_to_server(c: &mut rustls::ClientConnection, s: &mut RecordLayer, data: &[u8]) -> Vec<u8> {
    c.writer().write_all(data).expect("write");
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).expect("write tls");
    }
    let mut got = Vec::new();
    s.open(&mut wire, |d| got.extend_from_slice(d))
        .expect("open");
    got
}

/// `wire` from the server; returns what the client read.
fn server_to_client(c: &mut rustls::ClientConnection, wire: &[u8]) -> Vec<u8> {
    let mut rest = wire;
    let mut got = Vec::new();
    while !rest.is_empty() {
        c.read_tls(&mut rest).expect("read tls");
        c.process_new_packets().expect("client accepts our records");
        match c.reader().read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

#[test]
fn tls12_aead_suites_interoperate_with_rustls() {
    use rustls::crypto::ring::cipher_suite as cs;
    for suite in [
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let mut p = rustls::crypto::ring::default_provider();
        p.cipher_suites = vec![suite];
        let (mut c, mut s) = in_memory_with(p, &[&rustls::version::TLS12]);
        assert_eq!(s.version(), crate::net::record_layer::Version::Tls12);
        assert_eq!(c.negotiated_cipher_suite(), Some(suite));
        let big = vec![b'x'; 40_000];
        for _ in 0..3 {
            assert_eq!(client_to_server(&mut c, &mut s, b"<a/>"), b"<a/>");
            assert_eq!(client_to_server(&mut c, &mut s, &big), big);
            let mut wire = Vec::new();
            s.seal(b"<b/>", &mut wire).expect("seal");
            s.seal(&big, &mut wire).expect("seal");
            let got = server_to_client(&mut c, &wire);
            assert_eq!(got.len(), 4 + big.len(), "{suite:?}");
        }
        // close_notify both ways
        let mut wire = Vec::new();
        s.close_notify(&mut wire);
        server_to_client(&mut c, &wire);
        assert!(c.process_new_packets().expect("ok").peer_has_closed());
        c.send_close_notify();
        let mut wire = Vec::new();
        c.write_tls(&mut wire).expect("write");
        assert_eq!(
            s.open(&mut wire, |_| {}),
            Ok(Some(crate::net::record_layer::Event::Closed))
        );
    }
}

#[test]
fn key_updates_interoperate_with_rustls() {
    let (mut c, mut s) = in_memory(&[&rustls::version::TLS13]);
    assert_eq!(client_to_server(&mut c, &mut s, b"<a/>"), b"<a/>");
    // rustls's refresh sends KeyUpdate(update_requested): we follow its new key
    // and answer with ours, which rustls follows
    c.refresh_traffic_keys().expect("refresh");
    assert_eq!(client_to_server(&mut c, &mut s, b"<b/>"), b"<b/>");
    let mut wire = s.take_outgoing().expect("our KeyUpdate");
    s.seal(b"<c/>", &mut wire).expect("seal");
    assert_eq!(server_to_client(&mut c, &wire), b"<c/>");
    // our own rotation before the limit
    s.rotate_after(2);
    let mut wire = Vec::new();
    for i in 0..7 {
        s.seal(format!("<d{i}/>").as_bytes(), &mut wire)
            .expect("seal");
    }
    let want: String = (0..7).map(|i| format!("<d{i}/>")).collect();
    assert_eq!(server_to_client(&mut c, &wire), want.as_bytes());
    assert_eq!(client_to_server(&mut c, &mut s, b"<e/>"), b"<e/>");
}

#[test]
fn end_point_hash_of_generated_cert_is_sha256() {
    let (pem, _) = self_signed_pem(&["a.test".into()]).expect("cert");
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
    assert!(matches!(signature_hash(der.as_ref()), SigHash::Sha256));
    assert_eq!(server_end_point(der.as_ref()).len(), 32);
}

fn generated(name: &str) -> CertifiedKey {
    let (pem, key) = self_signed_pem(&[name.into()]).expect("cert");
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    certified_key_from_der(vec![der], key).expect("ck")
}

/// Accepts any server certificate (the test swaps self-signed ones).
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS 1.2 handshake in memory the way `accept` makes it (the current bundle);
/// returns the client's tls-server-end-point, the server's, and whether the
/// session was resumed.
fn tls12_binding(ctx: &TlsContext, ccfg: &Arc<rustls::ClientConfig>) -> (Vec<u8>, Vec<u8>, bool) {
    let bundle = ctx.live.load_full();
    let name = rustls::pki_types::ServerName::try_from("a.test").expect("name");
    let mut client = rustls::ClientConnection::new(ccfg.clone(), name).expect("client");
    let mut server = ServerConnection::new(bundle.tls12.clone()).expect("server");
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).expect("client write");
        if !buf.is_empty() {
            server.read_tls(&mut &buf[..]).expect("server read");
            server.process_new_packets().expect("server process");
            let _ = Captured::take();
        }
        buf.clear();
        server.write_tls(&mut buf).expect("server write");
        if !buf.is_empty() {
            client.read_tls(&mut &buf[..]).expect("client read");
            client.process_new_packets().expect("client process");
        }
    }
    let seen = client.peer_certificates().expect("certs")[0].clone();
    let resumed = client.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let server_cb = bundle.channel_binding(&server).endpoint.expect("endpoint");
    (server_end_point(seen.as_ref()), server_cb, resumed)
}

/// tls-server-end-point after a certificate swap: a TLS 1.2 client that resumes
/// its session must be bound to the certificate of that session, so the swap
/// brings a new session cache and the next handshake is full, with the new
/// certificate on both sides.
#[test]
fn end_point_binding_follows_the_certificate_served_across_a_reload() {
    let ctx = TlsContext::new(generated("a.test"), vec![]).expect("ctx");
    let ccfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth(),
    );
    let (c1, s1, _) = tls12_binding(&ctx, &ccfg);
    assert_eq!(c1, s1);
    // without a swap the client resumes: the sessions are cached
    let (c2, s2, resumed) = tls12_binding(&ctx, &ccfg);
    assert!(resumed, "the session cache works");
    assert_eq!(c2, s2);
    let changed = ctx
        .replace_certificates(generated("a.test"), vec![])
        .expect("swap");
    assert!(changed, "a new certificate is a change");
    let (c3, s3, resumed) = tls12_binding(&ctx, &ccfg);
    assert!(!resumed, "no session from before the swap is resumed");
    assert_eq!(c3, s3, "both sides hash the certificate served");
    assert_ne!(c3, c1, "the new certificate");
    // the same certificates again: no change reported
    let same = ctx.live.load().store.pick(None).as_ref().clone();
    assert!(!ctx.replace_certificates(same, vec![]).expect("swap"));
}

/// A certificate skeleton (empty tbsCertificate and signature) signed with RSA-PSS,
/// with `hash` (an AlgorithmIdentifier's OID contents) in its parameters, if any.
fn pss_cert(hash: Option<&[u8]>) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag, body.len() as u8];
        v.extend_from_slice(body);
        v
    }
    let mut params = Vec::new();
    if let Some(h) = hash {
        params = tlv(0xa0, &tlv(0x30, &tlv(0x06, h)));
    }
    let mut alg = tlv(0x06, RSASSA_PSS);
    alg.extend(tlv(0x30, &params));
    let mut body = tlv(0x30, &[]);
    body.extend(tlv(0x30, &alg));
    body.extend(tlv(0x03, &[0]));
    tlv(0x30, &body)
}

#[test]
fn end_point_hash_of_rsa_pss_follows_its_parameters() {
    let sha384 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    let sha512 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    let sha256 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    assert!(matches!(
        signature_hash(&pss_cert(Some(&sha384))),
        SigHash::Sha384
    ));
    assert!(matches!(
        signature_hash(&pss_cert(Some(&sha512))),
        SigHash::Sha512
    ));
    assert!(matches!(
        signature_hash(&pss_cert(Some(&sha256))),
        SigHash::Sha256
    ));
    // no hashAlgorithm: SHA-1 by default, which RFC 5929 replaces with SHA-256
    assert!(matches!(signature_hash(&pss_cert(None)), SigHash::Sha256));
    assert_eq!(server_end_point(&pss_cert(Some(&sha384))).len(), 48);
}

#[test]
fn der_header_rejects_truncation() {
    assert!(der_header(&[0x30, 0x05, 0x01]).is_none());
    assert!(der_header(&[0x30]).is_none());
    assert_eq!(
        der_header(&[0x30, 0x01, 0x00]).map(|(l, c)| (l, c.len())),
        Some((3, 1))
    );
}

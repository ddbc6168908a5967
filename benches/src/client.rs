//! One XMPP client connection: TCP from a chosen loopback source address, STARTTLS
//! (any certificate accepted), SASL, resource binding; and in-band registration.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use xmppd_bench::scram::{self, Mechanism};
use xmppd_bench::xml::{self, Item, Scanner};

/// Why a connection or login failed.
#[derive(Debug)]
pub enum Error {
    Connect(io::Error),
    Timeout(&'static str),
    Io(io::Error),
    Tls(String),
    Protocol(String),
    Auth(String),
    Bind(String),
    Closed,
}

impl Error {
    /// A short category, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Connect(_) => "connect",
            Error::Timeout(_) => "timeout",
            Error::Io(_) => "io",
            Error::Tls(_) => "tls",
            Error::Protocol(_) => "protocol",
            Error::Auth(_) => "auth",
            Error::Bind(_) => "bind",
            Error::Closed => "closed",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::Timeout(what) => write!(f, "timeout: {what}"),
            Error::Io(e) => write!(f, "i/o: {e}"),
            Error::Tls(e) => write!(f, "tls: {e}"),
            Error::Protocol(e) => write!(f, "protocol: {e}"),
            Error::Auth(e) => write!(f, "authentication: {e}"),
            Error::Bind(e) => write!(f, "bind: {e}"),
            Error::Closed => write!(f, "connection closed by the server"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<xml::ScanError> for Error {
    fn from(e: xml::ScanError) -> Self {
        Error::Protocol(format!("XML: {e}"))
    }
}

/// Accepts any server certificate: a benchmark tool talking to servers on loopback.
/// Handshake signatures are still checked (cheap, and keeps the handshake honest).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client TLS configuration: ring provider, any certificate, and (unless asked
/// for) no session resumption, so every login pays for a full handshake like a
/// fresh device would.
pub fn tls_config(resume: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

/// Where and how to connect and log in.
pub struct Target {
    pub addr: SocketAddr,
    pub domain: String,
    pub user_pattern: String,
    pub password: String,
    pub mech: Mechanism,
    pub starttls: bool,
    pub tls: Arc<ClientConfig>,
    pub sources: Vec<IpAddr>,
    pub connect_timeout: Duration,
    pub next_source: AtomicUsize,
}

impl Target {
    pub fn user(&self, n: u64) -> String {
        self.user_pattern.replace("{n}", &n.to_string())
    }

    fn source(&self) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let i = self.next_source.fetch_add(1, Ordering::Relaxed);
        Some(self.sources[i % self.sources.len()])
    }
}

/// The socket before and after TLS.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream taken")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// An XML stream over a socket.
pub struct Conn {
    pub io: Stream,
    pub scan: Scanner,
    /// The full JID after binding.
    pub jid: String,
}

const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

async fn connect(t: &Target) -> Result<TcpStream, Error> {
    let sock = match t.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(Error::Connect)?;
    if let Some(src) = t.source() {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // Let connect() pick the port for the whole 4-tuple, so a source address
            // is not limited to one ephemeral port range shared by every destination.
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on a socket we own, with a c_int option value.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        sock.bind(SocketAddr::new(src, 0)).map_err(Error::Connect)?;
    }
    let s = tokio::time::timeout(t.connect_timeout, sock.connect(t.addr))
        .await
        .map_err(|_| Error::Timeout("connect"))?
        .map_err(Error::Connect)?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

impl Conn {
    pub fn new(io: Stream) -> Self {
        Conn {
            io,
            scan: Scanner::new(),
            jid: String::new(),
        }
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.io.write_all(data).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn open_stream(&mut self, domain: &str) -> Result<(), Error> {
        self.scan.reset();
        let hdr = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0' xml:lang='en'>",
            xml::escape(domain)
        );
        self.send(hdr.as_bytes()).await
    }

    /// The next scanner item, reading as needed.
    pub async fn next_item(&mut self) -> Result<Item, Error> {
        loop {
            if let Some(it) = self.scan.next_item()? {
                return Ok(it);
            }
            let buf = self.scan.buffer();
            if self.io.read_buf(buf).await? == 0 {
                return Err(Error::Closed);
            }
        }
    }

    /// The next top-level element (copied), skipping the stream header.
    pub async fn next_element(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            match self.next_item().await? {
                Item::Header(_) => continue,
                Item::Element(r) => {
                    let el = self.scan.slice(r).to_vec();
                    if xml::local_name(&el) == b"error" {
                        return Err(Error::Protocol(format!(
                            "stream error: {}",
                            String::from_utf8_lossy(&el)
                        )));
                    }
                    return Ok(el);
                }
                Item::End => return Err(Error::Closed),
            }
        }
    }

    async fn features(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            let el = self.next_element().await?;
            if xml::local_name(&el) == b"features" {
                return Ok(el);
            }
        }
    }

    async fn starttls(&mut self, t: &Target) -> Result<(), Error> {
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        let el = self.next_element().await?;
        if xml::local_name(&el) != b"proceed" {
            return Err(Error::Tls(format!(
                "STARTTLS refused: {}",
                String::from_utf8_lossy(&el)
            )));
        }
        let Stream::Tcp(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
            return Err(Error::Tls("STARTTLS on a stream already encrypted".into()));
        };
        let name = ServerName::try_from(t.domain.clone())
            .map_err(|e| Error::Tls(format!("server name {}: {e}", t.domain)))?;
        let tls = TlsConnector::from(t.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Tls(e.to_string()))?;
        self.io = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Connect, optionally STARTTLS, and return the stream features.
    async fn start(t: &Target) -> Result<(Conn, Vec<u8>), Error> {
        let tcp = connect(t).await?;
        let mut c = Conn::new(Stream::Tcp(tcp));
        c.open_stream(&t.domain).await?;
        let mut feats = c.features().await?;
        if t.starttls {
            if xml::child(&feats, "starttls").is_none() {
                return Err(Error::Tls("server does not offer STARTTLS".into()));
            }
            c.starttls(t).await?;
            c.open_stream(&t.domain).await?;
            feats = c.features().await?;
        }
        Ok((c, feats))
    }

    async fn sasl(&mut self, t: &Target, user: &str, feats: &[u8]) -> Result<(), Error> {
        let offered: Vec<&[u8]> = xml::children(feats, "mechanism")
            .into_iter()
            .map(xml::text)
            .collect();
        if !offered
            .iter()
            .any(|m| m.trim_ascii() == t.mech.name().as_bytes())
        {
            let list: Vec<String> = offered
                .iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect();
            return Err(Error::Auth(format!(
                "{} not offered (server offers: {})",
                t.mech.name(),
                list.join(" ")
            )));
        }
        let mut sc = scram::Client::new(t.mech, user, &t.password);
        let auth = format!(
            "<auth xmlns='{SASL_NS}' mechanism='{}'>{}</auth>",
            t.mech.name(),
            B64.encode(sc.initial())
        );
        self.send(auth.as_bytes()).await?;
        loop {
            let el = self.next_element().await?;
            let data = decode_b64(xml::text(&el))?;
            match xml::local_name(&el) {
                b"challenge" => {
                    let resp = sc.respond(&data).map_err(Error::Auth)?;
                    let msg = if resp.is_empty() {
                        format!("<response xmlns='{SASL_NS}'/>")
                    } else {
                        format!(
                            "<response xmlns='{SASL_NS}'>{}</response>",
                            B64.encode(resp)
                        )
                    };
                    self.send(msg.as_bytes()).await?;
                }
                b"success" => {
                    sc.verify_final(&data).map_err(Error::Auth)?;
                    return Ok(());
                }
                b"failure" => {
                    return Err(Error::Auth(format!(
                        "failure: {}",
                        String::from_utf8_lossy(&el)
                    )));
                }
                _ => {}
            }
        }
    }

    /// Wait for the iq result (or error) with this id; other stanzas are skipped.
    pub async fn iq_reply(&mut self, id: &str) -> Result<Vec<u8>, Error> {
        loop {
            let el = self.next_element().await?;
            if xml::local_name(&el) == b"iq" && xml::attr(&el, "id") == Some(id.as_bytes()) {
                return Ok(el);
            }
        }
    }

    /// Log account `n` in and bind `resource`. Initial presence is the caller's.
    pub async fn login(t: &Target, n: u64, resource: &str) -> Result<Conn, Error> {
        let user = t.user(n);
        let (mut c, feats) = Conn::start(t).await?;
        c.sasl(t, &user, &feats).await?;
        c.open_stream(&t.domain).await?;
        let feats = c.features().await?;
        if xml::child(&feats, "bind").is_none() {
            return Err(Error::Bind("server does not offer resource binding".into()));
        }
        let bind = format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{}</resource></bind></iq>",
            xml::escape(resource)
        );
        c.send(bind.as_bytes()).await?;
        let reply = c.iq_reply("bind1").await?;
        if xml::attr(&reply, "type") != Some(b"result") {
            return Err(Error::Bind(String::from_utf8_lossy(&reply).into_owned()));
        }
        let jid = xml::child(&reply, "jid")
            .map(xml::text)
            .map(xml::unescape)
            .unwrap_or_default();
        if jid.is_empty() {
            return Err(Error::Bind("bind result without a JID".into()));
        }
        c.jid = jid;
        // RFC 3921 session establishment, for servers that still require it.
        if let Some(sess) = xml::child(&feats, "session") {
            let optional = xml::child(sess, "optional").is_some()
                && xml::find(sess, b"</session>")
                    .is_some_and(|end| xml::find(&sess[..end], b"optional").is_some());
            if !optional {
                c.send(
                    b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
                )
                .await?;
                let r = c.iq_reply("sess1").await?;
                if xml::attr(&r, "type") != Some(b"result") {
                    return Err(Error::Bind(format!(
                        "session: {}",
                        String::from_utf8_lossy(&r)
                    )));
                }
            }
        }
        Ok(c)
    }

    /// In-band registration (XEP-0077) of account `n`. Ok(true): created; Ok(false):
    /// it already existed.
    pub async fn register(t: &Target, n: u64) -> Result<bool, Error> {
        let user = t.user(n);
        let (mut c, feats) = Conn::start(t).await?;
        if xml::child(&feats, "register").is_none() {
            return Err(Error::Protocol(
                "server does not offer in-band registration".into(),
            ));
        }
        let iq = format!(
            "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>{}</username>\
             <password>{}</password></query></iq>",
            xml::escape(&user),
            xml::escape(&t.password)
        );
        c.send(iq.as_bytes()).await?;
        let r = c.iq_reply("reg1").await?;
        let created = match xml::attr(&r, "type") {
            Some(b"result") => true,
            _ if xml::child(&r, "conflict").is_some() => false,
            _ => {
                return Err(Error::Auth(format!(
                    "registration refused: {}",
                    String::from_utf8_lossy(&r)
                )));
            }
        };
        c.close(Duration::from_secs(2)).await;
        Ok(created)
    }

    /// Close our stream and wait (bounded) for the server to close its own.
    pub async fn close(&mut self, wait: Duration) {
        if self.send(b"</stream:stream>").await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(wait, async {
            loop {
                match self.next_item().await {
                    Ok(Item::End) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        let _ = self.io.shutdown().await;
    }
}

fn decode_b64(text: &[u8]) -> Result<Vec<u8>, Error> {
    let t: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if t.is_empty() || t == b"=" {
        return Ok(Vec::new());
    }
    B64.decode(&t)
        .map_err(|_| Error::Protocol("bad base64 in SASL data".into()))
}

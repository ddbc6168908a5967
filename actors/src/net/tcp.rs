//! XMPP over TCP (RFC 6120): one XML stream on the byte stream, plain then upgraded in
//! place by STARTTLS, or TLS from the first byte (direct TLS, XEP-0368).
//!
//! Reads go into the thread's shared buffer, are decrypted by the TLS record layer and
//! fed to the stream parser synchronously; only the events leave. Writes are appended to
//! one buffer and go out sealed in one system call.

use super::transport::{ReadOutcome, Reason, Transport, with_read_buf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xmppd_proto::net::record_layer::{Event, RecordLayer};
use xmppd_proto::net::tls::{ChannelBinding, TlsContext};
use xmppd_proto::xml::fast_parser::FastParser;
use xmppd_proto::xml::log_mask::{StreamMasker, xml_logged};
use xmppd_proto::xml::stream_parser::{Limits, Parked};

/// The stream parser, or what is left of it while the stream is idle.
enum ParserSlot {
    Active(Box<FastParser>),
    Parked(Parked),
}

impl ParserSlot {
    fn fresh(limits: Limits) -> ParserSlot {
        ParserSlot::Active(Box::new(FastParser::new(limits)))
    }

    fn active(&mut self, limits: Limits) -> &mut FastParser {
        if let ParserSlot::Parked(p) = self {
            *self = ParserSlot::Active(Box::new(FastParser::resume(limits, p)));
        }
        match self {
            ParserSlot::Active(p) => p,
            ParserSlot::Parked(_) => unreachable!("resumed above"),
        }
    }

    fn park(&mut self) {
        if let ParserSlot::Active(p) = self
            && let Some(parked) = p.park()
        {
            *self = ParserSlot::Parked(parked);
        }
    }
}

/// A TCP connection carrying one XML stream, with TLS once it is up.
pub struct TcpTransport {
    tcp: TcpStream,
    /// Run the TLS handshake before the stream (direct TLS).
    direct_tls: bool,
    tls: Option<Box<RecordLayer>>,
    tls_ctx: TlsContext,
    tls_timeout: Duration,
    limits: Limits,
    parser: ParserSlot,
    /// Plaintext waiting to be sealed and written.
    wbuf: Vec<u8>,
    /// What the trace log hides of each direction (followed across reads).
    recv_mask: StreamMasker,
    /// The receiving masker has followed the stream since it was between stanzas.
    recv_synced: bool,
    send_mask: StreamMasker,
}

impl TcpTransport {
    pub fn new(
        tcp: TcpStream,
        direct_tls: bool,
        tls_ctx: TlsContext,
        tls_timeout: Duration,
        limits: Limits,
    ) -> TcpTransport {
        TcpTransport {
            tcp,
            direct_tls,
            tls: None,
            tls_ctx,
            tls_timeout,
            limits,
            parser: ParserSlot::fresh(limits),
            wbuf: Vec::new(),
            recv_mask: StreamMasker::new(),
            recv_synced: true,
            send_mask: StreamMasker::new(),
        }
    }

    async fn handshake(&mut self) -> Result<ChannelBinding, Reason> {
        if self.tls.is_some() {
            return Err("STARTTLS on a TLS stream".into());
        }
        let (layer, cb) = match tokio::time::timeout(
            self.tls_timeout,
            self.tls_ctx.accept(&mut self.tcp),
        )
        .await
        {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
            Err(_) => return Err("TLS handshake timed out".into()),
        };
        self.tls = Some(Box::new(layer));
        self.parser = ParserSlot::fresh(self.limits);
        Ok(cb)
    }
}

impl Transport for TcpTransport {
    async fn open(&mut self) -> Result<Option<ChannelBinding>, Reason> {
        if self.direct_tls {
            self.handshake().await.map(Some)
        } else {
            Ok(None)
        }
    }

    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.tcp.readable()
    }

    fn read(&mut self, max: usize, log: &slog::Logger) -> std::io::Result<Option<ReadOutcome>> {
        with_read_buf(|buf| {
            let max = max.clamp(1, buf.len());
            let n = match self.tcp.try_read(&mut buf[..max]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut out = ReadOutcome {
                wire_bytes: n,
                closed: n == 0,
                ..ReadOutcome::default()
            };
            if n == 0 {
                return Ok(Some(out));
            }
            let (parser, limits, masker) = (&mut self.parser, self.limits, &mut self.recv_mask);
            let mut last = 0u8;
            // The masker follows the stream only while its XML is logged. Switched on
            // in the middle of an element (a password, say) it cannot know what it is
            // in: nothing is shown until the stream is between stanzas again.
            let logged = xml_logged();
            let synced = &mut self.recv_synced;
            let mut xml = 0usize;
            let mut feed = |data: &[u8]| {
                xml += data.len();
                if logged {
                    if *synced {
                        let shown = masker.mask(data);
                        slog::trace!(log, # "XMPPI", "recv"; "xml" => shown);
                    } else {
                        slog::trace!(log, # "XMPPI", "recv"; "xml" => "(not shown: logging began inside a stanza)");
                    }
                }
                if out.error.is_none()
                    && let Err(e) = parser.active(limits).feed(data, &mut out.events)
                {
                    out.error = Some(e);
                }
                if let Some(b) = data.iter().rev().find(|b| !b.is_ascii_whitespace()) {
                    last = *b;
                }
            };
            match &mut self.tls {
                Some(layer) => match layer.open(&mut buf[..n], &mut feed) {
                    Ok(Some(Event::Closed)) => out.closed = true,
                    Ok(None) => {}
                    Err(e) => {
                        slog::warn!(log, # "XMPPI", "TLS record layer: closing"; "error" => %e);
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                    }
                },
                None => feed(&buf[..n]),
            }
            out.xml_bytes = xml;
            out.clean = last == b'>' && self.tls.as_ref().is_none_or(|l| l.pending() == 0);
            if !logged {
                self.recv_synced = false;
            } else if !self.recv_synced
                && let ParserSlot::Active(p) = &self.parser
                && p.at_stanza_boundary()
            {
                self.recv_mask = StreamMasker::new();
                self.recv_synced = true;
            }
            Ok(Some(out))
        })
    }

    fn frame(&mut self, data: Vec<u8>) {
        if self.wbuf.is_empty() {
            self.wbuf = data
        } else {
            self.wbuf.extend_from_slice(&data)
        }
    }

    fn has_output(&self) -> bool {
        !self.wbuf.is_empty()
    }

    async fn flush(&mut self, log: &slog::Logger) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        // what we write is whole stanzas (or our stream header): a masker started
        // fresh at any flush is in step
        if xml_logged() {
            let xml = self.send_mask.mask(&self.wbuf);
            slog::trace!(log, # "XMPPI", "send"; "xml" => xml);
        } else {
            self.send_mask = StreamMasker::new();
        }
        let plain = std::mem::take(&mut self.wbuf);
        let data = match &mut self.tls {
            Some(layer) => {
                let mut sealed = Vec::new();
                layer
                    .seal(&plain, &mut sealed)
                    .map_err(std::io::Error::other)?;
                sealed
            }
            None => plain,
        };
        write_all(&self.tcp, &data).await
    }

    async fn write_control(&mut self) -> std::io::Result<()> {
        let Some(out) = self.tls.as_mut().and_then(|l| l.take_outgoing()) else {
            return Ok(());
        };
        match tokio::time::timeout(self.tls_timeout, write_all(&self.tcp, &out)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    async fn start_tls(&mut self) -> Result<ChannelBinding, Reason> {
        self.handshake().await
    }

    fn reset(&mut self) {
        self.parser = ParserSlot::fresh(self.limits);
    }

    fn park(&mut self) {
        self.parser.park();
    }

    /// TLS close_notify, TCP shutdown, then up to 2 s for the peer to close its side.
    async fn close(&mut self) {
        if let Some(layer) = &mut self.tls {
            let mut alert = Vec::new();
            layer.close_notify(&mut alert);
            let _ = write_all(&self.tcp, &alert).await;
        }
        let _ = self.tcp.shutdown().await;
        let mut buf = [0u8; 512];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match self.tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

async fn write_all(tcp: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match tcp.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => tcp.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::transport::READ_CHUNK;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::net::TcpListener;
    use xmppd_proto::net::tls::{certified_key_from_der, self_signed_pem};
    use xmppd_proto::xml::stream_parser::StreamEvent;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='a.test' version='1.0'>";

    fn log() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    /// A plaintext transport on one end of a loopback connection, and the peer's end.
    async fn pair() -> (TcpTransport, TcpStream) {
        let (cert, key) = self_signed_pem(&["a.test".into()]).expect("cert");
        let ck = certified_key_from_der(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert pem")],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key pem"),
        )
        .expect("key");
        let tls = TlsContext::new(ck, Vec::new()).expect("tls");
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let peer = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = l.accept().await.expect("accept");
        let t = TcpTransport::new(
            server,
            false,
            tls,
            Duration::from_secs(5),
            Limits::default(),
        );
        (t, peer)
    }

    /// Write `data` as the peer, then read until the transport has taken all of it.
    async fn exchange(t: &mut TcpTransport, peer: &mut TcpStream, data: &str) -> ReadOutcome {
        peer.write_all(data.as_bytes()).await.expect("peer write");
        let mut all = ReadOutcome::default();
        while all.wire_bytes < data.len() {
            t.readable().await.expect("readable");
            if let Some(o) = t.read(READ_CHUNK, &log()).expect("read") {
                all.wire_bytes += o.wire_bytes;
                all.events.extend(o.events);
                all.error = all.error.or(o.error);
                all.closed |= o.closed;
                all.clean = o.clean;
                if o.closed {
                    break;
                }
            }
        }
        all
    }

    fn stanza_names(o: &ReadOutcome) -> Vec<(String, String)> {
        o.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(el) => Some((el.name().to_string(), el.ns())),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn stream_read_across_pieces_park_and_reset() {
        let (mut t, mut peer) = pair().await;
        assert!(
            t.open().await.expect("open").is_none(),
            "no TLS without direct TLS"
        );

        let o = exchange(&mut t, &mut peer, HEADER).await;
        assert!(
            matches!(&o.events[..], [StreamEvent::Header(h)] if h.to.as_deref() == Some("a.test"))
        );
        assert!(o.clean && !o.closed && o.error.is_none());

        let o = exchange(&mut t, &mut peer, "<message to='b@a.test'><body>hi</bo").await;
        assert!(o.events.is_empty());
        assert!(!o.clean, "the data ended inside a stanza");
        let o = exchange(&mut t, &mut peer, "dy></message>").await;
        assert_eq!(
            stanza_names(&o),
            [("message".into(), "jabber:client".into())]
        );
        assert!(o.clean);

        // parked between stanzas: the next stanza still gets the stream's namespace
        t.park();
        let o = exchange(&mut t, &mut peer, "<presence/>").await;
        assert_eq!(
            stanza_names(&o),
            [("presence".into(), "jabber:client".into())]
        );

        // after a reset the peer opens a new stream
        t.reset();
        let o = exchange(&mut t, &mut peer, HEADER).await;
        assert!(matches!(&o.events[..], [StreamEvent::Header(_)]));
        let o = exchange(&mut t, &mut peer, "</stream:stream>").await;
        assert!(matches!(&o.events[..], [StreamEvent::End]));

        peer.shutdown().await.expect("shutdown");
        t.readable().await.expect("readable");
        let o = t.read(READ_CHUNK, &log()).expect("read").expect("eof");
        assert!(o.closed && o.wire_bytes == 0);
    }

    #[tokio::test]
    async fn bad_xml_is_a_parse_error() {
        let (mut t, mut peer) = pair().await;
        let o = exchange(&mut t, &mut peer, &format!("{HEADER}<message></presence>")).await;
        assert!(matches!(&o.events[..], [StreamEvent::Header(_)]));
        assert!(o.error.is_some());
    }

    #[tokio::test]
    async fn frames_go_out_in_one_write_and_close_shuts_down() {
        let (mut t, mut peer) = pair().await;
        assert!(!t.has_output());
        t.frame(b"<a/>".to_vec());
        t.frame(b"<b/>".to_vec());
        assert!(t.has_output());
        t.flush(&log()).await.expect("flush");
        assert!(!t.has_output());

        let reader = async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.expect("peer read");
            got
        };
        let ((), got) = tokio::join!(t.close(), reader);
        assert_eq!(got, b"<a/><b/>", "everything flushed, then end of stream");
    }
}
